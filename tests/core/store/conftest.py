"""The Store contract suite runs every test once per backend.

A backend is a name and a database URL that `core.store.factory.open_store` accepts:
SQLite in the test's temporary folder, PostgreSQL in this run's own database on the local
server (emptied before each test; skipped with the reason when no server is reachable).
Nothing in the tests themselves may depend on the backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_contract import Ids

from core.store.base import Store
from core.store.factory import open_store

BACKENDS = ("postgres", "sqlite")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'contract.db'}"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = open_store(database_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def new_id() -> Ids:
    return Ids()
