"""Event-log retention: finished turns' event logs older than N days are pruned.

The transcript, the turn rows and the usage ledger stay; only the replay log goes (a
client can no longer resume such a turn from a sequence number, which it would never
try after days). Any core may run it: pruning is one idempotent statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from core.clock import Clock
from core.store.base import Store

log = logging.getLogger("switchboard.retention")

PRUNE_INTERVAL_S = 3600.0
# Below a day a replay (idempotent retries live 24 h) could lose its log.
MIN_RETENTION_DAYS = 1


async def prune_once(store: Store, clock: Clock, days: int) -> int:
    removed = await store.prune_events(clock.now() - timedelta(days=days))
    if removed:
        log.info("pruned the event log of %d turn segments older than %d days", removed, days)
    return removed


class Retention:
    def __init__(self, store: Store, clock: Clock, days: int) -> None:
        if days and days < MIN_RETENTION_DAYS:
            raise ValueError(f"event retention must be at least {MIN_RETENTION_DAYS} day")
        self.store, self.clock, self.days = store, clock, days
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.days:
            return
        await prune_once(self.store, self.clock, self.days)
        self._task = asyncio.create_task(self._loop(), name="event-retention")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL_S)
            try:
                await prune_once(self.store, self.clock, self.days)
            except Exception:
                log.exception("event-log pruning failed; retrying in %.0fs", PRUNE_INTERVAL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
