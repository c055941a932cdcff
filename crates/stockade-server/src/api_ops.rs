//! The JSON API of the Connections and Security pages: connections (list, pause, resume,
//! revoke with the typed name), sessions in force (list, end one, end all of a user's) and
//! revoking an API key. Users, the key list and bans are the access endpoints of
//! [`crate::api`] (`/api/v1/users`, `/api/v1/apikeys`, `/api/v1/bans`), not repeated here.
//!
//! Invariants: the same library calls as the console pages and the CLI
//! (`stockade_sync::connections::set_status`, `stockade_sync::connection_view::revoke`,
//! `stockade_access` session and key functions), audited as the caller; a refusal writes
//! nothing and answers the one error shape. Lists are paged by the shared opaque cursor
//! ([`crate::api_types::encode_cursor`]). Answers carry no secret: no credential, no
//! session token or hash (sessions are named by their public id), no API key or hash.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use stockade_access::{AccessError, SessionInfo};
use stockade_core::time::format_rfc3339_ms;
use stockade_sync::connection_view::{self, ConnectionView};
use stockade_sync::{ConnectionStatus, SyncError};
use utoipa::ToSchema;

use crate::api_types::{
    ApiKeyItem, ErrorBody, PageQuery, bad_cursor, decode_cursor, encode_cursor, page_limit,
};
use crate::error::AppError;
use crate::extract::Caller;
use crate::hook_stats::HookCount;
use crate::state::AppState;

type Q = Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>;
type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn bad_query() -> AppError {
    AppError::refused(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "the query takes limit and cursor",
    )
}

/// Webhook deliveries this server process received for a connection since it started.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCounts {
    pub received: u64,
    pub accepted: u64,
    pub refused: u64,
    pub last_at: Option<String>,
    /// When this process began counting.
    pub counted_since: String,
}

/// A connection's push health.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushState {
    /// Failed push rounds in the current streak (0: healthy).
    pub failures: i64,
    pub failing_since: Option<String>,
    /// The marketplace's scrubbed message.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// The marketplace's 429 answers in the last 15 minutes.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitState {
    pub limited: bool,
    pub throttled: i64,
    pub last_throttled_at: Option<String>,
}

/// One marketplace connection (no credential, ever).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionItem {
    pub name: String,
    pub marketplace: String,
    /// `live` or `sandbox`.
    pub endpoint: String,
    pub account: String,
    /// `active`, `paused` or `revoked`.
    pub status: String,
    /// `ok`, `expiring` (the marketplace sent a notice) or `revoked`.
    pub authorization: String,
    pub authorization_notice_at: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub last_poll_at: Option<String>,
    pub webhooks: WebhookCounts,
    pub push: PushState,
    pub rate_limit: RateLimitState,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

fn item(v: &ConnectionView, hooks: HookCount, since_ms: i64) -> ConnectionItem {
    let t = |ms: Option<i64>| ms.map(format_rfc3339_ms);
    ConnectionItem {
        name: v.name.clone(),
        marketplace: v.marketplace.clone(),
        endpoint: v.endpoint.clone(),
        account: v.account.clone(),
        status: v.status.as_str().to_owned(),
        authorization: v.authorization().to_owned(),
        authorization_notice_at: t(v.auth_expiring_ms),
        created_at: format_rfc3339_ms(v.created_at_ms),
        revoked_at: t(v.revoked_at_ms),
        last_poll_at: t(v.last_poll_ms),
        webhooks: WebhookCounts {
            received: hooks.received(),
            accepted: hooks.accepted,
            refused: hooks.refused,
            last_at: t(hooks.last_ms),
            counted_since: format_rfc3339_ms(since_ms),
        },
        push: PushState {
            failures: v.push_failures,
            failing_since: t(v.push_failing_since_ms),
            last_error: v.last_error.clone(),
            last_error_at: t(v.last_error_at_ms),
        },
        rate_limit: RateLimitState {
            limited: v.rate_limited(),
            throttled: v.throttled,
            last_throttled_at: t(v.last_throttled_ms),
        },
    }
}

fn connection_item(state: &AppState, v: &ConnectionView) -> ConnectionItem {
    item(
        v,
        state.hook_stats.get(&v.name),
        state.hook_stats.since_ms(),
    )
}

const CONNECTIONS_CURSOR: &str = "c1";

/// Every connection by name, revoked ones included, with its health.
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", params(PageQuery),
    responses(
        (status = 200, description = "One page of connections, by name", body = ConnectionList),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
    ))]
