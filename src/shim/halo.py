"""The Halo SDK dialect: `POST /api/sdk/chat` and `POST /api/sdk/chat/stream`, plus the
reliability extensions `POST /api/sdk/chat/stop` and `GET /api/sdk/chat/stream/resume`,
and the widget's `GET /api/sdk/chat/history` (in `shim.halo_history`).

Parsing and rendering live in `shim.halo_wire`, the error envelope in `shim.halo_errors`,
the OpenAPI description in `shim.halo_openapi`; this module holds the handlers. Every
rule (key, origin, identity, limits, routing) is the core's; see docs/halo.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import HttpVersion11, web

from core.ids import canonical_conversation_id
from shim import cors, halo_listen, openapi
from shim.common import (
    BadRequest,
    CoreCallError,
    TurnStream,
    read_json_object,
    run_chat,
    stop_turn,
    stream_chat,
)
from shim.core_client import CoreError, header_text
from shim.halo_errors import error_body, error_response
from shim.halo_history import HISTORY_PATH, history
from shim.halo_openapi import COMPONENTS, PATHS
from shim.halo_wire import (
    DIALECT,
    action_json,
    action_record,
    actions_record,
    error_record,
    parse_turn,
    reply_json,
    session_id,
    stream_text,
)
from shim.headers import idempotency_key, origin
from shim.resume import resume_stream
from switchboard.v1 import chat_pb2, events_pb2

log = logging.getLogger("switchboard.shim.halo")

CHAT_PATH = "/api/sdk/chat"
STREAM_PATH = "/api/sdk/chat/stream"
STOP_PATH = "/api/sdk/chat/stop"
RESUME_PATH = "/api/sdk/chat/stream/resume"
# Retry-After is not CORS-safelisted: without it a page cannot honour a 429's delay.
EXPOSED_HEADERS = ("X-Session-Id", "X-Agent-Id", "Retry-After")
# How often a silent stream checks that its client is still connected.
DISCONNECT_POLL_S = 0.25


async def _turn_input(request: web.Request) -> chat_pb2.TurnInput:
    """The request as a TurnInput; raises BadRequest."""
    body = await read_json_object(request, large=True)
    metadata = {"user_agent": header_text(request, "User-Agent")[:256]}
    if request.remote:
        metadata["client_ip"] = request.remote
    return parse_turn(
        body,
        origin=origin(request),
        idempotency_key=idempotency_key(request),
        metadata=metadata,
    )


async def chat(request: web.Request) -> web.Response:
    """`POST /api/sdk/chat`: one turn, answered as one JSON object."""
    try:
        turn = await _turn_input(request)
        reply = await run_chat(request, turn)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except CoreCallError as exc:
        return error_response(exc.error)
    return web.json_response(reply_json(reply))


async def chat_stream(request: web.Request) -> web.StreamResponse:
    """`POST /api/sdk/chat/stream`: chunked text/plain, action records framed by \\x1E.

    Errors before the first event get their real status and the JSON envelope; once the
    headers went out, a failure is one `error` action record and the body is cut short
    (no final `__ACTIONS__` record, no chunked terminator) so clients see it failed."""
    try:
        turn = await _turn_input(request)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    stream = stream_chat(request, turn)
    try:
        first = await stream.first()
    except CoreCallError as exc:
        stream.close()
        return error_response(exc.error)
    return await _serve_stream(request, stream, first)


async def _serve_stream(request: web.Request, stream: TurnStream, first: events_pb2.ChatEvent,
                        skip: int = 0) -> web.StreamResponse:
    """Write a turn's Halo byte stream (its events after `first`, the TurnStarted), leaving
    out its first `skip` bytes: the original stream and its resumption by byte offset
    render through this one path, so they are the same bytes."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            # Reverse proxies (nginx) must not buffer a progressive answer.
            "X-Accel-Buffering": "no",
            "X-Session-Id": session_id(first.turn_started.conversation_id
                                       or first.conversation_id),
            "X-Agent-Id": first.turn_started.agent_id,
        },
    )
    if request.version >= HttpVersion11:
        response.enable_chunked_encoding()
    # HTTP/1.0 (nginx's default upstream protocol) has no chunked encoding: the body is
    # delimited by closing the connection, which aiohttp does for a response without a
    # length on a 1.0 request.
    writer = _Writer(response, skip)
    watch = _DisconnectWatch(request, stream)
    try:
        await response.prepare(request)
        watch.start()
        await _relay(stream, writer, watch)
        await response.write_eof()
    except ConnectionResetError:
        # The client went away: closing the call (finally) detaches it from the turn, and
        # the core cancels the turn after its reattach grace and stores it as cancelled.
        log.info("halo stream: client disconnected")
    except _StreamFailed as failed:
        await _cut_short(request, writer, failed.error)
    finally:
        stream.close()
        await watch.stop()
    return response


