"""Rate limits and stream caps shared by two replicas through Redis (`serve --redis`), and
what happens while Redis is down.

Two real cores with their shims on one SQLite file and one Redis db (REDIS_DB, flushed by
each test); a shared clock that moves only when told drives the token buckets. Skipped
with the reason when the machine's Redis (127.0.0.1:6379) is unreachable."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis_support import flushed_db, url_for

from core import redis_limits
from core.clock import FixedClock
from core.ratelimit import RateLimit
from core.redis_limits import RedisRateLimiter
from harness import SECRET, Harness, auth
from switchboard.v1 import chat_pb2, events_pb2

REDIS_DB = 11
REDIS_URL = url_for(REDIS_DB)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with flushed_db(REDIS_DB, "shared-limit tests") as url:
        yield url


async def replicas(tmp_path: Path, url: str, clock: FixedClock) -> tuple[Harness, Harness]:
    database = str(tmp_path / "switchboard.db")
    a = await Harness.start(tmp_path, clock=clock, database=database, redis_url=url)
    b = await Harness.start(tmp_path, clock=clock, database=database, redis_url=url)
    return a, b


@pytest.fixture
async def pair(tmp_path: Path, redis_url: str
               ) -> AsyncIterator[tuple[Harness, Harness, FixedClock]]:
    clock = FixedClock()
    a, b = await replicas(tmp_path, redis_url, clock)
    try:
        yield a, b, clock
    finally:
        await a.stop()
        await b.stop()


async def post(sb: Harness, stream: bool = False) -> tuple[int, dict[str, str], bytes]:
    body = {"message": "hi", "stream": stream}
    async with sb.http.post("/v1/api/chat/limited", json=body,
                            headers={"Authorization": f"Bearer {SECRET}"}) as r:
        return r.status, dict(r.headers), await r.read()


async def test_one_key_at_twice_its_limit_through_two_replicas(
        pair: tuple[Harness, Harness, FixedClock]) -> None:
    """Per-process buckets would accept about twice the limit here (each replica its
    own); the shared bucket accepts the limit, within 5%."""
    a, b, clock = pair
    await a.scripted_agent("limited", reply="ok")
    rps, burst, seconds = 10.0, 5, 10.0
    await set_org(a, rate_limit={"rps": rps, "burst": burst, "max_streams": 10})
    accepted = refused = 0
    sent = int(seconds * rps * 2)
    for i in range(sent):
        clock.advance(1 / (rps * 2))
        status, headers, raw = await post(a if i % 2 else b)
        if status == 200:
            accepted += 1
        else:
            assert status == 429 and headers["Retry-After"] == "1", raw
            refused += 1
    expected = burst + rps * seconds
    assert abs(accepted - expected) <= 0.05 * expected, accepted
    assert refused == sent - accepted


async def test_stream_cap_holds_across_replicas(
        pair: tuple[Harness, Harness, FixedClock]) -> None:
    a, b, _ = pair
    await a.scripted_agent("limited", reply="slow " * 200, delay_ms=20)
    await set_org(a, rate_limit={"rps": 100, "burst": 100, "max_streams": 1})
    body = {"messages": [{"role": "user", "content": "hi"}]}
    path = "/v1/aibot/bots/limited/send-message"
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with a.http.post(path, json=body, headers=headers) as held:
        assert held.status == 200
        await held.content.readuntil(b"\n\n")
        async with b.http.post(path, json=body, headers=headers) as refused:
            assert refused.status == 429 and refused.headers["Retry-After"] == "1"
            assert b'"code": "concurrency_limited"' in await refused.read()
        held.close()
    # The slot is released when A's stream ends (the shim notices the closed client).
    for _ in range(100):
        async with b.http.post(path, json=body, headers=headers) as again:
            if again.status == 200:
                return
        await asyncio.sleep(0.05)
    pytest.fail("the stream slot was never released")


async def test_a_crashed_replicas_stream_slots_expire_with_their_lease(
        redis_url: str) -> None:
    clock = FixedClock()
    limit = RateLimit(max_streams=1)
    crashed, other = RedisRateLimiter(redis_url, clock), RedisRateLimiter(redis_url, clock)
    try:
        holder = crashed.stream_slot("key", limit)
        await holder.__aenter__()  # and never leaves: its process died
        with pytest.raises(Exception, match="concurrent streams"):
            async with other.stream_slot("key", limit):
                pass
        clock.advance(redis_limits.STREAM_LEASE_S + 0.001)
        async with other.stream_slot("key", limit):
            pass
        await holder.__aexit__(None, None, None)  # ends its renewal task (test hygiene)
    finally:
        await crashed.close()
        await other.close()


async def test_a_live_stream_renews_its_lease(redis_url: str) -> None:
    clock = FixedClock()
    limit = RateLimit(max_streams=1)
    lease = 0.3
    holder, other = (RedisRateLimiter(redis_url, clock, lease_s=lease),
                     RedisRateLimiter(redis_url, clock, lease_s=lease))
    try:
        async with holder.stream_slot("key", limit):
            for _ in range(4):  # well past the first lease, renewed every lease/3
                clock.advance(lease / 2)
                await asyncio.sleep(lease / 2)
                with pytest.raises(Exception, match="concurrent streams"):
                    async with other.stream_slot("key", limit):
                        pass
        async with other.stream_slot("key", limit):
            pass
    finally:
        await holder.close()
        await other.close()


async def set_org(sb: Harness, **extra: object) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    settings = replace(org.settings, extra={**org.settings.extra, **extra})
    await sb.core.store.update_org_settings(sb.org_id, settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_unreachable_falls_back_to_per_process_limits(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FixedClock()
    sb = await Harness.start(tmp_path, clock=clock,
                             redis_url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        await sb.scripted_agent("limited", reply="ok")
        await set_org(sb, rate_limit={"rps": 1, "burst": 2})
        with caplog.at_level(logging.WARNING, logger="switchboard.redis"):
            statuses = [(await post(sb))[0] for _ in range(3)]
            clock.advance(redis_limits.RETRY_AFTER_S)  # retries Redis, fails again
            statuses.append((await post(sb))[0])
            statuses.append((await post(sb, stream=True))[0])
        # This process's bucket: burst 2, then refused, then one token a second later.
        assert statuses == [200, 200, 429, 200, 429]
        lines = [r for r in caplog.records
                 if "unreachable" in r.getMessage() and "rate limits" in r.getMessage()]
        # One line for the outage (start and every request since are the same outage).
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]
        assert "per-process" in lines[0].getMessage()
    finally:
        await sb.stop()


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own on an ephemeral port (killed and restarted)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed: the outage test starts its own")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield port, procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def spawn_redis(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def start_redis(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(spawn_redis(port))
    client = aioredis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        for _ in range(100):
            try:
                await client.ping()
                return
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
        pytest.fail("redis-server did not start")
    finally:
        await client.aclose()


async def test_shared_limits_resume_when_redis_is_back(
        tmp_path: Path, own_redis: tuple[int, list[subprocess.Popen[bytes]]],
        caplog: pytest.LogCaptureFixture) -> None:
    port, procs = own_redis
    await start_redis(port, procs)
    clock = FixedClock()
    url = f"redis://127.0.0.1:{port}/0"
    a, b = await replicas(tmp_path, url, clock)
    try:
        await a.scripted_agent("limited", reply="ok")
        await set_org(a, rate_limit={"rps": 1, "burst": 1})
        assert (await post(a))[0] == 200
        assert (await post(b))[0] == 429  # shared: A took the only token
        procs[0].kill()
        procs[0].wait()
        with caplog.at_level(logging.WARNING, logger="switchboard.redis"):
            # Each replica on its own bucket now: both have their burst.
            assert (await post(a))[0] == 200
            assert (await post(b))[0] == 200
            assert (await post(b))[0] == 429
            assert not a.core.redis_limits.shared  # type: ignore[union-attr]
            await start_redis(port, procs)
            clock.advance(redis_limits.RETRY_AFTER_S + 1)
            assert (await post(a))[0] == 200  # a fresh shared bucket (Redis lost it)
            assert (await post(b))[0] == 429  # shared again: A took its only token
        assert a.core.redis_limits.shared  # type: ignore[union-attr]
        messages = [r.getMessage() for r in caplog.records]
        # One line per replica each way (the stop listener says its own).
        assert sum("unreachable" in m and "rate limits" in m for m in messages) == 2
        assert sum("again: shared rate limits" in m for m in messages) == 2
    finally:
        await a.stop()
        await b.stop()


async def test_a_stop_sent_to_one_replica_stops_the_turn_on_the_other(
        tmp_path: Path, redis_url: str) -> None:
    a, b = await replicas(tmp_path, redis_url, FixedClock())
    try:
        await a.scripted_agent(reply=" ".join(f"w{i}" for i in range(300)), delay_ms=10)
        call = a.chat.StreamChat(chat_pb2.StreamChatRequest(
            turn=chat_pb2.TurnInput(message="go", agent="scripted")), metadata=auth())
        events: list[events_pb2.ChatEvent] = []
        stop: chat_pb2.StopTurnResponse | None = None
        async for reply in call:
            events.append(reply.event)
            if stop is None and sum(e.HasField("text_delta") for e in events) == 5:
                stop = await b.chat.StopTurn(chat_pb2.StopTurnRequest(
                    conversation_id=events[0].conversation_id), metadata=auth())
        assert stop is not None and stop.stopped and stop.turn_id
        last = events[-1]
        assert last.completed.status == events_pb2.TURN_STATUS_STOPPED
        assert last.turn_id == stop.turn_id
        assert len(last.completed.text.split()) < 300
        # Nothing running anywhere now: a second stop through B says so.
        again = await b.chat.StopTurn(chat_pb2.StopTurnRequest(
            conversation_id=events[0].conversation_id), metadata=auth())
        assert not again.stopped
    finally:
        await a.stop()
        await b.stop()
