"""What every dialect module shares: reading JSON bodies, calling the core, and turning
core errors into dialect envelopes without ever leaking a stack trace."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web

from core.keys import KEY_CACHE_TTL_S
from core.limits import MAX_REQUEST_BODY_BYTES, MAX_SMALL_BODY_BYTES
from shim import json_body
from shim.app import CORE
from shim.config import KEY_VERDICTS, LARGE_BODIES
from shim.core_client import (
    CoreError,
    RefusedCall,
    decode_error,
    forward_metadata,
    header_text,
    oversized,
)
from shim.observability import note_turn
from switchboard.v1 import chat_pb2, events_pb2

log = logging.getLogger("switchboard.shim")
MAX_KEY_VERDICTS = 10_000


class BadRequest(Exception):
    """The HTTP request itself is unusable (not JSON, wrong shape). Dialects render it
    with their 400 envelope; `reason` matches the core's reasons where one applies."""

    def __init__(self, message: str, reason: str = "invalid_argument",
                 field: str = "", error: CoreError | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field
        self.error = error

    @classmethod
    def of(cls, error: CoreError) -> BadRequest:
        """A core refusal met before the body was read (the key check), rendered by the
        dialect exactly as if the core had answered the call."""
        return cls(error.message, error.reason, error=error)

    def as_core_error(self) -> CoreError:
        if self.error is not None:
            return self.error
        metadata = {"field": self.field} if self.field else {}
        return CoreError("INVALID_ARGUMENT", self.reason, self.message, metadata)


TOO_LARGE = "The request body is too large."


async def check_key(request: web.Request) -> None:
    """Authenticate the caller from the Authorization header alone, before any body is
    read (no work before authentication). Valid keys are remembered for KEY_CACHE_TTL_S,
    the core's own bound on how long a revoked key may keep working; refusals are not,
    so a client cannot make the shim believe anything. Raises BadRequest carrying the
    core's UNAUTHENTICATED error."""
    header = request.headers.get("Authorization", "")
    verdicts: dict[str, float] = request.app[KEY_VERDICTS]
    now = time.monotonic()
    seen = verdicts.get(header)
    if seen is not None and now - seen < KEY_CACHE_TTL_S:
        return
    try:
        await request.app[CORE].chat.CheckKey(chat_pb2.CheckKeyRequest(),
                                             metadata=call_metadata(request))
    except grpc.aio.AioRpcError as exc:
        raise BadRequest.of(decode_error(exc)) from None
    if len(verdicts) > MAX_KEY_VERDICTS:
        verdicts.clear()
    verdicts[header] = now


async def _read_capped(request: web.Request, cap: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > cap:
        raise BadRequest(TOO_LARGE, reason="payload_too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:  # chunked bodies declare no length: count while reading
            raise BadRequest(TOO_LARGE, reason="payload_too_large")
        chunks.append(chunk)


async def read_json_object(request: web.Request, *, optional: bool = False,
                           large: bool = False) -> dict[str, Any]:
    """The request body as a JSON object ({} for an empty body when `optional`); malformed
    JSON is a BadRequest, never a 500.

    The key is checked first, from the header. Routes whose legal bodies are small
    (stop, sessions, flow messages, slug) read at most MAX_SMALL_BODY_BYTES; `large`
    turn routes (Halo with images, aibot with history and tool results) up to
    MAX_REQUEST_BODY_BYTES, and a body
    larger than the small cap is read and parsed only while holding one of
    MAX_LARGE_BODIES_IN_FLIGHT slots, so a burst of large bodies cannot take the
    process's memory (or event loop) at once."""
    await check_key(request)
    declared = request.content_length
    if not large or (declared is not None and declared <= MAX_SMALL_BODY_BYTES):
        return _parse(await _read_capped(request, MAX_SMALL_BODY_BYTES), optional)
    if declared is not None and declared > MAX_REQUEST_BODY_BYTES:
        raise BadRequest(TOO_LARGE, reason="payload_too_large")
    async with request.app[LARGE_BODIES]:
        raw = await _read_capped(request, MAX_REQUEST_BODY_BYTES)
        # Parsing a large body is CPU work: off the event loop, still under the gate.
        return await asyncio.to_thread(_parse, raw, optional)


def _parse(raw: bytes, optional: bool) -> dict[str, Any]:
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest("Request body must be a JSON object.")
    try:
        # Also refuses what JSON allows but protobuf cannot carry (NaN, 1e400, lone
        # surrogates, deep nesting), which would otherwise fail later as a 500.
        data = json_body.loads(raw)
    except json_body.InvalidBody as exc:
        raise BadRequest(str(exc), reason=exc.reason) from None
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object.")
    return data


def call_metadata(request: web.Request) -> list[tuple[str, str]]:
    return forward_metadata(request)


def origin_of(request: web.Request) -> str:
    return header_text(request, "Origin")


async def run_chat(request: web.Request, turn: chat_pb2.TurnInput) -> chat_pb2.ChatResponse:
    """Unary turn; raises CoreCallError (a request too large for the channel: a
    `payload_too_large` one, without calling the core)."""
    message = chat_pb2.ChatRequest(turn=turn)
    too_large = oversized(message)
    if too_large is not None:
        raise CoreCallError(too_large)
    try:
        reply: chat_pb2.ChatResponse = await request.app[CORE].chat.Chat(
            message, metadata=call_metadata(request)
        )
        note_turn(reply)  # the ids for the request's log line
        return reply
    except grpc.aio.AioRpcError as exc:
        raise CoreCallError(decode_error(exc)) from None


class CoreCallError(Exception):
    def __init__(self, error: CoreError) -> None:
        super().__init__(error.message)
        self.error = error


class _Pump:
    """A grpc.aio response stream read by one task into a buffer, so a reader can take
    every event already received at once and wait without a task per event (the shape
    of an in-process call, `core.grpcapi.inprocess.UnaryStreamCall`)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._buffer: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async for reply in self._call:
                self._buffer.append(reply)
                self._wake()
        except asyncio.CancelledError:
            # grpc.aio raises it from a call that was cancelled (close()).
            self._error = asyncio.CancelledError()
        except Exception as exc:
            self._error = exc
        finally:
            self._ended = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take_ready(self) -> list[Any]:
        self._start()
        items, self._buffer = self._buffer, []
        return items

    def ready(self) -> asyncio.Future[None]:
        self._start()
        loop = asyncio.get_running_loop()
        if self._buffer or self._ended:
            done = loop.create_future()
            done.set_result(None)
            return done
        if self._waiter is None or self._waiter.done():
            self._waiter = loop.create_future()
        return self._waiter

    @property
    def finished(self) -> bool:
        return self._ended and not self._buffer

    def raise_for_status(self) -> None:
        if self._error is not None:
            raise self._error

    def cancel(self) -> bool:
        cancelled = bool(self._call.cancel())
        if self._task is None:
            self._ended = True
            self._error = asyncio.CancelledError()
        return cancelled


class Wake:
    """Something besides the core that may wake a reader waiting for events (the SSE
    heartbeat timer): `pending` says it has something to report, `waiter` is the future
    the reader waits on while it does."""

    pending = False
    waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        self.pending = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class TurnStream:
    """A streaming turn. `first()` waits for the first event so errors raised before any
    output (bad key, unknown agent, limits) surface while the dialect can still pick a
    status code; `events()` yields the remaining events and `batch()` takes every event
    already received at once (a reader that fell behind writes them together). Closing
    cancels the core call, which detaches the client from the turn."""

    def __init__(self, call: Any) -> None:
        self._call = call
        # An in-process call buffers on its own; a grpc.aio call gets a reading task.
        self._source: Any = call if hasattr(call, "take_ready") else _Pump(call)
        self._pending: list[events_pb2.ChatEvent] = []

    async def first(self) -> events_pb2.ChatEvent:
        first = await self.first_or_none()
        if first is None:
            raise CoreCallError(CoreError("INTERNAL", "internal", "empty stream"))
        return first

    async def first_or_none(self) -> events_pb2.ChatEvent | None:
        """Like `first()`, but None when the stream has no event at all (a resumed stream
        with nothing left to replay)."""
        batch = await self.batch()
        if batch is None:
            return None
        self._pending = batch[1:]
        note_turn(batch[0])  # turn_started: the ids for the request's log line
        return batch[0]

    async def batch(self, wake: Wake | None = None) -> list[events_pb2.ChatEvent] | None:
        """Every event received and not yet read, waiting for at least one; None at the
        end of the stream; [] when `wake` woke the reader first. A failed call raises
        CoreCallError (a cancelled one, CancelledError, as grpc.aio does)."""
        source = self._source
        if self._pending:
            # What `first()` read ahead, and whatever arrived since, in one batch.
            pending, self._pending = self._pending, []
            return pending + [reply.event for reply in source.take_ready()]
        while True:
            replies = source.take_ready()
            if replies:
                return [reply.event for reply in replies]
            if source.finished:
                try:
                    source.raise_for_status()
                except grpc.aio.AioRpcError as exc:
                    raise CoreCallError(decode_error(exc)) from None
                return None
            if wake is not None and wake.pending:
                return []
            waiter = source.ready()
            if wake is not None:
                wake.waiter = waiter
            try:
                await waiter
            finally:
                if wake is not None:
                    wake.waiter = None

    async def events(self) -> AsyncIterator[events_pb2.ChatEvent]:
        """The events after the first; a mid-stream failure raises CoreCallError."""
        while (batch := await self.batch()) is not None:
            for event in batch:
                yield event

    def close(self) -> None:
        self._source.cancel()


def stream_chat(request: web.Request, turn: chat_pb2.TurnInput) -> TurnStream:
    """A streaming turn. A request too large for the channel is not sent: the stream's
    `first()` raises its `payload_too_large` CoreCallError, as for any refusal."""
    message = chat_pb2.StreamChatRequest(turn=turn)
    too_large = oversized(message)
    if too_large is not None:
        return TurnStream(RefusedCall(CoreCallError(too_large)))
    call = request.app[CORE].chat.StreamChat(message, metadata=call_metadata(request))
    return TurnStream(call)


async def stop_turn(request: web.Request, conversation_id: str, dialect: str,
                    user_id: str = "", user_token: str = "") -> chat_pb2.StopTurnResponse:
    """Stop the running turn of a conversation (any dialect's rendering of its id); returns
    once the turn is stored. Raises CoreCallError."""
    try:
        reply: chat_pb2.StopTurnResponse = await request.app[CORE].chat.StopTurn(
            chat_pb2.StopTurnRequest(conversation_id=conversation_id,
                                     origin=origin_of(request), dialect=dialect,
                                     user_id=user_id, user_token=user_token),
            metadata=call_metadata(request),
        )
        return reply
    except grpc.aio.AioRpcError as exc:
        raise CoreCallError(decode_error(exc)) from None
