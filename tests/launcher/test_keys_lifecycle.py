"""Key lifecycle from the command line against a running server (issue #11): a revoked
key, and every flow session token it issued, is refused within a second on every
surface; rotation keeps the old key for its overlap; identity secrets never come from
argv and are at least 32 bytes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from core.domain import KeyKind
from core.engine.identity import MIN_IDENTITY_SECRET_BYTES
from core.keys import KEY_CACHE_TTL_S
from harness import Harness, auth
from switchboard.v1 import chat_pb2


def cli(*args: str, db: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args, "--database", db],
        capture_output=True, text=True, timeout=60, input=stdin,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
    )


async def halo_status(sb: Harness, key: str) -> int:
    async with sb.http.post("/api/sdk/chat", json={"message": "hi", "agent_id": "scripted"},
                            headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status


async def grpc_ok(sb: Harness, key: str) -> bool:
    try:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
            message="hi", agent="scripted")), metadata=auth(key))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False
    return True


async def flow_status(sb: Harness, token: str) -> int:
    async with sb.http.post("/api/public/v1/chat/messages", json={
            "text": "I'd like to check my order", "intentName": "order_status"},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status


async def test_revoked_key_and_its_sessions_are_refused_within_a_second(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    key, raw = await sb.core.auth.create_key(sb.org_id, KeyKind.PUBLISHABLE, sb.core.ids,
                                             name="site")
    async with sb.http.post("/api/public/v1/chat/sessions", json={},
                            headers={"Authorization": f"Bearer {raw}"}) as resp:
        assert resp.status == 200
        session = (await resp.json())["token"]
    assert await halo_status(sb, raw) == 200 and await grpc_ok(sb, raw)
    assert await flow_status(sb, session) == 200
    listed = await asyncio.to_thread(cli, "keys", "list", "--org", "demo", db=sb.database)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(key.id))
    assert row.split("\t")[1] == "publishable" and row.endswith("active")
    assert raw not in listed.stdout
    revoked = await asyncio.to_thread(cli, "keys", "revoke", key.id, db=sb.database)
    assert revoked.returncode == 0, revoked.stderr
    await asyncio.sleep(KEY_CACHE_TTL_S + 0.05)  # < 1 s
    assert await halo_status(sb, raw) == 401
    assert not await grpc_ok(sb, raw)
    assert await flow_status(sb, session) == 401
    listed = await asyncio.to_thread(cli, "keys", "list", "--org", "demo", db=sb.database)
    assert next(line for line in listed.stdout.splitlines()
                if line.startswith(key.id)).endswith("revoked")
    again = await asyncio.to_thread(cli, "keys", "revoke", key.id, db=sb.database)
    assert again.returncode == 2


@pytest.mark.parametrize("overlap", ["0", "3600"])
async def test_rotation_issues_a_new_key_and_keeps_the_old_for_the_overlap(
    sb: Harness, overlap: str,
) -> None:
    await sb.scripted_agent(reply="ok")
    key, raw = await sb.core.auth.create_key(sb.org_id, KeyKind.SECRET, sb.core.ids)
    result = await asyncio.to_thread(cli, "keys", "rotate", key.id, "--overlap", overlap,
                                     db=sb.database)
    assert result.returncode == 0, result.stderr
    new_raw = result.stdout.strip().splitlines()[-1]
    assert new_raw.startswith("sk_live_") and new_raw != raw
    await asyncio.sleep(KEY_CACHE_TTL_S + 0.05)
    assert await grpc_ok(sb, new_raw)
    assert await grpc_ok(sb, raw) == (overlap != "0")


def test_identity_secret_comes_from_a_file_or_stdin_never_argv(tmp_path: Path) -> None:
    db = str(tmp_path / "sb.db")
    assert cli("keys", "create", "--org", "acme", db=db).returncode == 0
    argv = cli("org", "set", "--org", "acme", "--identity-secret", "x" * 40, db=db)
    assert argv.returncode == 2
    short = cli("org", "set", "--org", "acme", "--identity-secret-file", "-", db=db,
                stdin="y" * (MIN_IDENTITY_SECRET_BYTES - 1) + "\n")
    assert short.returncode == 2 and str(MIN_IDENTITY_SECRET_BYTES) in short.stderr
    ok = cli("org", "set", "--org", "acme", "--identity-secret-file", "-", db=db,
             stdin="y" * MIN_IDENTITY_SECRET_BYTES + "\n")
    assert ok.returncode == 0, ok.stderr
    shown = json.loads(cli("org", "show", "--org", "acme", db=db).stdout)
    assert shown["identity_secret"] == "(set)"
