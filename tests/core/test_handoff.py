"""Multi-agent handoff over real gRPC: the event stream, the transcript and later turns show
the conversation moving from one agent to another of the same organisation."""

from __future__ import annotations

from harness import Harness, auth
from switchboard.v1 import chat_pb2, events_pb2


async def _stream(sb: Harness, **turn: str) -> list[events_pb2.ChatEvent]:
    call = sb.chat.StreamChat(
        chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(**turn)), metadata=auth()
    )
    return [r.event async for r in call]


async def _agent_ids(sb: Harness) -> dict[str, str]:
    return {a.slug: a.id for a in await sb.core.agents.list(sb.org_id)}


async def test_sales_bot_hands_a_support_question_to_support_agent(sb: Harness) -> None:
    ids = await _agent_ids(sb)
    events = await _stream(sb, message="My Slack integration is not working",
                           agent="sales-bot")
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[:2] == ["turn_started", "agent_handoff"] and kinds[-1] == "completed"
    handoff = events[1].agent_handoff
    assert (handoff.from_agent_id, handoff.to_agent_id) == (ids["sales-bot"],
                                                            ids["support-agent"])
    assert handoff.reason == "support question"
    # The turn is the support agent's: it started it, answered it and cited the article.
    assert events[0].turn_started.agent_slug == "support-agent"
    completed = events[-1].completed
    assert completed.agent_id == ids["support-agent"]
    assert completed.text
    assert any(a.type == "citation" and "slack" in a.payload["slug"]
               for a in completed.actions)

    conversation = events[0].conversation_id
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth())
    assert [(m.role, m.agent_id) for m in listed.messages][-1] == (
        "assistant", ids["support-agent"])
    stored = await sb.core.store.list_events(sb.org_id, conversation, 0)
    assert any(type(e.body).__name__ == "AgentHandoff" for e in stored)
    record = await sb.core.store.get_conversation(sb.org_id, conversation)
    assert record is not None and record.agent_id == ids["support-agent"]


async def test_the_conversation_stays_with_the_new_agent(sb: Harness) -> None:
    ids = await _agent_ids(sb)
    first = await _stream(sb, message="I get an error when I log in", agent="sales-bot")
    conversation = first[0].conversation_id
    # No agent named: the conversation's agent (support-agent) answers, no new handoff.
    later = await _stream(sb, message="What plans do you offer?", conversation_id=conversation)
    assert later[0].turn_started.agent_slug == "support-agent"
    assert "agent_handoff" not in [e.WhichOneof("kind") for e in later]
    # A client that keeps pinning the agent it started with does not pull it back.
    pinned = await _stream(sb, message="And how much is Pro?", conversation_id=conversation,
                           agent="sales-bot")
    assert pinned[0].turn_started.agent_slug == "support-agent"
    assert pinned[-1].completed.agent_id == ids["support-agent"]
    assert "agent_handoff" not in [e.WhichOneof("kind") for e in pinned]


async def test_sales_questions_stay_with_sales_bot(sb: Harness) -> None:
    ids = await _agent_ids(sb)
    events = await _stream(sb, message="How much does the Pro plan cost?", agent="sales-bot")
    assert events[0].turn_started.agent_slug == "sales-bot"
    assert events[-1].completed.agent_id == ids["sales-bot"]
    assert "agent_handoff" not in [e.WhichOneof("kind") for e in events]


async def test_target_routing_rules_apply_after_a_handoff(sb: Harness) -> None:
    await sb.apply_agent("""
        name: Front desk
        slug: front-desk
        provider: {kind: scripted, reply: "front desk here"}
        handoffs:
          - to: back-office
            when: {keywords: [invoice]}
    """)
    await sb.apply_agent("""
        name: Back office
        slug: back-office
        provider: {kind: scripted, reply: "back office here"}
        handoffs:
          - to: front-desk
            when: {keywords: [invoice]}
        routing:
          - when: {keywords: [disputed]}
            team: billing
    """)
    answered = await _stream(sb, message="an invoice question", agent="front-desk")
    assert answered[-1].completed.text == "back office here"  # one hop: no ping-pong
    routed = await _stream(sb, message="a disputed invoice", agent="front-desk")
    kinds = [e.WhichOneof("kind") for e in routed]
    assert kinds[:3] == ["turn_started", "agent_handoff", "routed"]
    assert routed[-1].completed.routing.team == "billing"


async def test_missing_target_is_skipped_not_fatal(sb: Harness) -> None:
    await sb.apply_agent("""
        name: Lonely
        slug: lonely
        provider: {kind: scripted, reply: "still here"}
        handoffs:
          - to: nobody-home
            when: {keywords: [help]}
    """)
    reply = await sb.chat_once("help me", agent="lonely")
    assert reply.completed.text == "still here"
    assert reply.agent_slug == "lonely"
