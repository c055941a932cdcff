-- Marketplace revisions per listing per UTC day (stockade-store `revisions`): eBay allows
-- 250 revisions of a listing a day. The owner of a connection counts each revision here
-- before the call goes out, fenced by its lease, so a process that takes the connection
-- over (a restart, a rebalance, the owner's death) starts the day from what was spent,
-- not from zero. A call that never reached the marketplace is counted too (one too many
-- is safe; one too few could leave no revision for a decrease to zero). `day` is days
-- since the epoch (UTC). Rows of past days are removed on the day's roll-over and when a
-- process loads the counts. Bookkeeping, not data: written outside the audit chain.
CREATE TABLE listing_revisions (
    connection_id  BIGINT  NOT NULL,
    sku            TEXT    NOT NULL,
    day            BIGINT  NOT NULL,
    used           BIGINT  NOT NULL,
    updated_at_ms  BIGINT  NOT NULL,
    PRIMARY KEY (connection_id, day, sku)
);
-- Webhook fetches handed to the connection's owner (stockade-store `fetch_requests`): a
-- process that receives a verified order notification for a connection another process
-- owns records the order id here and wakes the owner, whose fetcher gets the order with
-- the owner's rate budget and removes the row once the order is stored (or unknown at
-- the marketplace). `seq` grows with each notification of the same order, so a row
-- notified again while its fetch was in flight is fetched again. Bookkeeping, not data:
-- written outside the audit chain; the stored order is audited as usual.
CREATE TABLE fetch_requests (
    connection_id    BIGINT  NOT NULL,
    external_id      TEXT    NOT NULL,
    seq              BIGINT  NOT NULL,
    requested_at_ms  BIGINT  NOT NULL,
    PRIMARY KEY (connection_id, external_id)
);
