"""Live turns: the in-memory event log of a running turn and the clients following it.

A turn runs in its own task, apart from the RPC that started it, so a client can go away
and come back (reattach) and a duplicate request can attach to the same turn. Followers
read the turn's event log from any sequence number and then wait for new events.

When the last follower leaves before the turn ends, the turn is detached: it keeps
running for `detach_grace_s` so the client can reattach; with nobody back by then it is
cancelled (and stored as cancelled). This registry is per process. With `--redis`, a
`SharedLive` (core.redis_live) sits behind it: every event a turn publishes also goes to
a Redis Stream, a client on another replica follows the turn through a mirror (a
`LiveTurn` fed from that stream), and a turn whose last local follower left is not
cancelled while followers on other replicas still read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Protocol

from core.domain import TurnRecord
from core.events import Event, EventBody, TextDelta

log = logging.getLogger("switchboard.turns")

CANCEL_DISCONNECT = "cancelled"
CANCEL_STOP = "stopped"
CANCEL_SHUTDOWN = "shutdown"
CANCEL_LEASE_LOST = "lease_lost"
# A detached turn followed on another replica is looked at again this often.
REMOTE_RECHECK_S = 1.0


class SharedLive(Protocol):
    """Live turns shared by replicas (core.redis_live)."""

    def writer(self, turn: LiveTurn) -> Callable[[Event], None]:
        """Where a turn running here publishes its events (ordered, never waits)."""
        ...

    def mirror(self, turn: TurnRecord, after_seq: int) -> LiveTurn:
        """A turn running on another replica, followed from after `after_seq` to its
        terminal event (or its stored end)."""
        ...

    async def followed_elsewhere(self, turn_id: str) -> bool: ...

    async def tail_seq(self, conversation_id: str, turn_id: str) -> int:
        """The last sequence number published live for the turn (0: none known)."""
        ...

    async def publish_terminal(self, event: Event) -> None:
        """The terminal event of a turn stored by a replica not running it (a lease
        that expired), for followers elsewhere."""
        ...


class LiveTurn:
    def __init__(
        self,
        *,
        turn_id: str,
        conversation_id: str,
        org_id: str,
        first_seq: int,
        now: Callable[[], datetime],
        detach_grace_s: float,
    ) -> None:
        self.turn_id = turn_id
        self.conversation_id = conversation_id
        self.org_id = org_id
        self.events: list[Event] = []
        self.done = False
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason = ""
        # Set once the turn is being stored: from then on it can no longer be cancelled.
        self.committing = False
        self.idempotency_key = ""
        self.request_hash = ""
        self._next_seq = first_seq
        self._now = now
        self._grace = detach_grace_s
        # Made by the first follower to wait, set and dropped by the next publish: a burst
        # of events while nobody waits costs no Event per event.
        self._changed: asyncio.Event | None = None
        self._followers = 0
        self._detach_timer: asyncio.TimerHandle | None = None
        self.finished = asyncio.Event()
        # For the turn metrics (core.observability.turns).
        self.started_monotonic = time.monotonic()
        self.first_token_monotonic: float | None = None
        # With a SharedLive: where every published event also goes (never waits), and
        # whether followers on other replicas still read the turn.
        self.sink: Callable[[Event], None] | None = None
        self.followed_elsewhere: Callable[[str], Awaitable[bool]] | None = None
        self._expiry_check: asyncio.Task[None] | None = None

    @classmethod
    def replay(cls, events: list[Event], *, org_id: str, key: str = "",
               request_hash: str = "") -> LiveTurn:
        """A finished turn rebuilt from its stored events (idempotent replays)."""
        first = events[0]
        turn = cls(turn_id=first.turn_id, conversation_id=first.conversation_id, org_id=org_id,
                   first_seq=first.seq, now=lambda: first.time, detach_grace_s=0.0)
        turn.idempotency_key = key
        turn.request_hash = request_hash
        for event in events:
            turn.publish(event)
        return turn

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def make_event(self, body: EventBody) -> Event:
        """Number an event without publishing it (the completed event is numbered, stored,
        then published)."""
        event = Event(self._next_seq, self.conversation_id, self.turn_id, self._now(), body)
        self._next_seq += 1
        return event

    def publish(self, event: Event) -> None:
        self.events.append(event)
        if self.sink is not None:
            self.sink(event)
        if event.terminal:
            self.done = True
            self.finished.set()
            self._cancel_timer()
        # Wake every waiting follower; the next to wait makes a fresh Event.
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def emit(self, body: EventBody) -> Event:
        if self.first_token_monotonic is None and isinstance(body, TextDelta) and body.text:
            self.first_token_monotonic = time.monotonic()
        event = self.make_event(body)
        self.publish(event)
        return event

    def cancel(self, reason: str) -> bool:
        """Ask the running task to stop; the first reason wins. False if already ended."""
        if self.done or self.committing or self.task is None or self.task.done():
            return False
        if not self.cancel_reason:
            self.cancel_reason = reason
            self.task.cancel()
        return True

    async def follow(self, after_seq: int = 0) -> AsyncIterator[Event]:
        """Yield events with seq > after_seq, then live ones, until the terminal event."""
        self._followers += 1
        self._cancel_timer()
        try:
            index = 0
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if event.seq > after_seq:
                        yield event
                    if event.terminal:
                        return
                if self.done:
                    return
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()
        finally:
            self._followers -= 1
            if self._followers == 0 and not self.done:
                self._on_detached()

    def _on_detached(self) -> None:
        if self._grace <= 0 and self.followed_elsewhere is not None:
            # No grace, but a client on another replica may still be reading it (as a
            # duplicate attached here would keep it running).
            self._expiry_check = asyncio.ensure_future(self._cancel_unless_followed())
            return
        if self._grace <= 0:
            log.info("turn %s: client left, cancelling", self.turn_id)
            self.cancel(CANCEL_DISCONNECT)
            return
        log.info("turn %s: client left, %.1fs to reattach", self.turn_id, self._grace)
        loop = asyncio.get_running_loop()
        self._detach_timer = loop.call_later(self._grace, self._detach_expired)

    def end(self) -> None:
        """End a mirror that has no terminal event to publish: its followers return."""
        self.done = True
        self.finished.set()
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def _detach_expired(self) -> None:
        self._detach_timer = None
        if self._followers or self.done:
            return
        if self.followed_elsewhere is not None:
            self._expiry_check = asyncio.ensure_future(self._cancel_unless_followed())
            return
        log.info("turn %s: nobody reattached, cancelling", self.turn_id)
        self.cancel(CANCEL_DISCONNECT)

    async def _cancel_unless_followed(self) -> None:
        assert self.followed_elsewhere is not None
        elsewhere = await self.followed_elsewhere(self.turn_id)
        if self._followers or self.done:
            return
        if elsewhere:
            # Reattached on another replica: look again once its presence could lapse.
            loop = asyncio.get_running_loop()
            again = min(self._grace, REMOTE_RECHECK_S) if self._grace > 0 else REMOTE_RECHECK_S
            self._detach_timer = loop.call_later(again, self._detach_expired)
            return
        log.info("turn %s: nobody reattached, cancelling", self.turn_id)
        self.cancel(CANCEL_DISCONNECT)

    def _cancel_timer(self) -> None:
        if self._detach_timer is not None:
            self._detach_timer.cancel()
            self._detach_timer = None


class LiveTurns:
    """The running turns of this process, by conversation."""

    def __init__(self) -> None:
        self._by_conversation: dict[str, LiveTurn] = {}
        # With --redis: live events and followers shared by replicas.
        self.shared: SharedLive | None = None
        # With --redis (core.redis_stops): stops the turn when another replica runs it.
        self.elsewhere: Callable[[str], Awaitable[tuple[bool, str] | None]] | None = None

    async def stop_elsewhere(self, conversation_id: str) -> tuple[bool, str]:
        """Stop a turn this process does not run: (stopped, turn_id), or (False, "")."""
        if self.elsewhere is None:
            return False, ""
        return await self.elsewhere(conversation_id) or (False, "")

    def get(self, conversation_id: str) -> LiveTurn | None:
        return self._by_conversation.get(conversation_id)

    def add(self, turn: LiveTurn) -> None:
        self._by_conversation[turn.conversation_id] = turn

    def remove(self, turn: LiveTurn) -> None:
        if self._by_conversation.get(turn.conversation_id) is turn:
            del self._by_conversation[turn.conversation_id]

    def by_key(self, org_id: str, idempotency_key: str) -> LiveTurn | None:
        for turn in self._by_conversation.values():
            if turn.org_id == org_id and turn.idempotency_key == idempotency_key:
                return turn
        return None

    def all(self) -> list[LiveTurn]:
        return list(self._by_conversation.values())

    async def drain(self, grace_s: float) -> None:
        """Give running turns `grace_s` to finish, then cancel the rest and wait for them
        to be stored."""
        turns = self.all()
        if not turns:
            return
        waits = [asyncio.create_task(t.finished.wait()) for t in turns]
        _, pending = await asyncio.wait(waits, timeout=grace_s)
        for turn in turns:
            turn.cancel(CANCEL_SHUTDOWN)
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, timeout=5)
