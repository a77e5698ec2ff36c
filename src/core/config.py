"""Core configuration: frozen dataclasses, filled from flags and environment at one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core import limits
from core.agents.catalog import default_knowledge_root
from core.engine.turns import EngineConfig


def default_data_dir() -> Path:
    return Path(os.environ.get("SWITCHBOARD_DATA_DIR", ".switchboard"))


@dataclass(frozen=True, slots=True)
class CoreConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    database: str = field(default_factory=lambda: str(default_data_dir() / "switchboard.db"))
    engine: EngineConfig = field(default_factory=EngineConfig)
    # Stored agents name their knowledge base relative to this folder.
    knowledge_root: Path = field(default_factory=default_knowledge_root)
    # Event logs of finished turns older than this many days are pruned (0 keeps them).
    event_retention_days: int = 0
    max_message_bytes: int = limits.MAX_GRPC_MESSAGE_BYTES
    max_concurrent_rpcs: int = limits.MAX_CONCURRENT_RPCS
    # Keepalive: ping idle clients every 60 s so dead peers (mobile networks) are noticed;
    # allow clients to ping every 10 s without data (long streams behind proxies).
    keepalive_time_ms: int = 60_000
    keepalive_timeout_ms: int = 20_000
    min_client_ping_interval_ms: int = 10_000
    # Peers (besides loopback) whose x-switchboard-client metadata names the visitor.
    trusted_proxies: tuple[str, ...] = ()
    # TLS for the gRPC port (PEM files; both or neither). With tls_client_ca set, clients
    # must present a certificate signed by it (mutual TLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # redis://HOST:PORT/N: rate limits and stream caps shared by replicas (core.redis_limits).
    # Empty: kept in this process.
    redis_url: str = ""
    # SO_REUSEPORT on the gRPC port: `serve --workers N` runs N cores on one port and the
    # kernel spreads connections over them. Off otherwise, so a second Switchboard started
    # on a busy port says so instead of silently sharing it.
    reuse_port: bool = False
