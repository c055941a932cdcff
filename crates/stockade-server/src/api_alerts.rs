//! The alerts API: the channels' state, the alert history (newest first, paged by an
//! opaque cursor: `?limit=&cursor=`, `next_cursor`) with each channel's delivery, the
//! newest outbox rows, and a channel's test-send.
//!
//! Invariants: reads go through [`crate::dashboard`] (allow-listed, scrubbed fields
//! only: the same rows as the console's Alerts page); the test-send is the composition
//! root's [`crate::state::AlertTester`], i.e. `stockade_alerts::test_channel`, the
//! function `stockade alert test` calls, audited `alert.test` as the caller. The JSON
//! fields of the answer before paging existed are all kept (`channels`, `alerts`,
//! `recent`); without `limit` a page holds the newest 100 alerts, as before.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api_types::{AlertsAnswer, ErrorBody, PageQuery};
use crate::dashboard::{self, DEFAULT_ALERTS, alert_before, alert_cursor, send_test};
use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;

/// Alert channels' state, one page of alerts and the newest deliveries.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(PageQuery),
    responses(
        (status = 200, description = "Channels, one page of alerts (newest first) and the newest deliveries", body = AlertsAnswer),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
    ))]
pub async fn alerts(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AlertsAnswer>, AppError> {
    let Query(q) = query.map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the query takes limit and cursor",
        )
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_ALERTS).clamp(1, 1000);
    let before = q.cursor.as_deref().map(alert_before).transpose()?;
    let store = state.access.store();
    let (channels, recent) = dashboard::alerts_view(store, 50).await?;
    let (alerts, next) = dashboard::alert_history_page(store, before, limit).await?;
    Ok(Json(AlertsAnswer {
        channels,
        alerts,
        recent,
        next_cursor: next.map(alert_cursor),
    }))
}

/// What a test message came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertTestAnswer {
    pub channel: String,
    /// `delivered`, `rate_limited`, `failed` or `config_error`.
    pub status: String,
    pub delivered: bool,
    /// The platform's (scrubbed) answer, or what is wrong.
    pub detail: String,
}

/// POST /api/v1/alerts/channels/{name}/test: send a signed test message now.
#[utoipa::path(post, path = "/api/v1/alerts/channels/{name}/test", tag = "alerts",
    params(("name" = String, Path, description = "The alert channel's name")),
    responses(
        (status = 200, description = "Sent; `delivered` says whether the platform accepted it", body = AlertTestAnswer),
        (status = 404, description = "No such channel configured, or test-send is not offered", body = ErrorBody),
    ))]
pub async fn alert_test(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<AlertTestAnswer>, AppError> {
    let outcome = send_test(&state, &caller, &name).await?;
    Ok(Json(AlertTestAnswer {
        channel: name,
        delivered: outcome.status == "delivered",
        status: outcome.status,
        detail: outcome.detail,
    }))
}
