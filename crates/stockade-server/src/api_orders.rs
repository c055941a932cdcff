//! The orders API: the list (newest first, filtered by search, connection, status and
//! dates, paged by cursor), one order with its buyer fields masked, and the audited
//! reveal of one order's buyer fields. Reads need `ViewStock`, the reveal `RevealBuyer`
//! (routes.rs; see the permission's doc for who holds it and why).
//!
//! Invariants: the work is [`crate::orders_data`], the same code as the console pages.
//! Only the reveal's answer holds buyer data: it is sent after its one audit row is
//! committed, with `Cache-Control: no-store`. A refused reveal (no reason, a reason too
//! long or shaped like personal data) is 422 and writes nothing. An order whose seller's
//! data key was destroyed answers `state: "purged"`, never 500.

use std::collections::BTreeMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use stockade_core::time::format_rfc3339_ms;
use utoipa::{IntoParams, ToSchema};

use crate::api_types::{ErrorBody, page_limit};
use crate::error::AppError;
use crate::extract::Caller;
use crate::orders_data::{
    self as data, OrderDetail, OrderFilter, OrderRow, RevealOutcome, RevealRefusal,
};
use crate::state::AppState;

/// What a masked buyer field reads (as in the workflow steps' output).
pub const MASKED: &str = "[masked]";

fn bad_query(expected: &'static str) -> AppError {
    AppError::refused(StatusCode::BAD_REQUEST, "invalid_request", expected)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    /// An order number, a marketplace order id or a SKU: exact match (as given or
    /// upper-cased).
    #[serde(default)]
    q: Option<String>,
    /// Only this connection's orders (its name or id).
    #[serde(default)]
    connection: Option<String>,
    /// Only orders in this status: pending, placed, partially_shipped, shipped,
    /// delivered, cancelled, returned.
    #[serde(default)]
    status: Option<String>,
    /// Created at or after: a date (YYYY-MM-DD, the console's time zone) or an RFC 3339 time.
    #[serde(default)]
    from: Option<String>,
    /// Created before the end of this date (YYYY-MM-DD, the console's time zone), or
    /// before this RFC 3339 time.
    #[serde(default)]
    to: Option<String>,
    /// Rows per page, 1 to 1000 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page; absent for the first page.
    #[serde(default)]
    cursor: Option<String>,
}

/// A date in the console's zone (`end`: the end of that day) or an RFC 3339 instant.
fn bound(tz: chrono_tz::Tz, text: &str, end: bool) -> Option<i64> {
    crate::console::day_start(tz, text, u64::from(end)).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

/// An order in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItem {
    /// The order's number in Stockade.
    pub id: i64,
    pub connection: String,
    pub marketplace: String,
    /// The marketplace's order id.
    pub external_id: String,
    pub status: String,
    pub created_at: String,
    pub lines: i64,
    pub oversold_units: i64,
}

fn item(r: &OrderRow) -> OrderItem {
    OrderItem {
        id: r.id,
        connection: r.connection.clone(),
        marketplace: r.marketplace.clone(),
        external_id: r.external_id.clone(),
        status: r.status.clone(),
        created_at: format_rfc3339_ms(r.created_at_ms),
        lines: r.lines,
        oversold_units: r.oversold_units,
    }
}

