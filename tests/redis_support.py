"""A Redis database of a test file's own on the machine's Redis (127.0.0.1:6379).

Each test file that needs Redis names its own db number (files run one after another, but
a file's number must not be another's), and its `redis_url` fixture wraps `flushed_db`:
the db is emptied before and after each test, and the test is skipped, saying why, when
no Redis answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError


def url_for(db: int) -> str:
    return f"redis://127.0.0.1:6379/{db}"


@asynccontextmanager
async def flushed_db(db: int, needed_for: str) -> AsyncIterator[str]:
    url = url_for(db)
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        await client.flushdb()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis at {url} ({exc.__class__.__name__}): {needed_for} need one")
    try:
        yield url
    finally:
        await client.flushdb()
        await client.aclose()
