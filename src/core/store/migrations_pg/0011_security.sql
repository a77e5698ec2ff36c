-- Same number and meaning as SQLite's 0011_security.sql.
-- Who may continue or read a conversation (core.engine.admission): 'secret', 'user:<id>',
-- 'anonymous'. Rows from before this migration are anonymous.
ALTER TABLE conversations ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous';

-- Key rotation: the old key keeps working until expires_at (the documented overlap).
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ;
