"""`switchboard serve --workers N`: N serving processes on one machine, one set of ports.

Each worker is a whole `switchboard serve` (core and shim) started again by this parent
with the same arguments; they bind the same HTTP and gRPC ports with SO_REUSEPORT and the
kernel spreads new connections over them. Everything they must agree on lives outside
them: the turns in PostgreSQL, rate limits, stream caps and stops in Redis. SQLite (one
process's file, written by one process at a time) and in-process limits (N buckets instead
of one) would be silently wrong with N > 1, so the parent refuses them.

The parent only supervises: it forwards SIGTERM/SIGINT (each worker drains on its own),
and when a worker dies without being asked to it says which one and how, stops the others
and exits non-zero, so whatever runs Switchboard (systemd, Kubernetes, compose) restarts
the whole set instead of running a replica with fewer workers than it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Final

from core.store.factory import POSTGRES_SCHEMES, StoreURLError, store_scheme

log = logging.getLogger("switchboard.workers")

# More workers than this on one machine is a typo, not a deployment (each one is a whole
# core with its own PostgreSQL pool): run more replicas instead.
MAX_WORKERS: Final = 64
WORKERS_ENV: Final = "SWITCHBOARD_WORKERS"
# Set by the parent in each worker's environment: the worker's index (0..N-1).
WORKER_ENV: Final = "SWITCHBOARD_WORKER"
# The parent's pid, so a worker whose parent is already gone does not start serving.
PARENT_ENV: Final = "SWITCHBOARD_WORKER_PARENT"
_PR_SET_PDEATHSIG: Final = 1


def parse_workers(text: str) -> int:
    """The --workers value (also $SWITCHBOARD_WORKERS): 1..MAX_WORKERS."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number from 1 to {MAX_WORKERS}") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"must be from 1 to {MAX_WORKERS} (got {value})")
    return value


def refusal(workers: int, database: str, redis_url: str) -> str | None:
    """Why `serve --workers N` cannot run on this database and Redis (None: it can)."""
    if workers <= 1:
        return None
    try:
        scheme = store_scheme(database)
    except StoreURLError:
        return None  # the store factory says what is wrong with the URL
    if scheme not in POSTGRES_SCHEMES:
        return (f"switchboard: --workers {workers} needs --database postgresql://... "
                "(a SQLite file is written by one process at a time); use --workers 1")
    if not redis_url:
        return (f"switchboard: --workers {workers} needs --redis redis://HOST:PORT/N "
                "(rate limits, stream caps and stops must be shared); use --workers 1")
    return None


def worker_index() -> int | None:
    """This process's index when a `--workers` parent started it, else None."""
    text = os.environ.get(WORKER_ENV, "")
    return int(text) if text.isdigit() else None


def follow_parent() -> None:
    """In a worker: get SIGTERM (and so drain) if the parent dies, even by kill -9, instead
    of serving on as an orphan nobody supervises. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):
        os.kill(os.getpid(), signal.SIGTERM)  # the parent died before prctl took effect


def free_port(host: str) -> int:
    """A port free right now on `host`: every worker must bind the same number, so port 0
    (each its own ephemeral port) is resolved once, here."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def worker_argv(argv: Sequence[str], ports: dict[str, int]) -> list[str]:
    """The worker's command line: the parent's, with every port fixed and one worker each
    (argparse keeps the last value of a repeated option)."""
    tail = [arg for flag, port in ports.items() for arg in (flag, str(port))]
    return [*argv, *tail, "--workers", "1"]


async def supervise(argv: Sequence[str], workers: int) -> int:
    """Start `workers` copies of `switchboard <argv>` and wait for them; the exit code."""
    procs: list[asyncio.subprocess.Process] = []
    stopping = False

    def forward(sig: signal.Signals) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, forward, sig)
    for index in range(workers):
        if stopping:  # a signal while starting: start no more
            break
        env = {**os.environ, WORKER_ENV: str(index), PARENT_ENV: str(os.getpid())}
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", *argv, env=env))
    log.info("started %d workers (pids %s)", workers, ", ".join(str(p.pid) for p in procs))
    waits = {asyncio.ensure_future(proc.wait()): (index, proc)
             for index, proc in enumerate(procs)}
    code = 0
    pending = set(waits)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            index, proc = waits[task]
            how = _how(proc.returncode)
            if not stopping:
                log.error("worker %d (pid %d) %s; stopping the other workers",
                          index, proc.pid, how)
                code = 1
                forward(signal.SIGTERM)
            elif proc.returncode != 0:
                log.warning("worker %d (pid %d) %s while stopping", index, proc.pid, how)
                code = code or 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    log.info("all workers stopped")
    return code


def _how(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"
