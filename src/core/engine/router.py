"""The router: which agent answers a turn, or whether it goes straight to a human team.

Evaluated in `start_turn` once the agent is resolved (pinned `agent_id`, else the
conversation's agent, else the organisation's active agent), before any generation:

1. the agent's `routing:` rules, in order; the first match sends the conversation to a
   team (a ticket is created, the turn answers with acknowledgement copy, no model runs);
2. else the agent's `handoffs:`, in order; the first match hands the conversation to another
   agent of the same organisation, which answers this turn and keeps the conversation;
3. after a handoff, the target's `routing:` rules (never its handoffs: one hop per turn, so
   two agents pointing at each other cannot ping-pong).

A rule's `when:` holds one or more conditions; all of them must hold:
- `keywords`: words or phrases, case-insensitive, each matched at a word start anywhere in
  the message ("error" matches "errors", "bug" does not match "debug");
- `pattern`: a regular expression searched in the message, case-insensitive;
- `mode`: the request's mode, or a list of modes (e.g. `livehelp`; a `livehelp` request
  no rule matches goes to the `support` team all the same: the visitor asked for a person);
- `outside_hours`: `{timezone, days, open, close, holidays}`: true when the injected clock's
  `now`, in that timezone, is outside the opening hours (a close before the open time means
  the hours run past midnight; `holidays` are whole closed dates, `YYYY-MM-DD`).

The schema is validated in `core.agents.definition`; this module only evaluates it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from core.agents.catalog import AgentCatalog
from core.agents.definition import WEEKDAYS, AgentDefinition
from core.domain import AgentRecord, ConversationRecord
from core.events import AgentHandoff

log = logging.getLogger("switchboard.router")

DEFAULT_ACK = "Thanks, I'm connecting you with our {team} team. Someone will be with you shortly."
DEFAULT_ACTION = "route_to_team"
DEFAULT_TEAM = "support"  # who takes `mode: livehelp` when no rule names a team
_SUBJECT_CHARS = 120  # ticket subjects quote the start of the user's message


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Send the conversation to a human team: no generation, a ticket, this copy."""

    team: str
    action: str
    message: str
    rule: dict[str, Any]
    subject: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a turn does: which agent runs it, whether it is routed, whether it changed hands.

    `handoff` is the event to emit (None when no handoff happened in this turn, including
    when the conversation already lives with the agent a pinned agent hands off to).
    """

    agent: AgentRecord
    decision: RouteDecision | None = None
    handoff: AgentHandoff | None = None


# -- conditions ---------------------------------------------------------------------------


def _normalise(text: str) -> str:
    # Curly apostrophes (phone keyboards) and runs of spaces must not defeat a keyword.
    return re.sub(r"\s+", " ", text.replace("\u2019", "'").replace("\u2018", "'")).lower()


@lru_cache(maxsize=1024)
def _keyword_re(keyword: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(_normalise(keyword).strip()))


@lru_cache(maxsize=256)
def _pattern_re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _parse_hhmm(text: str) -> time:
    hours, minutes = str(text).split(":")
    if int(hours) == 24 and int(minutes) == 0:
        return time.max  # "24:00": open until the end of the day
    return time(int(hours), int(minutes))


def is_open(hours: dict[str, Any], now: datetime) -> bool:
    """Whether `now` (timezone-aware) falls inside the opening hours `hours` describes."""
    local = now.astimezone(ZoneInfo(str(hours["timezone"])))
    days = {str(d).lower()[:3] for d in hours.get("days", WEEKDAYS[:5])}
    holidays = {str(d) for d in hours.get("holidays", []) or []}
    opens = _parse_hhmm(hours.get("open", "09:00"))
    closes = _parse_hhmm(hours.get("close", "17:00"))
    clock = local.time().replace(tzinfo=None)

    def open_day(day: date) -> bool:
        return WEEKDAYS[day.weekday()] in days and day.isoformat() not in holidays

    if opens < closes:
        return open_day(local.date()) and opens <= clock < closes
    # Overnight hours (e.g. 22:00-06:00): the evening part belongs to today's opening,
    # the early-morning part to yesterday's.
    yesterday = local.date() - timedelta(days=1)
    return (open_day(local.date()) and clock >= opens) or (open_day(yesterday) and clock < closes)


def matches(when: dict[str, Any], message: str, mode: str, now: datetime) -> bool:
    """Whether every condition of a rule's `when:` holds (an empty `when` never matches)."""
    checks: list[bool] = []
    text = _normalise(message)
    if "keywords" in when:
        checks.append(any(_keyword_re(str(k)).search(text) for k in when["keywords"] or []))
    if "pattern" in when:
        checks.append(_pattern_re(str(when["pattern"])).search(message) is not None)
    if "mode" in when:
        modes = when["mode"] if isinstance(when["mode"], list) else [when["mode"]]
        checks.append(mode in {str(m) for m in modes})
    if "outside_hours" in when:
        checks.append(not is_open(when["outside_hours"], now))
    return bool(checks) and all(checks)


