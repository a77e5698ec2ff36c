"""What the flow engine and the price table need from the store, and their records.

`core.store.sqlite_flows.SqliteFlowsMixin` implements it for SQLite; another backend
implements the same methods. Lookups a client can influence take the organisation id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


class ExecutionStatus:
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    HANDED_OFF = "handed_off"
    FAILED = "failed"

    ALL = (RUNNING, WAITING, COMPLETED, HANDED_OFF, FAILED)


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One run of a flow. `state` is what the runner needs to continue (current step,
    flow variables, context, counters); it is JSON."""

    id: str
    org_id: str
    agent_id: str
    conversation_id: str
    intent: str
    status: str
    current_step: str
    state: dict[str, Any]
    steps_run: int
    created_at: datetime
    updated_at: datetime
    expected_input: dict[str, Any] | None = None
    wait_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WaitRecord:
    """A waiting execution's continuation. Only the token's SHA-256 is stored."""

    token_hash: str
    org_id: str
    execution_id: str
    conversation_id: str
    step_id: str
    expected_input: dict[str, Any]
    status: str  # pending | used
    expires_at: datetime
    created_at: datetime
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices in integer micro-dollars per one million tokens (model `*` = fallback)."""

    model: str
    input_micros_per_mtok: int
    output_micros_per_mtok: int
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class FlowStore(Protocol):
    async def get_or_create_secret(self, name: str, candidate: str) -> str: ...

    async def save_execution(
        self, execution: ExecutionRecord, wait: WaitRecord | None = None
    ) -> None: ...

    async def get_execution(self, org_id: str, execution_id: str) -> ExecutionRecord | None: ...

    async def get_wait(self, org_id: str, token_hash: str) -> WaitRecord | None: ...

    async def claim_wait(self, org_id: str, token_hash: str, now: datetime) -> bool: ...

    async def set_model_price(self, org_id: str, price: ModelPrice, now: datetime) -> None: ...

    async def get_model_price(self, org_id: str, model: str) -> ModelPrice | None: ...

    async def list_model_prices(self, org_id: str) -> list[ModelPrice]: ...

    async def delete_model_price(self, org_id: str, model: str) -> bool: ...

    async def get_flow_reply(
        self, org_id: str, idempotency_key: str
    ) -> tuple[str, str, datetime] | None: ...

    async def put_flow_reply(
        self, org_id: str, idempotency_key: str, request_hash: str, reply_json: str,
        now: datetime,
    ) -> None: ...


def flow_store(store: object) -> FlowStore:
    """`store` as a FlowStore; a backend without flow support fails loudly at start-up."""
    if not isinstance(store, FlowStore):
        raise TypeError(f"{type(store).__name__} does not implement the flow store")
    return store
