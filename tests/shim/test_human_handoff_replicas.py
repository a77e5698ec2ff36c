"""Human handoff across replicas: two real cores with their shims on one PostgreSQL
database and one Redis db (`--redis`). The operator works on replica A, the visitor
listens and answers on replica B; every notification crosses through the Redis Stream
of the organisation's activity (a follower waits `POLL_S`, far longer than these tests
wait, before it would re-read the store on its own). Skipped with the reason when Redis
or PostgreSQL is unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from halo_client import post
from handoff_client import LISTEN, OPERATOR, WAIT_S, op, sse
from redis_support import flushed_db, url_for

from core import activity_bus
from harness import SECRET, WIDGET, Harness

REDIS_DB = 15
REDIS_URL = url_for(REDIS_DB)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with flushed_db(REDIS_DB, "the replica tests") as url:
        yield url


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str, redis_url: str
               ) -> AsyncIterator[tuple[Harness, Harness]]:
    assert activity_bus.POLL_S >= 3 * WAIT_S  # a wake-up can only come through Redis
    a = await Harness.start(tmp_path, database=pg_url, redis_url=redis_url)
    b = await Harness.start(tmp_path, database=pg_url, redis_url=redis_url)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def test_operator_on_one_replica_visitor_on_the_other(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    await b.scripted_agent("helper", reply="bot again")
    async with sse(a, OPERATOR + "/events", SECRET) as operator_events:
        status, first = await post(b, {"message": "a person please", "mode": "livehelp",
                                       "agent_id": "helper"})
        assert status == 200
        session = first["session_id"]
        queued = await operator_events.until(lambda e: e.event == "state")
        assert queued.data["state"] == "waiting"

        async with sse(b, LISTEN, WIDGET, params={"session_id": session}) as visitor:
            status, _ = await op(a, "POST", f"/conversations/{session}/claim", SECRET,
                                 {"operator_name": "Ann"})
            assert status == 200
            assert (await visitor.until(lambda e: e.event == "state")).data["state"] == "human"
            status, _ = await op(a, "POST", f"/conversations/{session}/messages", SECRET,
                                 {"text": "Hello from replica A", "operator_name": "Ann"})
            assert status == 201
            said = await visitor.until(lambda e: e.event == "message")
            assert (said.data["role"], said.data["text"]) == ("operator",
                                                              "Hello from replica A")

            status, reply = await post(b, {"message": "hi Ann", "session_id": session})
            assert status == 200 and reply["text"] == ""
            heard = await operator_events.until(
                lambda e: e.event == "message" and e.data["role"] == "user")
            assert heard.data["text"] == "hi Ann"

            status, _ = await op(a, "POST", f"/conversations/{session}/release", SECRET,
                                 {"operator_name": "Ann"})
            assert status == 200
            assert (await visitor.until(lambda e: e.event == "state")).data["state"] == "bot"
            status, again = await post(b, {"message": "and now?", "session_id": session,
                                           "agent_id": "helper"})
            assert status == 200 and again["text"] == "bot again"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await client.xlen(activity_bus.stream_key(a.org_id)) > 0
    finally:
        await client.aclose()
