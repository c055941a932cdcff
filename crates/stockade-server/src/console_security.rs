//! The console's Security page: users with their role and MFA state, API keys (never the
//! key or its hash) with revoke, the bans in force with lift and add, and the sessions in
//! force (never the token or its hash: the public id of the audit rows) with revoke one
//! and revoke all of a user's.
//!
//! Invariants: the page is open to roles holding `ViewBans` (administrators; auditors
//! read the bans); each section and each form is rendered only for the permission its
//! action's route needs (users: `ManageUsers`; keys: `ManageApiKeys`; ban forms:
//! `ManageBans`; sessions: `IncidentResponse`), and the route table checks the same
//! permissions. Every action is the `stockade-access` function the CLI and the API call
//! (`add_ban`, `remove_ban`, `revoke_api_key`, `revoke_session`, `revoke_user_sessions`),
//! audited as the acting user. A ban's address must parse, must not be unspecified,
//! multicast or the caller's own, and its duration is one of [`BAN_DURATIONS`]. A refusal
//! re-renders the page with the message in the section, in the user's language, and
//! changes nothing.

use std::net::IpAddr;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use stockade_access::{AccessError, ApiKeyInfo, BanInfo, Permission, SessionInfo, UserInfo};

use crate::console::Chrome;
use crate::error::{AppError, render};
use crate::extract::{Caller, ClientIp};
use crate::i18n::Lang;
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

/// The ban lengths an administrator may choose: code, seconds (`None`: until lifted).
pub const BAN_DURATIONS: &[(&str, Option<i64>)] = &[
    ("1h", Some(3_600)),
    ("1d", Some(86_400)),
    ("7d", Some(7 * 86_400)),
    ("30d", Some(30 * 86_400)),
    ("permanent", None),
];

/// The most sessions the page lists (the API pages through all of them).
const SESSION_ROWS: i64 = 200;

impl Chrome {
    pub fn can_users(&self) -> bool {
        self.role.can(Permission::ManageUsers)
    }
    pub fn can_keys(&self) -> bool {
        self.role.can(Permission::ManageApiKeys)
    }
    pub fn can_ban(&self) -> bool {
        self.role.can(Permission::ManageBans)
    }
    pub fn can_sessions(&self) -> bool {
        self.role.can(Permission::IncidentResponse)
    }
    /// A ban's end (seconds) as local time, or "until lifted".
    pub fn ban_until(&self, until_s: &Option<i64>) -> String {
        match until_s {
            Some(s) => self.time(&s.saturating_mul(1000)),
            None => self.t("sec.until_lifted").to_owned(),
        }
    }
    pub fn ban_since(&self, b: &BanInfo) -> String {
        self.time(&b.since_s.saturating_mul(1000))
    }
    /// Why a ban was imposed, in words: by hand, or after repeated failures.
    pub fn ban_reason(&self, b: &BanInfo) -> String {
        match b.reason.as_str() {
            "manual" => self.t("sec.r_manual").to_owned(),
            r if r.starts_with("auto") => self.t("sec.r_auto").to_owned(),
            r => r.to_owned(),
        }
    }
    pub fn ban_jail(&self, b: &BanInfo) -> &'static str {
        match b.jail() {
            Some(j) => j.as_str(),
            None => self.t("sec.all_routes"),
        }
    }
}

/// Which section a notice or a refusal belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Keys,
    Bans,
    Sessions,
    Incidents,
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage {
    c: Chrome,
    users: Vec<UserInfo>,
    keys: Vec<ApiKeyInfo>,
    bans: Vec<BanInfo>,
    sessions: Vec<SessionInfo>,
    done: Option<&'static str>,
    refused: Option<(Section, String)>,
    durations: &'static [(&'static str, Option<i64>)],
    /// Incident response: controls in force, incidents, the form to open one.
    incidents: crate::console_incidents::IncidentPanel,
    severities: [stockade_incident::Severity; 4],
}

impl SecurityPage {
    fn refusal(&self, section: Section) -> Option<&str> {
        self.refused
            .as_ref()
            .filter(|(s, _)| *s == section)
            .map(|(_, m)| m.as_str())
    }
    fn duration_key(&self, code: &str) -> &'static str {
        match code {
            "1h" => "sec.d_1h",
            "1d" => "sec.d_1d",
            "7d" => "sec.d_7d",
            "30d" => "sec.d_30d",
            _ => "sec.d_permanent",
        }
    }
}

