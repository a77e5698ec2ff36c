"""Blocking `Chat` turns/s for a one-delta and a 100-delta reply, and the event rows a
turn writes (issue #13: events stored as one row per turn segment, not one per event).

    .venv/bin/python -m bench.blocking_turns [--turns 400] [--concurrency 4]

Starts `switchboard serve --role core --demo` on a temporary database, applies the
bench-chat (one delta) and bench-stream (100 deltas) agents, sends unary Chat turns and
reads the row counts from the database file and the core's CPU time from /proc (which,
unlike turns/s, barely moves when other work shares the machine). Compare runs on the
same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from switchboard.v1 import chat_pb2, chat_pb2_grpc

AGENTS = Path(__file__).resolve().parent / "agents"
LISTENING = re.compile(r"core listening on 127\.0\.0\.1:(\d+)")
AUTH = [("authorization", "Bearer sk_demo_secret_key")]


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "launcher.cli", *args], check=True,
                   capture_output=True, env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"})


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), robust to a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rows(db: str) -> int:
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        table = "event_log" if "event_log" in tables else "events"
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def _drive(port: int, agent: str, turns: int, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        queue = list(range(turns))

        async def worker() -> None:
            while queue:
                n = queue.pop()
                await stub.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
                    message=f"hello {n}", agent=agent)), metadata=AUTH)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return turns / (time.perf_counter() - start)


async def main_async(turns: int, concurrency: int) -> None:
    folder = tempfile.mkdtemp(prefix="sb-blocking-")
    db = str(Path(folder) / "bench.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "serve", "--role", "core", "--demo",
        "--grpc-port", "0", "--database", db, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "INFO"},
    )
    assert proc.stderr is not None
    try:
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise RuntimeError("serve exited early")
            match = LISTENING.search(line)
            if match:
                port = int(match.group(1))
                break
        drain = asyncio.create_task(proc.stderr.read())
        _cli("org", "set", "--org", "demo", "--rps", "1000000", "--burst", "1000000",
             "--database", db)
        for name in ("bench-chat", "bench-stream"):
            _cli("agents", "apply", str(AGENTS / f"{name}.yaml"), "--org", "demo",
                 "--database", db)
        for agent, label in (("bench-chat", "1 delta"), ("bench-stream", "100 deltas")):
            await _drive(port, agent, min(50, turns), concurrency)  # warm-up
            before, cpu = _rows(db), _cpu_s(proc.pid)
            rate = await _drive(port, agent, turns, concurrency)
            rows = (_rows(db) - before) / turns
            cpu_ms = (_cpu_s(proc.pid) - cpu) / turns * 1000
            print(f"{label:>11}: {rate:7.1f} turns/s (c={concurrency}), "
                  f"{cpu_ms:5.2f} ms server CPU per turn, {rows:6.1f} event rows per turn")
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        if "drain" in locals():
            await drain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    ns = parser.parse_args()
    asyncio.run(main_async(ns.turns, ns.concurrency))


if __name__ == "__main__":
    main()
