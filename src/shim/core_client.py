"""The shim's gRPC client of the core: one channel, stubs, and error decoding.

The shim holds no business state: it forwards the caller's `Authorization` (and browser
`Origin`) as gRPC metadata and lets the core decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from core.limits import MAX_GRPC_MESSAGE_BYTES
from switchboard.v1 import chat_pb2_grpc

MAX_MESSAGE_BYTES = MAX_GRPC_MESSAGE_BYTES


@dataclass(frozen=True, slots=True)
class CoreError:
    """A core error as the dialects see it: gRPC code name, stable reason, message."""

    code: str
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None

    @property
    def details(self) -> dict[str, Any]:
        raw = self.metadata.get("details_json")
        if not raw:
            return {}
        data = json.loads(raw)
        return data if isinstance(data, dict) else {}


def decode_error(exc: grpc.aio.AioRpcError) -> CoreError:
    reason = ""
    metadata: dict[str, str] = {}
    retry_after: float | None = None
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    code = exc.code().name if exc.code() is not None else "UNKNOWN"
    return CoreError(code, reason, exc.details() or "", metadata, retry_after)


class CoreClient:
    def __init__(self, target: str) -> None:
        self.target = target
        self.channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 30_000),
            ],
        )
        self.chat = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def ready(self, timeout_s: float = 1.0) -> bool:
        try:
            reply = await self.health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self.channel.close()


def forward_metadata(request: web.Request, **extra: str) -> list[tuple[str, str]]:
    """The caller's credentials and origin, as gRPC metadata for the core."""
    md = []
    auth = request.headers.get("Authorization")
    if auth:
        md.append(("authorization", auth))
    for key, value in extra.items():
        if value:
            md.append((key.replace("_", "-"), value))
    return md
