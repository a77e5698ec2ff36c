"""Storage failures as one core error, and the store's write health.

A database that cannot be written right now (disk full, read-only file, locked past the
busy timeout, an I/O error) is not a bug in the request: every write route answers
UNAVAILABLE `store_unavailable` with a retry delay (HTTP 503 + `Retry-After`), and the
core reports NOT_SERVING until a write succeeds again. SQLite's result code decides, not
the message text (which changes between SQLite versions and locales): Python 3.11 puts
the extended code on `sqlite_errorcode`; its low byte is the primary code.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import Final

from core.errors import Code, Reason, SwitchboardError

log = logging.getLogger("switchboard.store")

# How long a client is told to wait before retrying a write the store refused.
STORE_RETRY_AFTER_S: Final = 1.0

# Primary SQLite result codes meaning "the database cannot be written now", all of which
# can clear by themselves (space freed, lock released, file made writable, disk back).
TRANSIENT_CODES: Final = frozenset({
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
})


class StoreUnavailable(SwitchboardError):
    """The store refused a write (or read) for a reason that is not the request's."""

    def __init__(self, cause: str) -> None:
        super().__init__(
            Code.UNAVAILABLE, Reason.STORE_UNAVAILABLE,
            "The service cannot store data right now; retry shortly.",
            retry_after_s=STORE_RETRY_AFTER_S,
        )
        self.cause = cause


def primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def classify(exc: BaseException) -> StoreUnavailable | None:
    """The core error for a transient SQLite failure, or None (a constraint violation or
    a bad statement is the caller's business)."""
    if not isinstance(exc, sqlite3.Error) or isinstance(exc, sqlite3.IntegrityError):
        return None
    if primary_code(exc) not in TRANSIENT_CODES:
        return None
    name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    return StoreUnavailable(f"{name}: {exc}")


class StoreHealth:
    """Whether the last write succeeded; listeners hear every change (not every write)."""

    def __init__(self) -> None:
        self.writable = True
        self._listeners: list[Callable[[bool], None]] = []

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def record(self, writable: bool, cause: str = "") -> None:
        if writable == self.writable:
            return
        self.writable = writable
        if writable:
            log.warning("store writable again")
        else:
            log.warning("store cannot be written: %s", cause)
        for listener in self._listeners:
            listener(writable)
