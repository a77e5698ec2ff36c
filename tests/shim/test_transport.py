"""The shim's two ways to the core give the same answers: the in-process channel
(`switchboard serve`) and a real gRPC channel (`--role shim`).

The whole suite runs on one transport at a time (`pytest --transport`, in-process by
default; `make test` runs tests/shim on gRPC too); these tests run both side by side on a
fixed clock and sequential ids, so the same requests must give the same bytes.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from core.clock import FixedClock, SequentialIds
from core.grpcapi import auth as grpc_auth
from core.grpcapi.inprocess import MAX_BUFFERED_MESSAGES, HandlerRegistry, InProcessChannel
from harness import SECRET, WIDGET, Harness, auth
from shim.common import TurnStream
from shim.core_client import decode_error
from shim.flow import SESSIONS_PATH
from switchboard.v1 import chat_pb2, chat_pb2_grpc

# (method, path, body, key, extra headers)
REQUESTS: list[tuple[str, str, dict[str, Any] | None, str, dict[str, str]]] = [
    ("POST", "/v1/api/chat/same", {"message": "hi", "stream": True}, SECRET, {}),
    ("POST", "/v1/api/chat/same", {"message": "hi"}, SECRET, {}),
    ("POST", "/v1/aibot/bots/same/send-message",
     {"messages": [{"role": "user", "content": "hi"}]}, SECRET, {}),
    ("POST", "/api/sdk/chat/stream", {"message": "hi", "agent_id": "same"}, WIDGET, {}),
    ("POST", "/api/sdk/chat", {"message": "hi", "agent_id": "same"}, WIDGET, {}),
    ("POST", SESSIONS_PATH, {"agentId": "same"}, WIDGET, {}),
    # Refusals: no key, an unknown agent, a rate limit (RetryInfo → Retry-After).
    ("POST", "/api/sdk/chat", {"message": "hi", "agent_id": "same"}, "nope", {}),
    ("POST", "/v1/api/chat/missing", {"message": "hi", "stream": True}, SECRET, {}),
    ("POST", "/v1/aibot/bots/missing/send-message",
     {"messages": [{"role": "user", "content": "hi"}]}, SECRET, {}),
    ("POST", "/api/sdk/chat", {"message": "hi", "agent_id": "same"}, WIDGET, {}),
    ("POST", "/api/sdk/chat", {"message": "hi", "agent_id": "same"}, WIDGET, {}),
    ("GET", "/readyz", None, "", {}),
]
# Headers that differ by nature (the date, a made-up request id) or by port.
VOLATILE = {"Date", "Server", "X-Request-Id", "X-Request-ID"}


async def _transcript(tmp_path: Path, transport: str) -> list[tuple[int, dict[str, str], bytes]]:
    sb = await Harness.start(tmp_path / transport, clock=FixedClock(), ids=SequentialIds(),
                             transport=transport)
    try:
        await sb.scripted_agent("same", reply="Hello there, this is a reply in pieces.")
        out = []
        for i, (method, path, body, key, headers) in enumerate(REQUESTS):
            if i == len(REQUESTS) - 3:
                org = await sb.core.store.get_org(sb.org_id)
                assert org is not None
                limited = {**org.settings.extra, "rate_limit": {"rps": 1, "burst": 1}}
                await sb.core.store.update_org_settings(
                    sb.org_id, replace(org.settings, extra=limited))
            hdrs = {**headers, "Authorization": f"Bearer {key}"} if key else headers
            async with sb.http.request(method, path, json=body, headers=hdrs) as resp:
                kept = {k: v for k, v in resp.headers.items() if k not in VOLATILE}
                out.append((resp.status, kept, await resp.read()))
        return out
    finally:
        await sb.stop()


async def test_both_transports_give_the_same_bytes(tmp_path: Path) -> None:
    in_process = await _transcript(tmp_path, "inprocess")
    over_grpc = await _transcript(tmp_path, "grpc")
    statuses = [status for status, _, _ in in_process]
    # The scenario exercised what it means to: answers, refusals, a rate limit.
    assert statuses[:6] == [200] * 6 and 401 in statuses and 404 in statuses
    assert statuses[-2] == 429 and in_process[-2][1]["Retry-After"] == "1"
    for request, a, b in zip(REQUESTS, in_process, over_grpc, strict=True):
        assert a == b, request


# -- the in-process channel itself -----------------------------------------------------------


async def test_interceptors_apply_in_process(sb: Harness) -> None:
    """No key, no call: the auth interceptor runs before the servicer, and its refusal
    carries the same status details as over the network."""
    inproc = chat_pb2_grpc.ChatServiceStub(sb.core.channel())
    request = chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi"))
    errors = []
    for stub in (inproc, sb.chat):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Chat(request, metadata=auth("sk_wrong"))
        errors.append((caught.value.code(), caught.value.details(),
                       decode_error(caught.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] == grpc.StatusCode.UNAUTHENTICATED


async def test_handler_context_does_not_leak_to_the_caller(sb: Harness) -> None:
    await sb.scripted_agent("leak", reply="ok")
    stub = chat_pb2_grpc.ChatServiceStub(sb.core.channel())
    await stub.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi", agent="leak")),
                    metadata=auth())
    with pytest.raises(LookupError):
        grpc_auth.current_principal()


async def test_cancelling_the_awaiting_task_cancels_the_handler(sb: Harness) -> None:
    await sb.scripted_agent("slow", reply="slow " * 50, delay_ms=50)
    stub = chat_pb2_grpc.ChatServiceStub(sb.core.channel())
    request = chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi", agent="slow"))

    async def chat() -> chat_pb2.ChatResponse:
        reply: chat_pb2.ChatResponse = await stub.Chat(request, metadata=auth())
        return reply

    task = asyncio.create_task(chat())
    for _ in range(200):
        if sb.core.engine.live.all():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if not sb.core.engine.live.all():
            break
        await asyncio.sleep(0.01)
    assert not sb.core.engine.live.all()  # the turn stopped with its last follower


def _counting_registry(produced: list[int]) -> HandlerRegistry:
    async def count(request: Any, context: Any) -> Any:
        for n in range(10 * MAX_BUFFERED_MESSAGES):
            produced.append(n)
            yield n

    registry = HandlerRegistry()
    registry.add_registered("test.Count", {
        "Count": grpc.unary_stream_rpc_method_handler(count),
    })
    return registry


async def test_a_stream_runs_ahead_of_its_reader_by_at_most_the_buffer() -> None:
    produced: list[int] = []
    call = InProcessChannel(_counting_registry(produced)).unary_stream("/test.Count/Count")(None)
    await asyncio.sleep(0.05)
    assert len(produced) == MAX_BUFFERED_MESSAGES  # then it waits for room
    assert await call.read() == 0
    await asyncio.sleep(0.05)
    assert len(produced) == MAX_BUFFERED_MESSAGES + 1
    assert len(call.take_ready()) == MAX_BUFFERED_MESSAGES
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.read()


async def test_unknown_method_is_unimplemented() -> None:
    call = InProcessChannel(HandlerRegistry()).unary_unary("/test.Nope/Nope")(None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_reader_that_fell_behind_takes_the_backlog_at_once(sb: Harness) -> None:
    await sb.scripted_agent("long", reply="word " * 40)
    stub = chat_pb2_grpc.ChatServiceStub(sb.core.channel())
    call = stub.StreamChat(chat_pb2.StreamChatRequest(
        turn=chat_pb2.TurnInput(message="hi", agent="long")), metadata=auth())
    stream = TurnStream(call)
    first = await stream.first()
    assert first.HasField("turn_started")
    await asyncio.sleep(0.2)  # the turn runs on while nobody reads
    backlog = await stream.batch()
    assert backlog is not None and len(backlog) > 10
    assert [e.seq for e in backlog] == list(range(first.seq + 1, first.seq + 1 + len(backlog)))
    stream.close()


async def test_a_stopped_core_is_unavailable_in_process(tmp_path: Path) -> None:
    """As over the network once the server is gone: the shim answers 503, not a
    handler failing on a closed store."""
    sb = await Harness.start(tmp_path, transport="inprocess")
    channel = sb.core.channel()
    await sb.core.stop()
    try:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetConversation(chat_pb2.GetConversationRequest(conversation_id="x"),
                                       metadata=auth())
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        async with sb.http.post("/api/sdk/chat", json={"message": "hi"},
                                headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
            assert resp.status == 503
    finally:
        await sb.http.close()
        await sb.channel.close()
        assert sb.running.runner is not None
        await sb.running.runner.cleanup()


async def test_split_roles_keep_real_grpc(tmp_path: Path) -> None:
    """`--role core` + `--role shim` talk over a real gRPC channel; one process with both
    roles uses the in-process channel."""
    from core.config import CoreConfig
    from core.demo.seed import seed_demo
    from core.engine.turns import EngineConfig
    from launcher.serve import ServeOptions, start
    from shim.app import CORE

    config = CoreConfig(port=0, database=str(tmp_path / "split.db"),
                        engine=EngineConfig(detach_grace_s=0.0))
    core_only = await start(config, ServeOptions(role="core"))
    assert core_only.core is not None and core_only.runner is None
    await seed_demo(core_only.core.store, core_only.core.auth, core_only.core.agents,
                    core_only.core.ids, core_only.core.clock)
    shim_only = await start(config, ServeOptions(
        role="shim", http_port=0, core_target=f"127.0.0.1:{core_only.grpc_port}"))
    try:
        assert shim_only.runner is not None
        client = shim_only.runner.app[CORE]
        assert not client.in_process
        assert isinstance(client.channel, grpc.aio.Channel)
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{shim_only.http_port}/readyz") as resp:
            assert resp.status == 200
    finally:
        await shim_only.stop()
        await core_only.stop()


async def test_one_process_uses_the_in_process_channel(sb: Harness) -> None:
    from shim.app import CORE

    assert sb.running.runner is not None
    client = sb.running.runner.app[CORE]
    assert client.in_process == (sb.transport == "inprocess")
