"""Halo SDK dialect over real sockets: the spec's examples, unary ⇄ stream equivalence,
multi-turn sessions, routing, disconnects."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path

import pytest
from halo_client import (
    SPEC_CURL_BODY,
    STREAM,
    headers,
    messages,
    parse_stream,
    post,
    stream,
)

from harness import SECRET, WIDGET, Harness
from switchboard.v1 import events_pb2

NODE_SNIPPET = Path(__file__).resolve().parents[1] / "node" / "halo_stream.mjs"


def assert_session_id(value: str) -> str:
    assert value.startswith("chat_")
    return str(uuid.UUID(value.removeprefix("chat_")))


async def test_spec_curl_example_returns_every_field_grounded_in_the_kb(sb: Harness) -> None:
    status, body = await post(sb, SPEC_CURL_BODY)
    assert status == 200, body
    assert set(body) == {"text", "session_id", "agent_id", "actions", "confidence"}
    assert_session_id(body["session_id"])
    support = await sb.core.agents.get(sb.org_id, "support-agent")
    assert support is not None and body["agent_id"] == support.id
    assert isinstance(body["actions"], list)
    assert 0.0 <= body["confidence"] <= 1.0
    text = body["text"].lower()
    # Grounded in the demo KB article and in the request's "Token expired" context.
    assert "token expired" in text
    assert "reconnect" in text


async def test_stream_sends_headers_text_and_final_record(sb: Harness) -> None:
    await sb.scripted_agent(reply="Step one, then step two.")
    status, hdrs, raw = await stream(sb, {"message": "hi", "agent_id": "scripted"})
    assert status == 200
    assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    assert hdrs["Transfer-Encoding"] == "chunked"
    assert_session_id(hdrs["X-Session-Id"])
    agent = await sb.core.agents.get(sb.org_id, "scripted")
    assert agent is not None and hdrs["X-Agent-Id"] == agent.id
    text, actions, final = parse_stream(raw)
    assert text == "Step one, then step two."
    assert actions == [] and final == []
    assert raw.endswith("\x1e__ACTIONS__[]\x1e")


async def test_stream_text_is_flushed_delta_by_delta(sb: Harness) -> None:
    await sb.scripted_agent(reply="a b c d e f", delay_ms=60)
    chunks: list[bytes] = []
    async with sb.http.post(STREAM, json={"message": "x", "agent_id": "scripted"},
                            headers=headers()) as resp:
        async for chunk in resp.content.iter_any():
            chunks.append(chunk)
    # Each word arrives on its own (60 ms apart), not as one buffered body.
    assert len(chunks) >= 5
    assert b"".join(chunks).decode().startswith("a b c d e f")


async def test_stream_and_unary_agree_on_text_and_actions(sb: Harness) -> None:
    actions = [
        {"type": "highlight", "payload": {"selector": "#billing", "message": "Here"}},
        {"type": "create_ticket", "payload": {"ticket_id": "tkt_1", "priority": 2}},
    ]
    await sb.scripted_agent(reply="Look at the billing tab.", actions=actions, confidence=0.8)
    body = {"message": "where?", "agent_id": "scripted"}
    status, unary = await post(sb, body)
    assert status == 200
    status, hdrs, raw = await stream(sb, body)
    assert status == 200
    text, per_action, final = parse_stream(raw)
    assert text == unary["text"] == "Look at the billing tab."
    assert per_action == final == unary["actions"] == actions
    assert unary["confidence"] == 0.8
    assert hdrs["X-Agent-Id"] == unary["agent_id"]


async def test_record_separator_in_text_is_neutralised(sb: Harness) -> None:
    await sb.scripted_agent(reply="odd\x1e__ACTION__{}\x1etext")
    status, _, raw = await stream(sb, {"message": "x", "agent_id": "scripted"})
    assert status == 200
    text, actions, final = parse_stream(raw)
    assert text == "odd\u241e__ACTION__{}\u241etext"
    assert actions == [] and final == []
    assert raw.count("\x1e") == 2  # only the final record's framing
    _, unary = await post(sb, {"message": "x", "agent_id": "scripted"})
    assert unary["text"] == "odd\x1e__ACTION__{}\x1etext"  # JSON carries it escaped


async def test_multi_turn_conversation_continues_by_session_id(sb: Harness) -> None:
    await sb.scripted_agent(reply="echo {message}")
    status, first = await post(sb, {"message": "one", "agent_id": "scripted"})
    assert status == 200
    session = first["session_id"]
    status, second = await post(sb, {"message": "two", "session_id": session})
    assert status == 200
    assert second["session_id"] == session and second["text"] == "echo two"
    assert second["agent_id"] == first["agent_id"]  # pinned by the first turn
    status, hdrs, raw = await stream(sb, {"message": "three", "session_id": session})
    assert status == 200 and hdrs["X-Session-Id"] == session
    assert parse_stream(raw)[0] == "echo three"
    transcript = [(m.role, m.content) for m in await messages(sb, session)]
    assert transcript == [
        ("user", "one"), ("assistant", "echo one"), ("user", "two"), ("assistant", "echo two"),
        ("user", "three"), ("assistant", "echo three"),
    ]


async def test_stream_transcript_is_durable_when_the_stream_ends(sb: Harness) -> None:
    await sb.scripted_agent(reply="stored right away")
    status, hdrs, _ = await stream(sb, {"message": "x", "agent_id": "scripted"})
    assert status == 200
    stored = await messages(sb, hdrs["X-Session-Id"])
    assert [(m.role, m.content, m.status) for m in stored][-1] == (
        "assistant", "stored right away", events_pb2.TURN_STATUS_COMPLETED
    )


async def test_livehelp_routes_to_team_without_generation(sb: Harness) -> None:
    status, body = await post(sb, {"message": "I need a human", "mode": "livehelp"})
    assert status == 200
    assert body["routing"]["action"] == "route_to_team"
    ticket = body["routing"]["ticket_id"]
    assert ticket.startswith("tkt_")
    assert "connecting you" in body["text"]
    tickets = await sb.core.store.list_tickets(
        sb.org_id, assert_session_id(body["session_id"])
    )
    assert [t["id"] for t in tickets] == [ticket]
    stored = await messages(sb, body["session_id"])
    assert stored[-1].status == events_pb2.TURN_STATUS_ROUTED
    assert stored[-1].usage.total_tokens == 0  # no model ran
    # The stream says the same acknowledgement.
    status, _, raw = await stream(sb, {"message": "human please", "mode": "livehelp"})
    assert status == 200 and parse_stream(raw)[0] == body["text"]


async def test_no_routing_field_when_the_ai_answers(sb: Harness) -> None:
    await sb.scripted_agent(reply="fine")
    _, body = await post(sb, {"message": "x", "agent_id": "scripted", "mode": "chat"})
    assert "routing" not in body


async def test_disconnect_mid_stream_cancels_and_stores_partial_turn(sb: Harness) -> None:
    await sb.scripted_agent(reply=" ".join(f"w{i}" for i in range(300)), delay_ms=15)
    resp = await sb.http.post(STREAM, json={"message": "go", "agent_id": "scripted"},
                              headers=headers())
    session = resp.headers["X-Session-Id"]
    received = b""
    while received.count(b" ") < 5:
        received += await resp.content.readany()
    resp.close()  # drops the connection mid-body
    canonical = assert_session_id(session)
    for _ in range(200):
        live = sb.core.engine.live.get(canonical)
        if live is None:
            break
        await asyncio.sleep(0.02)
    assert sb.core.engine.live.get(canonical) is None, "generation kept running"
    assistant = [m for m in await messages(sb, session) if m.role == "assistant"]
    assert len(assistant) == 1
    assert assistant[0].status == events_pb2.TURN_STATUS_CANCELLED
    assert 5 <= len(assistant[0].content.split()) < 300


async def test_unary_and_stream_errors_before_first_byte_use_the_envelope(
    sb: Harness,
) -> None:
    status, body = await post(sb, {"message": "x", "agent_id": "nope"})
    assert status == 404 and body["error"]["code"] == "agent_not_found"
    async with sb.http.post(STREAM, json={"message": "x", "agent_id": "nope"},
                            headers=headers()) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"]["code"] == "agent_not_found"


async def test_failure_after_headers_is_an_error_record_and_a_cut_body(sb: Harness) -> None:
    # A provider that cannot be reached fails after TurnStarted went out.
    await sb.apply_agent({
        "name": "broken", "slug": "broken",
        "provider": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "x",
                     "api_key": "k", "max_retries": 0, "connect_timeout_s": 2},
    })
    async with sb.http.post(STREAM, json={"message": "x", "agent_id": "broken"},
                            headers=headers()) as resp:
        assert resp.status == 200
        raw = b""
        with pytest.raises(Exception):  # noqa: B017 - aiohttp's payload error type varies
            async for chunk in resp.content.iter_any():
                raw += chunk
    _, per_action, final = parse_stream(raw.decode())
    assert final is None
    assert per_action and per_action[-1]["type"] == "error"
    assert per_action[-1]["payload"]["code"] == "agent_unavailable"


async def test_secret_key_works_too(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    status, body = await post(sb, {"message": "x", "agent_id": "scripted"}, key=SECRET)
    assert status == 200 and body["text"] == "ok"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
@pytest.mark.parametrize("agent", ["", "scripted"])
async def test_spec_javascript_snippet_reads_headers_and_whole_text(
    sb: Harness, agent: str
) -> None:
    await sb.scripted_agent(
        reply="To set up event tracking, install the SDK and call track().",
        actions=[{"type": "highlight", "payload": {"selector": "#sdk"}}],
    )
    args = [sb.base_url + STREAM, WIDGET] + ([agent] if agent else [])
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_SNIPPET), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    session = result["sessionId"]
    assert_session_id(session)
    text, _, final = parse_stream(result["fullText"])
    assert final is not None and result["updates"] >= 1
    stored = [m for m in await messages(sb, session) if m.role == "assistant"]
    # The snippet read the whole answer: exactly what the transcript holds.
    assert text == stored[-1].content and text
    assert result["agentId"] == stored[-1].agent_id
    if agent:
        assert text == "To set up event tracking, install the SDK and call track()."
        assert final == [{"type": "highlight", "payload": {"selector": "#sdk"}}]


async def test_disconnect_while_nothing_is_written_still_cancels(sb: Harness) -> None:
    # The first word comes after 5 s: the shim must notice the client left before that.
    await sb.scripted_agent(reply="late words", delay_ms=5000)
    resp = await sb.http.post(STREAM, json={"message": "go", "agent_id": "scripted"},
                              headers=headers())
    canonical = assert_session_id(resp.headers["X-Session-Id"])
    resp.close()
    for _ in range(100):  # 2 s, well before the first word
        if sb.core.engine.live.get(canonical) is None:
            break
        await asyncio.sleep(0.02)
    assert sb.core.engine.live.get(canonical) is None, "generation kept running"
    assistant = [m for m in await messages(sb, resp.headers["X-Session-Id"])
                 if m.role == "assistant"]
    assert [(m.status, m.content) for m in assistant] == [
        (events_pb2.TURN_STATUS_CANCELLED, "")
    ]
