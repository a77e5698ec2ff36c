"""Readiness follows the store: NOT_SERVING while writes fail, SERVING once one succeeds.

A load balancer that sees NOT_SERVING stops sending traffic, so no client write would ever
tell us the store recovered: while unwritable, a probe writes every `PROBE_INTERVAL_S`
until a write (the probe's or a client's) succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from core.store.base import Store
from core.store.failures import StoreUnavailable

log = logging.getLogger("switchboard.core")

PROBE_INTERVAL_S: Final = 0.5


class StoreReadiness:
    def __init__(self, store: Store, set_serving: Callable[[bool], Coroutine[Any, Any, None]],
                 interval_s: float = PROBE_INTERVAL_S) -> None:
        self._store = store
        self._set_serving = set_serving
        self._interval_s = interval_s
        self._probe: asyncio.Task[None] | None = None
        self._updates: set[asyncio.Task[None]] = set()
        self.stopped = False
        store.health.subscribe(self._changed)

    @property
    def writable(self) -> bool:
        return self._store.health.writable

    def _changed(self, writable: bool) -> None:
        if self.stopped:
            return
        update: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._set_serving(writable))
        self._updates.add(update)
        update.add_done_callback(self._updates.discard)
        if not writable and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._run_probe())

    async def _run_probe(self) -> None:
        while not self.stopped and not self.writable:
            await asyncio.sleep(self._interval_s)
            with contextlib.suppress(StoreUnavailable):
                await self._store.probe_write()

    async def stop(self) -> None:
        self.stopped = True
        tasks = [t for t in (self._probe, *self._updates) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
