"""Bounded HTTP connections: a request-head timeout and an open-connection cap.

aiohttp has no timeout for the first request head (its keep-alive timeout starts after a
response), and when a process runs out of file descriptors every failed accept logs a
traceback. `ConnectionGuard` wraps aiohttp's protocol factory:

- a connection that has not delivered a complete request head within
  `request_head_timeout_s` is closed (slowloris);
- at most `max_connections` are open at once (kept below the descriptor limit, so
  accept never fails); past it a connection is answered `503` and closed at once, and
  the refusals are logged once per `REFUSAL_LOG_INTERVAL_S`, not once each.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("switchboard.shim")

REFUSAL_LOG_INTERVAL_S = 10.0
FD_RESERVE = 256  # descriptors left for the database, the core channel, logs
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
            b"Retry-After: 1\r\nConnection: close\r\n\r\n")


def connection_cap(configured: int) -> int:
    """`configured`, lowered to stay below this process's descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_RESERVE))


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_REFUSAL)
        transport.close()


class _Guarded(asyncio.Protocol):
    """aiohttp's handler for one connection, counted and watched by the guard."""

    def __init__(self, guard: ConnectionGuard, handler: RequestHandler) -> None:
        self._guard = guard
        self.handler = handler
        self.head_seen = False
        self._transport: asyncio.BaseTransport | None = None
        # Counted from the accept (asyncio calls connection_made a loop turn later, and
        # for TLS only after the handshake): the cap must hold within one accept burst.
        guard.open[handler] = self
        self._timer = asyncio.get_running_loop().call_later(
            guard.head_timeout_s, self._head_deadline)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self.handler.connection_made(transport)

    def _head_deadline(self) -> None:
        if self.head_seen:
            return
        if self._transport is None:  # never connected (e.g. a TLS handshake that stalled)
            self._guard.open.pop(self.handler, None)
        else:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.open.pop(self.handler, None)
        self._timer.cancel()
        self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.handler.eof_received()
        return None

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


class ConnectionGuard:
    def __init__(self, server: web.Server, head_timeout_s: float, max_connections: int) -> None:
        self._server = server
        self.head_timeout_s = head_timeout_s
        self.max_connections = connection_cap(max_connections)
        self.open: dict[RequestHandler, _Guarded] = {}
        self._refused = 0
        self._last_log = 0.0
        factory = server.request_factory

        def request_factory(message: Any, payload: Any, protocol: RequestHandler,
                            writer: Any, task: Any) -> web.BaseRequest:
            guarded = self.open.get(protocol)
            if guarded is not None:
                guarded.head_seen = True
            return factory(message, payload, protocol, writer, task)

        server.request_factory = request_factory

    def __call__(self) -> asyncio.Protocol:
        if len(self.open) >= self.max_connections:
            self._note_refusal()
            return _Refused()
        return _Guarded(self, self._server())

    def _note_refusal(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._last_log >= REFUSAL_LOG_INTERVAL_S:
            log.warning("refused %d connection(s): %d open, the cap is %d",
                        self._refused, len(self.open), self.max_connections)
            self._refused = 0
            self._last_log = now


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through a ConnectionGuard."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *,
                 head_timeout_s: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._head_timeout_s = head_timeout_s
        self._max_connections = max_connections
        self.guard: ConnectionGuard | None = None

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self._head_timeout_s, self._max_connections)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard, self._host, self._port, ssl=self._ssl_context,
            backlog=self._backlog, reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        sockets = getattr(self._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self._port
