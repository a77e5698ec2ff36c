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
        return reply
    except grpc.aio.AioRpcError as exc:
        raise CoreCallError(decode_error(exc)) from None


class CoreCallError(Exception):
    def __init__(self, error: CoreError) -> None:
        super().__init__(error.message)
        self.error = error


class TurnStream:
    """A streaming turn. `first()` waits for the first event so errors raised before any
    output (bad key, unknown agent, limits) surface while the dialect can still pick a
    status code; iterating yields the remaining events. Closing cancels the gRPC call,
    which detaches the client from the turn."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._iter = call.__aiter__()
        self._first: events_pb2.ChatEvent | None = None

    async def first(self) -> events_pb2.ChatEvent:
        first = await self.first_or_none()
        if first is None:
            raise CoreCallError(CoreError("INTERNAL", "internal", "empty stream"))
        return first

    async def first_or_none(self) -> events_pb2.ChatEvent | None:
        """Like `first()`, but None when the stream has no event at all (a resumed stream
        with nothing left to replay)."""
        try:
            reply = await self._iter.__anext__()
        except grpc.aio.AioRpcError as exc:
            raise CoreCallError(decode_error(exc)) from None
        except StopAsyncIteration:
            return None
        self._first = reply.event
        return self._first

    async def events(self) -> AsyncIterator[events_pb2.ChatEvent]:
        """The events after the first; a mid-stream failure raises CoreCallError."""
        try:
            async for reply in self._iter:
                yield reply.event
        except grpc.aio.AioRpcError as exc:
            raise CoreCallError(decode_error(exc)) from None

    def close(self) -> None:
        self._call.cancel()


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
