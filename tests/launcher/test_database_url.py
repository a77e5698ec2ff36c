"""`--database` takes a path or a URL; every command opens its store through one factory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pg_support
import pytest


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args],
        capture_output=True, text=True, timeout=60,
        env={**base, "SWITCHBOARD_LOG_LEVEL": "WARNING", **env},
    )


def test_a_sqlite_url_and_a_path_open_the_same_database(tmp_path: Path) -> None:
    db = tmp_path / "sb.db"
    created = cli("keys", "create", "--org", "acme", "--database", f"sqlite:///{db}")
    assert created.returncode == 0, created.stderr
    listed = cli("org", "show", "--org", "acme", "--database", str(db))
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://localhost", "needs a host and a database"),
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
                 "postgres://localhost")
    assert result.returncode == 2
    assert "needs a host and a database" in result.stderr and "Traceback" not in result.stderr


async def org_exists(url: str, slug: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM organisations WHERE slug = $1",
                                   slug) == 1
    finally:
        await conn.close()


def test_commands_take_a_postgresql_url_by_flag_or_environment(pg_database: str) -> None:
    url = pg_support.url_for(pg_database)
    slug = pg_support.unique_name("org").replace("_", "-")
    created = cli("keys", "create", "--org", slug, SWITCHBOARD_DATABASE_URL=url)
    assert created.returncode == 0, created.stderr
    assert asyncio.run(org_exists(url, slug))
    listed = cli("org", "show", "--org", slug, "--database", url)
    assert listed.returncode == 0 and "allowed_origins" in listed.stdout, listed.stderr
    # The flag wins over the environment.
    elsewhere = cli("org", "show", "--org", slug, "--database", url,
                    SWITCHBOARD_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert elsewhere.returncode == 0, elsewhere.stderr


def test_serve_with_postgresql_down_is_one_line(tmp_path: Path) -> None:
    result = cli("serve", "--role", "core", "--grpc-port", "0", "--database",
                 "postgresql://postgres@127.0.0.1:1/switchboard")
    assert result.returncode == 1, result.stderr
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr
