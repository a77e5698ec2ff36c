-- Turn leases (issue #14): the process running a turn holds a lease on it, renewed while
-- it runs; a turn whose lease expired belongs to a process that died, and any replica
-- stores it as failed (core.engine.recovery). Expiry as integer microseconds since the
-- epoch, compared in SQL. Rows from before this migration have no lease.
ALTER TABLE turns ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE turns ADD COLUMN lease_expires_at INTEGER;
