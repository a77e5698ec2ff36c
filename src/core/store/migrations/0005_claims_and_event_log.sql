-- Store-enforced turn claims and compact event storage.
-- A conversation names the turn that holds it (one running turn per conversation, claimed
-- and released by conditional writes); its last_seq is the event counter the claim
-- transaction allocates from.
ALTER TABLE conversations ADD COLUMN running_turn_id TEXT NOT NULL DEFAULT '';
-- A turn a crash left running keeps its conversation until start-up recovery ends it.
UPDATE conversations SET running_turn_id = COALESCE((
    SELECT t.id FROM turns t WHERE t.conversation_id = conversations.id
    AND t.status = 'running' ORDER BY t.created_at DESC LIMIT 1), '');

-- One row per stored turn segment (its whole event log as a JSON array) instead of one
-- row per event. Times as integer microseconds since the epoch compare the same in every
-- backend.
CREATE TABLE event_log (
    org_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    turn_id TEXT NOT NULL,
    events_json TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, first_seq)
);
CREATE INDEX event_log_turn ON event_log (turn_id);
CREATE INDEX event_log_age ON event_log (created_us);
INSERT INTO event_log (org_id, conversation_id, first_seq, last_seq, turn_id, events_json,
                       created_us)
    SELECT c.org_id, e.conversation_id, e.seq, e.seq, e.turn_id, '[' || e.data_json || ']',
           CAST(strftime('%s', e.created_at) AS INTEGER) * 1000000
    FROM events e JOIN conversations c ON c.id = e.conversation_id;
DROP TABLE events;

ALTER TABLE usage_ledger ADD COLUMN created_us INTEGER NOT NULL DEFAULT 0;
UPDATE usage_ledger SET created_us = CAST(strftime('%s', created_at) AS INTEGER) * 1000000;
CREATE INDEX usage_ledger_org_us ON usage_ledger (org_id, created_us);
CREATE INDEX usage_ledger_user_us ON usage_ledger (org_id, user_id, created_us);
