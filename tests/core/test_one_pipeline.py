"""Flow messages and chat turns are turns of one pipeline: one claim per conversation,
one numbering, one live registry, one ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from test_flow_grpc import send, session

from core.events import Completed, TurnStarted
from harness import SECRET, Harness, auth
from switchboard.v1 import chat_pb2


async def test_flow_and_chat_turns_share_one_numbering(sb: Harness) -> None:
    s = await session(sb, key=SECRET, agent="support-agent")
    await send(sb, s.token, text="x", intent_name="order_status")
    chat = await sb.chat_once("How do I set up event tracking?", agent="support-agent",
                              conversation_id=s.conversation_id)
    await send(sb, s.token, text="x", intent_name="order_status")
    events = await sb.core.store.list_events(sb.org_id, s.conversation_id, 0)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    turns = [e.turn_id for e in events if isinstance(e.body, TurnStarted)]
    assert len(turns) == 3 and turns[1] == chat.turn_id
    assert sum(isinstance(e.body, Completed) for e in events) == 3
    conversation = await sb.core.store.get_conversation(sb.org_id, s.conversation_id)
    assert conversation is not None and conversation.last_seq == events[-1].seq


async def test_a_running_flow_message_holds_its_conversation(sb: Harness) -> None:
    """While a flow message runs (here: its generated step waits for the model), the
    conversation is claimed and followable like a chat turn."""
    await sb.apply_agent("""
        name: Slow flows
        slug: slow-flows
        provider: {kind: scripted, reply: "generated", delay_ms: 300}
        flows:
          ask_model:
            steps:
              - id: gen
                llm: {prompt: "{{text}}"}
    """)
    s = await session(sb, key=SECRET, agent="slow-flows")
    message = asyncio.create_task(send(sb, s.token, text="hi", intent_name="ask_model"))
    for _ in range(200):
        live = sb.core.engine.live.get(s.conversation_id)
        if live is not None:
            break
        await asyncio.sleep(0.01)
    assert live is not None and not live.done
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
            message="hello", agent="slow-flows", conversation_id=s.conversation_id)),
            metadata=auth())
    assert err.value.code() == grpc.StatusCode.ABORTED
    reply = await message
    assert any("generated" in str(b.payload) for b in reply.blocks)
    assert sb.core.engine.live.get(s.conversation_id) is None


async def test_a_chat_turn_the_store_refuses_is_stored_as_failed(
        sb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's commit: a refused commit leaves no turn running (the conversation
    takes its next turn) and the client gets an internal error, not a hang."""
    await sb.scripted_agent(reply="fine")
    first = await sb.chat_once("one", agent="scripted")
    store = sb.core.store
    real = store.commit_turn
    calls = 0

    async def broken(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "commit_turn", broken)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once("two", agent="scripted", conversation_id=first.conversation_id)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    monkeypatch.undo()
    last = await store.last_turn(sb.org_id, first.conversation_id)
    assert last is not None and last.status == "failed"
    third = await sb.chat_once("three", agent="scripted",
                               conversation_id=first.conversation_id)
    assert third.completed.text == "fine"
