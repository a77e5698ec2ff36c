"""Live turns shared by replicas through Redis Streams (`serve --redis`).

Every event of a turn running here also goes to the Stream `switchboard:live:{conv}`,
with the event's sequence number as the entry id (`{seq}-0`) and the store's own event
serialisation as its one field, so a replica reading it rebuilds exactly the Event (time
and body) the running replica holds, and every dialect renders the same bytes. A writer
per turn batches whatever was published since its last round trip into one pipeline, in
order; the turn's loop only appends to a list. After the terminal event the stream keeps
that turn's entries only and expires after `ENDED_TTL_S`.

A client on replica B following a turn that runs on replica A gets a mirror: a
`LiveTurn` that B feeds from the stream, starting after the last event B replayed from
the store. Stream reads name the position (`XREAD` after `{seq}-0`), so nothing
published between the store read and the first stream read is lost: the position is
recorded before the follow is handed to the stream (the Dify #40948 race). Each read
blocks at most `READ_BLOCK_MS`; a read that brings nothing re-checks the store, so a turn
that ended and whose stream already expired is replayed from the store, while a turn
still running with no entries yet is simply waited on. A gap in the stream (entries lost
while Redis was down) or Redis itself down turns the mirror to the store: it waits for
the turn's stored end and replays from there (no gap, no duplicate, slower).

Mirrors announce themselves in `switchboard:followers:{turn}` (a sorted set scored by an
expiry in Redis's own clock, refreshed every `FOLLOWER_BEAT_S`; a follower that leaves
stays counted for the detach grace), which the replica running the turn checks before
cancelling a turn whose local clients all left.

Redis down: writes and reads fail fast (`SOCKET_TIMEOUT_S`), one warning is logged and
one more when Redis answers again; live streams then reach only followers on the replica
running the turn, followers elsewhere get the turn from the store when it ends, and a
detached turn is cancelled after its grace as without Redis. Never a 500, never a hang.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from core.clock import RandomIds
from core.domain import TurnRecord
from core.engine.live import LiveTurn
from core.engine.recovery import incomplete_after
from core.events import Event, TurnStarted, TurnStatus, event_from_dict, event_to_dict
from core.redis_limits import KEY_PREFIX, RETRY_AFTER_S, SOCKET_TIMEOUT_S, redacted
from core.store.base import Store
from core.store.rows import dumps

log = logging.getLogger("switchboard.redis")

LIVE_PREFIX: Final = f"{KEY_PREFIX}live:"
FOLLOWERS_PREFIX: Final = f"{KEY_PREFIX}followers:"
ENDED_TTL_S: Final = 60  # a finished turn's stream stays this long for late followers
RUNNING_TTL_S: Final = 600  # a stream whose writer died (no terminal) goes after this
READ_BLOCK_MS: Final = 1000  # a mirror re-checks the store this often while idle
READ_COUNT: Final = 512  # entries per read
STORE_POLL_S: Final = 0.5  # a mirror off the stream looks for the stored end this often
FOLLOWER_BEAT_S: Final = 1.0
FOLLOWER_TTL_S: Final = 3.0  # a mirror that stopped beating is no follower after this
FIELD: Final = "e"

# KEYS[1] followers; ARGV ttl (ms), member. Scored by Redis's clock: replicas' clocks
# need not agree.
_ENTER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left < ttl + 1000 then
  redis.call('PEXPIRE', KEYS[1], ttl + 1000)
end
return 1
"""

# KEYS[1] followers. Returns how many have not lapsed.
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


# KEYS[1] stream; ARGV seq, event, ended ttl (s). The terminal event of a turn whose
# lease expired, at its own seq, or just past the stream's top when its old replica (not
# dead after all) published past it meanwhile: it must land either way; a follower then
# sees the numbers jump and takes the stored end (see `_from_stream`).
_TERMINAL = """
local id = ARGV[1] .. '-0'
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if top[1] then
  local last = tonumber(string.match(top[1][1], '^(%d+)'))
  if last >= tonumber(ARGV[1]) then
    id = tostring(last + 1) .. '-0'
  end
end
redis.call('XADD', KEYS[1], id, 'e', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return id
"""


def stream_key(conversation_id: str) -> str:
    return f"{LIVE_PREFIX}{conversation_id}"


