"""The Halo dialect's error envelope and its one error table.

Every error is `{"error": {"code": "<stable code>", "message": "<human text>"}}` (plus
`"field"` when one request field is at fault), with the HTTP status below. The table is
keyed by the core's ErrorInfo reason first and falls back on the gRPC code; a test fails
if any `core.errors.Reason` or any gRPC status code is missing. Halo documents the
statuses 400, 401, 403, 404, 413, 422, 429, 500 and 503, so every entry uses one of them
(the generic grpc-gateway table would also produce 409, 499, 501 and 504).
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from shim.core_client import CoreError

HALO_STATUSES = frozenset({400, 401, 403, 404, 413, 422, 429, 500, 503})

# reason → (HTTP status, Halo error code). The code is the reason itself unless Halo has
# its own word for the thing (a conversation is a "session" here).
BY_REASON: dict[str, tuple[int, str]] = {
    "invalid_argument": (400, "invalid_request"),
    "message_required": (400, "message_required"),
    "message_too_long": (400, "message_too_long"),
    "field_too_long": (400, "field_too_long"),
    "invalid_mode": (400, "invalid_mode"),
    "invalid_images": (400, "invalid_images"),
    "invalid_tools": (400, "invalid_request"),
    "invalid_input": (400, "invalid_request"),
    "unauthenticated": (401, "unauthorized"),
    "identity_required": (401, "identity_required"),
    "identity_invalid": (401, "identity_invalid"),
    "session_expired": (401, "unauthorized"),
    "origin_not_allowed": (403, "origin_not_allowed"),
    "key_scope": (403, "forbidden"),
    "agent_not_found": (404, "agent_not_found"),
    "no_active_agent": (404, "no_active_agent"),
    "conversation_not_found": (404, "session_not_found"),
    "interrupt_not_found": (404, "not_found"),
    "intent_not_found": (404, "not_found"),
    "wait_not_found": (404, "not_found"),
    "payload_too_large": (413, "payload_too_large"),
    # Reasons of the other dialects' features (client tools, flows, idempotency): a Halo
    # request can only meet them through a shared conversation or key; all "the request
    # is well-formed but cannot be processed in the current state".
    "interrupt_expired": (422, "unprocessable"),
    "interrupt_already_resumed": (422, "unprocessable"),
    "interrupt_pending": (422, "interrupt_pending"),
    "wait_expired": (422, "unprocessable"),
    "wait_already_used": (422, "unprocessable"),
    "input_mismatch": (422, "unprocessable"),
    "validation_failed": (422, "validation_failed"),
    "idempotency_mismatch": (422, "idempotency_mismatch"),
    # A turn is already running in this session: retry once it ended.
    "turn_in_progress": (429, "turn_in_progress"),
    "rate_limited": (429, "rate_limited"),
    "concurrency_limited": (429, "rate_limited"),
    "budget_exceeded": (429, "budget_exceeded"),
    "storage_quota_exceeded": (429, "storage_quota_exceeded"),
    "provider_error": (503, "agent_unavailable"),
    "shutting_down": (503, "unavailable"),
    "store_unavailable": (503, "unavailable"),
    "turn_incomplete": (503, "incomplete"),
    "cancelled": (503, "unavailable"),
    "deadline_exceeded": (503, "timeout"),
    "internal": (500, "internal_error"),
}

# gRPC code → (HTTP status, Halo error code), for errors without a known reason (the
# transport's own: unreachable core, deadline, oversized message).
BY_CODE: dict[str, tuple[int, str]] = {
    "OK": (500, "internal_error"),  # never an error; listed so the table is total
    "CANCELLED": (503, "unavailable"),
    "UNKNOWN": (500, "internal_error"),
    "INVALID_ARGUMENT": (400, "invalid_request"),
    "DEADLINE_EXCEEDED": (503, "timeout"),
    "NOT_FOUND": (404, "not_found"),
    "ALREADY_EXISTS": (422, "unprocessable"),
    "PERMISSION_DENIED": (403, "forbidden"),
    # Without a reason this comes from gRPC itself: the request exceeded the channel's
    # message size, i.e. the body was too large (the core's limits all carry a reason).
    "RESOURCE_EXHAUSTED": (413, "payload_too_large"),
    "FAILED_PRECONDITION": (400, "invalid_request"),
    "ABORTED": (429, "conflict"),
    "OUT_OF_RANGE": (400, "invalid_request"),
    "UNIMPLEMENTED": (500, "not_implemented"),
    "INTERNAL": (500, "internal_error"),
    "UNAVAILABLE": (503, "unavailable"),
    "DATA_LOSS": (500, "internal_error"),
    "UNAUTHENTICATED": (401, "unauthorized"),
}


def status_and_code(error: CoreError) -> tuple[int, str]:
    """The HTTP status and Halo code of a core error: by reason, then by gRPC code."""
    return BY_REASON.get(error.reason) or BY_CODE.get(error.code) or (500, "internal_error")


# Messages for errors the core did not describe itself: gRPC transport details (peer
# addresses, stack of the channel) are not for public clients.
_GENERIC_MESSAGES = {
    400: "The request is invalid.",
    401: "Invalid or missing API key.",
    403: "This key may not do that.",
    404: "Not found.",
    413: "The request body is too large.",
    422: "The request cannot be processed in the current state.",
    429: "Too many requests; retry shortly.",
    500: "Internal error.",
    503: "The service is temporarily unavailable; retry shortly.",
}


def error_body(error: CoreError) -> dict[str, Any]:
    status, code = status_and_code(error)
    described = error.reason in BY_REASON and error.message
    message = error.message if described else _GENERIC_MESSAGES[status]
    body: dict[str, Any] = {"code": code, "message": message}
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