async fn page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    done: Option<&'static str>,
    refused: Option<(Section, String)>,
) -> Result<SecurityPage, AppError> {
    let c = Chrome::new(state, caller, headers, "security", "/security".into());
    let a = &state.access;
    let users = if c.can_users() {
        a.users().await?
    } else {
        Vec::new()
    };
    let keys = if c.can_keys() {
        a.api_keys().await?
    } else {
        Vec::new()
    };
    let sessions = if c.can_sessions() {
        a.sessions_page(None, SESSION_ROWS).await?
    } else {
        Vec::new()
    };
    let incidents = crate::console_incidents::panel(state, &c).await?;
    Ok(SecurityPage {
        users,
        keys,
        bans: a.bans(false).await?,
        sessions,
        done,
        refused,
        durations: BAN_DURATIONS,
        incidents,
        severities: stockade_incident::Severity::ALL,
        c,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct SecurityQuery {
    #[serde(default)]
    done: String,
}

fn done_key(done: &str) -> Option<&'static str> {
    match done {
        "banned" => Some("sec.done_banned"),
        "lifted" => Some("sec.done_lifted"),
        "key" => Some("sec.done_key"),
        "session" => Some("sec.done_session"),
        "sessions" => Some("sec.done_sessions"),
        _ => None,
    }
}

pub async fn security(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<SecurityQuery>,
) -> PageResult {
    let p = page(&state, &caller, &headers, done_key(&q.done), None).await?;
    Ok(render(StatusCode::OK, &p))
}

/// The outcome of an action: where to go, or a refusal (section, catalogue key).
type Outcome = Result<&'static str, (Section, &'static str)>;

async fn finish(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    outcome: Outcome,
) -> PageResult {
    match outcome {
        Ok(done) => Ok(Redirect::to(&format!("/security?done={done}")).into_response()),
        Err((section, key)) => {
            let msg = Lang::for_caller(&caller, &headers).t(key).to_owned();
            let p = page(&state, &caller, &headers, None, Some((section, msg))).await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
    }
}

/// The page again (422) with `msg` shown in `section` (a refusal from another module's
/// form on this page); nothing was changed.
pub(crate) async fn refused_page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    section: Section,
    msg: String,
) -> PageResult {
    let p = page(state, caller, headers, None, Some((section, msg))).await?;
    Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p))
}

/// Check a ban's address and duration code; the caller's own address is refused (it
/// would lock the administrator out).
pub fn check_ban(
    ip: &str,
    duration: &str,
    own: IpAddr,
) -> Result<(IpAddr, Option<i64>), &'static str> {
    let ip: IpAddr = ip.trim().parse().map_err(|_| "sec.err_ip")?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err("sec.err_ip");
    }
    if ip == own {
        return Err("sec.err_own_ip");
    }
    let (_, secs) = BAN_DURATIONS
        .iter()
        .find(|(code, _)| *code == duration)
        .ok_or("sec.err_duration")?;
    Ok((ip, *secs))
}

#[derive(Debug, Deserialize)]
pub struct BanForm {
    #[serde(default)]
    ip: String,
    #[serde(default)]
    duration: String,
}

pub async fn add_ban(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(ClientIp(own)): Extension<ClientIp>,
    headers: HeaderMap,
    Form(form): Form<BanForm>,
) -> PageResult {
    let outcome = match check_ban(&form.ip, &form.duration, own) {
        Ok((ip, secs)) => {
            state.access.add_ban(ip, secs, &caller.actor()).await?;
            Ok("banned")
        }
        Err(key) => Err((Section::Bans, key)),
    };
    finish(state, caller, headers, outcome).await
}

pub async fn lift_ban(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BanForm>,
) -> PageResult {
    let outcome = match form.ip.trim().parse::<IpAddr>() {
        Err(_) => Err((Section::Bans, "sec.err_ip")),
        Ok(ip) => match state.access.remove_ban(ip, &caller.actor()).await {
            Ok(()) => Ok("lifted"),
            Err(AccessError::NotBanned(_)) => Err((Section::Bans, "sec.err_not_banned")),
            Err(e) => return Err(e.into()),
        },
    };
    finish(state, caller, headers, outcome).await
}

#[derive(Debug, Deserialize)]
pub struct IdForm {
    #[serde(default)]
    id: String,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<IdForm>,
) -> PageResult {
    let id = form.id.trim();
    // By id only (names could collide with another key's id).
    let known = state
        .access
        .api_keys()
        .await?
        .into_iter()
        .any(|k| k.id == id && k.revoked_at_ms.is_none());
    let outcome = if !known {
        Err((Section::Keys, "sec.err_key"))
    } else {
        match state.access.revoke_api_key(id, &caller.actor()).await {
            Ok(_) => Ok("key"),
            Err(AccessError::ApiKeyNotFound(_)) => Err((Section::Keys, "sec.err_key")),
            Err(e) => return Err(e.into()),
        }
    };
    finish(state, caller, headers, outcome).await
}

pub async fn revoke_session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<IdForm>,
) -> PageResult {
    let outcome = match state
        .access
        .revoke_session(form.id.trim(), &caller.actor())
        .await
    {
        Ok(()) => Ok("session"),
        Err(AccessError::SessionNotFound) => Err((Section::Sessions, "sec.err_session")),
        Err(e) => return Err(e.into()),
    };
    finish(state, caller, headers, outcome).await
}

pub async fn revoke_user_sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<IdForm>,
) -> PageResult {
    let outcome = match state
        .access
        .revoke_user_sessions(form.id.trim(), &caller.actor())
        .await
    {
        Ok(_) => Ok("sessions"),
        Err(AccessError::UserNotFound) => Err((Section::Sessions, "sec.err_user")),
        Err(e) => return Err(e.into()),
    };
    finish(state, caller, headers, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_addresses_and_durations_are_checked() {
        let own: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            check_ban(" 203.0.113.7 ", "1d", own),
            Ok(("203.0.113.7".parse().unwrap(), Some(86_400)))
        );
        assert_eq!(
            check_ban("2001:db8::1", "permanent", own),
            Ok(("2001:db8::1".parse().unwrap(), None))
        );
        assert_eq!(
            check_ban("203.0.113.7", "9999d", own),
            Err("sec.err_duration")
        );
        assert_eq!(check_ban("not an ip", "1h", own), Err("sec.err_ip"));
        assert_eq!(check_ban("0.0.0.0", "1h", own), Err("sec.err_ip"));
        assert_eq!(check_ban("224.0.0.1", "1h", own), Err("sec.err_ip"));
        assert_eq!(check_ban("198.51.100.1", "1h", own), Err("sec.err_own_ip"));
    }
}
