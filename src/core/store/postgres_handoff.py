"""PostgreSQL side of the handoff store (core.handoffs). Mixed into `PostgresStore`
(tables in migrations_pg/0013_handoff.sql).

A transition locks the conversation's row (`FOR UPDATE`: concurrent claims of one
conversation queue there, and the second sees the first's outcome), checks the handoff
row, writes it conditionally, and appends its activity row, in one transaction. Each
transition runs through `_transition`, the one place to add rows that must commit with it.

Activity ids must commit in order within an organisation (a follower resuming after id
N must never miss an N-1 that committed later): `append_activity` takes a per-organisation
transaction lock just before its insert, held until commit. Every writer takes the
conversation row before that lock, so the order never deadlocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from core import limits
from core.domain import MessageRecord
from core.errors import Reason, not_found
from core.handoffs import (
    Activity,
    ActivityDraft,
    ActivityKind,
    HandoffRecord,
    HandoffRequest,
    HandoffState,
    Operator,
    check_transition,
    message_data,
    state_data,
)
from core.outbox.events import OutboxEvent
from core.store import rows
from core.store.postgres_db import PgDatabase
from core.store.postgres_db import as_stored as _read_time
from core.store.postgres_outbox import append_outbox
from core.store.rows import dumps


async def append_activity(conn: asyncpg.Connection, org_id: str, conversation_id: str,
                          draft: ActivityDraft, now: datetime) -> Activity:
    """One activity row, inside the caller's transaction (a turn's begin or commit, or a
    transition)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('activity:' || $1))", org_id)
    row = await conn.fetchrow(
        "INSERT INTO conversation_activity (org_id, conversation_id, kind, data_json, "
        "created_at) VALUES ($1, $2, $3, $4, $5) RETURNING *",
        org_id, conversation_id, draft.kind, dumps(draft.data), now)
    assert row is not None
    return rows.activity(row, _read_time)


async def _locked_handoff(conn: asyncpg.Connection, org_id: str,
                          conversation_id: str) -> HandoffRecord | None:
    if await conn.fetchrow("SELECT 1 FROM conversations WHERE id = $1 AND org_id = $2 "
                           "FOR UPDATE", conversation_id, org_id) is None:
        raise not_found(Reason.CONVERSATION_NOT_FOUND,
                        f"Conversation '{conversation_id}' not found.")
    row = await conn.fetchrow(
        "SELECT * FROM handoffs WHERE conversation_id = $1 AND org_id = $2",
        conversation_id, org_id)
    return rows.handoff(row, _read_time) if row is not None else None


async def _transition(conn: asyncpg.Connection, org_id: str, conversation_id: str,
                      allowed: tuple[str, ...], to: str, now: datetime,
                      operator: Operator | None, sets: dict[str, Any],
                      outbox: Sequence[OutboxEvent]) -> tuple[HandoffRecord, Activity]:
    current = await _locked_handoff(conn, org_id, conversation_id)
    previous = check_transition(current, conversation_id, allowed, operator)
    values = {"state": to, "updated_at": now, **sets}
    if current is None:
        columns = ["conversation_id", "org_id", *values]
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        row = await conn.fetchrow(
            f"INSERT INTO handoffs ({', '.join(columns)}) VALUES ({marks}) RETURNING *",
            conversation_id, org_id, *values.values())
    else:
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, 1))
        n = len(values)
        states = ", ".join(f"${n + 4 + i}" for i in range(len(allowed)))
        row = await conn.fetchrow(
            f"UPDATE handoffs SET {assignments} WHERE conversation_id = ${n + 1} "
            f"AND org_id = ${n + 2} AND state = ${n + 3} AND state IN ({states}) RETURNING *",
            *values.values(), conversation_id, org_id, previous, *allowed)
    assert row is not None
    record = rows.handoff(row, _read_time)
    activity = await append_activity(conn, org_id, conversation_id, ActivityDraft(
        ActivityKind.STATE, state_data(record, previous)), now)
    await append_outbox(conn, outbox)
    return record, activity


