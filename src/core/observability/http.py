"""`GET /metrics` over HTTP: the handler the shim mounts, and a listener of its own for a
process without a shim (`serve --role core --metrics-port N`)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

METRICS_PATH = "/metrics"


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


class MetricsServer:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port

    @classmethod
    async def start(cls, host: str, port: int, *, reuse_port: bool = False) -> MetricsServer:
        app = web.Application()
        app.router.add_get(METRICS_PATH, metrics_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        return cls(runner, sockets[0].getsockname()[1] if sockets else port)

    async def stop(self) -> None:
        await self._runner.cleanup()
