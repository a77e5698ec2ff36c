"""`make bench`: Switchboard against the physical limit of its own stack.

Every figure is a ratio against a bare baseline measured in the same run, on the same
machine, by the same load tool, because absolute numbers on shared machines drift:

1. core `Chat` turns/s (scripted agent, zero delay, SQLite with its default durability)
   vs a bare grpc.aio unary echo of the same service (bench.baselines); 1b. the same with
   a 100-delta reply vs row 1;
2. core `StreamChat` text deltas/s (100-delta replies) vs a bare grpc.aio unary-stream echo;
3. shim REST `/api/sdk/chat` requests/s vs direct gRPC `Chat` on the same core;
4. shim SSE text events/s (slug, aibot) and Halo text-stream deltas/s vs direct gRPC
   `StreamChat` deltas/s on the same core;
5. time to the first token at 100 concurrent streams of an agent paced like a model (20
   tokens 100 ms apart), shim (slug SSE) vs direct gRPC: what the shim adds at p50 and p99;
6. resident memory per idle open SSE stream (`--idle-streams`, 2,000 by default) vs a bare
   aiohttp handler holding the same number of idle event streams;
7. the core on PostgreSQL + Redis: turns/s and slug SSE events/s vs rows 1 and 4a (SQLite);
8. `serve --workers 2` on PostgreSQL + Redis vs one process on them (bench.scaleout; rows 7
   and 8 say "skipped" and why when PostgreSQL or Redis is unreachable, or with
   `--no-scale-out`).

The servers run in their own processes (`python -m bench.server`); with two or more CPUs
the servers and this process (the load generator) are pinned to different cores (taskset,
else sched_setaffinity). `--tiny` runs everything at a toy size (the smoke test);
`--json FILE` also writes the results; `--profile DIR` samples the core process with
py-spy during rows 1, 1b and 4a and prints its top costs (py-spy is not a dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp
import grpc
from google.protobuf import __version__ as protobuf_version

from bench import httpload, loadtool, scaleout
from bench.baselines import IDLE_SSE_PATH
from bench.loadtool import LoadConfig, Report
from bench.server import raise_fd_limit

REPO_ROOT = Path(__file__).resolve().parent.parent
GHZ_DIR = REPO_ROOT / "bench" / "ghz"
SECRET = "sk_demo_secret_key"
SERVER_START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Sizes:
    duration: float = 5.0  # seconds per measurement
    warmup: float = 1.0
    concurrency: int = 50
    ttft_streams: int = 100  # row 5
    idle_streams: int = 2000  # row 6
    open_parallel: int = 100  # idle streams being opened at once


TINY = Sizes(duration=0.4, warmup=0.1, concurrency=4, ttft_streams=4, idle_streams=20,
             open_parallel=10)


@dataclass(slots=True)
class Row:
    key: str
    what: str
    value: str
    baseline: str
    ratio: float | None
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


# -- processes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pinning:
    server_cpu: int | None
    load_cpus: frozenset[int] | None
    how: str

    @classmethod
    def plan(cls) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None, f"not pinned ({len(cpus)} CPU available)")
        tool = "taskset" if shutil.which("taskset") else "sched_setaffinity"
        return cls(cpus[0], frozenset(cpus[1:]),
                   f"servers on CPU {cpus[0]}, load generator on CPU "
                   f"{','.join(map(str, cpus[1:]))} ({tool})")


class ServerProcess:
    """A `python -m bench.server` child and what it printed when it was ready."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.info['grpc_port']}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.info['http_port']}"

    def agent(self, slug: str) -> str:
        return str(self.info["agents"][slug])

    @classmethod
    async def start(cls, kind: str, pinning: Pinning, workdir: Path,
                    *args: str) -> ServerProcess:
        cmd = [sys.executable, "-m", "bench.server", kind, *args]
        if pinning.server_cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(pinning.server_cpu), *cmd]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        log = (workdir / f"{kind}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log)
        log.close()
        if pinning.server_cpu is not None and not shutil.which("taskset"):
            os.sched_setaffinity(proc.pid, {pinning.server_cpu})
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), SERVER_START_TIMEOUT_S)
            info = json.loads(line)
        except (TimeoutError, ValueError):
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"bench.server {kind} did not start; see "
                               f"{workdir / (kind + '.log')}:\n"
                               f"{(workdir / (kind + '.log')).read_text()[-2000:]}") from None
        return cls(proc, info)

    def cpu_s(self) -> float:
        """User + system CPU seconds the server has used."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# -- measurements ---------------------------------------------------------------------------


T = TypeVar("T")


@dataclass(slots=True)
class Cpu:
    """CPU use during a measurement, in % of one core: is the server or the load
    generator the bottleneck?"""

    server: float
    load: float

    def __str__(self) -> str:
        return f"CPU server {self.server:.0f}% / load {self.load:.0f}%"


class Metered(Protocol):
    def cpu_s(self) -> float: ...


async def metered(server: Metered, work: Awaitable[T]) -> tuple[T, Cpu]:
    def own_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    wall, server_cpu, load_cpu = time.perf_counter(), server.cpu_s(), own_cpu()
    result = await work
    wall = max(time.perf_counter() - wall, 1e-9)
    return result, Cpu(100 * (server.cpu_s() - server_cpu) / wall,
                       100 * (own_cpu() - load_cpu) / wall)


def _ghz(name: str, host: str, sizes: Sizes, *, duration: float | None = None,
         concurrency: int | None = None, agent: str | None = None) -> LoadConfig:
    """A shipped ghz config, sized for this run and pointed at `host`."""
    config = loadtool.load_config(GHZ_DIR / name)
    data = config.data
    if agent is not None and isinstance(data, dict):
        data = {**data, "turn": {**data["turn"], "agent": agent}}
    return loadtool.with_overrides(
        config, host=host, data=data, duration=sizes.duration if duration is None else duration,
        concurrency=concurrency or sizes.concurrency, total=0,
        protoset=str(GHZ_DIR / "switchboard.protoset"),
    )


def _is_delta(response: Any) -> bool:
    return bool(response.event.HasField("text_delta"))


async def grpc_load(name: str, host: str, sizes: Sizes, *, concurrency: int | None = None,
                    deltas: bool = False, agent: str | None = None) -> Report:
    match = _is_delta if deltas else None
    await loadtool.run(_ghz(name, host, sizes, duration=sizes.warmup, concurrency=concurrency,
                            agent=agent))
    return await loadtool.run(_ghz(name, host, sizes, concurrency=concurrency, agent=agent),
                              first_match=match, count_match=match, name=name)


async def http_load(url: str, body: Callable[[int], dict[str, Any]], sizes: Sizes, *,
                    mode: httpload.Mode, concurrency: int | None = None,
                    is_text: Callable[[str], bool] | None = None,
                    count_text: Callable[[bytes], int] | None = None) -> Report:
    headers = {"Authorization": f"Bearer {SECRET}"}
    if mode == "sse":
        headers["Accept"] = "text/event-stream"
    c = concurrency or sizes.concurrency
    await httpload.run_http(url, body, headers, mode=mode, concurrency=c,
                            duration=sizes.warmup, is_text=is_text, count_text=count_text)
    return await httpload.run_http(url, body, headers, mode=mode, concurrency=c,
                                   duration=sizes.duration, is_text=is_text,
                                   count_text=count_text, name=url)


def _halo_deltas(chunk: bytes) -> int:
    # bench-stream's reply is " tok" 100 times, one delta each; the shim writes a burst
    # of deltas as one chunk, so count them rather than chunks.
    return chunk.count(b" tok")


def _slug_text(data: str) -> bool:
    return data.startswith('{"chunk"')


def _aibot_text(data: str) -> bool:
    return data.startswith('{"type": "text"') or data.startswith('{"type":"text"')


# -- formatting -----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _rate(report: Report, unit: str, *, messages: bool = False) -> str:
    if report.ok == 0:
        return _unavailable(report)
    rate = report.messages_per_s if messages else report.rps
    text = f"{rate:,.0f} {unit}"
    if not messages:
        text += f" (p50 {_ms(report.pct(50))}, p99 {_ms(report.pct(99))})"
    return text


def _unavailable(report: Report) -> str:
    statuses = set(report.statuses)
    if statuses <= {"HTTP 404", "HTTP 405"} and statuses:
        return "n/a (endpoint missing)"
    common = report.statuses.most_common(1)
    return f"n/a ({common[0][0] if common else 'no requests'})"


def _ratio(value: float, baseline: float, ok: bool = True) -> float | None:
    return value / baseline if ok and baseline > 0 else None


def _errors(*reports: Report) -> str:
    bad: Counter[str] = Counter()
    for r in reports:
        for code, n in r.statuses.items():
            if code != "OK":
                bad[code] += n
    return "; ".join(f"{n} {code}" for code, n in bad.items())


def render(rows: list[Row], header: list[str]) -> str:
    cols = [("#", [r.key for r in rows]), ("measurement", [r.what for r in rows]),
            ("switchboard", [r.value for r in rows]), ("baseline", [r.baseline for r in rows]),
            ("ratio", [f"{r.ratio:.3f}" if r.ratio is not None else "n/a" for r in rows])]
    widths = [max(len(title), *(len(v) for v in values)) for title, values in cols]
    line = "  ".join(title.ljust(w) for (title, _), w in zip(cols, widths, strict=True))
    out = [*header, "", line, "-" * len(line)]
    for i, row in enumerate(rows):
        cells = [values[i].ljust(w) for (_, values), w in zip(cols, widths, strict=True)]
        out.append("  ".join(cells).rstrip() + (f"   [{row.note}]" if row.note else ""))
    return "\n".join(out)


def environment(pinning: Pinning, sizes: Sizes) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "aiohttp": aiohttp.__version__,
        "protobuf": protobuf_version,
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "platform": platform.platform(),
        "pinning": pinning.how,
        # The core's default (durable transcripts); bench.server inherits the variable.
        "sqlite_synchronous": os.environ.get("SWITCHBOARD_SQLITE_SYNCHRONOUS") or "FULL",
        # How the bench core's shim reaches it (bench.server inherits the variable).
        "shim_transport": os.environ.get("SWITCHBOARD_BENCH_SHIM_TRANSPORT") or "inprocess",
        "sizes": asdict(sizes),
    }


# -- rows -----------------------------------------------------------------------------------


async def measure(sizes: Sizes, pinning: Pinning, workdir: Path,
                  profile_dir: Path | None, emit: Callable[[Row], None],
                  scale_out: bool = True) -> list[Row]:
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        emit(row)

    def note(*parts: str) -> str:
        return "; ".join(p for p in parts if p)

    echo = await ServerProcess.start("echo", pinning, workdir)
    core = await ServerProcess.start("core", pinning, workdir, "--database",
                                     str(workdir / "switchboard.db"),
                                     "--max-rpcs", str(max(20_000, sizes.idle_streams * 2)))
    try:
        c = sizes.concurrency
        # 1. unary turns
        base1, base1_cpu = await metered(echo, grpc_load("chat.json", echo.grpc_target, sizes))
        with _profiled(profile_dir, "chat", core.pid, sizes.duration + sizes.warmup):
            chat, chat_cpu = await metered(core, grpc_load("chat.json", core.grpc_target, sizes))
        add(Row("1", f"core Chat turns/s (c={c})", _rate(chat, "turns/s"),
                f"bare echo {_rate(base1, 'req/s')}",
                _ratio(chat.rps, base1.rps, chat.ok > 0),
                note(_errors(chat, base1), f"{chat_cpu}; baseline {base1_cpu}"),
                {"switchboard": chat.to_dict(), "baseline": base1.to_dict(),
                 "cpu": asdict(chat_cpu), "baseline_cpu": asdict(base1_cpu)}))
        # 2. streamed text deltas
        base2, base2_cpu = await metered(echo, grpc_load(
            "stream_chat.json", echo.grpc_target, sizes, deltas=True))
        stream, stream_cpu = await metered(core, grpc_load(
            "stream_chat.json", core.grpc_target, sizes, deltas=True))
        add(Row("2", f"core StreamChat deltas/s (100/turn, c={c})",
                _rate(stream, "deltas/s", messages=True),
                f"bare stream echo {_rate(base2, 'deltas/s', messages=True)}",
                _ratio(stream.messages_per_s, base2.messages_per_s, stream.ok > 0),
                note(_errors(stream, base2), f"{stream_cpu}; baseline {base2_cpu}"),
                {"switchboard": stream.to_dict(), "baseline": base2.to_dict(),
                 "cpu": asdict(stream_cpu), "baseline_cpu": asdict(base2_cpu)}))
        # 3. REST over the shim vs gRPC on the same core
        chat_agent = core.agent("bench-chat")
        rest, rest_cpu = await metered(core, http_load(
            f"{core.http_base}/api/sdk/chat",
            lambda n: {"message": f"hello {n}", "agent_id": chat_agent}, sizes, mode="json"))
        add(Row("3", f"shim REST /api/sdk/chat req/s (c={c})", _rate(rest, "req/s"),
                f"gRPC Chat {_rate(chat, 'req/s')}",
                _ratio(rest.rps, chat.rps, rest.ok > 0), note(_errors(rest), str(rest_cpu)),
                {"switchboard": rest.to_dict(), "cpu": asdict(rest_cpu)}))
        # 4. streaming dialects vs gRPC StreamChat on the same core
        stream_agent = core.agent("bench-stream")
        grpc_deltas = f"gRPC StreamChat {_rate(stream, 'deltas/s', messages=True)}"
        with _profiled(profile_dir, "slug_sse", core.pid, sizes.duration + sizes.warmup):
            slug, slug_cpu = await metered(core, http_load(
                f"{core.http_base}/v1/api/chat/bench-stream",
                lambda n: {"message": f"stream {n}", "stream": True}, sizes, mode="sse",
                is_text=_slug_text))
        aibot, aibot_cpu = await metered(core, http_load(
            f"{core.http_base}/v1/aibot/bots/{stream_agent}/send-message",
            lambda n: {"messages": [{"role": "user", "content": f"stream {n}"}]}, sizes,
            mode="sse", is_text=_aibot_text))
        halo, halo_cpu = await metered(core, http_load(
            f"{core.http_base}/api/sdk/chat/stream",
            lambda n: {"message": f"stream {n}", "agent_id": stream_agent}, sizes, mode="text",
            count_text=_halo_deltas))
        for key, what, report, unit, cpu in (
            ("4a", "shim slug SSE text events/s", slug, "events/s", slug_cpu),
            ("4b", "shim aibot SSE text events/s", aibot, "events/s", aibot_cpu),
            ("4c", "shim Halo text-stream deltas/s", halo, "deltas/s", halo_cpu),
        ):
            add(Row(key, f"{what} (c={c})", _rate(report, unit, messages=True), grpc_deltas,
                    _ratio(report.messages_per_s, stream.messages_per_s, report.ok > 0),
                    note(_errors(report), str(cpu)),
                    {"switchboard": report.to_dict(), "cpu": asdict(cpu)}))
        # 1b. unary turns whose reply is 100 text deltas (what a turn's deltas cost). Run
        # after rows 2-4, so its 100-event turns do not grow the database under row 3,
        # against row 1's load re-run just before it (same database, same moment).
        chat_again, _ = await metered(core, grpc_load("chat.json", core.grpc_target, sizes))
        with _profiled(profile_dir, "chat100", core.pid, sizes.duration + sizes.warmup):
            chat100, chat100_cpu = await metered(core, grpc_load(
                "chat.json", core.grpc_target, sizes, agent="bench-stream"))
        row1b = Row("1b", f"core Chat turns/s, 100-delta reply (c={c})",
                    _rate(chat100, "turns/s"), f"row 1 again {_rate(chat_again, 'turns/s')}",
                    _ratio(chat100.rps, chat_again.rps, chat100.ok > 0),
                    note(_errors(chat100, chat_again), str(chat100_cpu)),
                    {"switchboard": chat100.to_dict(), "baseline": chat_again.to_dict(),
                     "cpu": asdict(chat100_cpu)})
        rows.insert(1, row1b)
        emit(row1b)
        # 5. time to first token at 100 concurrent streams of a model-paced agent
        n = sizes.ttft_streams
        g5 = await grpc_load("stream_chat.json", core.grpc_target, sizes, concurrency=n,
                             deltas=True, agent="bench-paced")
        s5 = await http_load(
            f"{core.http_base}/v1/api/chat/bench-paced",
            lambda i: {"message": f"first {i}", "stream": True}, sizes, mode="sse",
            concurrency=n, is_text=_slug_text)
        if s5.first and g5.first:
            value = (f"slug SSE p50 {_ms(s5.first_pct(50))}, p99 {_ms(s5.first_pct(99))} "
                     f"(adds {_ms(s5.first_pct(50) - g5.first_pct(50))} / "
                     f"{_ms(s5.first_pct(99) - g5.first_pct(99))})")
        else:
            value = _unavailable(s5) if not s5.first else "n/a (no gRPC first token)"
        add(Row("5", f"first-token latency, {n} streams (20 tokens 100 ms apart)", value,
                f"gRPC StreamChat p50 {_ms(g5.first_pct(50))}, p99 {_ms(g5.first_pct(99))}",
                _ratio(s5.first_pct(50), g5.first_pct(50), bool(s5.first)),
                note(_errors(s5, g5), "ratio of p50s, lower is better"),
                {"switchboard": s5.to_dict(), "baseline": g5.to_dict()}))
        # 6. idle open SSE streams: resident memory per stream
        bare = await idle_streams(echo, f"{echo.http_base}{IDLE_SSE_PATH}", {}, sizes)
        sb = await idle_streams(core, f"{core.http_base}/v1/api/chat/bench-idle",
                                {"message": "wait", "stream": True}, sizes)
        if sb["opened"]:
            value = (f"{sb['per_stream_kib']:.1f} KiB/stream ({sb['opened']} slug SSE streams,"
                     f" +{sb['delta_kib'] / 1024:.1f} MiB, opened in {sb['open_s']:.1f} s)")
        else:
            value = f"n/a ({sb['failures'] or 'no stream opened'})"
        add(Row("6", f"idle open SSE streams (N={sizes.idle_streams})", value,
                f"bare aiohttp {bare['per_stream_kib']:.1f} KiB/stream",
                _ratio(sb["per_stream_kib"], bare["per_stream_kib"], sb["opened"] > 0),
                note(*(f"{k} failures: {v}" for k, v in (("switchboard", sb["failures"]),
                                                         ("bare", bare["failures"])) if v),
                     "lower is better"),
                {"switchboard": sb, "baseline": bare}))
    finally:
        await core.stop()
        await echo.stop()
    reason = "" if scale_out else "--no-scale-out"
    await scale_out_rows(sizes, pinning, workdir, chat, slug, add,
                         reason or await scaleout.unreachable())
    return rows


def _slug_body(n: int) -> dict[str, Any]:
    return {"message": f"stream {n}", "stream": True}


async def scale_out_rows(sizes: Sizes, pinning: Pinning, workdir: Path, sqlite_chat: Report,
                         sqlite_slug: Report, add: Callable[[Row], None], reason: str) -> None:
    """Rows 7a-8b (see bench.scaleout): PostgreSQL + Redis against the SQLite rows 1 and
    4a of this run, then `serve --workers 2` against one process on the same backends."""
    c, n = sizes.concurrency, scaleout.WORKERS
    titles = {"7a": f"PostgreSQL + Redis: core Chat turns/s (c={c})",
              "7b": f"PostgreSQL + Redis: shim slug SSE text events/s (c={c})",
              "8a": f"--workers {n}, PostgreSQL + Redis: shim REST req/s (c={c})",
              "8b": f"--workers {n}, PostgreSQL + Redis: slug SSE events/s (c={c})"}
    if reason:
        for key, what in titles.items():
            add(Row(key, what, f"skipped ({reason})", "", None))
        return
    shared_cpu = (f"all {n} workers on the server's one CPU"
                  if pinning.server_cpu is not None else "")
    async with scaleout.bench_database() as url:
        pg = await ServerProcess.start("core", pinning, workdir, "--database", url,
                                       "--redis", scaleout.REDIS_URL)
        try:
            chat, chat_cpu = await metered(pg, grpc_load("chat.json", pg.grpc_target, sizes))
            add(Row("7a", titles["7a"], _rate(chat, "turns/s"),
                    f"SQLite row 1 {_rate(sqlite_chat, 'turns/s')}",
                    _ratio(chat.rps, sqlite_chat.rps, chat.ok > 0),
                    "; ".join(p for p in (_errors(chat), str(chat_cpu)) if p),
                    {"switchboard": chat.to_dict(), "cpu": asdict(chat_cpu)}))
            chat_agent = pg.agent("bench-chat")

            def rest_body(i: int) -> dict[str, Any]:
                return {"message": f"hello {i}", "agent_id": chat_agent}

            rest, rest_cpu = await metered(pg, http_load(
                f"{pg.http_base}/api/sdk/chat", rest_body, sizes, mode="json"))
            slug, slug_cpu = await metered(pg, http_load(
                f"{pg.http_base}/v1/api/chat/bench-stream", _slug_body, sizes, mode="sse",
                is_text=_slug_text))
            add(Row("7b", titles["7b"], _rate(slug, "events/s", messages=True),
                    f"SQLite row 4a {_rate(sqlite_slug, 'events/s', messages=True)}",
                    _ratio(slug.messages_per_s, sqlite_slug.messages_per_s, slug.ok > 0),
                    "; ".join(p for p in (_errors(slug), str(slug_cpu)) if p),
                    {"switchboard": slug.to_dict(), "cpu": asdict(slug_cpu)}))
        finally:
            await pg.stop()
        # The same database: the demo organisation, the bench agents, the lifted limits.
        workers = await scaleout.WorkersProcess.start(pinning.server_cpu, workdir, url)
        try:
            w_rest, w_rest_cpu = await metered(workers, http_load(
                f"{workers.http_base}/api/sdk/chat", rest_body, sizes, mode="json"))
            add(Row("8a", titles["8a"], _rate(w_rest, "req/s"),
                    f"one process {_rate(rest, 'req/s')}",
                    _ratio(w_rest.rps, rest.rps, w_rest.ok > 0),
                    "; ".join(p for p in (_errors(w_rest), str(w_rest_cpu), shared_cpu)
                              if p),
                    {"switchboard": w_rest.to_dict(), "baseline": rest.to_dict(),
                     "cpu": asdict(w_rest_cpu), "baseline_cpu": asdict(rest_cpu)}))
            w_slug, w_slug_cpu = await metered(workers, http_load(
                f"{workers.http_base}/v1/api/chat/bench-stream", _slug_body, sizes,
                mode="sse", is_text=_slug_text))
            add(Row("8b", titles["8b"], _rate(w_slug, "events/s", messages=True),
                    f"one process {_rate(slug, 'events/s', messages=True)}",
                    _ratio(w_slug.messages_per_s, slug.messages_per_s, w_slug.ok > 0),
                    "; ".join(p for p in (_errors(w_slug), str(w_slug_cpu), shared_cpu)
                              if p),
                    {"switchboard": w_slug.to_dict(), "baseline": slug.to_dict(),
                     "cpu": asdict(w_slug_cpu)}))
        finally:
            await workers.stop()


async def idle_streams(server: ServerProcess, url: str, body: dict[str, Any],
                       sizes: Sizes) -> dict[str, Any]:
    """Opens `idle_streams` event streams that stay silent, and reads the server's RSS
    growth; the streams are closed before returning."""
    headers = {"Authorization": f"Bearer {SECRET}", "Accept": "text/event-stream"}
    connector = aiohttp.TCPConnector(limit=0)
    responses: list[aiohttp.ClientResponse] = []
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(sizes.open_parallel)
    await asyncio.sleep(0.5)  # let the previous rows' work settle
    before = server.rss_kib()

    async def open_one(http: aiohttp.ClientSession) -> None:
        async with gate:
            try:
                resp = await http.post(url, json=body, headers=headers)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] += 1
                return
            if resp.status != 200:
                failures[f"HTTP {resp.status}"] += 1
                resp.release()
                return
            responses.append(resp)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        began = time.perf_counter()
        try:
            await asyncio.gather(*(open_one(http) for _ in range(sizes.idle_streams)))
            open_s = time.perf_counter() - began
            await asyncio.sleep(1.0)  # everything the streams allocate lazily
            after = server.rss_kib()
        finally:
            for resp in responses:
                resp.close()
    opened = len(responses)
    delta = after - before
    return {
        "opened": opened,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "delta_kib": delta,
        "per_stream_kib": delta / opened if opened else 0.0,
        "open_s": open_s,
        "failures": ", ".join(f"{n} {k}" for k, n in failures.items()),
    }


@contextlib.contextmanager
def _profiled(profile_dir: Path | None, name: str, pid: int, seconds: float) -> Iterator[None]:
    """Samples `pid` with py-spy while the block runs: collapsed stacks of the thread
    holding the GIL (the server's Python CPU cost), aggregated by function."""
    if profile_dir is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = profile_dir / f"{name}.txt"
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", "200", "--format", "raw", "--output", str(out), "--nonblocking",
         "--gil", "--function"],
        stdout=subprocess.DEVNULL, stderr=(profile_dir / f"{name}.log").open("wb"))
    try:
        yield
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)


