-- The event stream: each subscriber of `events` (the alert router; workflow triggers
-- next) keeps its position here and moves it in the same transaction as the effects of
-- the events it handled, so none is lost or handled twice across a restart.
CREATE TABLE event_cursors (
    subscriber     TEXT    PRIMARY KEY,
    last_id        INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);
-- The alert router resumes before the first event it has not routed.
INSERT INTO event_cursors (subscriber, last_id, updated_at_ms)
SELECT 'alerts',
       COALESCE((SELECT MIN(id) - 1 FROM events WHERE delivered_at_ms IS NULL),
                (SELECT MAX(id) FROM events), 0),
       CAST(strftime('%s', 'now') AS INTEGER) * 1000;

-- An event's id is its stream position: it must never be reused after the newest rows
-- are pruned. Rebuild the table with AUTOINCREMENT (same columns, rows and indexes).
CREATE TABLE events_before_0009 AS SELECT * FROM events;
DROP TABLE events;
CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms            INTEGER NOT NULL,
    source           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    caller           TEXT    NOT NULL,
    host             TEXT    NOT NULL,
    path_template    TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    status           INTEGER,
    detail           TEXT    NOT NULL,
    delivered_at_ms  INTEGER
);
INSERT INTO events (id, at_ms, source, kind, caller, host, path_template, operation, status, detail, delivered_at_ms)
SELECT id, at_ms, source, kind, caller, host, path_template, operation, status, detail, delivered_at_ms
  FROM events_before_0009;
DROP TABLE events_before_0009;
CREATE INDEX events_at ON events(at_ms);
CREATE INDEX events_undelivered ON events(at_ms) WHERE delivered_at_ms IS NULL;
