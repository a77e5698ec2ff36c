"""The background sender of webhook deliveries, one per core process.

It runs apart from turns: a turn only writes its events (in its own transaction) and
wakes the dispatcher; nothing a receiver does (refuse, hang, answer 500) reaches the turn.
The dispatcher claims due deliveries from the store (`Store.claim_deliveries`: a lease
so no other core sends the same row meanwhile, and never a conversation's later event
while an earlier one to the same endpoint is pending), sends at most
`MAX_CONCURRENT_DELIVERIES` at once, each within `DELIVERY_TIMEOUT_S`, and stores what
came of it (`core.outbox.deliveries.next_outcome`: delivered, retried later, given up).

Delivery is at least once: a process that dies mid-attempt leaves a claimed row whose
lease (`CLAIM_LEASE_S` beyond the timeout) runs out, and another attempt sends it again,
with the same event id. Time comes from the injected clock and jitter from `rng`, so
tests drive retries without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Final

import aiohttp

from core import http_pool
from core.clock import Clock
from core.observability.metrics import count_event_webhook
from core.outbox.deliveries import (
    DELIVERED,
    DELIVERY_LOG_RETENTION_DAYS,
    MAX_ERROR_CHARS,
    Delivery,
    next_outcome,
)
from core.outbox.signing import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, sign
from core.store.base import Store

log = logging.getLogger("switchboard.webhooks.out")

MAX_CONCURRENT_DELIVERIES: Final = 16
DELIVERY_TIMEOUT_S: Final = 10.0
# A claimed row comes back to every dispatcher this long after its attempt's timeout.
CLAIM_LEASE_S: Final = 60.0
# Due rows are looked for at least this often (a turn in this process wakes it at once;
# events written by another core, and retries coming due, are found by polling).
POLL_INTERVAL_S: Final = 1.0
USER_AGENT: Final = "Switchboard-Webhooks/1"
# How often the delivery log is pruned (DELIVERY_LOG_RETENTION_DAYS).
PRUNE_INTERVAL_S: Final = 3600.0


async def post_signed(session: aiohttp.ClientSession, url: str, secret: str,
                      event_id: str, event_type: str, body: bytes, timestamp: int,
                      timeout_s: float) -> tuple[bool, int, str]:
    """One signed POST: (2xx?, HTTP status or 0, error text). Never raises for what the
    receiver or the network does; redirects are not followed (a 3xx is a failure)."""
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: event_type,
    }
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            if 200 <= response.status < 300:
                return True, response.status, ""
            text = (await response.content.read(MAX_ERROR_CHARS)).decode("utf-8", "replace")
            return False, response.status, f"HTTP {response.status}: {text}".strip()
    except TimeoutError:
        return False, 0, f"no answer within {timeout_s:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return False, 0, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Dispatcher:
    def __init__(self, store: Store, clock: Clock, *,
                 rng: Callable[[], float] = random.random,
                 max_concurrent: int = MAX_CONCURRENT_DELIVERIES,
                 timeout_s: float = DELIVERY_TIMEOUT_S,
                 poll_s: float = POLL_INTERVAL_S,
                 session: Callable[[], aiohttp.ClientSession] = http_pool.session) -> None:
        self.store, self.clock, self.rng = store, clock, rng
        self.max_concurrent, self.timeout_s, self.poll_s = max_concurrent, timeout_s, poll_s
        self._session = session
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Passes over the store: requested (by wake) and finished idle (settle waits on it).
        self._requested = 0
        self._idle_at = -1
        self._passed_at = -1
        self._progress = asyncio.Event()
        self.attempts = 0  # attempts made (tests and logs)
        self._next_prune = clock.monotonic()
        self._claim_failing = False
        self.passes = 0  # passes over the store

    def wake(self) -> None:
        """Look for due deliveries now (after a write that may have queued some)."""
        self._requested += 1
        self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop sending; attempts in flight are cancelled (their rows come back when the
        lease runs out, and are sent again: at least once)."""
        task, self._task = self._task, None
        for pending in (*self._inflight, *((task,) if task else ())):
            pending.cancel()
        for pending in (*self._inflight, *((task,) if task else ())):
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        self._inflight.clear()

    async def settle(self) -> None:
        """Return once a pass that started after this call found nothing due and nothing
        was in flight (tests: "everything that can be sent now was sent")."""
        self.wake()
        target = self._requested
        while self._idle_at < target:
            self._progress.clear()
            await self._progress.wait()

    async def next_pass(self) -> None:
        """Return once a pass over the store that started after this call has ended."""
        self.wake()
        target = self._requested
        while self._passed_at < target:
            self._progress.clear()
            await self._progress.wait()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            started = self._requested
            claimed = 0
            await self._prune_if_due()
            free = self.max_concurrent - len(self._inflight)
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # Once per outage, not once a poll: readiness reports the store too.
                    if not self._claim_failing:
                        log.warning("webhook deliveries could not be claimed: %s", exc)
                    self._claim_failing = True
                else:
                    if self._claim_failing:
                        log.info("webhook deliveries are claimed again")
                    self._claim_failing = False
            if not claimed and not self._inflight:
                self._idle_at = started
            self._passed_at = started
            self.passes += 1
            self._progress.set()
            # One timer per pass (asyncio.timeout), not a wait_for task and waiter each time.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()

    async def _prune_if_due(self) -> None:
        if self.clock.monotonic() < self._next_prune:
            return
        self._next_prune = self.clock.monotonic() + PRUNE_INTERVAL_S
        try:
            removed = await self.store.prune_deliveries(
                self.clock.now() - timedelta(days=DELIVERY_LOG_RETENTION_DAYS))
        except Exception as exc:
            log.warning("the webhook delivery log could not be pruned: %s", exc)
            return
        if removed:
            log.info("pruned %d webhook deliveries older than %d days", removed,
                     DELIVERY_LOG_RETENTION_DAYS)

    async def _claim(self, free: int) -> int:
        now = self.clock.now()
        lease = now + timedelta(seconds=self.timeout_s + CLAIM_LEASE_S)
        due = await self.store.claim_deliveries(now, free, lease, secrets.token_hex(12))
        for delivery in due:
            task = asyncio.create_task(self._attempt(delivery),
                                       name=f"webhook-{delivery.event_id}")
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(due)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake()  # a slot is free, and the conversation's next event may be due

    async def _attempt(self, d: Delivery) -> None:
        body = d.body.encode("utf-8")
        timestamp = int(self.clock.now().timestamp())
        ok, status, error = await post_signed(self._session(), d.url, d.secret, d.event_id,
                                              d.event_type, body, timestamp, self.timeout_s)
        self.attempts += 1
        result = next_outcome(d, self.clock.now(), ok, status, error, self.rng)
        count_event_webhook("delivered" if result.status == DELIVERED
                            else "retry" if result.next_attempt_at is not None else "failed")
        if result.status == DELIVERED:
            log.info("webhook %s %s delivered to %s (%d)", d.event_type, d.event_id,
                     d.endpoint_id, status)
        elif result.next_attempt_at is not None:
            log.warning("webhook %s %s to %s failed (attempt %d: %s); next attempt at %s",
                        d.event_type, d.event_id, d.endpoint_id, d.attempts + 1, error,
                        result.next_attempt_at.isoformat())
        else:
            log.error("webhook %s %s to %s given up after %d attempts: %s", d.event_type,
                      d.event_id, d.endpoint_id, d.attempts + 1, error)
        try:
            if not await self.store.finish_delivery(result):
                log.warning("webhook %s: claim lost before its outcome was stored",
                            d.event_id)
        except Exception as exc:
            # The row stays claimed until its lease runs out, then is sent again.
            log.warning("webhook %s: outcome not stored (%s); it will be sent again",
                        d.event_id, exc)
