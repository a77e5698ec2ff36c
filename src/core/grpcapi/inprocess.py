"""An in-process channel to the core's own handlers, for a shim in the same process.

The shim talks to the core through generated gRPC stubs. When both run in one process
(`switchboard serve` without `--role`), every call would still be serialised, framed as
HTTP/2 over loopback and parsed again, twice per streamed delta. `InProcessChannel` is
what grpc-gateway's `Register…HandlerServer` is for Go: the same stubs, built on this
channel, call the server's method handlers directly with protobuf messages.

What stays as over the network:

- the core's interceptors (authentication, the INTERNAL guard) run on every call, with
  the caller's metadata as the invocation metadata;
- every call runs in its own task with a fresh `contextvars` context, like a grpc.aio
  server's RPC task, so nothing set by the handler leaks to the caller or back;
- failures reach the caller as `grpc.aio.AioRpcError` carrying the status the handler
  aborted with (code, message, and the `grpc-status-details-bin` trailer holding
  ErrorInfo / RetryInfo), so `rpc_status.from_call` and the shim's decoding are unchanged;
  an exception that escapes a handler is `UNKNOWN`, as grpc.aio reports it;
- cancelling the call (or the task awaiting it) cancels the handler's task;
- a stream's handler runs ahead of its reader by at most `MAX_BUFFERED_MESSAGES`
  (gRPC's flow control bounds it the same way), so a slow client holds back the turn's
  relay, not memory.

What differs, on purpose: messages are passed by reference, not copied. Neither side
mutates a message after handing it over (the servicers build fresh responses; the shim
builds a fresh request per call). Only unary-unary and unary-stream methods are
supported: they are all the shim calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import grpc

from core import clientaddr

# How many messages a stream's handler may produce before its reader takes them.
MAX_BUFFERED_MESSAGES: Final = 64

Metadata = Sequence[tuple[str, str | bytes]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class _CallDetails(grpc.HandlerCallDetails):  # type: ignore[misc]
    __slots__ = ("invocation_metadata", "method")

    def __init__(self, method: str, invocation_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.method = method
        self.invocation_metadata = invocation_metadata


class HandlerRegistry:
    """The method handlers of one server, as the generated `add_…_to_server` functions
    register them. `recording(server)` stands in for the grpc.aio server while services
    are added: it records each handler and passes it on to the real server."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
                 max_concurrent_rpcs: int | None = None) -> None:
        self._methods: dict[str, grpc.RpcMethodHandler] = {}
        self._generic: list[grpc.GenericRpcHandler] = []
        self._interceptors = tuple(interceptors)
        # The server's cap, counted separately for in-process calls.
        self._max_active = max_concurrent_rpcs
        self.active = 0
        self.closed = False

    def close(self) -> None:
        """The server is stopping: new calls fail UNAVAILABLE, as they would over the
        network (calls already running go on, as the server's grace allows)."""
        self.closed = True

    def admit(self) -> None:
        """Count a call in; raises RESOURCE_EXHAUSTED past the cap, as grpc's server does,
        and UNAVAILABLE once the server stopped."""
        if self.closed:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "The core is not serving.")
        if self._max_active is not None and self.active >= self._max_active:
            raise rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!")
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    def recording(self, server: grpc.aio.Server) -> _RecordingServer:
        return _RecordingServer(server, self)

    def add_registered(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        for name, handler in handlers.items():
            self._methods[f"/{service}/{name}"] = handler

    def add_generic(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    async def _lookup(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._methods.get(details.method)
        if handler is not None:
            return handler
        for generic in self._generic:
            found = generic.service(details)
            if found is not None:
                return found
        return None

    async def resolve(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The handler for a call after every interceptor, in the server's order."""
        continuation: Continuation = self._lookup
        for interceptor in reversed(self._interceptors):
            continuation = _chain(interceptor, continuation)
        return await continuation(details)


def _chain(interceptor: grpc.aio.ServerInterceptor, inner: Continuation) -> Continuation:
    async def call(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return await interceptor.intercept_service(inner, details)  # type: ignore[no-any-return]

    return call


class _RecordingServer:
    def __init__(self, server: grpc.aio.Server, registry: HandlerRegistry) -> None:
        self._server = server
        self._registry = registry

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._registry.add_generic(handlers)
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._registry.add_registered(service, handlers)
        self._server.add_registered_method_handlers(service, handlers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


# -- the server side of a call --------------------------------------------------------------


def rpc_error(code: grpc.StatusCode, details: str,
              trailing: Iterable[tuple[str, Any]] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details,
        "in-process call",
    )


class _Context:
    """The `grpc.aio.ServicerContext` a handler receives (the parts handlers use)."""

    def __init__(self, metadata: tuple[tuple[str, Any], ...], deadline: float | None,
                 write: Callable[[Any], Awaitable[None]] | None = None) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._write = write
        self._code: grpc.StatusCode = grpc.StatusCode.OK
        self._details = ""
        self._trailing: tuple[tuple[str, Any], ...] = ()
        self._aborted = False
        self._cancelled = False

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Iterable[tuple[str, Any]] = ()) -> None:
        if self._aborted:
            raise grpc.aio.UsageError("Abort was already called!")
        self._aborted = True
        self._code = code
        self._details = details
        self._trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Iterable[tuple[str, Any]]) -> None:
        self._trailing = tuple(trailing_metadata)

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        return None

    def peer(self) -> str:
        return clientaddr.IN_PROCESS_PEER

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def cancelled(self) -> bool:
        return self._cancelled

    def set_compression(self, compression: Any) -> None:
        return None

    def disable_next_message_compression(self) -> None:
        return None

    async def write(self, message: Any) -> None:
        if self._write is None:
            raise grpc.aio.UsageError("write() is for response-streaming methods")
        await self._write(message)

    def failure(self) -> grpc.aio.AioRpcError | None:
        """The status the handler ended with, as the caller sees it (None for OK)."""
        if self._code == grpc.StatusCode.OK:
            return None
        return rpc_error(self._code, self._details, self._trailing)


def _unexpected(exc: Exception) -> grpc.aio.AioRpcError:
    # What grpc.aio's server sends for an exception a handler let escape.
    return rpc_error(grpc.StatusCode.UNKNOWN, f"Unexpected {type(exc)}: {exc}")


def _unimplemented() -> grpc.aio.AioRpcError:
    return rpc_error(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


def _metadata(metadata: Metadata | None) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in metadata or ())


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


# -- the client side ------------------------------------------------------------------------


class UnaryUnaryCall:
    """Awaitable like grpc.aio's call; the handler runs in its own task from the start."""

    def __init__(self, registry: HandlerRegistry, method: str, request: Any,
                 metadata: Metadata | None, timeout: float | None) -> None:
        self._context = _Context(_metadata(metadata), _deadline(timeout))
        run = self._run(registry, _CallDetails(method, self._context.invocation_metadata()),
                        request, timeout)
        self._task = asyncio.get_running_loop().create_task(run, context=contextvars.Context())
        # A call nobody awaits (its caller was cancelled first) is not an unretrieved
        # exception to log, as with grpc.aio.
        self._task.add_done_callback(_retrieve)

    async def _run(self, registry: HandlerRegistry, details: _CallDetails, request: Any,
                   timeout_s: float | None) -> Any:
        ctx = self._context
        registry.admit()
        try:
            async with asyncio.timeout(timeout_s):
                handler = await registry.resolve(details)
                if handler is None or handler.unary_unary is None:
                    raise _unimplemented()
                response = await handler.unary_unary(request, ctx)
        except grpc.aio.AbortError:
            response = None
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except grpc.aio.AioRpcError:
            raise
        except Exception as exc:
            raise _unexpected(exc) from None
        finally:
            registry.release()
        failure = ctx.failure()
        if failure is not None:
            raise failure
        if response is None:
            raise rpc_error(grpc.StatusCode.INTERNAL, "Failed to serialize response!")
        return response

    def __await__(self) -> Any:
        # Awaiting the task directly: cancelling the awaiting task cancels the handler's.
        return self._task.__await__()

    def cancel(self) -> bool:
        self._context._cancelled = True
        return self._task.cancel()

    def done(self) -> bool:
        return self._task.done()


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class UnaryStreamCall:
    """A response stream. Besides grpc.aio's `async for`/`read()`/`cancel()`, the reader
    can take every message already produced at once (`take_ready`) and wait for more
    without a task per message (`ready`), which lets the SSE relay write a burst of
    deltas in one write."""

    def __init__(self, registry: HandlerRegistry, method: str, request: Any,
                 metadata: Metadata | None, timeout: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._buffer: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the reader, waiting for data
        self._space: asyncio.Future[None] | None = None  # the handler, waiting for room
        self._finished = False
        self._locally_cancelled = False
        self._error: grpc.aio.AioRpcError | None = None
        self._context = _Context(_metadata(metadata), _deadline(timeout), self._push)
        run = self._run(registry, _CallDetails(method, self._context.invocation_metadata()),
                        request, timeout)
        self._task = self._loop.create_task(run, context=contextvars.Context())
        # Not in `_run`'s finally: a task cancelled before it started never runs it.
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._finished = True
        self._wake()

    # the handler's side

    async def _push(self, message: Any) -> None:
        self._buffer.append(message)
        self._wake()
        if len(self._buffer) >= MAX_BUFFERED_MESSAGES:
            self._space = self._loop.create_future()
            await self._space

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _run(self, registry: HandlerRegistry, details: _CallDetails, request: Any,
                   timeout_s: float | None) -> None:
        ctx = self._context
        produced: Any = None
        try:
            registry.admit()
        except grpc.aio.AioRpcError as exc:
            self._error = exc
            return
        try:
            async with asyncio.timeout(timeout_s):
                handler = await registry.resolve(details)
                if handler is None or handler.unary_stream is None:
                    raise _unimplemented()
                produced = handler.unary_stream(request, ctx)
                if hasattr(produced, "__aiter__"):
                    async for message in produced:
                        await self._push(message)
                else:
                    await produced  # a handler that writes with context.write()
            self._error = ctx.failure()
        except grpc.aio.AbortError:
            self._error = ctx.failure()
        except asyncio.CancelledError:
            if not self._locally_cancelled:
                self._error = rpc_error(grpc.StatusCode.CANCELLED, "Cancelled")
        except TimeoutError:
            self._error = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        except grpc.aio.AioRpcError as exc:
            self._error = exc
        except Exception as exc:
            self._error = _unexpected(exc)
        finally:
            if hasattr(produced, "aclose"):
                # Run the handler's `finally` blocks now (slots, follower counts), not
                # whenever the abandoned generator is collected.
                try:
                    await produced.aclose()
                except Exception as exc:
                    self._error = self._error or _unexpected(exc)
            registry.release()

    # the reader's side

    def take_ready(self) -> list[Any]:
        """Every message produced and not yet read (possibly none), without waiting."""
        if not self._buffer:
            return []
        items = list(self._buffer)
        self._buffer.clear()
        self._release()
        return items

    def _release(self) -> None:
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)

    def ready(self) -> asyncio.Future[None]:
        """Resolved once a message is buffered or the call ended. Anyone may resolve it
        early (a heartbeat timer wakes its reader this way): it only signals "look again"."""
        if self._buffer or self._finished:
            done = self._loop.create_future()
            done.set_result(None)
            return done
        if self._waiter is None or self._waiter.done():
            self._waiter = self._loop.create_future()
        return self._waiter

    @property
    def finished(self) -> bool:
        """True once the handler ended and every message was read."""
        return self._finished and not self._buffer

    def raise_for_status(self) -> None:
        """At the end of the stream: raise as grpc.aio does (CancelledError when this side
        cancelled, AioRpcError when the call failed)."""
        if self._locally_cancelled:
            raise asyncio.CancelledError()
        if self._error is not None:
            raise self._error

    async def read(self) -> Any:
        while True:
            if self._locally_cancelled:
                raise asyncio.CancelledError()
            if self._buffer:
                item = self._buffer.popleft()
                self._release()
                return item
            if self._finished:
                self.raise_for_status()
                return grpc.aio.EOF
            await self.ready()

    def __aiter__(self) -> UnaryStreamCall:
        return self

    async def __anext__(self) -> Any:
        item = await self.read()
        if item is grpc.aio.EOF:
            raise StopAsyncIteration
        return item

    def cancel(self) -> bool:
        if self._finished or self._locally_cancelled:
            return False
        self._locally_cancelled = True
        self._context._cancelled = True
        self._buffer.clear()
        self._release()
        self._task.cancel()
        self._wake()
        return True

    def done(self) -> bool:
        return self._finished

    def code(self) -> grpc.StatusCode | None:
        if not self._finished:
            return None
        if self._locally_cancelled:
            return grpc.StatusCode.CANCELLED
        return grpc.StatusCode.OK if self._error is None else self._error.code()


class _UnaryUnary:
    def __init__(self, registry: HandlerRegistry, method: str) -> None:
        self._registry = registry
        self._method = method

    def __call__(self, request: Any, *, timeout: float | None = None,
                 metadata: Metadata | None = None, **_: Any) -> UnaryUnaryCall:
        return UnaryUnaryCall(self._registry, self._method, request, metadata, timeout)


class _UnaryStream(_UnaryUnary):
    def __call__(self, request: Any, *, timeout: float | None = None,  # type: ignore[override]
                 metadata: Metadata | None = None, **_: Any) -> UnaryStreamCall:
        return UnaryStreamCall(self._registry, self._method, request, metadata, timeout)


class _Unsupported:
    def __init__(self, method: str) -> None:
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{self._method}: client-streaming calls are not "
                                  "supported in process")


class InProcessChannel:
    """Enough of `grpc.aio.Channel` for generated stubs; calls go to `registry`."""

    def __init__(self, registry: HandlerRegistry) -> None:
        self._registry = registry

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _UnaryUnary:
        return _UnaryUnary(self._registry, method)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _UnaryStream:
        return _UnaryStream(self._registry, method)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> _Unsupported:
        return _Unsupported(method)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> _Unsupported:
        return _Unsupported(method)

    async def close(self, grace: float | None = None) -> None:
        return None

    async def __aenter__(self) -> InProcessChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
