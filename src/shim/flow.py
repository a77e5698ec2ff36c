"""The public flow dialect: sessions, intents and flow messages over REST (JSON).

Routes (docs/flow.md):
- `POST /api/public/v1/chat/sessions` (publishable widget key) → session token,
- `POST /api/public/v1/chat/messages` (session token) → `{"reply": {...}}`,
- `GET /api/public/v1/chat/intents` and `GET /api/public/v1/chat/executions/{id}`
  (session token): extras for widgets, mirroring FlowService.

This module only parses, projects and maps errors: the rules (variables, text length,
wait tokens, intents) are the core's FlowService's. Errors are
`{"error": {"code", "message", ...}}` with the statuses of `TABLE`.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC
from typing import Any, Final

import grpc
from aiohttp import hdrs, web
from google.protobuf import json_format, struct_pb2

from shim import cors, openapi
from shim.app import CORE
from shim.common import BadRequest, call_metadata, read_json_object
from shim.core_client import CoreError, decode_error, oversized
from shim.headers import idempotency_key, origin
from shim.status_map import GENERIC
from switchboard.v1 import chat_pb2, flow_pb2, flow_pb2_grpc

log = logging.getLogger("switchboard.shim.flow")

PREFIX = "/api/public/v1/chat"

# The flow spec's own statuses and codes over the generic table (status_map.GENERIC):
# 422 validation_failed / input_mismatch / intent_not_found, 410 wait_expired, 409
# wait_already_used, 401 for a bad or expired session.
TABLE: Final = GENERIC.override(
    reasons={
        "message_required": (422, "validation_failed"),
        "message_too_long": (422, "validation_failed"),
        "field_too_long": (422, "validation_failed"),
        "invalid_mode": (400, "invalid_request"),
        "invalid_images": (400, "invalid_request"),
        "invalid_input": (422, "validation_failed"),
        "no_active_agent": (404, "agent_not_found"),
        "conversation_not_found": (404, "not_found"),
        "interrupt_expired": (410, "expired"),
        "interrupt_already_resumed": (409, "conflict"),
        "interrupt_pending": (409, "conflict"),
        "idempotency_mismatch": (422, "idempotency_mismatch"),
        "input_mismatch": (422, "input_mismatch"),
        "intent_not_found": (422, "intent_not_found"),
        "provider_error": (503, "unavailable"),
    },
    codes={"RESOURCE_EXHAUSTED": (413, "payload_too_large")},  # gRPC's own: too large
    messages={400: "The request is invalid.", 401: "Invalid or missing token.",
              404: "Not found.", 409: "Conflict.", 413: "The request body is too large.",
              499: "Cancelled.", 500: "Internal error.", 501: "Not implemented.",
              503: "The service is temporarily unavailable; retry shortly.",
              504: "Timed out."},
    fallback_message="Error.",
)
BY_REASON: Final = TABLE.by_reason
BY_CODE: Final = TABLE.by_code


def status_and_code(error: CoreError) -> tuple[int, str]:
    return TABLE.entry(error)


def error_body(error: CoreError) -> dict[str, Any]:
    _, code = status_and_code(error)
    body: dict[str, Any] = {"code": code, "message": TABLE.public_message(error)}
    details = error.details
    if "violations" in details:
        body["details"] = details["violations"]
    if "allowed_intents" in details:
        body["allowedIntents"] = details["allowed_intents"]
    if "expected_input" in details:
        body["expectedInput"] = details["expected_input"]
    if error.metadata.get("field") and "details" not in body:
        body["field"] = error.metadata["field"]
    return {"error": body}


def error_response(error: CoreError) -> web.Response:
    status, _ = status_and_code(error)
    headers = {}
    if error.retry_after_s is not None:
        # Whole seconds, rounded up: a client retrying on time must not be refused again.
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return web.json_response(error_body(error), status=status, headers=headers)


def _validation(field: str, message: str) -> CoreError:
    """A request field of the wrong JSON type: the same 422 the core gives for its rules."""
    details = {"violations": [{"field": field, "code": "invalid_type", "message": message}]}
    return CoreError("INVALID_ARGUMENT", "invalid_input", f"Invalid request: {field}.",
                     {"details_json": json.dumps(details)})


class _Invalid(Exception):
    def __init__(self, error: CoreError) -> None:
        super().__init__(error.message)
        self.error = error


def _plain(value: Any) -> Any:
    """Struct numbers are doubles: show integral ones as integers again."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        # Sorted: a Struct's map order differs between processes, and a replay (after a
        # restart, on another shim) must be byte-identical to the original.
        return {k: _plain(value[k]) for k in sorted(value)}
    return value


