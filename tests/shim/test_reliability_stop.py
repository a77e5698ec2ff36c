"""Stop endpoints of the HTTP dialects: the turn is stored with its partial text and
usage, the live stream ends with its completed event (and a `stopped` marker in the SSE
dialects), and a stop with nothing running says so."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2, events_pb2

LONG = " ".join(f"wörd{i}" for i in range(300))


def bearer(key: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def stored_reply(sb: Harness, conversation: str) -> chat_pb2.Message:
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth())
    return next(m for m in listed.messages if m.role == "assistant")


async def sse_blocks(resp: aiohttp.ClientResponse) -> list[list[str]]:
    """Read the rest of an SSE response as blocks of lines."""
    raw = (await resp.read()).decode("utf-8")
    return [b.split("\n") for b in raw.split("\n\n") if b]


async def read_block(resp: aiohttp.ClientResponse) -> list[str]:
    return (await resp.content.readuntil(b"\n\n")).decode("utf-8").rstrip("\n").split("\n")


def data_of(block: list[str]) -> str:
    return next(line.removeprefix("data: ") for line in block if line.startswith("data: "))


async def test_slug_stop_keeps_partial_text_and_usage(sb: Harness) -> None:
    await sb.scripted_agent("long", reply=LONG, delay_ms=10)
    async with sb.http.post("/v1/api/chat/long", json={"message": "go", "stream": True},
                            headers=bearer()) as resp:
        conversation = resp.headers["X-Conversation-Id"]
        chunks = [json.loads(data_of(await read_block(resp)))["chunk"] for _ in range(5)]
        async with sb.http.post("/v1/api/chat/long/stop", json={
                "conversationId": conversation}, headers=bearer()) as stop:
            assert stop.status == 200
            assert await stop.json() == {"data": {"stopped": True,
                                                  "conversationId": conversation},
                                         "error": None}
        rest = await sse_blocks(resp)
    assert rest[-2] == ["event: stopped", 'data: {"chunk": "", "stopped": true}']
    assert rest[-1][0].startswith("id: ") and rest[-1][1] == "data: [DONE]"
    chunks += [json.loads(data_of(b))["chunk"] for b in rest[:-2]]
    streamed = "".join(chunks)
    reply = await stored_reply(sb, conversation)
    assert reply.status == events_pb2.TURN_STATUS_STOPPED and reply.content == streamed
    assert 5 <= len(streamed.split()) < 300 and reply.usage.completion_tokens > 0
    # Nothing runs any more: a second stop says so.
    async with sb.http.post("/chat/long/stop", json={"conversationId": conversation},
                            headers=bearer()) as stop:
        assert (await stop.json())["data"]["stopped"] is False


async def test_aibot_stop_keeps_partial_text_and_usage(sb: Harness) -> None:
    await sb.scripted_agent("long", reply=LONG, delay_ms=10)
    async with sb.http.post("/v1/aibot/bots/long/send-message", json={
            "messages": [{"role": "user", "content": "go"}]}, headers=bearer()) as resp:
        conversation = resp.headers["X-Conversation-Id"]
        texts = [json.loads(data_of(await read_block(resp)))["content"] for _ in range(5)]
        async with sb.http.post("/v1/aibot/bots/long/stop", json={
                "conversationId": conversation}, headers=bearer()) as stop:
            assert stop.status == 200
            assert await stop.json() == {"stopped": True, "conversationId": conversation}
        rest = await sse_blocks(resp)
    assert rest[-2] == ['data: {"type": "stopped"}']  # no id: the [DONE] frame carries it
    assert rest[-1][0].startswith("id: ") and rest[-1][1] == "data: [DONE]"
    texts += [json.loads(data_of(b))["content"] for b in rest[:-2]]
    reply = await stored_reply(sb, conversation)
    assert reply.status == events_pb2.TURN_STATUS_STOPPED and reply.content == "".join(texts)
    assert reply.usage.completion_tokens > 0


async def test_halo_stop_keeps_partial_text_and_usage(sb: Harness) -> None:
    await sb.scripted_agent("long", reply=LONG, delay_ms=10)
    widget = bearer(WIDGET)
    async with sb.http.post("/api/sdk/chat/stream", json={"message": "go", "agent_id": "long"},
                            headers=widget) as resp:
        session = resp.headers["X-Session-Id"]
        head = await resp.content.readexactly(40)
        async with sb.http.post("/api/sdk/chat/stop", json={"session_id": session},
                                headers=widget) as stop:
            assert stop.status == 200
            assert await stop.json() == {"stopped": True, "session_id": session}
        raw = (head + await resp.read()).decode("utf-8")
    # The stream ends as every Halo stream does: with the final actions record.
    assert raw.endswith("\x1e__ACTIONS__[]\x1e")
    streamed = raw.removesuffix("\x1e__ACTIONS__[]\x1e")
    reply = await stored_reply(sb, session)
    assert reply.status == events_pb2.TURN_STATUS_STOPPED and reply.content == streamed
    assert 0 < len(streamed) < len(LONG) and reply.usage.completion_tokens > 0


async def test_stop_accepts_any_rendering_of_the_conversation_id(sb: Harness) -> None:
    await sb.scripted_agent("echo", reply="echo")
    reply = await sb.chat_once("hi", agent="echo")  # a secret-key conversation
    canonical = reply.conversation_id
    async with sb.http.post("/api/sdk/chat/stop", json={"session_id": canonical},
                            headers=bearer(SECRET)) as resp:
        assert await resp.json() == {"stopped": False, "session_id": "chat_" + canonical}
    async with sb.http.post("/v1/aibot/bots/echo/stop", json={
            "conversationId": "chat_" + canonical}, headers=bearer()) as resp:
        assert await resp.json() == {"stopped": False,
                                     "conversationId": "conversation-" + canonical}


@pytest.mark.parametrize(("path", "body_key", "error_of"), [
    ("/api/sdk/chat/stop", "session_id", lambda b: b["error"]["code"]),
    ("/v1/api/chat/echo/stop", "conversationId", lambda b: b["error"]["name"]),
    ("/v1/aibot/bots/echo/stop", "conversationId", lambda b: b["code"]),
])
async def test_stop_errors_use_the_dialect_envelope(sb: Harness, path: str, body_key: str,
                                                    error_of: Any) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    cases: list[tuple[Any, dict[str, str], int]] = [
        (b"{not json", bearer(), 400),
        ({}, bearer(), 400),
        ({body_key: 7}, bearer(), 400),
        ({body_key: unknown}, bearer(), 404),
        ({body_key: unknown}, {"Authorization": "Bearer nope"}, 401),
    ]
    for body, headers, status in cases:
        kw: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
        async with sb.http.post(path, headers=headers, **kw) as resp:
            assert resp.status == status, (body, await resp.text())
            assert error_of(await resp.json())
