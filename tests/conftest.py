from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness import Harness


@pytest.fixture
async def sb(tmp_path: Path) -> AsyncIterator[Harness]:
    """A running Switchboard with the demo organisation (detach grace 0)."""
    harness = await Harness.start(tmp_path)
    try:
        yield harness
    finally:
        await harness.stop()
