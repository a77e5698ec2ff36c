"""SwitchboardError ⇄ gRPC status with google.rpc details (ErrorInfo, RetryInfo,
BadRequest)."""

from __future__ import annotations

import json
import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from core.errors import ERROR_DOMAIN, Code, SwitchboardError
from core.observability.metrics import count_refusal


def to_status(error: SwitchboardError) -> grpc.Status:
    count_refusal(error.reason.value)
    info = error_details_pb2.ErrorInfo(
        reason=error.reason.value, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    if error.details:
        info.metadata["details_json"] = json.dumps(error.details, separators=(",", ":"))
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
        code=getattr(code_pb2, error.code.name), message=error.message, details=packed
    )
    return rpc_status.to_status(status)


def status_code(code: Code) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, code.name)  # type: ignore[no-any-return]