/// One page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderItem>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Orders, newest first by creation time, filtered and paged by cursor.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", operation_id = "list_orders", params(OrdersQuery),
    responses(
        (status = 200, description = "One page of orders, newest first (no buyer fields)", body = OrderPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderPage>, AppError> {
    let Query(q) = query.map_err(|_| {
        bad_query("the query takes q, connection, status, from, to, limit and cursor")
    })?;
    let store = state.access.store();
    let tz = state.console.timezone;
    let connection = match q.connection.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(c) => data::channel_choices(store)
            .await?
            .into_iter()
            .find(|(id, name, _)| name == c || id.to_string() == c)
            .map(|(id, _, _)| id)
            .ok_or_else(|| bad_query("no connection has that name or id"))?,
    };
    let status = q.status.unwrap_or_default();
    if !status.is_empty() && !data::STATUSES.contains(&status.as_str()) {
        return Err(bad_query(
            "status is one of pending, placed, partially_shipped, shipped, delivered, cancelled, returned",
        ));
    }
    let from_ms = match q.from.as_deref() {
        None | Some("") => 0,
        Some(t) => {
            bound(tz, t, false).ok_or_else(|| bad_query("from is YYYY-MM-DD or RFC 3339"))?
        }
    };
    let to_ms = match q.to.as_deref() {
        None | Some("") => i64::MAX,
        Some(t) => bound(tz, t, true).ok_or_else(|| bad_query("to is YYYY-MM-DD or RFC 3339"))?,
    };
    let filter = OrderFilter {
        q: q.q.unwrap_or_default().chars().take(200).collect(),
        connection,
        status,
        from_ms,
        to_ms,
    };
    let before = match q.cursor.as_deref() {
        Some(c) => data::parse_cursor(c)?,
        None => (i64::MAX, i64::MAX),
    };
    let limit = page_limit(q.limit);
    let mut rows = data::order_page(store, &filter, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(data::make_cursor);
    Ok(Json(OrderPage {
        orders: rows.iter().map(item).collect(),
        next_cursor,
    }))
}

/// A line of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineItem {
    pub line_id: String,
    pub sku: String,
    pub quantity: i64,
    /// The SKU is not in the catalogue yet (nothing reserved).
    pub unmatched: bool,
}

/// An audit row about the order (received from the marketplace, buyer data shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    pub at: String,
    pub actor: String,
    /// `order.ingest` or `order.reveal_buyer`.
    pub action: String,
    /// The status it moved to (ingests).
    pub status: Option<String>,
}

/// A stock movement the order caused.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerItem {
    pub at: String,
    pub sku: String,
    /// `reserve`, `commit`, `release` or `restock`.
    pub movement: String,
    pub on_hand_delta: i64,
    pub reserved_delta: i64,
}

/// The buyer fields: masked (`[masked]` for each field the marketplace sent), revealed
/// (only in the answer to a reveal), removed (by retention), purged (the seller's data
/// key was destroyed), or none sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuyerView {
    /// `masked`, `revealed`, `removed` (by retention: the buyer fields were deleted from the
    /// order), `purged` (the seller's data key was destroyed), `unreadable` (a reveal found
    /// an altered ciphertext) or `none`.
    pub state: String,
    /// `name`, `email`, `phone`, `address` (one line) → value, or `[masked]`.
    pub fields: BTreeMap<String, String>,
    /// The reveal's audit row (reveals only).
    pub audit_seq: Option<i64>,
}

/// One order: its lines, history, stock movements and masked buyer fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderAnswer {
    #[serde(flatten)]
    pub order: OrderItem,
    pub connection_status: String,
    pub marketplace_status: String,
    pub updated_at: String,
    pub ingested_at: String,
    pub lines_detail: Vec<LineItem>,
    pub history: Vec<HistoryItem>,
    pub ledger: Vec<LedgerItem>,
    pub buyer: BuyerView,
}

fn masked(o: &OrderDetail) -> BuyerView {
    let state = if o.removed_by_retention() {
        "removed"
    } else if o.purged() {
        "purged"
    } else if o.any_buyer() {
        "masked"
    } else {
        "none"
    };
    let fields = if state == "masked" {
        ["name", "email", "phone", "address"]
            .into_iter()
            .zip(o.present)
            .filter(|(_, p)| *p)
            .map(|(n, _)| (n.to_owned(), MASKED.to_owned()))
            .collect()
    } else {
        BTreeMap::new()
    };
    BuyerView {
        state: state.to_owned(),
        fields,
        audit_seq: None,
    }
}