class _Writer:
    """Writes the stream's text, leaving out its first `skip` bytes (UTF-8 bytes of the
    body, so an offset may fall inside a character or a record and stitching stays exact).
    Never writes an empty chunk: with chunked encoding that would end the body."""

    def __init__(self, response: web.StreamResponse, skip: int = 0) -> None:
        self._response = response
        self._skip = skip
        self._held: list[bytes] | None = None

    def hold(self) -> None:
        """Collect writes until `flush()` (a batch of events becomes one chunk)."""
        if self._held is None:
            self._held = []

    async def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            await self._response.write(b"".join(held))

    async def write_record(self, text: str) -> None:
        """An action record starts a chunk of its own (after any text held before it),
        so clients that look for records at chunk starts still find them."""
        holding = self._held is not None
        await self.flush()
        await self.write(text)
        if holding:
            self.hold()

    async def write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._skip:
            if self._skip >= len(data):
                self._skip -= len(data)
                return
            data, self._skip = data[self._skip:], 0
        if not data:
            return
        if self._held is not None:
            self._held.append(data)
        else:
            await self._response.write(data)


class _DisconnectWatch:
    """Notices a client that went away while nothing is being written (a long tool call,
    a slow model) and closes the turn stream then, instead of at the next write."""

    def __init__(self, request: web.Request, stream: TurnStream) -> None:
        self._request = request
        self._stream = stream
        self._timer: asyncio.TimerHandle | None = None
        self.disconnected = False

    def start(self) -> None:
        self._check()

    def _check(self) -> None:
        # aiohttp has no "connection lost" callback for handlers that are not cancelled
        # on disconnect (its default), so poll the transport: a timer, not a task, per
        # stream.
        transport = self._request.transport
        if transport is None or transport.is_closing():
            self._timer = None
            self.disconnected = True
            self._stream.close()
            return
        self._timer = asyncio.get_running_loop().call_later(DISCONNECT_POLL_S, self._check)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _StreamFailed(Exception):
    def __init__(self, error: CoreError) -> None:
        super().__init__(error.message)
        self.error = error


async def _relay(stream: TurnStream, writer: _Writer, watch: _DisconnectWatch) -> None:
    """Write the events after TurnStarted; returns after the final record. Raises
    ConnectionResetError when the client went away, _StreamFailed when the turn failed."""
    try:
        await _relay_events(stream, writer)
    except asyncio.CancelledError:
        # grpc.aio raises CancelledError from a call the watch cancelled; a cancellation
        # of this handler itself (server shutdown) must propagate.
        task = asyncio.current_task()
        if not watch.disconnected or (task is not None and task.cancelling()):
            raise
        raise ConnectionResetError("client disconnected") from None
    except _StreamFailed:
        if watch.disconnected:
            raise ConnectionResetError("client disconnected") from None
        raise


async def _relay_events(stream: TurnStream, writer: _Writer) -> None:
    actions: list[dict[str, Any]] = []
    try:
        # The text of every event already received goes out as one chunk (a reader that
        # fell behind catches up in one write); the bytes are the same as event by event.
        while (batch := await stream.batch()) is not None:
            writer.hold()
            try:
                for event in batch:
                    kind = event.WhichOneof("kind")
                    if kind == "text_delta":
                        if event.text_delta.text:
                            await writer.write(stream_text(event.text_delta.text))
                    elif kind == "action":
                        actions.append(action_json(event.action))
                        await writer.write_record(action_record(event.action))
                    elif kind == "error":
                        raise _StreamFailed(_stream_error(event.error))
                    elif kind in ("completed", "interrupt"):
                        if kind == "completed":
                            # The completed event carries the authoritative list.
                            actions = [action_json(a) for a in event.completed.actions]
                        await writer.write_record(actions_record(actions))
                        return
            finally:
                await writer.flush()
    except CoreCallError as exc:
        raise _StreamFailed(exc.error) from None
    # The core ended the stream without a terminal event: report it as a failure.
    raise _StreamFailed(CoreError("INTERNAL", "internal", "The stream ended unexpectedly."))


