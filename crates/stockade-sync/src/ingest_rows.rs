//! The statements of an order change as multi-row statements (`stockade_store::rows`):
//! on SQLite each runs per row (the `one` SQL in [`crate::ingest`]); on PostgreSQL a
//! batch of orders writes each table with one `UNNEST` statement.
//!
//! Lock order on PostgreSQL, the same in every ingest transaction: order rows by
//! (connection, order id) in the upsert, then every SKU row and listing row the batch
//! will move ([`LOCK_STOCK`], by SKU, then connection) before any ledger row, line or
//! event is written. The pushers' confirmations lock listings in the same order
//! (`engine::ack`), so ingest and pushers wait for each other at most one short
//! transaction and never deadlock; an event row (whose id is drawn under a lock held to
//! COMMIT) is only written after all stock locks are held. Ledger rows go in by SKU and,
//! for one SKU, in the batch's order, so oversells are attributed as one by one;
//! releases and restocks of a batch go in before its reservations (`rank`), so units a
//! cancellation gives back in the same batch are never reported as oversold.

use stockade_store::{Column, RowStatement};

use crate::ingest::{
    COMMIT, INSERT_LINE, ORDER_CANCELLED, ORDER_CREATED, RELEASE, RESERVE, RESTOCK, UNMARK,
    UPSERT_ORDER, upsert_order_conflict,
};

use Column::{Bytes, Int, Text};

/// The order upsert, the guard: returns the position of each row it wrote.
pub(crate) static UPSERT: RowStatement = RowStatement {
    name: "orders.upsert",
    one: Some(UPSERT_ORDER),
    many: concat!(
        "WITH t AS MATERIALIZED (
        SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[],
                             $7::int8[], $8::int8[], $9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[])
               WITH ORDINALITY AS t(cid, ext, st, mst, rk, cr, up, ing, bn, be, bp, ba, n)
     ), w AS (
        INSERT INTO orders (connection_id, external_id, status, marketplace_status, status_rank,
            created_at_ms, updated_at_ms, ingested_at_ms, buyer_name, buyer_email, buyer_phone, buyer_address)
        SELECT t.cid, t.ext, t.st, t.mst, t.rk, t.cr, t.up, t.ing, t.bn, t.be, t.bp, t.ba FROM t
         WHERE EXISTS (SELECT 1 FROM connections c WHERE c.id = t.cid AND c.status <> 'revoked')
         ORDER BY t.cid, t.ext",
        upsert_order_conflict!(),
        "
        RETURNING connection_id, external_id
     )
     SELECT t.n FROM t JOIN w ON w.connection_id = t.cid AND w.external_id = t.ext"
    ),
    columns: &[
        Int, Text, Text, Text, Int, Int, Int, Int, Bytes, Bytes, Bytes, Bytes,
    ],
    key_columns: 2,
    rank: 0,
};

/// PostgreSQL only: lock the SKU rows and their listings the batch moves, in order.
pub(crate) static LOCK_STOCK: RowStatement = RowStatement {
    name: "stock.lock",
    one: None,
    many: "WITH s AS MATERIALIZED (
        SELECT sku FROM skus WHERE sku = ANY($1::text[]) ORDER BY sku FOR NO KEY UPDATE
     )
     SELECT 1 FROM listings WHERE sku IN (SELECT sku FROM s) ORDER BY sku, connection_id FOR NO KEY UPDATE",
    columns: &[Text],
    key_columns: 0,
    rank: 1,
};

// Every movement: $1 sku, $2 connection, $3 order, $4 line, $5 on-hand delta,
// $6 reserved delta, $7 time, $8 key, then the keys it depends on.
const MOVEMENT_COLUMNS: &[Column] = &[Text, Int, Text, Text, Int, Int, Int, Text];

pub(crate) static RESERVE_ROWS: RowStatement = RowStatement {
    name: "stock_ledger.reserve",
    one: Some(RESERVE),
    many: "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT t.sku, t.cid, t.ext, t.lid, 'reserve', t.oh, t.rs, t.at, t.uk
       FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::text[])
            WITH ORDINALITY AS t(sku, cid, ext, lid, oh, rs, at, uk, n)
      WHERE EXISTS (SELECT 1 FROM skus s WHERE s.sku = t.sku)
      ORDER BY t.sku, t.n
     ON CONFLICT (ukey) DO NOTHING",
    columns: MOVEMENT_COLUMNS,
    key_columns: 0,
    rank: 4,
};

pub(crate) static COMMIT_ROWS: RowStatement = RowStatement {
    name: "stock_ledger.commit",
    one: Some(COMMIT),
    many: "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT t.sku, t.cid, t.ext, t.lid, 'commit', t.oh, t.rs, t.at, t.uk
       FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[])
            WITH ORDINALITY AS t(sku, cid, ext, lid, oh, rs, at, uk, d1, d2, n)
      WHERE EXISTS (SELECT 1 FROM stock_ledger l WHERE l.ukey = t.d1)
        AND NOT EXISTS (SELECT 1 FROM stock_ledger l WHERE l.ukey = t.d2)
      ORDER BY t.sku, t.n
     ON CONFLICT (ukey) DO NOTHING",
    columns: &[Text, Int, Text, Text, Int, Int, Int, Text, Text, Text],
    key_columns: 0,
    rank: 5,
};