pub async fn connections(
    State(state): State<AppState>,
    query: Q,
) -> Result<Json<ConnectionList>, AppError> {
    let Query(q) = query.map_err(|_| bad_query())?;
    let limit = page_limit(q.limit) as usize;
    let after = match q.cursor.as_deref() {
        Some(c) => Some(decode_cursor(CONNECTIONS_CURSOR, c)?),
        None => None,
    };
    let now = stockade_core::time::now_ms();
    let mut views = connection_view::views(state.access.store(), now)
        .await
        .map_err(AppError::internal)?;
    views.sort_by(|a, b| a.name.cmp(&b.name));
    let mut page: Vec<&ConnectionView> = views
        .iter()
        .filter(|v| after.as_deref().is_none_or(|a| v.name.as_str() > a))
        .take(limit + 1)
        .collect();
    let more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = more
        .then(|| page.last())
        .flatten()
        .map(|v| encode_cursor(CONNECTIONS_CURSOR, &v.name));
    Ok(Json(ConnectionList {
        connections: page.iter().map(|v| connection_item(&state, v)).collect(),
        next_cursor,
    }))
}

/// A sync refusal in the one error shape; anything else is internal.
fn sync_refusal(e: SyncError, invalid_code: &'static str, invalid_msg: &'static str) -> AppError {
    match e {
        SyncError::UnknownConnection(_) => AppError::refused(
            StatusCode::NOT_FOUND,
            "unknown_connection",
            "there is no connection with this name",
        ),
        SyncError::Invalid(_) | SyncError::Revoked(_) => {
            let status = if invalid_code == "not_confirmed" {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::CONFLICT
            };
            AppError::refused(status, invalid_code, invalid_msg)
        }
        e => AppError::internal(e),
    }
}

async fn set_status(
    state: &AppState,
    caller: &Caller,
    name: &str,
    to: ConnectionStatus,
) -> Result<Json<ConnectionItem>, AppError> {
    let store = state.access.store();
    stockade_sync::connections::set_status(store, name, to, &caller.actor())
        .await
        .map_err(|e| {
            sync_refusal(
                e,
                "revoked",
                "this connection was revoked and purged; it cannot be paused or resumed",
            )
        })?;
    let now = stockade_core::time::now_ms();
    let v = connection_view::view_of(store, name, now)
        .await
        .map_err(AppError::internal)?;
    Ok(Json(connection_item(state, &v)))
}

/// Pause a connection: nothing is pushed or polled until it is resumed (webhooks still
/// record orders). Audited `connection.pause`, as with `stockade connection pause`.
#[utoipa::path(post, path = "/api/v1/connections/{name}/pause", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, description = "Paused (or already paused)", body = ConnectionItem),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "The connection was revoked", body = ErrorBody),
    ))]
pub async fn pause(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionItem>, AppError> {
    set_status(&state, &caller, &name, ConnectionStatus::Paused).await
}

/// Resume a paused connection. Audited `connection.resume`.
#[utoipa::path(post, path = "/api/v1/connections/{name}/resume", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, description = "Active (or already active)", body = ConnectionItem),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "The connection was revoked", body = ErrorBody),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ConnectionItem>, AppError> {
    set_status(&state, &caller, &name, ConnectionStatus::Active).await
}

/// The connection's name again, to confirm a revocation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    confirm: String,
}

/// What a revocation deleted (counts only).
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeAnswer {
    pub connection: String,
    pub marketplace: String,
    pub reason: String,
    pub at: String,
    pub orders: i64,
    pub buyer_fields: i64,
    pub order_lines: i64,
    pub reservations_released: i64,
    pub listings: i64,
    pub credentials: i64,
    pub events: i64,
    pub data_keys_destroyed: i64,
}

/// Revoke a connection and purge its data (orders, buyer fields, listings, credentials;
/// its data key is destroyed). `confirm` must be the connection's name. Audited
/// `connection.purge`, as with `stockade connection revoke`; cannot be undone.
#[utoipa::path(post, path = "/api/v1/connections/{name}/revoke", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "Revoked and purged", body = PurgeAnswer),
        (status = 400, description = "No body, or not {\"confirm\": name}", body = ErrorBody),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 422, description = "`confirm` is not the connection's name; nothing changed", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: JsonBody<RevokeBody>,
) -> Result<Json<PurgeAnswer>, AppError> {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"confirm\" (the connection's name)"))?;
    let r = connection_view::revoke(state.access.vault(), &name, &body.confirm, &caller.actor())
        .await
        .map_err(|e| {
            sync_refusal(
                e,
                "not_confirmed",
                "`confirm` is not the connection's name; nothing was changed",
            )
        })?;
    Ok(Json(PurgeAnswer {
        connection: r.connection,
        marketplace: r.marketplace,
        reason: r.reason,
        at: format_rfc3339_ms(r.at_ms),
        orders: r.orders,
        buyer_fields: r.buyer_fields,
        order_lines: r.order_lines,
        reservations_released: r.reservations_released,
        listings: r.listings,
        credentials: r.credentials,
        events: r.events,
        data_keys_destroyed: r.data_keys_destroyed,
    }))
}

