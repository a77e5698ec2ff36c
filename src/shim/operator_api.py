"""The operator REST API (`/api/operator/v1/...`): the queue, claim, reply, release, close
and the event stream, as documented in docs/handoff.md. It translates to the core's
OperatorService; the core decides who may do what.

Auth: `Authorization: Bearer <secret key | operator token>`. A secret key acts under the
`operator_name` it sends (body field, or query parameter on GET routes). Errors are
`{"error": {"code", "message", "field"?}}` with the generic status table
(`status_map.GENERIC`): 400 bad input or a state that does not allow the call
(`handoff_state`), 401, 403 (a widget key), 404 (unknown or another organisation's
conversation), 409 (`handoff_claimed`: another operator has it).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, Final

import grpc
from aiohttp import web
from google.protobuf import json_format, timestamp_pb2

from core.ids import canonical_conversation_id
from shim import openapi, operator_openapi
from shim.activity_sse import relay_activity
from shim.app import CORE
from shim.common import BadRequest, call_metadata, read_json_object
from shim.core_client import CoreError, decode_error
from shim.halo_wire import _plain, session_id
from shim.resume import last_event_id
from shim.status_map import GENERIC
from switchboard.v1 import operator_pb2, operator_pb2_grpc

PREFIX: Final = "/api/operator/v1"
CONVERSATIONS_PATH: Final = f"{PREFIX}/conversations"
CONVERSATION_PATH: Final = f"{PREFIX}/conversations/{{conversation_id}}"
EVENTS_PATH: Final = f"{PREFIX}/events"
ACTIONS: Final = ("claim", "release", "close", "handoff")

STATE_NAMES: Final = {
    operator_pb2.HANDOFF_STATE_BOT: "bot",
    operator_pb2.HANDOFF_STATE_WAITING: "waiting",
    operator_pb2.HANDOFF_STATE_HUMAN: "human",
    operator_pb2.HANDOFF_STATE_CLOSED: "closed",
}
STATES_BY_NAME: Final[dict[str, Any]] = {v: k for k, v in STATE_NAMES.items()}


def error_response(error: CoreError) -> web.Response:
    status, code = GENERIC.entry(error)
    body: dict[str, Any] = {"code": code, "message": GENERIC.public_message(error)}
    field = error.metadata.get("field")
    if field:
        body["field"] = field
    state = error.metadata.get("state")
    if state:
        body["state"] = state
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    return web.json_response({"error": body}, status=status, headers=headers)


def _time(ts: timestamp_pb2.Timestamp, present: bool = True) -> str | None:
    if not present:
        return None
    return ts.ToDatetime(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _struct(message: Any, field: str) -> dict[str, Any]:
    if not message.HasField(field):
        return {}
    plain = _plain(json_format.MessageToDict(getattr(message, field)))
    return plain if isinstance(plain, dict) else {}


def handoff_json(h: operator_pb2.Handoff) -> dict[str, Any]:
    return {
        "conversation_id": h.conversation_id,
        "session_id": session_id(h.conversation_id),
        "state": STATE_NAMES.get(h.state, "bot"),
        "team": h.team,
        "ticket_id": h.ticket_id,
        "reason": h.reason,
        "operator": {"id": h.operator_id, "name": h.operator_name} if h.operator_id else None,
        "updated_at": _time(h.updated_at, h.HasField("updated_at")),
        "requested_at": _time(h.requested_at, h.HasField("requested_at")),
        "user_id": h.user_id,
        "agent_id": h.agent_id,
        "traits": _struct(h, "traits"),
        "context": _struct(h, "context"),
    }


def message_json(m: Any) -> dict[str, Any]:
    out = {"id": m.id, "role": m.role, "text": m.content,
           "created_at": _time(m.created_at)}
    if m.role == "operator":
        out["operator_name"] = m.operator_name
    return out


def activity_json(a: operator_pb2.Activity) -> dict[str, Any]:
    """One activity as an SSE event's data: its id, kind, conversation, and its fields."""
    return {
        "id": a.id, "kind": a.kind, "conversation_id": a.conversation_id,
        "session_id": session_id(a.conversation_id),
        **_struct(a, "data"),
        "created_at": _time(a.created_at),
    }


def _stub(request: web.Request) -> Any:
    return operator_pb2_grpc.OperatorServiceStub(request.app[CORE].channel)


def _name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("operator_name must be a string.", field="operator_name")
    return value


def _conversation(request: web.Request) -> str:
    raw = request.match_info["conversation_id"]
    # An id no dialect renders is unknown (404), as the core says for ids of others.
    return canonical_conversation_id(raw) or raw


