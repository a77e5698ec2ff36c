"""Helpers for the Store contract suite (records built the same way for every backend)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.domain import ConversationRecord, Organisation, OrgSettings, TurnRecord
from core.store.base import Store, TurnBegin

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str = "id") -> str:
        self.n += 1
        return f"{prefix}-{self.n:04d}"


async def make_org(store: Store, org_id: str, slug: str = "") -> Organisation:
    org = Organisation(org_id, slug or org_id, f"Org {org_id}", OrgSettings(), T0)
    await store.create_org(org)
    return org


def conversation(org_id: str, conversation_id: str, **extra: Any) -> ConversationRecord:
    return ConversationRecord(
        id=conversation_id, org_id=org_id, agent_id="agent-1", user_id="u1", status="open",
        last_seq=0, created_at=T0, updated_at=T0, **extra,
    )


def turn(org_id: str, conversation_id: str, turn_id: str, key: str = "",
         at: datetime = T0, request_hash: str = "h") -> TurnRecord:
    return TurnRecord(
        id=turn_id, conversation_id=conversation_id, org_id=org_id, status="running",
        agent_id="agent-1", first_seq=0, last_seq=0, created_at=at, updated_at=at,
        idempotency_key=key, request_hash=request_hash,
    )


async def begin_new(store: Store, org_id: str, conversation_id: str, turn_id: str,
                    **kw: Any) -> TurnRecord:
    return await store.begin_turn(TurnBegin(
        turn=turn(org_id, conversation_id, turn_id, **kw),
        new_conversation=conversation(org_id, conversation_id),
    ))


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
