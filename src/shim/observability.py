"""The shim's side of operations: request ids, one log line and metrics per HTTP request,
`GET /metrics`, and what the core must know about the request (its id and trace context,
sent as gRPC metadata by the channel's interceptors).

Routes are labelled by their template (`/v1/api/chat/{slug}`, never the raw path) and
the dialect that owns them; a path no route matches is `unmatched`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from core.observability import metrics, tracing
from core.observability.grpc_server import ORG_METADATA_KEY
from core.observability.http import METRICS_PATH, metrics_handler
from core.observability.requests import (
    HEADER,
    METADATA_KEY,
    accept_request_id,
    current_request_id,
    reset_request_id,
    set_request_id,
)
from shim import openapi

log = logging.getLogger("switchboard.http")

DIALECTS = ("halo", "slug", "aibot", "flow")
# Preflights are answered by shim.cors for every dialect: their path says which one.
_PREFIXES = (
    ("/api/sdk/", "halo"), ("/v1/api/chat/", "slug"), ("/chat/", "slug"),
    ("/v1/aibot/", "aibot"), ("/api/public/v1/chat/", "flow"),
)
# Probes and scrapes arrive every few seconds: counted, never logged.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", METRICS_PATH})
REQUEST_ID_KEY = web.RequestKey("request_id", str)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# nginx's status for a request the client abandoned; never sent, only counted and logged.
CLIENT_CLOSED = 499

# What the core told us about the request's turn (filled by the channel interceptor, read
# by the request's log line).
_TURN_FIELDS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "turn_fields", default=None
)


def route_of(request: web.Request) -> tuple[str, str]:
    """(dialect, route template) of a matched request; bounded by the routes that exist."""
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return "none", "unmatched"
    template = resource.canonical
    module = getattr(route.handler, "__module__", "") or ""
    name = module.rsplit(".", 1)[-1]
    if name in DIALECTS:
        return name, template
    for prefix, dialect in _PREFIXES:
        if template.startswith(prefix):
            return dialect, template
    return "system", template


@web.middleware
async def observe(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                  ) -> web.StreamResponse:
    request_id = accept_request_id(request.headers.get(HEADER))
    request[REQUEST_ID_KEY] = request_id
    token = set_request_id(request_id)
    fields: dict[str, str] = {}
    fields_token = _TURN_FIELDS.set(fields)
    dialect, route = route_of(request)
    # The HTTP parser knows dozens of methods (WebDAV, ...): only the usual ones are labels.
    method = request.method if request.method in METHODS else metrics.OTHER
    started = time.monotonic()
    status = 500
    try:
        with tracing.server_span(f"{method} {route}", request.headers, {
            "http.request.method": method, "http.route": route,
            "switchboard.dialect": dialect,
        }) as span:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = CLIENT_CLOSED  # the client went away before the answer ended
                raise
            status = response.status
            if span is not None:
                span.set_attribute("http.response.status_code", status)
            return response
    finally:
        elapsed = time.monotonic() - started
        metrics.HTTP_REQUESTS.labels(dialect, route, method, str(status)).inc()
        metrics.HTTP_DURATION.labels(dialect, route).observe(elapsed)
        if route not in QUIET_ROUTES:
            # The method and route template only: a raw path or query could carry a
            # customer's data, and the body never reaches a log.
            log.info("%s %s %d", method, route, status, extra={
                **fields, "request_id": request_id, "dialect": dialect, "route": route,
                "method": method, "status": status,
                "duration_ms": round(elapsed * 1000, 1),
            })
        _TURN_FIELDS.reset(fields_token)
        reset_request_id(token)


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers[HEADER] = request_id


def setup(app: web.Application) -> None:
    """Register the middleware, the response header and `GET /metrics`."""
    app.middlewares.insert(0, observe)
    app.on_response_prepare.append(_add_request_id)
    app.router.add_get(METRICS_PATH, metrics_handler)
    openapi.add_paths(app, {METRICS_PATH: {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text exposition format).",
        "tags": ["ops"], "security": [],
        "responses": {"200": {"description": "Metrics",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }}})


# -- the core channel -------------------------------------------------------------------

def context_metadata() -> list[tuple[str, str]]:
    """The request id and the trace context, as gRPC metadata for a call to the core
    (over the network or in process: every call's metadata is built with this)."""
    extra = tracing.inject()
    request_id = current_request_id()
    if request_id:
        extra.append((METADATA_KEY, request_id))
    return extra


async def _note_org(call: Any) -> None:
    fields = _TURN_FIELDS.get()
    if fields is None:
        return
    for key, value in await call.initial_metadata() or ():
        if key == ORG_METADATA_KEY:
            fields["org"] = str(value)


def note_turn(message: Any) -> None:
    """Remember the ids of the request's turn for its log line, from a ChatResponse or a
    stream's turn_started event (anything else is ignored)."""
    fields = _TURN_FIELDS.get()
    if fields is None or fields.get("turn_id"):
        return
    event = getattr(message, "event", message)  # a StreamChatResponse or a ChatEvent
    if "kind" in event.DESCRIPTOR.oneofs_by_name:
        if event.WhichOneof("kind") != "turn_started":
            return
        message = event.turn_started
    names = message.DESCRIPTOR.fields_by_name
    for key, name in (("conversation_id", "conversation_id"), ("turn_id", "turn_id"),
                      ("agent", "agent_slug")):
        if name in names and getattr(message, name):
            fields[key] = str(getattr(message, name))


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any,
                                    request: Any) -> Any:
        call = await continuation(client_call_details, request)
        await call  # raises the call's error, as awaiting the call would
        await _note_org(call)
        return call


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any,
                                     request: Any) -> Any:
        call = await continuation(client_call_details, request)
        if _TURN_FIELDS.get() is None:
            return call

        async def replies() -> AsyncIterator[Any]:
            first = True
            async for reply in call:
                if first:
                    first = False
                    await _note_org(call)
                yield reply

        # grpc keeps the call behind the iterator: cancel() and the status still work.
        return replies()


def channel_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For the shim's network channel to the core: the organisation the core names in its
    initial metadata goes into the request's log line (an in-process core has no
    metadata to send back; its turn and call lines name the organisation)."""
    return [_UnaryUnary(), _UnaryStream()]
