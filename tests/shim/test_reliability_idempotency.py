"""`Idempotency-Key` on every HTTP send route: concurrent duplicates make one model call
and one stored turn and get byte-identical responses; a stored turn is replayed byte for
byte; the same key with a different body is refused in each dialect's envelope."""

from __future__ import annotations

import asyncio
from typing import Any

from core.limits import MAX_IDEMPOTENCY_KEY_CHARS
from core.providers.registry import build_provider
from core.providers.scripted import ScriptedProvider
from harness import SECRET, WIDGET, Harness


async def provider(sb: Harness, slug: str) -> ScriptedProvider:
    agent = await sb.core.agents.get(sb.org_id, slug)
    assert agent is not None
    built = build_provider(agent.definition, agent.id)
    assert isinstance(built, ScriptedProvider)
    return built


async def turn_count(sb: Harness) -> int:
    row = await sb.core.store.db.fetchone("SELECT COUNT(*) FROM turns")  # type: ignore[attr-defined]
    return int(row[0])


def headers(key: str, idempotency_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}


async def send(sb: Harness, path: str, body: Any, key: str,
               idempotency_key: str) -> tuple[int, bytes]:
    async with sb.http.post(path, json=body, headers=headers(key, idempotency_key)) as resp:
        return resp.status, await resp.read()


async def test_fifty_concurrent_halo_sends_make_one_turn(sb: Harness) -> None:
    await sb.scripted_agent("once", reply="exactly once ✓", delay_ms=5)
    scripted = await provider(sb, "once")
    calls = scripted.calls
    body = {"message": "pay me once", "agent_id": "once", "user_id": "u1"}
    replies = await asyncio.gather(*(
        send(sb, "/api/sdk/chat", body, WIDGET, "order-42") for _ in range(50)))
    assert {status for status, _ in replies} == {200}
    assert len({raw for _, raw in replies}) == 1  # session id included
    assert b"exactly once" in replies[0][1] and b'"session_id":' in replies[0][1]
    assert scripted.calls - calls == 1
    assert await turn_count(sb) == 1
    # Once stored, the same key replays the stored result byte for byte.
    assert await send(sb, "/api/sdk/chat", body, WIDGET, "order-42") == replies[0]
    assert scripted.calls - calls == 1 and await turn_count(sb) == 1


async def test_concurrent_slug_stream_duplicates_share_one_turn(sb: Harness) -> None:
    await sb.scripted_agent("once", reply="héllo wörld ✓ " * 5, delay_ms=5)
    scripted = await provider(sb, "once")
    calls = scripted.calls
    body = {"message": "once", "stream": True}
    streams = await asyncio.gather(*(
        send(sb, "/v1/api/chat/once", body, SECRET, "stream-1") for _ in range(10)))
    assert len(set(streams)) == 1 and streams[0][0] == 200
    assert streams[0][1].endswith(b"data: [DONE]\n\n")
    assert scripted.calls - calls == 1 and await turn_count(sb) == 1


async def test_halo_stream_replay_is_byte_identical(sb: Harness) -> None:
    await sb.scripted_agent("once", reply="héllo ✓", actions=[
        {"type": "highlight", "payload": {"selector": "#x"}}])
    body = {"message": "hi", "agent_id": "once"}
    first = await send(sb, "/api/sdk/chat/stream", body, WIDGET, "s-1")
    again = await send(sb, "/api/sdk/chat/stream", body, WIDGET, "s-1")
    assert first[0] == 200 and first == again and await turn_count(sb) == 1


async def test_same_key_different_body_is_refused_in_every_dialect(sb: Harness) -> None:
    await sb.scripted_agent("once", reply="ok")
    # Halo: 422 (the IETF Idempotency-Key draft's status for a reused key; Halo documents
    # no 409).
    await send(sb, "/api/sdk/chat", {"message": "a", "agent_id": "once"}, WIDGET, "k-halo")
    status, raw = await send(sb, "/api/sdk/chat", {"message": "b", "agent_id": "once"},
                             WIDGET, "k-halo")
    assert status == 422 and b'"code": "idempotency_mismatch"' in raw
    # Slug: 409 ConflictError.
    await send(sb, "/v1/api/chat/once", {"message": "a"}, SECRET, "k-slug")
    async with sb.http.post("/v1/api/chat/once", json={"message": "b"},
                            headers=headers(SECRET, "k-slug")) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["name"] == "ConflictError"
    # aibot: 409, code idempotency_mismatch; before any byte of the stream.
    message = {"messages": [{"role": "user", "content": "a"}]}
    await send(sb, "/v1/aibot/bots/once/send-message", message, SECRET, "k-aibot")
    async with sb.http.post("/v1/aibot/bots/once/send-message",
                            json={"messages": [{"role": "user", "content": "b"}]},
                            headers=headers(SECRET, "k-aibot")) as resp:
        assert resp.status == 409
        assert (await resp.json())["code"] == "idempotency_mismatch"
    assert await turn_count(sb) == 3


async def test_aibot_duplicate_replays_the_stream(sb: Harness) -> None:
    await sb.scripted_agent("once", reply="ok ✓")
    body = {"messages": [{"role": "user", "content": "a"}]}
    first = await send(sb, "/v1/aibot/bots/once/send-message", body, SECRET, "dup")
    assert first == await send(sb, "/v1/aibot/bots/once/send-message", body, SECRET, "dup")
    assert await turn_count(sb) == 1


async def test_idempotency_key_length_boundary(sb: Harness) -> None:
    await sb.scripted_agent("once", reply="ok")
    body = {"message": "hi", "agent_id": "once"}
    status, _ = await send(sb, "/api/sdk/chat", body, WIDGET, "k" * MAX_IDEMPOTENCY_KEY_CHARS)
    assert status == 200
    status, raw = await send(sb, "/api/sdk/chat", body, WIDGET,
                             "k" * (MAX_IDEMPOTENCY_KEY_CHARS + 1))
    assert status == 400, raw
