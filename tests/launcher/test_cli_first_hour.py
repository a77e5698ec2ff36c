"""The CLI a newcomer meets in the first hour: --version, help on every option,
organisations, `chat` against a core that is down or interrupted, and store commands
that refuse to invent an empty database."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Harness
from launcher.cli import _version, build_parser
from launcher.organisations import MAX_SLUG_CHARS

ENV = {**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"}


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env or ENV)


def parsers(parser: argparse.ArgumentParser, path: str = "switchboard",
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"switchboard {_version()}" != "switchboard unknown"


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, parser in parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_orgs_create_and_list_then_an_agent_for_it(tmp_path: Path) -> None:
    db = ("--database", str(tmp_path / "sb.db"))
    created = cli("orgs", "create", "acme", "--name", "Acme Inc", *db)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created organisation acme")
    again = cli("orgs", "create", "acme", *db)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = cli("orgs", "create", "Not A Slug", *db)
    assert bad.returncode == 2 and "not a valid slug" in bad.stderr
    too_long = cli("orgs", "create", "a" * (MAX_SLUG_CHARS + 1), *db)
    assert too_long.returncode == 2 and "not a valid slug" in too_long.stderr
    assert cli("orgs", "create", "a" * MAX_SLUG_CHARS, *db).returncode == 0
    assert cli("orgs", "create", "beta", *db).returncode == 0
    listed = cli("orgs", "list", *db)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [
        "a" * MAX_SLUG_CHARS, "acme", "beta"]
    assert listed.stdout.splitlines()[1].endswith("\tAcme Inc")
    # docs/agents.md's example: an agent for an organisation made with `orgs create`
    agent = Path(__file__).parents[2] / "examples" / "agents" / "kb-agent.yaml"
    applied = cli("agents", "apply", str(agent), "--org", "acme", *db)
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("command", [
    ("keys", "create", "--org", "acme"), ("org", "show"), ("usage",), ("prices", "list"),
    ("orgs", "list"), ("agents", "list"),
])
def test_outside_the_project_no_database_is_created(tmp_path: Path,
                                                    command: tuple[str, ...]) -> None:
    env = {k: v for k, v in ENV.items() if k != "SWITCHBOARD_DATA_DIR"}
    result = cli(*command, cwd=tmp_path, env=env)
    assert result.returncode == 2
    expected = tmp_path.resolve() / ".switchboard" / "switchboard.db"
    assert f"no database at {expected}" in result.stderr
    assert "--database" in result.stderr
    assert not (tmp_path / ".switchboard").exists()


def test_an_explicit_new_database_is_still_created(tmp_path: Path) -> None:
    result = cli("orgs", "create", "acme", "--database", str(tmp_path / "new.db"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new.db").exists()


def test_a_bad_otlp_endpoint_is_a_usage_error() -> None:
    result = cli("serve", "--otlp-endpoint", "collector:4318")
    assert result.returncode == 2 and "must be an http(s) URL" in result.stderr


def test_chat_without_a_core_says_to_start_it(tmp_path: Path) -> None:
    result = cli("chat", "--core", "127.0.0.1:1", "hello")
    assert result.returncode == 1
    assert "no Switchboard core answers at 127.0.0.1:1" in result.stderr
    assert "make run" in result.stderr


async def test_ctrl_c_quits_interactive_chat_at_once(sb: Harness) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "chat", "--core", sb.grpc_target,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        banner = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert b"Type a message" in banner
        proc.stdin.write(b"What are your business hours?\n")
        await proc.stdin.drain()
        reply = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert b"business" in reply
        await asyncio.sleep(0.2)  # back at the prompt, waiting for a line that never comes
        proc.send_signal(signal.SIGINT)
        # Not a speed check: the old client waited for Enter forever (input() in a thread).
        code = await asyncio.wait_for(proc.wait(), timeout=20)
        assert code == 130
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_ctrl_c_on_a_terminal_quits_interactive_chat(sb: Harness) -> None:
    """The same through a pseudo-terminal: the Ctrl-C byte becomes SIGINT as on a desk."""
    pty = pytest.importorskip("pty")
    import fcntl
    import termios

    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "chat", "--core", sb.grpc_target,
        stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal, env=ENV,
    )
    os.close(slave)
    loop = asyncio.get_running_loop()
    seen = b""

    async def until(token: bytes) -> None:
        nonlocal seen
        while token not in seen:
            chunk = await asyncio.wait_for(loop.run_in_executor(None, os.read, master, 4096),
                                           timeout=30)
            assert chunk, seen
            seen += chunk

    try:
        await until(b"> ")
        os.write(master, b"What are your business hours?\r")
        await until(b"confidence")
        seen = seen[seen.index(b"confidence"):]
        await until(b"> ")
        await asyncio.sleep(0.2)
        os.write(master, b"\x03")
        assert await asyncio.wait_for(proc.wait(), timeout=20) == 130
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)
