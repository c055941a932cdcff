//! Stock over the JSON API and the inventory's CSV export: the list (search, filter
//! `low|oversold|drifting`, keyset cursor by SKU), one SKU, an adjustment, and the CSV of
//! the current filter (`/inventory.csv`, the same as `/api/v1/stock.csv`).
//!
//! Invariants: reads come only from [`crate::console_data`]; an adjustment is
//! [`adjust_checked`], shared with the console's form: it refuses in the caller's language
//! (an empty reason, an unknown SKU, a result below zero or above the maximum) before
//! anything is built, then commits `stockade_sync::stock::adjust_change` (one ledger row
//! and one `stock.adjust` audit row, as the CLI and the workflow step write), so a refusal
//! writes nothing.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use stockade_store::Store;
use utoipa::{IntoParams, ToSchema};

use crate::api_types::{ErrorBody, decode_cursor, encode_cursor, page_limit};
use crate::console_data::{self as data, SkuRow, StockFilter};
use crate::error::AppError;
use crate::extract::Caller;
use crate::i18n::Lang;
use crate::state::AppState;

const STOCK_CURSOR: &str = "s1";
/// Rows in one CSV export (the whole catalogue of a large shop).
pub const CSV_MAX_ROWS: i64 = 200_000;

/// `GET /api/v1/stock`: search, filter and the page.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StockQuery {
    /// Only SKUs containing this text (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    /// `all` (default), `low`, `oversold` or `drifting`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Rows per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (same `q` and `filter`).
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One channel's figures for a SKU.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelStock {
    pub connection: String,
    /// What the channel should show.
    pub target: i64,
    /// Whether the current target was pushed.
    pub pushed: bool,
    /// The quantity last pushed and acknowledged.
    pub pushed_qty: Option<i64>,
    /// The quantity the channel last reported when read back.
    pub confirmed_qty: Option<i64>,
    pub drifting: bool,
}

/// A SKU's stock.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockItem {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub low_stock_threshold: i64,
    pub low: bool,
    pub oversold: bool,
    pub drifting: bool,
    pub channels: Vec<ChannelStock>,
}

