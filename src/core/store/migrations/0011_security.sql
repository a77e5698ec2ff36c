-- Who may continue or read a conversation (core.engine.admission): 'secret' (started by a
-- secret key), 'user:<id>' (a verified user), 'anonymous' (holding the id is enough).
-- Rows from before this migration are anonymous.
ALTER TABLE conversations ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';

-- Key rotation: the old key keeps working until expires_at (the documented overlap).
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
