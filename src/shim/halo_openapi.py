"""The Halo dialect's OpenAPI 3.1 description (registered by `shim.halo.setup`)."""

from __future__ import annotations

from typing import Any

from core import limits

_REF = "#/components/schemas/"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + "HaloError"}}},
    }


SCHEMAS: dict[str, Any] = {
    "HaloContextEntry": {
        "type": "object",
        "description": "A structured context entry handed to the agent.",
        "properties": {
            "label": {"type": "string", "description": "Defaults to the entry's key."},
            "type": {"type": "string"},
            "value": {"description": "Any JSON value."},
        },
        "required": ["value"],
    },
    "HaloHistoryItem": {
        "type": "object",
        "description": "A prior message; `speaker` or `role`, and `text` or `content`.",
        "properties": {
            "speaker": {"type": "string"},
            "role": {"type": "string"},
            "text": {"type": "string"},
            "content": {"type": "string"},
        },
    },
    "HaloChatRequest": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "maxLength": limits.MAX_MESSAGE_CHARS},
            "user_id": _nullable({"type": "string", "default": "anonymous",
                                  "maxLength": limits.MAX_USER_ID_CHARS}),
            "user_token": _nullable({
                "type": "string",
                "description": "HS256 JWT signed with the Identity Secret; needs exp and a "
                               "user_id claim equal to user_id.",
            }),
            "session_id": _nullable({"type": "string", "description": "chat_<uuid>"}),
            "company_id": _nullable({"type": "string"}),
            "mode": _nullable({"type": "string", "enum": ["chat", "voice", "video",
                                                          "livehelp", None],
                               "default": "chat"}),
            "agent_id": _nullable({"type": "string"}),
            "images": _nullable({
                "type": "array", "maxItems": limits.MAX_IMAGES,
                "items": {"type": "string", "description": "http(s) URL or data:image/ URL"},
            }),
            "custom_fields": _nullable({"type": "object",
                                        "maxProperties": limits.MAX_CUSTOM_FIELDS}),
            "context": _nullable({
                "type": "object", "maxProperties": limits.MAX_CONTEXT_ENTRIES,
                "additionalProperties": {"$ref": _REF + "HaloContextEntry"},
            }),
            "conversation_history": _nullable({
                "type": "array", "maxItems": limits.MAX_HISTORY_ITEMS,
                "items": {"$ref": _REF + "HaloHistoryItem"},
            }),
            "behavior_context": _nullable({
                "type": "string", "maxLength": limits.MAX_BEHAVIOR_CONTEXT_CHARS,
            }),
        },
    },
    "HaloAction": {
        "type": "object",
        "required": ["type", "payload"],
        "properties": {"type": {"type": "string"}, "payload": {"type": "object"}},
    },
    "HaloRouting": {
        "type": "object",
        "required": ["action"],
        "properties": {"action": {"type": "string"}, "ticket_id": {"type": "string"}},
    },
    "HaloChatResponse": {
        "type": "object",
        "required": ["text", "session_id", "agent_id", "actions", "confidence"],
        "properties": {
            "text": {"type": "string"},
            "session_id": {"type": "string"},
            "agent_id": {"type": "string"},
            "actions": {"type": "array", "items": {"$ref": _REF + "HaloAction"}},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "routing": {"$ref": _REF + "HaloRouting"},
        },
    },
    "HaloStopRequest": {
        "type": "object",
        "required": ["session_id"],
        "properties": {
            "session_id": {"type": "string", "description": "chat_<uuid>"},
            "user_id": {"type": "string", "description": "Who asks (a verified user's "
                        "session is only theirs; see docs/halo.md, Identity model)."},
            "user_token": {"type": "string", "description": "JWT proving user_id."},
        },
    },
    "HaloStopResponse": {
        "type": "object",
        "required": ["stopped", "session_id"],
        "properties": {
            "stopped": {"type": "boolean",
                        "description": "False when no turn was running."},
            "session_id": {"type": "string"},
        },
    },
    "HaloHistoryMessage": {
        "type": "object",
        "required": ["role", "text", "actions", "created_at"],
        "properties": {
            "role": {"type": "string", "enum": ["user", "assistant", "operator"]},
            "text": {"type": "string"},
            "actions": {"type": "array", "items": {"$ref": _REF + "HaloAction"}},
            "created_at": {"type": "string", "format": "date-time"},
            "operator_name": {"type": "string",
                              "description": "For role operator: who wrote it."},
        },
    },
    "HaloHistoryResponse": {
        "type": "object",
        "required": ["session_id", "messages", "next_page_token"],
        "properties": {
            "session_id": {"type": "string"},
            "messages": {"type": "array", "items": {"$ref": _REF + "HaloHistoryMessage"}},
            "next_page_token": {
                "type": ["string", "null"],
                "description": "Pass as `page_token` for the next page; null on the last.",
            },
        },
    },
    "HaloError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            },
        },
    },
}

