"""PostgreSQL side of the webhook outbox (`core.outbox`), as `core.store.sqlite_outbox`.
Mixed into `PostgresStore`.

Several cores share the table: a dispatcher claims due rows with `FOR UPDATE SKIP LOCKED`
(rows another dispatcher is claiming right now are skipped, not waited for) and stamps a
lease (`claimed_until`, `claim_token`); a row stays out of every other claim until its
attempt is stored or the lease runs out (the claiming process died).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

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
from core.store.postgres_db import PgDatabase, rowcount
from core.store.postgres_db import as_stored as _as_stored


def _subscribed(org: str, match: str) -> str:
    return (f"org_id = {org} AND removed_at IS NULL AND "
            f"(events = '*' OR strpos(',' || events || ',', {match}) > 0)")


async def append_outbox(conn: asyncpg.Connection, events: Sequence[OutboxEvent]) -> None:
    """Write `events` in the caller's transaction: each event once, with one delivery per
    endpoint subscribed to its type. An event nobody subscribes to is not stored."""
    # Most organisations have no endpoint: one indexed lookup per organisation, then
    # nothing more, keeps a turn's transaction as it was without webhooks.
    wanted: set[str] = set()
    for org_id in {e.org_id for e in events}:
        if await conn.fetchval("SELECT 1 FROM webhook_endpoints WHERE org_id = $1 AND "
                               "removed_at IS NULL LIMIT 1", org_id) is not None:
            wanted.add(org_id)
    for e in events:
        if e.org_id not in wanted:
            continue
        match = f",{e.type},"
        inserted = rowcount(await conn.execute(
            "INSERT INTO webhook_events (id, org_id, conversation_id, type, body, created_at) "
            "SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM webhook_endpoints "
            f"WHERE {_subscribed('$2', '$7')})",
            e.id, e.org_id, e.conversation_id, e.type, e.body(), e.created_at, match,
        ))
        if inserted != 1:
            continue
        await conn.execute(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, org_id, conversation_id, "
            "next_attempt_at, deadline, created_at) "
            f"SELECT $1, id, org_id, $2, $3, $4, $3 FROM webhook_endpoints "
            f"WHERE {_subscribed('$5', '$6')} ORDER BY id",
            e.id, e.conversation_id, e.created_at,
            e.created_at + timedelta(seconds=RETRY_WINDOW_S), e.org_id, match,
        )


def _endpoint(row: asyncpg.Record) -> WebhookEndpoint:
    return rows.webhook_endpoint(row, _as_stored)


class PgOutboxMixin:
    db: PgDatabase

    async def create_webhook(self, endpoint: WebhookEndpoint) -> None:
        async with self.db.transaction() as conn:
            # Serialise creations per organisation so the cap holds under concurrency.
            await conn.execute("SELECT 1 FROM organisations WHERE id = $1 FOR UPDATE",
                               endpoint.org_id)
            count = await conn.fetchval(
                "SELECT COUNT(*) FROM webhook_endpoints WHERE org_id = $1 "
                "AND removed_at IS NULL", endpoint.org_id)
            if count >= MAX_ENDPOINTS_PER_ORG:
                raise EndpointError(f"an organisation has at most {MAX_ENDPOINTS_PER_ORG} "
                                    "webhook endpoints; remove one first")
            await conn.execute(
                "INSERT INTO webhook_endpoints (id, org_id, url, secret, events, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                endpoint.id, endpoint.org_id, endpoint.url, endpoint.secret,
                endpoint.events_text, endpoint.created_at,
            )

    async def list_webhooks(self, org_id: str) -> list[WebhookEndpoint]:
        found = await self.db.fetchall(
            "SELECT * FROM webhook_endpoints WHERE org_id = $1 AND removed_at IS NULL "
            "ORDER BY created_at, id", org_id)
        return [_endpoint(r) for r in found]

    async def get_webhook(self, org_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        row = await self.db.fetchone(
            "SELECT * FROM webhook_endpoints WHERE id = $1 AND org_id = $2 "
            "AND removed_at IS NULL", endpoint_id, org_id)
        return _endpoint(row) if row else None

    async def remove_webhook(self, org_id: str, endpoint_id: str, at: datetime) -> bool:
        async with self.db.transaction() as conn:
            removed = rowcount(await conn.execute(
                "UPDATE webhook_endpoints SET removed_at = $1 WHERE id = $2 AND org_id = $3 "
                "AND removed_at IS NULL", at, endpoint_id, org_id))
            if removed != 1:
                return False
            await conn.execute(
                "UPDATE webhook_deliveries SET status = $1, claim_token = '' "
                "WHERE endpoint_id = $2 AND status = $3", CANCELLED, endpoint_id, PENDING)
            return True

    async def append_outbox(self, events: Sequence[OutboxEvent]) -> None:
        async with self.db.transaction() as conn:
            await append_outbox(conn, events)

    async def claim_deliveries(self, now: datetime, limit: int, lease_until: datetime,
                               token: str) -> list[Delivery]:
        async with self.db.transaction() as conn:
            found = await conn.fetch(
                "WITH due AS (SELECT d.id FROM webhook_deliveries d "
                "WHERE d.status = 'pending' AND d.next_attempt_at <= $1 "
                "AND d.claimed_until <= $1 AND NOT EXISTS (SELECT 1 FROM "
                "webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND "
                "p.conversation_id = d.conversation_id AND p.status = 'pending' "
                "AND p.id < d.id) ORDER BY d.next_attempt_at, d.id LIMIT $2 "
                "FOR UPDATE SKIP LOCKED), "
                "claimed AS (UPDATE webhook_deliveries w SET claimed_until = $3, "
                "claim_token = $4 FROM due WHERE w.id = due.id RETURNING w.*) "
                "SELECT c.id, c.claim_token, c.event_id, e.type, e.body, c.endpoint_id, "
                "h.url, h.secret, c.attempts, c.deadline FROM claimed c "
                "JOIN webhook_events e ON e.id = c.event_id "
                "JOIN webhook_endpoints h ON h.id = c.endpoint_id ORDER BY c.id",
                now, limit, lease_until, token,
            )
        return [Delivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])
                for r in found]

    async def finish_delivery(self, result: AttemptResult) -> bool:
        r = result
        return bool(await self.db.execute(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, "
            "last_status = $2, last_error = $3, "
            "next_attempt_at = COALESCE($4, next_attempt_at), delivered_at = $5, "
            "claimed_until = 'epoch', claim_token = '' "
            "WHERE id = $6 AND claim_token = $7 AND status = 'pending'",
            r.status, r.http_status, r.error, r.next_attempt_at,
            r.attempted_at if r.status == DELIVERED else None, r.delivery_id, r.claim_token,
        ))

    async def list_deliveries(self, org_id: str, limit: int, *, status: str = "",
                              endpoint_id: str = "") -> list[DeliveryRecord]:
        sql = ("SELECT d.*, e.type AS event_type, w.url FROM webhook_deliveries d "
               "JOIN webhook_events e ON e.id = d.event_id "
               "JOIN webhook_endpoints w ON w.id = d.endpoint_id WHERE d.org_id = $1")
        params: list[Any] = [org_id]
        if status:
            params.append(status)
            sql += f" AND d.status = ${len(params)}"
        if endpoint_id:
            params.append(endpoint_id)
            sql += f" AND d.endpoint_id = ${len(params)}"
        params.append(limit)
        found = await self.db.fetchall(sql + f" ORDER BY d.id DESC LIMIT ${len(params)}",
                                       *params)
        return [DeliveryRecord(
            id=r["id"], event_id=r["event_id"], event_type=r["event_type"], org_id=r["org_id"],
            conversation_id=r["conversation_id"], endpoint_id=r["endpoint_id"], url=r["url"],
            status=r["status"], attempts=r["attempts"], last_status=r["last_status"],
            last_error=r["last_error"],
            next_attempt_at=r["next_attempt_at"] if r["status"] == PENDING else None,
            delivered_at=r["delivered_at"], created_at=r["created_at"],
        ) for r in found]

    async def prune_deliveries(self, before: datetime) -> int:
        async with self.db.transaction() as conn:
            removed = rowcount(await conn.execute(
                "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < $1",
                before))
            await conn.execute(
                "DELETE FROM webhook_events e WHERE NOT EXISTS (SELECT 1 FROM "
                "webhook_deliveries d WHERE d.event_id = e.id)")
            return removed

