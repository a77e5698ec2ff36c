"""The auth interceptor: `authorization: Bearer <key>` on every switchboard.v1 call.

It authenticates before the handler runs and hands the `Principal` to the handler through
a context variable (the handler runs in the same task as the wrapper). Health checking and
reflection stay open so load balancers and ghz can use them without a key.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import grpc

from core import clientaddr
from core.clientaddr import Network
from core.domain import Principal
from core.errors import Code, Reason, SwitchboardError
from core.grpcapi.errors import to_status
from core.keys import Authenticator, parse_bearer

log = logging.getLogger("switchboard.grpc")

_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def current_principal() -> Principal:
    return _PRINCIPAL.get()


def _metadata_value(metadata: Any, key: str) -> str | None:
    for item in metadata or ():
        k, v = item[0], item[1]
        if k == key:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None


async def _internal(context: Any, method: str, exc: Exception) -> None:
    """A bug escaped a handler: log it with its stack trace, tell the client only
    INTERNAL (grpc would otherwise send the exception's type and message). Aborts, which
    handlers raise on purpose, pass through."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    log.error("%s failed", method, exc_info=exc)
    await context.abort_with_status(to_status(SwitchboardError(
        Code.INTERNAL, Reason.INTERNAL, "Internal error."
    )))


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator,
                 trusted_proxies: Sequence[Network] = ()) -> None:
        self._auth = authenticator
        self._trusted = (*clientaddr.networks(clientaddr.LOOPBACK), *trusted_proxies)

    async def _principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        metadata = context.invocation_metadata()
        header = _metadata_value(metadata, "authorization")
        try:
            principal = await self._auth.authenticate(parse_bearer(header))
        except SwitchboardError as exc:
            await context.abort_with_status(to_status(exc))
            raise  # unreachable: abort raises
        peer = clientaddr.grpc_peer_address(context.peer() or "")
        client = peer
        if clientaddr.trusted(peer, self._trusted):
            client = _metadata_value(metadata, clientaddr.CLIENT_METADATA) or peer
        return replace(principal, client=client[:64])

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        for kind, streaming, make_handler in _HANDLER_KINDS:
            inner = getattr(handler, kind)
            if inner:
                return make_handler(  # type: ignore[no-any-return]
                    _guarded(inner, streaming, self._principal, method),
                    handler.request_deserializer, handler.response_serializer,
                )
        return handler


# The four gRPC handler shapes: (attribute, responds with a stream, handler constructor).
_HANDLER_KINDS = (
    ("unary_unary", False, grpc.unary_unary_rpc_method_handler),
    ("unary_stream", True, grpc.unary_stream_rpc_method_handler),
    ("stream_unary", False, grpc.stream_unary_rpc_method_handler),
    ("stream_stream", True, grpc.stream_stream_rpc_method_handler),
)


def _guarded(
    inner: Callable[..., Any],
    streaming: bool,
    principal_of: Callable[[Any], Awaitable[Principal]],
    method: str,
) -> Callable[..., Any]:
    """The one wrapper of every handler: authenticate, hand the principal over, and turn
    an escaped bug into INTERNAL. A streaming response needs an async generator, a unary
    one a coroutine; the request side (one message or a stream) passes through as is."""
    if streaming:
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            _PRINCIPAL.set(await principal_of(context))
            try:
                async for item in inner(request, context):
                    yield item
            except Exception as exc:
                await _internal(context, method, exc)

        return stream

    async def unary(request: Any, context: Any) -> Any:
        _PRINCIPAL.set(await principal_of(context))
        try:
            return await inner(request, context)
        except Exception as exc:
            await _internal(context, method, exc)

    return unary