/// One page of SKUs, by SKU.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockPage {
    pub rows: Vec<StockItem>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/stock/{sku}/adjust`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// Units to add (negative to remove), not zero.
    pub delta: i64,
    /// Why (kept in the audit row, at most 200 characters).
    pub reason: String,
}

fn item(s: SkuRow) -> StockItem {
    StockItem {
        low: s.low(),
        oversold: s.oversold(),
        drifting: s.drifting(),
        channels: s
            .listings
            .into_iter()
            .map(|l| ChannelStock {
                connection: l.connection,
                target: l.target,
                pushed: l.pushed,
                pushed_qty: l.pushed_qty,
                confirmed_qty: l.confirmed,
                drifting: l.drifting,
            })
            .collect(),
        sku: s.sku,
        on_hand: s.on_hand,
        reserved: s.reserved,
        available: s.available,
        low_stock_threshold: s.threshold,
    }
}

fn filter_of(f: Option<&str>) -> Result<StockFilter, AppError> {
    match f.unwrap_or("all") {
        f @ ("all" | "low" | "oversold" | "drifting") => Ok(StockFilter::parse(f)),
        _ => Err(AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "filter is one of all, low, oversold, drifting",
        )),
    }
}

/// SKUs with their stock and each channel's target, pushed and confirmed quantity.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock", operation_id = "stock_list", params(StockQuery),
    responses(
        (status = 200, description = "One page of SKUs, by SKU", body = StockPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<StockQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StockPage>, AppError> {
    let Query(q) = query.map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the query takes q, filter, limit and cursor",
        )
    })?;
    let filter = filter_of(q.filter.as_deref())?;
    let limit = page_limit(q.limit);
    let after = match q.cursor.as_deref() {
        Some(c) => decode_cursor(STOCK_CURSOR, c)?,
        None => String::new(),
    };
    let search = q.q.as_deref().unwrap_or("");
    let mut rows =
        data::skus_after(state.access.store(), search, filter, &after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|r| encode_cursor(STOCK_CURSOR, &r.sku));
    Ok(Json(StockPage {
        rows: rows.into_iter().map(item).collect(),
        next_cursor,
    }))
}

/// The row of exactly `sku`, if it is in the catalogue.
async fn one_sku(store: &Store, sku: &str) -> Result<Option<SkuRow>, AppError> {
    Ok(data::sku_one(store, sku).await?)
}

fn no_sku() -> AppError {
    AppError::refused(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such SKU in the catalogue",
    )
}

/// One SKU's stock.
#[utoipa::path(get, path = "/api/v1/stock/{sku}", tag = "stock", operation_id = "stock_show",
    params(("sku" = String, Path, description = "The SKU")),
    responses(
        (status = 200, description = "The SKU's stock", body = StockItem),
        (status = 404, description = "No such SKU", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<StockItem>, AppError> {
    let row = one_sku(state.access.store(), &sku)
        .await?
        .ok_or_else(no_sku)?;
    Ok(Json(item(row)))
}

/// Check an adjustment and commit it; a refusal (in `lang`) writes nothing. The stock after.
pub async fn adjust_checked(
    state: &AppState,
    caller: &Caller,
    lang: Lang,
    sku: &str,
    delta: i64,
    reason: &str,
) -> Result<stockade_sync::stock::SkuStock, AppError> {
    use stockade_sync::stock::{Adjustment, MAX_ON_HAND, adjust_change, sku_stock};
    let refuse = |key: &str, status: StatusCode, code: &'static str| {
        AppError::refused(
            status,
            code,
            format!("{} {}", lang.t("inv.refused"), lang.t(key)),
        )
    };
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    if delta == 0 {
        return Err(refuse("inv.delta_whole", invalid, "invalid"));
    }
    if reason.trim().is_empty() {
        return Err(refuse("inv.need_reason", invalid, "invalid"));
    }
    let store = state.access.store();
    let Some(now) = sku_stock(store, sku).await.map_err(AppError::internal)? else {
        return Err(refuse("inv.no_sku", StatusCode::NOT_FOUND, "not_found"));
    };
    match now.on_hand.checked_add(delta) {
        Some(n) if n < 0 => return Err(refuse("inv.below_zero", invalid, "invalid")),
        Some(n) if n <= MAX_ON_HAND => {}
        _ => return Err(refuse("inv.too_many", invalid, "invalid")),
    }
    let a = Adjustment {
        sku,
        delta,
        reason,
        ukey: None,
    };
    let (change, after) = match adjust_change(store, &a).await {
        Ok(x) => x,
        // A race (the stock moved between the check and the build): the library's words.
        Err(stockade_sync::SyncError::Invalid(m)) => {
            return Err(AppError::refused(invalid, "invalid", m));
        }
        Err(e) => return Err(AppError::internal(e)),
    };
    store.commit(&caller.actor(), vec![change]).await?;
    Ok(after)
}

/// Adjust one SKU's on hand by a signed delta with a reason (one ledger row and one
/// `stock.adjust` audit row, as `stockade sku adjust`).
#[utoipa::path(post, path = "/api/v1/stock/{sku}/adjust", tag = "stock", operation_id = "stock_adjust",
    params(("sku" = String, Path, description = "The SKU")),
    request_body = AdjustBody,
    responses(
        (status = 200, description = "Adjusted: the SKU's stock now", body = StockItem),
        (status = 404, description = "No such SKU", body = ErrorBody),
        (status = 422, description = "Refused (zero delta, no reason, below zero); nothing changed", body = ErrorBody),
    ))]
pub async fn adjust(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(sku): Path<String>,
    body: Result<Json<AdjustBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<StockItem>, AppError> {
    let Json(b) = body.map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is {\"delta\": integer, \"reason\": string}",
        )
    })?;
    let lang = Lang::for_caller(&caller, &headers);
    adjust_checked(&state, &caller, lang, &sku, b.delta, &b.reason).await?;
    let row = one_sku(state.access.store(), &sku)
        .await?
        .ok_or_else(no_sku)?;
    Ok(Json(item(row)))
}

/// One CSV field, quoted when needed; a leading formula character is neutralised.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The CSV of `rows`: one line per SKU and channel (a SKU on no channel: one line with
/// the channel columns empty). The first columns are `stockade sku import`'s.
pub fn stock_csv(rows: &[SkuRow]) -> String {
    let mut out = String::from(
        "sku,on_hand,reserved,available,low_stock_threshold,channel,target,pushed_qty,confirmed_qty,drifting\n",
    );
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    for s in rows {
        let head = format!(
            "{},{},{},{},{}",
            csv_field(&s.sku),
            s.on_hand,
            s.reserved,
            s.available,
            s.threshold
        );
        if s.listings.is_empty() {
            out.push_str(&format!("{head},,,,,\n"));
        }
        for l in &s.listings {
            out.push_str(&format!(
                "{head},{},{},{},{},{}\n",
                csv_field(&l.connection),
                l.target,
                opt(l.pushed_qty),
                opt(l.confirmed),
                l.drifting
            ));
        }
    }
    out
}

/// `?q=&filter=` of the CSV export.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CsvQuery {
    /// Only SKUs containing this text (case-insensitive).
    #[serde(default)]
    pub q: Option<String>,
    /// `all` (default), `low`, `oversold` or `drifting`.
    #[serde(default)]
    pub filter: Option<String>,
    // The console's page number rides along from the inventory's links: ignored.
    #[serde(default)]
    #[param(ignore)]
    pub page: Option<String>,
}

/// The SKUs of a search and filter as CSV (every match, by SKU).
#[utoipa::path(get, path = "/api/v1/stock.csv", tag = "stock", operation_id = "stock_csv", params(CsvQuery),
    responses(
        (status = 200, description = "The matching SKUs as CSV", content_type = "text/csv"),
        (status = 400, description = "Bad filter", body = ErrorBody),
    ))]
pub async fn csv(
    State(state): State<AppState>,
    Query(q): Query<CsvQuery>,
) -> Result<Response, AppError> {
    let filter = filter_of(q.filter.as_deref().filter(|f| !f.is_empty()))?;
    let rows = data::skus_after(
        state.access.store(),
        q.q.as_deref().unwrap_or(""),
        filter,
        "",
        CSV_MAX_ROWS,
    )
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"stock.csv\"",
            ),
        ],
        stock_csv(&rows),
    )
        .into_response())
}
