-- Push health: a stalled channel looks stalled. While a connection's pushes fail, the
-- sync engine keeps the failing streak on the connection and on each listing it could
-- not update: how many rounds failed, since when (the first failure of the current
-- streak) and the last error (the marketplace's scrubbed message, never a secret). A
-- confirmed push clears a listing's streak; a round that confirms everything clears the
-- connection's. Operational state, not audited (the failures are events and alerts).
ALTER TABLE connections ADD COLUMN push_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN push_failing_since_ms BIGINT;
ALTER TABLE connections ADD COLUMN push_last_error TEXT;
ALTER TABLE connections ADD COLUMN push_last_error_at_ms BIGINT;
ALTER TABLE listings ADD COLUMN push_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE listings ADD COLUMN push_failing_since_ms BIGINT;
ALTER TABLE listings ADD COLUMN push_last_error TEXT;
