-- Retention (stockade-retention): the record of each run (counts per kind, never
-- contents; the same counts are on the run's audit row), the lease that keeps to one
-- run at a time across processes, and indexes the deletions walk.
CREATE TABLE retention_runs (
    id              INTEGER PRIMARY KEY,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER NOT NULL,
    removed         INTEGER NOT NULL,
    counts          TEXT    NOT NULL
);
CREATE TABLE retention_lease (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    holder    TEXT,
    until_ms  INTEGER NOT NULL
);
INSERT INTO retention_lease (id, holder, until_ms) VALUES (1, NULL, 0);
-- Expired sessions, ended bans and finished alert deliveries, oldest first.
CREATE INDEX sessions_expires ON sessions(expires_at_ms);
CREATE INDEX alert_outbox_done ON alert_outbox(created_at_ms) WHERE state <> 'pending';
