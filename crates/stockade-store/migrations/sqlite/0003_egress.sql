-- Egress: every outbound request attempt, and the anomaly events the alert pipeline
-- delivers. Times are Unix milliseconds. No body, header value, token or query string
-- is ever stored: only the host, the caller's path template and the operation name.
-- Both tables are pruned by age (egress log retention), hence the at_ms indexes.

-- outcome: ok | http_error | blocked | timeout | tls | connect | circuit_open | too_large
CREATE TABLE egress_log (
    id              INTEGER PRIMARY KEY,
    at_ms           INTEGER NOT NULL,
    environment     TEXT    NOT NULL,
    caller          TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    host            TEXT    NOT NULL,
    path_template   TEXT    NOT NULL,
    operation       TEXT    NOT NULL,
    status          INTEGER,
    outcome         TEXT    NOT NULL,
    latency_us      INTEGER NOT NULL,
    bytes_sent      INTEGER NOT NULL,
    bytes_received  INTEGER NOT NULL,
    attempt         INTEGER NOT NULL
);
CREATE INDEX egress_log_at ON egress_log(at_ms);
CREATE INDEX egress_log_host_at ON egress_log(host, at_ms);

-- source: 'egress' (later: other producers). kind: blocked | client_error |
-- server_error | transport. delivered_at_ms is set by the alert pipeline.
CREATE TABLE events (
    id               INTEGER PRIMARY KEY,
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
CREATE INDEX events_at ON events(at_ms);
CREATE INDEX events_undelivered ON events(at_ms) WHERE delivered_at_ms IS NULL;
