-- PostgreSQL schema, equal in meaning to SQLite's migrations 0001-0005 (a new backend
-- starts from today's schema; later changes get a number here and in migrations/).
-- Times are TIMESTAMPTZ (compared as instants), counters BIGINT, documents JSONB.
CREATE TABLE organisations (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    settings_json JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    kind TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    definition_json JSONB NOT NULL,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, slug)
);

-- running_turn_id names the turn holding the conversation (claimed and released by
-- conditional writes); last_seq is the event counter the claim allocates from.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    agent_id TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT 'anonymous',
    status TEXT NOT NULL DEFAULT 'open',
    last_seq BIGINT NOT NULL DEFAULT 0,
    context_json JSONB NOT NULL DEFAULT '{}',
    variables_json JSONB NOT NULL DEFAULT '{}',
    running_turn_id TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversations_org ON conversations (org_id, updated_at);

CREATE TABLE turns (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL DEFAULT '',
    request_hash TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX turns_conversation ON turns (conversation_id, created_at);
CREATE INDEX turns_running ON turns (status) WHERE status = 'running';
-- One turn per (organisation, idempotency key): the replica-safe half of exactly-once.
CREATE UNIQUE INDEX turns_idempotency ON turns (org_id, idempotency_key)
    WHERE idempotency_key <> '';

CREATE TABLE messages (
    seq_no BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    org_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    agent_id TEXT NOT NULL DEFAULT '',
    actions_json JSONB NOT NULL DEFAULT '[]',
    confidence DOUBLE PRECISION NOT NULL DEFAULT 0,
    usage_json JSONB NOT NULL DEFAULT '{}',
    images_json JSONB NOT NULL DEFAULT '[]',
    metadata_json JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, seq_no);

-- One row per stored turn segment: its whole event log as a JSON array.
CREATE TABLE event_log (
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    turn_id TEXT NOT NULL,
    events_json JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, first_seq)
);
CREATE INDEX event_log_turn ON event_log (turn_id);
CREATE INDEX event_log_age ON event_log (created_at);

CREATE TABLE interrupts (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    status TEXT NOT NULL,
    calls_json JSONB NOT NULL,
    state_json JSONB NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    resumed_at TIMESTAMPTZ
);
CREATE INDEX interrupts_conversation ON interrupts (conversation_id);

CREATE TABLE end_users (
    org_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    company_id TEXT NOT NULL DEFAULT '',
    traits_json JSONB NOT NULL DEFAULT '{}',
    context_json JSONB NOT NULL DEFAULT '{}',
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, external_id)
);

CREATE TABLE companies (
    org_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    data_json JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (org_id, external_id)
);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    team TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'open',
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE flow_executions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    intent TEXT NOT NULL,
    status TEXT NOT NULL,
    current_step TEXT NOT NULL DEFAULT '',
    state_json JSONB NOT NULL DEFAULT '{}',
    steps_run BIGINT NOT NULL DEFAULT 0,
    expected_input_json JSONB,
    wait_expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX flow_executions_conversation ON flow_executions (conversation_id, created_at);

CREATE TABLE flow_waits (
    token_hash TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    execution_id TEXT NOT NULL REFERENCES flow_executions(id),
    conversation_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    expected_input_json JSONB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX flow_waits_execution ON flow_waits (execution_id);

CREATE TABLE model_prices (
    org_id TEXT NOT NULL,
    model TEXT NOT NULL,
    input_micros_per_mtok BIGINT NOT NULL,
    output_micros_per_mtok BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, model)
);

CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE usage_ledger (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    conversation_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_micros BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX usage_ledger_org_time ON usage_ledger (org_id, created_at);
CREATE INDEX usage_ledger_user_time ON usage_ledger (org_id, user_id, created_at);

-- Exactly-once flow messages: the reply a flow message's idempotency key produced
-- (kept as the exact text that was sent).
CREATE TABLE flow_replies (
    org_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    reply_json TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
);

-- The readiness probe's harmless real write.
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL
);
