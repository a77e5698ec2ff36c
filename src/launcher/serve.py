"""`switchboard serve`: core and shim on one event loop (or one role each)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from core.config import CoreConfig
from core.demo.seed import seed_demo
from core.grpcapi.server import CoreServer
from core.observability.http import MetricsServer
from core.observability.tracing import configure_tracing, shutdown_tracing
from core.store.failures import StoreUnavailable
from shim.app import create_app
from shim.config import ShimConfig
from shim.connections import GuardedSite
from shim.malformed import ShimRunner

log = logging.getLogger("switchboard")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    role: str = "all"  # all | core | shim
    demo: bool = False
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    core_target: str = ""  # for --role shim; default: the local core
    metrics_port: int | None = None  # a separate GET /metrics listener (for --role core)
    otlp_endpoint: str = ""  # OpenTelemetry traces off unless set
    # With both roles in one process the shim calls the core's handlers directly;
    # False keeps a real gRPC channel over loopback (tests run both paths).
    in_process: bool = True
    shim: ShimConfig = field(default_factory=ShimConfig)
    # TLS for the shim's HTTP port (both or neither).
    tls_cert: str = ""
    tls_key: str = ""
    # SO_REUSEPORT on the HTTP (and metrics) port, for `serve --workers N`.
    reuse_port: bool = False


class StartError(Exception):
    """Switchboard cannot start (a port, the database): said in one line, no traceback."""


class ListenError(StartError):
    """A port could not be bound (in use, not permitted)."""


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext | None:
    """TLS for the shim's HTTP port, from PEM files (None: plain HTTP)."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class Running:
    """A started Switchboard (tests use it to run real servers on port 0)."""

    def __init__(self, core: CoreServer | None, runner: web.AppRunner | None,
                 http_port: int, metrics: MetricsServer | None = None) -> None:
        self.core = core
        self.runner = runner
        self.http_port = http_port
        self.metrics = metrics

    @property
    def grpc_port(self) -> int:
        return self.core.port if self.core else 0

    async def stop(self) -> None:
        if self.core is not None:
            await self.core.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.metrics is not None:
            await self.metrics.stop()


async def start(config: CoreConfig, options: ServeOptions,
                core: CoreServer | None = None) -> Running:
    if options.role in ("all", "core"):
        core = core or CoreServer(config)
        try:
            await core.start()
        except OSError as exc:
            await core.stop(grace_s=0)
            raise ListenError(f"cannot listen for gRPC on {config.host}:{config.port}: "
                              "the port is already in use or not permitted") from exc
        except StoreUnavailable as exc:
            with contextlib.suppress(Exception):
                await core.stop(grace_s=0)
            raise StartError(f"cannot start: the database {config.database} cannot be "
                             f"written ({exc.cause})") from exc
        if options.demo:
            await seed_demo(core.store, core.auth, core.agents, core.ids, core.clock)
            # The secret demo key stays out of the log (README.md lists it): a log line
            # with a secret in it would teach log readers to expect one.
            log.info("demo organisation ready (publishable demo key ab_live_demo_widget_key; "
                     "the secret demo key is in README.md)")
    runner = None
    http_port = 0
    if options.role in ("all", "shim"):
        target = options.core_target or f"{config.host}:{core.port if core else config.port}"
        channel = core.channel() if core is not None and options.in_process else None
        app = create_app(target, config=options.shim, core_channel=channel)
        # No aiohttp access log: shim.observability writes one line per request.
        runner = ShimRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = GuardedSite(
            runner, options.http_host, options.http_port,
            head_timeout_s=options.shim.request_head_timeout_s,
            max_connections=options.shim.max_connections,
            ssl_context=server_ssl_context(options.tls_cert, options.tls_key),
            reuse_port=options.reuse_port or None,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if core is not None and options.role == "all":
                await core.stop(grace_s=0)
            raise ListenError(f"cannot listen for HTTP on {options.http_host}:"
                              f"{options.http_port}: {exc.strerror or exc}") from exc
        http_port = site.port
        log.info("shim listening on %s://%s:%d (core %s)",
                 "https" if options.tls_cert else "http", options.http_host, http_port,
                 "in process" if channel is not None else f"at {target}")
    metrics = None
    if options.metrics_port is not None:
        metrics = await MetricsServer.start(options.http_host, options.metrics_port,
                                            reuse_port=options.reuse_port)
        log.info("metrics on http://%s:%d/metrics", options.http_host, metrics.port)
    return Running(core, runner, http_port, metrics)


async def serve_forever(config: CoreConfig, options: ServeOptions) -> None:
    if options.otlp_endpoint:
        configure_tracing(options.otlp_endpoint,
                          service="switchboard" if options.role == "all"
                          else f"switchboard-{options.role}")
    try:
        await _serve(config, options)
    finally:
        shutdown_tracing()  # flushes the spans still buffered


async def _serve(config: CoreConfig, options: ServeOptions) -> None:
    running = await start(config, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    # The core drains first (new turns get 503, running ones get the grace period) while
    # the shim keeps relaying their streams; then the shim closes.
    await running.stop()
