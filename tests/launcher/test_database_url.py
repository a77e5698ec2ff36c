"""`--database` takes a path or a URL; every command opens its store through one factory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
    )


def test_a_sqlite_url_and_a_path_open_the_same_database(tmp_path: Path) -> None:
    db = tmp_path / "sb.db"
    created = cli("keys", "create", "--org", "acme", "--database", f"sqlite:///{db}")
    assert created.returncode == 0, created.stderr
    listed = cli("org", "show", "--org", "acme", "--database", str(db))
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://localhost/switchboard", "not supported yet"),
    ("mysql://localhost/switchboard", "unknown database scheme 'mysql'"),
    ("sqlite://host/x.db", "has a host"),
])
def test_a_database_url_it_cannot_open_is_a_clear_error(url: str, message: str) -> None:
    for command in (("keys", "create"), ("usage",), ("org", "show"), ("prices", "list"),
                    ("agents", "list")):
        result = cli(*command, "--database", url)
        assert result.returncode == 2, (command, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_serve_refuses_an_unsupported_database_clearly() -> None:
    result = cli("serve", "--role", "core", "--grpc-port", "0", "--database",
                 "postgresql://localhost/x")
    assert result.returncode == 2
    assert "not supported yet" in result.stderr and "Traceback" not in result.stderr
