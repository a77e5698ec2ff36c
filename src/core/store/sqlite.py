"""The embedded SQLite `Store`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

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
from core.store.rows import dumps, loads
from core.store.sqlite_db import Database, micros
from core.store.sqlite_db import dt as _dt
from core.store.sqlite_db import ts as _ts
from core.store.sqlite_flows import SqliteFlowsMixin
from core.store.sqlite_handoff import SqliteHandoffMixin, append_activity
from core.store.sqlite_outbox import SqliteOutboxMixin, append_outbox

_DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Turn states whose event log may be pruned (an interrupted turn can still be resumed).
_FINISHED = ("completed", "routed", "failed", "stopped", "cancelled")


def _compact(event: Event) -> dict[str, Any]:
    """An event as kept in its segment: the conversation and turn are the row's."""
    data = event_to_dict(event)
    del data["conversation_id"], data["turn_id"]
    return data


class SqliteStore(SqliteFlowsMixin, SqliteOutboxMixin, SqliteHandoffMixin):
    """SQLite implementation of `core.store.base.Store`."""

    # One process per file: whatever is running at start-up was left by a crash.
    shared = False

    def __init__(self, path: str | Path, synchronous: str | None = None) -> None:
        self.db = Database(path, synchronous)

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
    def _org(row: aiosqlite.Row) -> Organisation:
        return rows.organisation(row, _dt)

    async def create_org(self, org: Organisation) -> None:
        await self.db.execute(
            "INSERT INTO organisations (id, slug, name, settings_json, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (org.id, org.slug, org.name, dumps(org.settings.to_json()), _ts(org.created_at)),
        )

    async def get_org(self, org_id: str) -> Organisation | None:
        row = await self.db.fetchone("SELECT * FROM organisations WHERE id = ?", (org_id,))
        return self._org(row) if row else None

    async def list_orgs(self) -> list[Organisation]:
        rows = await self.db.fetchall("SELECT * FROM organisations ORDER BY slug")
        return [self._org(row) for row in rows]

    async def get_org_by_slug(self, slug: str) -> Organisation | None:
        row = await self.db.fetchone("SELECT * FROM organisations WHERE slug = ?", (slug,))
        return self._org(row) if row else None

    async def update_org_settings(self, org_id: str, settings: OrgSettings) -> None:
        await self.db.execute(
            "UPDATE organisations SET settings_json = ? WHERE id = ?",
            (dumps(settings.to_json()), org_id),
        )

    @staticmethod
    def _key(row: aiosqlite.Row) -> ApiKey:
        return rows.api_key(row, _dt)

    async def create_key(self, key: ApiKey, key_hash: str) -> None:
        await self.db.execute(
            "INSERT INTO api_keys (id, org_id, kind, key_hash, prefix, name, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.org_id, key.kind, key_hash, key.prefix, key.name, _ts(key.created_at)),
        )

    async def find_key(self, key_hash: str) -> ApiKey | None:
        row = await self.db.fetchone("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))
        return self._key(row) if row else None

    async def stored_bytes(self, org_id: str) -> int:
        row = await self.db.fetchone(
            "SELECT COALESCE(SUM(LENGTH(CAST(content AS BLOB)) + "
            "LENGTH(CAST(images_json AS BLOB))), 0) FROM messages WHERE org_id = ?",
            (org_id,),
        )
        return int(row[0]) if row else 0

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self.db.fetchone("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return self._key(row) if row else None

    async def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Revoke now; False when no such key (or already revoked)."""
        return bool(await self.db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (_ts(at), key_id),
        ))

    async def expire_key(self, key_id: str, at: datetime) -> None:
        """The key expires at `at`, unless it already expires sooner (compared as
        instants, not as text)."""
        async with self.db.transaction() as conn:
            cursor = await conn.execute("SELECT expires_at FROM api_keys WHERE id = ?",
                                        (key_id,))
            row = await cursor.fetchone()
            await cursor.close()
            if row is None or (row[0] is not None and _dt(row[0]) <= at):
                return
            await conn.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?",
                               (_ts(at), key_id))

    async def list_keys(self, org_id: str) -> list[ApiKey]:
        rows = await self.db.fetchall(
            "SELECT * FROM api_keys WHERE org_id = ? ORDER BY created_at", (org_id,)
        )
        return [self._key(r) for r in rows]

    # -- agents -------------------------------------------------------------------------

    @staticmethod
    def _agent(row: aiosqlite.Row) -> StoredAgent:
        return StoredAgent(
            id=row["id"],
            org_id=row["org_id"],
            slug=row["slug"],
            name=row["name"],
            definition=loads(row["definition_json"]) or {},
            active=bool(row["active"]),
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
        )

    async def upsert_agent(self, agent: StoredAgent) -> StoredAgent:
        a = agent
        async with self.db.transaction() as conn:
            if a.active:
                await conn.execute("UPDATE agents SET active = 0 WHERE org_id = ?", (a.org_id,))
            cursor = await conn.execute(
                "INSERT INTO agents (id, org_id, slug, name, definition_json, active, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (org_id, slug) DO UPDATE SET name = excluded.name, "
                "definition_json = excluded.definition_json, active = excluded.active, "
                "updated_at = excluded.updated_at RETURNING *",
                (a.id, a.org_id, a.slug, a.name, dumps(a.definition), int(a.active),
                 _ts(a.created_at), _ts(a.updated_at)),
            )
            row = await cursor.fetchone()
            await cursor.close()
        assert row is not None
        return self._agent(row)

    async def get_agent(self, org_id: str, id_or_slug: str) -> StoredAgent | None:
        # One query; an id match wins over another agent's equal slug.
        row = await self.db.fetchone(
            "SELECT * FROM agents WHERE org_id = ? AND (id = ? OR slug = ?) "
            "ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END LIMIT 1",
            (org_id, id_or_slug, id_or_slug, id_or_slug),
        )
        return self._agent(row) if row else None

    async def get_active_agent(self, org_id: str) -> StoredAgent | None:
        row = await self.db.fetchone(
            "SELECT * FROM agents WHERE org_id = ? ORDER BY active DESC, created_at, slug "
            "LIMIT 1",
            (org_id,),
        )
        return self._agent(row) if row else None

    async def list_agents(self, org_id: str) -> list[StoredAgent]:
        rows = await self.db.fetchall(
            "SELECT * FROM agents WHERE org_id = ? ORDER BY created_at, slug", (org_id,)
        )
        return [self._agent(r) for r in rows]

    # -- conversations and turns --------------------------------------------------------

    @staticmethod
    def _conversation(row: aiosqlite.Row) -> ConversationRecord:
        return rows.conversation(row, _dt)

    async def get_conversation(
        self, org_id: str, conversation_id: str
    ) -> ConversationRecord | None:
        row = await self.db.fetchone(
            "SELECT c.*, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) "
            "AS message_count FROM conversations c WHERE c.id = ? AND c.org_id = ?",
            (conversation_id, org_id),
        )
        return self._conversation(row) if row else None

    @staticmethod
    def _insert_message(conn: sqlite3.Connection, m: MessageRecord) -> None:
        conn.execute(
            "INSERT INTO messages (id, conversation_id, org_id, turn_id, role, content, status, "
            "agent_id, actions_json, confidence, usage_json, images_json, metadata_json, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.id, m.conversation_id, m.org_id, m.turn_id, m.role, m.content, m.status,
                m.agent_id, dumps([{"type": a.type, "payload": a.payload} for a in m.actions]),
                m.confidence,
                dumps({
                    "prompt_tokens": m.usage.prompt_tokens,
                    "completion_tokens": m.usage.completion_tokens,
                    "model": m.usage.model,
                    "cost_micros": m.usage.cost_micros,
                }),
                dumps(list(m.images)), dumps(m.metadata), _ts(m.created_at),
            ),
        )

    @staticmethod
    def _insert_conversation(
        conn: sqlite3.Connection, c: ConversationRecord, running_turn_id: str = ""
    ) -> None:
        conn.execute(
            "INSERT INTO conversations (id, org_id, agent_id, user_id, status, last_seq, "
            "context_json, variables_json, running_turn_id, created_at, updated_at, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                c.id, c.org_id, c.agent_id, c.user_id, c.status, c.last_seq,
                dumps(c.context), dumps(c.variables), running_turn_id, _ts(c.created_at),
                _ts(c.updated_at), c.owner,
            ),
        )

    async def create_conversation(self, conversation: ConversationRecord) -> None:
        await self.db.write(lambda conn: self._insert_conversation(conn, conversation))

    @staticmethod
    def _claim_conversation(
        conn: sqlite3.Connection, org_id: str, conversation_id: str, turn_id: str,
        sets: str = "", params: tuple[Any, ...] = (),
    ) -> int:
        """Claim the conversation for `turn_id` (a conditional write: only while no turn
        holds it) and return its event counter. TurnConflict if another turn holds it."""
        cursor = conn.execute(
            f"UPDATE conversations SET running_turn_id = ?{sets} "
            "WHERE id = ? AND org_id = ? AND running_turn_id = '' RETURNING last_seq",
            (turn_id, *params, conversation_id, org_id),
        )
        row = cursor.fetchone()
        cursor.close()
        if row is not None:
            return int(row[0])
        cursor = conn.execute(
            "SELECT 1 FROM conversations WHERE id = ? AND org_id = ?", (conversation_id, org_id)
        )
        exists = cursor.fetchone()
        cursor.close()
        if exists is None:
            raise not_found(Reason.CONVERSATION_NOT_FOUND,
                            f"Conversation '{conversation_id}' not found.")
        raise TurnConflict(TurnConflict.CONVERSATION)

    async def begin_turn(self, begin: TurnBegin) -> TurnRecord:
        # Every statement of the turn's start in one hop to the writer thread.
        return await self.db.write(lambda conn: self._begin_turn(conn, begin))

    def _begin_turn(self, conn: sqlite3.Connection, begin: TurnBegin) -> TurnRecord:
        t = begin.turn
        if begin.new_conversation is not None:
            self._insert_conversation(conn, begin.new_conversation, t.id)
        sets = ", agent_id = ?, updated_at = ?"
        params: tuple[Any, ...] = (t.agent_id, _ts(t.created_at))
        if begin.conversation_context is not None:
            sets += ", context_json = ?"
            params += (dumps(begin.conversation_context),)
        if begin.conversation_variables is not None:
            sets += ", variables_json = ?"
            params += (dumps(begin.conversation_variables),)
        if begin.new_conversation is not None:
            # Created already holding the claim: just read the counter.
            cursor = conn.execute(
                f"UPDATE conversations SET {sets[2:]} WHERE id = ? RETURNING last_seq",
                (*params, t.conversation_id),
            )
            row = cursor.fetchone()
            cursor.close()
            assert row is not None
            last_seq = int(row[0])
        else:
            last_seq = self._claim_conversation(
                conn, t.org_id, t.conversation_id, t.id, sets, params
            )
        t = replace(t, first_seq=last_seq + 1, last_seq=last_seq)
        if t.idempotency_key:
            # The engine found no turn to replay under this key (none, expired, or left
            # by a crash): older finished rows give it up. A row still running keeps it.
            conn.execute(
                "UPDATE turns SET idempotency_key = '' WHERE org_id = ? AND "
                "idempotency_key = ? AND status <> 'running'",
                (t.org_id, t.idempotency_key),
            )
        # The unique (org, key) index turns a concurrent claim of the key into no row
        # inserted (a conditional write, not an error to parse).
        cursor = conn.execute(
            "INSERT INTO turns (id, conversation_id, org_id, agent_id, status, first_seq, "
            "last_seq, idempotency_key, request_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                t.id, t.conversation_id, t.org_id, t.agent_id, t.status, t.first_seq,
                t.last_seq, t.idempotency_key, t.request_hash, _ts(t.created_at),
                _ts(t.updated_at),
            ),
        )
        if cursor.rowcount != 1:
            raise TurnConflict(TurnConflict.IDEMPOTENCY_KEY)
        for m in begin.prior_messages:
            self._insert_message(conn, m)
        if begin.user_message is not None:
            self._insert_message(conn, begin.user_message)
        u = begin.end_user
        if u is not None:
            conn.execute(
                "INSERT INTO end_users (org_id, external_id, company_id, traits_json, "
                "context_json, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (org_id, external_id) DO UPDATE SET "
                "company_id = excluded.company_id, traits_json = excluded.traits_json, "
                "context_json = excluded.context_json, updated_at = excluded.updated_at",
                (
                    u.org_id, u.external_id, u.company_id, dumps(u.traits),
                    dumps(u.context), _ts(t.created_at),
                ),
            )
        append_outbox(conn, begin.outbox)
        for draft in begin.activity:
            append_activity(conn, t.org_id, t.conversation_id, draft, t.created_at)
        return t

    async def resume_turn(
        self, org_id: str, interrupt_id: str, now: datetime
    ) -> TurnRecord | None:
        return await self.db.write(lambda conn: self._resume_turn(conn, org_id, interrupt_id,
                                                                 now))

    def _resume_turn(
        self, conn: sqlite3.Connection, org_id: str, interrupt_id: str, now: datetime
    ) -> TurnRecord | None:
        cursor = conn.execute(
            "UPDATE interrupts SET status = 'resumed', resumed_at = ? "
            "WHERE id = ? AND org_id = ? AND status = 'pending' "
            "RETURNING conversation_id, turn_id",
            (_ts(now), interrupt_id, org_id),
        )
        claimed = cursor.fetchone()
        cursor.close()
        if claimed is None:
            return None
        conversation_id, turn_id = claimed[0], claimed[1]
        last_seq = self._claim_conversation(
            conn, org_id, conversation_id, turn_id, ", updated_at = ?", (_ts(now),)
        )
        cursor = conn.execute(
            # A new segment: the lease of the one before has expired and goes with it.
            "UPDATE turns SET status = 'running', updated_at = ?, lease_owner = '', "
            "lease_expires_at = NULL WHERE id = ? AND org_id = ? RETURNING *",
            (_ts(now), turn_id, org_id),
        )
        row = cursor.fetchone()
        cursor.close()
        assert row is not None
        return replace(self._turn(row), first_seq=last_seq + 1, last_seq=last_seq)

    async def commit_turn(self, commit: TurnCommit) -> None:
        # Every statement of the turn's end in one hop to the writer thread.
        await self.db.write(lambda conn: self._commit_turn(conn, commit))

    def _commit_turn(self, conn: sqlite3.Connection, commit: TurnCommit) -> None:
        cursor = conn.execute(
            "UPDATE conversations SET last_seq = ?, running_turn_id = '', updated_at = ? "
            "WHERE id = ? AND running_turn_id = ? RETURNING org_id",
            (commit.last_seq, _ts(commit.updated_at), commit.conversation_id,
             commit.turn_id),
        )
        held = cursor.fetchone()
        cursor.close()
        if held is None:
            raise TurnClaimLost(
                f"turn {commit.turn_id} no longer holds conversation "
                f"{commit.conversation_id}"
            )
        if commit.events:
            conn.execute(
                "INSERT INTO event_log (org_id, conversation_id, first_seq, last_seq, "
                "turn_id, events_json, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    held[0], commit.conversation_id, commit.events[0].seq,
                    commit.events[-1].seq, commit.turn_id,
                    dumps([_compact(e) for e in commit.events]),
                    micros(commit.updated_at),
                ),
            )
        for m in commit.messages:
            self._insert_message(conn, m)
        conn.execute(
            "UPDATE turns SET status = ?, last_seq = ?, updated_at = ? WHERE id = ?",
            (commit.status, commit.last_seq, _ts(commit.updated_at), commit.turn_id),
        )
        u = commit.usage
        if u is not None:
            conn.execute(
                "INSERT INTO usage_ledger (org_id, user_id, conversation_id, turn_id, model, "
                "prompt_tokens, completion_tokens, cost_micros, created_at, created_us) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    u.org_id, u.user_id, u.conversation_id, u.turn_id, u.model,
                    u.prompt_tokens, u.completion_tokens, u.cost_micros, _ts(u.created_at),
                    micros(u.created_at),
                ),
            )
        i = commit.interrupt
        if i is not None:
            conn.execute(
                "INSERT INTO interrupts (id, org_id, conversation_id, turn_id, status, "
                "calls_json, state_json, expires_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    i.id, i.org_id, i.conversation_id, i.turn_id, i.status,
                    dumps([
                        {"id": c.tool_call_id, "name": c.tool_name, "args": c.arguments_json}
                        for c in i.calls
                    ]),
                    dumps(i.state), _ts(i.expires_at), _ts(i.created_at),
                ),
            )
        append_outbox(conn, commit.outbox)
        for draft in commit.activity:
            append_activity(conn, held[0], commit.conversation_id, draft, commit.updated_at)

    @staticmethod
    def _turn(row: aiosqlite.Row) -> TurnRecord:
        return rows.turn(row, _dt)

    async def get_turn(self, org_id: str, turn_id: str) -> TurnRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM turns WHERE id = ? AND org_id = ?", (turn_id, org_id)
        )
        return self._turn(row) if row else None

    async def find_turn_by_key(self, org_id: str, idempotency_key: str) -> TurnRecord | None:
        # The unique (org, key) index: at most one row holds a key.
        row = await self.db.fetchone(
            "SELECT * FROM turns WHERE org_id = ? AND idempotency_key = ?",
            (org_id, idempotency_key),
        )
        return self._turn(row) if row else None

    async def last_turn(self, org_id: str, conversation_id: str) -> TurnRecord | None:
        row = await self.db.fetchone(
            # The latest stored events belong to the latest turn (a resumed turn keeps its
            # first creation time, so time alone would pick an older one). A running turn
            # has stored nothing yet (last_seq = first_seq - 1): it ties with the turn
            # before it and wins on first_seq.
            "SELECT * FROM turns WHERE conversation_id = ? AND org_id = ? "
            "ORDER BY last_seq DESC, first_seq DESC LIMIT 1",
            (conversation_id, org_id),
        )
        return self._turn(row) if row else None

    @staticmethod
    def _message(row: aiosqlite.Row) -> MessageRecord:
        return rows.message(row, _dt)

    async def list_messages(
        self, org_id: str, conversation_id: str, limit: int, after: int = 0
    ) -> tuple[list[MessageRecord], int]:
        """Messages after the cursor `after` (0 = from the start); returns the page and the
        cursor for the next page (0 when there is none)."""
        rows = await self.db.fetchall(
            "SELECT * FROM messages WHERE conversation_id = ? AND org_id = ? AND seq_no > ? "
            "ORDER BY seq_no LIMIT ?",
            (conversation_id, org_id, after, limit + 1),
        )
        page = rows[:limit]
        next_cursor = page[-1]["seq_no"] if len(rows) > limit else 0
        return [self._message(r) for r in page], next_cursor

    async def recent_messages(
        self, org_id: str, conversation_id: str, limit: int
    ) -> list[MessageRecord]:
        """The last `limit` non-empty user, assistant and operator messages, oldest first
        (the model's view of the conversation; tool messages and empty partial replies are
        left out)."""
        rows = await self.db.fetchall(
            "SELECT * FROM messages WHERE conversation_id = ? AND org_id = ? "
            "AND role IN ('user', 'assistant', 'operator') AND content <> '' "
            "ORDER BY seq_no DESC LIMIT ?",
            (conversation_id, org_id, limit),
        )
        return [self._message(r) for r in reversed(rows)]

    async def list_events(
        self, org_id: str, conversation_id: str, after_seq: int, turn_id: str = ""
    ) -> list[Event]:
        sql = ("SELECT turn_id, events_json FROM event_log WHERE conversation_id = ? "
               "AND org_id = ? AND last_seq > ?")
        params: list[Any] = [conversation_id, org_id, after_seq]
        if turn_id:
            sql += " AND turn_id = ?"
            params.append(turn_id)
        rows = await self.db.fetchall(sql + " ORDER BY first_seq", params)
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
        marks = ", ".join("?" for _ in turn_ids)
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                f"UPDATE turns SET lease_owner = ?, lease_expires_at = ? WHERE id IN ({marks}) "
                "AND status = 'running' AND lease_owner IN ('', ?) RETURNING id",
                (owner, micros(expires_at), *turn_ids, owner),
            )
            return [str(row[0]) for row in await cursor.fetchall()]

    async def take_expired_leases(self, owner: str, now: datetime, expires_at: datetime,
                                  unleased_before: datetime) -> list[TurnRecord]:
        # The writer lock serialises this with every renewal: a turn is taken once.
        async with self.db.transaction() as conn:
            cursor = await conn.execute("SELECT * FROM turns WHERE status = 'running'")
            candidates = await cursor.fetchall()
            taken: list[TurnRecord] = []
            for row in candidates:
                lease = row["lease_expires_at"]
                expired = (lease < micros(now) if lease is not None
                           else _dt(row["updated_at"]) < unleased_before)
                if not expired:
                    continue
                await conn.execute(
                    "UPDATE turns SET lease_owner = ?, lease_expires_at = ? WHERE id = ?",
                    (owner, micros(expires_at), row["id"]),
                )
                taken.append(self._turn(row))
            return taken

    async def mark_running_turns(self, status: str, now: datetime) -> int:
        """At start-up: turns left running by a crashed process are marked `status`."""
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE turns SET status = ?, updated_at = ? WHERE status = 'running'",
                (status, _ts(now)),
            )
            await conn.execute(
                "UPDATE conversations SET running_turn_id = '' WHERE running_turn_id <> ''"
            )
            return int(cursor.rowcount)

    async def prune_events(self, before: datetime) -> int:
        marks = ", ".join("?" for _ in _FINISHED)
        return await self.db.execute(
            "DELETE FROM event_log WHERE created_us < ? AND turn_id IN "
            f"(SELECT id FROM turns WHERE status IN ({marks}))",
            (micros(before), *_FINISHED),
        )

    # -- usage ledger -------------------------------------------------------------------

    async def sum_spend(self, org_id: str, since: datetime, user_id: str = "") -> int:
        sql = ("SELECT COALESCE(SUM(cost_micros), 0) FROM usage_ledger WHERE org_id = ? "
               "AND created_us >= ?")
        params: list[Any] = [org_id, micros(since)]
        if user_id:
            sql += " AND user_id = ?"
            params.append(user_id)
        row = await self.db.fetchone(sql, params)
        return int(row[0]) if row else 0

    async def usage_report(self, org_id: str, since: datetime) -> list[dict[str, Any]]:
        """Spend per UTC day and model since `since`."""
        rows = await self.db.fetchall(
            f"SELECT created_us / {_DAY_US} AS day, model, COUNT(*) AS turns, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(cost_micros) AS cost_micros, "
            "SUM(CASE WHEN cost_micros = 0 THEN 1 ELSE 0 END) AS zero_cost_turns "
            "FROM usage_ledger "
            "WHERE org_id = ? AND created_us >= ? GROUP BY day, model ORDER BY day, model",
            (org_id, micros(since)),
        )
        return [
            {**dict(r), "day": (_EPOCH + timedelta(days=r["day"])).date().isoformat()}
            for r in rows
        ]

    # -- interrupts ---------------------------------------------------------------------

    async def get_interrupt(self, org_id: str, interrupt_id: str) -> InterruptRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM interrupts WHERE id = ? AND org_id = ?", (interrupt_id, org_id)
        )
        if row is None:
            return None
        return InterruptRecord(
            id=row["id"],
            org_id=row["org_id"],
            conversation_id=row["conversation_id"],
            turn_id=row["turn_id"],
            status=row["status"],
            calls=tuple(
                PendingCall(c["id"], c["name"], c["args"]) for c in loads(row["calls_json"])
            ),
            state=loads(row["state_json"]) or {},
            expires_at=_dt(row["expires_at"]),
            created_at=_dt(row["created_at"]),
        )

    # -- end users, companies, tickets --------------------------------------------------

    async def get_end_user(self, org_id: str, external_id: str) -> EndUser | None:
        row = await self.db.fetchone(
            "SELECT * FROM end_users WHERE org_id = ? AND external_id = ?", (org_id, external_id)
        )
        if row is None:
            return None
        return EndUser(
            org_id=org_id,
            external_id=external_id,
            company_id=row["company_id"],
            traits=loads(row["traits_json"]) or {},
            context=loads(row["context_json"]) or {},
        )

    async def get_company(self, org_id: str, external_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT * FROM companies WHERE org_id = ? AND external_id = ?", (org_id, external_id)
        )
        if row is None:
            return None
        return {"external_id": external_id, "name": row["name"], **(loads(row["data_json"]) or {})}

    async def upsert_company(
        self, org_id: str, external_id: str, name: str, data: dict[str, Any]
    ) -> None:
        await self.db.execute(
            "INSERT INTO companies (org_id, external_id, name, data_json) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (org_id, external_id) DO UPDATE SET name = excluded.name, "
            "data_json = excluded.data_json",
            (org_id, external_id, name, dumps(data)),
        )

    async def create_ticket(
        self, ticket_id: str, org_id: str, conversation_id: str, team: str, subject: str,
        now: datetime,
    ) -> None:
        await self.db.execute(
            "INSERT INTO tickets (id, org_id, conversation_id, team, subject, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ticket_id, org_id, conversation_id, team, subject, _ts(now)),
        )

    async def list_tickets(self, org_id: str, conversation_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT * FROM tickets WHERE org_id = ? AND conversation_id = ? ORDER BY created_at",
            (org_id, conversation_id),
        )
        return [dict(r) for r in rows]