def top_costs(collapsed: Path, limit: int = 15) -> list[str]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    out = [f"{total} samples; self time:"]
    out += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(limit)]
    out.append("inclusive (switchboard code):")
    ours = [(f, n) for f, n in inclusive.most_common()
            if any(part in f for part in ("(core/", "(shim/", "/src/core/", "/src/shim/"))]
    out += [f"  {n / total:6.1%}  {f}" for f, n in ours[:limit]]
    return out


# -- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="toy sizes (smoke test)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 5)")
    p.add_argument("--concurrency", type=int, help="concurrent calls (default 50)")
    p.add_argument("--idle-streams", type=int, help="row 6 streams (default 2000)")
    p.add_argument("--ttft-streams", type=int, help="row 5 concurrent streams (default 100)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--profile", type=Path, help="py-spy the core into this folder")
    p.add_argument("--no-scale-out", action="store_true",
                   help="skip rows 7-8 (PostgreSQL + Redis, --workers 2)")
    return p


def sizes_from(ns: argparse.Namespace) -> Sizes:
    sizes = TINY if ns.tiny else Sizes()
    changes = {k: v for k, v in (("duration", ns.duration), ("concurrency", ns.concurrency),
                                 ("idle_streams", ns.idle_streams),
                                 ("ttft_streams", ns.ttft_streams)) if v is not None}
    return Sizes(**{**asdict(sizes), **changes})


