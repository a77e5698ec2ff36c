"""Rows 7 and 8 of `make bench`: the scale-out backends, measured in the same run as the
SQLite rows they are compared with.

7. the core on PostgreSQL + Redis (`serve --database postgresql://... --redis ...`): gRPC
   `Chat` turns/s vs row 1 and slug SSE text events/s vs row 4a, both on SQLite;
8. `switchboard serve --workers 2` on the same PostgreSQL + Redis: shim REST req/s and
   slug SSE events/s vs one process on PostgreSQL + Redis under the same load (the load
   generator opens many connections, which the kernel spreads over the workers).

The run creates a PostgreSQL database of its own and drops it at the end; Redis is the db
in `SWITCHBOARD_BENCH_REDIS_URL`, flushed before and after. Either unreachable: the rows
say "skipped" and why, and the rest of the table is unchanged.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ADMIN_URL = os.environ.get("SWITCHBOARD_BENCH_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SWITCHBOARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
WORKERS = 2
CONNECT_TIMEOUT_S = 3.0
START_TIMEOUT_S = 60.0


async def unreachable() -> str:
    """'' when PostgreSQL and Redis both answer, else why the rows are skipped."""
    import asyncpg
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
        await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL at {_safe(ADMIN_URL)}: {type(exc).__name__}"
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        return f"no Redis at {REDIS_URL}: {type(exc).__name__}"
    finally:
        await client.aclose()
    return ""


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@",
                                                                 ":***@")))


async def _flush_redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=CONNECT_TIMEOUT_S)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this run (dropped afterwards) and a flushed Redis."""
    import asyncpg

    name = f"switchboard_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await _flush_redis()
    try:
        yield urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        await _flush_redis()
        conn = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WorkersProcess:
    """`switchboard serve --workers N`: the parent, its workers' pids and its HTTP port.
    Quacks like bench.run.ServerProcess where the rows need it (`cpu_s`, `http_base`)."""

    def __init__(self, proc: asyncio.subprocess.Process, pids: list[int], http_port: int,
                 log: Path) -> None:
        self.proc = proc
        self.pids = pids
        self.http_port = http_port
        self.log = log

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @classmethod
    async def start(cls, server_cpu: int | None, workdir: Path, database: str,
                    workers: int = WORKERS) -> WorkersProcess:
        http_port = _free_port()
        cmd = [sys.executable, "-m", "launcher.cli", "serve", "--workers", str(workers),
               "--database", database, "--redis", REDIS_URL, "--grpc-port",
               str(_free_port()), "--http-port", str(http_port), "--detach-grace", "0"]
        # The workers inherit the parent's CPU: the same one the single server had.
        if server_cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(server_cpu), *cmd]
        log = workdir / "workers.log"
        with log.open("wb") as out:
            # WARNING, as bench.server logs: no per-request lines under load.
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=out,
                env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"})
        if server_cpu is not None and not shutil.which("taskset"):
            os.sched_setaffinity(proc.pid, {server_cpu})
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline and proc.returncode is None:
            pids = _children(proc.pid)
            if (len(pids) == workers and all(_listens(pid, http_port) for pid in pids)
                    and await _ready_ok(http_port)):
                return cls(proc, pids, http_port, log)
            await asyncio.sleep(0.1)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise RuntimeError(f"serve --workers {workers} did not start; see {log}:\n"
                           f"{log.read_text(errors='replace')[-2000:]}")

    def cpu_s(self) -> float:
        """User + system CPU seconds of every worker."""
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _children(parent: int) -> list[int]:
    """The pids whose parent is `parent` (the workers; taskset execs, so it is no layer)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return sorted(found)


def _listens(pid: int, port: int) -> bool:
    """Whether `pid` has a listening TCP socket on `port` (its socket inodes matched in
    /proc/net/tcp): each worker must have bound the shared port before the load starts."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if (fields[3] == "0A" and fields[9] in inodes  # 0A: LISTEN
                and int(fields[1].split(":")[1], 16) == port):
            return True
    return False


async def _ready_ok(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/readyz",
                timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
