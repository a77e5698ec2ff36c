"""Reconnecting to a turn's stream: the SSE dialects' `Last-Event-ID` cursor and the core's
`ResumeStream` call.

Every SSE frame that ends the rendering of a core event carries `id: <seq>`, the event's
sequence number. When one core event renders as several frames (aibot's `interrupt`
then `[DONE]`, a stopped turn's `stopped` event then `[DONE]`), only the *last* of them
carries the id: by SSE semantics a client's last event id then moves past the event
only once all its frames arrived, so resuming with `after_seq = Last-Event-ID` re-renders
exactly the frames the client is missing, with no gap and no duplicate.

A reconnect names the conversation and, optionally, the cursor (`Last-Event-ID` header,
or the `lastEventId` query parameter for clients that cannot set headers). With a
cursor, the core replays the stored events after it and then follows the live turn; the
dialect renders them with the same code as the original stream and stops at the first
terminal event (the end of the turn the client was reading). Without a cursor the
latest turn is replayed from its first event. Nothing left to send is `204 No Content`,
which also tells an `EventSource` to stop reconnecting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web

from shim.app import CORE
from shim.common import BadRequest, TurnStream, call_metadata, origin_of
from shim.sse import Render, RenderError, relay
from switchboard.v1 import chat_pb2, events_pb2

LAST_EVENT_ID_HEADER: Final = "Last-Event-ID"
LAST_EVENT_ID_QUERY: Final = "lastEventId"
_MAX_SEQ: Final = 2**63 - 1  # int64, the proto field


def last_event_id(request: web.Request) -> int | None:
    """The client's cursor: the `Last-Event-ID` header, else the `lastEventId` query
    parameter; None when neither is given. Anything but a sequence number we sent is a
    BadRequest."""
    raw = request.headers.get(LAST_EVENT_ID_HEADER)
    field = LAST_EVENT_ID_HEADER
    if raw is None or not raw.strip():
        raw = request.query.get(LAST_EVENT_ID_QUERY)
        field = LAST_EVENT_ID_QUERY
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= _MAX_SEQ:
        raise BadRequest(f"{field} must be the id of an event this server sent.", field=field)
    return value


def has_last_event_id(request: web.Request) -> bool:
    """True when a POST send route is really a reconnect (the header, not the query: a
    send route's query string is not part of its contract)."""
    return bool(request.headers.get(LAST_EVENT_ID_HEADER, "").strip())


def resume_stream(request: web.Request, conversation_id: str,
                  after_seq: int | None, dialect: str, user_id: str = "",
                  user_token: str = "") -> TurnStream:
    """The core's ResumeStream: events after `after_seq`, or (None) the latest turn from its
    first event, then the live turn."""
    call = request.app[CORE].chat.ResumeStream(
        chat_pb2.ResumeStreamRequest(
            conversation_id=conversation_id, after_seq=after_seq or 0,
            latest_turn=after_seq is None, origin=origin_of(request), dialect=dialect,
            user_id=user_id, user_token=user_token,
        ),
        metadata=call_metadata(request),
    )
    return TurnStream(call)


async def relay_resumed(
    request: web.Request,
    call: TurnStream,
    render: Render,
    render_error: RenderError,
    headers: Callable[[events_pb2.ChatEvent], Mapping[str, str]],
) -> web.StreamResponse:
    """Relay a resumed stream through the dialect's own `render` (so the frames are the
    original's, byte for byte) until the turn's terminal event; 204 when nothing is left.
    Raises CoreCallError for errors before the first byte (the dialect's envelope)."""
    try:
        first = await call.first_or_none()
    except BaseException:
        call.close()
        raise
    if first is None:
        call.close()
        return web.Response(status=204)
    return await relay(request, call, first, render, render_error, headers(first))
