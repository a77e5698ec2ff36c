"""The slug chat API dialect: `POST /v1/api/chat/{slug}` (also `/chat/{slug}`).

The contract (the public slug chat API) and our choices where it is silent: docs/slug.md.
Request `{"message", "stream", "conversationId"}` with a secret key in
`Authorization: Bearer`. Reply `{"data": {...}, "error": null}`, or with `stream: true`
Server-Sent Events `data: {"chunk": "..."}` per text delta, then `data: [DONE]`. Errors
use the documented envelope `{"data": null, "error": {"name", "message", "details"}}`,
before the first byte with their HTTP status, after it as one SSE event (then close).

The module only parses, projects the core's events and maps errors: every rule (message
required and its length, the secret-key requirement, unknown agent) is the core's.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any, Final

from aiohttp import web

from core.ids import canonical_conversation_id
from shim import dialect_openapi, openapi, status_map
from shim.common import (
    BadRequest,
    CoreCallError,
    read_json_object,
    run_chat,
    stop_turn,
    stream_chat,
)
from shim.core_client import CoreError
from shim.headers import idempotency_key
from shim.resume import has_last_event_id, last_event_id, relay_resumed, resume_stream
from shim.sse import EventStream, Render, RenderError, relay
from switchboard.v1 import chat_pb2, events_pb2

ROUTES: Final = ("/v1/api/chat/{slug}", "/chat/{slug}")
# Reliability extensions (docs/slug.md, docs/reliability.md), under both route prefixes.
STOP_SUFFIX: Final = "/stop"
STREAM_SUFFIX: Final = "/stream"
DIALECT: Final = "slug"
CONVERSATION_PREFIX: Final = "conv_"
CONVERSATION_HEADER: Final = "X-Conversation-Id"
DONE: Final = "[DONE]"
# Sent before `[DONE]` when an explicit stop ended the turn: a named event, so
# `EventSource.onmessage` clients never see it, and a `chunk` of "" so clients that read
# every `data:` line as a chunk append nothing.
STOPPED_EVENT: Final = "stopped"
STOPPED_DATA: Final = '{"chunk": "", "stopped": true}'

# HTTP status → the envelope's error name. 400, 401 and 404 are the spec's; 429, 500 and
# 503 its "same envelope"; the rest follow the same naming.
ERROR_NAMES: Final[dict[int, str]] = {
    400: "ValidationError",
    401: "UnauthorizedError",
    403: "ForbiddenError",
    404: "NotFoundError",
    409: "ConflictError",
    410: "GoneError",
    413: "PayloadTooLargeError",
    422: "ValidationError",
    429: "RateLimitError",
    499: "ClientClosedRequestError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}

# The dialect's error tables are the generic ones (shim.status_map): the spec documents
# no codes of its own beyond the 400/401/404 envelopes, which these tables give.
BY_REASON: Final = status_map.BY_REASON
BY_CODE: Final = status_map.BY_CODE

# The spec's exact messages.
MESSAGE_REQUIRED: Final = "Message field is required"
UNAUTHORIZED: Final = "Invalid or missing API token"


def status_of(error: CoreError) -> int:
    return status_map.http_status(error.code, error.reason)


def message_of(error: CoreError, slug: str) -> str:
    if error.reason == "message_required":
        return MESSAGE_REQUIRED
    if error.reason == "unauthenticated" or (
        not error.reason and error.code == "UNAUTHENTICATED"
    ):
        return UNAUTHORIZED
    if error.reason == "agent_not_found":
        return f"Agent with slug '{slug}' not found"
    return status_map.public_message(error, status_of(error))


def envelope(error: CoreError, slug: str) -> tuple[int, dict[str, Any]]:
    status = status_of(error)
    name = ERROR_NAMES.get(status, "InternalServerError")
    return status, {
        "data": None,
        "error": {"name": name, "message": message_of(error, slug), "details": error.details},
    }


def error_response(error: CoreError, slug: str) -> web.Response:
    status, body = envelope(error, slug)
    headers = {}
    if status in (429, 503):
        # Whole seconds, rounded up, at least 1. The spec tells clients to retry 429s (and
        # 500s); a 503 (shutting down, provider unavailable) is as transient.
        retry_after = error.retry_after_s if error.retry_after_s is not None else 1
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return web.json_response(body, status=status, headers=headers)


def render_conversation_id(canonical: str) -> str:
    """`conv_` + the 32 hex digits of the conversation's UUID (accepted back everywhere)."""
    try:
        return CONVERSATION_PREFIX + uuid.UUID(canonical).hex
    except ValueError:
        return canonical


def _interrupted(interrupt: events_pb2.Interrupt) -> CoreError:
    """A slug agent that called a client tool: the slug API cannot run it or resume."""
    return CoreError(
        "FAILED_PRECONDITION", "interrupt_pending",
        "The agent is waiting for a client tool result; continue this conversation with "
        "the aibot send-message API (resume).",
        {"details_json": json.dumps({"interruptId": interrupt.interrupt_id,
                                     "toolCallIds": list(interrupt.tool_call_ids)})},
    )


def parse(body: dict[str, Any], slug: str) -> tuple[chat_pb2.TurnInput, bool]:
    message = body.get("message")
    if message is None:
        message = ""  # the core answers message_required, whatever the dialect
    elif not isinstance(message, str):
        raise BadRequest("Message field must be a string", field="message")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", field="stream")
    conversation_id = body.get("conversationId")
    if conversation_id is None:
        conversation_id = ""
    elif not isinstance(conversation_id, str):
        raise BadRequest("conversationId must be a string or null", field="conversationId")
    turn = chat_pb2.TurnInput(
        message=message, agent=slug, conversation_id=conversation_id, dialect=DIALECT,
    )
    return turn, stream


