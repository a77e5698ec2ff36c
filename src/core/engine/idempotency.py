"""Exactly-once turns: an idempotency key names a turn for `IDEMPOTENCY_WINDOW_S`.

The same key with the same request (compared by `request_hash`) is the same turn: while
it runs, a duplicate attaches to the live turn; once it is stored, its events are
replayed from the store, so the duplicate gets a byte-identical response. The same key
with a different request is ABORTED `idempotency_mismatch` (HTTP 409).

The store enforces the rule: its unique (organisation, key) constraint lets one turn
claim a key, whichever process asks (a second claim is `TurnConflict`, ABORTED
`turn_in_progress`). The per-key lock below is only a courtesy within one process:
concurrent duplicates wait for the first one's turn to be registered and attach to it
instead of being told to retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from core.clock import Clock
from core.domain import Principal
from core.engine.live import LiveTurn, LiveTurns
from core.engine.locks import KeyedLocks
from core.engine.recovery import RETRYABLE_REASONS
from core.errors import Code, Reason, SwitchboardError
from core.events import StreamError
from core.store.base import Store

IDEMPOTENCY_WINDOW_S = 24 * 60 * 60


def scoped_key(principal: Principal, key: str) -> str:
    """The key as stored: one caller's keys never name another caller's turns. Scoped by
    the API key (all sessions of a widget key share it) and by a session's conversation,
    so a caller that guesses someone else's key gets a new turn, not their reply."""
    return f"{principal.key_id}/{principal.conversation_id}/{key}"


def _mismatch() -> SwitchboardError:
    return SwitchboardError(
        Code.ABORTED, Reason.IDEMPOTENCY_MISMATCH,
        "This Idempotency-Key was already used with a different request.",
    )


class Idempotency:
    def __init__(self, store: Store, live: LiveTurns, clock: Clock) -> None:
        self._store = store
        self._live = live
        self._clock = clock
        self._locks = KeyedLocks()

    @asynccontextmanager
    async def lock(self, org_id: str, key: str) -> AsyncIterator[None]:
        async with self._locks.hold((org_id, key)):
            yield

    async def find(self, org_id: str, key: str, request_hash: str) -> LiveTurn | None:
        """The turn this key already names (live, or replayed from the store), or None."""
        live = self._live.by_key(org_id, key)
        if live is not None:
            if live.request_hash != request_hash:
                raise _mismatch()
            return live
        turn = await self._store.find_turn_by_key(org_id, key)
        if turn is None:
            return None
        if self._clock.now() - turn.created_at > timedelta(seconds=IDEMPOTENCY_WINDOW_S):
            return None
        if turn.request_hash != request_hash:
            raise _mismatch()
        events = await self._store.list_events(org_id, turn.conversation_id,
                                                turn.first_seq - 1, turn_id=turn.id)
        terminal = next((i for i, e in enumerate(events) if e.terminal), None)
        if terminal is None and turn.status != "running":
            # Left behind by a process that died mid-turn (recovered as cancelled with no
            # events): nothing to replay, so the key names a new turn.
            return None
        if terminal is None and self._live.shared is not None:
            # Running on another replica: attach to its live stream there.
            return self._live.shared.mirror(turn, turn.first_seq - 1)
        if terminal is None:
            # Stored without a terminal event: another process is running it, or it died.
            raise SwitchboardError(
                Code.ABORTED, Reason.TURN_IN_PROGRESS,
                "The turn for this Idempotency-Key is still running elsewhere; retry shortly.",
                retry_after_s=1.0,
            )
        ended = events[terminal].body
        if isinstance(ended, StreamError) and ended.reason in RETRYABLE_REASONS:
            # Cut short by a crash or a store that could not be written: the key is free
            # to run the turn again (begin_turn gives it up).
            return None
        return LiveTurn.replay(events[: terminal + 1], org_id=org_id, key=key,
                               request_hash=request_hash)
