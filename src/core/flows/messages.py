"""What the flow surface exchanges: intents, sessions, messages and replies (shared by
the flow engine, its exactly-once reply store and the gRPC servicer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.domain import ReportedUsage
from core.events import Usage
from core.flows.runner import Block


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class SessionInfo:
    token: str
    expires_at: datetime
    conversation_id: str
    agent_id: str
    intents: tuple[Intent, ...]


@dataclass(frozen=True, slots=True)
class FlowMessage:
    """One message of the flow surface, whatever carried it."""

    text: str = ""
    intent_name: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    usage: ReportedUsage | None = None
    wait_token: str = ""
    input: Any = None
    has_input: bool = False
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class FlowReply:
    execution_id: str
    conversation_id: str
    blocks: tuple[Block, ...]
    status: str
    usage: Usage
    expected_input: dict[str, Any] | None = None
    wait_token: str = ""
    wait_expires_at: datetime | None = None
