"""The shim's gRPC client of the core: one channel, stubs, and error decoding.

The shim holds no business state: it forwards the caller's `Authorization` (and browser
`Origin`) as gRPC metadata and lets the core decide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from core import clientaddr
from core.limits import MAX_GRPC_MESSAGE_BYTES
from shim.config import ShimConfig, config_of
from shim.observability import channel_interceptors, context_metadata
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
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except (ValueError, DecodeError):
        # Details that do not parse or disagree with the call's code: keep the code, so
        # the error is still mapped to its class (never a 500 for the core's 4xx).
        status = None
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
    """Stubs of the core's services on one channel: a gRPC channel to `target`, or, for a
    core in the same process, its in-process channel (`CoreServer.channel()`), which the
    same stubs use without HTTP/2 (see core.grpcapi.inprocess)."""

    def __init__(self, target: str, config: ShimConfig | None = None,
                 channel: Any = None) -> None:
        self.target = target
        self.in_process = channel is not None
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
        ]
        config = config or ShimConfig()
        if channel is not None:
            self.channel = channel
        elif config.core_tls_ca:
            self.channel = grpc.aio.secure_channel(target, tls_credentials(
                config.core_tls_ca, config.core_tls_cert, config.core_tls_key), options,
                interceptors=channel_interceptors())
        else:
            self.channel = grpc.aio.insecure_channel(target, options,
                                                     interceptors=channel_interceptors())
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


def tls_credentials(ca: str, cert: str = "", key: str = "") -> grpc.ChannelCredentials:
    """Credentials to reach a TLS core: its CA bundle, and optionally a client
    certificate (for a core that requires one)."""
    def read(path: str) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key),
                                        certificate_chain=read(cert))


def _metadata_safe(value: str) -> bool:
    """gRPC metadata values are printable ASCII. aiohttp hands over header bytes as UTF-8
    (undecodable bytes as lone surrogates): anything else cannot be sent to the core."""
    return value.isascii() and value.isprintable()


def forward_metadata(request: web.Request, **extra: str) -> list[tuple[str, str]]:
    """The caller's credentials and origin, as gRPC metadata for the core. A value gRPC
    cannot carry (e.g. `Bearer ключ`) is left out: no key matches it anyway, so the core
    answers as for a missing header (401), never a 500."""
    md = []
    auth = request.headers.get("Authorization")
    if auth and _metadata_safe(auth):
        md.append(("authorization", auth))
    client = client_address(request)
    if client:
        # The core trusts this only from the shim's (loopback or trusted-proxy) address.
        md.append((clientaddr.CLIENT_METADATA, client))
    for key, value in extra.items():
        if value and _metadata_safe(value):
            md.append((key.replace("_", "-"), value))
    md.extend(context_metadata())  # request id and trace context (shim.observability)
    return md


def client_address(request: web.Request) -> str:
    """The visitor's address: the peer, or X-Forwarded-For from a trusted proxy."""
    return clientaddr.forwarded_client(
        request.remote or "", request.headers.get("X-Forwarded-For", ""),
        config_of(request.app).trusted_proxies,
    )


def header_text(request: web.Request, name: str) -> str:
    """A descriptive header (`Origin`, `User-Agent`) as text for a protobuf string field.
    aiohttp decodes header bytes as UTF-8 with `surrogateescape`, leaving lone surrogates
    for bytes that are not UTF-8, which protobuf refuses; they become U+FFFD here, so an
    origin stays an origin (one no allow-list matches) rather than turning into none."""
    value = request.headers.get(name, "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def oversized(message: Message) -> CoreError | None:
    """The error for a request too large for the gRPC channel (a 413 in every dialect),
    or None. Checked before sending: gRPC itself would fail the call with a bare
    RESOURCE_EXHAUSTED (no reason; read as a rate limit) and a transport message. A body
    within the HTTP limit can still be larger as protobuf (a JSON array of numbers grows
    about 5x as a Struct)."""
    if message.ByteSize() <= MAX_MESSAGE_BYTES:
        return None
    return CoreError("INVALID_ARGUMENT", "payload_too_large",
                     f"The request is too large (over {MAX_MESSAGE_BYTES // (1024 * 1024)} "
                     f"MiB once encoded for the core).")


class RefusedCall:
    """A streaming call refused before it was sent: iterating it raises `error` at once,
    so callers report it exactly like a call that the core refused."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def __aiter__(self) -> RefusedCall:
        return self

    async def __anext__(self) -> Any:
        raise self._error

    def cancel(self) -> bool:
        return False
