"""Domain records and requests of the core. Plain dataclasses: never protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.agents.definition import AgentDefinition
from core.events import ActionData, Usage
from core.providers.base import ContextEntry, ToolSpec


class KeyKind:
    PUBLISHABLE = "publishable"  # widget: chat routes only, from allowed origins
    SECRET = "secret"  # server side: everything the organisation owns
    SESSION = "session"  # flow dialect: one conversation, one hour
    OPERATOR = "operator"  # a human operator: the operator routes only (core.handoffs)

    ALL = (PUBLISHABLE, SECRET, SESSION, OPERATOR)


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """Per-organisation settings, stored as JSON on the organisation row."""

    allowed_origins: tuple[str, ...] = ()
    require_identity: bool = False
    allow_anonymous: bool = True
    identity_secret: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed_origins": list(self.allowed_origins),
            "require_identity": self.require_identity,
            "allow_anonymous": self.allow_anonymous,
            "identity_secret": self.identity_secret,
            **self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OrgSettings:
        known = {"allowed_origins", "require_identity", "allow_anonymous", "identity_secret"}
        return cls(
            allowed_origins=tuple(data.get("allowed_origins", ())),
            require_identity=bool(data.get("require_identity", False)),
            allow_anonymous=bool(data.get("allow_anonymous", True)),
            identity_secret=str(data.get("identity_secret", "")),
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    slug: str
    name: str
    settings: OrgSettings
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    org_id: str
    kind: str
    prefix: str
    name: str
    created_at: datetime
    revoked: bool = False
    expires_at: datetime | None = None  # set by rotation: the overlap's end


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the organisation and the kind of key that proved it."""

    org_id: str
    key_id: str
    key_kind: str
    # Session keys are bound to one agent and conversation.
    agent_id: str = ""
    conversation_id: str = ""
    client: str = ""  # the visitor's network address, as far as it can be trusted
    key_name: str = ""  # the key's name (an operator token's operator name)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    org_id: str
    slug: str
    name: str
    definition: AgentDefinition
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    org_id: str
    agent_id: str
    user_id: str
    status: str
    last_seq: int
    created_at: datetime
    updated_at: datetime
    context: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    message_count: int = 0
    owner: str = "anonymous"  # see core.engine.admission


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    conversation_id: str
    org_id: str
    turn_id: str
    role: str
    content: str
    status: str
    created_at: datetime
    agent_id: str = ""
    actions: tuple[ActionData, ...] = ()
    confidence: float = 0.0
    usage: Usage = field(default_factory=Usage)
    images: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: str
    conversation_id: str
    org_id: str
    status: str
    agent_id: str
    first_seq: int
    last_seq: int
    created_at: datetime
    updated_at: datetime
    idempotency_key: str = ""
    request_hash: str = ""


@dataclass(frozen=True, slots=True)
class PendingCall:
    tool_call_id: str
    tool_name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class InterruptRecord:
    id: str
    org_id: str
    conversation_id: str
    turn_id: str
    status: str  # pending | resumed
    calls: tuple[PendingCall, ...]
    state: dict[str, Any]  # what the agent loop needs to continue
    expires_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryItem:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ToolOutput:
    tool_call_id: str
    result_json: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    interrupt_id: str
    results: tuple[ToolOutput, ...]


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    model: str


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """A turn as the engine sees it, whatever dialect carried it."""

    message: str = ""
    user_id: str = ""
    company_id: str = ""
    user_token: str = ""
    conversation_id: str = ""
    agent: str = ""
    mode: str = ""
    images: tuple[str, ...] = ()
    custom_fields: dict[str, Any] = field(default_factory=dict)
    context: dict[str, ContextEntry] = field(default_factory=dict)
    history: tuple[HistoryItem, ...] = ()
    behavior_context: str = ""
    client_tools: tuple[ToolSpec, ...] = ()
    resume: ResumeRequest | None = None
    idempotency_key: str = ""
    origin: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    reported_usage: ReportedUsage | None = None
    intent_name: str = ""
    dialect: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # Whom the usage ledger charges (set by the engine, never by a client): see
    # core.ratelimit.budget_user.
    ledger_user: str = ""
