"""Operator tokens from the command line against a running server: `switchboard operators
token create` issues one (stored hashed, shown once) that works on the operator API under
the operator's name and nowhere else; `list` shows it without the token; `revoke` ends it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from core.keys import KEY_CACHE_TTL_S, hash_key
from harness import Harness


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args, "--database", db],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
    )


async def queue_status(sb: Harness, token: str) -> int:
    async with sb.http.get("/api/operator/v1/conversations",
                           headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_create_list_use_and_revoke(sb: Harness) -> None:
    created = await asyncio.to_thread(cli, "operators", "token", "create", "--org", "demo",
                                      "--name", "Ann  Lee", db=sb.database)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("op_live_") and "shown once" in created.stderr
    key_id = created.stdout.split()[3]
    stored = await sb.core.store.get_key(key_id)
    assert stored is not None and stored.kind == "operator" and stored.name == "Ann Lee"
    assert await sb.core.store.find_key(hash_key(token)) == stored  # hashed, like keys

    listed = await asyncio.to_thread(cli, "operators", "token", "list", "--org", "demo",
                                     db=sb.database)
    assert key_id in listed.stdout and token not in listed.stdout

    assert await queue_status(sb, token) == 200
    async with sb.http.post("/api/sdk/chat", json={"message": "hi"},
                            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 403  # an operator token is not a chat key

    revoked = await asyncio.to_thread(cli, "operators", "token", "revoke", key_id,
                                      db=sb.database)
    assert revoked.returncode == 0, revoked.stderr
    await asyncio.sleep(KEY_CACHE_TTL_S * 2)  # the documented bound on a cached verdict
    assert await queue_status(sb, token) == 401


def test_bad_names_and_unknown_organisations_are_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    assert cli("keys", "create", "--org", "acme", db=db).returncode == 0
    too_long = cli("operators", "token", "create", "--org", "acme", "--name", "n" * 101, db=db)
    assert too_long.returncode == 2 and "--name" in too_long.stderr
    assert cli("operators", "token", "create", "--org", "acme", "--name", "n" * 100,
               db=db).returncode == 0
    unknown = cli("operators", "token", "create", "--org", "nope", "--name", "Ann", db=db)
    assert unknown.returncode == 2 and "not found" in unknown.stderr
    not_a_token = cli("operators", "token", "revoke", "no-such-id", db=db)
    assert not_a_token.returncode == 2