fn answer(o: &OrderDetail) -> OrderAnswer {
    OrderAnswer {
        order: item(&o.row),
        connection_status: o.connection_status.clone(),
        marketplace_status: o.marketplace_status.clone(),
        updated_at: format_rfc3339_ms(o.updated_at_ms),
        ingested_at: format_rfc3339_ms(o.ingested_at_ms),
        lines_detail: o
            .lines
            .iter()
            .map(|(l, s, q, u)| LineItem {
                line_id: l.clone(),
                sku: s.clone(),
                quantity: *q,
                unmatched: *u,
            })
            .collect(),
        history: o
            .history
            .iter()
            .map(|(ts, actor, action, status)| HistoryItem {
                at: format_rfc3339_ms(*ts),
                actor: actor.clone(),
                action: action.clone(),
                status: (!status.is_empty()).then(|| status.clone()),
            })
            .collect(),
        ledger: o
            .ledger
            .iter()
            .map(|(ts, sku, m, oh, r)| LedgerItem {
                at: format_rfc3339_ms(*ts),
                sku: sku.clone(),
                movement: m.clone(),
                on_hand_delta: *oh,
                reserved_delta: *r,
            })
            .collect(),
        buyer: masked(o),
    }
}

fn not_found() -> AppError {
    AppError::refused(StatusCode::NOT_FOUND, "not_found", "there is no such order")
}

async fn load(state: &AppState, id: &str) -> Result<OrderDetail, AppError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(not_found)?;
    data::order_detail(state.access.store(), id)
        .await?
        .ok_or_else(not_found)
}

/// One order, its buyer fields masked.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", operation_id = "show_order",
    params(("id" = i64, Path, description = "The order's number in Stockade")),
    responses(
        (status = 200, description = "The order, buyer fields masked", body = OrderAnswer),
        (status = 404, description = "No such order", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderAnswer>, AppError> {
    Ok(Json(answer(&load(&state, &id).await?)))
}

/// Why the buyer's data is needed.
#[derive(Deserialize, ToSchema)]
pub struct RevealBody {
    /// 4 to 200 characters, kept in the audit row (control characters removed; words
    /// holding the buyer's own data redacted). Not an email address or a phone number:
    /// name a ticket instead.
    pub reason: String,
}

// Never printed: a person typed it.
impl std::fmt::Debug for RevealBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealBody").finish_non_exhaustive()
    }
}

/// Reveal one order's buyer fields: one audit row (`order.reveal_buyer`: who, which
/// order, the reason, which fields; never a value), then the fields, `no-store`.
#[utoipa::path(post, path = "/api/v1/orders/{id}/reveal", tag = "orders", operation_id = "reveal_order_buyer",
    params(("id" = i64, Path, description = "The order's number in Stockade")),
    request_body = RevealBody,
    responses(
        (status = 200, description = "The buyer fields, for this answer only (Cache-Control: no-store); `purged` when the seller's data key was destroyed", body = BuyerView),
        (status = 400, description = "Bad body", body = ErrorBody),
        (status = 403, description = "The caller's role lacks RevealBuyer (administrators only)", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 422, description = "Reason missing, too long or shaped like personal data; nothing written", body = ErrorBody),
    ))]
pub async fn reveal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<RevealBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"reason\""))?;
    let o = load(&state, &id).await?;
    let store = state.access.store();
    let (outcome, seq) = match data::reveal(
        state.access.vault(),
        store,
        &caller.actor(),
        &o,
        &body.reason,
    )
    .await
    {
        Ok(x) => x,
        Err(RevealRefusal::Reason(p)) => {
            let message = match p {
                data::ReasonProblem::Missing => {
                    "give a reason of at least 4 characters (for example a ticket number)"
                }
                data::ReasonProblem::TooLong => "the reason is longer than 200 characters",
                data::ReasonProblem::LooksLikePii => {
                    "the reason looks like personal data; name a ticket instead"
                }
            };
            return Err(AppError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                p.code(),
                message,
            ));
        }
        Err(RevealRefusal::Failed(e)) => return Err(e),
    };
    let (state_name, fields) = match outcome {
        RevealOutcome::Shown(f) => (
            "revealed",
            f.into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_string()))
                .collect(),
        ),
        RevealOutcome::Purged => ("purged", BTreeMap::new()),
        RevealOutcome::Removed => ("removed", BTreeMap::new()),
        RevealOutcome::Unreadable => ("unreadable", BTreeMap::new()),
        RevealOutcome::Nothing => ("none", BTreeMap::new()),
    };
    let view = BuyerView {
        state: state_name.to_owned(),
        fields,
        audit_seq: Some(seq),
    };
    let mut res = Json(view).into_response();
    crate::console_orders::no_store(&mut res);
    Ok(res)
}