def _stream_error(error: events_pb2.StreamError) -> CoreError:
    return CoreError(error.code, error.reason, error.message)


async def _cut_short(request: web.Request, writer: _Writer, error: CoreError) -> None:
    body = error_body(error)["error"]
    log.warning("halo stream failed after headers: %s %s", error.code, error.reason)
    with contextlib.suppress(ConnectionResetError):
        await writer.write(error_record(body["code"], body["message"]))
    # Closing the connection without the chunked terminator makes the client's reader
    # fail instead of reporting a complete, truncated answer.
    if request.transport is not None:
        request.transport.close()


def _session_param(value: Any, name: str = "session_id") -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} is required.", field=name)
    return value


async def stop(request: web.Request) -> web.Response:
    """`POST /api/sdk/chat/stop` `{"session_id"}`: stop the session's running turn. Answers
    once the turn is stored (with its partial text); its stream then ends as usual, with
    the final `__ACTIONS__` record."""
    try:
        body = await read_json_object(request)
        session = _session_param(body.get("session_id"))
        user_id, user_token = _identity(body)
        reply = await stop_turn(request, session, DIALECT, user_id, user_token)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except CoreCallError as exc:
        return error_response(exc.error)
    return web.json_response({
        "stopped": reply.stopped,
        "session_id": session_id(canonical_conversation_id(session) or session),
    })


def _identity(fields: dict[str, Any]) -> tuple[str, str]:
    """`user_id` and `user_token` of a stop body or resume query: a verified user's
    session is only theirs, so its stop and resume prove the same identity as its sends."""
    found = []
    for name in ("user_id", "user_token"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{name} must be a string.", field=name)
        found.append(value or "")
    return found[0], found[1]


def _offset(raw: str | None) -> int:
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest("offset must be a non-negative integer (bytes of the stream body "
                         "already received).", field="offset")
    return int(raw)


async def resume(request: web.Request) -> web.StreamResponse:
    """`GET /api/sdk/chat/stream/resume?session_id=chat_...&offset=N`: the session's latest
    turn as `/api/sdk/chat/stream` rendered it, without its first N bytes, following the
    turn live while it runs."""
    try:
        session = _session_param(request.query.get("session_id"))
        skip = _offset(request.query.get("offset"))
        user_id, user_token = _identity(dict(request.query))
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    stream = resume_stream(request, session, None, DIALECT, user_id, user_token)
    try:
        first = await stream.first_or_none()
    except CoreCallError as exc:
        stream.close()
        return error_response(exc.error)
    if first is None:
        stream.close()
        return error_response(CoreError("NOT_FOUND", "conversation_not_found",
                                        "This session has no turn to resume."))
    if first.HasField("error"):
        # Only an error stored without its turn's events: a turn a crash cut short
        # (`turn_incomplete`). Said as such, never as a complete (empty) answer.
        stream.close()
        return error_response(_stream_error(first.error))
    return await _serve_stream(request, stream, first, skip)


def setup(app: web.Application) -> None:
    app.router.add_post(CHAT_PATH, chat)
    app.router.add_post(STREAM_PATH, chat_stream)
    app.router.add_post(STOP_PATH, stop)
    app.router.add_get(RESUME_PATH, resume)
    app.router.add_get(HISTORY_PATH, history)
    halo_listen.setup(app)
    for path in (CHAT_PATH, STREAM_PATH, STOP_PATH):
        cors.allow(app, path, expose=EXPOSED_HEADERS)
    cors.allow(app, RESUME_PATH, methods=("GET",), expose=EXPOSED_HEADERS)
    cors.allow(app, HISTORY_PATH, methods=("GET",), expose=EXPOSED_HEADERS)
    cors.allow(app, halo_listen.LISTEN_PATH, methods=("GET",), expose=EXPOSED_HEADERS)
    openapi.add_paths(app, PATHS, COMPONENTS)


__all__ = ["CHAT_PATH", "RESUME_PATH", "STOP_PATH", "STREAM_PATH", "chat", "chat_stream",
           "resume", "setup", "stop"]
