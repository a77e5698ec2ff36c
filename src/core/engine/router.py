"""The router: which agent answers, or whether the conversation goes straight to a team.

Routing rules live in the agent file (`routing:`), evaluated in order; the first match
wins. A rule matches on any of:
- `keywords`: list of words/phrases, case-insensitive, anywhere in the message;
- `pattern`: a regular expression searched in the message (case-insensitive);
- `mode`: the request's mode (e.g. `livehelp`).
A matching rule routes to `team` with `action` (default `route_to_team`) and answers with
`message` (acknowledgement copy); no generation runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.agents.definition import AgentDefinition

DEFAULT_ACK = "Thanks, I'm connecting you with our {team} team. Someone will be with you shortly."


@dataclass(frozen=True, slots=True)
class RouteDecision:
    team: str
    action: str
    message: str
    rule: dict[str, Any]


def _matches(rule: dict[str, Any], message: str, mode: str, now: datetime) -> bool:
    when = rule.get("when", rule)
    text = message.lower()
    checks = []
    if "keywords" in when:
        checks.append(any(str(k).lower() in text for k in when["keywords"] or []))
    if "pattern" in when:
        checks.append(re.search(str(when["pattern"]), message, re.IGNORECASE) is not None)
    if "mode" in when:
        checks.append(mode == when["mode"])
    return bool(checks) and any(checks)


def route(agent: AgentDefinition, message: str, mode: str, now: datetime) -> RouteDecision | None:
    for rule in agent.routing:
        if _matches(rule, message, mode, now):
            team = str(rule.get("team", "support"))
            return RouteDecision(
                team=team,
                action=str(rule.get("action", "route_to_team")),
                message=str(rule.get("message") or DEFAULT_ACK).replace("{team}", team),
                rule=rule,
            )
    return None
