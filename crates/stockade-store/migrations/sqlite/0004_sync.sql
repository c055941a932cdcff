-- Sync: marketplace connections, the SKU catalog, orders with encrypted buyer fields,
-- the stock ledger, per-listing push targets, poll cursors and purge receipts.
-- Times are Unix milliseconds. Buyer fields are AES-256-GCM ciphertexts under the
-- connection's data key (AAD: environment, table, column, "<connection id>/<order id>").

-- status: active | paused | revoked. endpoint: live | sandbox.
-- settings: JSON of non-secret settings (base URLs, shop cipher, seller id); secrets are
-- in the credential store as connection/<name>/<field>.
CREATE TABLE connections (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    marketplace     TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    account         TEXT    NOT NULL,
    settings        TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    revoked_at_ms   INTEGER
);

-- Stock per SKU, derived from the ledger by the trigger below (and rebuildable from it).
CREATE TABLE skus (
    sku            TEXT    PRIMARY KEY,
    on_hand        INTEGER NOT NULL DEFAULT 0,
    reserved       INTEGER NOT NULL DEFAULT 0,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

-- A SKU's listing on one connection. target_qty/target_version: what the channel should
-- show (a new version on every change); pushed_version/acked_qty: what it confirmed.
CREATE TABLE listings (
    connection_id    INTEGER NOT NULL,
    sku              TEXT    NOT NULL,
    listing_id       TEXT    NOT NULL,
    listing_ref      TEXT    NOT NULL,
    buffer           INTEGER NOT NULL DEFAULT 0,
    max_displayed    INTEGER,
    target_qty       INTEGER NOT NULL DEFAULT 0,
    target_version   INTEGER NOT NULL DEFAULT 1,
    pushed_version   INTEGER NOT NULL DEFAULT 0,
    acked_qty        INTEGER,
    acked_at_ms      INTEGER,
    channel_qty      INTEGER,
    checked_at_ms    INTEGER,
    PRIMARY KEY (connection_id, sku)
);
CREATE INDEX listings_sku ON listings(sku);
CREATE INDEX listings_pending ON listings(connection_id) WHERE target_version > pushed_version;

-- rank orders statuses along the lifecycle; a change is applied only when it moves forward.
CREATE TABLE orders (
    id                  INTEGER PRIMARY KEY,
    connection_id       INTEGER NOT NULL,
    external_id         TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    marketplace_status  TEXT    NOT NULL,
    status_rank         INTEGER NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    ingested_at_ms      INTEGER NOT NULL,
    buyer_name          BLOB,
    buyer_email         BLOB,
    buyer_phone         BLOB,
    buyer_address       BLOB,
    pii_deleted_at_ms   INTEGER,
    oversold_units      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (connection_id, external_id)
);
CREATE INDEX orders_retention ON orders(updated_at_ms) WHERE pii_deleted_at_ms IS NULL;

CREATE TABLE order_lines (
    connection_id  INTEGER NOT NULL,
    external_id    TEXT    NOT NULL,
    line_id        TEXT    NOT NULL,
    sku            TEXT    NOT NULL,
    quantity       INTEGER NOT NULL,
    PRIMARY KEY (connection_id, external_id, line_id)
);

-- movement: adjust | reserve | commit | release | restock. ukey makes each (order line,
-- movement) happen at most once: "<connection id>/<order id>/<line id>/<movement>".
-- A purge keeps the row (PII-free stock history) and drops the order reference.
CREATE TABLE stock_ledger (
    id              INTEGER PRIMARY KEY,
    sku             TEXT    NOT NULL,
    connection_id   INTEGER,
    external_id     TEXT,
    line_id         TEXT,
    movement        TEXT    NOT NULL,
    on_hand_delta   INTEGER NOT NULL,
    reserved_delta  INTEGER NOT NULL,
    at_ms           INTEGER NOT NULL,
    ukey            TEXT    UNIQUE
);
CREATE INDEX stock_ledger_sku ON stock_ledger(sku);
CREATE INDEX stock_ledger_connection ON stock_ledger(connection_id);

-- Every ledger row moves the SKU's stock. A reservation that takes available below zero
-- is an oversell: the order is flagged and an event raised for the alert pipeline.
CREATE TRIGGER stock_ledger_apply AFTER INSERT ON stock_ledger
BEGIN
    UPDATE skus SET on_hand = on_hand + NEW.on_hand_delta,
                    reserved = reserved + NEW.reserved_delta,
                    updated_at_ms = NEW.at_ms
     WHERE sku = NEW.sku;
    UPDATE orders
       SET oversold_units = oversold_units
           + (SELECT MIN(NEW.reserved_delta, s.reserved - s.on_hand) FROM skus s WHERE s.sku = NEW.sku)
     WHERE NEW.movement = 'reserve'
       AND connection_id = NEW.connection_id AND external_id = NEW.external_id
       AND (SELECT s.reserved - s.on_hand FROM skus s WHERE s.sku = NEW.sku) > 0;
    INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
    SELECT NEW.at_ms, 'sync', 'oversell', 'connection:' || c.name, '', '', 'order.ingest', NULL,
           json_object('connection', c.name, 'order', NEW.external_id, 'sku', NEW.sku,
                       'units', MIN(NEW.reserved_delta, s.reserved - s.on_hand))
      FROM skus s, connections c
     WHERE NEW.movement = 'reserve' AND s.sku = NEW.sku AND c.id = NEW.connection_id
       AND s.reserved - s.on_hand > 0;
END;

-- A change of available stock gives every listing of the SKU a new target (and version)
-- when its displayed quantity changes: max(0, min(available - buffer, max_displayed)).
CREATE TRIGGER skus_retarget AFTER UPDATE OF on_hand, reserved ON skus
WHEN NEW.on_hand - NEW.reserved <> OLD.on_hand - OLD.reserved
BEGIN
    UPDATE listings
       SET target_qty = MAX(0, MIN(NEW.on_hand - NEW.reserved - buffer, COALESCE(max_displayed, 2147483647))),
           target_version = target_version + 1
     WHERE sku = NEW.sku
       AND target_qty <> MAX(0, MIN(NEW.on_hand - NEW.reserved - buffer, COALESCE(max_displayed, 2147483647)));
END;

-- The poller's position per connection.
CREATE TABLE sync_cursors (
    connection_id  INTEGER PRIMARY KEY,
    since_ms       INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL
);

-- What a deauthorization purge deleted (counts only).
CREATE TABLE purge_receipts (
    id               INTEGER PRIMARY KEY,
    connection_id    INTEGER NOT NULL,
    connection_name  TEXT    NOT NULL,
    marketplace      TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    at_ms            INTEGER NOT NULL,
    details          TEXT    NOT NULL
);
