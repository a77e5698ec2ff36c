-- Flow engine: executions, wait tokens (hashed), the per-organisation model price table
-- and server secrets (the session-token signing key).
CREATE TABLE flow_executions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    status TEXT NOT NULL,
    current_step TEXT NOT NULL DEFAULT '',
    state_json TEXT NOT NULL DEFAULT '{}',
    steps_run INTEGER NOT NULL DEFAULT 0,
    expected_input_json TEXT,
    wait_expires_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX flow_executions_conversation ON flow_executions (conversation_id, created_at);

CREATE TABLE flow_waits (
    token_hash TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    execution_id TEXT NOT NULL REFERENCES flow_executions(id),
    conversation_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    expected_input_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX flow_waits_execution ON flow_waits (execution_id);

CREATE TABLE model_prices (
    org_id TEXT NOT NULL,
    model TEXT NOT NULL,
    input_micros_per_mtok INTEGER NOT NULL,
    output_micros_per_mtok INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, model)
);

CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
