"""OpenAPI 3.1 description of the operator REST API (shim.operator_api, docs/handoff.md)."""

from __future__ import annotations

from typing import Any

from core import limits

_REF = "#/components/schemas/"
_SECURITY: list[dict[str, list[str]]] = [{"operatorKey": []}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"default": _json({"$ref": _REF + "OperatorError"},
                           "The error envelope (400, 401, 403, 404, 409, 413, 429, 503)")}
_ID = {"name": "conversation_id", "in": "path", "required": True,
       "schema": {"type": "string"},
       "description": "The conversation (any dialect's rendering: chat_…, conv_…, a UUID)."}
_NAME_QUERY = {"name": "operator_name", "in": "query", "required": False,
               "schema": {"type": "string", "maxLength": limits.MAX_OPERATOR_NAME_CHARS},
               "description": "With a secret key: who acts (default Operator)."}
_NAME = {"type": "string", "maxLength": limits.MAX_OPERATOR_NAME_CHARS,
         "description": "With a secret key: who acts (an operator token acts as itself)."}
_STATE = {"type": "string", "enum": ["bot", "waiting", "human", "closed"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "OperatorError": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                           "field": {"type": "string"}, "state": _STATE},
        }},
    },
    "OperatorHandoff": {
        "type": "object",
        "required": ["conversation_id", "session_id", "state", "team", "ticket_id",
                     "operator", "user_id", "traits", "context"],
        "properties": {
            "conversation_id": {"type": "string"}, "session_id": {"type": "string"},
            "state": _STATE, "team": {"type": "string"}, "ticket_id": {"type": "string"},
            "reason": {"type": "string"},
            "operator": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["id", "name"],
                "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}]},
            "updated_at": _TIME, "requested_at": _TIME,
            "user_id": {"type": "string"}, "agent_id": {"type": "string"},
            "traits": {"type": "object"}, "context": {"type": "object"},
        },
    },
    "OperatorMessage": {
        "type": "object", "required": ["id", "role", "text", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "role": {"type": "string", "enum": ["user", "assistant", "tool", "operator"]},
            "text": {"type": "string"}, "created_at": _TIME,
            "operator_name": {"type": "string"}, "event_id": {"type": "integer"},
        },
    },
    "OperatorConversation": {
        "allOf": [{"$ref": _REF + "OperatorHandoff"}, {
            "type": "object", "required": ["messages"],
            "properties": {"messages": {"type": "array",
                                        "items": {"$ref": _REF + "OperatorMessage"}}}}],
    },
    "OperatorQueue": {
        "type": "object", "required": ["conversations"],
        "properties": {"conversations": {"type": "array",
                                         "items": {"$ref": _REF + "OperatorHandoff"}}},
    },
    "OperatorAction": {
        "type": "object",
        "properties": {"operator_name": _NAME,
                       "team": {"type": "string", "maxLength": limits.MAX_REFERENCE_CHARS,
                                "description": "handoff only: the team (default support)."},
                       "reason": {"type": "string", "maxLength": limits.MAX_REFERENCE_CHARS}},
    },
    "OperatorSend": {
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string", "minLength": 1,
                                "maxLength": limits.MAX_OPERATOR_MESSAGE_CHARS},
                       "operator_name": _NAME},
    },
}


def _action(name: str, summary: str) -> dict[str, Any]:
    return {"post": {
        "operationId": f"operator{name.capitalize()}", "summary": summary,
        "tags": ["operator"], "security": _SECURITY, "parameters": [_ID],
        "requestBody": {"required": False, "content": {"application/json": {
            "schema": {"$ref": _REF + "OperatorAction"}}}},
        "responses": {"200": _json({"$ref": _REF + "OperatorHandoff"}, "The new state."),
                      **_ERROR},
    }}


PREFIX = "/api/operator/v1/conversations"
PATHS: dict[str, Any] = {
    PREFIX: {"get": {
        "operationId": "operatorQueue",
        "summary": "The queue: handed-off conversations (default waiting and human).",
        "tags": ["operator"], "security": _SECURITY,
        "parameters": [{"name": "state", "in": "query", "required": False,
                        "schema": {"type": "string"},
                        "description": "waiting, human, bot or closed; repeat or "
                                       "comma-separate for several."}, _NAME_QUERY],
        "responses": {"200": _json({"$ref": _REF + "OperatorQueue"}, "The queue."), **_ERROR},
    }},
    PREFIX + "/{conversation_id}": {"get": {
        "operationId": "operatorConversation",
        "summary": "One conversation: its state, visitor (traits, context) and transcript.",
        "tags": ["operator"], "security": _SECURITY, "parameters": [_ID, _NAME_QUERY],
        "responses": {"200": _json({"$ref": _REF + "OperatorConversation"},
                                   "The conversation."), **_ERROR},
    }},
    PREFIX + "/{conversation_id}/claim": _action(
        "claim", "waiting → human. Of concurrent claims exactly one wins; the rest are 409."),
    PREFIX + "/{conversation_id}/release": _action("release", "waiting/human → bot."),
    PREFIX + "/{conversation_id}/close": _action("close", "waiting/human → closed."),
    PREFIX + "/{conversation_id}/handoff": _action(
        "handoff", "bot/closed → waiting (request a person through the API)."),
    PREFIX + "/{conversation_id}/messages": {"post": {
        "operationId": "operatorSendMessage",
        "summary": "Reply to the visitor (state human, claimed by the caller).",
        "tags": ["operator"], "security": _SECURITY, "parameters": [_ID],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF + "OperatorSend"}}}},
        "responses": {"201": _json({"$ref": _REF + "OperatorMessage"}, "Stored and sent."),
                      **_ERROR},
    }},
    "/api/operator/v1/events": {"get": {
        "operationId": "operatorEvents",
        "summary": "SSE: queue changes and the messages written while a person has a "
                   "conversation; `id:` resumes with Last-Event-ID.",
        "tags": ["operator"], "security": _SECURITY,
        "parameters": [
            _NAME_QUERY,
            {"name": "lastEventId", "in": "query", "required": False,
             "schema": {"type": "string"}},
            {"name": "Last-Event-ID", "in": "header", "required": False,
             "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The event stream.",
                              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                      **_ERROR},
    }},
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "schemas": SCHEMAS,
    "securitySchemes": {"operatorKey": {
        "type": "http", "scheme": "bearer",
        "description": "A secret key (sk_live_…) or an operator token (op_live_…)."}},
}
