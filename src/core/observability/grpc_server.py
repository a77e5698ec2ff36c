"""The core's outermost gRPC interceptor: request id, trace span, metrics and one log
line per call.

It wraps the handler the inner interceptors (auth) return, so it sees every outcome,
refused keys included. The request id comes from the `x-request-id` metadata entry (the
shim forwards its own) or is made here; the turn a call starts inherits it, since the
turn's task copies the call's context.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from core.observability import metrics, tracing
from core.observability.requests import METADATA_KEY, accept_request_id, set_request_id

log = logging.getLogger("switchboard.grpc")

# The caller's organisation id, in the initial metadata of a call that answers: the shim
# puts it in its request log line (it knows the key, never the organisation). Sent before
# the first message (the auth interceptor has run by then); a refused call has none.
ORG_METADATA_KEY = "x-switchboard-org"

# Health checks arrive every few seconds from load balancers: counted, never logged.
QUIET_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _metadata(context: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" or key.endswith("-bin"):
            continue  # credentials and binary entries have no business in a span or log
        found[key] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return found


def _code_of(context: Any, exc: BaseException | None) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"  # the client went away (a closed stream ends with GeneratorExit)
    try:
        code = context.code()
    except Exception:  # a context in a state without a code
        code = None
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        return _INT_CODES.get(code, "UNKNOWN")
    return "OK" if exc is None else "INTERNAL"


_INT_CODES = {c.value[0]: str(c.name) for c in grpc.StatusCode}


def _org() -> str:
    from core.grpcapi.auth import current_principal

    try:
        return current_principal().org_id
    except LookupError:
        return ""


async def _tell_org(context: Any) -> None:
    org = _org()
    if not org:
        return
    try:
        await context.send_initial_metadata(((ORG_METADATA_KEY, org),))
    except Exception:  # a handler that sent its own initial metadata keeps it
        log.debug("initial metadata already sent", exc_info=True)


class _Call:
    """The bookkeeping of one call, shared by the four handler shapes."""

    def __init__(self, method: str, context: Any, streaming: bool) -> None:
        self.method = method
        self.context = context
        self.streaming = streaming
        carrier = _metadata(context)
        self.request_id = accept_request_id(carrier.get(METADATA_KEY))
        self.carrier = carrier
        self.started = time.monotonic()

    def begin(self) -> None:
        set_request_id(self.request_id)
        if self.streaming:
            metrics.OPEN_STREAMS.labels(self.method).inc()

    def end(self, exc: BaseException | None) -> None:
        elapsed = time.monotonic() - self.started
        code = _code_of(self.context, exc)
        if self.streaming:
            metrics.OPEN_STREAMS.labels(self.method).dec()
        metrics.GRPC_CALLS.labels(self.method, code).inc()
        metrics.GRPC_DURATION.labels(self.method).observe(elapsed)
        if not self.method.startswith(QUIET_PREFIXES):
            log.info("rpc %s %s", self.method, code, extra={
                "request_id": self.request_id, "method": self.method, "code": code,
                "org": _org(), "duration_ms": round(elapsed * 1000, 1),
                "trace_id": tracing.current_trace_id(),
            })


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: grpc answers UNIMPLEMENTED, no label for it
        method = str(handler_call_details.method)
        if handler.unary_unary or handler.stream_unary:
            unary = handler.unary_unary or handler.stream_unary

            async def unary_behavior(request: Any, context: Any) -> Any:
                call = _Call(method, context, streaming=False)
                call.begin()
                with tracing.server_span(method, call.carrier, {"rpc.method": method}):
                    try:
                        reply = unary(request, context)
                        if inspect.isawaitable(reply):  # grpc.aio also runs plain functions
                            reply = await reply
                        await _tell_org(context)
                    except BaseException as exc:
                        call.end(exc)
                        raise
                call.end(None)
                return reply

            make = (grpc.unary_unary_rpc_method_handler if handler.unary_unary
                    else grpc.stream_unary_rpc_method_handler)
            return make(unary_behavior, handler.request_deserializer,
                        handler.response_serializer)

        stream = handler.unary_stream or handler.stream_stream
        make = (grpc.unary_stream_rpc_method_handler if handler.unary_stream
                else grpc.stream_stream_rpc_method_handler)
        if inspect.iscoroutinefunction(stream):
            # A handler that writes with context.write() (grpc's health Watch) rather
            # than yielding: it stays a coroutine.
            async def writing_behavior(request: Any, context: Any) -> None:
                call = _Call(method, context, streaming=True)
                call.begin()
                with tracing.server_span(method, call.carrier, {"rpc.method": method}):
                    try:
                        await stream(request, context)
                    except BaseException as exc:
                        call.end(exc)
                        raise
                call.end(None)

            return make(writing_behavior, handler.request_deserializer,
                        handler.response_serializer)

        async def stream_behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            call = _Call(method, context, streaming=True)
            call.begin()
            with tracing.server_span(method, call.carrier, {"rpc.method": method}):
                try:
                    first = True
                    async for item in stream(request, context):
                        if first:
                            first = False
                            await _tell_org(context)
                        yield item
                except BaseException as exc:
                    call.end(exc)
                    raise
            call.end(None)

        return make(stream_behavior, handler.request_deserializer, handler.response_serializer)
