"""`switchboard serve` as a process: it comes up, answers, and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.v1 import chat_pb2, chat_pb2_grpc

PORTS = re.compile(r"(core listening on 127\.0\.0\.1:|shim listening on http://127\.0\.0\.1:)"
                   r"(\d+)")


async def test_serve_demo_answers_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "serve", "--demo", "--grpc-port", "0",
        "--http-port", "0", "--database", str(tmp_path / "sb.db"),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "INFO"},
    )
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    log: list[str] = []
    try:
        while len(ports) < 2:
            line = (await asyncio.wait_for(proc.stderr.readline(), timeout=30)).decode()
            assert line, "serve exited early:\n" + "".join(log)
            log.append(line)
            match = PORTS.search(line)
            if match:
                ports["core" if match.group(1).startswith("core") else "shim"] = int(
                    match.group(2))
        url = f"http://127.0.0.1:{ports['shim']}/readyz"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['core']}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="switchboard.v1.ChatService"))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reply = await chat_pb2_grpc.ChatServiceStub(channel).Chat(
                chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
                    message="How do I set up event tracking?", agent="support-agent")),
                metadata=[("authorization", "Bearer sk_demo_secret_key")],
            )
            assert reply.completed.text
            assert [a.type for a in reply.completed.actions] == ["citation"]
            assert dict(reply.completed.actions[0].payload)["slug"] == "event-tracking"
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), timeout=30)
        assert await proc.wait() == 0
        assert "core stopped" in rest.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _serve_on_busy_port(tmp_path: Path, flag: str) -> tuple[int, str, int]:
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    other = "--http-port" if flag == "--grpc-port" else "--grpc-port"
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "serve", flag, str(port), other, "0",
            "--database", str(tmp_path / "sb.db"),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        busy.close()
    assert proc.returncode is not None
    return proc.returncode, err.decode(), port


async def test_a_busy_http_port_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    code, err, port = await _serve_on_busy_port(tmp_path, "--http-port")
    assert code != 0
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert f":{port}" in err and "HTTP" in err


async def test_a_busy_grpc_port_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    code, err, port = await _serve_on_busy_port(tmp_path, "--grpc-port")
    assert code != 0
    assert "Traceback" not in err
    assert f":{port}" in err.splitlines()[-1] and "gRPC" in err, err


async def test_a_database_that_cannot_be_written_is_one_line_at_start(tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "sb.db"
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("CREATE TABLE IF NOT EXISTS x (y)")
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "serve", "--grpc-port", "0",
            "--http-port", "0", "--database", str(database),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "ERROR",
                 "SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS": "50"},
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    assert text.strip().count("\n") == 0 and str(database) in text, text
