"""Server tools: run by the core inside a turn. Errors are reported to the model as tool
results (is_error), never crash the turn."""

from __future__ import annotations

import json
import logging
from typing import Any

from core.domain import AgentRecord
from core.events import ActionData
from core.observability import tracing
from core.providers.base import ToolSpec
from core.providers.registry import knowledge_base_for
from core.tool_run import ToolContext, ToolFn, ToolRun
from core.webhooks import call_webhook

__all__ = ["BUILTIN_SPECS", "ServerTools", "ToolContext", "ToolFn", "ToolRun"]

log = logging.getLogger("switchboard.tools")

BUILTIN_SPECS: dict[str, ToolSpec] = {
    "search_knowledge": ToolSpec(
        "search_knowledge",
        "Search the help center; returns the best matching passage and its source article.",
        {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    ),
    "create_ticket": ToolSpec(
        "create_ticket",
        "Create a support ticket for a human team.",
        {
            "type": "object",
            "properties": {"subject": {"type": "string"}, "team": {"type": "string"}},
            "required": ["subject"],
        },
    ),
    "highlight": ToolSpec(
        "highlight",
        "Ask the user's UI to highlight an element.",
        {
            "type": "object",
            "properties": {"selector": {"type": "string"}, "message": {"type": "string"}},
            "required": ["selector"],
        },
    ),
}


async def _search_knowledge(
    ctx: ToolContext, args: dict[str, Any], config: dict[str, Any]
) -> ToolRun:
    """The kb provider's retrieval (BM25 over heading-split passages, grounded extract),
    offered as a tool so an LLM agent answers from the same help center and cites it."""
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        return ToolRun({"error": "query is required"}, is_error=True)
    kb = knowledge_base_for(ctx.agent.definition)
    if kb is None:
        return ToolRun({"results": [], "note": "this agent has no knowledge base"})
    from core.providers.kb import KbProvider  # the index is built (and cached) on first use

    reply = KbProvider(kb, threshold=ctx.agent.definition.confidence_threshold).answer(query)
    citations = [a for a in (*reply.actions, *reply.trailing) if a.type == "citation"]
    if reply.escalate or not citations:
        return ToolRun({"results": [], "confidence": round(reply.confidence, 3),
                        "note": "nothing in the knowledge base answers this confidently"})
    source = citations[0].payload
    result = {
        "title": source.get("title", ""), "url": source.get("url", ""),
        "slug": source.get("slug", ""), "excerpt": reply.text,
    }
    return ToolRun({"results": [result], "confidence": round(reply.confidence, 3)},
                   actions=[ActionData("citation", dict(source))])


async def _create_ticket(
    ctx: ToolContext, args: dict[str, Any], config: dict[str, Any]
) -> ToolRun:
    ticket_id = "tkt_" + ctx.ids.uuid().replace("-", "")[:12]
    team = str(args.get("team") or config.get("team") or "support")
    subject = str(args.get("subject", ""))[:500]
    await ctx.store.create_ticket(
        ticket_id, ctx.org_id, ctx.conversation_id, team, subject, ctx.clock.now()
    )
    action = ActionData("create_ticket", {"ticket_id": ticket_id, "team": team, "subject": subject})
    return ToolRun({"ticket_id": ticket_id, "team": team}, actions=[action])


async def _highlight(ctx: ToolContext, args: dict[str, Any], config: dict[str, Any]) -> ToolRun:
    selector = args.get("selector")
    if not isinstance(selector, str) or not selector:
        return ToolRun({"error": "selector is required"}, is_error=True)
    payload = {"selector": selector, "message": str(args.get("message", ""))}
    return ToolRun({"ok": True}, actions=[ActionData("highlight", payload)])


BUILTIN_TOOLS: dict[str, ToolFn] = {
    "search_knowledge": _search_knowledge,
    "create_ticket": _create_ticket,
    "highlight": _highlight,
}


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    # Model APIs want an object schema even for a tool that takes no arguments.
    return dict(tool.get("parameters") or {"type": "object", "properties": {}})


class ServerTools:
    """The tools an agent's definition declares, runnable by the engine."""

    def specs(self, agent: AgentRecord) -> list[ToolSpec]:
        specs = []
        for tool in agent.definition.tools:
            name = str(tool["name"])
            if tool.get("kind") == "builtin" and name in BUILTIN_SPECS:
                specs.append(BUILTIN_SPECS[name])
            elif tool.get("kind") == "webhook":
                specs.append(
                    ToolSpec(name, str(tool.get("description", "")), _parameters(tool))
                )
            elif tool.get("kind") == "client":
                specs.append(
                    ToolSpec(
                        name, str(tool.get("description", "")), _parameters(tool),
                        client_side=True,
                    )
                )
        return specs

    async def run(self, ctx: ToolContext, name: str, arguments_json: str) -> ToolRun:
        config = next((t for t in ctx.agent.definition.tools if t.get("name") == name), None)
        if config is None:
            return ToolRun({"error": f"unknown tool {name!r}"}, is_error=True)
        try:
            args = json.loads(arguments_json or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return ToolRun({"error": f"invalid arguments: {exc}"}, is_error=True)
        kind = config.get("kind")
        with tracing.span("tool.run", {"tool.name": name, "tool.kind": str(kind)}):
            try:
                if kind == "builtin":
                    return await BUILTIN_TOOLS[name](ctx, args, config)
                if kind == "webhook":
                    return await call_webhook(ctx, config, args)
            except Exception as exc:  # a tool failure is reported to the model, not raised
                log.warning("tool %s failed: %s", name, exc)
                return ToolRun({"error": f"tool failed: {type(exc).__name__}"}, is_error=True)
        return ToolRun({"error": f"tool {name!r} cannot run on the server"}, is_error=True)
