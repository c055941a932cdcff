-- Alerts. The pipeline's input is the events table: each event is written in the same
-- transaction as the failure it reports. The router turns new events into outbox rows
-- (one per channel that takes the alert) or folds them into an aggregation window, and
-- sets events.delivered_at_ms, all in one transaction: nothing is lost across a restart.

-- One window per aggregation key (source, error class, where): the first event was
-- alerted at once; repeats until closes_at_ms are counted in `folded` and sent as one
-- follow-up when the window closes. `alert` is the latest folded alert (allow-listed,
-- scrubbed JSON).
CREATE TABLE alert_windows (
    key            TEXT    PRIMARY KEY,
    opened_at_ms   INTEGER NOT NULL,
    closes_at_ms   INTEGER NOT NULL,
    folded         INTEGER NOT NULL,
    alert          TEXT    NOT NULL
);
CREATE INDEX alert_windows_closing ON alert_windows(closes_at_ms);

-- The outbox: one row per (alert message, channel). state: pending | sent | held
-- (held = the channel is misconfigured; released when its configuration changes or by
-- `stockade alert retry`). `events` is how many events the row stands for.
CREATE TABLE alert_outbox (
    id             INTEGER PRIMARY KEY,
    channel        TEXT    NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    severity       INTEGER NOT NULL,
    events         INTEGER NOT NULL,
    alert          TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at_ms     INTEGER NOT NULL,
    last_error     TEXT,
    sent_at_ms     INTEGER
);
CREATE INDEX alert_outbox_pending ON alert_outbox(channel, next_at_ms) WHERE state = 'pending';
CREATE INDEX alert_outbox_created ON alert_outbox(created_at_ms);

-- Channel state for the dashboard and `stockade alert status`, and the sending lease:
-- one process at a time sends for a channel, so its rate limit holds across processes.
-- status: ok | failing | misconfigured | rate_limited. last_error: plain words, no secrets.
CREATE TABLE alert_channels (
    name              TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    last_error        TEXT,
    last_ok_ms        INTEGER,
    last_attempt_ms   INTEGER,
    failures          INTEGER NOT NULL DEFAULT 0,
    fingerprint       TEXT,
    holder            TEXT,
    lease_until_ms    INTEGER NOT NULL DEFAULT 0
);