def _struct_of(body: dict[str, Any], key: str) -> struct_pb2.Struct | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid(_validation(key, f"{key} must be an object"))
    struct = struct_pb2.Struct()
    try:
        struct.update(value)
    except (ValueError, TypeError):
        raise _Invalid(_validation(key, f"{key} holds values JSON cannot carry")) from None
    return struct


def _usage_of(body: dict[str, Any]) -> chat_pb2.ReportedUsage | None:
    usage = body.get("tokenUsage")
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise _Invalid(_validation("tokenUsage", "tokenUsage must be an object"))
    counts: dict[str, int] = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        camel = "".join(p.capitalize() if i else p for i, p in enumerate(name.split("_")))
        value = usage.get(name, usage.get(camel, 0))
        if isinstance(value, bool) or not isinstance(value, int) or not (
            -(2**63) <= value < 2**63
        ):
            raise _Invalid(_validation(f"tokenUsage.{name}", f"{name} must be an integer"))
        counts[name] = value
    model = usage.get("model", "")
    if not isinstance(model, str):
        raise _Invalid(_validation("tokenUsage.model", "model must be a string"))
    return chat_pb2.ReportedUsage(model=model, **counts)


def parse_message(body: dict[str, Any]) -> flow_pb2.SendMessageRequest:
    out = flow_pb2.SendMessageRequest()
    for key, attr in (("text", "text"), ("intentName", "intent_name"),
                      ("waitToken", "wait_token")):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _Invalid(_validation(key, f"{key} must be a string"))
        setattr(out, attr, value)
    for key, attr in (("context", "context"), ("variables", "variables")):
        struct = _struct_of(body, key)
        if struct is not None:
            getattr(out, attr).CopyFrom(struct)
    usage = _usage_of(body)
    if usage is not None:
        out.token_usage.CopyFrom(usage)
    if "input" in body and body["input"] is not None:
        try:
            json_format.ParseDict(body["input"], out.input)
        except json_format.ParseError:
            raise _Invalid(_validation("input", "input must be a JSON value")) from None
    return out


def _usage_json(u: Any) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens, "model": u.model, "cost_micros": u.cost_micros,
        # Display only, derived once from the integer micros.
        "cost_usd": u.cost_micros / 1_000_000,
    }


def _dict(msg: Any) -> dict[str, Any]:
    return _plain(json_format.MessageToDict(msg))  # type: ignore[no-any-return]


def reply_json(reply: flow_pb2.FlowReply) -> dict[str, Any]:
    return {
        "executionId": reply.execution_id,
        "conversationId": reply.conversation_id,
        "blocks": [
            {"type": b.type, "id": b.id, "payload": _dict(b.payload), "meta": _dict(b.meta)}
            for b in reply.blocks
        ],
        "expectedInput": _dict(reply.expected_input) if reply.HasField("expected_input")
        else None,
        "waitToken": reply.wait_token or None,
        "waitExpiresAt": _iso(reply.wait_expires_at) if reply.HasField(
            "wait_expires_at") else None,
        "tokenUsage": _usage_json(reply.token_usage),
        "status": flow_pb2.ExecutionStatus.Name(reply.status)
        .removeprefix("EXECUTION_STATUS_").lower(),
    }


