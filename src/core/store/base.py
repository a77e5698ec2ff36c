"""The `Store` contract: everything durable the core needs, backend-agnostic.

Implementations: `core.store.sqlite.SqliteStore` (embedded default); `core.store.factory`
picks one by database URL. Every implementation passes the contract suite in
`tests/core/store/` (one set of tests, parametrised by backend).

Rules every backend keeps (so any number of core processes can share one database):
- Ids from another organisation read as not found: every lookup takes the organisation.
- One running turn per conversation: `begin_turn` / `resume_turn` claim the conversation
  with a conditional write and `commit_turn` releases it; a second claim raises
  `TurnConflict`. No in-process lock is needed for correctness.
- Sequence numbers come from the conversation's counter, read inside the claiming
  transaction: a turn's events are numbered from the `first_seq` the claim returns, and
  the commit advances the counter only while the claim is still held.
- An idempotency key names at most one turn per organisation (a unique constraint; a
  second claim raises `TurnConflict`, never a backend error).
- The store keeps records as given and returns them; it never interprets an agent
  definition (the core parses them, see `core.agents.catalog`).
- Times are timezone-aware; comparisons happen on instants, never on their text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.domain import (
    ApiKey,
    ConversationRecord,
    InterruptRecord,
    MessageRecord,
    Organisation,
    OrgSettings,
    TurnRecord,
)
from core.errors import Code, Reason, SwitchboardError
from core.events import Event
from core.handoffs import (
    Activity,
    ActivityDraft,
    HandoffRecord,
    HandoffRequest,
    Operator,
)
from core.outbox.deliveries import AttemptResult, Delivery, DeliveryRecord
from core.outbox.endpoints import WebhookEndpoint
from core.outbox.events import OutboxEvent
from core.store.failures import StoreHealth


class TurnConflict(SwitchboardError):
    """A turn could not be claimed: its conversation already has a running turn, or its
    idempotency key names a turn that is still running."""

    CONVERSATION = "conversation"
    IDEMPOTENCY_KEY = "idempotency_key"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        message = (
            "A turn is already running in this conversation; wait for it or stop it."
            if kind == self.CONVERSATION
            else "The turn for this Idempotency-Key is still running; retry shortly."
        )
        super().__init__(Code.ABORTED, Reason.TURN_IN_PROGRESS, message, retry_after_s=1.0)


class TurnClaimLost(RuntimeError):
    """A commit for a turn that no longer holds its conversation (another process
    recovered it as crashed): nothing was written."""


@dataclass(frozen=True, slots=True)
class StoredAgent:
    """An agent as stored: its definition is the portable document that was applied
    (a knowledge base is a name relative to the knowledge root); the core parses it."""

    id: str
    org_id: str
    slug: str
    name: str
    definition: dict[str, Any]
    active: bool
    created_at: datetime
    updated_at: datetime


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
    # Webhook events of the start (conversation.created, message.created), written in
    # the same transaction (core.outbox).
    outbox: tuple[OutboxEvent, ...] = ()
    # Rows of the conversation's activity log (core.handoffs) written with the start.
    activity: tuple[ActivityDraft, ...] = ()


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
    # Webhook events of the end (message.created, turn.completed), in the same transaction.
    outbox: tuple[OutboxEvent, ...] = ()
    activity: tuple[ActivityDraft, ...] = ()  # activity-log rows written with the end


class Store(Protocol):
    # True when several processes run turns on this store at once (PostgreSQL): start-up
    # recovery then leaves turns whose lease has not expired to the core holding it.
    shared: bool

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

    async def list_orgs(self) -> list[Organisation]: ...  # by slug

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

    # Agents (an agent with the same slug is updated in place and keeps its id; an active
    # agent makes every other agent of its organisation inactive)
    async def upsert_agent(self, agent: StoredAgent) -> StoredAgent: ...

    async def get_agent(self, org_id: str, id_or_slug: str) -> StoredAgent | None: ...

    async def get_active_agent(self, org_id: str) -> StoredAgent | None: ...

    async def list_agents(self, org_id: str) -> list[StoredAgent]: ...

    # Conversations, turns, transcripts
    async def get_conversation(
        self, org_id: str, conversation_id: str
    ) -> ConversationRecord | None: ...

    async def create_conversation(self, conversation: ConversationRecord) -> None: ...

    async def begin_turn(self, begin: TurnBegin) -> TurnRecord:
        """Claim the conversation (creating it first if `new_conversation`), claim the
        idempotency key, write the turn and its user message. Returns the turn with the
        `first_seq` allocated to it. Raises TurnConflict; NotFound for an unknown
        conversation."""
        ...

    async def resume_turn(
        self, org_id: str, interrupt_id: str, now: datetime
    ) -> TurnRecord | None:
        """Claim a pending interrupt and its conversation in one transaction: the turn,
        running again, with `first_seq` set to the new segment's first number. None if the
        interrupt is not pending (already resumed); TurnConflict if another turn runs."""
        ...

    async def commit_turn(self, commit: TurnCommit) -> None:
        """Store the segment's events (numbered from the claim's `first_seq`), messages,
        ledger entry and interrupt, and release the conversation. TurnClaimLost if the
        turn no longer holds it."""
        ...

    async def get_turn(self, org_id: str, turn_id: str) -> TurnRecord | None: ...

    async def find_turn_by_key(self, org_id: str, idempotency_key: str) -> TurnRecord | None: ...

    async def list_messages(
        self, org_id: str, conversation_id: str, limit: int, after: int = 0
    ) -> tuple[list[MessageRecord], int]: ...

    async def recent_messages(
        self, org_id: str, conversation_id: str, limit: int
    ) -> list[MessageRecord]: ...

    async def list_events(
        self, org_id: str, conversation_id: str, after_seq: int, turn_id: str = ""
    ) -> list[Event]:
        """Every stored event with seq > after_seq, in order, exactly as committed."""
        ...

    async def mark_running_turns(self, status: str, now: datetime) -> int:
        """Turns left running (by a crashed process) get `status`; their claims go."""
        ...

    async def running_turns(self) -> list[TurnRecord]:
        """Every turn stored as `running` (at start-up: the ones a crash left behind)."""
        ...

    async def renew_leases(self, owner: str, turn_ids: Sequence[str],
                           expires_at: datetime) -> list[str]:
        """Extend `owner`'s lease on these running turns to `expires_at` (a turn with no
        lease takes it). Returns the ids renewed: a turn missing ended, or another
        replica took it over as expired."""
        ...

    async def take_expired_leases(self, owner: str, now: datetime, expires_at: datetime,
                                  unleased_before: datetime) -> list[TurnRecord]:
        """The running turns whose lease expired before `now` (or that never had one and
        were last updated before `unleased_before`), each now leased to `owner` until
        `expires_at`, atomically: replicas sweeping at once never take the same turn."""
        ...

    async def last_turn(self, org_id: str, conversation_id: str) -> TurnRecord | None:
        """The turn whose events were stored last (a running turn counts as latest)."""
        ...

    async def prune_events(self, before: datetime) -> int:
        """Drop the event log of finished turns stored before `before` (transcripts,
        turns and the ledger stay); returns the number of segments removed."""
        ...

    # Usage ledger
    async def sum_spend(self, org_id: str, since: datetime, user_id: str = "") -> int: ...

    async def usage_report(self, org_id: str, since: datetime) -> list[dict[str, Any]]:
        """Spend per UTC day (`day`, YYYY-MM-DD) and model: turns, prompt_tokens,
        completion_tokens, cost_micros."""
        ...

    # Interrupts
    async def get_interrupt(self, org_id: str, interrupt_id: str) -> InterruptRecord | None: ...


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

    # Webhooks out (core.outbox). Every transition that changes a conversation writes its
    # events in its own transaction: begin_turn / commit_turn take them in TurnBegin /
    # TurnCommit.outbox; a backend's other transitions call its `append_outbox(conn, ...)`
    # helper on their own connection. An event is stored once, with one delivery per
    # endpoint subscribed to its type then (none: the event is not stored at all).
    async def create_webhook(self, endpoint: WebhookEndpoint) -> None:
        """EndpointError beyond MAX_ENDPOINTS_PER_ORG endpoints."""
        ...

    async def list_webhooks(self, org_id: str) -> list[WebhookEndpoint]: ...

    async def get_webhook(self, org_id: str, endpoint_id: str) -> WebhookEndpoint | None: ...

    async def remove_webhook(self, org_id: str, endpoint_id: str, at: datetime) -> bool:
        """False when no such (live) endpoint; its pending deliveries are cancelled."""
        ...

    async def append_outbox(self, events: Sequence[OutboxEvent]) -> None:
        """`events` in a transaction of their own."""
        ...

    async def claim_deliveries(self, now: datetime, limit: int, lease_until: datetime,
                               token: str) -> list[Delivery]:
        """Up to `limit` due pending deliveries, claimed under `token` until `lease_until`:
        none claimed by another dispatcher (unless its lease ran out), and none with an
        earlier pending delivery of the same conversation to the same endpoint."""
        ...

    async def finish_delivery(self, result: AttemptResult) -> bool:
        """An attempt's outcome; False if the claim was lost (nothing written)."""
        ...

    async def list_deliveries(self, org_id: str, limit: int, *, status: str = "",
                              endpoint_id: str = "") -> list[DeliveryRecord]:
        """The delivery log, newest first."""
        ...

    async def prune_deliveries(self, before: datetime) -> int:
        """Drop finished deliveries of events from before `before` (pending ones stay),
        and events left without deliveries; returns the deliveries removed."""
        ...


    # Human handoff (core.handoffs). Each transition is one transaction: a conditional
    # update of the handoff row plus its activity row and its webhook events (`outbox`);
    # a refused one raises the SwitchboardError `core.handoffs.check_transition` names
    # (NOT_FOUND for a conversation of another organisation).
    async def get_handoff(self, org_id: str, conversation_id: str) -> HandoffRecord | None:
        ...

    async def list_handoffs(self, org_id: str, states: Sequence[str],
                            limit: int = ...) -> list[HandoffRecord]:
        """The organisation's handoffs in these states, least recently changed first."""
        ...

    async def request_handoff(self, request: HandoffRequest, outbox: Sequence[OutboxEvent] = ()
                              ) -> tuple[HandoffRecord, Activity]:
        """bot/closed -> waiting, with its ticket."""
        ...

    async def claim_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                            now: datetime, outbox: Sequence[OutboxEvent] = ()
                            ) -> tuple[HandoffRecord, Activity]:
        """waiting -> human: exactly one of concurrent claims wins."""
        ...

    async def release_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                              now: datetime, outbox: Sequence[OutboxEvent] = ()
                              ) -> tuple[HandoffRecord, Activity]:
        """waiting/human -> bot."""
        ...

    async def close_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                            now: datetime, outbox: Sequence[OutboxEvent] = ()
                            ) -> tuple[HandoffRecord, Activity]:
        """waiting/human -> closed."""
        ...

    async def add_operator_message(self, message: MessageRecord, operator: Operator,
                                   now: datetime, outbox: Sequence[OutboxEvent] = ()
                                   ) -> Activity:
        """An operator's message in the transcript and the activity log (state human)."""
        ...

    async def list_activity(self, org_id: str, after_id: int, conversation_id: str = "",
                            limit: int = ...) -> list[Activity]:
        """Activity rows with id > after_id, in id (= commit) order."""
        ...

    async def last_activity_id(self, org_id: str) -> int: ...
