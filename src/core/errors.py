"""The core's one root error type.

Expected failures (bad input, unknown ids, refused keys) are raised as `SwitchboardError`
with a `Code` (mirrors gRPC status codes) and a stable `reason` string. The gRPC layer turns
them into statuses with a google.rpc.ErrorInfo; each shim dialect maps `reason` (or, failing
that, the code) onto its own envelope. Anything else escaping the engine is a bug and is
logged and reported as INTERNAL without details.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

ERROR_DOMAIN = "switchboard.dev"


class Code(enum.Enum):
    """Error categories; values equal grpc.StatusCode names."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    CANCELLED = "CANCELLED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class Reason(enum.StrEnum):
    """Stable machine-readable reasons carried in ErrorInfo.reason.

    Dialects key their envelopes on these, never on messages. Adding a reason means adding
    it to every dialect's table (a test enforces that).
    """

    INVALID_ARGUMENT = "invalid_argument"
    MESSAGE_REQUIRED = "message_required"
    MESSAGE_TOO_LONG = "message_too_long"
    FIELD_TOO_LONG = "field_too_long"
    INVALID_MODE = "invalid_mode"
    INVALID_IMAGES = "invalid_images"
    INVALID_TOOLS = "invalid_tools"
    INVALID_INPUT = "invalid_input"
    UNAUTHENTICATED = "unauthenticated"
    IDENTITY_REQUIRED = "identity_required"
    IDENTITY_INVALID = "identity_invalid"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    KEY_SCOPE = "key_scope"
    AGENT_NOT_FOUND = "agent_not_found"
    NO_ACTIVE_AGENT = "no_active_agent"
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    INTERRUPT_NOT_FOUND = "interrupt_not_found"
    INTERRUPT_EXPIRED = "interrupt_expired"
    INTERRUPT_ALREADY_RESUMED = "interrupt_already_resumed"
    INTERRUPT_PENDING = "interrupt_pending"
    TURN_IN_PROGRESS = "turn_in_progress"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    RATE_LIMITED = "rate_limited"
    CONCURRENCY_LIMITED = "concurrency_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    STORAGE_QUOTA_EXCEEDED = "storage_quota_exceeded"
    WAIT_EXPIRED = "wait_expired"
    WAIT_ALREADY_USED = "wait_already_used"
    WAIT_NOT_FOUND = "wait_not_found"
    INPUT_MISMATCH = "input_mismatch"
    INTENT_NOT_FOUND = "intent_not_found"
    VALIDATION_FAILED = "validation_failed"
    SESSION_EXPIRED = "session_expired"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    PROVIDER_ERROR = "provider_error"
    SHUTTING_DOWN = "shutting_down"
    STORE_UNAVAILABLE = "store_unavailable"
    TURN_INCOMPLETE = "turn_incomplete"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INTERNAL = "internal"


# Retry-After for a turn refused because this replica is draining (SIGTERM).
SHUTTING_DOWN_RETRY_AFTER_S: Final = 1.0


class SwitchboardError(Exception):
    """An expected failure with a status code, a stable reason and safe metadata."""

    def __init__(
        self,
        code: Code,
        reason: Reason,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        retry_after_s: float | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        if retry_after_s is None and reason is Reason.SHUTTING_DOWN:
            # A draining replica: the load balancer has another one for the retry now.
            retry_after_s = SHUTTING_DOWN_RETRY_AFTER_S
        self.retry_after_s = retry_after_s
        # Structured, JSON-safe details (per-field violations, allowed values).
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"SwitchboardError({self.code.name}, {self.reason.value!r}, {self.message!r})"


def invalid(reason: Reason, message: str, **metadata: str) -> SwitchboardError:
    return SwitchboardError(Code.INVALID_ARGUMENT, reason, message, metadata)


def not_found(reason: Reason, message: str, **metadata: str) -> SwitchboardError:
    return SwitchboardError(Code.NOT_FOUND, reason, message, metadata)


def unauthenticated(message: str = "Invalid or missing API key.") -> SwitchboardError:
    return SwitchboardError(Code.UNAUTHENTICATED, Reason.UNAUTHENTICATED, message)
