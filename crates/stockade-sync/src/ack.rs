//! The pushers' confirmations as one multi-row statement (`stockade_store::rows`): on
//! SQLite the `UPDATE` per listing, on PostgreSQL one `UPDATE … FROM UNNEST` per chunk
//! that first locks the listing rows by (SKU, connection), the order the ingest takes
//! them in (`ingest_rows`), so a confirmation never deadlocks with an ingest.
//!
//! On PostgreSQL a listing row another transaction holds is skipped (`SKIP LOCKED`), not
//! waited for: the holder is an ingest moving that SKU's stock (or reconciliation, or a
//! failure mark), so the listing gets a newer target and must be pushed again anyway. Its
//! confirmation stays at the older version, and the next round (woken by the ingest, or
//! the pusher's one-second tick) pushes the newest target. Waiting instead made every
//! pusher queue behind every ingest batch on the same rows.

use stockade_store::{Column, RowStatement};

/// $1 the pushed version, $2 the quantity, $3 time, $4 connection, $5 SKU.
pub static ACK_ROWS: RowStatement = RowStatement {
    name: "listings.ack",
    one: Some(
        "UPDATE listings SET pushed_version = $1, acked_qty = $2, acked_at_ms = $3,
        push_failures = 0, push_failing_since_ms = NULL, push_last_error = NULL
     WHERE connection_id = $4 AND sku = $5 AND pushed_version < $1",
    ),
    many: "UPDATE listings l SET pushed_version = t.v, acked_qty = t.q, acked_at_ms = t.at,
        push_failures = 0, push_failing_since_ms = NULL, push_last_error = NULL
       FROM (SELECT t.* FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::text[]) AS t(v, q, at, cid, sku)
               JOIN listings x ON x.connection_id = t.cid AND x.sku = t.sku
              ORDER BY t.sku, t.cid FOR NO KEY UPDATE OF x SKIP LOCKED) t
      WHERE l.connection_id = t.cid AND l.sku = t.sku AND l.pushed_version < t.v",
    columns: &[Column::Int, Column::Int, Column::Int, Column::Int, Column::Text],
    key_columns: 0,
    rank: 0,
};
