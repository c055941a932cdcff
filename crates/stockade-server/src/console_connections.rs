//! The console's Connections page: every marketplace connection with its status,
//! authorization, the webhooks this process received, the last poll, push failures and
//! the marketplace's rate-limit answers; pause, resume and revoke for those who may
//! manage sync (revoke asks for the connection's name, typed).
//!
//! Invariants: the data comes from `stockade_sync::connection_view` (no SQL here) and the
//! webhook counters of [`crate::hook_stats`]; pause and resume are
//! `stockade_sync::connections::set_status`, revoke is `stockade_sync::connection_view::revoke`
//! — the same functions and audit rows as `stockade connection pause|resume|revoke`, as
//! the acting user. A refusal (unknown name, revoked, a typed name that does not match)
//! re-renders the page with the message next to the connection, in the user's language,
//! and changes nothing. The forms are rendered only for roles holding `ManageSync`; the
//! route table refuses the others anyway.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use stockade_access::Permission;
use stockade_sync::connection_view::{self, ConnectionView};
use stockade_sync::{ConnectionStatus, SyncError};

use crate::console::{Chrome, encode};
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::hook_stats::HookCount;
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

impl Chrome {
    /// Whether the caller may pause, resume and revoke connections.
    pub fn can_manage_sync(&self) -> bool {
        self.role.can(Permission::ManageSync)
    }
    /// Whether the Security page is open to the caller.
    pub fn can_security(&self) -> bool {
        self.role.can(Permission::ViewBans)
    }
}

/// One row of the page.
#[derive(Debug)]
pub struct Row {
    pub v: ConnectionView,
    pub hooks: HookCount,
}

