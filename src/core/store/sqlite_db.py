"""SQLite plumbing: connections, pragmas, versioned migrations, serialised transactions.

Durability choice: WAL journal with `synchronous=FULL` by default, so a turn's transcript
survives power loss once its completed event is sent (NORMAL would only survive a
process crash). `SWITCHBOARD_SQLITE_SYNCHRONOUS=NORMAL` trades that for throughput.
One writer connection serialised by an asyncio lock (SQLite allows one writer anyway;
interleaving two coroutines' statements on one connection would mix transactions) and one
reader connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from core.store.failures import StoreHealth, classify

log = logging.getLogger("switchboard.store")

BUSY_TIMEOUT_MS = 5000  # SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS overrides it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def ts(dt: datetime) -> str:
    return dt.isoformat()


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def dt_or_none(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def micros(moment: datetime) -> int:
    """A moment as integer microseconds since the epoch (compared and grouped in SQL)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


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

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        assert self._reader is not None, "store is not open"
        try:
            cursor = await self._reader.execute(sql, tuple(params))
            row = await cursor.fetchone()
            await cursor.close()
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        assert self._reader is not None, "store is not open"
        try:
            cursor = await self._reader.execute(sql, tuple(params))
            rows = await cursor.fetchall()
            await cursor.close()
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        return list(rows)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement in its own transaction; returns the changed row count."""
        async with self.transaction() as conn:
            cursor = await conn.execute(sql, tuple(params))
            return int(cursor.rowcount)


def _split_sql(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
