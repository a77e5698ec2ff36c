"""The benchmark's server process: `python -m bench.server core|echo`.

`core` runs Switchboard as `switchboard serve` does (core and shim on one event loop, the
shim reaching the core through its in-process channel, SQLite with its default durability) with
the demo organisation seeded, the agents of bench/agents/ applied, and the demo key's rate
limits lifted (a benchmark measures throughput, not the limiter). `echo` runs the bare
grpc.aio baseline of bench.baselines and its bare aiohttp idle-SSE handler.

The process prints one JSON line (`pid`, `grpc_port`, `http_port`, `agents`) once it
serves, then runs until SIGTERM or SIGINT. bench.run starts it pinned to its own CPU; for
ghz, `python -m bench.server core --grpc-port 50051` serves where bench/ghz/ points.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

AGENTS_DIR = Path(__file__).resolve().parent / "agents"
UNLIMITED = {"rps": 1e9, "burst": 10**9, "max_streams": 10**6}


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (idle-stream row); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _serve_core(database: str, max_rpcs: int, grpc_port: int, http_port: int,
                      shim_transport: str = "inprocess",
                      redis_url: str = "") -> tuple[dict[str, Any], Any]:
    from core.agents.definition import load_agent_file
    from core.config import CoreConfig
    from core.demo.seed import seed_demo
    from core.engine.turns import EngineConfig
    from core.grpcapi.server import CoreServer
    from launcher.serve import ServeOptions, start

    # Detach grace 0: a closed benchmark stream frees its turn at once (idle-stream row).
    config = CoreConfig(port=grpc_port, database=database,
                        engine=EngineConfig(detach_grace_s=0.0), max_concurrent_rpcs=max_rpcs,
                        redis_url=redis_url)
    core = CoreServer(config)
    options = ServeOptions(http_port=http_port, in_process=shim_transport == "inprocess")
    running = await start(config, options, core=core)
    store = core.store
    org_id = await seed_demo(store, core.auth, core.agents, core.ids, core.clock)
    org = await store.get_org(org_id)
    assert org is not None
    extra = {**org.settings.extra, "rate_limit": dict(UNLIMITED)}
    await store.update_org_settings(org_id, replace(org.settings, extra=extra))
    agents = {}
    for path in sorted(AGENTS_DIR.glob("*.yaml")):
        definition = load_agent_file(path)
        record = await core.agents.apply(org_id, definition, core.ids, core.clock)
        agents[definition.slug] = record.id
    info = {"grpc_port": running.grpc_port, "http_port": running.http_port, "agents": agents}
    return info, running.stop


async def _serve_echo(deltas: int) -> tuple[dict[str, Any], Any]:
    from aiohttp import web

    from bench.baselines import idle_sse_app, start_echo_server

    server, port = await start_echo_server(deltas=deltas)
    runner = web.AppRunner(idle_sse_app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]

    async def stop() -> None:
        await server.stop(grace=1.0)
        await runner.cleanup()

    return {"grpc_port": port, "http_port": http_port, "agents": {}}, stop


async def main_async(ns: argparse.Namespace) -> None:
    if ns.kind == "core":
        info, stop = await _serve_core(ns.database, ns.max_rpcs, ns.grpc_port, ns.http_port,
                                       ns.shim_transport, ns.redis)
    else:
        info, stop = await _serve_echo(ns.deltas)
    info["pid"] = os.getpid()
    info["nofile"] = raise_fd_limit()
    print(json.dumps(info), flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("kind", choices=("core", "echo"))
    parser.add_argument("--database", default="bench.db",
                        help="a SQLite path or postgresql://... (as `serve --database`)")
    parser.add_argument("--max-rpcs", type=int, default=20_000,
                        help="the core's concurrent-RPC cap (the default 1000 would refuse "
                        "the idle-stream row's streams)")
    parser.add_argument("--redis", default="", help="share limits through this Redis "
                        "(as `serve --redis`; default: none)")
    parser.add_argument("--grpc-port", type=int, default=0, help="core port (0: any free)")
    parser.add_argument("--http-port", type=int, default=0, help="shim port (0: any free)")
    parser.add_argument("--deltas", type=int, default=100, help="echo StreamChat deltas")
    parser.add_argument("--shim-transport", choices=("inprocess", "grpc"),
                        default=os.environ.get("SWITCHBOARD_BENCH_SHIM_TRANSPORT", "inprocess"),
                        help="how the shim reaches the core (grpc: as with --role shim; "
                        "default $SWITCHBOARD_BENCH_SHIM_TRANSPORT or inprocess)")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    raise_fd_limit()
    asyncio.run(main_async(ns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