impl Row {
    pub fn status_key(&self) -> &'static str {
        match self.v.status {
            ConnectionStatus::Active => "conn.s_active",
            ConnectionStatus::Paused => "conn.s_paused",
            ConnectionStatus::Revoked => "conn.s_revoked",
        }
    }
    pub fn status_class(&self) -> &'static str {
        match self.v.status {
            ConnectionStatus::Active => "badge ok",
            ConnectionStatus::Paused => "badge warn",
            ConnectionStatus::Revoked => "badge bad",
        }
    }
    pub fn auth_key(&self) -> &'static str {
        match self.v.authorization() {
            "revoked" => "conn.a_revoked",
            "expiring" => "conn.a_expiring",
            _ => "conn.a_ok",
        }
    }
    pub fn live(&self) -> bool {
        self.v.status != ConnectionStatus::Revoked
    }
    pub fn paused(&self) -> bool {
        self.v.status == ConnectionStatus::Paused
    }
    pub fn row_class(&self) -> &'static str {
        if self.v.push_failures > 0 || self.v.rate_limited() {
            "problem"
        } else {
            ""
        }
    }
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ConnectionsPage {
    c: Chrome,
    rows: Vec<Row>,
    /// When this process began counting webhooks.
    hooks_since: i64,
    /// What was just done, as a catalogue key, and to which connection.
    done: Option<(&'static str, String)>,
    /// A refusal: the connection and the message (already in the user's language).
    refused: Option<(String, String)>,
}

impl ConnectionsPage {
    /// A refusal about no listed connection (an unknown name): shown above the table.
    fn orphan_refusal(&self) -> Option<&str> {
        self.refused
            .as_ref()
            .filter(|(n, _)| !self.rows.iter().any(|r| r.live() && r.v.name == *n))
            .map(|(_, m)| m.as_str())
    }
    fn refusal_for(&self, name: &str) -> Option<&str> {
        self.refused
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ConnectionsQuery {
    #[serde(default)]
    done: String,
    #[serde(default)]
    name: String,
}

fn done_key(done: &str) -> Option<&'static str> {
    match done {
        "paused" => Some("conn.done_paused"),
        "resumed" => Some("conn.done_resumed"),
        "revoked" => Some("conn.done_revoked"),
        _ => None,
    }
}

async fn rows(state: &AppState) -> Result<Vec<Row>, AppError> {
    let now = stockade_core::time::now_ms();
    let views = connection_view::views(state.access.store(), now)
        .await
        .map_err(AppError::internal)?;
    Ok(views
        .into_iter()
        .map(|v| Row {
            hooks: state.hook_stats.get(&v.name),
            v,
        })
        .collect())
}

async fn page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    done: Option<(&'static str, String)>,
    refused: Option<(String, String)>,
) -> Result<ConnectionsPage, AppError> {
    let c = Chrome::new(state, caller, headers, "connections", "/connections".into());
    Ok(ConnectionsPage {
        c,
        rows: rows(state).await?,
        hooks_since: state.hook_stats.since_ms(),
        done,
        refused,
    })
}

pub async fn connections(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<ConnectionsQuery>,
) -> PageResult {
    let done = done_key(&q.done).map(|k| (k, q.name));
    let p = page(&state, &caller, &headers, done, None).await?;
    Ok(render(StatusCode::OK, &p))
}

#[derive(Deserialize)]
pub struct ConnectionForm {
    #[serde(default)]
    name: String,
    /// The name typed to confirm a revocation.
    #[serde(default)]
    confirm: String,
}

/// What an operator asked for.
#[derive(Debug, Clone, Copy)]
enum Act {
    Pause,
    Resume,
    Revoke,
}

/// A refusal as its catalogue key; anything else is internal.
fn refusal_key(act: Act, e: &SyncError) -> Option<&'static str> {
    match (act, e) {
        (_, SyncError::UnknownConnection(_)) => Some("conn.err_unknown"),
        (Act::Revoke, SyncError::Invalid(_)) => Some("conn.err_confirm"),
        (_, SyncError::Invalid(_) | SyncError::Revoked(_)) => Some("conn.err_revoked"),
        _ => None,
    }
}

async fn act(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    form: ConnectionForm,
    act: Act,
) -> PageResult {
    let store = state.access.store();
    let actor = caller.actor();
    let name = form.name.trim();
    let result = match act {
        Act::Pause => {
            stockade_sync::connections::set_status(store, name, ConnectionStatus::Paused, &actor)
                .await
                .map(|_| "paused")
        }
        Act::Resume => {
            stockade_sync::connections::set_status(store, name, ConnectionStatus::Active, &actor)
                .await
                .map(|_| "resumed")
        }
        Act::Revoke => connection_view::revoke(state.access.vault(), name, &form.confirm, &actor)
            .await
            .map(|_| "revoked"),
    };
    match result {
        Ok(done) => Ok(
            Redirect::to(&format!("/connections?done={done}&name={}", encode(name)))
                .into_response(),
        ),
        Err(e) => match refusal_key(act, &e) {
            Some(key) => {
                let lang = crate::i18n::Lang::for_caller(&caller, &headers);
                let refused = Some((name.to_owned(), lang.t(key).to_owned()));
                let p = page(&state, &caller, &headers, None, refused).await?;
                Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p))
            }
            None => Err(AppError::internal(e)),
        },
    }
}

pub async fn pause(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<ConnectionForm>,
) -> PageResult {
    act(state, caller, headers, form, Act::Pause).await
}

pub async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<ConnectionForm>,
) -> PageResult {
    act(state, caller, headers, form, Act::Resume).await
}

pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<ConnectionForm>,
) -> PageResult {
    act(state, caller, headers, form, Act::Revoke).await
}

// What was typed to confirm is not printed.
impl std::fmt::Debug for ConnectionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionForm")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_own_messages() {
        let unknown = SyncError::UnknownConnection("x".into());
        let invalid = SyncError::Invalid("x".into());
        assert_eq!(refusal_key(Act::Pause, &unknown), Some("conn.err_unknown"));
        assert_eq!(refusal_key(Act::Revoke, &invalid), Some("conn.err_confirm"));
        assert_eq!(refusal_key(Act::Resume, &invalid), Some("conn.err_revoked"));
        assert_eq!(refusal_key(Act::Pause, &SyncError::ShuttingDown), None);
        assert_eq!(done_key("paused"), Some("conn.done_paused"));
        assert_eq!(done_key("<script>"), None);
    }
}
