"""The PostgreSQL `Store` (for several core processes sharing one database).

The same statements as `core.store.sqlite`, in PostgreSQL's dialect: claims are
conditional UPDATEs (a row lock makes a concurrent claim wait, then see the claim and
match nothing), idempotency keys a partial unique index with ON CONFLICT DO NOTHING, so
concurrency never surfaces as a backend error. READ COMMITTED suffices for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from core.domain import (
    ApiKey,
    ConversationRecord,
    InterruptRecord,
    MessageRecord,
    Organisation,
    OrgSettings,
    PendingCall,
    TurnRecord,
)
from core.errors import Reason, not_found
from core.events import Event, event_from_dict, event_to_dict
from core.store import rows
from core.store.base import (
    EndUser,
    StoredAgent,
    TurnBegin,
    TurnClaimLost,
    TurnCommit,
    TurnConflict,
)
from core.store.failures import StoreHealth
from core.store.postgres_db import PgDatabase, rowcount
from core.store.postgres_db import as_stored as _as_stored
from core.store.postgres_flows import PgFlowsMixin
from core.store.postgres_handoff import PgHandoffMixin, append_activity
from core.store.postgres_outbox import PgOutboxMixin, append_outbox
from core.store.rows import dumps, loads

# Turn states whose event log may be pruned (an interrupted turn can still be resumed).
_FINISHED = ["completed", "routed", "failed", "stopped", "cancelled"]


def _compact(event: Event) -> dict[str, Any]:
    data = event_to_dict(event)
    del data["conversation_id"], data["turn_id"]
    return data


class PostgresStore(PgFlowsMixin, PgOutboxMixin, PgHandoffMixin):
    """PostgreSQL implementation of `core.store.base.Store`."""

    # Several cores share the database: a running turn may be another live core's.
    shared = True

    def __init__(self, dsn: str) -> None:
        self.db = PgDatabase(dsn)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    @property
    def health(self) -> StoreHealth:
        return self.db.health

    async def probe_write(self) -> None:
        await self.db.probe_write()

    # -- tenants and keys ---------------------------------------------------------------

    @staticmethod
    def _org(row: asyncpg.Record) -> Organisation:
        return rows.organisation(row, _as_stored)

    async def create_org(self, org: Organisation) -> None:
        await self.db.execute(
            "INSERT INTO organisations (id, slug, name, settings_json, created_at) "
            "VALUES ($1, $2, $3, $4::jsonb, $5)",
            org.id, org.slug, org.name, dumps(org.settings.to_json()), org.created_at,
        )

    async def get_org(self, org_id: str) -> Organisation | None:
        row = await self.db.fetchone("SELECT * FROM organisations WHERE id = $1", org_id)
        return self._org(row) if row else None

    async def list_orgs(self) -> list[Organisation]:
        rows = await self.db.fetchall("SELECT * FROM organisations ORDER BY slug")
        return [self._org(row) for row in rows]

    async def get_org_by_slug(self, slug: str) -> Organisation | None:
        row = await self.db.fetchone("SELECT * FROM organisations WHERE slug = $1", slug)
        return self._org(row) if row else None

    async def update_org_settings(self, org_id: str, settings: OrgSettings) -> None:
        await self.db.execute(
            "UPDATE organisations SET settings_json = $1::jsonb WHERE id = $2",
            dumps(settings.to_json()), org_id,
        )

    @staticmethod
    def _key(row: asyncpg.Record) -> ApiKey:
        return rows.api_key(row, _as_stored)

    async def create_key(self, key: ApiKey, key_hash: str) -> None:
        await self.db.execute(
            "INSERT INTO api_keys (id, org_id, kind, key_hash, prefix, name, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            key.id, key.org_id, key.kind, key_hash, key.prefix, key.name, key.created_at,
        )

    async def find_key(self, key_hash: str) -> ApiKey | None:
        row = await self.db.fetchone("SELECT * FROM api_keys WHERE key_hash = $1", key_hash)
        return self._key(row) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self.db.fetchone("SELECT * FROM api_keys WHERE id = $1", key_id)
        return self._key(row) if row else None

    async def stored_bytes(self, org_id: str) -> int:
        # JSONB's text form of the images array can differ from SQLite's compact JSON by
        # a few separator bytes per image: close enough for a storage quota.
        row = await self.db.fetchone(
            "SELECT COALESCE(SUM(octet_length(content) + octet_length(images_json::text)), 0)"
            " FROM messages WHERE org_id = $1",
            org_id,
        )
        return int(row[0]) if row else 0

    async def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Revoke now; False when no such key (or already revoked)."""
        return bool(await self.db.execute(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            at, key_id,
        ))

    async def expire_key(self, key_id: str, at: datetime) -> None:
        """The key expires at `at`, unless it already expires sooner (one conditional
        write, compared as instants)."""
        await self.db.execute(
            "UPDATE api_keys SET expires_at = $1 WHERE id = $2 "
            "AND (expires_at IS NULL OR expires_at > $1)",
            at, key_id,
        )

    async def list_keys(self, org_id: str) -> list[ApiKey]:
        rows = await self.db.fetchall(
            "SELECT * FROM api_keys WHERE org_id = $1 ORDER BY created_at, id", org_id
        )
        return [self._key(r) for r in rows]

    # -- agents -------------------------------------------------------------------------

    @staticmethod
    def _agent(row: asyncpg.Record) -> StoredAgent:
        return StoredAgent(
            id=row["id"], org_id=row["org_id"], slug=row["slug"], name=row["name"],
            definition=loads(row["definition_json"]) or {}, active=bool(row["active"]),
            created_at=row["created_at"], updated_at=row["updated_at"],
        )

    async def upsert_agent(self, agent: StoredAgent) -> StoredAgent:
        a = agent
        async with self.db.transaction() as conn:
            if a.active:
                await conn.execute("UPDATE agents SET active = FALSE WHERE org_id = $1", a.org_id)
            row = await conn.fetchrow(
                "INSERT INTO agents (id, org_id, slug, name, definition_json, active, "
                "created_at, updated_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8) "
                "ON CONFLICT (org_id, slug) DO UPDATE SET name = excluded.name, "
                "definition_json = excluded.definition_json, active = excluded.active, "
                "updated_at = excluded.updated_at RETURNING *",
                a.id, a.org_id, a.slug, a.name, dumps(a.definition), a.active,
                a.created_at, a.updated_at,
            )
        assert row is not None
        return self._agent(row)

    async def get_agent(self, org_id: str, id_or_slug: str) -> StoredAgent | None:
        row = await self.db.fetchone(
            "SELECT * FROM agents WHERE org_id = $1 AND (id = $2 OR slug = $2) "
            "ORDER BY CASE WHEN id = $2 THEN 0 ELSE 1 END LIMIT 1",
            org_id, id_or_slug,
        )
        return self._agent(row) if row else None

    async def get_active_agent(self, org_id: str) -> StoredAgent | None:
        row = await self.db.fetchone(
            "SELECT * FROM agents WHERE org_id = $1 ORDER BY active DESC, created_at, slug "
            "LIMIT 1",
            org_id,
        )
        return self._agent(row) if row else None

    async def list_agents(self, org_id: str) -> list[StoredAgent]:
        rows = await self.db.fetchall(
            "SELECT * FROM agents WHERE org_id = $1 ORDER BY created_at, slug", org_id
        )
        return [self._agent(r) for r in rows]

    # -- conversations and turns --------------------------------------------------------

    @staticmethod
    def _conversation(row: asyncpg.Record) -> ConversationRecord:
        return rows.conversation(row, _as_stored)

    async def get_conversation(
        self, org_id: str, conversation_id: str
    ) -> ConversationRecord | None:
        row = await self.db.fetchone(
            "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) "
            "AS message_count FROM conversations c WHERE c.id = $1 AND c.org_id = $2",
            conversation_id, org_id,
        )
        return self._conversation(row) if row else None

    @staticmethod
    async def _insert_message(conn: asyncpg.Connection, m: MessageRecord) -> None:
        await conn.execute(
            "INSERT INTO messages (id, conversation_id, org_id, turn_id, role, content, status, "
            "agent_id, actions_json, confidence, usage_json, images_json, metadata_json, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11::jsonb, "
            "$12::jsonb, $13::jsonb, $14)",
            m.id, m.conversation_id, m.org_id, m.turn_id, m.role, m.content, m.status,
            m.agent_id, dumps([{"type": a.type, "payload": a.payload} for a in m.actions]),
            float(m.confidence),
            dumps({
                "prompt_tokens": m.usage.prompt_tokens,
                "completion_tokens": m.usage.completion_tokens,
                "model": m.usage.model,
                "cost_micros": m.usage.cost_micros,
            }),
            dumps(list(m.images)), dumps(m.metadata), m.created_at,
        )

    @staticmethod
    async def _insert_conversation(
        conn: asyncpg.Connection, c: ConversationRecord, running_turn_id: str = ""
    ) -> None:
        await conn.execute(
            "INSERT INTO conversations (id, org_id, agent_id, user_id, status, last_seq, "
            "context_json, variables_json, running_turn_id, created_at, updated_at, owner) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12)",
            *PostgresStore._conversation_values(c, running_turn_id),
        )

    async def create_conversation(self, conversation: ConversationRecord) -> None:
        async with self.db.transaction() as conn:
            await self._insert_conversation(conn, conversation)

    @staticmethod
    async def _claim_conversation(
        conn: asyncpg.Connection, org_id: str, conversation_id: str, turn_id: str,
        sets: list[tuple[str, str, Any]],
    ) -> int:
        """Claim the conversation for `turn_id` (a conditional write: only while no turn
        holds it) and return its event counter. TurnConflict if another turn holds it.
        `sets` are (column, cast, value) written with the claim."""
        params: list[Any] = [turn_id, conversation_id, org_id]
        assignments = ["running_turn_id = $1"]
        for column, cast, value in sets:
            params.append(value)
            assignments.append(f"{column} = ${len(params)}{cast}")
        row = await conn.fetchrow(
            f"UPDATE conversations SET {', '.join(assignments)} "
            "WHERE id = $2 AND org_id = $3 AND running_turn_id = '' RETURNING last_seq",
            *params,
        )
        if row is not None:
            return int(row[0])
        exists = await conn.fetchrow(
            "SELECT 1 FROM conversations WHERE id = $1 AND org_id = $2",
            conversation_id, org_id,
        )
        if exists is None:
            raise not_found(Reason.CONVERSATION_NOT_FOUND,
                            f"Conversation '{conversation_id}' not found.")
        raise TurnConflict(TurnConflict.CONVERSATION)

    async def begin_turn(self, begin: TurnBegin) -> TurnRecord:
        t = begin.turn
        async with self.db.transaction() as conn:
            sets: list[tuple[str, str, Any]] = [
                ("agent_id", "", t.agent_id), ("updated_at", "", t.created_at),
            ]
            if begin.conversation_context is not None:
                sets.append(("context_json", "::jsonb", dumps(begin.conversation_context)))
            if begin.conversation_variables is not None:
                sets.append(("variables_json", "::jsonb", dumps(begin.conversation_variables)))
            if begin.new_conversation is not None:
                # Created already holding the claim (a concurrent create of the same id is
                # a primary-key conflict, i.e. the conversation is taken).
                inserted = rowcount(await conn.execute(
                    "INSERT INTO conversations (id, org_id, agent_id, user_id, status, "
                    "last_seq, context_json, variables_json, running_turn_id, created_at, "
                    "updated_at, owner) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, "
                    "$9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                    *self._conversation_values(begin.new_conversation, t.id),
                ))
                if inserted != 1:
                    raise TurnConflict(TurnConflict.CONVERSATION)
                params: list[Any] = [t.conversation_id]
                assignments = []
                for column, cast, value in sets:
                    params.append(value)
                    assignments.append(f"{column} = ${len(params)}{cast}")
                row = await conn.fetchrow(
                    f"UPDATE conversations SET {', '.join(assignments)} WHERE id = $1 "
                    "RETURNING last_seq",
                    *params,
                )
                assert row is not None
                last_seq = int(row[0])
            else:
                last_seq = await self._claim_conversation(
                    conn, t.org_id, t.conversation_id, t.id, sets
                )
            t = replace(t, first_seq=last_seq + 1, last_seq=last_seq)
            if t.idempotency_key:
                # Older finished rows give the key up; a row still running keeps it.
                await conn.execute(
                    "UPDATE turns SET idempotency_key = '' WHERE org_id = $1 AND "
                    "idempotency_key = $2 AND status <> 'running'",
                    t.org_id, t.idempotency_key,
                )
            inserted = rowcount(await conn.execute(
                "INSERT INTO turns (id, conversation_id, org_id, agent_id, status, first_seq, "
                "last_seq, idempotency_key, request_hash, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
                t.id, t.conversation_id, t.org_id, t.agent_id, t.status, t.first_seq,
                t.last_seq, t.idempotency_key, t.request_hash, t.created_at, t.updated_at,
            ))
            if inserted != 1:
                raise TurnConflict(TurnConflict.IDEMPOTENCY_KEY)
            for m in begin.prior_messages:
                await self._insert_message(conn, m)
            if begin.user_message is not None:
                await self._insert_message(conn, begin.user_message)
            u = begin.end_user
            if u is not None:
                await conn.execute(
                    "INSERT INTO end_users (org_id, external_id, company_id, traits_json, "
                    "context_json, updated_at) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6) "
                    "ON CONFLICT (org_id, external_id) DO UPDATE SET "
                    "company_id = excluded.company_id, traits_json = excluded.traits_json, "
                    "context_json = excluded.context_json, updated_at = excluded.updated_at",
                    u.org_id, u.external_id, u.company_id, dumps(u.traits),
                    dumps(u.context), t.created_at,
                )
            await append_outbox(conn, begin.outbox)
            for draft in begin.activity:
                await append_activity(conn, t.org_id, t.conversation_id, draft, t.created_at)
        return t

    @staticmethod
    def _conversation_values(c: ConversationRecord, running_turn_id: str) -> tuple[Any, ...]:
        return (c.id, c.org_id, c.agent_id, c.user_id, c.status, c.last_seq,
                dumps(c.context), dumps(c.variables), running_turn_id, c.created_at,
                c.updated_at, c.owner)

    async def resume_turn(
        self, org_id: str, interrupt_id: str, now: datetime
    ) -> TurnRecord | None:
        async with self.db.transaction() as conn:
            claimed = await conn.fetchrow(
                "UPDATE interrupts SET status = 'resumed', resumed_at = $1 "
                "WHERE id = $2 AND org_id = $3 AND status = 'pending' "
                "RETURNING conversation_id, turn_id",
                now, interrupt_id, org_id,
            )
            if claimed is None:
                return None
            conversation_id, turn_id = claimed[0], claimed[1]
            last_seq = await self._claim_conversation(
                conn, org_id, conversation_id, turn_id, [("updated_at", "", now)]
            )
            row = await conn.fetchrow(
                # A new segment: the lease of the one before has expired and goes with it.
                "UPDATE turns SET status = 'running', updated_at = $1, lease_owner = '', "
                "lease_expires_at = NULL WHERE id = $2 AND org_id = $3 RETURNING *",
                now, turn_id, org_id,
            )
        assert row is not None
        return replace(self._turn(row), first_seq=last_seq + 1, last_seq=last_seq)

    async def commit_turn(self, commit: TurnCommit) -> None:
        async with self.db.transaction() as conn:
            held = await conn.fetchrow(
                "UPDATE conversations SET last_seq = $1, running_turn_id = '', updated_at = $2 "
                "WHERE id = $3 AND running_turn_id = $4 RETURNING org_id",
                commit.last_seq, commit.updated_at, commit.conversation_id, commit.turn_id,
            )
            if held is None:
                raise TurnClaimLost(
                    f"turn {commit.turn_id} no longer holds conversation "
                    f"{commit.conversation_id}"
                )
            if commit.events:
                await conn.execute(
                    "INSERT INTO event_log (org_id, conversation_id, first_seq, last_seq, "
                    "turn_id, events_json, created_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
                    held[0], commit.conversation_id, commit.events[0].seq,
                    commit.events[-1].seq, commit.turn_id,
                    dumps([_compact(e) for e in commit.events]), commit.updated_at,
                )
            for m in commit.messages:
                await self._insert_message(conn, m)
            await conn.execute(
                "UPDATE turns SET status = $1, last_seq = $2, updated_at = $3 WHERE id = $4",
                commit.status, commit.last_seq, commit.updated_at, commit.turn_id,
            )
            u = commit.usage
            if u is not None:
                await conn.execute(
                    "INSERT INTO usage_ledger (org_id, user_id, conversation_id, turn_id, model, "
                    "prompt_tokens, completion_tokens, cost_micros, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    u.org_id, u.user_id, u.conversation_id, u.turn_id, u.model,
                    u.prompt_tokens, u.completion_tokens, u.cost_micros, u.created_at,
                )
            i = commit.interrupt
            if i is not None:
                await conn.execute(
                    "INSERT INTO interrupts (id, org_id, conversation_id, turn_id, status, "
                    "calls_json, state_json, expires_at, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)",
                    i.id, i.org_id, i.conversation_id, i.turn_id, i.status,
                    dumps([
                        {"id": c.tool_call_id, "name": c.tool_name, "args": c.arguments_json}
                        for c in i.calls
                    ]),
                    dumps(i.state), i.expires_at, i.created_at,
                )
            await append_outbox(conn, commit.outbox)
            for draft in commit.activity:
                await append_activity(conn, held[0], commit.conversation_id, draft,
                                      commit.updated_at)

    @staticmethod
    def _turn(row: asyncpg.Record) -> TurnRecord:
        return rows.turn(row, _as_stored)

    async def get_turn(self, org_id: str, turn_id: str) -> TurnRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM turns WHERE id = $1 AND org_id = $2", turn_id, org_id
        )
        return self._turn(row) if row else None

    async def find_turn_by_key(self, org_id: str, idempotency_key: str) -> TurnRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM turns WHERE org_id = $1 AND idempotency_key = $2",
            org_id, idempotency_key,
        )
        return self._turn(row) if row else None

    async def last_turn(self, org_id: str, conversation_id: str) -> TurnRecord | None:
        # As in SQLite: the latest stored events belong to the latest turn; a running turn
        # ties with the one before it and wins on first_seq.
        row = await self.db.fetchone(
            "SELECT * FROM turns WHERE conversation_id = $1 AND org_id = $2 "
            "ORDER BY last_seq DESC, first_seq DESC LIMIT 1",
            conversation_id, org_id,
        )
        return self._turn(row) if row else None

    @staticmethod
    def _message(row: asyncpg.Record) -> MessageRecord:
        return rows.message(row, _as_stored)

    async def list_messages(
        self, org_id: str, conversation_id: str, limit: int, after: int = 0
    ) -> tuple[list[MessageRecord], int]:
        rows = await self.db.fetchall(
            "SELECT * FROM messages WHERE conversation_id = $1 AND org_id = $2 AND seq_no > $3 "
            "ORDER BY seq_no LIMIT $4",
            conversation_id, org_id, after, limit + 1,
        )
        page = rows[:limit]
        next_cursor = int(page[-1]["seq_no"]) if len(rows) > limit else 0
        return [self._message(r) for r in page], next_cursor

    async def recent_messages(
        self, org_id: str, conversation_id: str, limit: int
    ) -> list[MessageRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM messages WHERE conversation_id = $1 AND org_id = $2 "
            "AND role IN ('user', 'assistant', 'operator') AND content <> '' "
            "ORDER BY seq_no DESC LIMIT $3",
            conversation_id, org_id, limit,
        )
        return [self._message(r) for r in reversed(rows)]

    async def list_events(
        self, org_id: str, conversation_id: str, after_seq: int, turn_id: str = ""
    ) -> list[Event]:
        sql = ("SELECT turn_id, events_json FROM event_log WHERE conversation_id = $1 "
               "AND org_id = $2 AND last_seq > $3")
        params: list[Any] = [conversation_id, org_id, after_seq]
        if turn_id:
            sql += " AND turn_id = $4"
            params.append(turn_id)
        rows = await self.db.fetchall(sql + " ORDER BY first_seq", *params)
        events: list[Event] = []
        for row in rows:
            for data in loads(row["events_json"]):
                if data["seq"] > after_seq:
                    events.append(event_from_dict(
                        {"conversation_id": conversation_id, "turn_id": row["turn_id"], **data}
                    ))
        return events

    async def running_turns(self) -> list[TurnRecord]:
        rows = await self.db.fetchall("SELECT * FROM turns WHERE status = 'running'")
        return [self._turn(row) for row in rows]

    async def renew_leases(self, owner: str, turn_ids: Sequence[str],
                           expires_at: datetime) -> list[str]:
        if not turn_ids:
            return []
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "UPDATE turns SET lease_owner = $1, lease_expires_at = $2 "
                "WHERE id = ANY($3::text[]) AND status = 'running' AND lease_owner IN ('', $1) "
                "RETURNING id",
                owner, expires_at, list(turn_ids),
            )
        return [str(row[0]) for row in rows]

    async def take_expired_leases(self, owner: str, now: datetime, expires_at: datetime,
                                  unleased_before: datetime) -> list[TurnRecord]:
        # One UPDATE: under READ COMMITTED a second replica sweeping at once re-checks each
        # row it waited for, finds the lease renewed by the first, and skips it.
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                "UPDATE turns SET lease_owner = $1, lease_expires_at = $2 "
                "WHERE status = 'running' AND ((lease_expires_at IS NOT NULL AND "
                "lease_expires_at < $3) OR (lease_expires_at IS NULL AND updated_at < $4)) "
                "RETURNING *",
                owner, expires_at, now, unleased_before,
            )
        return [self._turn(row) for row in rows]

    async def mark_running_turns(self, status: str, now: datetime) -> int:
        async with self.db.transaction() as conn:
            changed = rowcount(await conn.execute(
                "UPDATE turns SET status = $1, updated_at = $2 WHERE status = 'running'",
                status, now,
            ))
            await conn.execute(
                "UPDATE conversations SET running_turn_id = '' WHERE running_turn_id <> ''"
            )
            return changed

    async def prune_events(self, before: datetime) -> int:
        return await self.db.execute(
            "DELETE FROM event_log WHERE created_at < $1 AND turn_id IN "
            "(SELECT id FROM turns WHERE status = ANY($2::text[]))",
            before, _FINISHED,
        )

    # -- usage ledger -------------------------------------------------------------------

    async def sum_spend(self, org_id: str, since: datetime, user_id: str = "") -> int:
        sql = ("SELECT COALESCE(SUM(cost_micros), 0) FROM usage_ledger WHERE org_id = $1 "
               "AND created_at >= $2")
        params: list[Any] = [org_id, since]
        if user_id:
            sql += " AND user_id = $3"
            params.append(user_id)
        row = await self.db.fetchone(sql, *params)
        return int(row[0]) if row else 0

    async def usage_report(self, org_id: str, since: datetime) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, COUNT(*) AS turns, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(cost_micros) AS cost_micros, "
            "SUM(CASE WHEN cost_micros = 0 THEN 1 ELSE 0 END) AS zero_cost_turns "
            "FROM usage_ledger WHERE org_id = $1 AND created_at >= $2 "
            "GROUP BY day, model ORDER BY day, model",
            org_id, since,
        )
        return [
            {key: (int(value) if key not in ("day", "model") else value)
             for key, value in r.items()} | {"day": r["day"].isoformat()}
            for r in rows
        ]

    # -- interrupts ---------------------------------------------------------------------

    async def get_interrupt(self, org_id: str, interrupt_id: str) -> InterruptRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM interrupts WHERE id = $1 AND org_id = $2", interrupt_id, org_id
        )
        if row is None:
            return None
        return InterruptRecord(
            id=row["id"], org_id=row["org_id"], conversation_id=row["conversation_id"],
            turn_id=row["turn_id"], status=row["status"],
            calls=tuple(
                PendingCall(c["id"], c["name"], c["args"]) for c in loads(row["calls_json"])
            ),
            state=loads(row["state_json"]) or {},
            expires_at=row["expires_at"], created_at=row["created_at"],
        )

    # -- end users, companies, tickets --------------------------------------------------

    async def get_end_user(self, org_id: str, external_id: str) -> EndUser | None:
        row = await self.db.fetchone(
            "SELECT * FROM end_users WHERE org_id = $1 AND external_id = $2", org_id, external_id
        )
        if row is None:
            return None
        return EndUser(
            org_id=org_id, external_id=external_id, company_id=row["company_id"],
            traits=loads(row["traits_json"]) or {}, context=loads(row["context_json"]) or {},
        )

    async def get_company(self, org_id: str, external_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM companies WHERE org_id = $1 AND external_id = $2", org_id, external_id
        )
        if row is None:
            return None
        return {"external_id": external_id, "name": row["name"], **(loads(row["data_json"]) or {})}

    async def upsert_company(
        self, org_id: str, external_id: str, name: str, data: dict[str, Any]
    ) -> None:
        await self.db.execute(
            "INSERT INTO companies (org_id, external_id, name, data_json) "
            "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (org_id, external_id) DO UPDATE SET "
            "name = excluded.name, data_json = excluded.data_json",
            org_id, external_id, name, dumps(data),
        )

    async def create_ticket(
        self, ticket_id: str, org_id: str, conversation_id: str, team: str, subject: str,
        now: datetime,
    ) -> None:
        await self.db.execute(
            "INSERT INTO tickets (id, org_id, conversation_id, team, subject, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            ticket_id, org_id, conversation_id, team, subject, now,
        )

    async def list_tickets(self, org_id: str, conversation_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT * FROM tickets WHERE org_id = $1 AND conversation_id = $2 "
            "ORDER BY created_at, id",
            org_id, conversation_id,
        )
        # Times as ISO text, as the SQLite store returns them.
        return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]
