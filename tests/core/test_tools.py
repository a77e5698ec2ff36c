"""Built-in server tools (search_knowledge, create_ticket, highlight), their specs, and a
scripted agent calling them over real gRPC."""

from __future__ import annotations

import json

from core.domain import AgentRecord
from core.tools import BUILTIN_SPECS, ServerTools, ToolContext
from harness import Harness, auth
from switchboard.v1 import chat_pb2


async def _context(sb: Harness, slug: str = "support-agent") -> ToolContext:
    agent = await sb.core.agents.get(sb.org_id, slug)
    assert agent is not None
    return ToolContext(sb.org_id, "conv-tools", agent, sb.core.store, sb.core.clock, sb.core.ids)


async def test_search_knowledge_returns_a_grounded_cited_passage(sb: Harness) -> None:
    ctx = await _context(sb)
    run = await ServerTools().run(ctx, "search_knowledge",
                                  json.dumps({"query": "How do I download my invoices?"}))
    assert not run.is_error
    [result] = run.result["results"]
    assert result["slug"] == "invoices-and-payments"
    assert result["url"].endswith("/invoices-and-payments")
    assert "Invoices" in result["excerpt"]
    assert run.result["confidence"] >= 0.5
    assert [a.type for a in run.actions] == ["citation"]
    assert run.actions[0].payload["slug"] == "invoices-and-payments"


async def test_search_knowledge_says_when_nothing_answers(sb: Harness) -> None:
    ctx = await _context(sb)
    tools = ServerTools()
    run = await tools.run(ctx, "search_knowledge",
                          json.dumps({"query": "best banana bread recipe"}))
    assert not run.is_error and run.result["results"] == [] and not run.actions
    missing = await tools.run(ctx, "search_knowledge", "{}")
    assert missing.is_error and missing.result == {"error": "query is required"}


async def test_create_ticket_stores_and_announces(sb: Harness) -> None:
    ctx = await _context(sb)
    run = await ServerTools().run(ctx, "create_ticket",
                                  json.dumps({"subject": "Export stuck", "team": "data"}))
    ticket_id = run.result["ticket_id"]
    assert run.result == {"ticket_id": ticket_id, "team": "data"}
    assert [(a.type, a.payload["ticket_id"]) for a in run.actions] == [
        ("create_ticket", ticket_id)]
    tickets = await sb.core.store.list_tickets(sb.org_id, "conv-tools")
    assert [(t["id"], t["team"], t["subject"]) for t in tickets] == [
        (ticket_id, "data", "Export stuck")]


async def test_highlight_asks_the_client_ui(sb: Harness) -> None:
    ctx = await _context(sb)
    tools = ServerTools()
    run = await tools.run(ctx, "highlight", json.dumps(
        {"selector": "#billing-settings", "message": "Your invoices are here"}))
    assert run.result == {"ok": True}
    assert [(a.type, a.payload) for a in run.actions] == [
        ("highlight", {"selector": "#billing-settings", "message": "Your invoices are here"})]
    bad = await tools.run(ctx, "highlight", json.dumps({"selector": ""}))
    assert bad.is_error and not bad.actions


async def test_unknown_and_undeclared_tools_are_errors(sb: Harness) -> None:
    ctx = await _context(sb, "sales-bot")  # declares create_ticket only
    run = await ServerTools().run(ctx, "highlight", json.dumps({"selector": "#x"}))
    assert run.is_error and "unknown tool" in run.result["error"]
    args = await ServerTools().run(ctx, "create_ticket", "[1, 2]")
    assert args.is_error and "JSON object" in args.result["error"]


async def test_specs_follow_the_agent_file(sb: Harness) -> None:
    await sb.apply_agent("""
        name: Toolbox
        slug: toolbox
        provider: scripted
        tools:
          - search_knowledge
          - {name: refund, kind: webhook, url: "https://hooks.example/refund",
             description: Refund an order}
          - {name: open_page, kind: client, description: Open a page,
             parameters: {type: object, properties: {path: {type: string}}}}
    """)
    agent = await sb.core.agents.get(sb.org_id, "toolbox")
    assert isinstance(agent, AgentRecord)
    specs = {s.name: s for s in ServerTools().specs(agent)}
    assert specs["search_knowledge"] == BUILTIN_SPECS["search_knowledge"]
    assert specs["refund"].parameters == {"type": "object", "properties": {}}
    assert specs["refund"].description == "Refund an order" and not specs["refund"].client_side
    assert specs["open_page"].client_side


async def test_scripted_agent_runs_builtins_over_grpc(sb: Harness) -> None:
    await sb.apply_agent({
        "name": "Guide", "slug": "guide",
        "knowledge_base": {"path": (await _context(sb)).agent.definition.knowledge_base,
                           "url": "https://help.example/articles"},
        "provider": {"kind": "scripted", "reply": "Done.", "tool_calls": [
            {"name": "highlight", "arguments": {"selector": "#export", "message": "Here"}},
            {"name": "search_knowledge", "arguments": {"query": "export data to CSV"}},
        ]},
        "tools": ["highlight", "search_knowledge"],
    })
    call = sb.chat.StreamChat(chat_pb2.StreamChatRequest(
        turn=chat_pb2.TurnInput(message="show me", agent="guide")), metadata=auth())
    events = [r.event async for r in call]
    actions = [e.action for e in events if e.HasField("action")]
    assert [a.type for a in actions] == ["highlight", "citation"]
    assert dict(actions[1].payload)["url"].startswith("https://help.example/articles/")
    results = [e.tool_result for e in events if e.HasField("tool_result")]
    assert [r.is_error for r in results] == [False, False]
    completed = events[-1].completed
    assert completed.text == "Done."
    assert [a.type for a in completed.actions] == ["highlight", "citation"]
