"""OpenAPI 3.1 descriptions of the slug and aibot dialects and of the shim's own
endpoints (health, readiness, the document itself). Registered by each module's
`setup(app)`; the Halo and flow dialects describe themselves in their own modules.

Error bodies are described as `default` responses: every status a dialect's error table
can give (its envelope is the same for all of them) is documented that way, so a
conformance checker flags a body that is not the envelope, never a status we chose.
"""

from __future__ import annotations

from typing import Any

from core import limits

_REF = "#/components/schemas/"


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_SSE = {"text/event-stream": {"schema": {"type": "string"}}}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "maxLength": limits.MAX_IDEMPOTENCY_KEY_CHARS},
    "description": "Names the turn for 24 hours: a retry gets the same turn.",
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID", "in": "header", "required": False,
    "schema": {"type": "string"},
    "description": "Resume after this event id (the SSE reconnect header).",
}
_CONVERSATION_QUERY = {"name": "conversationId", "in": "query", "required": True,
                       "schema": {"type": "string"}}
_CONVERSATION_HEADER = {"X-Conversation-Id": {"schema": {"type": "string"},
                                              "description": "The conversation id."}}

# -- slug ---------------------------------------------------------------------------------

_SLUG_SECURITY: list[dict[str, list[str]]] = [{"SlugBearer": []}]
_SLUG_ERROR = {"default": _json({"$ref": _REF + "SlugError"},
                                "The error envelope (400, 401, 403, 404, 409, 410, 413, 422, "
                                "429, 500, 503, 504)")}
_SLUG_PARAM = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}


def _slug_paths(prefix: str, tag: str) -> dict[str, Any]:
    return {
        prefix: {"post": {
            "operationId": f"{tag}Chat",
            "summary": "Send a message to the agent with this slug; `stream: true` for SSE.",
            "tags": ["slug"], "security": _SLUG_SECURITY,
            "parameters": [_SLUG_PARAM, _IDEMPOTENCY_KEY, _LAST_EVENT_ID],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": _REF + "SlugChatRequest"}}}},
            "responses": {"200": {
                "description": "The reply, or with `stream: true` SSE `data: {\"chunk\"}` "
                               "frames then `data: [DONE]`.",
                "headers": _CONVERSATION_HEADER,
                "content": {"application/json": {"schema": {"$ref": _REF + "SlugReply"}},
                            **_SSE}},
                "204": {"description": "A reconnect with nothing left to send."},
                **_SLUG_ERROR},
        }},
        prefix + "/stop": {"post": {
            "operationId": f"{tag}Stop",
            "summary": "Stop the conversation's running turn.",
            "tags": ["slug"], "security": _SLUG_SECURITY, "parameters": [_SLUG_PARAM],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": _REF + "SlugStopRequest"}}}},
            "responses": {"200": _json({"$ref": _REF + "SlugStopReply"}, "Stopped or not"),
                          **_SLUG_ERROR},
        }},
        prefix + "/stream": {"get": {
            "operationId": f"{tag}Resume",
            "summary": "Reconnect to the conversation's stream (its latest turn, or after "
                       "`Last-Event-ID`).",
            "tags": ["slug"], "security": _SLUG_SECURITY,
            "parameters": [_SLUG_PARAM, _CONVERSATION_QUERY, _LAST_EVENT_ID],
            "responses": {"200": {"description": "SSE frames as the original stream",
                                  "headers": _CONVERSATION_HEADER, "content": _SSE},
                          "204": {"description": "Nothing left to send."},
                          **_SLUG_ERROR},
        }},
    }


SLUG_PATHS: dict[str, Any] = {**_slug_paths("/v1/api/chat/{slug}", "slug"),
                              **_slug_paths("/chat/{slug}", "slugShort")}

SLUG_COMPONENTS: dict[str, dict[str, Any]] = {
    "securitySchemes": {"SlugBearer": {"type": "http", "scheme": "bearer",
                                       "description": "A secret key (sk_...)."}},
    "schemas": {
        "SlugChatRequest": {"type": "object", "properties": {
            "message": {"type": ["string", "null"], "maxLength": limits.MAX_MESSAGE_CHARS},
            "stream": {"type": ["boolean", "null"]},
            "conversationId": {"type": ["string", "null"]},
        }},
        "SlugReply": {"type": "object", "required": ["data", "error"], "properties": {
            "data": {"type": "object", "required": ["response", "conversationId", "metadata"],
                     "properties": {
                         "response": {"type": "string"},
                         "conversationId": {"type": "string"},
                         "metadata": {"type": "object", "properties": {
                             "model": {"type": "string"}, "tokens": {"type": "integer"}}},
                     }},
            "error": {"type": "null"},
        }},
        "SlugStopRequest": {"type": "object", "required": ["conversationId"],
                            "properties": {"conversationId": {"type": "string"}}},
        "SlugStopReply": {"type": "object", "required": ["data", "error"], "properties": {
            "data": {"type": "object", "required": ["stopped", "conversationId"],
                     "properties": {"stopped": {"type": "boolean"},
                                    "conversationId": {"type": "string"}}},
            "error": {"type": "null"},
        }},
        "SlugError": {"type": "object", "required": ["data", "error"], "properties": {
            "data": {"type": "null"},
            "error": {"type": "object", "required": ["name", "message"], "properties": {
                "name": {"type": "string"}, "message": {"type": "string"},
                "details": {}}},
        }},
    },
}

