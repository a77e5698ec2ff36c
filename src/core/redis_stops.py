"""Stops across replicas through Redis pub/sub.

A stop for a conversation whose turn is not running in this process is published on
`STOP_CHANNEL` with a reply channel of its own; every replica listens, and the one
running the turn stops it (as a local stop would: it is stored with its partial text)
and answers `{stopped, turn_id}` on the reply channel. Nobody answering within
`REPLY_TIMEOUT_S` (or Redis down) means no turn is running anywhere we can reach: the
stop answers "not running", as it did before there were replicas.

Pub/sub, not a stream, is enough here: a stop is only meaningful while the turn runs, so
a replica that misses one (Redis briefly down) has nothing to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.clock import RandomIds
from core.engine.live import CANCEL_STOP, LiveTurns
from core.redis_limits import KEY_PREFIX, redacted

log = logging.getLogger("switchboard.redis")

STOP_CHANNEL = f"{KEY_PREFIX}stop"
REPLY_TIMEOUT_S = 5.0  # how long a stop waits for the replica running the turn to store it
RESUBSCRIBE_S = 1.0  # after the listener loses Redis, wait this long before listening again


class RemoteStops:
    def __init__(self, url: str, live: LiveTurns) -> None:
        self.url = url
        self._live = live
        # No socket timeout: the listener blocks on its subscription by design.
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=0.25)
        self._ids = RandomIds()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._handling: set[asyncio.Task[None]] = set()  # held so they are not collected

    async def start(self) -> None:
        self._listener = asyncio.ensure_future(self._listen())
        # Wait briefly so a stop sent right after start is heard; never block start on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=1.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.redis.aclose()

    async def stop_elsewhere(self, conversation_id: str) -> tuple[bool, str] | None:
        """Stop the conversation's turn on whichever replica runs it (None: none does)."""
        reply = f"{KEY_PREFIX}stopped:{self._ids.uuid()}"
        pubsub = self.redis.pubsub()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                await pubsub.subscribe(reply)
                heard = await self.redis.publish(STOP_CHANNEL, json.dumps(
                    {"conversation_id": conversation_id, "reply": reply}))
                if int(heard) <= 1:  # only this replica listens
                    return None
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = json.loads(message["data"])
                        return bool(data["stopped"]), str(data["turn_id"])
        except (RedisError, OSError, TimeoutError, ValueError, KeyError):
            return None
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        return None

    async def _listen(self) -> None:
        failing = False
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(STOP_CHANNEL)
                self._subscribed.set()
                if failing:
                    log.warning("Redis at %s reachable again: stops reach other replicas",
                                redacted(self.url))
                    failing = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        task = asyncio.ensure_future(self._handle(message["data"]))
                        self._handling.add(task)
                        task.add_done_callback(self._handling.discard)
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("Redis at %s unreachable (%s): stops reach only turns on "
                                "the replica they are sent to", redacted(self.url),
                                exc.__class__.__name__)
                    failing = True
                await asyncio.sleep(RESUBSCRIBE_S)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _handle(self, raw: Any) -> None:
        try:
            request = json.loads(raw)
            conversation_id, reply = str(request["conversation_id"]), str(request["reply"])
        except (ValueError, KeyError, TypeError):
            return
        live = self._live.get(conversation_id)
        if live is None or live.done:
            return
        stopped = live.cancel(CANCEL_STOP)
        await live.finished.wait()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.publish(reply, json.dumps(
                {"stopped": stopped, "turn_id": live.turn_id}))
