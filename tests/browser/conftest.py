"""Fixtures of the browser tests (see browser_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from browser_harness import HostPages, cdp

__all__ = ["cdp"]


@pytest.fixture
async def host() -> AsyncIterator[HostPages]:
    pages = await HostPages().start()
    try:
        yield pages
    finally:
        await pages.stop()
