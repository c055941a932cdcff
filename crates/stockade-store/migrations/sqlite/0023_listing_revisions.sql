-- Marketplace revisions per listing per UTC day (stockade-store `revisions`): eBay allows
-- 250 revisions of a listing a day. The owner of a connection counts each revision here
-- before the call goes out, fenced by its lease, so a process that takes the connection
-- over (a restart, a rebalance, the owner's death) starts the day from what was spent,
-- not from zero. A call that never reached the marketplace is counted too (one too many
-- is safe; one too few could leave no revision for a decrease to zero). `day` is days
-- since the epoch (UTC). Rows of past days are removed on the day's roll-over and when a
-- process loads the counts. Bookkeeping, not data: written outside the audit chain.
CREATE TABLE listing_revisions (
    connection_id  INTEGER NOT NULL,
    sku            TEXT    NOT NULL,
    day            INTEGER NOT NULL,
    used           INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (connection_id, day, sku)
);