# -- aibot --------------------------------------------------------------------------------

_AIBOT_SECURITY: list[dict[str, list[str]]] = [{"AibotBearer": []}]
_AIBOT_ERROR = {"default": _json({"$ref": _REF + "AibotError"},
                                 "The error object (any 4xx or 5xx)")}
_AGENT_PARAM = {"name": "AgentId", "in": "path", "required": True,
                "schema": {"type": "string"}}

AIBOT_PATHS: dict[str, Any] = {
    "/v1/aibot/bots/{AgentId}/send-message": {"post": {
        "operationId": "aibotSendMessage",
        "summary": "Send messages (or a resume) and stream the reply as typed SSE events; "
                   "`Accept: application/json` folds them into one object.",
        "tags": ["aibot"], "security": _AIBOT_SECURITY,
        "parameters": [_AGENT_PARAM, _IDEMPOTENCY_KEY, _LAST_EVENT_ID],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF + "AibotRequest"}}}},
        "responses": {"200": {
            "description": "SSE typed events then `data: [DONE]`, or the folded reply.",
            "headers": _CONVERSATION_HEADER,
            "content": {**_SSE, "application/json": {
                "schema": {"$ref": _REF + "AibotFolded"}}}},
            "204": {"description": "A reconnect with nothing left to send."},
            **_AIBOT_ERROR},
    }},
    "/v1/aibot/bots/{AgentId}/stop": {"post": {
        "operationId": "aibotStop", "summary": "Stop the conversation's running turn.",
        "tags": ["aibot"], "security": _AIBOT_SECURITY, "parameters": [_AGENT_PARAM],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF + "AibotStopRequest"}}}},
        "responses": {"200": _json({"type": "object", "required": ["stopped"], "properties": {
            "stopped": {"type": "boolean"}, "conversationId": {"type": "string"}}},
            "Stopped or not"), **_AIBOT_ERROR},
    }},
    "/v1/aibot/bots/{AgentId}/stream": {"get": {
        "operationId": "aibotResume",
        "summary": "Reconnect to the conversation's stream.",
        "tags": ["aibot"], "security": _AIBOT_SECURITY,
        "parameters": [_AGENT_PARAM, _CONVERSATION_QUERY, _LAST_EVENT_ID],
        "responses": {"200": {"description": "SSE frames as the original stream",
                              "headers": _CONVERSATION_HEADER, "content": _SSE},
                      "204": {"description": "Nothing left to send."},
                      **_AIBOT_ERROR},
    }},
}

AIBOT_COMPONENTS: dict[str, dict[str, Any]] = {
    "securitySchemes": {"AibotBearer": {"type": "http", "scheme": "bearer",
                                        "description": "A widget or secret key."}},
    "schemas": {
        "AibotRequest": {"type": "object", "properties": {
            "messages": {"type": ["array", "null"], "items": {
                "type": "object", "required": ["role"], "properties": {
                    "role": {"type": "string"},
                    "content": {"type": ["string", "array"]}}}},
            "tools": {"type": ["array", "null"], "items": {"type": "object"}},
            "resume": {"type": ["object", "null"], "properties": {
                "interruptId": {"type": "string"}, "payload": {"type": "object"}}},
            "conversationId": {"type": ["string", "null"]},
        }},
        "AibotFolded": {"type": "object", "required": ["conversationId", "content"],
                        "properties": {
                            "conversationId": {"type": "string"},
                            "content": {"type": "string"},
                            "toolCalls": {"type": "array", "items": {"type": "object"}},
                            "interrupt": {"type": ["object", "null"]}}},
        "AibotStopRequest": {"type": "object", "required": ["conversationId"],
                             "properties": {"conversationId": {"type": "string"}}},
        "AibotError": {"type": "object", "required": ["type", "status", "code", "message"],
                       "properties": {
                           "type": {"const": "error"}, "status": {"type": "integer"},
                           "code": {"type": "string"}, "message": {"type": "string"},
                           "details": {}}},
    },
}

# -- the shim's own endpoints -------------------------------------------------------------

OPS_PATHS: dict[str, Any] = {
    "/healthz": {"get": {"operationId": "healthz", "summary": "The shim process is up.",
                         "tags": ["ops"], "security": [],
                         "responses": {"200": _json({"type": "object"}, "Up")}}},
    "/readyz": {"get": {"operationId": "readyz",
                        "summary": "The core is reachable and can store data.",
                        "tags": ["ops"], "security": [],
                        "responses": {"200": _json({"type": "object"}, "Ready"),
                                      "503": _json({"type": "object"}, "Not ready")}}},
    "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document.",
                              "tags": ["ops"], "security": [],
                              "responses": {"200": _json({"type": "object"}, "OpenAPI")}}},
}
