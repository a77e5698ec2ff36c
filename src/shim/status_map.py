"""The one error-table mechanism of the shim, and the generic table every dialect
starts from.

An `ErrorTable` maps a core error to an HTTP status and a stable error code: by the
core's ErrorInfo reason first, then by gRPC code (errors the core did not describe: the
transport's own). `GENERIC` follows grpc-gateway v2 / Envoy's transcoder, refined where
an HTTP status says more (410 for an expired interrupt or wait, 413 for an oversized
body, 422 for validation failures). A dialect whose spec documents other statuses or
codes derives its table with `GENERIC.override(...)`, listing only what differs; tests
fail if any core reason or gRPC code is missing from a dialect's table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from shim.core_client import CoreError

Entry = tuple[int, str]  # (HTTP status, error code)


@dataclass(frozen=True)
class ErrorTable:
    by_reason: Mapping[str, Entry]
    by_code: Mapping[str, Entry]
    # Messages for errors the core did not describe: gRPC's own text (peer addresses,
    # "CLIENT: Sent message larger than max ...") is not for clients.
    messages: Mapping[int, str]
    fallback_message: str

    def entry(self, error: CoreError) -> Entry:
        return (self.by_reason.get(error.reason) or self.by_code.get(error.code)
                or (500, "internal_error"))

    def status(self, error: CoreError) -> int:
        return self.entry(error)[0]

    def public_message(self, error: CoreError) -> str:
        """The core's own message when it described the error (a known reason), else
        this table's generic one for the status."""
        if error.reason in self.by_reason and error.message:
            return error.message
        return self.messages.get(self.status(error), self.fallback_message)

    def override(
        self,
        *,
        reasons: Mapping[str, Entry] | None = None,
        codes: Mapping[str, Entry] | None = None,
        messages: Mapping[int, str] | None = None,
        fallback_message: str | None = None,
    ) -> ErrorTable:
        """This table with a dialect's own entries (and messages, when given, replace
        the generic ones whole)."""
        return ErrorTable(
            by_reason=MappingProxyType({**self.by_reason, **(reasons or {})}),
            by_code=MappingProxyType({**self.by_code, **(codes or {})}),
            messages=MappingProxyType(dict(messages if messages is not None
                                           else self.messages)),
            fallback_message=(self.fallback_message if fallback_message is None
                              else fallback_message),
        )


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

GENERIC: Final = ErrorTable(
    by_reason=MappingProxyType({
        "invalid_argument": (400, "invalid_request"),
        "message_required": (400, "message_required"),
        "message_too_long": (400, "message_too_long"),
        "field_too_long": (400, "field_too_long"),
        "invalid_mode": (400, "invalid_mode"),
        "invalid_images": (400, "invalid_images"),
        "invalid_tools": (400, "invalid_request"),
        "invalid_input": (400, "invalid_input"),
        "input_mismatch": (400, "input_mismatch"),
        "no_active_agent": (400, "no_active_agent"),
        "unauthenticated": (401, "unauthorized"),
        "identity_required": (401, "identity_required"),
        "identity_invalid": (401, "identity_invalid"),
        "session_expired": (401, "session_expired"),
        "origin_not_allowed": (403, "origin_not_allowed"),
        "key_scope": (403, "forbidden"),
        "agent_not_found": (404, "agent_not_found"),
        "conversation_not_found": (404, "conversation_not_found"),
        "interrupt_not_found": (404, "not_found"),
        "intent_not_found": (404, "intent_not_found"),
        "wait_not_found": (404, "wait_not_found"),
        "interrupt_already_resumed": (409, "interrupt_already_resumed"),
        "interrupt_pending": (409, "interrupt_pending"),
        "turn_in_progress": (409, "turn_in_progress"),
        "idempotency_mismatch": (409, "idempotency_mismatch"),
        "wait_already_used": (409, "wait_already_used"),
        "handoff_state": (400, "handoff_state"),
        "handoff_claimed": (409, "handoff_claimed"),
        "interrupt_expired": (410, "interrupt_expired"),
        "wait_expired": (410, "wait_expired"),
        "payload_too_large": (413, "payload_too_large"),
        "validation_failed": (422, "validation_failed"),
        "rate_limited": (429, "rate_limited"),
        "concurrency_limited": (429, "rate_limited"),
        "budget_exceeded": (429, "budget_exceeded"),
        "storage_quota_exceeded": (429, "storage_quota_exceeded"),
        "cancelled": (499, "cancelled"),
        "internal": (500, "internal_error"),
        "provider_error": (503, "provider_error"),
        "shutting_down": (503, "unavailable"),
        "store_unavailable": (503, "unavailable"),
        "turn_incomplete": (503, "incomplete"),
        "deadline_exceeded": (504, "timeout"),
    }),
    by_code=MappingProxyType({
        "OK": (500, "internal_error"),  # never an error; listed so the table is total
        "CANCELLED": (499, "cancelled"),
        "UNKNOWN": (500, "internal_error"),
        "INVALID_ARGUMENT": (400, "invalid_request"),
        "DEADLINE_EXCEEDED": (504, "timeout"),
        "NOT_FOUND": (404, "not_found"),
        "ALREADY_EXISTS": (409, "conflict"),
        "PERMISSION_DENIED": (403, "forbidden"),
        "RESOURCE_EXHAUSTED": (429, "resource_exhausted"),
        "FAILED_PRECONDITION": (400, "invalid_request"),
        "ABORTED": (409, "conflict"),
        "OUT_OF_RANGE": (400, "invalid_request"),
        "UNIMPLEMENTED": (501, "not_implemented"),
        "INTERNAL": (500, "internal_error"),
        "UNAVAILABLE": (503, "unavailable"),
        "DATA_LOSS": (500, "internal_error"),
        "UNAUTHENTICATED": (401, "unauthorized"),
    }),
    messages=GENERIC_MESSAGES,
    fallback_message=GENERIC_MESSAGES[500],
)

# Status-only views, for the dialects that use the generic table as it is.
BY_CODE: Final = MappingProxyType({c: s for c, (s, _) in GENERIC.by_code.items()})
BY_REASON: Final = MappingProxyType({r: s for r, (s, _) in GENERIC.by_reason.items()})


def http_status(code: str, reason: str = "") -> int:
    """The generic HTTP status of a core error."""
    return GENERIC.status(CoreError(code, reason, ""))


def public_message(error: CoreError, status: int) -> str:
    """The message a client may see under the generic table."""
    if error.reason and error.message:
        return error.message
    return GENERIC_MESSAGES.get(status, GENERIC_MESSAGES[500])
