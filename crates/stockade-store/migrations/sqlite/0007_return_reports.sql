-- Returns reported asynchronously (Amazon's returns report): per connection, how far the
-- reports have covered, when the last one was requested (createReport is requested at
-- most every `[sync] returns_report_interval`), and the report in flight, so a restart
-- neither requests again nor skips a range.
CREATE TABLE return_reports (
    connection_id    INTEGER PRIMARY KEY,
    covered_ms       INTEGER,
    requested_at_ms  INTEGER NOT NULL,
    report_id        TEXT,
    from_ms          INTEGER,
    to_ms            INTEGER,
    updated_at_ms    INTEGER NOT NULL
);
