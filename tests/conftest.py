from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pg_support
import pytest

import harness as harness_module
from core import http_pool
from harness import Harness


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--transport", choices=harness_module.TRANSPORTS, default=None,
                     help="how the shim reaches the core in tests (default: inprocess, or "
                          "$SWITCHBOARD_TEST_TRANSPORT)")


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--transport")
    if chosen:
        harness_module.TRANSPORT = chosen


def pytest_report_header(config: pytest.Config) -> str:
    return f"shim transport: {harness_module.TRANSPORT}"


@pytest.fixture(autouse=True)
async def _close_http_pool() -> AsyncIterator[None]:
    """A test that calls out without a core (webhook tools alone) closes the process's
    pooled HTTP session on its own event loop; a core closes it when it stops."""
    yield
    await http_pool.close()


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[Harness]:
    """A running Switchboard with the demo organisation (detach grace 0)."""
    harness = await Harness.start(tmp_path)
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """This run's own PostgreSQL database (created now, dropped at the end); skips the
    test when no PostgreSQL server is reachable."""
    why = asyncio.run(pg_support.reachable())
    if why:
        pytest.skip(why)
    name = pg_support.unique_name()
    asyncio.run(pg_support.create_database(name))
    asyncio.run(pg_support.migrate(pg_support.url_for(name)))
    try:
        yield name
    finally:
        asyncio.run(pg_support.drop_database(name))


@pytest.fixture
async def pg_url(pg_database: str) -> str:
    """The run's PostgreSQL database, migrated and with every table empty."""
    url = pg_support.url_for(pg_database)
    await pg_support.empty_tables(url)
    return url
