"""The activity bus: a follower subscribed in this process is woken by a publish, with
Redis (db 15) or without it; with Redis unreachable a publish still wakes local
followers and never makes its caller wait."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.activity_bus import LocalBus, RedisBus

REDIS_URL = "redis://127.0.0.1:6379/15"


async def _woken(bus: LocalBus, org_id: str, other: LocalBus | None = None) -> bool:
    async with bus.subscribe(org_id) as waiter:
        await (other or bus).publish(org_id)
        return await waiter.wait(timeout_s=5.0)


async def test_local_bus_wakes_its_followers_only_for_their_organisation() -> None:
    bus = LocalBus()
    assert await _woken(bus, "org-a")
    async with bus.subscribe("org-a") as waiter:
        await bus.publish("org-b")
        assert not await waiter.wait(timeout_s=0.05)  # nothing for org-a
    await bus.close()


async def test_redis_bus_carries_a_wake_up_to_another_process_bus() -> None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        await client.flushdb()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis at {REDIS_URL} ({exc.__class__.__name__})")
    here, there = RedisBus(REDIS_URL), RedisBus(REDIS_URL)
    try:
        assert await _woken(here, "org-a", other=there)
    finally:
        await here.close()
        await there.close()
        await client.flushdb()
        await client.aclose()


async def test_unreachable_redis_still_wakes_local_followers() -> None:
    bus = RedisBus("redis://127.0.0.1:1/15")  # nothing listens on port 1
    try:
        async with bus.subscribe("org-a") as waiter:
            await bus.publish("org-a")
            assert await waiter.wait(timeout_s=5.0)
    finally:
        await bus.close()