def encode(event: Event) -> str:
    return dumps(event_to_dict(event))


def decode(raw: bytes | str) -> Event:
    return event_from_dict(json.loads(raw))


def _events(entries: Any) -> list[Event]:
    """The events of XRANGE / XREAD entries ([(id, {field: value})])."""
    return [decode(fields[FIELD.encode()]) for _id, fields in entries or ()]


class MirrorTurn(LiveTurn):
    """A turn running on another replica, as this replica's followers see it."""

    def _on_detached(self) -> None:
        # Its followers are gone: stop reading the stream (the turn itself runs on).
        if self.task is not None:
            self.task.cancel()


class _Writer:
    """One turn's events to its stream, in order, batched per round trip."""

    def __init__(self, live: RedisLive, key: str) -> None:
        self._live = live
        self._key = key
        self._pending: list[Event] = []
        self._task: asyncio.Task[None] | None = None
        self._first_seq = 0

    def put(self, event: Event) -> None:
        if not self._first_seq:
            self._first_seq = event.seq
        self._pending.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())
            self._live.hold(self._task)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            await self._live.write(self._key, batch, self._first_seq)


class RedisLive:
    """`core.engine.live.SharedLive` on Redis Streams."""

    def __init__(self, url: str, store: Store, detach_grace_s: float) -> None:
        self.url = url
        self._store = store
        self._grace = detach_grace_s
        self._ids = RandomIds()
        no_retry = Retry(NoBackoff(), 0)
        self.redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=SOCKET_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
            retry=no_retry)
        # Blocking reads wait up to READ_BLOCK_MS by design: their own connections.
        self.reader = aioredis.Redis.from_url(
            url, socket_connect_timeout=SOCKET_TIMEOUT_S,
            socket_timeout=READ_BLOCK_MS / 1000 + 1.0, retry=no_retry)
        self._enter = self.redis.register_script(_ENTER)
        self._count = self.redis.register_script(_COUNT)
        self._terminal = self.redis.register_script(_TERMINAL)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._failing = False
        self._write_after = 0.0  # monotonic; writes are skipped before it (Redis down)

    # -- health -------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        self._write_after = time.monotonic() + RETRY_AFTER_S
        if not self._failing:
            self._failing = True
            log.warning("Redis at %s unreachable (%s): live streams reach only clients on "
                        "the replica running the turn; other replicas serve it from the "
                        "store once it ends", redacted(self.url), exc.__class__.__name__)

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("Redis at %s reachable again: live streams reach every replica",
                        redacted(self.url))

    def hold(self, task: asyncio.Future[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        writers = [t for t in self._tasks if not t.done()]
        if writers:
            await asyncio.wait(writers, timeout=2 * SOCKET_TIMEOUT_S + 0.5)
        for task in list(self._tasks):
            task.cancel()
        await self.redis.aclose()
        await self.reader.aclose()

    # -- the running replica's side -----------------------------------------------------

    def writer(self, turn: LiveTurn) -> Callable[[Event], None]:
        return _Writer(self, stream_key(turn.conversation_id)).put

    async def write(self, key: str, batch: list[Event], first_seq: int) -> None:
        if time.monotonic() < self._write_after:
            return  # Redis was down a moment ago: this turn's followers use the store
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event in batch:
                    pipe.xadd(key, {FIELD: encode(event)}, id=f"{event.seq}-0")
                if batch[-1].terminal:
                    pipe.xtrim(key, minid=f"{first_seq}-0", approximate=False)
                    pipe.expire(key, ENDED_TTL_S)
                else:
                    pipe.expire(key, RUNNING_TTL_S)
                results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._answered()
        refused = [r for r in results if isinstance(r, Exception)]
        if refused:
            # An entry id at or below the stream's top: another replica already ended
            # this turn (its lease expired) or began the next one. Followers notice the
            # gap and read the store.
            log.info("live stream %s refused %d events: %s", key, len(refused), refused[0])

    async def followed_elsewhere(self, turn_id: str) -> bool:
        try:
            count = await self._count(keys=[FOLLOWERS_PREFIX + turn_id])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._answered()
        return int(count) > 0

    async def tail_seq(self, conversation_id: str, turn_id: str) -> int:
        try:
            entries: Any = await self.redis.xrevrange(stream_key(conversation_id), count=1)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return 0
        for event in _events(entries):
            if event.turn_id == turn_id:
                return event.seq
        return 0

    async def publish_terminal(self, event: Event) -> None:
        try:
            await self._terminal(keys=[stream_key(event.conversation_id)],
                                 args=[event.seq, encode(event), ENDED_TTL_S])
        except (RedisError, OSError) as exc:
            self._failed(exc)

    # -- a follower's side --------------------------------------------------------------

    def mirror(self, turn: TurnRecord, after_seq: int) -> LiveTurn:
        first = turn.created_at

        def now() -> datetime:
            return first

        mirror = MirrorTurn(turn_id=turn.id, conversation_id=turn.conversation_id,
                            org_id=turn.org_id, first_seq=after_seq + 1, now=now,
                            detach_grace_s=0.0)
        mirror.idempotency_key = turn.idempotency_key
        mirror.request_hash = turn.request_hash
        mirror.task = asyncio.get_running_loop().create_task(self._feed(mirror, after_seq))
        self.hold(mirror.task)
        return mirror

    async def _feed(self, mirror: LiveTurn, after_seq: int) -> None:
        member = self._ids.uuid()
        beat = asyncio.ensure_future(self._beat(mirror.turn_id, member))
        try:
            last = await self._from_stream(mirror, after_seq)
            if last is not None:
                await self._from_store(mirror, last)
        except Exception as exc:  # the store is down too: end the follow, never hang
            log.warning("turn %s: following it from another replica failed: %s",
                        mirror.turn_id, exc)
        finally:
            beat.cancel()
            if not mirror.done:
                mirror.end()
                # Gone before the end: still counted for the grace, as a local client is.
                await self._enter_followers(mirror.turn_id, member, self._grace)

    async def _from_stream(self, mirror: LiveTurn, after_seq: int) -> int | None:
        """Publish the stream's events; None once the terminal one is published, else
        the last seq published when the store has to finish the job."""
        key = stream_key(mirror.conversation_id)
        last = after_seq
        started = False
        while True:
            try:
                reply: Any = await self.reader.xread({key: f"{last}-0"}, count=READ_COUNT,
                                                     block=READ_BLOCK_MS)
            except (RedisError, OSError) as exc:
                self._failed(exc)
                return last
            self._answered()
            entries = _events(reply[0][1] if reply else ())
            for event in entries:
                # Contiguous, except that a segment's TurnStarted may open the stream
                # (the store's numbering can skip where nothing was stored).
                if event.seq != last + 1 and (started or not isinstance(event.body,
                                                                        TurnStarted)):
                    log.info("live stream %s: gap after %d; following the store", key, last)
                    return last
                started = True
                last = event.seq
                mirror.publish(event)
                if event.terminal:
                    return None
            if not entries and not await self._running(mirror):
                return last

    async def _running(self, mirror: LiveTurn) -> bool:
        stored = await self._store.get_turn(mirror.org_id, mirror.turn_id)
        return stored is not None and stored.status == TurnStatus.RUNNING

    async def _from_store(self, mirror: LiveTurn, last: int) -> None:
        while True:  # the store is the only signal left: poll it
            if not await self._running(mirror):
                break
            await asyncio.sleep(STORE_POLL_S)
        for event in await self._store.list_events(mirror.org_id, mirror.conversation_id,
                                                   last):
            mirror.publish(event)
            if event.terminal:
                return
            last = event.seq
        # Seen live past what a crash let be stored: its recorded end, if any.
        incomplete = await incomplete_after(self._store, mirror.org_id,
                                            mirror.conversation_id, last)
        if incomplete is not None:
            mirror.publish(incomplete)

    async def _beat(self, turn_id: str, member: str) -> None:
        while True:
            await self._enter_followers(turn_id, member, FOLLOWER_TTL_S)
            await asyncio.sleep(FOLLOWER_BEAT_S)

    async def _enter_followers(self, turn_id: str, member: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        try:
            await self._enter(keys=[FOLLOWERS_PREFIX + turn_id],
                              args=[int(ttl_s * 1000), member])
        except (RedisError, OSError) as exc:
            self._failed(exc)
