"""Request headers that go into the core's protobuf messages, as text protobuf accepts
(see `core_client.header_text`; credentials go as gRPC metadata instead,
`core_client.forward_metadata`)."""

from __future__ import annotations

from aiohttp import web

from shim.common import BadRequest
from shim.core_client import header_text

IDEMPOTENCY_HEADER = "Idempotency-Key"


def origin(request: web.Request) -> str:
    return header_text(request, "Origin")


def idempotency_key(request: web.Request) -> str:
    """The `Idempotency-Key` header ("" when absent). Bytes that are not UTF-8 are a
    BadRequest: a key repaired like `header_text` could collide with another request's.
    Its length is the core's rule."""
    value = request.headers.get(IDEMPOTENCY_HEADER, "")
    if header_text(request, IDEMPOTENCY_HEADER) != value:
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be UTF-8 text.",
                         field=IDEMPOTENCY_HEADER)
    return value