/// A session in force: never its token or its hash. `id` is the public id the audit log
/// shows (`session:<id>`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionItem {
    pub id: String,
    pub user_id: String,
    pub email: String,
    pub role: String,
    /// `active`, or a sign-in step not yet finished (`mfa`, `enroll`).
    pub stage: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

const SESSIONS_CURSOR: &str = "s1";

fn session_item(s: SessionInfo) -> SessionItem {
    SessionItem {
        id: s.id,
        user_id: s.user_id,
        email: s.email,
        role: s.role.as_str().to_owned(),
        stage: s.stage,
        created_at: format_rfc3339_ms(s.created_at_ms),
        last_seen_at: format_rfc3339_ms(s.last_seen_ms),
        expires_at: format_rfc3339_ms(s.expires_at_ms),
    }
}

/// The sessions in force, newest first.
#[utoipa::path(get, path = "/api/v1/security/sessions", tag = "access", params(PageQuery),
    responses(
        (status = 200, description = "One page of sessions, newest first", body = SessionList),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
    ))]
pub async fn sessions(
    State(state): State<AppState>,
    query: Q,
) -> Result<Json<SessionList>, AppError> {
    let Query(q) = query.map_err(|_| bad_query())?;
    let limit = page_limit(q.limit);
    let after = match q.cursor.as_deref() {
        Some(c) => {
            let key = decode_cursor(SESSIONS_CURSOR, c)?;
            let (ms, id) = key.split_once(':').ok_or_else(bad_cursor)?;
            let ms = ms.parse::<i64>().map_err(|_| bad_cursor())?;
            if !stockade_access::valid_session_id(id) {
                return Err(bad_cursor());
            }
            Some((ms, id.to_owned()))
        }
        None => None,
    };
    let mut rows = state.access.sessions_page(after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last())
        .flatten()
        .map(|s| encode_cursor(SESSIONS_CURSOR, &format!("{}:{}", s.created_at_ms, s.id)));
    Ok(Json(SessionList {
        sessions: rows.into_iter().map(session_item).collect(),
        next_cursor,
    }))
}

/// End one session (its browser is signed out at its next request). Audited
/// `session.revoke`.
#[utoipa::path(post, path = "/api/v1/security/sessions/{id}/revoke", tag = "access",
    params(("id" = String, Path, description = "The session's public id (16 hex digits)")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No session in force with this id", body = ErrorBody),
    ))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    match state.access.revoke_session(&id, &caller.actor()).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(AccessError::SessionNotFound) => Err(AppError::refused(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no session in force with this id",
        )),
        Err(e) => Err(e.into()),
    }
}

/// How many sessions were ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsEnded {
    pub ended: i64,
}

/// End every session of a user. Audited `session.end_all`.
#[utoipa::path(post, path = "/api/v1/security/users/{id}/sessions/revoke", tag = "access",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Ended", body = SessionsEnded),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SessionsEnded>, AppError> {
    match state
        .access
        .revoke_user_sessions(&id, &caller.actor())
        .await
    {
        Ok(ended) => Ok(Json(SessionsEnded { ended })),
        Err(AccessError::UserNotFound) => Err(AppError::refused(
            StatusCode::NOT_FOUND,
            "user_not_found",
            "there is no user with this id",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Revoke an API key by its id (as `stockade apikey revoke`); it is refused from its next
/// request. Audited `apikey.revoke`.
#[utoipa::path(post, path = "/api/v1/apikeys/{id}/revoke", tag = "access",
    params(("id" = String, Path, description = "The key's id (from /api/v1/apikeys)")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyItem),
        (status = 404, description = "No active key with this id", body = ErrorBody),
    ))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyItem>, AppError> {
    let not_found = || {
        AppError::refused(
            StatusCode::NOT_FOUND,
            "api_key_not_found",
            "no active API key with this id",
        )
    };
    // By id only: a name could equal another key's id.
    let known = state
        .access
        .api_keys()
        .await?
        .into_iter()
        .any(|k| k.id == id && k.revoked_at_ms.is_none());
    if !known {
        return Err(not_found());
    }
    let k = match state.access.revoke_api_key(&id, &caller.actor()).await {
        Ok(k) => k,
        Err(AccessError::ApiKeyNotFound(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(ApiKeyItem {
        id: k.id,
        name: k.name,
        role: k.role.as_str().to_owned(),
        env: k.env,
        created_at: format_rfc3339_ms(k.created_at_ms),
        expires_at: k.expires_at_ms.map(format_rfc3339_ms),
        last_used_at: k.last_used_at_ms.map(format_rfc3339_ms),
        revoked_at: k.revoked_at_ms.map(format_rfc3339_ms),
    }))
}

// What was typed is not printed.
impl std::fmt::Debug for RevokeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevokeBody").finish_non_exhaustive()
    }
}
