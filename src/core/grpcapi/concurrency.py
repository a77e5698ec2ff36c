"""The core's bound on concurrent RPCs, refused with a reason the dialects understand.

grpc.aio's own `maximum_concurrent_rpcs` refuses the excess with a bare
RESOURCE_EXHAUSTED (no ErrorInfo, so a dialect cannot tell it from an oversized message),
and below it gRPC core silently cancels calls once more than
`grpc.server.max_pending_requests` (1,000 by default) wait to be picked up: a burst of
2,000 streams saw 5-10 % end with a bare CANCELLED and no log line. So the server lets
`MAX_CONCURRENT_RPCS` calls queue in gRPC core and this interceptor refuses calls beyond
the bound with RESOURCE_EXHAUSTED `concurrency_limited` and a retry delay (HTTP 429),
logging the refusals (once per second at most). Health checks and reflection are never
refused: a load balancer must still see the core while it is busy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc

from core.errors import Code, Reason, SwitchboardError
from core.grpcapi.errors import to_status

log = logging.getLogger("switchboard.grpc")

OPEN_PREFIXES: Final = ("/grpc.health.v1.", "/grpc.reflection.")
RETRY_AFTER_S: Final = 1.0
_LOG_EVERY_S: Final = 1.0


class ConcurrencyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self.refused = 0
        self._logged_at = 0.0

    def _refusal(self) -> SwitchboardError:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            self._logged_at = now
            log.warning("refusing RPCs: %d running (limit %d); %d refused so far",
                        self.active, self.limit, self.refused)
        return SwitchboardError(
            Code.RESOURCE_EXHAUSTED, Reason.CONCURRENCY_LIMITED,
            f"The server is at its limit of {self.limit} concurrent calls; retry shortly.",
            retry_after_s=RETRY_AFTER_S,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        gate = self

        async def admit(context: Any) -> None:
            if gate.active >= gate.limit:
                await context.abort_with_status(to_status(gate._refusal()))
            gate.active += 1

        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                await admit(context)
                try:
                    return await inner_uu(request, context)
                finally:
                    gate.active -= 1

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                await admit(context)
                try:
                    async for item in inner_us(request, context):
                        yield item
                finally:
                    gate.active -= 1

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream:
            inner_ss = handler.stream_stream

            async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
                await admit(context)
                try:
                    async for item in inner_ss(requests, context):
                        yield item
                finally:
                    gate.active -= 1

            return grpc.stream_stream_rpc_method_handler(
                stream_stream, handler.request_deserializer, handler.response_serializer)
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: Any) -> Any:
            await admit(context)
            try:
                return await inner_su(requests, context)
            finally:
                gate.active -= 1

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer)
