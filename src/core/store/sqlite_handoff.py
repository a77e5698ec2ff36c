"""SQLite side of the handoff store (core.handoffs): conversation handoff states and the
activity log. Mixed into `SqliteStore` (tables in 0013_handoff.sql).

Every transition is one write on the writer thread (one transaction: SQLite serialises
writers, so the read of the row and its conditional update cannot interleave with
another claim), and writes its activity row in the same transaction. Each transition
runs through `_transition`, which also writes the transition's webhook events
(core.outbox) in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
from core.store.rows import dumps
from core.store.sqlite_db import Database
from core.store.sqlite_db import dt as _read_time
from core.store.sqlite_db import ts as _ts
from core.store.sqlite_outbox import append_outbox


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Row | None:
    cursor = conn.execute(sql, tuple(params))
    try:
        row: sqlite3.Row | None = cursor.fetchone()
    finally:
        cursor.close()
    return row


def append_activity(conn: sqlite3.Connection, org_id: str, conversation_id: str,
                    draft: ActivityDraft, now: datetime) -> Activity:
    """One activity row, inside the caller's transaction (a turn's begin or commit, or a
    transition)."""
    row = _one(conn,
               "INSERT INTO conversation_activity (org_id, conversation_id, kind, data_json, "
               "created_at) VALUES (?, ?, ?, ?, ?) RETURNING *",
               (org_id, conversation_id, draft.kind, dumps(draft.data), _ts(now)))
    assert row is not None
    return rows.activity(row, _read_time)


def _locked_handoff(conn: sqlite3.Connection, org_id: str,
                    conversation_id: str) -> HandoffRecord | None:
    """The conversation's handoff row (None: never handed off); NOT_FOUND for a
    conversation that is not this organisation's."""
    if _one(conn, "SELECT 1 FROM conversations WHERE id = ? AND org_id = ?",
            (conversation_id, org_id)) is None:
        raise not_found(Reason.CONVERSATION_NOT_FOUND,
                        f"Conversation '{conversation_id}' not found.")
    row = _one(conn, "SELECT * FROM handoffs WHERE conversation_id = ? AND org_id = ?",
               (conversation_id, org_id))
    return rows.handoff(row, _read_time) if row is not None else None


def _transition(conn: sqlite3.Connection, org_id: str, conversation_id: str,
                allowed: tuple[str, ...], to: str, now: datetime,
                operator: Operator | None, sets: dict[str, Any],
                outbox: Sequence[OutboxEvent]) -> tuple[HandoffRecord, Activity]:
    current = _locked_handoff(conn, org_id, conversation_id)
    previous = check_transition(current, conversation_id, allowed, operator)
    values = {"state": to, "updated_at": _ts(now), **sets}
    if current is None:
        columns = ["conversation_id", "org_id", *values]
        row = _one(conn,
                   f"INSERT INTO handoffs ({', '.join(columns)}) VALUES "
                   f"({', '.join('?' for _ in columns)}) RETURNING *",
                   (conversation_id, org_id, *values.values()))
    else:
        assignments = ", ".join(f"{column} = ?" for column in values)
        marks = ", ".join("?" for _ in allowed)
        # Conditional (the state it was read in) although the writer lock already
        # serialises: the guarantee does not rest on how the transaction was opened.
        row = _one(conn,
                   f"UPDATE handoffs SET {assignments} WHERE conversation_id = ? "
                   f"AND org_id = ? AND state IN ({marks}) RETURNING *",
                   (*values.values(), conversation_id, org_id, *allowed))
    assert row is not None
    record = rows.handoff(row, _read_time)
    activity = append_activity(conn, org_id, conversation_id, ActivityDraft(
        ActivityKind.STATE, state_data(record, previous)), now)
    append_outbox(conn, outbox)
    return record, activity


