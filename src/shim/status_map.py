"""gRPC status → HTTP status, as grpc-gateway v2 and Envoy's transcoder map them.

Each dialect starts from `HTTP_STATUS` and overrides by ErrorInfo reason where its spec
documents a different code (the flow dialect's 422 and 410, for example).
"""

from __future__ import annotations

HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
}


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 500)
