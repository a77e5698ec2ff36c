"""Intake: the request rules every dialect shares, checked before anything is written."""

from __future__ import annotations

import json
from typing import Any

from core import limits
from core.domain import TurnRequest
from core.errors import Code, Reason, SwitchboardError, invalid

MODES = ("chat", "voice", "video", "livehelp")


def _too_long(field: str, limit: int, unit: str = "characters") -> SwitchboardError:
    return SwitchboardError(
        Code.INVALID_ARGUMENT,
        Reason.MESSAGE_TOO_LONG if field == "message" else Reason.FIELD_TOO_LONG,
        f"{field} must be at most {limit:,} {unit}.",
        {"field": field, "limit": str(limit)},
    )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def validate(request: TurnRequest) -> str:
    """Check the request's limits; returns the effective mode. Lengths are counted in
    code points (Python str length), as the specs' "characters"."""
    if request.resume is None and not request.message.strip():
        raise SwitchboardError(
            Code.INVALID_ARGUMENT, Reason.MESSAGE_REQUIRED, "message is required.",
            {"field": "message"},
        )
    if len(request.message) > limits.MAX_MESSAGE_CHARS:
        raise _too_long("message", limits.MAX_MESSAGE_CHARS)
    if len(request.behavior_context) > limits.MAX_BEHAVIOR_CONTEXT_CHARS:
        raise _too_long("behavior_context", limits.MAX_BEHAVIOR_CONTEXT_CHARS)
    if len(request.user_id) > limits.MAX_USER_ID_CHARS:
        raise _too_long("user_id", limits.MAX_USER_ID_CHARS)
    for name, value in (("agent", request.agent), ("conversation_id", request.conversation_id),
                        ("interrupt_id", request.resume.interrupt_id if request.resume else "")):
        if len(value) > limits.MAX_REFERENCE_CHARS:
            raise _too_long(name, limits.MAX_REFERENCE_CHARS)
    if len(request.company_id) > limits.MAX_COMPANY_ID_CHARS:
        raise _too_long("company_id", limits.MAX_COMPANY_ID_CHARS)
    if len(request.idempotency_key) > limits.MAX_IDEMPOTENCY_KEY_CHARS:
        raise _too_long("idempotency_key", limits.MAX_IDEMPOTENCY_KEY_CHARS)
    mode = request.mode or "chat"
    if mode not in MODES:
        raise SwitchboardError(
            Code.INVALID_ARGUMENT, Reason.INVALID_MODE,
            f"mode must be one of {', '.join(MODES)}.", {"field": "mode"},
        )
    if len(request.images) > limits.MAX_IMAGES:
        raise SwitchboardError(
            Code.INVALID_ARGUMENT, Reason.INVALID_IMAGES,
            f"images may hold at most {limits.MAX_IMAGES} items.", {"field": "images"},
        )
    for image in request.images:
        if not image.startswith(("https://", "http://", "data:image/")):
            raise invalid(Reason.INVALID_IMAGES, "images must be http(s) URLs or data:image/ URLs.",
                          field="images")
        if len(image.encode("utf-8")) > limits.MAX_IMAGE_URL_BYTES:
            raise SwitchboardError(
                Code.INVALID_ARGUMENT, Reason.INVALID_IMAGES,
                f"each image must be at most {limits.MAX_IMAGE_URL_BYTES:,} bytes.",
                {"field": "images"},
            )
    if len(request.history) > limits.MAX_HISTORY_ITEMS:
        raise _too_long("conversation_history", limits.MAX_HISTORY_ITEMS, "items")
    for item in request.history:
        if len(item.content) > limits.MAX_HISTORY_ITEM_CHARS:
            raise _too_long("conversation_history[].content", limits.MAX_HISTORY_ITEM_CHARS)
    if len(request.context) > limits.MAX_CONTEXT_ENTRIES:
        raise _too_long("context", limits.MAX_CONTEXT_ENTRIES, "entries")
    if request.context and _json_size(
        {k: [v.label, v.type, v.value] for k, v in request.context.items()}
    ) > limits.MAX_CONTEXT_JSON_BYTES:
        raise _too_long("context", limits.MAX_CONTEXT_JSON_BYTES, "bytes")
    if len(request.custom_fields) > limits.MAX_CUSTOM_FIELDS:
        raise _too_long("custom_fields", limits.MAX_CUSTOM_FIELDS, "keys")
    if request.custom_fields and _json_size(request.custom_fields) > (
        limits.MAX_CUSTOM_FIELDS_JSON_BYTES
    ):
        raise _too_long("custom_fields", limits.MAX_CUSTOM_FIELDS_JSON_BYTES, "bytes")
    if len(request.client_tools) > limits.MAX_CLIENT_TOOLS:
        raise _too_long("tools", limits.MAX_CLIENT_TOOLS, "tools")
    return mode
