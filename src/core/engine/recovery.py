"""Turns are never left `running`: what the engine stores when it cannot finish a turn.

Two ways a turn can end without its final write:
- the write itself failed (the store was full, locked, read-only): the turn's stream has
  already ended with an error event; `FailedCommits` stores it as failed, with that error
  event, as soon as the store allows (retrying with back-off until it does);
- the process died mid-turn: at start-up, `recover_running` stores every turn left
  `running` as failed with a `turn_incomplete` error event, so a client reconnecting to
  the stream learns the turn ended without completing, and a retry under its
  Idempotency-Key gets that stored failure instead of "still running elsewhere".
  On a store shared by several cores (PostgreSQL) a running turn may be another live
  core's: only turns whose lease expired (`core.engine.leases`) are failed, at start-up
  and by every core's periodic sweep (`fail_expired`), which also publishes the error
  event to followers on other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from core.clock import IdSource
from core.domain import TurnRecord
from core.engine.live import SharedLive
from core.errors import Code, Reason
from core.events import Event, StreamError, TurnStatus
from core.outbox.events import turn_completed
from core.store.base import Store, TurnClaimLost, TurnCommit
from core.store.failures import StoreUnavailable

log = logging.getLogger("switchboard.engine")

# Back-off between attempts to store a turn whose final write failed.
FAILED_COMMIT_FIRST_RETRY_S: Final = 0.2
FAILED_COMMIT_MAX_RETRY_S: Final = 5.0
FAILED_COMMIT_MAX_ATTEMPTS: Final = 1000  # about 80 minutes at the longest back-off

# Failures that were not the request's: a retry under the same Idempotency-Key runs the
# turn again instead of replaying them.
RETRYABLE_REASONS: Final = frozenset({Reason.TURN_INCOMPLETE.value,
                                      Reason.STORE_UNAVAILABLE.value})

INCOMPLETE = StreamError(
    Code.UNAVAILABLE.name, Reason.TURN_INCOMPLETE.value,
    "The turn ended without completing (the server stopped); send the message again.",
)


def failed_commit(commit: TurnCommit, terminal: Event) -> TurnCommit:
    """The turn stored as failed: its events up to the error the client was sent, its
    usage (tokens were spent), no reply message and no interrupt."""
    events = (*(e for e in commit.events if not e.terminal), terminal)
    return replace(commit, status=TurnStatus.FAILED, last_seq=terminal.seq, events=events,
                   messages=(), interrupt=None)


class FailedCommits:
    """Background writers storing turns as failed once the store can be written again."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, commit: TurnCommit) -> None:
        task = asyncio.get_running_loop().create_task(self._store_when_possible(commit))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_when_possible(self, commit: TurnCommit) -> None:
        delay = FAILED_COMMIT_FIRST_RETRY_S
        for _ in range(FAILED_COMMIT_MAX_ATTEMPTS):
            await asyncio.sleep(delay)
            try:
                await self._store.commit_turn(commit)
            except StoreUnavailable as exc:
                log.warning("turn %s: still cannot be stored as failed: %s", commit.turn_id,
                            exc.cause)
                delay = min(delay * 2, FAILED_COMMIT_MAX_RETRY_S)
                continue
            except Exception:
                # Not a store outage (e.g. the first write did land): nothing to retry.
                log.exception("turn %s: could not be stored as failed", commit.turn_id)
                return
            log.warning("turn %s: stored as failed after its final write failed",
                        commit.turn_id)
            return
        log.error("turn %s: gave up storing it as failed; start-up recovery will",
                  commit.turn_id)

    async def flush(self, timeout_s: float) -> None:
        """At shutdown: give pending writers a last chance, then leave the rest to the
        next start-up (`recover_running`)."""
        if not self._tasks:
            return
        tasks = set(self._tasks)
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def incomplete_after(store: Store, org_id: str, conversation_id: str,
                           after_seq: int) -> Event | None:
    """The `turn_incomplete` event of the conversation's latest turn, for a client that
    reconnects after events it saw live but that a crash kept from being stored (its
    `after_seq` is past what the store holds), or None."""
    turn = await store.last_turn(org_id, conversation_id)
    if turn is None or turn.status != TurnStatus.FAILED:
        return None
    events = await store.list_events(org_id, conversation_id, turn.first_seq - 1,
                                     turn_id=turn.id)
    if not events:
        return None
    last = events[-1]
    if (isinstance(last.body, StreamError) and last.body.reason == INCOMPLETE.reason
            and last.seq <= after_seq):
        return last
    return None


async def store_incomplete(store: Store, turn: TurnRecord, now: datetime,
                           after_seq: int = 0, ids: IdSource | None = None) -> Event:
    """Store a turn that will never finish as failed, ending with a `turn_incomplete`
    error event after the last event the store holds (and after `after_seq`, the last
    one its followers may have seen live), with, given `ids`, its `turn.completed`
    webhook event."""
    conversation = await store.get_conversation(turn.org_id, turn.conversation_id)
    last = max(turn.last_seq, conversation.last_seq if conversation else 0,
               turn.first_seq - 1, after_seq)
    event = Event(last + 1, turn.conversation_id, turn.id, now, INCOMPLETE)
    await store.commit_turn(TurnCommit(
        turn_id=turn.id, conversation_id=turn.conversation_id, status=TurnStatus.FAILED,
        last_seq=event.seq, updated_at=now, events=(event,),
        outbox=(turn_completed(ids, turn.org_id, turn.conversation_id, turn.id,
                               TurnStatus.FAILED, INCOMPLETE, now),) if ids else (),
    ))
    return event


async def fail_expired(store: Store, owner: str, now: datetime, lease_s: float,
                       shared: SharedLive | None = None, ids: IdSource | None = None) -> int:
    """Store every running turn whose lease expired (its core died) as failed; the
    store hands each to one sweeping core only. Followers on other replicas get the
    error event through `shared`."""
    lease = timedelta(seconds=lease_s)
    count = 0
    for turn in await store.take_expired_leases(owner, now, now + lease, now - lease):
        tail = await shared.tail_seq(turn.conversation_id, turn.id) if shared else 0
        try:
            event = await store_incomplete(store, turn, now, tail, ids)
        except TurnClaimLost:
            continue  # it committed after all
        log.warning("turn %s: its core stopped renewing its lease; stored as failed",
                    turn.id)
        if shared is not None:
            await shared.publish_terminal(event)
        count += 1
    return count


async def recover_running(store: Store, now: datetime, *, owner: str = "",
                          lease_s: float = 0.0, shared: SharedLive | None = None,
                          ids: IdSource | None = None) -> int:
    """At start-up: store every turn a previous process left running as failed (on a
    shared store: those whose lease expired; the sweep takes the rest as they expire)."""
    if store.shared:
        return await fail_expired(store, owner, now, lease_s, shared, ids)
    count = 0
    for turn in await store.running_turns():
        await store_incomplete(store, turn, now, ids=ids)
        count += 1
    return count
