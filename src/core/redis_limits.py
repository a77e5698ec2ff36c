"""Rate limits and stream caps shared by every replica through Redis.

Each check is one Lua script, so the read-modify-write of a bucket or a stream counter is
atomic across replicas (two replicas taking the last token at once cannot both get it).

- Token bucket per key (and per visitor): a hash `{tokens, updated}` refilled from the
  time the caller passes (the clock's wall time, so replicas with synchronised clocks
  agree, and tests can drive it); it expires once it would be full again anyway.
- Concurrent streams per key: a sorted set of slot ids scored by lease expiry. A holder
  renews its lease while the stream lives and removes it at the end; a replica that
  crashes stops renewing, and its slots drop out once their lease has passed.

Redis down (refused, timed out, or any Redis error): the limiter falls back to this
process's own buckets (`LocalRateLimiter`), logs one warning, and tries Redis again after
`RETRY_AFTER_S`; the first successful call logs that shared limits resumed. Socket
timeouts are short so a dead Redis costs a request at most `SOCKET_TIMEOUT_S`, never a
hang, and never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.clock import Clock, RandomIds
from core.ratelimit import LocalRateLimiter, RateLimit, concurrency_limited, rate_limited

log = logging.getLogger("switchboard.redis")

SOCKET_TIMEOUT_S = 0.25  # per Redis call; a request never waits longer on Redis
RETRY_AFTER_S = 1.0  # after a failure, per-process limits for this long before retrying
STREAM_LEASE_S = 30.0  # a crashed replica's stream slots are released after this
KEY_PREFIX = "switchboard:"

# KEYS[1] bucket; ARGV rps, burst, now (s). Returns {allowed, seconds to wait} (strings:
# Lua numbers come back truncated to integers).
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
updated = math.max(now, updated)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(updated))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
if allowed == 1 then
  return {1, '0'}
end
return {0, tostring((1 - tokens) / rate)}
"""

# KEYS[1] slot set; ARGV now, lease, max, slot id. Returns 1 (taken) or 0 (at the cap).
_TAKE_SLOT = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) * 2)
return 1
"""


def connect(url: str) -> aioredis.Redis:
    """A client with short timeouts and no retries: the fallback, not a retry loop,
    is what answers a Redis outage."""
    return aioredis.Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
    )


class RedisRateLimiter:
    """`RateLimiter` on Redis, with `LocalRateLimiter` as the fallback while it is down."""

    def __init__(self, url: str, clock: Clock, *, lease_s: float = STREAM_LEASE_S) -> None:
        self.url = url
        self._clock = clock
        # Slot ids must be unique across replicas, so never the (maybe seeded) IdSource.
        self._ids = RandomIds()
        self._lease_s = lease_s
        self.redis = connect(url)
        self.local = LocalRateLimiter(clock)
        self._bucket = self.redis.register_script(_TOKEN_BUCKET)
        self._take = self.redis.register_script(_TAKE_SLOT)
        self._down_until: float | None = None  # monotonic; None while Redis answers

    @property
    def shared(self) -> bool:
        """Whether limits are currently shared (Redis answered the last call)."""
        return self._down_until is None

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _use_redis(self) -> bool:
        return self._down_until is None or self._clock.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self._down_until is None:
            log.warning("Redis at %s unreachable (%s): rate limits and stream caps fall back "
                        "to per-process counts until it answers again",
                        redacted(self.url), exc.__class__.__name__)
        self._down_until = self._clock.monotonic() + RETRY_AFTER_S

    def _recovered(self) -> None:
        if self._down_until is not None:
            log.warning("Redis at %s reachable again: shared rate limits resume",
                        redacted(self.url))
            self._down_until = None

    async def check_request(self, key_id: str, limit: RateLimit) -> None:
        if limit.rps <= 0:
            return
        if self._use_redis():
            try:
                allowed, wait = await self._bucket(
                    keys=[f"{KEY_PREFIX}bucket:{key_id}"],
                    args=[repr(limit.rps), limit.burst, repr(self._now())],
                )
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._recovered()
                if int(allowed) == 1:
                    return
                raise rate_limited(limit, float(wait))
        await self.local.check_request(key_id, limit)

    @contextlib.asynccontextmanager
    async def stream_slot(self, key_id: str, limit: RateLimit) -> AsyncIterator[None]:
        if limit.max_streams <= 0:
            yield
            return
        slot = await self._take_slot(key_id, limit)
        if slot is None:
            async with self.local.stream_slot(key_id, limit):
                yield
            return
        key, member = slot
        renew = asyncio.ensure_future(self._renew(key, member))
        try:
            yield
        finally:
            renew.cancel()
            # Release even when the holder is being cancelled; if Redis is gone the
            # lease releases the slot instead.
            with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
                await asyncio.shield(self.redis.zrem(key, member))

    async def _take_slot(self, key_id: str, limit: RateLimit) -> tuple[str, str] | None:
        """The slot taken in Redis, None when Redis is down (use a local one), or raise."""
        if not self._use_redis():
            return None
        key, member = f"{KEY_PREFIX}streams:{key_id}", self._ids.uuid()
        try:
            taken = await self._take(
                keys=[key], args=[repr(self._now()), repr(self._lease_s),
                                  limit.max_streams, member],
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        if int(taken) != 1:
            raise concurrency_limited(limit)
        return key, member

    async def _renew(self, key: str, member: str) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.zadd(key, {member: self._now() + self._lease_s}, xx=True)

    def _now(self) -> float:
        return self._clock.now().timestamp()


def redacted(url: str) -> str:
    """The URL without a password (it goes to the log)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def check_url(url: str) -> str:
    """Validate a --redis URL up front (a clear error at start, not at the first request);
    raises ValueError naming what is wrong."""
    aioredis.connection.parse_url(url)
    return url
