"""Wake-ups for followers of the activity log (core.handoffs), within a process or across
replicas.

The activity log in the store is the truth: a follower reads it after its cursor, then
waits on the bus, then reads again. The bus only says "organisation X has new activity",
so a lost wake-up costs latency, never an event (followers also re-read every
`POLL_S`). `LocalBus` reaches followers in this process; `RedisBus` (`serve --redis`)
also appends each wake-up to a Redis Stream per organisation, which one reader task per
organisation and process follows (`XREAD BLOCK` from the stream's last entry as it was
when the first follower subscribed, so nothing published after a follower's store read
is missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.redis_limits import KEY_PREFIX, redacted

log = logging.getLogger("switchboard.activity")

POLL_S = 30.0  # a follower re-reads the store this often even without a wake-up
STREAM_MAXLEN = 1000  # wake-ups kept per organisation's stream (approximate trim)
MAX_PENDING_PUBLISHES = 1000  # stream appends in flight before wake-ups are dropped
_BLOCK_MS = 5000
_RETRY_S = 1.0


class Waiter:
    """One follower's wake-up flag."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float = POLL_S) -> bool:
        """Until a wake-up since the last wait (True) or the timeout (False)."""
        woken = True
        try:
            await asyncio.wait_for(self._event.wait(), timeout_s)
        except TimeoutError:
            woken = False
        self._event.clear()
        return woken


class ActivityBus(Protocol):
    async def publish(self, org_id: str) -> None: ...

    def subscribe(self, org_id: str) -> contextlib.AbstractAsyncContextManager[Waiter]: ...

    async def close(self) -> None: ...


class LocalBus:
    """Followers in this process only (one replica, or no Redis)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[Waiter]] = {}

    def wake_local(self, org_id: str) -> None:
        for waiter in self._waiters.get(org_id, ()):
            waiter.wake()

    async def publish(self, org_id: str) -> None:
        self.wake_local(org_id)

    async def _following(self, org_id: str) -> None:
        """Hook: awaited by every subscriber before it reads the store (the first one
        starts whatever delivers the organisation's wake-ups here)."""

    def _last_follower(self, org_id: str) -> None:
        """Hook: an organisation's last follower in this process left."""

    @contextlib.asynccontextmanager
    async def subscribe(self, org_id: str) -> AsyncIterator[Waiter]:
        waiter = Waiter()
        self._waiters.setdefault(org_id, set()).add(waiter)
        try:
            await self._following(org_id)
            yield waiter
        finally:
            waiters = self._waiters.get(org_id, set())
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(org_id, None)
                self._last_follower(org_id)

    async def close(self) -> None:
        self._waiters.clear()


def stream_key(org_id: str) -> str:
    return f"{KEY_PREFIX}activity:{org_id}"


class RedisBus(LocalBus):
    """Wake-ups through one Redis Stream per organisation, so a follower on any replica
    hears a change made on any other. Redis down: followers on other replicas fall back
    to polling the store every `POLL_S`."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._started: dict[str, asyncio.Future[None]] = {}
        self._publishing: set[asyncio.Task[None]] = set()
        self._failing = False

    async def publish(self, org_id: str) -> None:
        """Wake local followers now and append to the stream in the background: a turn or
        an operator call never waits on Redis (or on its connect timeout while it is
        down). Past `MAX_PENDING_PUBLISHES` in flight, wake-ups for other replicas are
        dropped (their followers poll)."""
        self.wake_local(org_id)
        if len(self._publishing) >= MAX_PENDING_PUBLISHES:
            return
        task = asyncio.ensure_future(self._xadd(org_id))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _xadd(self, org_id: str) -> None:
        try:
            await self.redis.xadd(stream_key(org_id), {"at": "1"}, maxlen=STREAM_MAXLEN,
                                  approximate=True)
        except (RedisError, OSError) as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning("Redis at %s unreachable (%s): operators and visitors on other "
                        "replicas see changes within %.0fs instead of at once",
                        redacted(self.url), exc.__class__.__name__, POLL_S)

    async def _tail(self, org_id: str) -> str:
        try:
            last = await self.redis.xrevrange(stream_key(org_id), count=1)
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return "$"
        if not last:
            return "0-0"
        entry_id = last[0][0]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def _following(self, org_id: str) -> None:
        if org_id not in self._readers:
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._readers[org_id] = asyncio.ensure_future(self._read(org_id, started))
            self._started[org_id] = started
        # Every subscriber waits until the reader knows where the stream stood: what is
        # published after that (after this subscriber's store read) reaches it.
        await asyncio.shield(self._started[org_id])

    def _last_follower(self, org_id: str) -> None:
        reader = self._readers.pop(org_id, None)
        self._started.pop(org_id, None)
        if reader is not None:
            reader.cancel()

    async def _read(self, org_id: str, started: asyncio.Future[None]) -> None:
        try:
            after = await self._tail(org_id)
        finally:
            if not started.done():
                started.set_result(None)
        # A connection of its own: XREAD BLOCK holds it for up to _BLOCK_MS.
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        key = stream_key(org_id)
        try:
            while True:
                try:
                    reply = await client.xread({key: after}, block=_BLOCK_MS)
                except (RedisError, OSError) as exc:
                    self._warn(exc)
                    await asyncio.sleep(_RETRY_S)
                    continue
                if self._failing:
                    self._failing = False
                    log.warning("Redis at %s reachable again", redacted(self.url))
                streams: list[Any] = list(reply or ())
                for stream in streams:
                    entries: list[Any] = list(stream[1])
                    if entries:
                        last = entries[-1][0]
                        after = last.decode() if isinstance(last, bytes) else str(last)
                        self.wake_local(org_id)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    async def close(self) -> None:
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=1.0)
        for reader in list(self._readers.values()):
            reader.cancel()
        for reader in list(self._readers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._readers.clear()
        self._started.clear()
        await super().close()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()