class SqliteHandoffMixin:
    db: Database

    async def get_handoff(self, org_id: str, conversation_id: str) -> HandoffRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM handoffs WHERE conversation_id = ? AND org_id = ?",
            (conversation_id, org_id))
        return rows.handoff(row, _read_time) if row is not None else None

    async def list_handoffs(self, org_id: str, states: Sequence[str],
                            limit: int = limits.HANDOFF_LIST_MAX) -> list[HandoffRecord]:
        marks = ", ".join("?" for _ in states)
        found = await self.db.fetchall(
            f"SELECT * FROM handoffs WHERE org_id = ? AND state IN ({marks}) "
            "ORDER BY updated_at, conversation_id LIMIT ?", (org_id, *states, limit))
        return [rows.handoff(r, _read_time) for r in found]

    async def request_handoff(self, request: HandoffRequest, outbox: Sequence[OutboxEvent] = ()
                              ) -> tuple[HandoffRecord, Activity]:
        r = request

        def write(conn: sqlite3.Connection) -> tuple[HandoffRecord, Activity]:
            result = _transition(
                conn, r.org_id, r.conversation_id, (HandoffState.BOT, HandoffState.CLOSED),
                HandoffState.WAITING, r.now, None,
                {"team": r.team, "ticket_id": r.ticket_id, "reason": r.reason,
                 "operator_id": "", "operator_name": "", "requested_at": _ts(r.now)}, outbox)
            conn.execute(
                "INSERT INTO tickets (id, org_id, conversation_id, team, subject, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (r.ticket_id, r.org_id, r.conversation_id, r.team, r.subject, _ts(r.now)))
            return result
        return await self.db.write(write)

    async def claim_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                            now: datetime, outbox: Sequence[OutboxEvent] = ()
                            ) -> tuple[HandoffRecord, Activity]:
        return await self.db.write(lambda conn: _transition(
            conn, org_id, conversation_id, (HandoffState.WAITING,), HandoffState.HUMAN, now,
            operator, {"operator_id": operator.id, "operator_name": operator.name}, outbox))

    async def release_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                              now: datetime, outbox: Sequence[OutboxEvent] = ()
                              ) -> tuple[HandoffRecord, Activity]:
        return await self.db.write(lambda conn: _transition(
            conn, org_id, conversation_id, HandoffState.HELD, HandoffState.BOT, now,
            operator, {}, outbox))

    async def close_handoff(self, org_id: str, conversation_id: str, operator: Operator,
                            now: datetime, outbox: Sequence[OutboxEvent] = ()
                            ) -> tuple[HandoffRecord, Activity]:
        return await self.db.write(lambda conn: _transition(
            conn, org_id, conversation_id, HandoffState.HELD, HandoffState.CLOSED, now,
            operator, {}, outbox))

    async def add_operator_message(self, message: MessageRecord, operator: Operator,
                                   now: datetime, outbox: Sequence[OutboxEvent] = ()
                                   ) -> Activity:
        """The operator's reply, in the transcript and the activity log, while the
        conversation is `human` and theirs."""
        m = message

        def write(conn: sqlite3.Connection) -> Activity:
            current = _locked_handoff(conn, m.org_id, m.conversation_id)
            check_transition(current, m.conversation_id, (HandoffState.HUMAN,), operator)
            conn.execute(
                "INSERT INTO messages (id, conversation_id, org_id, turn_id, role, content, "
                "status, agent_id, actions_json, confidence, usage_json, images_json, "
                "metadata_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', 0, '{}', "
                "'[]', ?, ?)",
                (m.id, m.conversation_id, m.org_id, m.turn_id, m.role, m.content, m.status,
                 m.agent_id, dumps(m.metadata), _ts(m.created_at)))
            activity = append_activity(conn, m.org_id, m.conversation_id, ActivityDraft(
                ActivityKind.MESSAGE, message_data(m, True, operator)), now)
            append_outbox(conn, outbox)
            return activity
        return await self.db.write(write)

    async def list_activity(self, org_id: str, after_id: int, conversation_id: str = "",
                            limit: int = limits.ACTIVITY_PAGE) -> list[Activity]:
        sql = "SELECT * FROM conversation_activity WHERE org_id = ? AND id > ?"
        params: list[Any] = [org_id, after_id]
        if conversation_id:
            sql += " AND conversation_id = ?"
            params.append(conversation_id)
        found = await self.db.fetchall(sql + " ORDER BY id LIMIT ?", (*params, limit))
        return [rows.activity(r, _read_time) for r in found]

    async def last_activity_id(self, org_id: str) -> int:
        row = await self.db.fetchone(
            "SELECT COALESCE(MAX(id), 0) FROM conversation_activity WHERE org_id = ?",
            (org_id,))
        return int(row[0]) if row is not None else 0

