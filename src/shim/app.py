"""The shim's aiohttp application: lifecycle, the core channel, health endpoints.

Dialect modules add their routes through `DIALECTS`; each owns its parsing, its event
projection and its error envelope, and reaches the core only through `CORE` (a gRPC
client).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from core.limits import MAX_REQUEST_BODY_BYTES
from shim import observability
from shim.config import ShimConfig, install
from shim.core_client import CoreClient

log = logging.getLogger("switchboard.shim")

CORE = web.AppKey("core", CoreClient)

Dialect = Callable[[web.Application], None]


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = await request.app[CORE].ready()
    return web.json_response(
        {"status": "ready" if ready else "not ready"}, status=200 if ready else 503
    )


def default_dialects() -> list[Dialect]:
    """Every dialect module's `setup(app)`, in a stable order."""
    found: list[Dialect] = []
    import importlib

    for name in ("halo", "slug", "aibot", "flow", "operator_api", "openapi", "frontend"):
        try:
            module = importlib.import_module(f"shim.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"shim.{name}":
                raise
            continue
        found.append(module.setup)
    return found


def create_app(core_target: str, dialects: Sequence[Dialect] | None = None, *,
               config: ShimConfig | None = None, core_channel: Any = None) -> web.Application:
    """The shim, reaching the core at `core_target` over gRPC, or through `core_channel`
    (a core's in-process channel) when given."""
    config = config or ShimConfig()
    app = web.Application(client_max_size=MAX_REQUEST_BODY_BYTES)
    observability.setup(app)  # request ids, request log lines, metrics, GET /metrics
    install(app, config)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    for setup in default_dialects() if dialects is None else dialects:
        setup(app)

    async def core_client(app: web.Application):  # type: ignore[no-untyped-def]
        app[CORE] = CoreClient(core_target, config, core_channel)
        yield
        await app[CORE].close()

    app.cleanup_ctx.append(core_client)
    return app