_ERRORS = {
    "400": _error("Invalid request (malformed JSON, a field's type or limit)."),
    "401": _error("Missing, malformed or unknown key; invalid or missing user_token."),
    "403": _error("A widget key used from an origin not on the allow-list."),
    "404": _error("Unknown session_id or agent_id."),
    "413": _error("Request body too large."),
    "422": _error("The session cannot take this request in its current state."),
    "429": _error("Rate limited (`rate_limited`), over a spend budget (`budget_exceeded`), "
                  "or a turn is already running in this session; see `Retry-After`."),
    "500": _error("Internal error."),
    "503": _error("Temporarily unavailable; retry."),
}

_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": _REF + "HaloChatRequest"}}},
}

_SECURITY: list[dict[str, list[str]]] = [{"haloKey": []}]

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Names the turn for 24 hours: the same key with the same body replays "
                   "it (attaching to it while it runs); with a different body it is a 422 "
                   "`idempotency_mismatch`.",
    "schema": {"type": "string", "maxLength": limits.MAX_IDEMPOTENCY_KEY_CHARS},
}

_STREAM_HEADERS = {
    "X-Session-Id": {"schema": {"type": "string"},
                     "description": "The session id (chat_<uuid>)."},
    "X-Agent-Id": {"schema": {"type": "string"},
                   "description": "The agent handling the request."},
}

