//! How many API requests of each operation were in flight at once. Every request to a
//! marketplace route (not the `/_sandbox/` admin routes) is counted under its method and
//! route template (`PATCH /listings/2021-08-01/items/{seller_id}/{sku}`) from the moment
//! it arrives (injected latency included) until its answer is ready: how many started,
//! how many are in flight now, and the most that ever were at once. A test reads it with
//! [`crate::Sandbox::in_flight`] or `GET /_sandbox/in-flight` (loopback only).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::resp::json_response;

/// One operation's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InFlight {
    /// Requests that arrived.
    pub started: u64,
    /// Requests not answered yet.
    pub now: u64,
    /// The most that were in flight at once.
    pub peak: u64,
}

/// The counts of one simulator, by `METHOD /route/template`.
#[derive(Debug, Default, Clone)]
pub(crate) struct InFlightLog(Arc<Mutex<HashMap<String, InFlight>>>);

impl InFlightLog {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, InFlight>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every operation seen so far.
    pub fn snapshot(&self) -> BTreeMap<String, InFlight> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Forget every count.
    pub fn reset(&self) {
        self.lock().clear();
    }
}

/// Ends one request's count however the request ends (answered or dropped).
struct Leave {
    log: InFlightLog,
    key: String,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if let Some(c) = self.log.lock().get_mut(&self.key) {
            c.now = c.now.saturating_sub(1);
        }
    }
}

/// The middleware that counts (outside the fault injection, so injected latency counts
/// as in flight).
pub(crate) async fn track(State(log): State<InFlightLog>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/_sandbox/") {
        return next.run(req).await;
    }
    let Some(route) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    let key = format!("{} {}", req.method(), route.as_str());
    {
        let mut map = log.lock();
        let c = map.entry(key.clone()).or_default();
        c.started += 1;
        c.now += 1;
        c.peak = c.peak.max(c.now);
    }
    let _leave = Leave { log, key };
    next.run(req).await
}

async fn get_in_flight(State(log): State<InFlightLog>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(log.snapshot()).unwrap_or_default(),
    )
}

/// `GET /_sandbox/in-flight`: the counts.
pub(crate) fn router(log: InFlightLog) -> Router {
    Router::new()
        .route("/_sandbox/in-flight", get(get_in_flight))
        .layer(axum::middleware::from_fn(crate::admin::loopback_only))
        .with_state(log)
}