async def main_async(ns: argparse.Namespace) -> int:
    sizes = sizes_from(ns)
    pinning = Pinning.plan()
    if pinning.load_cpus is not None:
        os.sched_setaffinity(0, pinning.load_cpus)
    raise_fd_limit()
    env = environment(pinning, sizes)
    header = [
        f"Switchboard benchmark, {env['date']}",
        f"Python {env['python']}, grpcio {env['grpcio']}, aiohttp {env['aiohttp']}, "
        f"protobuf {env['protobuf']}; {env['cores']} cores ({env['cpu']}); {env['pinning']}",
        f"{sizes.duration:g} s per measurement after {sizes.warmup:g} s warm-up; load tool "
        "bench.loadtool / bench.httpload (Python, one process); SQLite WAL, synchronous="
        f"{env['sqlite_synchronous']}; shim to core: {env['shim_transport']}",
        "ratio = switchboard / baseline (higher is better, except rows 5 and 6); CPU = share "
        "of one core the server and the load generator used while measuring",
    ]
    print("\n".join(header), flush=True)
    if ns.profile:
        ns.profile.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:

        def emit(row: Row) -> None:
            print(f"  row {row.key} done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)

        try:
            rows = await measure(sizes, pinning, Path(tmp), ns.profile, emit,
                                 scale_out=not ns.no_scale_out)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print()
    print(render(rows, []).lstrip("\n"))
    print(f"\ncompleted in {time.perf_counter() - started:.0f} s")
    if ns.profile:
        for name in ("chat", "chat100", "slug_sse"):
            path = ns.profile / f"{name}.txt"
            print(f"\nprofile of the core during {name} ({path}):")
            print("\n".join(top_costs(path)) if path.exists() and path.stat().st_size
                  else f"  (no profile: see {ns.profile / (name + '.log')})")
    if ns.json:
        ns.json.write_text(json.dumps(
            {"environment": env, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
