"""SwitchboardError ⇄ gRPC status with google.rpc details (ErrorInfo, RetryInfo,
BadRequest).

Errors may quote client input (an origin, offending keys, a tool name). The status
travels in trailing metadata (`grpc-message`, `grpc-status-details-bin`), which gRPC caps
at 8 KiB per call by default: past that the call fails with a bare transport error the
shim cannot classify. So quoted strings are cut to `MAX_QUOTED_CHARS`, lists to
`MAX_QUOTED_ITEMS`, and if the details still exceed `MAX_DETAILS_BYTES` they are dropped
(the code, reason and message are kept).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from core.errors import ERROR_DOMAIN, Code, SwitchboardError
from core.observability.metrics import count_refusal

MAX_QUOTED_CHARS: Final = 200
MAX_QUOTED_ITEMS: Final = 10
MAX_MESSAGE_CHARS: Final = 1000
MAX_DETAILS_BYTES: Final = 4096


def truncate(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded(value: Any) -> Any:
    """JSON data with every string truncated and every list and object capped at its
    first items (the first violations are the ones worth reading)."""
    if isinstance(value, str):
        return truncate(value)
    if isinstance(value, list):
        return [_bounded(v) for v in value[:MAX_QUOTED_ITEMS]]
    if isinstance(value, dict):
        return {truncate(str(k)): _bounded(v)
                for k, v in list(value.items())[:MAX_QUOTED_ITEMS]}
    return value


def to_status(error: SwitchboardError) -> grpc.Status:
    count_refusal(error.reason.value)
    info = error_details_pb2.ErrorInfo(
        reason=error.reason.value, domain=ERROR_DOMAIN,
        metadata={truncate(k): truncate(v) for k, v in error.metadata.items()},
    )
    if error.details:
        details_json = json.dumps(_bounded(error.details), separators=(",", ":"))
        if len(details_json.encode()) <= MAX_DETAILS_BYTES:
            info.metadata["details_json"] = details_json
    details = [info]
    if error.retry_after_s is not None:
        seconds = max(0.0, error.retry_after_s)
        details.append(error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(seconds), nanos=int((seconds - math.floor(seconds)) * 1e9)
            )
        ))
    packed = []
    for detail in details:
        any_msg = any_pb2.Any()
        any_msg.Pack(detail)
        packed.append(any_msg)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name),
        message=truncate(error.message, MAX_MESSAGE_CHARS), details=packed
    )
    return rpc_status.to_status(status)


def status_code(code: Code) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, code.name)  # type: ignore[no-any-return]


async def abort(context: Any, error: SwitchboardError) -> None:
    """End an RPC with `error` as its status (a servicer's one way to refuse)."""
    await context.abort_with_status(to_status(error))