pub(crate) static RELEASE_ROWS: RowStatement = RowStatement {
    name: "stock_ledger.release",
    one: Some(RELEASE),
    many: "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT t.sku, t.cid, t.ext, t.lid, 'release', t.oh, t.rs, t.at, t.uk
       FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::text[], $9::text[], $10::text[])
            WITH ORDINALITY AS t(sku, cid, ext, lid, oh, rs, at, uk, d1, d2, n)
      WHERE EXISTS (SELECT 1 FROM stock_ledger l WHERE l.ukey = t.d1)
        AND NOT EXISTS (SELECT 1 FROM stock_ledger l WHERE l.ukey = t.d2)
      ORDER BY t.sku, t.n
     ON CONFLICT (ukey) DO NOTHING",
    columns: &[Text, Int, Text, Text, Int, Int, Int, Text, Text, Text],
    key_columns: 0,
    rank: 2,
};

pub(crate) static RESTOCK_ROWS: RowStatement = RowStatement {
    name: "stock_ledger.restock",
    one: Some(RESTOCK),
    many: "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT t.sku, t.cid, t.ext, t.lid, 'restock', t.oh, t.rs, t.at, t.uk
       FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[], $8::text[], $9::text[])
            WITH ORDINALITY AS t(sku, cid, ext, lid, oh, rs, at, uk, d1, n)
      WHERE EXISTS (SELECT 1 FROM stock_ledger l WHERE l.ukey = t.d1)
      ORDER BY t.sku, t.n
     ON CONFLICT (ukey) DO NOTHING",
    columns: &[Text, Int, Text, Text, Int, Int, Int, Text, Text],
    key_columns: 0,
    rank: 3,
};

pub(crate) static LINE_ROWS: RowStatement = RowStatement {
    name: "order_lines.insert",
    one: Some(INSERT_LINE),
    many: "INSERT INTO order_lines (connection_id, external_id, line_id, sku, quantity, unmatched_since_ms)
     SELECT t.cid, t.ext, t.lid, t.sku, t.q,
            CASE WHEN EXISTS (SELECT 1 FROM skus s WHERE s.sku = t.sku) THEN NULL ELSE t.at END
       FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[])
            WITH ORDINALITY AS t(cid, ext, lid, sku, q, at, n)
      ORDER BY t.n
     ON CONFLICT (connection_id, external_id, line_id) DO NOTHING",
    columns: &[Int, Text, Text, Text, Int, Int],
    key_columns: 0,
    rank: 6,
};

const EVENT_COLUMNS: &[Column] = &[
    Int, Text, Text, Text, Text, Text, Text, Int, Text, Int, Text,
];

pub(crate) static CREATED_ROWS: RowStatement = RowStatement {
    name: "events.order_created",
    one: Some(ORDER_CREATED),
    many: "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     SELECT t.at, t.src, t.k, t.c, t.h, t.p, t.op, t.st, t.d
       FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[],
                   $9::text[], $10::int8[], $11::text[])
            WITH ORDINALITY AS t(at, src, k, c, h, p, op, st, d, cid, ext, n)
      WHERE EXISTS (SELECT 1 FROM orders o WHERE o.connection_id = t.cid AND o.external_id = t.ext
                       AND o.ingested_at_ms = t.at)
      ORDER BY t.n",
    columns: EVENT_COLUMNS,
    key_columns: 0,
    rank: 8,
};

pub(crate) static CANCELLED_ROWS: RowStatement = RowStatement {
    name: "events.order_cancelled",
    one: Some(ORDER_CANCELLED),
    many: "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     SELECT t.at, t.src, t.k, t.c, t.h, t.p, t.op, t.st, t.d
       FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[],
                   $9::text[], $10::int8[], $11::text[], $12::int8[])
            WITH ORDINALITY AS t(at, src, k, c, h, p, op, st, d, cid, ext, rk, n)
      WHERE EXISTS (SELECT 1 FROM orders o WHERE o.connection_id = t.cid AND o.external_id = t.ext
                       AND o.ingested_at_ms < 0 AND (-o.ingested_at_ms) % 8 <> t.rk)
      ORDER BY t.n",
    columns: &[Int, Text, Text, Text, Text, Text, Text, Int, Text, Int, Text, Int],
    key_columns: 0,
    rank: 7,
};

pub(crate) static UNMARK_ROWS: RowStatement = RowStatement {
    name: "orders.unmark",
    one: Some(UNMARK),
    many: "UPDATE orders o SET ingested_at_ms = t.at
       FROM UNNEST($1::int8[], $2::text[], $3::int8[]) AS t(cid, ext, at)
      WHERE o.connection_id = t.cid AND o.external_id = t.ext AND o.ingested_at_ms < 0",
    columns: &[Int, Text, Int],
    key_columns: 0,
    rank: 9,
};
