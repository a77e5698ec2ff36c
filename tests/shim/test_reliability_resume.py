"""Resumable streams over HTTP: every SSE dialect reconnects with `Last-Event-ID` (header,
`lastEventId` query parameter, or the header on its POST send route), the Halo text
stream with a byte offset. A stream cut at any point and resumed equals the
uninterrupted stream byte for byte, whether the turn is still running or stored."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.ids import canonical_conversation_id
from harness import SECRET, WIDGET, Harness, auth, with_engine
from switchboard.v1 import chat_pb2, events_pb2

# Multi-byte text, so cuts fall inside UTF-8 characters too.
REPLY = " ".join(["héllo wörld ✓"] * 16)
DELAY_MS = 10
CUTS = 8
ID_LINE = re.compile(rb"^id: (\d+)$", re.MULTILINE)


@pytest.fixture
async def sbg(tmp_path: Path) -> AsyncIterator[Harness]:
    """A Switchboard whose turns survive a disconnect for 5 s (reattach window)."""
    harness = await Harness.start(tmp_path, engine=with_engine(detach_grace_s=5.0))
    try:
        yield harness
    finally:
        await harness.stop()


def bearer(key: str = SECRET, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def turn_running(sb: Harness, conversation_id: str) -> bool:
    canonical = canonical_conversation_id(conversation_id)
    assert canonical is not None
    live = sb.core.engine.live.get(canonical)
    return live is not None and not live.done


async def wait_stored(sb: Harness, conversation_id: str) -> None:
    for _ in range(500):
        if not await turn_running(sb, conversation_id):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the turn never finished")


async def cut(sb: Harness, method: str, path: str, k: int, id_header: str,
              **kw: Any) -> tuple[bytes, str]:
    """Open a stream, read exactly its first k body bytes, drop the connection."""
    resp = await sb.http.request(method, path, **kw)
    try:
        assert resp.status == 200
        got = await resp.content.readexactly(k)
        return got, resp.headers[id_header]
    finally:
        resp.close()  # closes the connection: the server sees the client leave


async def read_all(sb: Harness, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
    async with sb.http.request(method, path, **kw) as resp:
        return resp.status, await resp.read()


# -- SSE ----------------------------------------------------------------------------------


def sse_prefix(received: bytes) -> tuple[bytes, int | None]:
    """What an SSE client keeps of a cut stream: the complete events up to the last one
    carrying an `id:`, and that id (None if no event with an id arrived)."""
    end = 0
    last: int | None = None
    position = 0
    while (boundary := received.find(b"\n\n", position)) >= 0:
        block = received[position:boundary]
        position = boundary + 2
        match = ID_LINE.search(block)
        if match:
            end, last = position, int(match.group(1))
    return received[:end], last


Resumer = Callable[[Harness, str, int | None, int], Awaitable[tuple[int, bytes]]]


def slug_resumer(agent: str) -> Resumer:
    async def resume(sb: Harness, conversation: str, last_id: int | None,
                     mode: int) -> tuple[int, bytes]:
        """mode 0: GET + Last-Event-ID header; 1: GET + lastEventId query; 2: POST send
        route + Last-Event-ID header (what fetch-event-source does on a retry)."""
        if mode == 2 and last_id is not None:
            return await read_all(sb, "POST", f"/v1/api/chat/{agent}", headers=bearer(
                **{"Last-Event-ID": str(last_id)}), json={
                "message": "go", "stream": True, "conversationId": conversation})
        params = {"conversationId": conversation}
        headers = bearer()
        if last_id is not None and mode == 1:
            params["lastEventId"] = str(last_id)
        elif last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        return await read_all(sb, "GET", f"/v1/api/chat/{agent}/stream", params=params,
                              headers=headers)
    return resume


def aibot_resumer(agent: str) -> Resumer:
    async def resume(sb: Harness, conversation: str, last_id: int | None,
                     mode: int) -> tuple[int, bytes]:
        if mode == 2 and last_id is not None:
            return await read_all(
                sb, "POST", f"/v1/aibot/bots/{agent}/send-message",
                headers=bearer(**{"Last-Event-ID": str(last_id)}),
                json={"conversationId": conversation,
                      "messages": [{"role": "user", "content": "go"}]})
        params = {"conversationId": conversation}
        headers = bearer()
        if last_id is not None and mode == 1:
            params["lastEventId"] = str(last_id)
        elif last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        return await read_all(sb, "GET", f"/v1/aibot/bots/{agent}/stream", params=params,
                              headers=headers)
    return resume


async def check_sse_cuts(sb: Harness, path: str, body: dict[str, Any], resume: Resumer,
                         full: bytes, cuts: list[int]) -> int:
    """Cut a new turn after each k bytes, resume, compare; returns how many resumptions
    attached to a turn that was still running."""
    live = 0
    for i, k in enumerate(cuts):
        received, conversation = await cut(sb, "POST", path, k, "X-Conversation-Id",
                                           json=body, headers=bearer())
        prefix, last_id = sse_prefix(received)
        if i % 2:
            await wait_stored(sb, conversation)  # resumes from the store
        elif await turn_running(sb, conversation):
            live += 1
        status, rest = await resume(sb, conversation, last_id, i % 3)
        assert status in (200, 204), rest
        assert (status == 204) == (rest == b"")
        assert prefix + rest == full, f"cut at {k} (last id {last_id})"
        await wait_stored(sb, conversation)
    return live


def cut_points(full: bytes, seed: int) -> list[int]:
    rng = random.Random(seed)
    # Early cuts (first 40%) resume while the turn still runs; the rest anywhere.
    points = [rng.randrange(1, len(full) * 2 // 5) for _ in range(CUTS // 2)]
    points += [rng.randrange(1, len(full)) for _ in range(CUTS - len(points))]
    return [0, *points, len(full)]


async def test_slug_stream_cut_anywhere_and_resumed_equals_uninterrupted(sbg: Harness) -> None:
    await sbg.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS)
    body = {"message": "go", "stream": True}
    status, full = await read_all(sbg, "POST", "/v1/api/chat/uni", json=body, headers=bearer())
    assert status == 200 and full.endswith(b"data: [DONE]\n\n")
    live = await check_sse_cuts(sbg, "/v1/api/chat/uni", body, slug_resumer("uni"), full,
                                cut_points(full, 11))
    assert live >= 1


async def test_aibot_stream_cut_anywhere_and_resumed_equals_uninterrupted(
        sbg: Harness) -> None:
    await sbg.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS)
    path = "/v1/aibot/bots/uni/send-message"
    body = {"messages": [{"role": "user", "content": "go"}]}
    status, full = await read_all(sbg, "POST", path, json=body, headers=bearer())
    assert status == 200 and full.endswith(b"data: [DONE]\n\n")
    live = await check_sse_cuts(sbg, path, body, aibot_resumer("uni"), full,
                                cut_points(full, 12))
    assert live >= 1


async def test_aibot_interrupt_cut_between_its_two_frames(sbg: Harness) -> None:
    """The interrupt renders as two frames (the event, then `[DONE]`); only the last
    carries the id, so a cut between them resumes with exactly the missing frames."""
    await sbg.scripted_agent("finder", args_chunk=3, delay_ms=DELAY_MS, tool_calls=[
        {"name": "where", "arguments": {"city": "Zürich ✓"}}])
    tools = [{"name": "where", "description": "Locate",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    path = "/v1/aibot/bots/finder/send-message"
    body = {"messages": [{"role": "user", "content": "where?"}], "tools": tools}
    status, original = await read_all(sbg, "POST", path, json=body, headers=bearer())
    assert status == 200
    blocks = original.split(b"\n\n")
    assert blocks[-3].startswith(b'data: {"type": "interrupt"')  # no id line
    assert re.fullmatch(rb"id: \d+\ndata: \[DONE\]", blocks[-2])
    between = len(original) - len(blocks[-2]) - 2  # right after the interrupt frame
    rng = random.Random(13)
    for k in [between, between - 1, between + 1, *(rng.randrange(1, len(original))
                                                   for _ in range(5))]:
        received, conversation = await cut(sbg, "POST", path, k, "X-Conversation-Id",
                                           json=body, headers=bearer())
        await wait_stored(sbg, conversation)
        # The interrupt id and expiry differ per conversation: compare with this
        # conversation's own stream, replayed whole.
        status, whole = await read_all(sbg, "GET", "/v1/aibot/bots/finder/stream",
                                       params={"conversationId": conversation},
                                       headers=bearer())
        assert status == 200 and len(whole) == len(original)
        prefix, last_id = sse_prefix(received)
        status, rest = await aibot_resumer("finder")(sbg, conversation, last_id, 0)
        assert prefix + rest == whole, f"cut at {k}"


async def test_replay_from_the_start_equals_the_original(sbg: Harness) -> None:
    """Without a cursor a reconnect replays the latest turn whole: the original bytes."""
    await sbg.scripted_agent("uni", reply=REPLY)
    async with sbg.http.post("/v1/api/chat/uni", json={"message": "go", "stream": True},
                             headers=bearer()) as resp:
        original, conversation = await resp.read(), resp.headers["X-Conversation-Id"]
    for query in ({"conversationId": conversation},
                  {"conversationId": "chat_" + str(canonical_conversation_id(conversation))}):
        status, again = await read_all(sbg, "GET", "/v1/api/chat/uni/stream", params=query,
                                       headers=bearer())
        assert status == 200 and again == original


async def test_nothing_left_is_204(sbg: Harness) -> None:
    await sbg.scripted_agent("uni", reply="short ✓")
    async with sbg.http.post("/v1/api/chat/uni", json={"message": "go", "stream": True},
                             headers=bearer()) as resp:
        raw, conversation = await resp.read(), resp.headers["X-Conversation-Id"]
    last = int(ID_LINE.findall(raw)[-1])
    async with sbg.http.get("/v1/api/chat/uni/stream", params={
            "conversationId": conversation, "lastEventId": str(last)},
            headers=bearer()) as resp:
        assert resp.status == 204 and await resp.read() == b""


@pytest.mark.parametrize(("path", "envelope_key"), [
    ("/v1/api/chat/uni/stream", "error"), ("/v1/aibot/bots/uni/stream", "code")])
async def test_reconnect_errors_use_the_dialect_envelope(sb: Harness, path: str,
                                                         envelope_key: str) -> None:
    await sb.scripted_agent("uni", reply="ok")
    async with sb.http.get(path, headers=bearer()) as resp:
        assert resp.status == 400 and envelope_key in await resp.json()
    async with sb.http.get(path, params={"conversationId": "conv_" + "0" * 32,
                                         "lastEventId": "3"}, headers=bearer()) as resp:
        assert resp.status == 404 and envelope_key in await resp.json()
    for bad in ("x", "-1", "1.5"):
        async with sb.http.get(path, params={"conversationId": "conv_" + "0" * 32},
                               headers=bearer(**{"Last-Event-ID": bad})) as resp:
            assert resp.status == 400, bad
            await resp.read()
    async with sb.http.get(path, params={"conversationId": "conv_" + "0" * 32}) as resp:
        assert resp.status == 401
        await resp.read()


# -- Halo text stream -----------------------------------------------------------------------


HALO_ACTIONS = [{"type": "highlight", "payload": {"selector": "#plan", "note": "ümlaut ✓"}}]


async def test_halo_stream_cut_at_any_byte_and_resumed_equals_uninterrupted(
        sbg: Harness) -> None:
    await sbg.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS, actions=HALO_ACTIONS)
    body = {"message": "go", "agent_id": "uni"}
    halo = {"Authorization": f"Bearer {WIDGET}"}
    status, full = await read_all(sbg, "POST", "/api/sdk/chat/stream", json=body,
                                  headers=halo)
    assert status == 200 and full.endswith(b"\x1e")
    assert "héllo".encode() in full and b"__ACTIONS__" in full
    live = 0
    for i, k in enumerate(cut_points(full, 14)):
        received, session = await cut(sbg, "POST", "/api/sdk/chat/stream", k, "X-Session-Id",
                                      json=body, headers=halo)
        assert len(received) == k
        if i % 2:
            await wait_stored(sbg, session)
        elif await turn_running(sbg, session):
            live += 1
        async with sbg.http.get("/api/sdk/chat/stream/resume",
                                params={"session_id": session, "offset": str(k)},
                                headers=halo) as resp:
            assert resp.status == 200
            assert resp.headers["X-Session-Id"] == session
            assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
            rest = await resp.read()
        assert received + rest == full, f"cut at byte {k}"
        await wait_stored(sbg, session)
    assert live >= 1


async def test_halo_resume_errors(sb: Harness) -> None:
    halo = {"Authorization": f"Bearer {WIDGET}"}
    for params, status, code in [
        ({}, 400, "invalid_request"),
        ({"session_id": "chat_x", "offset": "-1"}, 400, "invalid_request"),
        ({"session_id": "chat_x", "offset": "ab"}, 400, "invalid_request"),
        ({"session_id": "chat_00000000-0000-0000-0000-000000000000"}, 404,
         "session_not_found"),
    ]:
        async with sb.http.get("/api/sdk/chat/stream/resume", params=params,
                               headers=halo) as resp:
            assert resp.status == status, params
            assert (await resp.json())["error"]["code"] == code


# -- disconnect then reattach ---------------------------------------------------------------


async def test_disconnect_then_reattach_within_grace_loses_nothing(sbg: Harness) -> None:
    await sbg.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS)
    body = {"message": "go", "stream": True}
    status, full = await read_all(sbg, "POST", "/v1/api/chat/uni", json=body, headers=bearer())
    received, conversation = await cut(sbg, "POST", "/v1/api/chat/uni", 120,
                                       "X-Conversation-Id", json=body, headers=bearer())
    await asyncio.sleep(0.3)  # detached: nobody follows the turn, it keeps running
    assert await turn_running(sbg, conversation)
    prefix, last_id = sse_prefix(received)
    status, rest = await slug_resumer("uni")(sbg, conversation, last_id, 0)
    assert status == 200 and prefix + rest == full
    listed = await sbg.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth())
    reply = next(m for m in listed.messages if m.role == "assistant")
    assert reply.status == events_pb2.TURN_STATUS_COMPLETED and reply.content == REPLY


async def test_without_grace_a_disconnect_cancels_the_turn(sb: Harness) -> None:
    await sb.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS)
    _received, conversation = await cut(sb, "POST", "/v1/api/chat/uni", 60,
                                       "X-Conversation-Id",
                                       json={"message": "go", "stream": True},
                                       headers=bearer())
    await wait_stored(sb, conversation)
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth())
    reply = next(m for m in listed.messages if m.role == "assistant")
    assert reply.status == events_pb2.TURN_STATUS_CANCELLED
    assert 0 < len(reply.content) < len(REPLY)


def test_sse_prefix_keeps_events_up_to_the_last_id() -> None:
    raw = b'id: 2\ndata: a\n\ndata: {"type": "interrupt"}\n\nid: 3\nda'
    assert sse_prefix(raw) == (b"id: 2\ndata: a\n\n", 2)
    assert sse_prefix(b"id: 2\nda") == (b"", None)
