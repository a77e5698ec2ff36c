"""Server-Sent Events for the SSE dialects (slug, aibot): framing, headers, idle heartbeat,
client-disconnect detection.

Every event a dialect writes carries `id: <seq>`, the core's sequence number of the event
it renders, so a later `Last-Event-ID` reconnect can hand that number to the core's
`ResumeStream` as `after_seq` and reuse this module unchanged. A comment line (`: ping`)
is written when the stream has been idle for the heartbeat interval, so proxies and load
balancers do not close a stream that waits on a slow model (and so a vanished client is
noticed even while nothing else is written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Final, TypeVar

from aiohttp import web

from shim.common import CoreCallError, TurnStream
from shim.core_client import CoreError
from switchboard.v1 import events_pb2

log = logging.getLogger("switchboard.shim")

DEFAULT_HEARTBEAT_S: Final = 15.0
# The heartbeat interval, per application (tests set a short one before the app starts).
HEARTBEAT_S = web.AppKey("sse_heartbeat_s", float)
# How often an idle stream checks that its client is still connected.
DISCONNECT_POLL_S: Final = 0.5

SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "Connection": "keep-alive",
}

T = TypeVar("T")


class Idle:
    """Yielded by `with_heartbeats` when the stream has been idle for the interval."""

    __slots__ = ()


IDLE: Final = Idle()


class ClientGone(Exception):
    """The client closed the connection; the dialect stops relaying (and closing its core
    stream cancels the turn once the detach grace period is over)."""


def frame(data: str, *, event_id: int | str | None = None, event: str | None = None) -> bytes:
    """One SSE event: optional `id:` and `event:` lines, one `data:` line per line of data,
    then a blank line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def comment(text: str = "ping") -> bytes:
    return f": {text}\n\n".encode()


def heartbeat_interval(app: web.Application) -> float:
    return app.get(HEARTBEAT_S, DEFAULT_HEARTBEAT_S)


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class EventStream:
    """An open `text/event-stream` response. Writes raise `ClientGone` once the client has
    left."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self.request = request
        self.response = response

    @classmethod
    async def open(
        cls, request: web.Request, headers: Mapping[str, str] | None = None
    ) -> EventStream:
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **(headers or {})})
        # No compression: it would buffer events until a block fills.
        try:
            await response.prepare(request)
        except ConnectionError as exc:
            raise ClientGone() from exc
        return cls(request, response)

    async def _write(self, data: bytes) -> None:
        if client_gone(self.request):
            raise ClientGone()
        try:
            await self.response.write(data)
        except ConnectionError as exc:
            raise ClientGone() from exc

    async def send(
        self, data: str, *, event_id: int | str | None = None, event: str | None = None
    ) -> None:
        await self._write(frame(data, event_id=event_id, event=event))

    async def ping(self) -> None:
        await self._write(comment("ping"))

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.response.write_eof()


async def with_heartbeats(
    request: web.Request, source: AsyncIterator[T], interval_s: float
) -> AsyncGenerator[T | Idle, None]:
    """The items of `source`, with `IDLE` whenever nothing came for `interval_s`.

    The pending read is never cancelled by a timeout (that would tear down the source);
    it is cancelled only when the consumer stops or the client is gone (`ClientGone`)."""
    iterator = aiter(source)
    pending: asyncio.Future[T] | None = None
    loop = asyncio.get_running_loop()
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
                idle_since = loop.time()
            wait = min(DISCONNECT_POLL_S, max(0.0, idle_since + interval_s - loop.time()))
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if done:
                task, pending = pending, None
                try:
                    item = task.result()
                except StopAsyncIteration:
                    return
                yield item
                continue
            if client_gone(request):
                raise ClientGone()
            if loop.time() - idle_since >= interval_s:
                idle_since = loop.time()
                yield IDLE
    finally:
        if pending is not None:
            if not pending.done():
                pending.cancel()
                await asyncio.wait({pending})  # unlike `await`, never raises its outcome
            if not pending.cancelled():
                pending.exception()  # retrieved, so it is not logged as never retrieved


# Writes one core event in the dialect's form; True when the event ends the stream.
Render = Callable[[EventStream, events_pb2.ChatEvent], Awaitable[bool]]
# Writes the dialect's error event for a failure of the core stream itself; the int is the
# last sequence number seen (the event's `id:`).
RenderError = Callable[[EventStream, CoreError, int], Awaitable[None]]


async def relay(
    request: web.Request,
    call: TurnStream,
    first: events_pb2.ChatEvent,
    render: Render,
    render_error: RenderError,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Open the event stream and relay a core stream (whose `first` event was already read,
    so errors before it got their real status) through `render`, with heartbeats, until
    an event ends it, the core stream fails (one error event) or the client leaves.
    Closing the core stream on the way out detaches this client from the turn."""
    try:
        stream = await EventStream.open(request, headers)
    except ClientGone:
        call.close()
        return web.Response(status=499)
    last_seq = first.seq
    try:
        if not await render(stream, first):
            try:
                async with contextlib.aclosing(
                    with_heartbeats(request, call.events(), heartbeat_interval(request.app))
                ) as items:
                    async for item in items:
                        if isinstance(item, Idle):
                            await stream.ping()
                            continue
                        last_seq = item.seq
                        if await render(stream, item):
                            break
            except CoreCallError as exc:
                await render_error(stream, exc.error, last_seq)
        await stream.close()
    except ClientGone:
        log.info("%s %s: client left mid-stream", request.method, request.path)
    finally:
        call.close()
    return stream.response
