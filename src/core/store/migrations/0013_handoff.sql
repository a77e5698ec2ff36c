-- Human handoff (core.handoffs): one row per conversation that was ever handed to a
-- person (none: the bot answers), changed only by conditional updates, and the
-- conversation activity log operators and visitors follow (ids are resume cursors).
CREATE TABLE handoffs (
    conversation_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    state TEXT NOT NULL,
    team TEXT NOT NULL DEFAULT '',
    ticket_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    operator_id TEXT NOT NULL DEFAULT '',
    operator_name TEXT NOT NULL DEFAULT '',
    requested_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX handoffs_queue ON handoffs (org_id, state, updated_at);

CREATE TABLE conversation_activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX conversation_activity_org ON conversation_activity (org_id, id);
CREATE INDEX conversation_activity_conversation ON conversation_activity (conversation_id, id);
