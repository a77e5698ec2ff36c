"""The core's grpc.aio server: health, reflection, auth, limits, graceful shutdown."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from core import clientaddr, http_pool
from core.activity_bus import RedisBus
from core.agents.catalog import AgentCatalog
from core.clock import Clock, IdSource, RandomIds, SystemClock
from core.config import CoreConfig
from core.engine.leases import Leases
from core.engine.turns import TurnEngine
from core.flows.sessions import SessionTokens
from core.grpcapi.auth import AuthInterceptor
from core.grpcapi.chat_servicer import ChatServicer
from core.grpcapi.concurrency import ConcurrencyInterceptor
from core.grpcapi.flow_servicer import register_flow_service
from core.grpcapi.inprocess import HandlerRegistry, InProcessChannel
from core.grpcapi.operator_servicer import LISTEN_SERVICE, register_operator_service
from core.grpcapi.readiness import StoreReadiness
from core.grpcapi.services import ServiceRegistrar
from core.keys import Authenticator
from core.observability.grpc_server import ObservabilityInterceptor
from core.observability.metrics import track_live_turns
from core.observability.store import instrument_store
from core.outbox.dispatcher import Dispatcher
from core.pricing import Pricing
from core.redis_limits import RedisRateLimiter, redacted
from core.redis_live import RedisLive
from core.redis_stops import RemoteStops
from core.retention import Retention
from core.store.base import Store
from core.store.factory import describe, open_store
from switchboard.v1 import chat_pb2, chat_pb2_grpc

log = logging.getLogger("switchboard.core")


CHAT_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name


def server_credentials(config: CoreConfig) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port (None: plain text, the loopback default)."""
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    pair = (Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


class CoreServer:
    """Owns the store, the engine and the gRPC server of one core process."""

    def __init__(
        self,
        config: CoreConfig,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        services: Sequence[ServiceRegistrar] = (),
    ) -> None:
        self.config = config
        self.store: Store = instrument_store(store or open_store(config.database))
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self.sessions = SessionTokens(self.clock)  # flow session tokens (third key kind)
        self.auth = Authenticator(self.store, self.clock, sessions=self.sessions)
        self.pricing = Pricing(self.store)
        self.agents = AgentCatalog(self.store, config.knowledge_root)
        self.engine = TurnEngine(self.store, self.clock, self.ids, config.engine,
                                 pricer=self.pricing.price, agents=self.agents)
        self.redis_limits: RedisRateLimiter | None = None
        self.remote_stops: RemoteStops | None = None
        self.redis_live: RedisLive | None = None
        if config.redis_url:
            self.redis_limits = RedisRateLimiter(config.redis_url, self.clock)
            # One limiter for the whole engine: the pipeline's and the turn engine's alias.
            self.engine.pipeline.rate_limiter = self.redis_limits
            self.engine.rate_limiter = self.redis_limits
            # Live events to a Redis Stream; followers on any replica (core.redis_live).
            self.redis_live = RedisLive(config.redis_url, self.store,
                                        config.engine.detach_grace_s)
            self.engine.live.shared = self.redis_live
        # Running turns carry this core's lease where other cores share the store.
        self.leases: Leases | None = (
            Leases(self.store, self.engine.live, self.clock, self.engine.replica_id,
                   ids=self.ids)
            if self.store.shared else None)
        if config.redis_url:
            # Operators and visitors on any replica hear changes made on any other.
            self.engine.handoffs.bus = RedisBus(config.redis_url)
        track_live_turns(self.engine.live)
        self.retention = Retention(self.store, self.clock, config.event_retention_days)
        # Webhooks out: sent apart from turns; a turn's commit only wakes it.
        self.webhooks = Dispatcher(self.store, self.clock)
        self.engine.pipeline.outbox_written = self.webhooks.wake
        self.engine.handoffs.outbox_written = self.webhooks.wake
        self._health = health_aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self._handlers: HandlerRegistry | None = None
        self.port = 0
        self.extra_services: list[str] = []
        self.readiness: StoreReadiness | None = None
        # FlowService and the handoff services are part of every core; callers add more.
        self._registrars = (register_flow_service, register_operator_service, *services)

    async def start(self) -> int:
        http_pool.hold()
        await self.store.open()
        await self.sessions.load(self.store, self.ids)
        await self.engine.recover()
        if self.leases is not None:
            self.leases.start()
        if self.redis_limits is not None and await self.redis_limits.ping():
            log.info("rate limits shared through Redis at %s", redacted(self.config.redis_url))
        if self.config.redis_url:
            self.remote_stops = RemoteStops(self.config.redis_url, self.engine.live)
            await self.remote_stops.start()
            self.engine.live.elsewhere = self.remote_stops.stop_elsewhere
        await self.retention.start()
        await self.webhooks.start()
        options = [
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            ("grpc.max_send_message_length", self.config.max_message_bytes),
            ("grpc.keepalive_time_ms", self.config.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.config.keepalive_timeout_ms),
            ("grpc.http2.min_ping_interval_without_data_ms",
             self.config.min_client_ping_interval_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.so_reuseport", 1 if self.config.reuse_port else 0),
            # A burst must queue, not be cancelled silently by gRPC core (see
            # core.grpcapi.concurrency, which refuses the excess with a reason instead).
            ("grpc.server.max_pending_requests", self.config.max_concurrent_rpcs),
            ("grpc.server.max_pending_requests_hard_limit", self.config.max_concurrent_rpcs),
        ]
        self.concurrency = ConcurrencyInterceptor(self.config.max_concurrent_rpcs)
        # Observability first: it sees every outcome, refused calls included.
        interceptors = [ObservabilityInterceptor(), self.concurrency, AuthInterceptor(
            self.auth, clientaddr.networks(self.config.trusted_proxies))]
        server = grpc.aio.server(
            interceptors=interceptors,
            options=options,
        )
        # Every service is added through the registry too, so `channel()` reaches the
        # same handlers behind the same interceptors.
        self._handlers = HandlerRegistry(interceptors, self.config.max_concurrent_rpcs)
        both = cast(grpc.aio.Server, self._handlers.recording(server))
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(self.engine), both)
        for register in self._registrars:
            self.extra_services.append(register(self, both))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, both)
        names = (CHAT_SERVICE, *self.extra_services, LISTEN_SERVICE, health.SERVICE_NAME,
                 reflection.SERVICE_NAME)
        # Reflection picks its aio servicer by the server's type, so it gets the real one
        # (the shim never calls reflection).
        reflection.enable_server_reflection(names, server)
        address = f"{self.config.host}:{self.config.port}"
        credentials = server_credentials(self.config)
        try:
            self.port = (server.add_secure_port(address, credentials) if credentials
                         else server.add_insecure_port(address))
        except RuntimeError:  # grpcio >= 1.60 raises instead of returning 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        await server.start()
        self.server = server
        await self._set_serving(True)
        self.readiness = StoreReadiness(self.store, self._set_serving)
        log.info("core listening on %s:%d (database %s)", self.config.host, self.port,
                 describe(self.config.database))
        return self.port

    def channel(self) -> InProcessChannel:
        """A channel for a shim in this process: the generated stubs work on it and call
        the handlers directly (see core.grpcapi.inprocess). Valid once started."""
        if self._handlers is None:
            raise RuntimeError("the core is not started")
        return InProcessChannel(self._handlers)

    async def _set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", CHAT_SERVICE, *self.extra_services):
            await self._health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new turns, give running turns the grace period,
        cancel and store the rest, then stop the server."""
        grace = self.config.engine.shutdown_grace_s if grace_s is None else grace_s
        if self.readiness is not None:
            await self.readiness.stop()
        await self._set_serving(False)
        log.info("draining: %d turns running, %.1fs grace", len(self.engine.live.all()), grace)
        await self.retention.stop()
        await self.engine.shutdown()
        await self.webhooks.stop()
        if self.leases is not None:
            await self.leases.stop()
        if self._handlers is not None:
            self._handlers.close()
        if self.server is not None:
            await self.server.stop(grace=1.0)
        await self.store.close()
        if self.redis_limits is not None:
            await self.redis_limits.close()
        if self.remote_stops is not None:
            await self.remote_stops.close()
        await self.engine.handoffs.bus.close()
        if self.redis_live is not None:
            await self.redis_live.close()
        await http_pool.release()
        log.info("core stopped")

