"""A PostgreSQL database of this test run's own on the machine's server (issue #14).

`SWITCHBOARD_TEST_POSTGRES_URL` names the server's maintenance database (default
postgresql://postgres@127.0.0.1:5432/postgres, trust auth). The run creates a database
with a unique name, every test starts from empty tables, and the database is dropped at
the end. Without a reachable server the PostgreSQL tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core.store.postgres import PostgresStore

ADMIN_URL = os.environ.get(
    "SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONNECT_TIMEOUT_S = 3.0


def url_for(database: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


def unique_name(prefix: str = "switchboard_test") -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


async def reachable() -> str:
    """'' when the server answers, else why not."""
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}"
    await conn.close()
    return ""


async def create_database(name: str) -> str:
    conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url_for(name)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def terminate_backends(name: str) -> int:
    """Cut every connection to database `name` (PostgreSQL 'going away' for its clients)."""
    conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", name,
        )
    finally:
        await conn.close()
    return len(rows)


async def migrate(url: str) -> None:
    store = PostgresStore(url)
    await store.open()
    await store.close()


async def empty_tables(url: str) -> None:
    """Empty every table but the migration record."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        )]
        if tables:
            names = ", ".join(f'"{t}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


class TcpRelay:
    """A TCP relay in front of the PostgreSQL server, so a test can take the database
    away (close the listener and every relayed connection) and bring it back on the same
    port, as a network partition or a server restart would."""

    def __init__(self) -> None:
        parts = urlsplit(ADMIN_URL)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url_for(self, database: str) -> str:
        parts = urlsplit(ADMIN_URL)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}",
                                         path=f"/{database}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
