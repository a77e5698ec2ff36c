-- Same number and meaning as SQLite's 0012_turn_leases.sql.
-- Turn leases (issue #14): the process running a turn holds a lease on it, renewed while
-- it runs; a turn whose lease expired belongs to a process that died, and any replica
-- stores it as failed (core.engine.recovery). Rows from before this migration have none.
ALTER TABLE turns ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE turns ADD COLUMN lease_expires_at TIMESTAMPTZ;
