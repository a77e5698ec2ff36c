"""A burst of gRPC streams starts every one of them or refuses the excess with
RESOURCE_EXHAUSTED `concurrency_limited` (HTTP 429); none ends with a bare CANCELLED."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.grpcapi.concurrency import RETRY_AFTER_S
from harness import WIDGET, Harness, auth
from shim.core_client import decode_error
from switchboard.v1 import chat_pb2

BURST = 2000


async def unlimited_keys(sb: Harness) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    extra = {**org.settings.extra,
             "rate_limit": {"rps": 1e6, "burst": 10 * BURST, "max_streams": 10 * BURST}}
    await sb.core.store.update_org_settings(sb.org_id, replace(org.settings, extra=extra))


async def outcome(call: grpc.aio.UnaryStreamCall) -> str:  # type: ignore[type-arg]
    try:
        kinds = [r.event.WhichOneof("kind") async for r in call]
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}:{decode_error(exc).reason}"
    return f"ok:{kinds[-1] if kinds else 'none'}"


async def test_a_burst_of_2000_streams_all_start(sb: Harness) -> None:
    await sb.scripted_agent(reply="hi")
    await unlimited_keys(sb)
    reply = await sb.chat_once("x", agent="scripted")
    request = chat_pb2.ResumeStreamRequest(conversation_id=reply.conversation_id,
                                           latest_turn=True)
    results = await asyncio.gather(*(
        outcome(sb.chat.ResumeStream(request, metadata=auth())) for _ in range(BURST)))
    assert collections.Counter(results) == {"ok:completed": BURST}


async def test_streams_beyond_the_limit_are_refused_with_a_reason(tmp_path: Path) -> None:
    limit = 20
    sb = await Harness.start(tmp_path, max_concurrent_rpcs=limit)
    try:
        await sb.scripted_agent(reply="w " * 500, delay_ms=20)
        await unlimited_keys(sb)
        calls = [sb.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
            message="go", agent="scripted")), metadata=auth()) for _ in range(limit)]
        for call in calls:  # all `limit` streams started
            assert (await anext(aiter(call))).event.HasField("turn_started")
        extra = sb.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
            message="go", agent="scripted")), metadata=auth())
        assert await outcome(extra) == "RESOURCE_EXHAUSTED:concurrency_limited"
        # Health stays open for load balancers; HTTP callers get a 429 with Retry-After.
        health = await health_pb2_grpc.HealthStub(sb.channel).Check(
            health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        async with sb.http.post("/api/sdk/chat", json={"message": "hi"},
                                headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
            assert resp.status == 429, await resp.text()
            assert resp.headers["Retry-After"] == str(int(RETRY_AFTER_S))
        for call in calls:
            call.cancel()
        assert sb.core.concurrency.refused == 2
    finally:
        await sb.stop()