def _iso(ts: Any) -> str:
    """RFC 3339, whole seconds, Z (as the spec's example shows times)."""
    return str(ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def _stub(request: web.Request) -> flow_pb2_grpc.FlowServiceStub:
    return flow_pb2_grpc.FlowServiceStub(request.app[CORE].channel)


async def _call(request: web.Request, method: str, message: Any) -> Any:
    too_large = oversized(message)  # gRPC would refuse it with a bare RESOURCE_EXHAUSTED
    if too_large is not None:
        raise _Invalid(too_large)
    try:
        return await getattr(_stub(request), method)(message, metadata=call_metadata(request))
    except grpc.aio.AioRpcError as exc:
        raise _Invalid(decode_error(exc)) from None


async def _body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    try:
        return await read_json_object(request, optional=optional)
    except BadRequest as exc:
        raise _Invalid(exc.as_core_error()) from None


async def create_session(request: web.Request) -> web.Response:
    try:
        body = await _body(request, optional=True)
        fields = {}
        for key, attr in (("agentId", "agent"), ("conversationId", "conversation_id"),
                          ("userId", "user_id"), ("userToken", "user_token")):
            value = body.get(key)
            if value is not None and not isinstance(value, str):
                raise _Invalid(_validation(key, f"{key} must be a string"))
            fields[attr] = value or ""
        reply = await _call(request, "CreateSession", flow_pb2.CreateSessionRequest(
            origin=origin(request), **fields))
    except _Invalid as exc:
        return error_response(exc.error)
    return web.json_response({
        "token": reply.token,
        "expiresAt": _iso(reply.expires_at),
        "conversationId": reply.conversation_id,
        "agentId": reply.agent_id,
        "intents": [{"name": i.name, "description": i.description} for i in reply.intents],
    })


async def send_message(request: web.Request) -> web.Response:
    try:
        message = parse_message(await _body(request))
        message.idempotency_key = idempotency_key(request)
        message.origin = origin(request)
        reply = await _call(request, "SendMessage", message)
    except _Invalid as exc:
        return error_response(exc.error)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    return web.json_response({"reply": reply_json(reply.reply)})


async def list_intents(request: web.Request) -> web.Response:
    try:
        reply = await _call(request, "ListIntents", flow_pb2.ListIntentsRequest())
    except _Invalid as exc:
        return error_response(exc.error)
    return web.json_response(
        {"intents": [{"name": i.name, "description": i.description} for i in reply.intents]})


async def get_execution(request: web.Request) -> web.Response:
    try:
        reply = await _call(request, "GetExecution", flow_pb2.GetExecutionRequest(
            execution_id=request.match_info["execution_id"]))
    except _Invalid as exc:
        return error_response(exc.error)
    e = reply.execution
    return web.json_response({"execution": {
        "executionId": e.id, "conversationId": e.conversation_id, "agentId": e.agent_id,
        "intentName": e.intent_name,
        "status": flow_pb2.ExecutionStatus.Name(e.status)
        .removeprefix("EXECUTION_STATUS_").lower(),
        "currentStep": e.current_step, "stepsRun": e.steps_run,
        "expectedInput": _dict(e.expected_input) if e.HasField("expected_input") else None,
        "waitExpiresAt": _iso(e.wait_expires_at)
        if e.HasField("wait_expires_at") else None,
        "createdAt": _iso(e.created_at),
        "updatedAt": _iso(e.updated_at),
    }})


SESSIONS_PATH = f"{PREFIX}/sessions"
MESSAGES_PATH = f"{PREFIX}/messages"
INTENTS_PATH = f"{PREFIX}/intents"
EXECUTION_PATH = f"{PREFIX}/executions/{{execution_id}}"


def _schema(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {str(status): _json(_schema("FlowError"), text) for status, text in (
    (400, "Malformed JSON"), (401, "Missing, invalid or expired token"),
    (403, "Wrong key kind or origin"), (404, "Unknown wait token or execution"),
    (409, "Wait token already used"), (410, "Wait token expired"),
    (422, "validation_failed, intent_not_found or input_mismatch"),
    (429, "Rate or budget limit"), (500, "Internal error"), (503, "Unavailable"))}
_AUTH: list[dict[str, list[str]]] = [{"FlowBearer": []}]
_STRING_OR_NULL = {"type": ["string", "null"]}
_OBJECT_OR_NULL = {"type": ["object", "null"]}

PATHS: dict[str, Any] = {
    SESSIONS_PATH: {"post": {
        "summary": "Create a flow session (publishable widget key); lifetime 1 hour",
        "security": _AUTH,
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": _schema("FlowSessionRequest")}}},
        "responses": {"200": _json(_schema("FlowSession"), "The session"), **_ERRORS},
    }},
    MESSAGES_PATH: {"post": {
        "summary": "Start an intent, or continue a waiting execution with its waitToken",
        "security": _AUTH,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _schema("FlowMessageRequest")}}},
        "responses": {"200": _json({"type": "object", "required": ["reply"], "properties": {
            "reply": _schema("FlowReply")}}, "Flow processed the message"), **_ERRORS},
    }},
    INTENTS_PATH: {"get": {
        "summary": "The session agent's intents", "security": _AUTH,
        "responses": {"200": _json({"type": "object", "properties": {"intents": {
            "type": "array", "items": _schema("FlowIntent")}}}, "Intents"), **_ERRORS},
    }},
    EXECUTION_PATH: {"get": {
        "summary": "An execution of the session's conversation", "security": _AUTH,
        "parameters": [{"name": "execution_id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": _json({"type": "object"}, "The execution"), **_ERRORS},
    }},
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "securitySchemes": {"FlowBearer": {
        "type": "http", "scheme": "bearer",
        "description": "Sessions: a publishable widget key. Messages: the session token."}},
    "schemas": {
        "FlowIntent": {"type": "object", "properties": {
            "name": {"type": "string"}, "description": {"type": "string"}}},
        "FlowSessionRequest": {"type": "object", "properties": {
            "agentId": {"type": "string"}, "conversationId": {"type": "string"}}},
        "FlowSession": {"type": "object", "properties": {
            "token": {"type": "string"}, "expiresAt": {"type": "string",
                                                       "format": "date-time"},
            "conversationId": {"type": "string"}, "agentId": {"type": "string"},
            "intents": {"type": "array", "items": _schema("FlowIntent")}}},
        "FlowTokenUsage": {"type": "object", "properties": {
            "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"}, "model": {"type": "string"},
            "cost_micros": {"type": "integer"}, "cost_usd": {"type": "number"}}},
        "FlowMessageRequest": {"type": "object", "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": 4000},
            "intentName": {"type": "string"}, "context": {"type": "object"},
            "variables": {"type": "object", "maxProperties": 50},
            "tokenUsage": _schema("FlowTokenUsage"), "waitToken": {"type": "string"},
            "input": {"description": "The answer to the waiting step (any JSON value)"}}},
        "FlowBlock": {"type": "object", "properties": {
            "type": {"type": "string"}, "id": {"type": "string"},
            "payload": {"type": "object"}, "meta": {"type": "object"}}},
        "FlowReply": {"type": "object", "properties": {
            "executionId": {"type": "string"}, "conversationId": {"type": "string"},
            "blocks": {"type": "array", "items": _schema("FlowBlock")},
            "expectedInput": _OBJECT_OR_NULL, "waitToken": _STRING_OR_NULL,
            "waitExpiresAt": {"type": ["string", "null"], "format": "date-time"},
            "tokenUsage": _schema("FlowTokenUsage"),
            "status": {"type": "string",
                       "enum": ["waiting", "completed", "handed_off", "failed", "running"]}}},
        "FlowError": {"type": "object", "properties": {"error": {"type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "details": {"type": "array"}, "allowedIntents": {"type": "array"},
                           "expectedInput": {"type": "object"}}}}},
    },
}


def setup(app: web.Application) -> None:
    app.router.add_post(SESSIONS_PATH, create_session)
    app.router.add_post(MESSAGES_PATH, send_message)
    app.router.add_get(INTENTS_PATH, list_intents)
    app.router.add_get(EXECUTION_PATH, get_execution)
    # Widgets call these from browsers; the core checks the origin when a session is made.
    for path in (SESSIONS_PATH, MESSAGES_PATH):
        cors.allow(app, path)
    for path in (INTENTS_PATH, EXECUTION_PATH):
        cors.allow(app, path, methods=(hdrs.METH_GET,))
    openapi.add_paths(app, PATHS, COMPONENTS)
