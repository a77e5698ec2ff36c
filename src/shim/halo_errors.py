"""The Halo dialect's error envelope and its error table (the generic one, overridden).

Every error is `{"error": {"code": "<stable code>", "message": "<human text>"}}` (plus
`"field"` when one request field is at fault), with the HTTP status below. The table is
keyed by the core's ErrorInfo reason first and falls back on the gRPC code; a test fails
if any `core.errors.Reason` or any gRPC status code is missing. Halo documents the
statuses 400, 401, 403, 404, 413, 422, 429, 500 and 503, so every entry uses one of them
(the generic grpc-gateway table would also produce 409, 499, 501 and 504).
"""

from __future__ import annotations

import math
from typing import Any, Final

from aiohttp import web

from shim.core_client import CoreError
from shim.status_map import GENERIC

HALO_STATUSES = frozenset({400, 401, 403, 404, 413, 422, 429, 500, 503})

# What Halo says differently from the generic table (status_map.GENERIC): a conversation
# is a "session" here, and only Halo's documented statuses are used.
TABLE: Final = GENERIC.override(
    reasons={
        "invalid_input": (400, "invalid_request"),
        "session_expired": (401, "unauthorized"),
        "no_active_agent": (404, "no_active_agent"),
        "conversation_not_found": (404, "session_not_found"),
        "intent_not_found": (404, "not_found"),
        "wait_not_found": (404, "not_found"),
        # Reasons of the other dialects' features (client tools, flows, idempotency): a
        # Halo request can only meet them through a shared conversation or key; all "the
        # request is well-formed but cannot be processed in the current state".
        "interrupt_expired": (422, "unprocessable"),
        "interrupt_already_resumed": (422, "unprocessable"),
        "interrupt_pending": (422, "interrupt_pending"),
        "wait_expired": (422, "unprocessable"),
        "wait_already_used": (422, "unprocessable"),
        "input_mismatch": (422, "unprocessable"),
        # Operator-route reasons (docs/handoff.md), if a Halo route ever meets them.
        "handoff_state": (422, "unprocessable"),
        "handoff_claimed": (422, "unprocessable"),
        "idempotency_mismatch": (422, "idempotency_mismatch"),
        # A turn is already running in this session: retry once it ended.
        "turn_in_progress": (429, "turn_in_progress"),
        "provider_error": (503, "agent_unavailable"),
        "cancelled": (503, "unavailable"),
        "deadline_exceeded": (503, "timeout"),
    },
    codes={
        "CANCELLED": (503, "unavailable"),
        "DEADLINE_EXCEEDED": (503, "timeout"),
        "ALREADY_EXISTS": (422, "unprocessable"),
        # Without a reason this comes from gRPC itself: the request exceeded the channel's
        # message size, i.e. the body was too large (the core's limits carry a reason).
        "RESOURCE_EXHAUSTED": (413, "payload_too_large"),
        "ABORTED": (429, "conflict"),
        "UNIMPLEMENTED": (500, "not_implemented"),
    },
    messages={
        400: "The request is invalid.",
        401: "Invalid or missing API key.",
        403: "This key may not do that.",
        404: "Not found.",
        413: "The request body is too large.",
        422: "The request cannot be processed in the current state.",
        429: "Too many requests; retry shortly.",
        500: "Internal error.",
        503: "The service is temporarily unavailable; retry shortly.",
    },
)
BY_REASON: Final = TABLE.by_reason
BY_CODE: Final = TABLE.by_code


def status_and_code(error: CoreError) -> tuple[int, str]:
    """The HTTP status and Halo code of a core error: by reason, then by gRPC code."""
    return TABLE.entry(error)


def error_body(error: CoreError) -> dict[str, Any]:
    _, code = status_and_code(error)
    body: dict[str, Any] = {"code": code, "message": TABLE.public_message(error)}
    field = error.metadata.get("field")
    if field:
        body["field"] = field
    return {"error": body}


def error_response(error: CoreError) -> web.Response:
    """The Halo error envelope with its status (and Retry-After on 429 and 503)."""
    status, _ = status_and_code(error)
    headers = {}
    if error.retry_after_s is not None:
        # Whole seconds, rounded up: a client retrying on time must not be refused again.
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    elif status in (429, 503):
        # Documented on every 429 and 503, also when the core gave no delay (a turn
        # already running in the session).
        headers["Retry-After"] = "1"
    return web.json_response(error_body(error), status=status, headers=headers)
