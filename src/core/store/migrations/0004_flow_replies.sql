-- Exactly-once flow messages: the reply a flow message's idempotency key produced.
CREATE TABLE flow_replies (
    org_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    reply_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
);
