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
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from shim.common import CoreCallError, TurnStream, Wake
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
        self.last_seq = 0  # of the last event handed to the dialect's render
        self._held: list[bytes] | None = None

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

    def hold(self) -> None:
        """Collect writes until `flush()` (a batch of events becomes one write)."""
        if self._held is None:
            self._held = []

    async def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            await self._write(b"".join(held))

    async def _write(self, data: bytes) -> None:
        if self._held is not None:
            self._held.append(data)
            return
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


class Heartbeat(Wake):
    """The idle heartbeat and disconnect check of one stream, on one timer.

    The timer is armed once and re-armed only when it fires (every `DISCONNECT_POLL_S`
    at most), never per event: an event only records the time (`touch`). When it fires
    and the stream has been idle for the interval, or the client is gone, it wakes the
    reader waiting in `TurnStream.batch`."""

    def __init__(self, request: web.Request, interval_s: float) -> None:
        self._request = request
        self._interval = interval_s
        self._loop = asyncio.get_running_loop()
        self.last = self._loop.time()
        self.idle = False
        self.gone = False
        self._handle = self._loop.call_at(self._next(self.last), self._fire)

    def _next(self, now: float) -> float:
        return min(self.last + self._interval, now + DISCONNECT_POLL_S)

    def touch(self) -> None:
        """Events went out: the stream is not idle (a heartbeat due is dropped)."""
        self.last = self._loop.time()
        if not self.gone:
            self.pending = self.idle = False

    def _fire(self) -> None:
        now = self._loop.time()
        if client_gone(self._request):
            self.gone = True
            self.wake()
            return
        if now - self.last >= self._interval:
            self.last = now
            self.idle = True
            self.wake()
        self._handle = self._loop.call_at(self._next(now), self._fire)

    def take(self) -> None:
        """The reader handled what woke it."""
        self.pending = self.idle = False

    def cancel(self) -> None:
        self._handle.cancel()


async def _relay_batches(call: TurnStream, stream: EventStream, render: Render,
                         heartbeat: Heartbeat) -> None:
    """Relay until an event ends the stream. Every event already received is rendered
    into one write: a client that fell behind gets the backlog in one go."""
    while True:
        batch = await call.batch(heartbeat)
        if batch is None:
            return
        if not batch:
            if heartbeat.gone:
                raise ClientGone()
            heartbeat.take()
            await stream.ping()
            continue
        heartbeat.touch()
        stream.hold()
        try:
            for item in batch:
                stream.last_seq = item.seq
                if await render(stream, item):
                    return
        finally:
            await stream.flush()


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
    stream.last_seq = first.seq
    try:
        if not await render(stream, first):
            heartbeat = Heartbeat(request, heartbeat_interval(request.app))
            try:
                await _relay_batches(call, stream, render, heartbeat)
            except CoreCallError as exc:
                await render_error(stream, exc.error, stream.last_seq)
            finally:
                heartbeat.cancel()
        await stream.close()
    except ClientGone:
        log.info("%s %s: client left mid-stream", request.method, request.path)
    finally:
        call.close()
    return stream.response
