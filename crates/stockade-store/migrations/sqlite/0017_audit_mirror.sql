-- The audit mirror's cursor per sink (`nocodb`, `file`). The outbox is the audit table
-- itself: a sink copies the rows after `acked_seq` in `seq` order. `acked_seq` only
-- moves after the sink confirmed the rows (NocoDB answered, the file was fsynced).
-- `holder`/`lease_until_ms`: only one process of several mirrors a sink at a time.
-- Bookkeeping on the unaudited path (like delivery state): no PII, no secret.
CREATE TABLE audit_mirror_state (
    sink              TEXT    PRIMARY KEY,
    acked_seq         INTEGER NOT NULL,
    acked_at_ms       INTEGER,
    last_error        TEXT,
    last_error_at_ms  INTEGER,
    failing_since_ms  INTEGER,
    failures          INTEGER NOT NULL,
    holder            TEXT,
    lease_until_ms    INTEGER,
    updated_at_ms     INTEGER NOT NULL
);