async def handle_chat(request: web.Request) -> web.StreamResponse:
    slug = request.match_info["slug"]
    try:
        turn, stream = parse(await read_json_object(request), slug)
        turn.idempotency_key = idempotency_key(request)
    except BadRequest as exc:
        return error_response(exc.as_core_error(), slug)
    if stream and turn.conversation_id and has_last_event_id(request):
        # A reconnect (e.g. fetch-event-source retrying its POST): resume, send nothing.
        return await _resume(request, turn.conversation_id, slug)
    if stream:
        return await _stream(request, turn, slug)
    try:
        reply = await run_chat(request, turn)
    except CoreCallError as exc:
        return error_response(exc.error, slug)
    if reply.HasField("interrupt"):
        return error_response(_interrupted(reply.interrupt), slug)
    completed = reply.completed
    return web.json_response({
        "data": {
            "response": completed.text,
            "conversationId": render_conversation_id(reply.conversation_id),
            "metadata": {
                "model": completed.model or completed.usage.model,
                "tokens": completed.usage.total_tokens,
            },
        },
        "error": None,
    })


def _chunk(text: str) -> str:
    return json.dumps({"chunk": text}, ensure_ascii=False)


def _renderers(slug: str) -> tuple[Render, RenderError]:
    """The dialect's projection of core events onto SSE frames, shared by the original
    stream and its resumptions (so a resumed stream is the original's bytes)."""

    async def send_error(stream: EventStream, error: CoreError, seq: int) -> None:
        await stream.send(json.dumps(envelope(error, slug)[1], ensure_ascii=False),
                          event_id=seq)

    async def render(stream: EventStream, event: events_pb2.ChatEvent) -> bool:
        kind = event.WhichOneof("kind")
        if kind == "text_delta":
            if event.text_delta.text:
                await stream.send(_chunk(event.text_delta.text), event_id=event.seq)
        elif kind == "completed":
            if event.completed.status == events_pb2.TURN_STATUS_STOPPED:
                # Only the event's last frame carries its id (see shim.resume).
                await stream.send(STOPPED_DATA, event=STOPPED_EVENT)
            await stream.send(DONE, event_id=event.seq)
            return True
        elif kind == "error":
            e = event.error
            await send_error(stream, CoreError(e.code, e.reason, e.message), event.seq)
            return True
        elif kind == "interrupt":
            await send_error(stream, _interrupted(event.interrupt), event.seq)
            return True
        return False  # tool calls, actions, usage: not part of this dialect

    return render, send_error


async def _stream(request: web.Request, turn: chat_pb2.TurnInput, slug: str) -> web.StreamResponse:
    call = stream_chat(request, turn)
    try:
        first = await call.first()
    except CoreCallError as exc:
        call.close()
        return error_response(exc.error, slug)
    render, send_error = _renderers(slug)
    headers = {CONVERSATION_HEADER: render_conversation_id(first.conversation_id)}
    return await relay(request, call, first, render, send_error, headers)


async def _resume(request: web.Request, conversation_id: str, slug: str) -> web.StreamResponse:
    """Replay what the client missed after its `Last-Event-ID`, then follow the live turn
    to its end (docs/slug.md, "Resuming a stream")."""
    try:
        after_seq = last_event_id(request)
    except BadRequest as exc:
        return error_response(exc.as_core_error(), slug)
    render, send_error = _renderers(slug)
    call = resume_stream(request, conversation_id, after_seq, DIALECT)
    try:
        return await relay_resumed(
            request, call, render, send_error,
            lambda first: {CONVERSATION_HEADER: render_conversation_id(first.conversation_id)},
        )
    except CoreCallError as exc:
        return error_response(exc.error, slug)


async def handle_resume(request: web.Request) -> web.StreamResponse:
    """`GET /v1/api/chat/{slug}/stream?conversationId=...[&lastEventId=N]`."""
    slug = request.match_info["slug"]
    conversation_id = request.query.get("conversationId", "")
    if not conversation_id:
        return error_response(BadRequest("conversationId is required",
                                          field="conversationId").as_core_error(), slug)
    return await _resume(request, conversation_id, slug)


async def handle_stop(request: web.Request) -> web.Response:
    """`POST /v1/api/chat/{slug}/stop` `{"conversationId"}`: stop the running turn; it is
    stored with its partial text and its stream ends with a `stopped` event, then
    `[DONE]`."""
    slug = request.match_info["slug"]
    try:
        body = await read_json_object(request)
        conversation_id = body.get("conversationId")
        if not isinstance(conversation_id, str) or not conversation_id:
            raise BadRequest("conversationId is required", field="conversationId")
        reply = await stop_turn(request, conversation_id, DIALECT)
    except BadRequest as exc:
        return error_response(exc.as_core_error(), slug)
    except CoreCallError as exc:
        return error_response(exc.error, slug)
    return web.json_response({
        "data": {"stopped": reply.stopped,
                 "conversationId": render_conversation_id(
                     canonical_conversation_id(conversation_id) or conversation_id)},
        "error": None,
    })


def setup(app: web.Application) -> None:
    openapi.add_paths(app, dialect_openapi.SLUG_PATHS, dialect_openapi.SLUG_COMPONENTS)
    for path in ROUTES:
        app.router.add_post(path, handle_chat)
        app.router.add_post(path + STOP_SUFFIX, handle_stop)
        app.router.add_get(path + STREAM_SUFFIX, handle_resume)
