"""SQLite side of the webhook outbox (`core.outbox`): endpoints, events written inside the
transaction of the change, claims of due deliveries, the delivery log. Mixed into
`SqliteStore` (tables in 0014_webhooks.sql)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.outbox.deliveries import (
    CANCELLED,
    DELIVERED,
    PENDING,
    RETRY_WINDOW_S,
    AttemptResult,
    Delivery,
    DeliveryRecord,
)
from core.outbox.endpoints import MAX_ENDPOINTS_PER_ORG, EndpointError, WebhookEndpoint
from core.outbox.events import OutboxEvent
from core.store import rows
from core.store.sqlite_db import Database, micros
from core.store.sqlite_db import dt as _dt
from core.store.sqlite_db import ts as _ts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# An endpoint subscribes to an event type: '*' or the type among its comma-joined list.
_SUBSCRIBED = ("org_id = ? AND removed_at IS NULL AND "
               "(events = '*' OR instr(',' || events || ',', ?) > 0)")


def _moment(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def append_outbox(conn: sqlite3.Connection, events: Sequence[OutboxEvent]) -> None:
    """Write `events` in the caller's transaction: each event once, with one delivery per
    endpoint subscribed to its type. An event nobody subscribes to is not stored."""
    # Most organisations have no endpoint: one indexed lookup per organisation, then
    # nothing more, keeps a turn's transaction as it was without webhooks.
    wanted: set[str] = set()
    for org_id in {e.org_id for e in events}:
        cursor = conn.execute("SELECT 1 FROM webhook_endpoints WHERE org_id = ? AND "
                              "removed_at IS NULL LIMIT 1", (org_id,))
        if cursor.fetchone() is not None:
            wanted.add(org_id)
        cursor.close()
    for e in events:
        if e.org_id not in wanted:
            continue
        match = f",{e.type},"
        cursor = conn.execute(
            "INSERT INTO webhook_events (id, org_id, conversation_id, type, body, created_at) "
            f"SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM webhook_endpoints "
            f"WHERE {_SUBSCRIBED})",
            (e.id, e.org_id, e.conversation_id, e.type, e.body(), _ts(e.created_at),
             e.org_id, match),
        )
        if cursor.rowcount != 1:
            continue
        deadline = e.created_at + timedelta(seconds=RETRY_WINDOW_S)
        conn.execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, org_id, conversation_id, "
            "next_attempt_us, deadline_us, created_at) "
            f"SELECT ?, id, org_id, ?, ?, ?, ? FROM webhook_endpoints WHERE {_SUBSCRIBED} "
            "ORDER BY id",
            (e.id, e.conversation_id, micros(e.created_at), micros(deadline),
             _ts(e.created_at), e.org_id, match),
        )


def _endpoint(row: rows.Row) -> WebhookEndpoint:
    return rows.webhook_endpoint(row, _dt)


class SqliteOutboxMixin:
    db: Database

    async def create_webhook(self, endpoint: WebhookEndpoint) -> None:
        def create(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "SELECT COUNT(*) FROM webhook_endpoints WHERE org_id = ? "
                "AND removed_at IS NULL", (endpoint.org_id,))
            (count,) = cursor.fetchone()
            cursor.close()
            if count >= MAX_ENDPOINTS_PER_ORG:
                raise EndpointError(f"an organisation has at most {MAX_ENDPOINTS_PER_ORG} "
                                    "webhook endpoints; remove one first")
            conn.execute(
                "INSERT INTO webhook_endpoints (id, org_id, url, secret, events, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (endpoint.id, endpoint.org_id, endpoint.url, endpoint.secret,
                 endpoint.events_text, _ts(endpoint.created_at)),
            )
        await self.db.write(create)

    async def list_webhooks(self, org_id: str) -> list[WebhookEndpoint]:
        found = await self.db.fetchall(
            "SELECT * FROM webhook_endpoints WHERE org_id = ? AND removed_at IS NULL "
            "ORDER BY created_at, id", (org_id,))
        return [_endpoint(r) for r in found]

    async def get_webhook(self, org_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        row = await self.db.fetchone(
            "SELECT * FROM webhook_endpoints WHERE id = ? AND org_id = ? "
            "AND removed_at IS NULL", (endpoint_id, org_id))
        return _endpoint(row) if row else None

    async def remove_webhook(self, org_id: str, endpoint_id: str, at: datetime) -> bool:
        """The endpoint gets nothing more; its pending deliveries are cancelled (the log
        keeps them)."""
        def remove(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE webhook_endpoints SET removed_at = ? WHERE id = ? AND org_id = ? "
                "AND removed_at IS NULL", (_ts(at), endpoint_id, org_id))
            if cursor.rowcount != 1:
                return False
            conn.execute(
                "UPDATE webhook_deliveries SET status = ?, claim_token = '' "
                "WHERE endpoint_id = ? AND status = ?", (CANCELLED, endpoint_id, PENDING))
            return True
        return await self.db.write(remove)

    async def append_outbox(self, events: Sequence[OutboxEvent]) -> None:
        await self.db.write(lambda conn: append_outbox(conn, events))

    async def claim_deliveries(self, now: datetime, limit: int, lease_until: datetime,
                               token: str) -> list[Delivery]:
        def claim(conn: sqlite3.Connection) -> list[Any]:
            at = micros(now)
            conn.execute(
                "UPDATE webhook_deliveries SET claimed_until_us = ?, claim_token = ? "
                "WHERE id IN (SELECT d.id FROM webhook_deliveries d "
                "WHERE d.status = 'pending' AND d.next_attempt_us <= ? "
                "AND d.claimed_until_us <= ? AND NOT EXISTS (SELECT 1 FROM "
                "webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND "
                "p.conversation_id = d.conversation_id AND p.status = 'pending' "
                "AND p.id < d.id) ORDER BY d.next_attempt_us, d.id LIMIT ?)",
                (micros(lease_until), token, at, at, limit),
            )
            cursor = conn.execute(
                "SELECT d.id, d.claim_token, d.event_id, e.type, e.body, d.endpoint_id, "
                "w.url, w.secret, d.attempts, d.deadline_us FROM webhook_deliveries d "
                "JOIN webhook_events e ON e.id = d.event_id "
                "JOIN webhook_endpoints w ON w.id = d.endpoint_id "
                "WHERE d.claim_token = ? AND d.status = 'pending' ORDER BY d.id", (token,))
            found = cursor.fetchall()
            cursor.close()
            return found
        found = await self.db.write(claim)
        return [Delivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], _moment(r[9]))
                for r in found]

    async def finish_delivery(self, result: AttemptResult) -> bool:
        """Store an attempt's outcome; False when the claim was lost meanwhile (its lease
        ran out and another dispatcher took the row)."""
        r = result
        next_us = micros(r.next_attempt_at) if r.next_attempt_at is not None else 0
        delivered = _ts(r.attempted_at) if r.status == DELIVERED else None
        return bool(await self.db.write(lambda conn: conn.execute(
            "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, "
            "last_status = ?, last_error = ?, next_attempt_us = CASE WHEN ? > 0 THEN ? "
            "ELSE next_attempt_us END, delivered_at = ?, claimed_until_us = 0, "
            "claim_token = '' WHERE id = ? AND claim_token = ? AND status = 'pending'",
            (r.status, r.http_status, r.error, next_us, next_us, delivered, r.delivery_id,
             r.claim_token),
        ).rowcount))

    async def list_deliveries(self, org_id: str, limit: int, *, status: str = "",
                              endpoint_id: str = "") -> list[DeliveryRecord]:
        """The organisation's delivery log, newest first."""
        sql = ("SELECT d.*, e.type AS event_type, w.url FROM webhook_deliveries d "
               "JOIN webhook_events e ON e.id = d.event_id "
               "JOIN webhook_endpoints w ON w.id = d.endpoint_id WHERE d.org_id = ?")
        params: list[Any] = [org_id]
        if status:
            sql += " AND d.status = ?"
            params.append(status)
        if endpoint_id:
            sql += " AND d.endpoint_id = ?"
            params.append(endpoint_id)
        found = await self.db.fetchall(sql + " ORDER BY d.id DESC LIMIT ?", [*params, limit])
        return [DeliveryRecord(
            id=r["id"], event_id=r["event_id"], event_type=r["event_type"], org_id=r["org_id"],
            conversation_id=r["conversation_id"], endpoint_id=r["endpoint_id"], url=r["url"],
            status=r["status"], attempts=r["attempts"], last_status=r["last_status"],
            last_error=r["last_error"],
            next_attempt_at=_moment(r["next_attempt_us"]) if r["status"] == PENDING else None,
            delivered_at=_dt(r["delivered_at"]) if r["delivered_at"] else None,
            created_at=_dt(r["created_at"]),
        ) for r in found]

    async def prune_deliveries(self, before: datetime) -> int:
        """Drop finished deliveries of events older than `before`, and events left with
        no delivery; returns the deliveries removed."""
        # deadline_us is the event's time plus the retry window: an integer to compare.
        cutoff = micros(before + timedelta(seconds=RETRY_WINDOW_S))

        def prune(conn: sqlite3.Connection) -> int:
            removed = conn.execute(
                "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND deadline_us < ?",
                (cutoff,)).rowcount
            conn.execute(
                "DELETE FROM webhook_events WHERE NOT EXISTS (SELECT 1 FROM "
                "webhook_deliveries d WHERE d.event_id = webhook_events.id)")
            return int(removed)
        return await self.db.write(prune)

