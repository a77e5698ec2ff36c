"""What a server tool gets (its context) and gives back (its run): shared by the tool
table (`core.tools`) and the webhook caller (`core.webhooks`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock, IdSource
from core.domain import AgentRecord
from core.events import ActionData
from core.store.base import Store


@dataclass(frozen=True, slots=True)
class ToolContext:
    org_id: str
    conversation_id: str
    agent: AgentRecord
    store: Store
    clock: Clock
    ids: IdSource


@dataclass(slots=True)
class ToolRun:
    result: Any
    is_error: bool = False
    actions: list[ActionData] = field(default_factory=list)

    @property
    def result_json(self) -> str:
        return json.dumps(self.result, separators=(",", ":"), ensure_ascii=False)


ToolFn = Callable[[ToolContext, dict[str, Any], dict[str, Any]], Awaitable[ToolRun]]
