//! The poller re-lists orders the webhooks already delivered (each poll looks back
//! `poll_overlap` before its cursor, so with the defaults every order is listed about
//! three times). Those already stored as listed — same update time, same status — are
//! dropped before ingest: no encryption, no transaction, no audit row for nothing.

use std::collections::HashMap;

use stockade_core::order::Order;
use stockade_store::sql_params;

use super::{Inner, Live};
use crate::metrics::Metrics;

const STORED_SINCE: &str =
    "SELECT external_id, updated_at_ms, status_rank, marketplace_status FROM orders
     WHERE connection_id = $1 AND updated_at_ms >= $2";

/// `orders` without those whose ingest would change nothing: the same rule as the
/// order upsert (`ingest.rs`) — a higher status rank, or the same rank with a newer
/// update time and another marketplace status, changes the order; anything else is a
/// replay. On a read failure every order is kept (ingest is idempotent).
pub(super) async fn not_yet_stored(inner: &Inner, live: &Live, orders: Vec<Order>) -> Vec<Order> {
    let Some(oldest) = orders.iter().map(|o| o.updated_at_ms).min() else {
        return orders;
    };
    let rows: Vec<(String, i64, i64, String)> = match inner
        .store
        .query_as(STORED_SINCE, sql_params![live.id, oldest])
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(connection = %live.name, error = %e, "could not read stored orders; ingesting every polled one");
            return orders;
        }
    };
    let stored: HashMap<String, (i64, i64, String)> = rows
        .into_iter()
        .map(|(id, at, rank, ms)| (id, (at, rank, ms)))
        .collect();
    let before = orders.len();
    let keep: Vec<Order> = orders
        .into_iter()
        .filter(|o| {
            !stored.get(&o.external_id).is_some_and(|(at, rank, ms)| {
                let polled = crate::ingest::rank(o.status);
                let changes = polled > *rank
                    || (polled == *rank && o.updated_at_ms > *at && *ms != o.marketplace_status);
                !changes
            })
        })
        .collect();
    Metrics::inc(&inner.metrics.poll_skipped, (before - keep.len()) as u64);
    keep
}
