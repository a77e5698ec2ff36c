"""A real Switchboard (core + shim) on ephemeral ports, for tests.

Everything goes over real sockets: gRPC to the core, HTTP to the shim. The store is a
SQLite file in the test's temporary directory; the demo organisation is seeded.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml

from core.agents.definition import parse_agent
from core.clock import Clock, IdSource
from core.config import CoreConfig
from core.demo.seed import DEMO_SECRET_KEY, DEMO_WIDGET_KEY, seed_demo
from core.engine.turns import EngineConfig
from core.grpcapi.server import CoreServer, ServiceRegistrar
from launcher.serve import Running, ServeOptions, start
from switchboard.v1 import chat_pb2, chat_pb2_grpc

SECRET = DEMO_SECRET_KEY
WIDGET = DEMO_WIDGET_KEY

# How the shim reaches the core: "inprocess" (what `switchboard serve` does) or "grpc" (a
# real channel over loopback, as with `--role shim`). Set by `pytest --transport` or the
# SWITCHBOARD_TEST_TRANSPORT environment variable; `make test` runs the shim suite on both.
TRANSPORTS = ("inprocess", "grpc")
TRANSPORT = os.environ.get("SWITCHBOARD_TEST_TRANSPORT", "inprocess")


def auth(key: str = SECRET) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


class Harness:
    def __init__(self, running: Running, org_id: str, database: str,
                 transport: str = "inprocess") -> None:
        self.running = running
        self.transport = transport
        self.org_id = org_id
        self.database = database
        core = running.core
        assert core is not None
        self.core: CoreServer = core
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.grpc_port}")
        self.chat = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.http = aiohttp.ClientSession(f"http://127.0.0.1:{running.http_port}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.running.grpc_port}"

    @classmethod
    async def start(
        cls,
        tmp_path: Path,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        engine: EngineConfig | None = None,
        database: str | None = None,
        services: tuple[ServiceRegistrar, ...] = (),
        transport: str | None = None,
        serve: ServeOptions | None = None,
        core_config: dict[str, Any] | None = None,
        **config_changes: Any,
    ) -> Harness:
        database = database or str(tmp_path / "switchboard.db")
        config = CoreConfig(
            port=0, database=database, engine=engine or EngineConfig(detach_grace_s=0.0),
            **config_changes, **(core_config or {}),
        )
        core = CoreServer(config, clock=clock, ids=ids, services=services)
        transport = transport or TRANSPORT
        assert transport in TRANSPORTS, transport
        options = serve or ServeOptions(http_port=0)
        options = replace(options, in_process=transport == "inprocess")
        running = await start(config, options, core=core)
        org_id = await seed_demo(core.store, core.auth, core.agents, core.ids, core.clock)
        return cls(running, org_id, database, transport)

    def core_channel(self) -> Any:
        """For a second shim on this core (`create_app(..., core_channel=...)`): the
        in-process channel, or None (a real gRPC channel), as the harness's transport."""
        return self.core.channel() if self.transport == "inprocess" else None

    async def apply_agent(self, source: str | dict[str, Any]) -> str:
        """Create or update an agent of the demo organisation; returns its id."""
        data = yaml.safe_load(textwrap.dedent(source)) if isinstance(source, str) else source
        definition = parse_agent(data)
        record = await self.core.agents.apply(self.org_id, definition, self.core.ids,
                                              self.core.clock)
        return record.id

    async def scripted_agent(self, slug: str = "scripted", **options: Any) -> str:
        return await self.apply_agent(
            {"name": slug, "slug": slug, "provider": {"kind": "scripted", **options}}
        )

    async def chat_once(self, message: str, agent: str = "", key: str = SECRET,
                        **fields: Any) -> chat_pb2.ChatResponse:
        turn = chat_pb2.TurnInput(message=message, agent=agent, **fields)
        reply: chat_pb2.ChatResponse = await self.chat.Chat(
            chat_pb2.ChatRequest(turn=turn), metadata=auth(key)
        )
        return reply

    async def stop(self) -> None:
        await self.http.close()
        await self.channel.close()
        await self.running.stop()


def with_engine(**changes: Any) -> EngineConfig:
    return replace(EngineConfig(detach_grace_s=0.0), **changes)
