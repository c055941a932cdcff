//! Who called: every API request that changes something (not GET, not the admin routes,
//! not a token exchange) is recorded with its User-Agent, method, path, and when it
//! started and ended. `GET /_sandbox/callers` (loopback only) returns the record (the
//! newest [`KEEP`]). Stockade adds its process id to the User-Agent (`node/ID`) when
//! several processes share one database, so a test can check that one connection was
//! pushed by one process at a time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::resp::json_response;

/// Calls kept (the oldest are dropped first).
pub const KEEP: usize = 100_000;

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub user_agent: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// The record of one simulator.
#[derive(Debug, Default, Clone)]
pub(crate) struct Callers(Arc<Mutex<VecDeque<Call>>>);

fn recorded(method: &Method, path: &str) -> bool {
    method != Method::GET
        && !path.starts_with("/_sandbox/")
        && !path.contains("token")
        && !path.starts_with("/auth/")
}

/// The middleware that records.
pub(crate) async fn record(State(c): State<Callers>, req: Request, next: Next) -> Response {
    if !recorded(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let user_agent = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let started_ms = stockade_core::time::now_ms();
    let res = next.run(req).await;
    let call = Call {
        user_agent,
        method,
        path,
        status: res.status().as_u16(),
        started_ms,
        ended_ms: stockade_core::time::now_ms(),
    };
    if let Ok(mut v) = c.0.lock() {
        if v.len() >= KEEP {
            v.pop_front();
        }
        v.push_back(call);
    }
    res
}

async fn get_callers(State(c): State<Callers>) -> Response {
    let calls: Vec<Call> =
        c.0.lock()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
    json_response(
        axum::http::StatusCode::OK,
        &serde_json::to_value(calls).unwrap_or_default(),
    )
}

pub(crate) fn router(c: Callers) -> Router {
    Router::new()
        .route("/_sandbox/callers", get(get_callers))
        .layer(axum::middleware::from_fn(crate::admin::loopback_only))
        .with_state(c)
}
