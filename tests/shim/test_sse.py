"""SSE framing and heartbeats shared by the slug and aibot dialects, and an independent
parser (npm `eventsource-parser` under Node) reading both dialects' streams."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness import SECRET, Harness, auth
from shim.app import create_app
from shim.sse import DEFAULT_HEARTBEAT_S, HEARTBEAT_S, comment, frame
from switchboard.v1 import chat_pb2, events_pb2

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def test_frame_has_id_and_data_then_blank_line() -> None:
    assert frame('{"chunk": "Hi"}', event_id=7) == b'id: 7\ndata: {"chunk": "Hi"}\n\n'
    assert frame("[DONE]") == b"data: [DONE]\n\n"
    assert frame("x", event_id=1, event="error") == b"id: 1\nevent: error\ndata: x\n\n"


def test_multiline_data_is_one_data_line_per_line() -> None:
    assert frame("a\nb\r\nc\rd", event_id=3) == b"id: 3\ndata: a\ndata: b\ndata: c\ndata: d\n\n"


def test_heartbeat_is_a_comment() -> None:
    assert comment() == b": ping\n\n"
    assert DEFAULT_HEARTBEAT_S == 15.0


@pytest.fixture
async def fast_heartbeat_shim(sb: Harness) -> AsyncIterator[str]:
    """A second shim on the same core whose SSE heartbeat interval is 0.1 s."""
    app = create_app(sb.grpc_target, core_channel=sb.core_channel())
    app[HEARTBEAT_S] = 0.1
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/api/chat/sleepy", {"message": "hi", "stream": True}),
    ("/v1/aibot/bots/sleepy/send-message", {"messages": [{"role": "user", "content": "hi"}]}),
])
async def test_idle_stream_gets_heartbeat_comments(sb: Harness, fast_heartbeat_shim: str,
                                                   path: str, body: dict[str, Any]) -> None:
    await sb.scripted_agent("sleepy", reply="slow answer", delay_ms=450)
    async with aiohttp.ClientSession() as http, http.post(
        fast_heartbeat_shim + path, json=body, headers={"Authorization": f"Bearer {SECRET}"}
    ) as resp:
        assert resp.status == 200
        raw = (await resp.read()).decode()
    blocks = raw[:-2].split("\n\n")
    pings = [b for b in blocks if b == ": ping"]
    assert len(pings) >= 4  # ~0.9 s of silence at 0.1 s intervals
    # Heartbeats sit between events, never inside one.
    assert all(b == ": ping" or b.startswith("id: ") for b in blocks)
    assert blocks[-1].endswith("data: [DONE]")


async def test_client_leaving_an_idle_stream_cancels_the_turn(sb: Harness,
                                                             fast_heartbeat_shim: str) -> None:
    """Nothing is written while the model is silent, yet the departure is noticed (by the
    heartbeat or the connection check) and generation is cancelled long before the model
    would have produced its first token."""
    await sb.scripted_agent("silent", reply="a b c", delay_ms=5000)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(fast_heartbeat_shim + "/v1/aibot/bots/silent/send-message",
                               json={"messages": [{"role": "user", "content": "hi"}]},
                               headers={"Authorization": f"Bearer {SECRET}"})
        conversation = resp.headers["X-Conversation-Id"].removeprefix("conversation-")
        resp.close()
    for _ in range(60):
        if sb.core.engine.live.get(conversation) is None:
            break
        await asyncio.sleep(0.05)
    assert sb.core.engine.live.get(conversation) is None, "generation kept running"
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth())
    assistant = [m for m in listed.messages if m.role == "assistant"]
    assert [m.status for m in assistant] == [events_pb2.TURN_STATUS_CANCELLED]


async def test_default_shim_sends_no_heartbeat_on_a_short_stream(sb: Harness) -> None:
    await sb.scripted_agent("quick", reply="fast", delay_ms=20)
    async with sb.http.post("/v1/api/chat/quick", json={"message": "hi", "stream": True},
                            headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        assert b": ping" not in await resp.read()


# -- an independent parser ---------------------------------------------------------------------


def _node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "eventsource-parser").is_dir():
        return "tests/node/node_modules missing: run `make node-deps`"
    return None


async def _node_parse(url: str, body: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "sse_parse.mjs"), url, SECRET, json.dumps(body),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.skipif(_node_ready() is not None, reason=_node_ready() or "")
async def test_eventsource_parser_reads_the_slug_stream(sb: Harness) -> None:
    reply = "Hello there! How can I help?"
    await sb.scripted_agent("greeter", reply=reply, delay_ms=5)
    result = await _node_parse(sb.base_url + "/v1/api/chat/greeter",
                               {"message": "Hello", "stream": True})
    assert result["status"] == 200 and result["errors"] == []
    assert result["contentType"].startswith("text/event-stream")
    events = result["events"]
    assert all(e["event"] is None and e["id"] for e in events)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    assert events[-1]["data"] == "[DONE]"
    assert "".join(json.loads(e["data"])["chunk"] for e in events[:-1]) == reply


@pytest.mark.skipif(_node_ready() is not None, reason=_node_ready() or "")
async def test_eventsource_parser_reads_the_aibot_stream(sb: Harness) -> None:
    await sb.scripted_agent("weather", reply="It is {tool_results}.", args_chunk=3,
                            tool_calls=[{"name": "get_weather",
                                         "arguments": {"city": "Zürich"}}])
    tools = [{"name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    url = sb.base_url + "/v1/aibot/bots/weather/send-message"
    first = await _node_parse(url, {"messages": [{"role": "user", "content": "weather?"}],
                                    "tools": tools})
    assert first["status"] == 200 and first["errors"] == []
    data = [json.loads(e["data"]) for e in first["events"][:-1]]
    assert first["events"][-1]["data"] == "[DONE]"
    assert [d["type"] for d in data][-2:] == ["tool-call-end", "interrupt"]
    args = "".join(d["delta"] for d in data if d["type"] == "tool-call-args")
    assert json.loads(args) == {"city": "Zürich"}
    interrupt = data[-1]
    second = await _node_parse(url, {"resume": {"interruptId": interrupt["interruptId"],
                                                "payload": {"call_0_0": "Sunny, 25°C"}}})
    data = [json.loads(e["data"]) for e in second["events"][:-1]]
    assert data[0] == {"type": "tool-result", "result": "Sunny, 25°C", "toolCallId": "call_0_0"}
    assert "".join(d["content"] for d in data if d["type"] == "text") == (
        'It is "Sunny, 25°C".')


async def test_one_heartbeat_timer_per_stream_not_one_per_event(
        sb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay used to arm a timer (through `asyncio.wait(timeout=...)`) for every event;
    now one timer per stream is re-armed only when it fires."""
    await sb.scripted_agent("long", reply=" tok", repeat=100)
    loop = asyncio.get_running_loop()
    armed: list[str] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        armed.append(getattr(callback, "__qualname__", repr(callback)))
        return call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    async with sb.http.post("/v1/api/chat/long", json={"message": "hi", "stream": True},
                            headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        raw = await resp.read()
    assert raw.count(b'"chunk"') == 100
    assert sum("Heartbeat" in name for name in armed) <= 2
    assert not [name for name in armed if "_release_waiter" in name]  # asyncio.wait timeouts


async def test_a_burst_of_events_goes_out_in_few_writes(
        sb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply produced faster than it is relayed (a model burst) is written as the events
    pile up, several per write, instead of one write per event; the bytes are the same.
    (Over gRPC the shim reads one message per wake-up, so it keeps pace and there is no
    backlog to batch: in-process only.)"""
    if sb.transport != "inprocess":
        pytest.skip("a gRPC channel delivers one message per read")
    await sb.scripted_agent("burst", reply=" tok", repeat=100)
    writes: list[int] = []
    write = web.StreamResponse.write

    async def counting_write(self: web.StreamResponse, data: bytes) -> None:
        writes.append(len(data))
        await write(self, data)
        # A client slower than the model (the agent loop yields between chunks, so
        # without this the relay keeps pace and there is no backlog to batch).
        await asyncio.sleep(0.002)

    monkeypatch.setattr(web.StreamResponse, "write", counting_write)
    async with sb.http.post("/v1/api/chat/burst", json={"message": "hi", "stream": True},
                            headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        raw = await resp.read()
    events = raw.count(b"\n\n")
    assert raw.count(b'"chunk"') == 100
    assert len(writes) < events / 2