PATHS: dict[str, Any] = {
    "/api/sdk/chat": {
        "post": {
            "operationId": "haloChat",
            "summary": "Send a message and receive the complete reply.",
            "tags": ["halo"],
            "security": _SECURITY,
            "parameters": [_IDEMPOTENCY_KEY],
            "requestBody": _REQUEST_BODY,
            "responses": {
                "200": {
                    "description": "The agent's reply.",
                    "content": {
                        "application/json": {"schema": {"$ref": _REF + "HaloChatResponse"}}
                    },
                },
                **_ERRORS,
            },
        },
    },
    "/api/sdk/chat/stream": {
        "post": {
            "operationId": "haloChatStream",
            "summary": "Send a message and stream the reply as chunked text.",
            "description": "Text deltas as they are produced; actions as "
                           "`\\x1E__ACTION__<json>\\x1E` records, a final "
                           "`\\x1E__ACTIONS__<json-array>\\x1E` record.",
            "tags": ["halo"],
            "security": _SECURITY,
            "parameters": [_IDEMPOTENCY_KEY],
            "requestBody": _REQUEST_BODY,
            "responses": {
                "200": {
                    "description": "The reply, streamed.",
                    "headers": _STREAM_HEADERS,
                    "content": {"text/plain; charset=utf-8": {"schema": {"type": "string"}}},
                },
                **_ERRORS,
            },
        },
    },
    "/api/sdk/chat/stop": {
        "post": {
            "operationId": "haloChatStop",
            "summary": "Stop the session's running turn.",
            "description": "Answers once the turn is stored with its partial text and usage; "
                           "its stream ends as usual with the final `__ACTIONS__` record.",
            "tags": ["halo"],
            "security": _SECURITY,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": _REF + "HaloStopRequest"}}},
            },
            "responses": {
                "200": {
                    "description": "Whether a running turn was stopped.",
                    "content": {
                        "application/json": {"schema": {"$ref": _REF + "HaloStopResponse"}}
                    },
                },
                **_ERRORS,
            },
        },
    },
    "/api/sdk/chat/stream/resume": {
        "get": {
            "operationId": "haloChatStreamResume",
            "summary": "Resume the session's latest stream after a byte offset.",
            "description": "The latest turn of the session exactly as `/api/sdk/chat/stream` "
                           "rendered it, without its first `offset` bytes, following the turn "
                           "live while it runs: the bytes received before a cut followed by "
                           "this body are the uninterrupted stream.",
            "tags": ["halo"],
            "security": _SECURITY,
            "parameters": [
                {"name": "session_id", "in": "query", "required": True,
                 "schema": {"type": "string"}, "description": "chat_<uuid>"},
                {"name": "offset", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "default": 0},
                 "description": "Bytes of the stream body already received."},
                {"name": "user_id", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "Who asks (a verified user's session is only theirs)."},
                {"name": "user_token", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "JWT proving user_id."},
            ],
            "responses": {
                "200": {
                    "description": "The rest of the stream.",
                    "headers": _STREAM_HEADERS,
                    "content": {"text/plain; charset=utf-8": {"schema": {"type": "string"}}},
                },
                **_ERRORS,
            },
        },
    },
    "/api/sdk/chat/history": {
        "get": {
            "operationId": "haloChatHistory",
            "summary": "The session's messages, oldest first (the widget after a reload).",
            "description": "Readable with the key the session was started with, by the "
                           "same visitor: a verified user's session only with their "
                           "user_token, another visitor's or a secret-key session is a 404. "
                           "Tool messages and empty replies are left out, so a page may "
                           "hold fewer than `limit` messages.",
            "tags": ["halo"],
            "security": _SECURITY,
            "parameters": [
                {"name": "session_id", "in": "query", "required": True,
                 "schema": {"type": "string"}, "description": "chat_<uuid>"},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1,
                            "maximum": limits.LIST_MESSAGES_MAX_PAGE,
                            "default": limits.LIST_MESSAGES_DEFAULT_PAGE},
                 "description": "Messages per page (stored messages, before tool messages "
                                "are left out)."},
                {"name": "page_token", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "`next_page_token` of the previous page."},
                {"name": "user_id", "in": "query", "required": False,
                 "schema": {"type": "string"},
                 "description": "Who asks (a verified user's session is only theirs)."},
                {"name": "user_token", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "JWT proving user_id."},
            ],
            "responses": {
                "200": {
                    "description": "One page of the transcript.",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": _REF + "HaloHistoryResponse"}
                        }
                    },
                },
                **_ERRORS,
            },
        },
    },
    "/api/sdk/chat/listen": {
        "get": {
            "operationId": "haloChatListen",
            "summary": "Follow the session live (SSE): operator messages, handoff state "
                       "changes and the bot's replies (docs/handoff.md).",
            "description": "Admitted like the history: the same visitor only. Each event "
                           "has `id:` (resume with Last-Event-ID or `lastEventId`), "
                           "`event: message|state` and JSON `data:`. Without a cursor it "
                           "starts from now.",
            "tags": ["halo"],
            "security": _SECURITY,
            "parameters": [
                {"name": "session_id", "in": "query", "required": True,
                 "schema": {"type": "string"}, "description": "chat_<uuid>"},
                {"name": "user_id", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "user_token", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "lastEventId", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "Resume after this event id."},
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string"}, "description": "Resume after this event id."},
            ],
            "responses": {
                "200": {"description": "The event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                **_ERRORS,
            },
        },
    },
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "schemas": SCHEMAS,
    "securitySchemes": {
        "haloKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "Publishable widget key (ab_live_...) or secret key.",
        },
    },
}
