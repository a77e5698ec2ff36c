"""`switchboard serve --workers N` as real processes: the workers share the HTTP and gRPC
ports (SO_REUSEPORT) on one PostgreSQL database and one Redis, both answer, SIGTERM
stops them all, a worker that dies is reported; SQLite or no Redis is refused in one
line. Skipped with the reason when PostgreSQL or Redis is unreachable."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from redis_support import flushed_db, url_for

from launcher.workers import MAX_WORKERS, parse_workers, refusal
from switchboard.v1 import chat_pb2, chat_pb2_grpc

REDIS_DB = 14  # this test file's own Redis db
REDIS_URL = url_for(REDIS_DB)
WIDGET = "ab_live_demo_widget_key"
SECRET = "sk_demo_secret_key"
SHIM = re.compile(r"shim listening on http://127\.0\.0\.1:(\d+).*\[worker=(\d+)\]")
CORE = re.compile(r"core listening on 127\.0\.0\.1:(\d+).*\[worker=(\d+)\]")
PIDS = re.compile(r"started \d+ workers \(pids ([\d, ]+)\)")
WORKER_TAG = re.compile(r"\[worker=(\d+)\]")
# New connections the kernel spreads over 2 workers: all on one is a 2**-17 chance. Below
# the demo keys' burst (20; the limit is shared by the workers through Redis).
CONNECTIONS = 18


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with flushed_db(REDIS_DB, "--workers tests") as url:
        yield url


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SWITCHBOARD_REDIS_URL", "SWITCHBOARD_DATABASE_URL",
                          "SWITCHBOARD_WORKERS", "SWITCHBOARD_WORKER")}
    return {**clean, "SWITCHBOARD_LOG_LEVEL": "INFO"}


class Workers:
    """`switchboard serve --workers N` and everything it (and its workers) logged."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log: list[str] = []
        self.http_port = 0
        self.grpc_port = 0
        self.pids: list[int] = []
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, workers: int, *args: str) -> Workers:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "serve", "--workers", str(workers),
            "--grpc-port", "0", "--http-port", "0", *args,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, env=env())
        self = cls(proc)
        shims: set[str] = set()
        demo = "--demo" not in args
        assert proc.stderr is not None
        while len(shims) < workers or not demo:
            line = (await asyncio.wait_for(proc.stderr.readline(), timeout=60)).decode()
            assert line, "serve exited early:\n" + "".join(self.log)
            self.log.append(line)
            if match := PIDS.search(line):
                self.pids = [int(p) for p in match.group(1).split(", ")]
            if match := SHIM.search(line):
                self.http_port = int(match.group(1))
                shims.add(match.group(2))
            if match := CORE.search(line):
                self.grpc_port = int(match.group(1))
            demo = demo or "demo organisation ready" in line
        self._reader = asyncio.create_task(self._drain())
        return self

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.log.append(raw.decode())

    async def wait(self) -> int:
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout=30)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            if self._reader is not None:
                await self._reader
        return code

    def workers_that_logged(self, needle: str) -> set[str]:
        return {m.group(1) for line in self.log if needle in line
                for m in [WORKER_TAG.search(line)] if m}


async def test_two_workers_share_both_ports_and_stop_together_on_sigterm(
        pg_url: str, redis_url: str) -> None:
    sb = await Workers.start(2, "--demo", "--database", pg_url, "--redis", redis_url)
    try:
        listening = {line.split("listening on ")[1].split(" ")[0] for line in sb.log
                     if "listening on" in line}
        assert len(listening) == 2, listening  # one HTTP and one gRPC address for both
        # Every request on a new connection: the kernel picks the worker per connection.
        for i in range(CONNECTIONS):
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)) as http, http.post(
                    f"http://127.0.0.1:{sb.http_port}/api/sdk/chat",
                    json={"message": "How do I set up event tracking?"},
                    headers={"Authorization": f"Bearer {WIDGET}",
                             "X-Request-Id": f"http-probe-{i}"}) as resp:
                assert resp.status == 200, await resp.text()
            async with grpc.aio.insecure_channel(
                    f"127.0.0.1:{sb.grpc_port}",
                    options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                reply = await chat_pb2_grpc.ChatServiceStub(channel).Chat(
                    chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi")),
                    metadata=[("authorization", f"Bearer {SECRET}"),
                              ("x-request-id", f"grpc-probe-{i}")])
                assert reply.completed.text
        await asyncio.sleep(0.2)  # the last log lines
        assert sb.workers_that_logged("request_id=http-probe-") == {"0", "1"}
        assert sb.workers_that_logged("request_id=grpc-probe-") == {"0", "1"}
        sb.proc.send_signal(signal.SIGTERM)
        assert await sb.wait() == 0
    finally:
        if sb.proc.returncode is None:
            sb.proc.kill()
            await sb.wait()
    text = "".join(sb.log)
    assert sb.workers_that_logged("core stopped") == {"0", "1"}, text
    assert "all workers stopped" in text and "Traceback" not in text
    for pid in sb.pids:  # no worker outlives its parent
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_worker_that_dies_is_reported_and_stops_the_others(
        pg_url: str, redis_url: str) -> None:
    sb = await Workers.start(2, "--database", pg_url, "--redis", redis_url)
    try:
        assert len(sb.pids) == 2
        os.kill(sb.pids[1], signal.SIGKILL)
        assert await sb.wait() == 1
    finally:
        if sb.proc.returncode is None:
            sb.proc.kill()
            await sb.wait()
    text = "".join(sb.log)
    assert f"worker 1 (pid {sb.pids[1]}) was killed by SIGKILL; stopping the other workers" \
        in text, text
    assert sb.workers_that_logged("core stopped") == {"0"}
    with pytest.raises(ProcessLookupError):
        os.kill(sb.pids[0], 0)


async def _refused(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "serve", "--workers", "2", *args,
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, env=env())
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_workers_on_sqlite_are_refused_in_one_line(tmp_path: Path) -> None:
    code, err = await _refused("--database", str(tmp_path / "sb.db"),
                               "--redis", REDIS_URL)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "--workers 2 needs --database postgresql://" in err
    assert not (tmp_path / "sb.db").exists()  # refused before anything started


async def test_workers_without_redis_are_refused_in_one_line() -> None:
    code, err = await _refused("--database", "postgresql://postgres@127.0.0.1:5432/unused")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "--workers 2 needs --redis redis://" in err


def test_the_workers_limit_at_max_and_max_plus_one() -> None:
    assert parse_workers(str(MAX_WORKERS)) == MAX_WORKERS
    with pytest.raises(ValueError, match=f"from 1 to {MAX_WORKERS}"):
        parse_workers(str(MAX_WORKERS + 1))
    with pytest.raises(ValueError):
        parse_workers("0")
    assert refusal(1, "sb.db", "") is None  # one worker: nothing changes
    assert refusal(MAX_WORKERS, "postgresql://h/db", REDIS_URL) is None
