-- Same number and meaning as SQLite's 0013_handoff.sql.
CREATE TABLE handoffs (
    conversation_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    state TEXT NOT NULL,
    team TEXT NOT NULL DEFAULT '',
    ticket_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    operator_id TEXT NOT NULL DEFAULT '',
    operator_name TEXT NOT NULL DEFAULT '',
    requested_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX handoffs_queue ON handoffs (org_id, state, updated_at);

-- Ids are handed out under a per-organisation transaction lock (postgres_handoff.py), so
-- they commit in order and a reader resuming after an id never skips a later commit.
CREATE TABLE conversation_activity (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversation_activity_org ON conversation_activity (org_id, id);
CREATE INDEX conversation_activity_conversation ON conversation_activity (conversation_id, id);
