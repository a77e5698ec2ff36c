"""The request id: kept from an incoming `X-Request-Id` when it is safe, made otherwise, and
carried to the core in the `x-request-id` gRPC metadata entry.

It lives in a context variable, so log lines, turn tasks (spawned from the RPC, they copy
its context) and spans of one request all see it without passing it around.
"""

from __future__ import annotations

import contextvars
import re
import uuid

HEADER = "X-Request-Id"
METADATA_KEY = "x-request-id"
# Long enough for a UUID, a W3C trace id or an AWS/Heroku style id; short enough that a
# hostile header cannot bloat every log line.
MAX_REQUEST_ID_CHARS = 128
_SAFE = re.compile(r"[A-Za-z0-9._:@/+=-]+")

_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def valid_request_id(value: str | None) -> bool:
    """A caller's id is kept only if it is short plain ASCII (it goes into logs, response
    headers and gRPC metadata as it is)."""
    return bool(value) and len(value or "") <= MAX_REQUEST_ID_CHARS and bool(
        _SAFE.fullmatch(value or "")
    )


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(value: str | None) -> str:
    """The caller's id when valid, else a new one."""
    return value if value is not None and valid_request_id(value) else new_request_id()


def current_request_id() -> str:
    return _REQUEST_ID.get()


def set_request_id(value: str) -> contextvars.Token[str]:
    return _REQUEST_ID.set(value)


def reset_request_id(token: contextvars.Token[str]) -> None:
    _REQUEST_ID.reset(token)
