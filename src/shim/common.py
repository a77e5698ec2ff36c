"""What every dialect module shares: reading JSON bodies, calling the core, and turning
core errors into dialect envelopes without ever leaking a stack trace."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web

from shim import json_body
from shim.app import CORE
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


class BadRequest(Exception):
    """The HTTP request itself is unusable (not JSON, wrong shape). Dialects render it
    with their 400 envelope; `reason` matches the core's reasons where one applies."""

    def __init__(self, message: str, reason: str = "invalid_argument",
                 field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field = field

    def as_core_error(self) -> CoreError:
        metadata = {"field": self.field} if self.field else {}
        return CoreError("INVALID_ARGUMENT", self.reason, self.message, metadata)


async def read_json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object ({} for an empty body when `optional`); malformed
    JSON is a BadRequest, never a 500."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        # aiohttp's own answer would be a plain-text 413; every dialect renders this
        # reason as a 413 in its envelope.
        raise BadRequest("The request body is too large.", reason="payload_too_large") from None
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
