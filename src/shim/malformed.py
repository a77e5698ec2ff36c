"""Malformed HTTP (an oversized request line or header, a request-smuggling attempt):
answered in the dialect's JSON envelope when the path says which dialect, logged as one
warning line.

aiohttp's parser refuses these before any route runs and its default answer is a
text/plain 400 echoing the offending bytes, logged at ERROR with a traceback per
request: a scanner or a misconfigured proxy would fill the logs. aiohttp has no hook for
this, so the runner builds its connections with a `RequestHandler` subclass.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from shim import aibot, flow, halo_errors, slug
from shim.core_client import CoreError

log = logging.getLogger("switchboard.shim.http")

# Enough of the request line to see which dialect's prefix it starts with.
_HEAD_BYTES = 512
_REQUEST_LINE = re.compile(rb"[A-Z]{3,10} (/[^ \r\n]*)")
_MAX_LOGGED_CHARS = 120


def _envelope(path: str, error: CoreError) -> web.Response:
    """The error in the envelope of the dialect owning `path` (Halo's for any other)."""
    if path.startswith("/v1/aibot/"):
        return aibot.error_response(error)
    if path.startswith("/api/public/v1/chat/"):
        return flow.error_response(error)
    if path.startswith("/v1/api/chat/"):
        name = path.removeprefix("/v1/api/chat/").split("/", 1)[0]
        return slug.error_response(error, name)
    return halo_errors.error_response(error)


class _Handler(RequestHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = b""

    def data_received(self, data: bytes) -> None:
        if _REQUEST_LINE.match(data):
            self._head = data[:_HEAD_BYTES]
        super().data_received(data)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        match = _REQUEST_LINE.match(self._head)
        path = match.group(1).decode("latin-1") if match else ""
        reason = (exc.message or "malformed request").strip().splitlines()[0]
        log.warning("malformed HTTP request from %s to %s: %s", request.remote,
                    path[:_MAX_LOGGED_CHARS] or "?", reason[:_MAX_LOGGED_CHARS])
        response = _envelope(path, CoreError(
            "INVALID_ARGUMENT", "invalid_argument",
            "The HTTP request is malformed (request line or headers too long, or "
            "conflicting Content-Length and Transfer-Encoding).",
        ))
        response.force_close()
        return response


class _Server(Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class ShimRunner(web.AppRunner):
    """An AppRunner whose connections answer malformed HTTP as above."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        # Application._make_handler builds a plain Server; keep its state, swap its class.
        server.__class__ = _Server
        return server
