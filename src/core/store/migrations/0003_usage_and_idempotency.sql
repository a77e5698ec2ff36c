-- The usage ledger (one row per priced turn segment) and exactly-once turn keys.
CREATE TABLE usage_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    conversation_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX usage_ledger_org_time ON usage_ledger (org_id, created_at);
CREATE INDEX usage_ledger_user_time ON usage_ledger (org_id, user_id, created_at);

-- One turn per (organisation, idempotency key): the replica-safe half of exactly-once.
CREATE UNIQUE INDEX turns_idempotency ON turns (org_id, idempotency_key)
    WHERE idempotency_key <> '';
