"""The SDK's stream parser under every network split (Node only, no browser needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SDK = HERE.parents[1] / "src" / "shim" / "static" / "sdk.js"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_records_and_characters_split_anywhere() -> None:
    result = subprocess.run(["node", str(HERE / "parser_check.mjs"), str(SDK)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
