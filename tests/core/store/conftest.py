"""The Store contract suite runs every test once per backend.

A backend is a name and a function from a temporary folder to a database URL that
`core.store.factory.open_store` accepts. The PostgreSQL store (issue #14) joins by adding
its entry here (for example a fresh database per test on the local server); nothing in
the tests themselves may depend on the backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from store_contract import Ids

from core.store.base import Store
from core.store.factory import open_store

BACKENDS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda folder: f"sqlite:///{folder / 'contract.db'}",
}

@pytest.fixture(params=sorted(BACKENDS))
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return BACKENDS[request.param](tmp_path)


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
