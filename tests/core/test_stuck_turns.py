"""Turns are never left `running`: a turn whose final write failed is stored as failed once
the store allows, a turn a crash left running is stored as failed at start-up with an
error event, and neither leaves its Idempotency-Key answering 409 forever.

The crash is real as far as the store is concerned: the database is copied with SQLite's
backup API while a turn streams (exactly what a process killed at that moment leaves on
disk), and a second Switchboard starts on the copy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from core.events import StreamError
from harness import Harness, auth
from shim.core_client import decode_error
from switchboard.v1 import chat_pb2

SLOW = " ".join(f"w{i}" for i in range(400))


@contextmanager
def write_locked(database: str) -> Iterator[None]:
    conn = sqlite3.connect(database, isolation_level=None, timeout=5)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def snapshot(database: str, target: Path) -> str:
    """The database as a process killed right now leaves it (committed state only)."""
    source = sqlite3.connect(database)
    copy = sqlite3.connect(target)
    source.backup(copy)
    copy.close()
    source.close()
    return str(target)


async def turn_status(sb: Harness, turn_id: str) -> str:
    turn = await sb.core.store.get_turn(sb.org_id, turn_id)
    assert turn is not None
    return turn.status


async def test_a_turn_whose_final_write_failed_is_stored_failed_once_possible(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS", "50")
    sb = await Harness.start(tmp_path)
    try:
        await sb.scripted_agent(reply="w1 w2 w3 w4 w5 w6", delay_ms=30)
        call = sb.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
            message="go", agent="scripted", idempotency_key="k-store")), metadata=auth())
        stream = aiter(call)
        events = [(await anext(stream)).event]  # the turn is begun (stored as running)
        with write_locked(sb.database):
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for reply in stream:
                    events.append(reply.event)
            turn_id = events[0].turn_id
            # The live stream ended with an error the client can act on.
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert decode_error(ended.value).reason == "store_unavailable"
            assert await turn_status(sb, turn_id) == "running"
        for _ in range(100):
            if await turn_status(sb, turn_id) == "failed":
                break
            await asyncio.sleep(0.05)
        assert await turn_status(sb, turn_id) == "failed"
        stored = await sb.core.store.list_events(sb.org_id, events[0].conversation_id, 0,
                                                 turn_id=turn_id)
        assert isinstance(stored[-1].body, StreamError)
        assert stored[-1].body.reason == "store_unavailable"
        assert {e.seq for e in events} <= {e.seq for e in stored}
        # The key is not stuck on "still running elsewhere": the retry runs the turn.
        retry = await sb.chat_once("go", agent="scripted", idempotency_key="k-store")
        assert retry.completed.text == "w1 w2 w3 w4 w5 w6"
        assert retry.turn_id != turn_id
    finally:
        await sb.stop()


async def test_a_turn_a_crash_left_running_ends_with_an_incomplete_event(
        tmp_path: Path) -> None:
    first = await Harness.start(tmp_path / "a")
    try:
        await first.scripted_agent(reply=SLOW, delay_ms=20)
        call = first.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
            message="go", agent="scripted", idempotency_key="k-crash")), metadata=auth())
        seen = []
        async for reply in call:
            seen.append(reply.event)
            if len(seen) == 5:
                break
        crashed = snapshot(first.database, tmp_path / "crashed.db")
        call.cancel()
    finally:
        await first.stop()
    conversation, turn_id = seen[0].conversation_id, seen[0].turn_id
    sb = await Harness.start(tmp_path / "b", database=crashed)
    try:
        assert await turn_status(sb, turn_id) == "failed"
        # gRPC: a reconnecting client learns the turn ended without completing.
        resumed = sb.chat.ResumeStream(chat_pb2.ResumeStreamRequest(
            conversation_id=conversation, latest_turn=True), metadata=auth())
        replayed = [r.event async for r in resumed]
        assert replayed and replayed[-1].HasField("error")
        assert replayed[-1].error.reason == "turn_incomplete"
        # Halo: the resume answers the same, as an error in its stream, not a 404.
        session = "chat_" + conversation.replace("-", "")
        async with sb.http.get("/api/sdk/chat/stream/resume",
                               params={"session_id": session},
                               headers={"Authorization": "Bearer sk_demo_secret_key"}) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"]["code"] == "incomplete"
        # aibot (SSE): an error event, not a 204.
        async with sb.http.get(f"/v1/aibot/bots/scripted/stream?conversationId={conversation}",
                               headers={"Authorization": "Bearer sk_demo_secret_key"}) as resp:
            body = await resp.text()
            assert resp.status == 200, body
            assert "turn_incomplete" in body, body
        # An SSE client reconnecting with the id of the last event it saw live (events
        # the crash kept from being stored) learns the same, not a 204.
        async with sb.http.get(f"/v1/aibot/bots/scripted/stream?conversationId={conversation}",
                               headers={"Authorization": "Bearer sk_demo_secret_key",
                                        "Last-Event-ID": str(seen[-1].seq)}) as resp:
            body = await resp.text()
            assert resp.status == 200, body
            assert "turn_incomplete" in body, body
        # The key names a new turn, not "still running elsewhere".
        await sb.scripted_agent(reply="done")  # same agent, quicker this time
        retry = await sb.chat_once("go", agent="scripted", idempotency_key="k-crash")
        assert retry.turn_id != turn_id and retry.completed.text == "done"
    finally:
        await sb.stop()


async def test_a_resumed_turn_is_running_again_and_a_crash_leaves_it_failed(
        tmp_path: Path) -> None:
    first = await Harness.start(tmp_path / "a")
    try:
        await first.apply_agent({"name": "tools", "slug": "tools", "provider": {
            "kind": "scripted", "reply": SLOW, "delay_ms": 20,
            "tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]}})
        schema = struct_pb2.Struct()
        schema.update({"type": "object", "properties": {"q": {"type": "string"}}})
        tool = chat_pb2.ToolDefinition(name="lookup", description="client tool",
                                       parameters=schema)
        reply = await first.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
            message="go", agent="tools", user_id="visitor-7", client_tools=[tool])),
            metadata=auth())
        assert reply.HasField("interrupt"), reply
        call = first.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
            conversation_id=reply.conversation_id,
            resume=chat_pb2.ResumeInput(interrupt_id=reply.interrupt.interrupt_id, results=[
                chat_pb2.ToolResultInput(tool_call_id=c.tool_call_id, result_json='"ok"')
                for c in reply.pending_tool_calls]))), metadata=auth())
        seen = 0
        async for _ in call:
            seen += 1
            if seen == 5:
                break
        assert await turn_status(first, reply.turn_id) == "running"
        crashed = snapshot(first.database, tmp_path / "crashed.db")
        call.cancel()
    finally:
        await first.stop()
    sb = await Harness.start(tmp_path / "b", database=crashed)
    try:
        assert await turn_status(sb, reply.turn_id) == "failed"
        with pytest.raises(grpc.aio.AioRpcError):
            await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
                conversation_id=reply.conversation_id,
                resume=chat_pb2.ResumeInput(interrupt_id=reply.interrupt.interrupt_id))),
                metadata=auth())
    finally:
        await sb.stop()


SLOW_FLOW = """
    name: Slow
    slug: slow-flow
    provider: {kind: scripted, delay_ms: 100, reply: "thinking about {message} a b c d e f"}
    flows:
      ask_then_think:
        steps:
          - ask: {text: "Your name?", input: {kind: text}, into: name}
          - llm: "Say hi to {{name}}"
          - end: done
