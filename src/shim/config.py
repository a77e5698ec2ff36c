"""The shim's own settings (one frozen dataclass, filled from flags in one place)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from core import limits
from core.clientaddr import Network


@dataclass(frozen=True, slots=True)
class ShimConfig:
    # Peers whose X-Forwarded-For names the client (`--trusted-proxy`); none by default.
    trusted_proxies: tuple[Network, ...] = ()
    # A socket that has not sent a complete request head in this time is closed.
    request_head_timeout_s: float = limits.REQUEST_HEAD_TIMEOUT_S
    # Open HTTP connections per process; more are refused at accept time.
    max_connections: int = limits.MAX_HTTP_CONNECTIONS
    # TLS for the core channel: CA bundle to verify the core, optional client cert/key.
    core_tls_ca: str = ""
    core_tls_cert: str = ""
    core_tls_key: str = ""


SHIM_CONFIG = web.AppKey("shim_config", ShimConfig)
# Per-application state of the body gate (shim.common.read_json_object).
LARGE_BODIES = web.AppKey("large_bodies", asyncio.Semaphore)
KEY_VERDICTS = web.AppKey("key_verdicts", dict)


def install(app: web.Application, config: ShimConfig) -> None:
    app[SHIM_CONFIG] = config
    app[LARGE_BODIES] = asyncio.Semaphore(limits.MAX_LARGE_BODIES_IN_FLIGHT)
    app[KEY_VERDICTS] = {}


def config_of(app: web.Application) -> ShimConfig:
    return app.get(SHIM_CONFIG) or ShimConfig()
