"""Store instrumentation: every public coroutine method of a store object is timed (by
method name, a bounded label) and, with tracing on, gets a span.

The store is wrapped in place, so code holding it (the authenticator, the engine, the
flow runner) keeps one object and no backend needs to know about metrics.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from core.observability import metrics, tracing

StoreT = TypeVar("StoreT")
_LIFECYCLE = frozenset({"open", "close"})
_MARK = "_switchboard_instrumented"


def _timed(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    ok = metrics.STORE_DURATION.labels(name, "ok")
    span_name = f"store.{name}"

    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        with tracing.span(span_name, {"db.operation": name}):
            try:
                result = await method(*args, **kwargs)
            except BaseException:
                metrics.STORE_DURATION.labels(name, "error").observe(
                    time.perf_counter() - started
                )
                raise
        ok.observe(time.perf_counter() - started)
        return result

    return timed


def instrument_store(store: StoreT) -> StoreT:
    """Time `store`'s operations (idempotent); returns the same object."""
    if getattr(store, _MARK, False):
        return store
    for name, _method in inspect.getmembers(type(store), inspect.iscoroutinefunction):
        if name.startswith("_") or name in _LIFECYCLE:
            continue
        setattr(store, name, _timed(name, getattr(store, name)))
    setattr(store, _MARK, True)
    return store
