"""Turn leases: which live core a running turn belongs to, on a store several cores share.

Every running turn of this core carries a lease (this core's id and an expiry) that the
core renews every `RENEW_EVERY_S` while the turn runs. A core that dies (kill -9, a lost
machine) stops renewing; within `LEASE_S` any core's sweep finds the lease expired and
stores the turn as failed with a `turn_incomplete` error event, exactly as start-up
recovery does (`core.engine.recovery.fail_expired`), and publishes that event so
followers on other replicas end with an error instead of waiting forever. The store
hands each expired turn to one sweeping core only.

Only for stores shared by several processes (PostgreSQL); with SQLite one process owns
the file and start-up recovery alone is enough, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Final

from core.clock import Clock, IdSource
from core.engine.live import CANCEL_LEASE_LOST, LiveTurns
from core.engine.recovery import fail_expired
from core.store.base import Store

log = logging.getLogger("switchboard.engine")

LEASE_S: Final = 10.0  # a turn whose core stopped renewing is failed after this
RENEW_EVERY_S: Final = 3.0  # renewals (and sweeps) this often: three chances per lease


class Leases:
    def __init__(self, store: Store, live: LiveTurns, clock: Clock, owner: str,
                 lease_s: float = LEASE_S, renew_every_s: float = RENEW_EVERY_S,
                 ids: IdSource | None = None) -> None:
        self._store = store
        self._ids = ids  # for the swept turns' turn.completed webhook events
        self._live = live
        self._clock = clock
        self.owner = owner
        self.lease_s = lease_s
        self.renew_every_s = renew_every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the store is down: try again next round
                log.warning("turn leases: renewal or sweep failed: %s", exc)
            await asyncio.sleep(self.renew_every_s)

    async def tick(self) -> None:
        """Renew this core's leases, then sweep every core's expired ones."""
        now = self._clock.now()
        running = {t.turn_id: t for t in self._live.all() if not t.done}
        renewed = set(await self._store.renew_leases(
            self.owner, list(running), now + timedelta(seconds=self.lease_s)))
        for turn_id, live in running.items():
            if turn_id not in renewed and not live.done and not live.committing:
                # Another core found the lease expired (this one was unresponsive) and
                # stored the turn as failed: stop spending on it (its commit is refused).
                log.warning("turn %s: its lease was taken over by another core; stopping it",
                            turn_id)
                live.cancel(CANCEL_LEASE_LOST)
        await fail_expired(self._store, self.owner, now, self.lease_s, self._live.shared,
                           self._ids)