"""


async def test_a_flow_turn_whose_writes_failed_is_stored_failed_once_possible(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import WIDGET
    from switchboard.v1 import flow_pb2, flow_pb2_grpc

    monkeypatch.setenv("SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS", "50")
    sb = await Harness.start(tmp_path)
    try:
        await sb.apply_agent(SLOW_FLOW)
        flows = flow_pb2_grpc.FlowServiceStub(sb.channel)
        s = await flows.CreateSession(flow_pb2.CreateSessionRequest(agent="slow-flow"),
                                      metadata=auth(WIDGET))
        first = (await flows.SendMessage(flow_pb2.SendMessageRequest(
            text="go", intent_name="ask_then_think"), metadata=auth(s.token))).reply
        answer = asyncio.ensure_future(flows.SendMessage(flow_pb2.SendMessageRequest(
            wait_token=first.wait_token, text="Bo"), metadata=auth(s.token)))
        for _ in range(200):  # the answer's turn is begun (stored running)
            rows = await sb.core.store.db.fetchall(  # type: ignore[attr-defined]
                "SELECT id FROM turns WHERE status = 'running'")
            if rows:
                break
            await asyncio.sleep(0.01)
        turn_id = str(rows[0][0])
        with write_locked(sb.database):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await answer
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await turn_status(sb, turn_id) == "running"
        for _ in range(100):
            if await turn_status(sb, turn_id) == "failed":
                break
            await asyncio.sleep(0.05)
        assert await turn_status(sb, turn_id) == "failed"
    finally:
        await sb.stop()
