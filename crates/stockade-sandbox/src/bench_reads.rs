//! Read-only routes a benchmark running in another process uses to count what the
//! simulator saw (loopback only, JSON, no buyer data, no secrets):
//!
//! - `GET /_sandbox/acknowledged`: the ids of this marketplace's orders whose announcing
//!   delivery the receiver answered 2xx (`lost` counts those then missing);
//! - `GET /_sandbox/quantity-history`: every change of a listing's displayed quantity
//!   (seller id, SKU, time, quantity, source), and how many were not kept.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::resp::json_response;
use crate::sim::Sim;

async fn get_acknowledged(State(sim): State<Arc<Sim>>) -> Response {
    let mut ids: Vec<String> = sim
        .outbox
        .acknowledged(sim.marketplace)
        .into_iter()
        .collect();
    ids.sort_unstable();
    json_response(
        StatusCode::OK,
        &json!({"marketplace": sim.marketplace, "order_ids": ids}),
    )
}

async fn get_quantity_history(State(sim): State<Arc<Sim>>) -> Response {
    let (changes, dropped) = sim.qty_history();
    json_response(
        StatusCode::OK,
        &json!({"marketplace": sim.marketplace, "changes": changes, "dropped": dropped}),
    )
}

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/_sandbox/acknowledged", get(get_acknowledged))
        .route("/_sandbox/quantity-history", get(get_quantity_history))
        .layer(axum::middleware::from_fn(crate::admin::loopback_only))
        .with_state(sim)
}
