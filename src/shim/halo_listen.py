"""`GET /api/sdk/chat/listen?session_id=chat_...`: the visitor's live view of their
conversation, as Server-Sent Events (docs/handoff.md).

It carries what the visitor does not get as the reply to their own request: operator
messages (`event: message`, `role: operator`, with the operator's name), handoff state
changes (`event: state`: waiting, human, bot, closed) and the bot's replies (`event:
message`, `role: assistant`). Each event's `id:` is the resume cursor: a reconnect with
`Last-Event-ID` (an EventSource does it by itself) or `?lastEventId=` replays what came
after it; without one the stream starts from now.

A publishable key may listen because the core's admission decides, exactly as for a send
or the history: the browser Origin, the key kind and the conversation's owner (another
visitor's conversation is the same 404 as an unknown id). Errors before the stream
starts use the Halo error envelope.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from shim.activity_sse import relay_activity
from shim.app import CORE
from shim.common import BadRequest, call_metadata, check_key, origin_of
from shim.halo_errors import error_response
from shim.operator_api import activity_json
from shim.resume import last_event_id
from switchboard.v1 import operator_pb2, operator_pb2_grpc

LISTEN_PATH: Final = "/api/sdk/chat/listen"


def _text(query: Any, name: str) -> str:
    value = query.get(name)
    return value if isinstance(value, str) else ""


async def listen(request: web.Request) -> web.StreamResponse:
    query = request.query
    try:
        await check_key(request)
        session = _text(query, "session_id")
        if not session:
            raise BadRequest("session_id is required.", field="session_id")
        after = last_event_id(request)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    stub = operator_pb2_grpc.ListenServiceStub(request.app[CORE].channel)
    call = stub.ListenConversation(operator_pb2.ListenConversationRequest(
        conversation_id=session, after_id=after, origin=origin_of(request),
        user_id=_text(query, "user_id"), user_token=_text(query, "user_token"),
    ), metadata=call_metadata(request))
    return await relay_activity(request, call, activity_json, error_response)


def setup(app: web.Application) -> None:
    app.router.add_get(LISTEN_PATH, listen)
