"""The `Store` contract: everything durable the core needs, backend-agnostic.

Implementations: `core.store.sqlite.SqliteStore` (embedded default). A PostgreSQL store
implements the same protocol; one contract test suite runs against every backend.
Ids from another organisation read as not found: every lookup that a client can
influence takes the organisation id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.agents.definition import AgentDefinition
from core.domain import (
    AgentRecord,
    ApiKey,
    ConversationRecord,
    InterruptRecord,
    MessageRecord,
    Organisation,
    OrgSettings,
    TurnRecord,
)
from core.events import Event
from core.store.failures import StoreHealth


@dataclass(frozen=True, slots=True)
class EndUser:
    org_id: str
    external_id: str
    company_id: str = ""
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TurnBegin:
    """What a turn writes when it starts, in one transaction."""

    turn: TurnRecord
    new_conversation: ConversationRecord | None = None
    prior_messages: tuple[MessageRecord, ...] = ()  # client-supplied history, new sessions
    user_message: MessageRecord | None = None
    end_user: EndUser | None = None
    conversation_context: dict[str, Any] | None = None
    conversation_variables: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One priced turn (segment) in the usage ledger."""

    org_id: str
    user_id: str
    conversation_id: str
    turn_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TurnCommit:
    """What a turn writes when it ends (or pauses), in one transaction."""

    turn_id: str
    conversation_id: str
    status: str
    last_seq: int
    updated_at: datetime
    events: tuple[Event, ...] = ()
    messages: tuple[MessageRecord, ...] = ()
    interrupt: InterruptRecord | None = None
    resumed_interrupt_id: str = ""
    usage: UsageEntry | None = None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # Write health (core.store.failures): failures of the backend raise StoreUnavailable.
    @property
    def health(self) -> StoreHealth: ...

    async def probe_write(self) -> None:
        """One real, harmless write; raises StoreUnavailable while writes fail."""

    # Tenants and keys
    async def create_org(self, org: Organisation) -> None: ...

    async def get_org(self, org_id: str) -> Organisation | None: ...

    async def get_org_by_slug(self, slug: str) -> Organisation | None: ...

    async def update_org_settings(self, org_id: str, settings: OrgSettings) -> None: ...

    async def create_key(self, key: ApiKey, key_hash: str) -> None: ...

    async def find_key(self, key_hash: str) -> ApiKey | None: ...

    async def list_keys(self, org_id: str) -> list[ApiKey]: ...

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def stored_bytes(self, org_id: str) -> int:
        """Bytes of message text and images the organisation has stored (core.quota)."""
        ...

    async def revoke_key(self, key_id: str, at: datetime) -> bool: ...

    async def expire_key(self, key_id: str, at: datetime) -> None: ...

    # Agents
    async def upsert_agent(
        self, org_id: str, agent_id: str, definition: AgentDefinition, now: datetime
    ) -> AgentRecord: ...

    async def get_agent(self, org_id: str, id_or_slug: str) -> AgentRecord | None: ...

    async def get_active_agent(self, org_id: str) -> AgentRecord | None: ...

    async def list_agents(self, org_id: str) -> list[AgentRecord]: ...

    # Conversations, turns, transcripts
    async def get_conversation(
        self, org_id: str, conversation_id: str
    ) -> ConversationRecord | None: ...

    async def begin_turn(self, begin: TurnBegin) -> None: ...

    async def commit_turn(self, commit: TurnCommit) -> None: ...

    async def get_turn(self, org_id: str, turn_id: str) -> TurnRecord | None: ...

    async def find_turn_by_key(self, org_id: str, idempotency_key: str) -> TurnRecord | None: ...

    async def list_messages(
        self, org_id: str, conversation_id: str, limit: int, after: int = 0
    ) -> tuple[list[MessageRecord], int]: ...

    async def recent_messages(
        self, org_id: str, conversation_id: str, limit: int
    ) -> list[MessageRecord]: ...

    async def list_events(
        self, conversation_id: str, after_seq: int, turn_id: str = ""
    ) -> list[Event]: ...

    async def mark_running_turns(self, status: str, now: datetime) -> int: ...

    async def running_turns(self) -> list[TurnRecord]:
        """Every turn stored as `running` (at start-up: the ones a crash left behind)."""
        ...

    async def last_turn(self, conversation_id: str) -> TurnRecord | None: ...

    # Usage ledger
    async def sum_spend(self, org_id: str, since: datetime, user_id: str = "") -> int: ...

    async def usage_report(
        self, org_id: str, since: datetime
    ) -> list[dict[str, Any]]: ...

    # Interrupts
    async def get_interrupt(self, org_id: str, interrupt_id: str) -> InterruptRecord | None: ...

    async def claim_interrupt(self, interrupt_id: str, now: datetime) -> bool: ...

    # End users, companies, tickets
    async def get_end_user(self, org_id: str, external_id: str) -> EndUser | None: ...

    async def get_company(self, org_id: str, external_id: str) -> dict[str, Any] | None: ...

    async def upsert_company(
        self, org_id: str, external_id: str, name: str, data: dict[str, Any]
    ) -> None: ...

    async def create_ticket(
        self, ticket_id: str, org_id: str, conversation_id: str, team: str, subject: str,
        now: datetime,
    ) -> None: ...

    async def list_tickets(self, org_id: str, conversation_id: str) -> list[dict[str, Any]]: ...
