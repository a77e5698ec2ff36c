"""The Halo SDK wire format: request body → `TurnInput`, core replies → Halo JSON and
stream records. Pure functions, no I/O; the rules themselves (lengths, modes, identity)
are the core's, this module only checks JSON types.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from shim.common import BadRequest
from switchboard.v1 import chat_pb2, events_pb2

DIALECT = "halo"
SESSION_PREFIX = "chat_"

# Stream record framing (spec): \x1E__ACTION__<json>\x1E and \x1E__ACTIONS__<json>\x1E.
RECORD_SEPARATOR = "\x1e"
# Text never carries a raw record separator, or a client would mistake it for framing:
# it is replaced by U+241E SYMBOL FOR RECORD SEPARATOR, which renders visibly and keeps
# the text's length. JSON records cannot contain one (JSON escapes control characters).
RS_REPLACEMENT = "\u241e"

_STRING_FIELDS = (
    "message", "user_id", "user_token", "session_id", "company_id", "mode", "agent_id",
    "behavior_context",
)


def _optional(body: dict[str, Any], name: str, kind: type, label: str) -> Any:
    """`body[name]` if present and not null; a BadRequest when it has the wrong JSON type."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadRequest(f"{name} must be {label}.", field=name)
    return value


def _present(data: dict[str, Any], name: str, default: Any) -> Any:
    """`data[name]`, or `default` when it is absent or null (null means absent)."""
    value = data.get(name)
    return default if value is None else value


def _struct(data: dict[str, Any], name: str) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    try:
        out.update(data)
    except (ValueError, TypeError) as exc:  # e.g. numbers too large for a double
        raise BadRequest(f"{name} holds a value that cannot be represented.",
                         field=name) from exc
    return out


def _value(data: Any, name: str) -> struct_pb2.Value:
    out = struct_pb2.Value()
    try:
        json_format.ParseDict(data, out)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise BadRequest(f"{name} holds a value that cannot be represented.",
                         field=name) from exc
    return out


def _context(raw: dict[str, Any]) -> dict[str, chat_pb2.ContextItem]:
    items: dict[str, chat_pb2.ContextItem] = {}
    for key, entry in raw.items():
        name = f"context.{key}"
        if not isinstance(entry, dict):
            raise BadRequest(f"{name} must be an object {{label, type?, value}}.", field=name)
        label = _present(entry, "label", key)
        kind = _present(entry, "type", "")
        if not isinstance(label, str) or not isinstance(kind, str):
            raise BadRequest(f"{name}.label and {name}.type must be strings.", field=name)
        if "value" not in entry:
            raise BadRequest(f"{name}.value is required.", field=name)
        items[key] = chat_pb2.ContextItem(
            label=label, type=kind, value=_value(entry["value"], name)
        )
    return items


def _history(raw: list[Any]) -> list[chat_pb2.HistoryMessage]:
    history = []
    for index, item in enumerate(raw):
        name = f"conversation_history[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{name} must be an object.", field="conversation_history")
        role = _present(item, "speaker", item.get("role"))
        text = _present(item, "text", item.get("content"))
        if not isinstance(role, str) or not isinstance(text, str):
            raise BadRequest(
                f"{name} needs a speaker (or role) and a text (or content) string.",
                field="conversation_history",
            )
        history.append(chat_pb2.HistoryMessage(role=role, content=text))
    return history


def parse_turn(body: dict[str, Any], *, origin: str = "", idempotency_key: str = "",
               metadata: dict[str, str] | None = None) -> chat_pb2.TurnInput:
    """A Halo request body as the core's `TurnInput`. Unknown fields are ignored (clients
    newer than this server keep working); null means absent."""
    strings = {name: _optional(body, name, str, "a string") for name in _STRING_FIELDS}
    images = _optional(body, "images", list, "an array of strings") or []
    if not all(isinstance(i, str) for i in images):
        raise BadRequest("images must be an array of strings.", field="images")
    custom = _optional(body, "custom_fields", dict, "an object") or {}
    context = _optional(body, "context", dict, "an object") or {}
    history = _optional(body, "conversation_history", list, "an array") or []
    turn = chat_pb2.TurnInput(
        message=strings["message"] or "",
        user_id=strings["user_id"] or "",
        user_token=strings["user_token"] or "",
        conversation_id=strings["session_id"] or "",
        company_id=strings["company_id"] or "",
        mode=strings["mode"] or "",
        agent=strings["agent_id"] or "",
        behavior_context=strings["behavior_context"] or "",
        images=images,
        history=_history(history),
        idempotency_key=idempotency_key,
        origin=origin,
        dialect=DIALECT,
        metadata=metadata or {},
    )
    if custom:
        turn.custom_fields.CopyFrom(_struct(custom, "custom_fields"))
    for key, item in _context(context).items():
        turn.context[key].CopyFrom(item)
    return turn


def session_id(conversation_id: str) -> str:
    """The Halo rendering of a canonical conversation id."""
    return SESSION_PREFIX + conversation_id


def _plain(value: Any) -> Any:
    """Struct numbers are doubles: render integral ones as JSON integers again."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        # Sorted: a Struct's map order differs between processes, and a replay (after a
        # restart, on another shim) must be byte-identical to the original.
        return {k: _plain(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def action_json(action: events_pb2.Action) -> dict[str, Any]:
    """One action as Halo renders it: `{"type": ..., "payload": {...}}`."""
    payload = json_format.MessageToDict(action.payload) if action.HasField("payload") else {}
    return {"type": action.type, "payload": _plain(payload)}


def reply_json(reply: chat_pb2.ChatResponse) -> dict[str, Any]:
    """The `/api/sdk/chat` response body."""
    completed = reply.completed
    body: dict[str, Any] = {
        "text": completed.text,
        "session_id": session_id(reply.conversation_id),
        "agent_id": reply.agent_id,
        "actions": [action_json(a) for a in completed.actions],
        "confidence": round(max(0.0, min(1.0, completed.confidence)), 4),
    }
    if completed.HasField("routing") and completed.routing.action:
        routing: dict[str, Any] = {"action": completed.routing.action}
        if completed.routing.ticket_id:
            routing["ticket_id"] = completed.routing.ticket_id
        body["routing"] = routing
    return body


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def stream_text(text: str) -> str:
    """A text delta as it goes on the stream (record separators neutralised)."""
    return text.replace(RECORD_SEPARATOR, RS_REPLACEMENT)


def action_record(action: events_pb2.Action) -> str:
    return f"{RECORD_SEPARATOR}__ACTION__{_dumps(action_json(action))}{RECORD_SEPARATOR}"


def actions_record(actions: list[dict[str, Any]]) -> str:
    return f"{RECORD_SEPARATOR}__ACTIONS__{_dumps(actions)}{RECORD_SEPARATOR}"


def error_record(code: str, message: str) -> str:
    """A failure after the headers went out, as an action record of type `error` (clients
    that strip records per the spec never show it as text)."""
    payload = {"type": "error", "payload": {"code": code, "message": message}}
    return f"{RECORD_SEPARATOR}__ACTION__{_dumps(payload)}{RECORD_SEPARATOR}"
