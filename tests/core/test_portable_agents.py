"""Stored agents are portable: a knowledge base is stored relative to the knowledge root
and resolved by the core that runs the turn; a missing folder is a clear error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from core.clock import FixedClock
from core.config import CoreConfig
from core.demo.seed import demo_dir
from core.grpcapi.server import CoreServer
from harness import Harness, auth
from switchboard.v1 import chat_pb2

AGENT = """\
name: Helper
slug: helper
provider: kb
knowledge_base: {kb}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True,
        timeout=60, cwd=cwd, env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
    )


def _site(root: Path) -> Path:
    """A knowledge root holding one help center and an agent file that names it."""
    shutil.copytree(demo_dir() / "kb", root / "help")
    (root / "agents").mkdir()
    (root / "agents" / "helper.yaml").write_text(AGENT.format(kb="../help"))
    return root / "agents" / "helper.yaml"


async def test_a_database_moved_to_another_root_keeps_working(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    agent_file = _site(first)
    db = tmp_path / "sb.db"
    assert cli("keys", "create", "--org", "demo", "--database", str(db),
               cwd=first).returncode == 0
    applied = cli("agents", "apply", str(agent_file), "--org", "demo", "--database", str(db),
                  "--knowledge-root", str(first), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    shutil.move(first, second)  # the folder moves (or the core runs on another host)
    sb = await Harness.start(tmp_path, database=str(db), knowledge_root=second)
    try:
        reply = await sb.chat_once("How do I reset my password?", agent="helper")
        assert reply.completed.text and reply.completed.confidence > 0
        stored = await sb.core.store.get_agent(sb.org_id, "helper")
        assert stored is not None and stored.definition["knowledge_base"]["path"] == "help"
    finally:
        await sb.stop()


def test_a_knowledge_base_outside_the_root_is_refused_at_apply(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    agent_file = _site(site)
    db = tmp_path / "sb.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli("keys", "create", "--database", str(db), cwd=tmp_path).returncode == 0
    result = cli("agents", "apply", str(agent_file), "--database", str(db),
                 "--knowledge-root", str(elsewhere), cwd=tmp_path)
    assert result.returncode == 2
    assert "knowledge_base" in result.stderr and "outside the knowledge root" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_knowledge_base_is_refused_at_apply(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text(AGENT.format(kb="gone"))
    assert cli("keys", "create", "--database", str(tmp_path / "sb.db"),
               cwd=tmp_path).returncode == 0
    result = cli("agents", "apply", str(tmp_path / "agent.yaml"), "--database",
                 str(tmp_path / "sb.db"), cwd=tmp_path)
    assert result.returncode == 2
    assert "knowledge_base: folder not found: gone" in result.stderr


async def test_a_knowledge_base_gone_later_fails_the_turn_clearly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "root"
    root.mkdir()
    agent_file = _site(root)
    sb = await Harness.start(tmp_path, knowledge_root=root)
    try:
        from core.agents.definition import load_agent_file

        await sb.core.agents.apply(sb.org_id, load_agent_file(agent_file), sb.core.ids,
                                   sb.core.clock)
        shutil.rmtree(root / "help")
        # Parsing stored agents does not touch the filesystem: the rest of the
        # organisation keeps working, and this agent's turns fail with a clear reason.
        assert await sb.core.agents.list(sb.org_id)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
                message="hello", agent="helper")), metadata=auth())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "knowledge base folder 'help' was not found" in (err.value.details() or "")
        assert any("knowledge base folder 'help'" in r.getMessage() for r in caplog.records)
    finally:
        await sb.stop()


async def test_retention_prunes_old_event_logs_at_start(tmp_path: Path) -> None:
    sb = await Harness.start(tmp_path)
    try:
        await sb.scripted_agent(reply="kept")
        reply = await sb.chat_once("hello", agent="scripted")
        conversation = reply.conversation_id
        assert await sb.core.store.list_events(sb.org_id, conversation, 0)
    finally:
        await sb.stop()
    clock = FixedClock(datetime.now(UTC) + timedelta(days=3))
    core = CoreServer(CoreConfig(port=0, database=str(tmp_path / "switchboard.db"),
                                 event_retention_days=2), clock=clock)
    await core.start()
    try:
        assert await core.store.list_events(sb.org_id, conversation, 0) == []
        page, _ = await core.store.list_messages(sb.org_id, conversation, 10)
        assert [m.content for m in page] == ["hello", "kept"]
    finally:
        await core.stop()
