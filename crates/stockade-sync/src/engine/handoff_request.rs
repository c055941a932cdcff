//! The receiving side's writes of handed-over webhook fetches (see `handoff`).
//!
//! A delivery for a connection another process owns records its order id in
//! `fetch_requests` before it waits. One task per engine ([`request_loop`]) writes them:
//! the requests that arrive while one statement is written go together in the next
//! ([`Store::request_fetches`]: one commit), followed by one wake-up for the owners
//! (`NOTIFY`), rather than a commit and a `NOTIFY` per delivery. Each delivery learns
//! whether its request is written before it registers its wait: a look must never find
//! a request absent because it was not written yet.
//!
//! [`Store::request_fetches`]: stockade_store::Store::request_fetches

use std::sync::Arc;

use stockade_store::Topic;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use crate::metrics::Metrics;

/// The most requests one statement writes.
const BATCH: usize = 512;

/// One delivery's request, and whether it was written.
pub(super) struct Request {
    pub(super) connection: i64,
    pub(super) external_id: String,
    pub(super) written: oneshot::Sender<bool>,
}

/// Write the requests (see the module) until shutdown.
pub(super) async fn request_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let mut stop = inner.shutdown.subscribe();
    let mut batch: Vec<Request> = Vec::new();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
            _ = stop.changed() => return,
        }
        let pairs: Vec<(i64, &str)> = batch
            .iter()
            .map(|r| (r.connection, r.external_id.as_str()))
            .collect();
        let written = match inner.store.request_fetches(&pairs).await {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(requests = batch.len(), error = %e, "could not hand webhook fetches to their connections' owners");
                false
            }
        };
        drop(pairs);
        Metrics::inc(&inner.metrics.handoff_writes, 1);
        if written {
            Metrics::inc(&inner.metrics.handoff_written, batch.len() as u64);
        }
        for r in batch.drain(..) {
            let _ = r.written.send(written);
        }
        if written {
            inner.store.wake(Topic::Fetches).await;
        }
    }
}
