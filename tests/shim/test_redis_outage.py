"""Redis that stops answering without closing anything (a network partition, a Redis
stuck on a slow command): every request still gets its answer, never a 500 or a hang;
limits fall back to per-process with one clear log line, and shared limits resume by
themselves once Redis answers again.

The machine's Redis stays up: a relay of this test's own sits between Switchboard and
it, and stops forwarding bytes while it is frozen (the sockets stay open, so only the
client's timeouts can notice)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from test_redis_limits import post, set_org

from core import redis_limits
from core.clock import FixedClock
from harness import Harness

REDIS_DB = 14
UPSTREAM = ("127.0.0.1", 6379)
# A hang detector, not a speed check: a request stuck on a frozen Redis would wait forever.
HANG_S = 20.0


class FreezingRelay:
    """A TCP relay to Redis that can freeze: it keeps every socket open but forwards
    nothing until thawed."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*UPSTREAM)
        except OSError:
            writer.transport.abort()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    await self._thawed.wait()  # frozen: hold the bytes, close nothing
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writer.transport.abort()
            up_writer.transport.abort()
            self._tasks.discard(task)


@pytest.fixture
async def relay() -> AsyncIterator[FreezingRelay]:
    client = aioredis.Redis(host=UPSTREAM[0], port=UPSTREAM[1], db=REDIS_DB,
                            socket_connect_timeout=0.5)
    try:
        await client.flushdb()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis at {UPSTREAM[0]}:{UPSTREAM[1]} ({exc.__class__.__name__}): "
                    "the Redis outage test relays to it")
    relay = FreezingRelay()
    await relay.start()
    try:
        yield relay
    finally:
        relay.thaw()
        await relay.stop()
        await client.flushdb()
        await client.aclose()


async def test_a_frozen_redis_costs_no_request_and_shared_limits_resume(
        tmp_path: Path, relay: FreezingRelay, caplog: pytest.LogCaptureFixture) -> None:
    clock = FixedClock()
    url = f"redis://127.0.0.1:{relay.port}/{REDIS_DB}"
    sb = await Harness.start(tmp_path, clock=clock, redis_url=url)
    try:
        await sb.scripted_agent("limited", reply="ok")
        await set_org(sb, rate_limit={"rps": 1, "burst": 2})
        limiter = sb.core.redis_limits
        assert limiter is not None and limiter.shared
        assert (await post(sb))[0] == 200  # a token from the shared bucket
        relay.freeze()
        with caplog.at_level(logging.WARNING, logger="switchboard.redis"):
            async with asyncio.timeout(HANG_S):
                # This process's own bucket now (burst 2, fresh): two, then refused.
                statuses = [(await post(sb))[0] for _ in range(3)]
                statuses.append((await post(sb, stream=True))[0])
            assert statuses == [200, 200, 429, 429]
            assert not limiter.shared
            fallback = [r.getMessage() for r in caplog.records
                        if "unreachable" in r.getMessage() and "rate limits" in r.getMessage()]
            assert len(fallback) == 1, [r.getMessage() for r in caplog.records]
            assert "per-process" in fallback[0] and f":{relay.port}/" in fallback[0]
            relay.thaw()
            clock.advance(redis_limits.RETRY_AFTER_S + 1)
            async with asyncio.timeout(HANG_S):
                status, _, body = await post(sb)
            # Shared again: the bucket in Redis refilled over the clock's two seconds.
            assert status == 200, body
            assert limiter.shared
        assert any("reachable again: shared rate limits resume" in r.getMessage()
                   for r in caplog.records)
    finally:
        relay.thaw()
        await sb.stop()
