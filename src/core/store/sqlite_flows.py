"""SQLite side of `core.flows.store.FlowStore`: flow executions, wait tokens, the model
price table and server secrets. Mixed into `SqliteStore` (tables in 0002_flows.sql)."""

from __future__ import annotations

from datetime import datetime

import aiosqlite

from core.flows.store import ExecutionRecord, ModelPrice, WaitRecord
from core.store import rows
from core.store.rows import dumps, loads
from core.store.sqlite_db import Database
from core.store.sqlite_db import dt as _read_time
from core.store.sqlite_db import dt_or_none as _dt
from core.store.sqlite_db import ts as _ts


class SqliteFlowsMixin:
    db: Database

    async def get_flow_reply(
        self, org_id: str, idempotency_key: str
    ) -> tuple[str, str, datetime] | None:
        """(request hash, reply JSON, stored at) for a flow message's idempotency key."""
        row = await self.db.fetchone(
            "SELECT request_hash, reply_json, created_at FROM flow_replies "
            "WHERE org_id = ? AND idempotency_key = ?",
            (org_id, idempotency_key),
        )
        if row is None:
            return None
        return row[0], row[1], datetime.fromisoformat(row[2])

    async def put_flow_reply(
        self, org_id: str, idempotency_key: str, request_hash: str, reply_json: str,
        now: datetime,
    ) -> None:
        await self.db.execute(
            "INSERT INTO flow_replies (org_id, idempotency_key, request_hash, reply_json, "
            "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (org_id, idempotency_key) DO "
            "UPDATE SET request_hash = excluded.request_hash, reply_json = excluded.reply_json,"
            " created_at = excluded.created_at",
            (org_id, idempotency_key, request_hash, reply_json, now.isoformat()),
        )

    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        """The stored secret `name`; `candidate` becomes it if there is none yet (the first
        replica to start wins, the others read its value)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO server_secrets (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, candidate),
            )
            cursor = await conn.execute("SELECT value FROM server_secrets WHERE name = ?",
                                        (name,))
            row = await cursor.fetchone()
        assert row is not None
        return str(row[0])

    # -- executions and waits -----------------------------------------------------------

    async def save_execution(
        self, execution: ExecutionRecord, wait: WaitRecord | None = None
    ) -> None:
        """Insert or update an execution and, in the same transaction, its new wait."""
        e = execution
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO flow_executions (id, org_id, agent_id, conversation_id, intent, "
                "status, current_step, state_json, steps_run, expected_input_json, "
                "wait_expires_at, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "current_step = excluded.current_step, state_json = excluded.state_json, "
                "steps_run = excluded.steps_run, "
                "expected_input_json = excluded.expected_input_json, "
                "wait_expires_at = excluded.wait_expires_at, updated_at = excluded.updated_at",
                (
                    e.id, e.org_id, e.agent_id, e.conversation_id, e.intent, e.status,
                    e.current_step, dumps(e.state), e.steps_run,
                    dumps(e.expected_input) if e.expected_input is not None else None,
                    _ts(e.wait_expires_at) if e.wait_expires_at else None,
                    _ts(e.created_at), _ts(e.updated_at),
                ),
            )
            if wait is not None:
                w = wait
                await conn.execute(
                    "INSERT INTO flow_waits (token_hash, org_id, execution_id, conversation_id, "
                    "step_id, expected_input_json, status, expires_at, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (w.token_hash, w.org_id, w.execution_id, w.conversation_id, w.step_id,
                     dumps(w.expected_input), w.status, _ts(w.expires_at),
                     _ts(w.created_at)),
                )

    @staticmethod
    def _execution_row(row: aiosqlite.Row) -> ExecutionRecord:
        return rows.execution(row, _read_time)

    async def get_execution(self, org_id: str, execution_id: str) -> ExecutionRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM flow_executions WHERE id = ? AND org_id = ?", (execution_id, org_id)
        )
        return self._execution_row(row) if row else None

    async def get_wait(self, org_id: str, token_hash: str) -> WaitRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM flow_waits WHERE token_hash = ? AND org_id = ?", (token_hash, org_id)
        )
        if row is None:
            return None
        expires, created = _dt(row["expires_at"]), _dt(row["created_at"])
        assert expires is not None and created is not None
        return WaitRecord(
            token_hash=row["token_hash"], org_id=row["org_id"],
            execution_id=row["execution_id"], conversation_id=row["conversation_id"],
            step_id=row["step_id"], expected_input=loads(row["expected_input_json"]) or {},
            status=row["status"], expires_at=expires, created_at=created,
            used_at=_dt(row["used_at"]),
        )

    async def claim_wait(self, org_id: str, token_hash: str, now: datetime) -> bool:
        """Atomically mark a pending wait used; False if another request did first."""
        changed = await self.db.execute(
            "UPDATE flow_waits SET status = 'used', used_at = ? "
            "WHERE token_hash = ? AND org_id = ? AND status = 'pending'",
            (_ts(now), token_hash, org_id),
        )
        return changed == 1

    # -- model prices -------------------------------------------------------------------

    async def set_model_price(self, org_id: str, price: ModelPrice, now: datetime) -> None:
        await self.db.execute(
            "INSERT INTO model_prices (org_id, model, input_micros_per_mtok, "
            "output_micros_per_mtok, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (org_id, model) DO UPDATE SET "
            "input_micros_per_mtok = excluded.input_micros_per_mtok, "
            "output_micros_per_mtok = excluded.output_micros_per_mtok, "
            "updated_at = excluded.updated_at",
            (org_id, price.model, price.input_micros_per_mtok, price.output_micros_per_mtok,
             _ts(now)),
        )

    @staticmethod
    def _price_row(row: aiosqlite.Row) -> ModelPrice:
        return rows.model_price(row, _read_time)

    async def get_model_price(self, org_id: str, model: str) -> ModelPrice | None:
        row = await self.db.fetchone(
            "SELECT * FROM model_prices WHERE org_id = ? AND model = ?", (org_id, model)
        )
        return self._price_row(row) if row else None

    async def list_model_prices(self, org_id: str) -> list[ModelPrice]:
        rows = await self.db.fetchall(
            "SELECT * FROM model_prices WHERE org_id = ? ORDER BY model", (org_id,)
        )
        return [self._price_row(r) for r in rows]

    async def delete_model_price(self, org_id: str, model: str) -> bool:
        changed = await self.db.execute(
            "DELETE FROM model_prices WHERE org_id = ? AND model = ?", (org_id, model)
        )
        return changed == 1
