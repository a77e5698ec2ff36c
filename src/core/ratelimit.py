"""Per-key and per-visitor rate limits: token buckets for requests and a cap on
concurrent streams.

Limits are configured per organisation (`OrgSettings.extra["rate_limit"]`:
`{"rps": float, "burst": int, "max_streams": int, "visitor_rps": float,
"visitor_burst": int}`), with the defaults below. A publishable key (and its flow
sessions) is shared by every visitor of a site, so besides the key's bucket each visitor
has one: a verified user by their user id, anyone else by their client address
(core.clientaddr: never a client-chosen string). Secret keys are server-side code and
only have the key's bucket. Buckets are
kept per key in this process by default; with `--redis`, `core.redis_limits` keeps them
in Redis (Lua scripts, shared by replicas) behind the same `RateLimiter` seam, which is
async for that reason.

A refused request raises RESOURCE_EXHAUSTED (reason `rate_limited` or
`concurrency_limited`) carrying `retry_after_s`, which the gRPC layer sends as RetryInfo
and every dialect as `Retry-After`. Refusal happens before anything is written or any
model is called. Each key has its own bucket, so one tenant at its limit does not slow
another (the check is O(1) and takes no lock shared between keys).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from core.clock import Clock
from core.domain import KeyKind, Principal
from core.errors import Code, Reason, SwitchboardError

DEFAULT_RPS = 10.0
DEFAULT_BURST = 20
DEFAULT_MAX_STREAMS = 50
DEFAULT_VISITOR_RPS = 5.0
DEFAULT_VISITOR_BURST = 20
MAX_TRACKED_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    rps: float = DEFAULT_RPS
    burst: int = DEFAULT_BURST
    max_streams: int = DEFAULT_MAX_STREAMS
    visitor_rps: float = DEFAULT_VISITOR_RPS
    visitor_burst: int = DEFAULT_VISITOR_BURST

    @classmethod
    def from_settings(cls, extra: dict[str, Any]) -> RateLimit:
        raw = extra.get("rate_limit") or {}
        return cls(
            rps=float(raw.get("rps", DEFAULT_RPS)),
            burst=int(raw.get("burst", DEFAULT_BURST)),
            max_streams=int(raw.get("max_streams", DEFAULT_MAX_STREAMS)),
            visitor_rps=float(raw.get("visitor_rps", DEFAULT_VISITOR_RPS)),
            visitor_burst=int(raw.get("visitor_burst", DEFAULT_VISITOR_BURST)),
        )

    def per_visitor(self) -> RateLimit:
        return RateLimit(rps=self.visitor_rps, burst=self.visitor_burst)


def visitor_key(principal: Principal, user_id: str, verified: bool) -> str:
    """The bucket of the visitor behind a widget-key call ("" for secret keys, and when
    the visitor cannot be told apart)."""
    if principal.key_kind == KeyKind.SECRET:
        return ""
    if verified:
        return f"{principal.key_id}/user:{user_id}"
    return f"{principal.key_id}/addr:{principal.client}" if principal.client else ""


def budget_user(principal: Principal, user_id: str, verified: bool) -> str:
    """Whom per-user budgets charge: the verified user, the visitor's address when
    unverified (a claimed user_id would let anyone spend another's budget, or dodge their
    own), or, for trusted secret-key callers, the user id they name."""
    if principal.key_kind == KeyKind.SECRET or verified:
        return user_id or "anonymous"
    return f"visitor:{principal.client}" if principal.client else "anonymous"


def rate_limited(limit: RateLimit, wait: float) -> SwitchboardError:
    return SwitchboardError(
        Code.RESOURCE_EXHAUSTED, Reason.RATE_LIMITED,
        f"Rate limit exceeded ({limit.rps:g} requests/s, burst {limit.burst}); "
        f"retry in {math.ceil(wait)} s.",
        retry_after_s=wait,
    )


def concurrency_limited(limit: RateLimit) -> SwitchboardError:
    return SwitchboardError(
        Code.RESOURCE_EXHAUSTED, Reason.CONCURRENCY_LIMITED,
        f"Too many concurrent streams for this key (at most {limit.max_streams}).",
        retry_after_s=1.0,
    )


class RateLimiter(Protocol):
    async def check_request(self, key_id: str, limit: RateLimit) -> None:
        """Take one token or raise RESOURCE_EXHAUSTED with retry_after_s."""
        ...

    def stream_slot(self, key_id: str, limit: RateLimit) -> AbstractAsyncContextManager[None]:
        """An async context manager holding one concurrent-stream slot, or raising."""
        ...


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class LocalRateLimiter:
    """In-process token buckets and stream counters."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._streams: dict[str, int] = {}

    async def check_request(self, key_id: str, limit: RateLimit) -> None:
        if limit.rps <= 0:
            return
        now = self._clock.monotonic()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._buckets.clear()
            bucket = self._buckets[key_id] = _Bucket(float(limit.burst), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed * limit.rps)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        raise rate_limited(limit, (1.0 - bucket.tokens) / limit.rps)

    @asynccontextmanager
    async def stream_slot(self, key_id: str, limit: RateLimit) -> AsyncIterator[None]:
        current = self._streams.get(key_id, 0)
        if limit.max_streams > 0 and current >= limit.max_streams:
            raise concurrency_limited(limit)
        self._streams[key_id] = current + 1
        try:
            yield
        finally:
            left = self._streams.get(key_id, 1) - 1
            if left > 0:
                self._streams[key_id] = left
            else:
                self._streams.pop(key_id, None)

    def open_streams(self, key_id: str) -> int:
        return self._streams.get(key_id, 0)
