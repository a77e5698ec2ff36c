"""How a gRPC service plugs into a core: it gets the core's parts and the grpc server,
adds its servicer and returns its full service name (for health and reflection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import grpc

from core.clock import Clock, IdSource
from core.engine.turns import TurnEngine
from core.flows.sessions import SessionTokens
from core.store.base import Store


class CoreParts(Protocol):
    """What a service may use of the core it runs in (`CoreServer` provides it)."""

    @property
    def store(self) -> Store: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def ids(self) -> IdSource: ...

    @property
    def sessions(self) -> SessionTokens: ...

    @property
    def engine(self) -> TurnEngine: ...


ServiceRegistrar = Callable[[CoreParts, grpc.aio.Server], str]
