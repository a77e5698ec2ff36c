"""The generic error tables every dialect starts from.

`BY_CODE`: gRPC status → HTTP status, as grpc-gateway v2 and Envoy's transcoder map them
(total over every gRPC code; OK is listed only so the table is total). `BY_REASON`:
ErrorInfo reason → HTTP status, the same mapping refined where an HTTP status says more
(410 for an expired interrupt or wait, 413 for an oversized body, 422 for validation
failures). A dialect whose spec documents other codes overrides entries by reason; tests
fail if any core reason or gRPC code is missing from a dialect's tables.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from shim.core_client import CoreError

BY_CODE: Final = MappingProxyType({
    "OK": 500,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
})

BY_REASON: Final = MappingProxyType({
    "invalid_argument": 400,
    "message_required": 400,
    "message_too_long": 400,
    "field_too_long": 400,
    "invalid_mode": 400,
    "invalid_images": 400,
    "invalid_tools": 400,
    "invalid_input": 400,
    "input_mismatch": 400,
    "no_active_agent": 400,
    "unauthenticated": 401,
    "identity_required": 401,
    "identity_invalid": 401,
    "session_expired": 401,
    "origin_not_allowed": 403,
    "key_scope": 403,
    "agent_not_found": 404,
    "conversation_not_found": 404,
    "interrupt_not_found": 404,
    "intent_not_found": 404,
    "wait_not_found": 404,
    "interrupt_already_resumed": 409,
    "interrupt_pending": 409,
    "turn_in_progress": 409,
    "idempotency_mismatch": 409,
    "wait_already_used": 409,
    "interrupt_expired": 410,
    "wait_expired": 410,
    "payload_too_large": 413,
    "validation_failed": 422,
    "rate_limited": 429,
    "concurrency_limited": 429,
    "budget_exceeded": 429,
    "storage_quota_exceeded": 429,
    "cancelled": 499,
    "internal": 500,
    "provider_error": 503,
    "shutting_down": 503,
    "store_unavailable": 503,
    "turn_incomplete": 503,
    "deadline_exceeded": 504,
})


def http_status(code: str, reason: str = "") -> int:
    """The generic HTTP status of a core error."""
    return BY_REASON.get(reason) or BY_CODE.get(code, 500)


# Messages for errors the core did not describe (no ErrorInfo reason): gRPC's own, whose
# text (peer addresses, "CLIENT: Sent message larger than max ...") is not for clients.
GENERIC_MESSAGES: Final = MappingProxyType({
    400: "The request is invalid.",
    401: "Invalid or missing API key.",
    403: "This key may not do that.",
    404: "Not found.",
    409: "The request conflicts with the current state; retry later.",
    410: "This is no longer available.",
    413: "The request is too large.",
    422: "The request cannot be processed.",
    429: "Too many requests; retry shortly.",
    499: "The request was cancelled.",
    500: "Internal error.",
    501: "Not implemented.",
    503: "The service is temporarily unavailable; retry shortly.",
    504: "The request timed out.",
})


def public_message(error: CoreError, status: int) -> str:
    """The message a client may see: the core's own when it described the error (it has
    a reason), else the generic one for the HTTP status."""
    if error.reason and error.message:
        return error.message
    return GENERIC_MESSAGES.get(status, GENERIC_MESSAGES[500])
