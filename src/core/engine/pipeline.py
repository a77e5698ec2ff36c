"""The one write path of every turn, whatever runs it (the agent loop of a chat turn, a
flow's steps for a flow message).

A turn is admitted (origin and the dialect's key rules, then the key's rate limit and
the organisation's budget), begun (`Store.begin_turn` claims the conversation and
allocates the turn's first sequence number; the turn joins the live registry so a
client can follow it), numbered (every event through its `LiveTurn`), and committed
(`Store.commit_turn`: events, messages, the ledger entry and any interrupt in one
transaction, before the terminal event is published). Whatever runs the turn only
decides what it says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from core.budgets import Budgets
from core.clock import Clock, IdSource, RandomIds
from core.domain import (
    InterruptRecord,
    MessageRecord,
    Organisation,
    Principal,
    TurnRecord,
    TurnRequest,
)
from core.engine import admission
from core.engine.live import LiveTurn, LiveTurns
from core.engine.recovery import INCOMPLETE, FailedCommits, failed_commit
from core.errors import Code, Reason, SwitchboardError
from core.events import Event, EventBody, StreamError
from core.handoffs import ActivityDraft
from core.outbox import events as outbox
from core.ratelimit import LocalRateLimiter, RateLimit, RateLimiter
from core.store.base import Store, TurnBegin, TurnClaimLost, TurnCommit, UsageEntry
from core.store.failures import StoreUnavailable

log = logging.getLogger("switchboard.turns")


class TurnPipeline:
    def __init__(self, store: Store, clock: Clock, budgets: Budgets,
                 detach_grace_s: float, ids: IdSource | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ids: IdSource = ids or RandomIds()
        # Called after a write that may have queued webhook deliveries (the dispatcher's
        # wake-up; it also polls, so a missed call only delays).
        self.outbox_written: Callable[[], None] = lambda: None
        self.budgets = budgets
        self.detach_grace_s = detach_grace_s
        self.live = LiveTurns()
        self.rate_limiter: RateLimiter = LocalRateLimiter(clock)
        self.failed_commits = FailedCommits(store)

    # -- admission ----------------------------------------------------------------------

    async def admit_caller(self, principal: Principal, origin: str = "",
                           dialect: str = "") -> Organisation:
        """The key's organisation, once the browser origin and the dialect's key rules allow
        the call (`core.engine.admission` owns those rules)."""
        return await admission.admit_key(self.store, principal, origin, dialect)

    async def check_rate(self, principal: Principal, org: Organisation) -> None:
        await self.rate_limiter.check_request(principal.key_id,
                                        RateLimit.from_settings(org.settings.extra))

    async def check_limits(self, principal: Principal, org: Organisation,
                           request: TurnRequest) -> None:
        """Rate limit and budget: a refusal writes nothing and calls no model."""
        await self.check_rate(principal, org)
        await self.budgets.check(org, request)

    def refuse_if_running(self, conversation_id: str) -> None:
        """A turn running in this process is refused before any work (the store's claim
        decides across processes)."""
        running = self.live.get(conversation_id)
        if running is not None and not running.done:
            raise SwitchboardError(
                Code.ABORTED, Reason.TURN_IN_PROGRESS,
                "A turn is already running in this conversation; wait for it or stop it.",
            )

    # -- begin, number, commit ----------------------------------------------------------

    async def begin(self, begin: TurnBegin, idempotency_key: str = "") -> LiveTurn:
        """Claim the conversation and write the turn; the turn goes live, numbered from
        the sequence number the store allocated."""
        turn = await self.store.begin_turn(replace(begin, outbox=self._begin_outbox(begin)))
        self.outbox_written()
        return self.register(turn, idempotency_key)

    def _begin_outbox(self, begin: TurnBegin) -> tuple[outbox.OutboxEvent, ...]:
        """The webhook events of a turn's start, written with it."""
        found: list[outbox.OutboxEvent] = []
        if begin.new_conversation is not None:
            found.append(outbox.conversation_created(self.ids, begin.new_conversation))
        for message in (*begin.prior_messages,
                        *((begin.user_message,) if begin.user_message else ())):
            found.append(outbox.message_created(self.ids, message))
        return tuple(found)

    def _commit_outbox(self, commit: TurnCommit, terminal: Event,
                       org_id: str) -> tuple[outbox.OutboxEvent, ...]:
        """The webhook events of a turn's end (its messages, then turn.completed)."""
        found = [outbox.message_created(self.ids, m) for m in commit.messages]
        found.append(outbox.turn_completed(
            self.ids, org_id, commit.conversation_id, commit.turn_id, commit.status,
            terminal.body, commit.updated_at))
        return tuple(found)

    def register(self, turn: TurnRecord, idempotency_key: str = "") -> LiveTurn:
        """A claimed turn joins the live registry (a resumed one: `Store.resume_turn`)."""
        live = LiveTurn(
            turn_id=turn.id, conversation_id=turn.conversation_id, org_id=turn.org_id,
            first_seq=turn.first_seq, now=self.clock.now, detach_grace_s=self.detach_grace_s,
        )
        live.idempotency_key = idempotency_key
        live.request_hash = turn.request_hash
        shared = self.live.shared
        if shared is not None:
            live.sink = shared.writer(live)
            live.followed_elsewhere = shared.followed_elsewhere
        self.live.add(live)
        return live

    async def commit(
        self,
        live: LiveTurn,
        status: str,
        terminal: EventBody,
        *,
        messages: Sequence[MessageRecord] = (),
        interrupt: InterruptRecord | None = None,
        usage: UsageEntry | None = None,
        activity: Sequence[ActivityDraft] = (),
    ) -> bool:
        """Store the turn, then publish its terminal event and take it out of the registry.
        Runs shielded from a second cancellation: a stop arriving while the turn is stored
        must not leave it half-written. When the store refuses the commit, the turn is
        stored as failed instead (its events so far and the error that is published: at
        once, or once the store can be written again), so it never stays running;
        returns False then."""
        live.committing = True
        event = live.make_event(terminal)
        commit = TurnCommit(
            turn_id=live.turn_id, conversation_id=live.conversation_id, status=status,
            last_seq=event.seq, updated_at=self.clock.now(), events=(*live.events, event),
            messages=tuple(messages), interrupt=interrupt, usage=usage,
            activity=tuple(activity),
        )
        commit = replace(commit, outbox=self._commit_outbox(commit, event, live.org_id))
        stored = True
        try:
            await asyncio.shield(self.store.commit_turn(commit))
            self.outbox_written()
        except asyncio.CancelledError:
            # The commit goes on inside the shield; nothing more to publish from here.
            log.warning("turn %s: cancelled while storing", live.turn_id)
        except TurnClaimLost:
            # Another core took the turn's lease as expired (this one was unresponsive)
            # and stored it as failed: that stored end stands, this result is dropped.
            stored = False
            log.warning("turn %s: stored as failed by another core meanwhile (its lease "
                        "expired); this result is dropped", live.turn_id)
            event = live.make_event(INCOMPLETE)
        except Exception as exc:
            stored = False
            if isinstance(exc, StoreUnavailable):
                log.warning("turn %s: could not be stored: %s", live.turn_id, exc.cause)
                failure = StreamError(Code.UNAVAILABLE.name, exc.reason.value,
                                      "The reply could not be stored; send it again.")
            else:
                log.exception("turn %s: could not be stored", live.turn_id)
                failure = StreamError(Code.INTERNAL.name, Reason.INTERNAL.value,
                                      "The reply could not be stored.")
            event = live.make_event(failure)
            fallback = failed_commit(commit, event)
            fallback = replace(fallback, outbox=self._commit_outbox(fallback, event,
                                                                    live.org_id))
            if isinstance(exc, StoreUnavailable):
                # Not left `running`: stored as failed (with this error) once the store
                # allows; the client hears now.
                self.failed_commits.schedule(fallback)
            else:
                # The store itself is up (the write was refused): store the failure now.
                try:
                    await asyncio.shield(self.store.commit_turn(fallback))
                except Exception:
                    log.exception("turn %s: could not be stored as failed", live.turn_id)
                    self.failed_commits.schedule(fallback)
        try:
            live.publish(event)
        finally:
            self.live.remove(live)
        return stored
