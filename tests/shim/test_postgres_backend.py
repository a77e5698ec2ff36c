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

import pg_support
import pytest
from grpc_health.v1 import health_pb2
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
from test_store_failures import EXPECTED_CODE, WRITE_ROUTES, eventually, health_status, ready

from core.grpcapi.readiness import PROBE_INTERVAL_S
from harness import WIDGET, Harness, with_engine


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
