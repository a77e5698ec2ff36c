"""PostgreSQL-only behaviour: migrations under the advisory lock, and outages mapping to
the core's `store_unavailable` error, with service resuming when the server is back."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import asyncpg
import pg_support
import pytest
from store_contract import T0, make_org

from core.domain import Organisation, OrgSettings
from core.errors import Reason
from core.store import sqlite_db
from core.store.factory import open_store
from core.store.failures import StoreUnavailable
from core.store.postgres_db import migrations

REPLICAS = 4


@pytest.fixture
async def fresh_database() -> object:
    why = await pg_support.reachable()
    if why:
        pytest.skip(why)
    name = pg_support.unique_name("switchboard_migrate")
    url = await pg_support.create_database(name)
    try:
        yield url
    finally:
        await pg_support.drop_database(name)


async def test_replicas_opening_a_fresh_database_together_migrate_once(
    fresh_database: str,
) -> None:
    stores = [open_store(fresh_database) for _ in range(REPLICAS)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        conn = await asyncpg.connect(fresh_database)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [r[0] for r in rows] == [v for v, _, _ in migrations()]
        await make_org(stores[0], "o1")
        assert await stores[-1].get_org("o1") is not None
    finally:
        await asyncio.gather(*(s.close() for s in stores))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_server_that_cannot_be_reached_at_open_is_store_unavailable() -> None:
    store = open_store(f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing")
    with pytest.raises(StoreUnavailable) as err:
        await store.open()
    assert err.value.reason == Reason.STORE_UNAVAILABLE and err.value.retry_after_s


async def test_postgres_down_is_store_unavailable_then_service_resumes(
    pg_url: str, pg_database: str
) -> None:
    relay = pg_support.TcpRelay()
    await relay.start()
    store = open_store(relay.url_for(pg_database))
    await store.open()
    try:
        await make_org(store, "o1")
        seen: list[bool] = []
        store.health.subscribe(seen.append)
        await relay.stop()  # PostgreSQL is gone: connections cut, new ones refused
        with pytest.raises(StoreUnavailable) as err:
            await store.create_org(Organisation("o2", "o2", "Org o2", OrgSettings(), T0))
        assert err.value.reason == Reason.STORE_UNAVAILABLE
        with pytest.raises(StoreUnavailable):
            await store.get_org("o1")
        with pytest.raises(StoreUnavailable):
            await store.probe_write()
        assert store.health.writable is False and seen == [False]
        await relay.start()  # back on the same port: the pool reconnects by itself
        await store.probe_write()
        assert store.health.writable is True and seen == [False, True]
        await store.create_org(Organisation("o2", "o2", "Org o2", OrgSettings(), T0))
        assert await store.get_org("o2") is not None
    finally:
        await store.close()
        await relay.stop()


async def test_sessions_ended_by_the_server_are_replaced(
    pg_url: str, pg_database: str
) -> None:
    store = open_store(pg_url)
    await store.open()
    try:
        await make_org(store, "o1")
        # PostgreSQL ends every session of the database (as a restart or failover does):
        # at most the statement in flight fails as store_unavailable, then service resumes.
        assert await pg_support.terminate_backends(pg_database) >= 1
        with contextlib.suppress(StoreUnavailable):
            await store.get_org("o1")
        await store.probe_write()
        assert await store.get_org("o1") is not None
    finally:
        await store.close()


def test_every_sqlite_schema_change_has_a_postgresql_migration_of_the_same_number() -> None:
    # PostgreSQL's 0001 is the schema SQLite reached in 0001-0005 (see migrations_pg/).
    baseline = 5
    sqlite_versions = {v for v, _, _ in sqlite_db.migrations() if v > baseline}
    pg_versions = {v for v, _, _ in migrations()}
    assert 1 in pg_versions and sqlite_versions <= pg_versions, sqlite_versions - pg_versions
