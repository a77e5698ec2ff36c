"""PostgreSQL plumbing: an asyncpg pool, versioned migrations under an advisory lock, and
transactions whose connection failures become `StoreUnavailable`.

asyncpg rather than psycopg 3: it is asyncio-native (the core is grpc.aio on one event
loop), speaks the binary protocol without libpq, and ships the connection pool we need
(broken connections are dropped and replaced on the next acquire, so service resumes by
itself when PostgreSQL is back).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

import asyncpg

from core.store.failures import StoreHealth, StoreUnavailable

log = logging.getLogger("switchboard.store")

POOL_MIN_SIZE: Final = 1
POOL_MAX_SIZE: Final = 10
# How long to wait for a connection before the request is answered 503 instead of hanging.
CONNECT_TIMEOUT_S: Final = 5.0
COMMAND_TIMEOUT_S: Final = 30.0
# pg_advisory_lock key held while migrating ("swbd" in ASCII): replicas that start together
# queue on it, the first applies the migrations, the others find them applied.
MIGRATION_LOCK_KEY: Final = 0x73776264
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# SQLSTATE classes meaning "the database cannot serve us right now", all of which can clear
# by themselves: 08 connection exception, 53 insufficient resources (disk full, too many
# connections), 57P operator intervention (admin shutdown, crash, cannot connect now),
# 25006 read-only transaction (a standby or a server in recovery), 40001/40P01 would be
# retried by the client but are not expected with our conditional writes.
_TRANSIENT_PREFIXES: Final = ("08", "53", "57P", "25006", "58")


def as_stored(moment: datetime) -> datetime:
    """asyncpg returns TIMESTAMPTZ as an aware datetime: a stored time reads as it is."""
    return moment


def utc(moment: datetime | None) -> datetime | None:
    """asyncpg returns TIMESTAMPTZ as an aware UTC datetime already; this keeps None."""
    return moment.astimezone(UTC) if moment is not None else None


def rowcount(status: str) -> int:
    """The row count in a command tag ("UPDATE 3", "INSERT 0 1")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every bundled PostgreSQL migration, in order."""
    folder = resources.files("core.store") / "migrations_pg"
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


def classify(exc: BaseException) -> StoreUnavailable | None:
    """The core error for a failure of PostgreSQL or of reaching it, or None (a constraint
    violation or a bad statement is the caller's business)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state.startswith(_TRANSIENT_PREFIXES):
            return StoreUnavailable(f"{type(exc).__name__} ({state}): {exc}")
        return None
    # A session PostgreSQL ended under us surfaces as a closed connection, or (when the
    # goodbye arrives mid-statement) as a protocol-state InternalClientError; the pool
    # drops that connection on release, so both clear by themselves.
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                        asyncpg.exceptions.ConnectionDoesNotExistError,
                        asyncpg.exceptions.InternalClientError)):
        return StoreUnavailable(f"{type(exc).__name__}: {exc}")
    return None


class PgDatabase:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.health = StoreHealth()
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE,
                timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S,
            )
            await self._migrate()
        except Exception as exc:
            await self.close()
            unavailable = classify(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except (TimeoutError, Exception):
                pool.terminate()

    async def _migrate(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, name, sql in migrations():
                    if version in applied:
                        continue
                    log.info("applying PostgreSQL migration %s", name)
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                            version, name,
                        )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A write transaction on a pooled connection; commits on success, rolls back on
        any exception. Failures of PostgreSQL become StoreUnavailable and mark health."""
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with (self._pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn,
                        conn.transaction()):
                yield conn
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            self.health.record(False, unavailable.cause)
            raise unavailable from exc
        self.health.record(True)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                yield conn
        except Exception as exc:
            unavailable = classify(exc)
            if unavailable is None:
                raise
            # Unlike a locked SQLite file, a PostgreSQL that cannot be reached fails reads
            # too (key checks come first on every route): readiness turns red on them as
            # well, and the readiness probe's write turns it green again.
            self.health.record(False, unavailable.cause)
            raise unavailable from exc

    async def probe_write(self) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "INSERT INTO write_probe (id, at) VALUES (1, now()) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at"
            )

    async def fetchone(self, sql: str, *params: Any) -> asyncpg.Record | None:
        async with self.reading() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *params)
            return row

    async def fetchall(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async with self.reading() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
            return rows

    async def execute(self, sql: str, *params: Any) -> int:
        """One statement in its own transaction; returns the changed row count."""
        async with self.transaction() as conn:
            return rowcount(await conn.execute(sql, *params))

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        async with self.transaction() as conn:
            await conn.executemany(sql, params)