# -- routing to a team --------------------------------------------------------------------


def route(agent: AgentDefinition, message: str, mode: str, now: datetime) -> RouteDecision | None:
    """The first of the agent's routing rules that matches, as a decision; else None."""
    for rule in agent.routing:
        if matches(rule.get("when", {}), message, mode, now):
            team = str(rule.get("team", "support"))
            subject = " ".join(message.split())
            if len(subject) > _SUBJECT_CHARS:
                subject = subject[: _SUBJECT_CHARS - 1] + "\u2026"
            return RouteDecision(
                team=team,
                action=str(rule.get("action") or DEFAULT_ACTION),
                message=str(rule.get("message") or DEFAULT_ACK).replace("{team}", team),
                rule=rule,
                subject=subject or f"Routed to {team}",
            )
    if mode == "livehelp":
        # The visitor asked for a person (the widget's "Talk to a person"): with no rule
        # of the agent's own for it, the default team takes it.
        return RouteDecision(
            team=DEFAULT_TEAM, action=DEFAULT_ACTION,
            message=DEFAULT_ACK.replace("{team}", DEFAULT_TEAM),
            rule={"team": DEFAULT_TEAM, "when": {"mode": "livehelp"}},
            subject=" ".join(message.split())[:_SUBJECT_CHARS] or f"Routed to {DEFAULT_TEAM}",
        )
    return None


# -- handing off to another agent ---------------------------------------------------------


def match_handoff(
    agent: AgentDefinition, message: str, mode: str, now: datetime
) -> dict[str, Any] | None:
    """The first of the agent's handoff rules that matches; else None."""
    for rule in agent.handoffs:
        if matches(rule.get("when", {}), message, mode, now):
            return rule
    return None


def _targets(agent: AgentRecord) -> set[str]:
    return {str(rule.get("to", "")) for rule in agent.definition.handoffs}


async def plan(
    agents: AgentCatalog,
    agent: AgentRecord,
    conversation: ConversationRecord | None,
    message: str,
    mode: str,
    now: datetime,
) -> Plan:
    """Decide who runs this turn and whether it goes to a team (see the module docstring)."""
    decision = route(agent.definition, message, mode, now)
    if decision is not None:
        return Plan(agent, decision)
    # A client that keeps pinning the agent it started with must not pull a handed-off
    # conversation back: it stays with the agent it was handed to.
    if conversation is not None and conversation.agent_id != agent.id and _targets(agent):
        current = await agents.get(agent.org_id, conversation.agent_id)
        if current is not None and {current.slug, current.id} & _targets(agent):
            return Plan(current, route(current.definition, message, mode, now))
    rule = match_handoff(agent.definition, message, mode, now)
    if rule is None:
        return Plan(agent)
    target = await agents.get(agent.org_id, str(rule["to"]))
    if target is None or target.id == agent.id:
        # Agents are applied one file at a time: a handoff to an agent that does not exist
        # (yet) is skipped rather than failing the customer's turn.
        log.warning("agent %s: handoff target %r not found; answering itself",
                    agent.slug, rule["to"])
        return Plan(agent)
    reason = str(rule.get("reason") or f"handoff from {agent.slug} to {target.slug}")
    return Plan(
        target,
        route(target.definition, message, mode, now),
        AgentHandoff(from_agent_id=agent.id, to_agent_id=target.id, reason=reason),
    )
