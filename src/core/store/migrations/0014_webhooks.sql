-- Webhooks out (core.outbox): an organisation's endpoints, the outbox of events (written
-- in the transaction of the change they describe), and one delivery per event and
-- subscribed endpoint. Times the dispatcher compares are integer microseconds.
-- events: the subscribed types joined by commas, or '*' for every type.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organisations(id),
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL DEFAULT '*',
    created_at TEXT NOT NULL,
    removed_at TEXT
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id) WHERE removed_at IS NULL;

-- body: the exact JSON every attempt sends.
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- id orders deliveries: an endpoint gets a conversation's events by ascending id.
-- claimed_until_us / claim_token: the dispatcher holding the row (see the store).
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES webhook_events(id),
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id),
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    next_attempt_us INTEGER NOT NULL,
    deadline_us INTEGER NOT NULL,
    claimed_until_us INTEGER NOT NULL DEFAULT 0,
    claim_token TEXT NOT NULL DEFAULT '',
    delivered_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, conversation_id, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_org ON webhook_deliveries (org_id, id);
-- Pruning the log (Store.prune_deliveries) finds an event's remaining deliveries.
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
