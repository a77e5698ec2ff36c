"""The dialects end to end over a PostgreSQL-backed server (issue #14): a few of the
shim's own tests run again, unchanged, with the Harness's store on this run's PostgreSQL
database, plus the outage behaviour (503 + Retry-After, readiness red, then back alone).

The tests are imported, not copied: the `sb` / `sbg` fixtures below shadow the SQLite
ones for this module only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pg_support
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status
from test_halo import (  # noqa: F401 (collected here, over PostgreSQL)
    test_multi_turn_conversation_continues_by_session_id,
    test_spec_curl_example_returns_every_field_grounded_in_the_kb,
)
from test_reliability_idempotency import (  # noqa: F401
    test_concurrent_slug_stream_duplicates_share_one_turn,
    test_halo_stream_replay_is_byte_identical,
)
from test_reliability_resume import (  # noqa: F401
    test_slug_stream_cut_anywhere_and_resumed_equals_uninterrupted,
)
from test_store_failures import (
    EXPECTED_CODE,
    WRITE_ROUTES,
    eventually,
    health_status,
    ready,
    session_token,
)

from core.grpcapi.readiness import PROBE_INTERVAL_S
from harness import WIDGET, Harness, auth, with_engine
from switchboard.v1 import chat_pb2


@pytest.fixture
async def sb(tmp_path: Path, pg_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.start(tmp_path, database=pg_url)
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture
async def sbg(tmp_path: Path, pg_url: str) -> AsyncIterator[Harness]:
    harness = await Harness.start(tmp_path, database=pg_url,
                                  engine=with_engine(detach_grace_s=5.0))
    try:
        yield harness
    finally:
        await harness.stop()


async def test_postgres_down_is_503_in_every_dialect_and_service_resumes(
    tmp_path: Path, pg_url: str, pg_database: str
) -> None:
    relay = pg_support.TcpRelay()
    await relay.start()
    harness = await Harness.start(tmp_path, database=relay.url_for(pg_database))
    try:
        async with harness.http.post("/api/sdk/chat", json={"message": "hi"},
                                     headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
            assert resp.status == 200, await resp.text()
        await relay.stop()
        for name, (path, key, body, code_of) in WRITE_ROUTES.items():
            if key == "session":
                continue  # needs a session token, itself a write
            async with harness.http.post(path, json=body,
                                         headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 503, (name, resp.status, await resp.text())
                assert resp.headers["Retry-After"] == "1", name
                assert code_of(await resp.json()) == EXPECTED_CODE[name], name
        await eventually(lambda: health_status(harness),
                         health_pb2.HealthCheckResponse.NOT_SERVING)
        assert await ready(harness) == 503
        await relay.start()  # PostgreSQL is back: nobody restarts anything
        await asyncio.sleep(PROBE_INTERVAL_S)
        await eventually(lambda: health_status(harness),
                         health_pb2.HealthCheckResponse.SERVING)
        assert await ready(harness) == 200
        async with harness.http.post("/api/sdk/chat", json={"message": "hi"},
                                     headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
            assert resp.status == 200, await resp.text()
    finally:
        await harness.stop()
        await relay.stop()


async def test_postgres_down_is_unavailable_over_grpc_and_for_flow_sessions(
    tmp_path: Path, pg_url: str, pg_database: str
) -> None:
    """The routes the test above cannot reach: a flow message on a session made before
    the outage, and the core's own gRPC API (UNAVAILABLE with ErrorInfo and RetryInfo)."""
    relay = pg_support.TcpRelay()
    await relay.start()
    harness = await Harness.start(tmp_path, database=relay.url_for(pg_database))
    try:
        token = await session_token(harness)
        await relay.stop()
        path, _, body, code_of = WRITE_ROUTES["flow-messages"]
        async with harness.http.post(path, json=body,
                                     headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"] == "1"
            assert code_of(await resp.json()) == EXPECTED_CODE["flow-messages"]
        for call in ("Chat", "StreamChat"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                turn = chat_pb2.TurnInput(message="hi")
                if call == "Chat":
                    await harness.chat.Chat(chat_pb2.ChatRequest(turn=turn), metadata=auth())
                else:
                    async for _ in harness.chat.StreamChat(
                            chat_pb2.StreamChatRequest(turn=turn), metadata=auth()):
                        pass
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, call
            status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
            assert status is not None
            reasons, delays = [], []
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reasons.append(info.reason)
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    delays.append(retry.retry_delay.seconds)
            assert reasons == ["store_unavailable"] and delays == [1], call
        await relay.start()
        await asyncio.sleep(PROBE_INTERVAL_S)
        await eventually(lambda: health_status(harness),
                         health_pb2.HealthCheckResponse.SERVING)
        reply = await harness.chat.Chat(
            chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi")), metadata=auth())
        assert reply.completed.text
    finally:
        await harness.stop()
        await relay.stop()


async def test_serve_with_postgres_unreachable_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import socket
    import sys

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "serve", "--grpc-port", "0", "--http-port", "0",
        "--database", f"postgresql://postgres@127.0.0.1:{port}/nothing",
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_LOG_LEVEL": "ERROR"})
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text and text.strip().count("\n") == 0, text
    assert f"127.0.0.1:{port}/nothing cannot be written" in text, text