async def _call(request: web.Request, method: str, message: Any) -> Any:
    try:
        return await getattr(_stub(request), method)(message, metadata=call_metadata(request))
    except grpc.aio.AioRpcError as exc:
        raise _Refused(decode_error(exc)) from None


class _Refused(Exception):
    def __init__(self, error: CoreError) -> None:
        self.error = error


def _states(request: web.Request) -> list[Any]:
    names: list[str] = []
    for raw in request.query.getall("state", []):
        names.extend(part.strip() for part in raw.split(",") if part.strip())
    states: list[Any] = []
    for name in names:
        if name not in STATES_BY_NAME:
            raise BadRequest("state must be one of bot, waiting, human, closed.",
                             field="state")
        states.append(STATES_BY_NAME[name])
    return states


async def list_conversations(request: web.Request) -> web.Response:
    """`GET /api/operator/v1/conversations?state=waiting&state=human` (default both)."""
    try:
        reply = await _call(request, "ListHandoffs", operator_pb2.ListHandoffsRequest(
            states=_states(request), operator_name=_name(request.query.get("operator_name"))))
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except _Refused as exc:
        return error_response(exc.error)
    return web.json_response({"conversations": [handoff_json(h) for h in reply.handoffs]})


async def get_conversation(request: web.Request) -> web.Response:
    """`GET /api/operator/v1/conversations/{id}`: its state, visitor and transcript."""
    try:
        reply = await _call(request, "GetHandoff", operator_pb2.GetHandoffRequest(
            conversation_id=_conversation(request),
            operator_name=_name(request.query.get("operator_name"))))
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except _Refused as exc:
        return error_response(exc.error)
    return web.json_response({**handoff_json(reply.handoff),
                              "messages": [message_json(m) for m in reply.messages]})


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string.", field=name)
    return value


def _acting(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return await act(request, action)
    return handler


async def act(request: web.Request, action: str) -> web.Response:
    """`POST .../{id}/claim|release|close|handoff`: one transition; the new state."""
    try:
        body = await read_json_object(request, optional=True)
        conversation = _conversation(request)
        name = _name(body.get("operator_name"))
        if action == "claim":
            reply = await _call(request, "ClaimHandoff", operator_pb2.ClaimHandoffRequest(
                conversation_id=conversation, operator_name=name))
        elif action == "release":
            reply = await _call(request, "ReleaseHandoff", operator_pb2.ReleaseHandoffRequest(
                conversation_id=conversation, operator_name=name))
        elif action == "close":
            reply = await _call(request, "CloseHandoff", operator_pb2.CloseHandoffRequest(
                conversation_id=conversation, operator_name=name))
        else:
            reply = await _call(request, "RequestHandoff", operator_pb2.RequestHandoffRequest(
                conversation_id=conversation, operator_name=name,
                team=_text_field(body, "team"), reason=_text_field(body, "reason")))
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except _Refused as exc:
        return error_response(exc.error)
    return web.json_response(handoff_json(reply.handoff))


async def send_message(request: web.Request) -> web.Response:
    """`POST .../{id}/messages` `{"text": "..."}`: the operator's reply to the visitor."""
    try:
        body = await read_json_object(request)
        text = body.get("text")
        if not isinstance(text, str):
            raise BadRequest("text is required and must be a string.", "message_required",
                             field="text")
        reply = await _call(request, "SendOperatorMessage",
                            operator_pb2.SendOperatorMessageRequest(
                                conversation_id=_conversation(request), text=text,
                                operator_name=_name(body.get("operator_name"))))
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except _Refused as exc:
        return error_response(exc.error)
    return web.json_response({**message_json(reply.message), "event_id": reply.activity_id},
                             status=201)


async def events(request: web.Request) -> web.StreamResponse:
    """`GET /api/operator/v1/events`: SSE of queue changes and visitor messages, resumable
    with `Last-Event-ID` (or `?lastEventId=`)."""
    try:
        after = last_event_id(request)
        name = _name(request.query.get("operator_name"))
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    call = _stub(request).WatchHandoffs(
        operator_pb2.WatchHandoffsRequest(after_id=after, operator_name=name),
        metadata=call_metadata(request))
    return await relay_activity(request, call, activity_json, error_response)


def setup(app: web.Application) -> None:
    openapi.add_paths(app, operator_openapi.PATHS, operator_openapi.COMPONENTS)
    app.router.add_get(CONVERSATIONS_PATH, list_conversations)
    app.router.add_get(CONVERSATION_PATH, get_conversation)
    app.router.add_post(CONVERSATION_PATH + "/messages", send_message)
    for action in ACTIONS:
        app.router.add_post(f"{CONVERSATION_PATH}/{action}", _acting(action))
    app.router.add_get(EVENTS_PATH, events)
