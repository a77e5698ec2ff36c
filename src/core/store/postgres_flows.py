"""PostgreSQL side of `core.flows.store.FlowStore`: flow executions, wait tokens, the model
price table and server secrets. Mixed into `PostgresStore`."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from core.flows.store import ExecutionRecord, ModelPrice, WaitRecord
from core.store import rows
from core.store.postgres_db import PgDatabase
from core.store.postgres_db import as_stored as _as_stored
from core.store.rows import dumps, loads


class PgFlowsMixin:
    db: PgDatabase

    async def get_flow_reply(
        self, org_id: str, idempotency_key: str
    ) -> tuple[str, str, datetime] | None:
        row = await self.db.fetchone(
            "SELECT request_hash, reply_json, created_at FROM flow_replies "
            "WHERE org_id = $1 AND idempotency_key = $2",
            org_id, idempotency_key,
        )
        if row is None:
            return None
        return row[0], row[1], row[2]

    async def put_flow_reply(
        self, org_id: str, idempotency_key: str, request_hash: str, reply_json: str,
        now: datetime,
    ) -> None:
        await self.db.execute(
            "INSERT INTO flow_replies (org_id, idempotency_key, request_hash, reply_json, "
            "created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, idempotency_key) DO "
            "UPDATE SET request_hash = excluded.request_hash, reply_json = excluded.reply_json,"
            " created_at = excluded.created_at",
            org_id, idempotency_key, request_hash, reply_json, now,
        )

    async def get_or_create_secret(self, name: str, candidate: str) -> str:
        """The stored secret `name`; `candidate` becomes it if there is none yet (the first
        replica to start wins; ON CONFLICT waits for it, and READ COMMITTED then sees it)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO server_secrets (name, value) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING",
                name, candidate,
            )
            row = await conn.fetchrow("SELECT value FROM server_secrets WHERE name = $1", name)
        assert row is not None
        return str(row[0])

    # -- executions and waits -----------------------------------------------------------

    async def save_execution(
        self, execution: ExecutionRecord, wait: WaitRecord | None = None
    ) -> None:
        e = execution
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO flow_executions (id, org_id, agent_id, conversation_id, intent, "
                "status, current_step, state_json, steps_run, expected_input_json, "
                "wait_expires_at, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb, $11, $12, $13) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                "current_step = excluded.current_step, state_json = excluded.state_json, "
                "steps_run = excluded.steps_run, "
                "expected_input_json = excluded.expected_input_json, "
                "wait_expires_at = excluded.wait_expires_at, updated_at = excluded.updated_at",
                e.id, e.org_id, e.agent_id, e.conversation_id, e.intent, e.status,
                e.current_step, dumps(e.state), e.steps_run,
                dumps(e.expected_input) if e.expected_input is not None else None,
                e.wait_expires_at, e.created_at, e.updated_at,
            )
            if wait is not None:
                w = wait
                await conn.execute(
                    "INSERT INTO flow_waits (token_hash, org_id, execution_id, conversation_id, "
                    "step_id, expected_input_json, status, expires_at, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)",
                    w.token_hash, w.org_id, w.execution_id, w.conversation_id, w.step_id,
                    dumps(w.expected_input), w.status, w.expires_at, w.created_at,
                )

    @staticmethod
    def _execution_row(row: asyncpg.Record) -> ExecutionRecord:
        return rows.execution(row, _as_stored)

    async def get_execution(self, org_id: str, execution_id: str) -> ExecutionRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM flow_executions WHERE id = $1 AND org_id = $2", execution_id, org_id
        )
        return self._execution_row(row) if row else None

    async def get_wait(self, org_id: str, token_hash: str) -> WaitRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM flow_waits WHERE token_hash = $1 AND org_id = $2", token_hash, org_id
        )
        if row is None:
            return None
        return WaitRecord(
            token_hash=row["token_hash"], org_id=row["org_id"],
            execution_id=row["execution_id"], conversation_id=row["conversation_id"],
            step_id=row["step_id"], expected_input=loads(row["expected_input_json"]) or {},
            status=row["status"], expires_at=row["expires_at"], created_at=row["created_at"],
            used_at=row["used_at"],
        )

    async def claim_wait(self, org_id: str, token_hash: str, now: datetime) -> bool:
        """Atomically mark a pending wait used; False if another request did first."""
        changed = await self.db.execute(
            "UPDATE flow_waits SET status = 'used', used_at = $1 "
            "WHERE token_hash = $2 AND org_id = $3 AND status = 'pending'",
            now, token_hash, org_id,
        )
        return changed == 1

    # -- model prices -------------------------------------------------------------------

    async def set_model_price(self, org_id: str, price: ModelPrice, now: datetime) -> None:
        await self.db.execute(
            "INSERT INTO model_prices (org_id, model, input_micros_per_mtok, "
            "output_micros_per_mtok, updated_at) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (org_id, model) DO UPDATE SET "
            "input_micros_per_mtok = excluded.input_micros_per_mtok, "
            "output_micros_per_mtok = excluded.output_micros_per_mtok, "
            "updated_at = excluded.updated_at",
            org_id, price.model, price.input_micros_per_mtok, price.output_micros_per_mtok, now,
        )

    @staticmethod
    def _price_row(row: asyncpg.Record) -> ModelPrice:
        return rows.model_price(row, _as_stored)

    async def get_model_price(self, org_id: str, model: str) -> ModelPrice | None:
        row = await self.db.fetchone(
            "SELECT * FROM model_prices WHERE org_id = $1 AND model = $2", org_id, model
        )
        return self._price_row(row) if row else None

    async def list_model_prices(self, org_id: str) -> list[ModelPrice]:
        rows = await self.db.fetchall(
            "SELECT * FROM model_prices WHERE org_id = $1 ORDER BY model", org_id
        )
        return [self._price_row(r) for r in rows]

    async def delete_model_price(self, org_id: str, model: str) -> bool:
        changed = await self.db.execute(
            "DELETE FROM model_prices WHERE org_id = $1 AND model = $2", org_id, model
        )
        return changed == 1
