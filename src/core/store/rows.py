"""Stored rows to records, for every backend.

The SQLite and PostgreSQL stores keep the same columns; only how a time comes back
differs (SQLite keeps ISO text, asyncpg returns TIMESTAMPTZ as an aware datetime). Each
backend passes its `ReadTime`, so the mapping of columns to records is written once and
a new column is added in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from core.domain import (
    ApiKey,
    ConversationRecord,
    MessageRecord,
    Organisation,
    OrgSettings,
    TurnRecord,
)
from core.events import ActionData, Usage
from core.flows.store import ExecutionRecord, ModelPrice
from core.handoffs import Activity, HandoffRecord
from core.outbox.endpoints import WebhookEndpoint, events_from_text

ReadTime = Callable[[Any], datetime]


class Row(Protocol):
    """What both drivers' rows offer: a value by column name."""

    def __getitem__(self, key: str) -> Any: ...


def dumps(value: Any) -> str:
    # Sorted keys and no spaces: a stored document has one spelling, whatever built it.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


def _maybe(when: ReadTime, value: Any) -> datetime | None:
    return when(value) if value is not None else None


def organisation(row: Row, when: ReadTime) -> Organisation:
    return Organisation(
        id=row["id"], slug=row["slug"], name=row["name"],
        settings=OrgSettings.from_json(loads(row["settings_json"]) or {}),
        created_at=when(row["created_at"]),
    )


def api_key(row: Row, when: ReadTime) -> ApiKey:
    return ApiKey(
        id=row["id"], org_id=row["org_id"], kind=row["kind"], prefix=row["prefix"],
        name=row["name"], created_at=when(row["created_at"]),
        revoked=row["revoked_at"] is not None, expires_at=_maybe(when, row["expires_at"]),
    )


def conversation(row: Row, when: ReadTime) -> ConversationRecord:
    return ConversationRecord(
        id=row["id"], org_id=row["org_id"], agent_id=row["agent_id"],
        user_id=row["user_id"], status=row["status"], last_seq=row["last_seq"],
        created_at=when(row["created_at"]), updated_at=when(row["updated_at"]),
        context=loads(row["context_json"]) or {},
        variables=loads(row["variables_json"]) or {},
        message_count=row["message_count"], owner=row["owner"],
    )


def turn(row: Row, when: ReadTime) -> TurnRecord:
    return TurnRecord(
        id=row["id"], conversation_id=row["conversation_id"], org_id=row["org_id"],
        status=row["status"], agent_id=row["agent_id"], first_seq=row["first_seq"],
        last_seq=row["last_seq"], created_at=when(row["created_at"]),
        updated_at=when(row["updated_at"]), idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
    )


def message(row: Row, when: ReadTime) -> MessageRecord:
    usage = loads(row["usage_json"]) or {}
    return MessageRecord(
        id=row["id"], conversation_id=row["conversation_id"], org_id=row["org_id"],
        turn_id=row["turn_id"], role=row["role"], content=row["content"],
        status=row["status"], created_at=when(row["created_at"]), agent_id=row["agent_id"],
        actions=tuple(ActionData(**a) for a in loads(row["actions_json"]) or []),
        confidence=row["confidence"],
        usage=Usage(**usage) if usage else Usage(),
        images=tuple(loads(row["images_json"]) or ()),
        metadata=loads(row["metadata_json"]) or {},
    )


def execution(row: Row, when: ReadTime) -> ExecutionRecord:
    return ExecutionRecord(
        id=row["id"], org_id=row["org_id"], agent_id=row["agent_id"],
        conversation_id=row["conversation_id"], intent=row["intent"],
        status=row["status"], current_step=row["current_step"],
        state=loads(row["state_json"]) or {}, steps_run=row["steps_run"],
        created_at=when(row["created_at"]), updated_at=when(row["updated_at"]),
        expected_input=loads(row["expected_input_json"]),
        wait_expires_at=_maybe(when, row["wait_expires_at"]),
    )


def model_price(row: Row, when: ReadTime) -> ModelPrice:
    return ModelPrice(
        model=row["model"], input_micros_per_mtok=row["input_micros_per_mtok"],
        output_micros_per_mtok=row["output_micros_per_mtok"],
        updated_at=when(row["updated_at"]),
    )


def webhook_endpoint(row: Row, when: ReadTime) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"], org_id=row["org_id"], url=row["url"], secret=row["secret"],
        events=events_from_text(row["events"]), created_at=when(row["created_at"]),
    )


def handoff(row: Row, when: ReadTime) -> HandoffRecord:
    return HandoffRecord(
        conversation_id=row["conversation_id"], org_id=row["org_id"], state=row["state"],
        updated_at=when(row["updated_at"]), team=row["team"], ticket_id=row["ticket_id"],
        reason=row["reason"], operator_id=row["operator_id"],
        operator_name=row["operator_name"], requested_at=_maybe(when, row["requested_at"]),
    )


def activity(row: Row, when: ReadTime) -> Activity:
    return Activity(
        id=int(row["id"]), org_id=row["org_id"], conversation_id=row["conversation_id"],
        kind=row["kind"], data=loads(row["data_json"]) or {},
        created_at=when(row["created_at"]),
    )
