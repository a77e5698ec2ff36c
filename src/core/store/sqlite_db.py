"""SQLite plumbing: connections, pragmas, versioned migrations, serialised transactions.

Durability choice: WAL journal with `synchronous=FULL` by default, so a turn's transcript
survives power loss once its completed event is sent (NORMAL would only survive a
process crash). `SWITCHBOARD_SQLITE_SYNCHRONOUS=NORMAL` trades that for throughput.
One writer connection serialised by an asyncio lock (SQLite allows one writer anyway;
interleaving two coroutines' statements on one connection would mix transactions) and one
reader connection, which WAL lets run beside the writer. A turn's begin and commit each
run as one function on the writer thread (`Database.write`: one hop, not one per
statement), and writes queued while a commit is in flight share the next transaction
and its one fsync (group commit); each keeps its own savepoint, so they stay atomic
one by one, and none returns before the COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from core.store.failures import StoreHealth, classify

log = logging.getLogger("switchboard.store")

BUSY_TIMEOUT_MS = 5000  # SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS overrides it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
T = TypeVar("T")


def ts(dt: datetime) -> str:
    return dt.isoformat()


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dt_or_none(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def micros(moment: datetime) -> int:
    """A moment as integer microseconds since the epoch (compared and grouped in SQL)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every bundled migration, in order."""
    folder = resources.files("core.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


class Database:
    def __init__(self, path: str | Path, synchronous: str | None = None) -> None:
        self.path = str(path)
        self.synchronous = (
            synchronous or os.environ.get("SWITCHBOARD_SQLITE_SYNCHRONOUS") or "FULL"
        ).upper()
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("SQLite synchronous must be FULL, NORMAL or EXTRA")
        self.busy_timeout_ms = int(
            os.environ.get("SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS") or BUSY_TIMEOUT_MS
        )
        self.health = StoreHealth()
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        # Group commit: writes waiting for the next transaction, and the task running it.
        self._queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.group_commits = 0  # transactions `write` ran (fewer than writes when grouped)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            # aiosqlite's worker thread would otherwise keep the process alive.
            await conn.close()
            raise
        return conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            await self._migrate()
            self._reader = await self._connect() if self.path != ":memory:" else self._writer
        except Exception as exc:
            await self.close()
            unavailable = classify(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)  # queued writes finish before the close
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            await conn.close()
        self._reader = self._writer = None

    async def _migrate(self) -> None:
        assert self._writer is not None
        await self._writer.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL "
            "DEFAULT CURRENT_TIMESTAMP)"
        )
        cursor = await self._writer.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in await cursor.fetchall()}
        for version, name, sql in migrations():
            if version in applied:
                continue
            log.info("applying migration %s", name)
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(sql):
                    await self._writer.execute(statement)
                await self._writer.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name)
                )
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; commits on success, rolls back on any exception
        (cancellation included) so nothing is ever half-written."""
        assert self._writer is not None, "store is not open"
        conn = self._writer
        async with self._lock:
            # BEGIN and COMMIT run in aiosqlite's thread and finish even when this task is
            # cancelled mid-await. sqlite3's rollback() is a no-op outside a transaction and
            # runs in the same queue, after whatever a cancelled caller left pending: so
            # roll back on entry and on every failure, and shield the COMMIT.
            # A database that cannot be written (full, read-only, locked, I/O error) turns
            # into StoreUnavailable here, the one place every write goes through.
            try:
                await asyncio.shield(conn.rollback())
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                    yield conn
                    await asyncio.shield(conn.commit())
                except BaseException:
                    await asyncio.shield(conn.rollback())
                    raise
            except Exception as exc:
                unavailable = classify(exc)
                if unavailable is None:
                    raise
                self.health.record(False, unavailable.cause)
                raise unavailable from exc
            self.health.record(True)

    async def probe_write(self) -> None:
        """One real write (the header's user_version, rewritten unchanged): raises
        StoreUnavailable while the database cannot be written, and records health."""
        async with self.transaction() as conn:
            cursor = await conn.execute("PRAGMA user_version")
            row = await cursor.fetchone()
            await cursor.close()
            version = int(row[0]) if row else 0
            await conn.execute(f"PRAGMA user_version = {version}")

    @staticmethod
    async def _in_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the connection's own thread in one hop. Every awaited aiosqlite call
        is a queue put, a thread wake-up and a `call_soon_threadsafe` back (the largest
        cost of a turn in the profile); a whole read or write transaction run as one
        function pays it once. aiosqlite has no public call for this: `_execute` and
        `_conn` are its internals (stable since 0.17; the suite runs through them)."""
        result: T = await conn._execute(fn, conn._conn)  # type: ignore[no-untyped-call]
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` as one atomic write in a single hop to the writer thread, group-committed:
        every write queued while the previous commit was in flight runs in the next
        transaction, each inside its own SAVEPOINT, and one COMMIT (one synchronous=FULL
        fsync) makes them all durable. Returns only after that COMMIT, so a turn's
        completed event still follows its durable commit. A write that raises is rolled
        back to its savepoint alone (the others commit); `fn` must only touch the
        database, since it may run again when SQLite aborts the whole transaction. The
        batch runs to its end on the thread even if a caller is cancelled."""
        assert self._writer is not None, "store is not open"
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((fn, outcome))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        try:
            result: T = await asyncio.shield(outcome)
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        return result

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            fns = [fn for fn, _ in batch]
            try:
                async with self._lock:
                    assert self._writer is not None, "store is not open"
                    results = await self._in_thread(self._writer, partial(_run_group, fns=fns))
            except Exception as exc:  # the connection itself failed (closed, I/O)
                results = [(False, exc)] * len(batch)
            except BaseException:  # cancelled (loop shutting down): no caller waits forever
                for _, outcome in batch:
                    if not outcome.done():
                        outcome.set_exception(StoreUnavailableShutdown())
                raise
            failed = [r for ok, r in results if not ok and classify(r) is not None]
            if failed:
                self.health.record(False, classify(failed[0]).cause)  # type: ignore[union-attr]
            elif any(ok for ok, _ in results):
                self.health.record(True)
            self.group_commits += 1
            for (_, outcome), (ok, value) in zip(batch, results, strict=True):
                if outcome.done():
                    continue
                if ok:
                    outcome.set_result(value)
                else:
                    outcome.set_exception(value)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._reader is not None, "store is not open"
        try:
            return await self._in_thread(self._reader, fn)
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        args = tuple(params)

        def one(conn: sqlite3.Connection) -> sqlite3.Row | None:
            cursor = conn.execute(sql, args)
            try:
                row: sqlite3.Row | None = cursor.fetchone()
            finally:
                cursor.close()  # no statement left open to pin a WAL snapshot
            return row
        return await self._read(one)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        args = tuple(params)

        def every(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            rows: list[sqlite3.Row] = conn.execute(sql, args).fetchall()
            return rows
        return await self._read(every)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement in its own transaction; returns the changed row count."""
        async with self.transaction() as conn:
            cursor = await conn.execute(sql, tuple(params))
            return int(cursor.rowcount)


class StoreUnavailableShutdown(RuntimeError):
    """A queued write whose group was cancelled before it ran (the process is stopping):
    it may or may not have been committed."""

    def __init__(self) -> None:
        super().__init__("the store was shut down while this write was queued")


def _run_group(raw: sqlite3.Connection,
               fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
    """Run `fns` in one transaction, each in its own savepoint; (True, result) or
    (False, exception) per function. When SQLite aborts the whole transaction (some
    errors, such as a full disk, roll it all back), that function fails and the others
    run again in a new transaction: one write never takes the others down with it."""
    results: list[tuple[bool, Any]] = [(False, None)] * len(fns)
    todo = list(range(len(fns)))
    while todo:
        if raw.in_transaction:  # left by a caller of transaction() that was cancelled
            raw.rollback()
        try:
            raw.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            for i in todo:
                results[i] = (False, exc)
            return results
        aborted = -1
        for i in todo:
            raw.execute("SAVEPOINT write")
            try:
                results[i] = (True, fns[i](raw))
            except Exception as exc:
                results[i] = (False, exc)
                if not raw.in_transaction:
                    aborted = i
                    break
                raw.execute("ROLLBACK TO write")
            raw.execute("RELEASE write")
        if aborted >= 0:
            todo = [i for i in todo if i != aborted]
            continue
        try:
            raw.commit()
        except Exception as exc:
            raw.rollback()
            for i in todo:
                results[i] = (False, exc)
        return results
    return results


def _split_sql(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