class PgHandoffMixin:
    db: PgDatabase

    async def get_handoff(self, org_id: str, conversation_id: str) -> HandoffRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM handoffs WHERE conversation_id = $1 AND org_id = $2",
            conversation_id, org_id)
        return rows.handoff(row, _read_time) if row is not None else None

    async def list_handoffs(self, org_id: str, states: Sequence[str],
                            limit: int = limits.HANDOFF_LIST_MAX) -> list[HandoffRecord]:
        found = await self.db.fetchall(
            "SELECT * FROM handoffs WHERE org_id = $1 AND state = ANY($2::text[]) "
            "ORDER BY updated_at, conversation_id LIMIT $3", org_id, list(states), limit)
        return [rows.handoff(r, _read_time) for r in found]

    async def request_handoff(self, request: HandoffRequest, outbox: Sequence[OutboxEvent] = ()
                              ) -> tuple[HandoffRecord, Activity]:
        r = request
        async with self.db.transaction() as conn:
            result = await _transition(
                conn, r.org_id, r.conversation_id, (HandoffState.BOT, HandoffState.CLOSED),
                HandoffState.WAITING, r.now, None,
                {"team": r.team, "ticket_id": r.ticket_id, "reason": r.reason,
                 "operator_id": "", "operator_name": "", "requested_at": r.now}, outbox)
            await conn.execute(
                "INSERT INTO tickets (id, org_id, conversation_id, team, subject, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                r.ticket_id, r.org_id, r.conversation_id, r.team, r.subject, r.now)
        return result

    async def claim_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                            now: datetime, outbox: Sequence[OutboxEvent] = ()
                            ) -> tuple[HandoffRecord, Activity]:
        async with self.db.transaction() as conn:
            return await _transition(
                conn, org_id, conversation_id, (HandoffState.WAITING,), HandoffState.HUMAN,
                now, operator, {"operator_id": operator.id, "operator_name": operator.name},
                outbox)

    async def release_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                              now: datetime, outbox: Sequence[OutboxEvent] = ()
                              ) -> tuple[HandoffRecord, Activity]:
        async with self.db.transaction() as conn:
            return await _transition(conn, org_id, conversation_id, HandoffState.HELD,
                                     HandoffState.BOT, now, operator, {}, outbox)

    async def close_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                            now: datetime, outbox: Sequence[OutboxEvent] = ()
                            ) -> tuple[HandoffRecord, Activity]:
        async with self.db.transaction() as conn:
            return await _transition(conn, org_id, conversation_id, HandoffState.HELD,
                                     HandoffState.CLOSED, now, operator, {}, outbox)

    async def add_operator_message(self, message: MessageRecord, operator: Operator,
                                   now: datetime, outbox: Sequence[OutboxEvent] = ()
                                   ) -> Activity:
        m = message
        async with self.db.transaction() as conn:
            current = await _locked_handoff(conn, m.org_id, m.conversation_id)
            check_transition(current, m.conversation_id, (HandoffState.HUMAN,), operator)
            await conn.execute(
                "INSERT INTO messages (id, conversation_id, org_id, turn_id, role, content, "
                "status, agent_id, actions_json, confidence, usage_json, images_json, "
                "metadata_json, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                "'[]'::jsonb, 0, '{}'::jsonb, '[]'::jsonb, $9::jsonb, $10)",
                m.id, m.conversation_id, m.org_id, m.turn_id, m.role, m.content, m.status,
                m.agent_id, dumps(m.metadata), m.created_at)
            activity = await append_activity(conn, m.org_id, m.conversation_id, ActivityDraft(
                ActivityKind.MESSAGE, message_data(m, True, operator)), now)
            await append_outbox(conn, outbox)
            return activity

    async def list_activity(self, org_id: str, after_id: int, conversation_id: str = "",
                            limit: int = limits.ACTIVITY_PAGE) -> list[Activity]:
        if conversation_id:
            found = await self.db.fetchall(
                "SELECT * FROM conversation_activity WHERE org_id = $1 AND id > $2 "
                "AND conversation_id = $3 ORDER BY id LIMIT $4",
                org_id, after_id, conversation_id, limit)
        else:
            found = await self.db.fetchall(
                "SELECT * FROM conversation_activity WHERE org_id = $1 AND id > $2 "
                "ORDER BY id LIMIT $3", org_id, after_id, limit)
        return [rows.activity(r, _read_time) for r in found]

    async def last_activity_id(self, org_id: str) -> int:
        row = await self.db.fetchone(
            "SELECT COALESCE(MAX(id), 0) FROM conversation_activity WHERE org_id = $1",
            org_id)
        return int(row[0]) if row is not None else 0
