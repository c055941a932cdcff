//! Incident response in the console: the Security page's "Incident response" section
//! (the lockdown and isolations in force, the incidents with their notification
//! deadlines, a form to open one or a drill) and an incident's own page
//! (`/incidents/{id}`: deadlines, controls, timeline; revoke, isolate, release, lockdown,
//! note, notify, close, and the report for marketplaces and clients).
//!
//! Invariants: every action is the `stockade_incident::IncidentKit` function the CLI
//! (`stockade incident …`) and the API call, as the acting user — the same audit rows,
//! timeline entries and alerts. Reading is open to roles holding `ViewAudit`
//! (administrators and auditors); the forms are rendered only for `IncidentResponse`
//! (administrators) and the route table refuses the others anyway. Every route lives
//! under `/incidents`, which a lockdown leaves open to administrators. A refusal
//! re-renders the page (422) with the library's message and changes nothing (the kit
//! audits the refused attempt). Free text (title, notes, root cause) is checked by the
//! kit: nothing shaped like an email, a phone number or a token is stored.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use stockade_access::Permission;
use stockade_incident::{
    Control, DeadlineState, IncidentError, IncidentKit, IncidentSummary, IncidentView, Isolate,
    NewIncident, Party, Release, RevokeTarget, Scope, Severity,
};

use crate::console::Chrome;
use crate::console_security::Section;
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::state::AppState;

type PageResult = Result<Response, AppError>;

/// The most incidents the Security page lists (newest first).
const LISTED: usize = 20;

impl Chrome {
    /// Whether the caller may act on incidents (the forms).
    pub fn can_incidents(&self) -> bool {
        self.role.can(Permission::IncidentResponse)
    }
    /// Whether the caller may read incidents (auditors too).
    pub fn can_read_incidents(&self) -> bool {
        self.role.can(Permission::ViewAudit)
    }
    /// A deadline's state in words, in the console's language and zone.
    pub fn deadline_text(&self, s: &DeadlineState) -> String {
        let span = |ms: i64| self.span(ms);
        match *s {
            DeadlineState::Pending { left_ms } => {
                format!("{} {}", span(left_ms), self.t("inc.left"))
            }
            DeadlineState::Overdue { by_ms } => {
                format!("{} {}", self.t("inc.overdue_by"), span(by_ms))
            }
            DeadlineState::Met { notified_at_ms } => {
                format!(
                    "{} {}",
                    self.t("inc.notified_at"),
                    self.time(&notified_at_ms)
                )
            }
            DeadlineState::Late {
                notified_at_ms,
                by_ms,
            } => format!(
                "{} {} ({} {})",
                self.t("inc.notified_at"),
                self.time(&notified_at_ms),
                self.t("inc.late_by"),
                span(by_ms)
            ),
            DeadlineState::Drill => self.t("inc.drill_nothing_due").to_owned(),
        }
    }
    /// `23 h 12 m`, `2 d 3 h`, `5 m` in the console's language.
    pub fn span(&self, ms: i64) -> String {
        let m = ms.max(0) / 60_000;
        let (d, h, m) = (m / 1440, (m / 60) % 24, m % 60);
        let (ud, uh, um) = (self.t("inc.u_d"), self.t("inc.u_h"), self.t("inc.u_m"));
        if d > 0 {
            format!("{d} {ud} {h} {uh}")
        } else if h > 0 {
            format!("{h} {uh} {m} {um}")
        } else {
            format!("{m} {um}")
        }
    }
    /// The badge class of a deadline's state.
    pub fn deadline_class(&self, s: &DeadlineState) -> &'static str {
        match s {
            DeadlineState::Met { .. } | DeadlineState::Drill => "ok",
            DeadlineState::Pending { .. } => "warn",
            DeadlineState::Overdue { .. } | DeadlineState::Late { .. } => "bad",
        }
    }
    /// A party's name (marketplaces keep their own names).
    pub fn party_name(&self, p: &Party) -> &'static str {
        match p {
            Party::Clients => self.t("inc.p_clients"),
            other => other.label(),
        }
    }
    /// Whether a party's deadline rests on Amazon's rule applied as the strictest known.
    pub fn party_assumed(&self, p: &Party) -> bool {
        matches!(p, Party::TikTok | Party::Ebay)
    }
    /// A control in words: "Lockdown", "Workflow NAME", "Connection NAME".
    pub fn control_text(&self, c: &Control) -> String {
        match c.kind.as_str() {
            "lockdown" => self.t("inc.k_lockdown").to_owned(),
            "workflow" => format!("{} {}", self.t("inc.k_workflow"), c.name),
            "connection" => format!("{} {}", self.t("inc.k_connection"), c.name),
            other => format!("{other} {}", c.name),
        }
    }
    /// A timeline step's name in the console's language.
    pub fn step_name(&self, step: &str) -> &'static str {
        match step {
            "open" => self.t("inc.s_open"),
            "revoke" => self.t("inc.s_revoke"),
            "isolate" => self.t("inc.s_isolate"),
            "release" => self.t("inc.s_release"),
            "lockdown" => self.t("inc.s_lockdown"),
            "note" => self.t("inc.s_note"),
            "notify" => self.t("inc.s_notify"),
            "close" => self.t("inc.s_close"),
            "report" => self.t("inc.s_report"),
            _ => self.t("inc.s_other"),
        }
    }
    /// A severity in the console's language.
    pub fn severity_name(&self, s: &str) -> &'static str {
        match s {
            "low" => self.t("inc.sev_low"),
            "medium" => self.t("inc.sev_medium"),
            "high" => self.t("inc.sev_high"),
            _ => self.t("inc.sev_critical"),
        }
    }
}

/// What the Security page's incident section shows.
#[derive(Debug, Default)]
pub struct IncidentPanel {
    /// Enforced controls (drill rows are recorded, never enforced, and not shown here).
    pub controls: Vec<Control>,
    pub incidents: Vec<IncidentSummary>,
    pub more: bool,
}

impl IncidentPanel {
    pub fn locked_down(&self) -> Option<&Control> {
        self.controls.iter().find(|c| c.kind == "lockdown")
    }
    pub fn isolations(&self) -> impl Iterator<Item = &Control> {
        self.controls.iter().filter(|c| c.kind != "lockdown")
    }
}

/// The Security page's incident section, read now (empty for roles that may not read it).
pub async fn panel(state: &AppState, c: &Chrome) -> Result<IncidentPanel, AppError> {
    if !c.can_read_incidents() {
        return Ok(IncidentPanel::default());
    }
    let store = state.access.store();
    let controls = stockade_incident::controls(store)
        .await
        .map_err(incident_error)?
        .into_iter()
        .filter(|c| !c.drill)
        .collect();
    let mut incidents = stockade_incident::list(store)
        .await
        .map_err(incident_error)?;
    let more = incidents.len() > LISTED;
    incidents.truncate(LISTED);
    Ok(IncidentPanel {
        controls,
        incidents,
        more,
    })
}

/// A kit error as the console and the API answer it: refusals and unknown names are the
/// caller's (422 / 404, the kit's message, which never repeats free text); anything else
/// is logged and answered 500.
pub fn incident_error(e: IncidentError) -> AppError {
    match e {
        IncidentError::Refused(m) => {
            AppError::refused(StatusCode::UNPROCESSABLE_ENTITY, "refused", m)
        }
        IncidentError::NotFound(m) => AppError::refused(StatusCode::NOT_FOUND, "not_found", m),
        other => AppError::internal(other),
    }
}

/// The kit of this server (over its access service).
pub fn kit(state: &AppState) -> IncidentKit {
    IncidentKit::new(state.access.clone())
}

/// Revoke's `kind` and `target` as the kit takes them.
pub fn revoke_target(kind: &str, target: &str) -> Result<RevokeTarget, String> {
    let target = target.trim();
    if target.is_empty() {
        return Err("name what to revoke (a name, an id, or `all`)".into());
    }
    let scope = || {
        if target.eq_ignore_ascii_case("all") {
            Scope::All
        } else {
            Scope::One(target.to_owned())
        }
    };
    match kind {
        "credential" => Ok(RevokeTarget::Credential(target.to_owned())),
        "connection" => Ok(RevokeTarget::Connection(target.to_owned())),
        "api_keys" => Ok(RevokeTarget::ApiKeys(scope())),
        "sessions" => Ok(RevokeTarget::Sessions(scope())),
        _ => Err("revoke takes credential, connection, api_keys or sessions".into()),
    }
}

/// Isolate's `kind` and `name`.
pub fn isolate_target(kind: &str, name: &str) -> Result<Isolate, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name the workflow or connection to isolate".into());
    }
    match kind {
        "workflow" => Ok(Isolate::Workflow(name.to_owned())),
        "connection" => Ok(Isolate::Connection(name.to_owned())),
        _ => Err("isolate takes workflow or connection".into()),
    }
}

/// Release's `kind` and `name` (`lockdown` takes no name).
pub fn release_target(kind: &str, name: &str) -> Result<Release, String> {
    let name = name.trim();
    match kind {
        "lockdown" => Ok(Release::Lockdown),
        "workflow" | "connection" if name.is_empty() => {
            Err("name the workflow or connection to release".into())
        }
        "workflow" => Ok(Release::Workflow(name.to_owned())),
        "connection" => Ok(Release::Connection(name.to_owned())),
        _ => Err("release takes workflow, connection or lockdown".into()),
    }
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    c: Chrome,
    v: IncidentView,
    done: Option<&'static str>,
    refused: Option<String>,
    parties: [Party; 4],
}

impl IncidentPage {
    fn is_open(&self) -> bool {
        self.v.incident.is_open()
    }
    /// Whether this incident holds the lockdown (the button is then not offered).
    fn holds_lockdown(&self) -> bool {
        self.v.controls.iter().any(|c| c.kind == "lockdown")
    }
}

async fn incident_page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: i64,
    done: Option<&'static str>,
    refused: Option<String>,
) -> Result<IncidentPage, AppError> {
    let c = Chrome::new(
        state,
        caller,
        headers,
        "security",
        format!("/incidents/{id}"),
    );
    let v = stockade_incident::show(state.access.store(), id)
        .await
        .map_err(incident_error)?;
    Ok(IncidentPage {
        c,
        v,
        done,
        refused,
        parties: Party::ALL,
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

fn done_key(done: &str) -> Option<&'static str> {
    match done {
        "opened" => Some("inc.done_opened"),
        "revoke" => Some("inc.done_revoke"),
        "isolate" => Some("inc.done_isolate"),
        "release" => Some("inc.done_release"),
        "lockdown" => Some("inc.done_lockdown"),
        "note" => Some("inc.done_note"),
        "notify" => Some("inc.done_notify"),
        "close" => Some("inc.done_close"),
        _ => None,
    }
}

/// `GET /incidents/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<DoneQuery>,
) -> PageResult {
    let id = parse_id(&id)?;
    let p = incident_page(&state, &caller, &headers, id, done_key(&q.done), None).await?;
    Ok(render(StatusCode::OK, &p))
}

/// An incident's number from the path (404 for anything that is not one).
pub(crate) fn parse_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        AppError::refused(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such incident: incidents are numbered from 1",
        )
    })
}

/// Where an action ends: its page with a notice, or the page again with the refusal.
async fn finish(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    id: i64,
    outcome: Result<&'static str, String>,
) -> PageResult {
    match outcome {
        Ok(done) => Ok(Redirect::to(&format!("/incidents/{id}?done={done}")).into_response()),
        Err(msg) => {
            let p = incident_page(&state, &caller, &headers, id, None, Some(msg)).await?;
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &p))
        }
    }
}

/// A kit result as a page outcome: a refusal is shown; anything else fails the request.
fn outcome<T>(
    r: Result<T, IncidentError>,
    done: &'static str,
) -> Result<Result<&'static str, String>, AppError> {
    match r {
        Ok(_) => Ok(Ok(done)),
        Err(IncidentError::Refused(m) | IncidentError::NotFound(m)) => Ok(Err(m)),
        Err(e) => Err(incident_error(e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct OpenForm {
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    drill: Option<String>,
}

/// `POST /incidents`: open an incident (or a drill); its page follows.
pub async fn open(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<OpenForm>,
) -> PageResult {
    let opened = match form.severity.parse::<Severity>() {
        Ok(severity) => {
            let new = NewIncident {
                title: form.title,
                severity,
                drill: form.drill.is_some(),
                detected_at_ms: None,
            };
            kit(&state).open(&caller.actor(), new).await
        }
        Err(e) => Err(e),
    };
    match opened {
        Ok(inc) => Ok(Redirect::to(&format!("/incidents/{}?done=opened", inc.id)).into_response()),
        Err(IncidentError::Refused(m) | IncidentError::NotFound(m)) => {
            crate::console_security::refused_page(&state, &caller, &headers, Section::Incidents, m)
                .await
        }
        Err(e) => Err(incident_error(e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct TargetForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    target: String,
}

/// `POST /incidents/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TargetForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = match revoke_target(&form.kind, &form.target) {
        Ok(t) => outcome(
            kit(&state).revoke(&caller.actor(), Some(id), t).await,
            "revoke",
        )?,
        Err(m) => Err(m),
    };
    finish(state, caller, headers, id, result).await
}

/// `POST /incidents/{id}/isolate`.
pub async fn isolate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TargetForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = match isolate_target(&form.kind, &form.target) {
        Ok(t) => outcome(
            kit(&state).isolate(&caller.actor(), Some(id), t).await,
            "isolate",
        )?,
        Err(m) => Err(m),
    };
    finish(state, caller, headers, id, result).await
}

/// `POST /incidents/{id}/release`.
pub async fn release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TargetForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = match release_target(&form.kind, &form.target) {
        Ok(t) => outcome(
            kit(&state).release(&caller.actor(), Some(id), t).await,
            "release",
        )?,
        Err(m) => Err(m),
    };
    finish(state, caller, headers, id, result).await
}

/// `POST /incidents/{id}/lockdown`.
pub async fn lockdown(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = outcome(
        kit(&state).lockdown(&caller.actor(), Some(id)).await,
        "lockdown",
    )?;
    finish(state, caller, headers, id, result).await
}

#[derive(Debug, Deserialize)]
pub struct TextForm {
    #[serde(default)]
    text: String,
    #[serde(default)]
    party: String,
}

/// `POST /incidents/{id}/note`.
pub async fn note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TextForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = outcome(
        kit(&state).note(&caller.actor(), id, &form.text).await,
        "note",
    )?;
    finish(state, caller, headers, id, result).await
}

/// `POST /incidents/{id}/notify`: record that a party was notified.
pub async fn notify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TextForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = match form.party.parse::<Party>() {
        Ok(p) => outcome(
            kit(&state).notify(&caller.actor(), id, p, &form.text).await,
            "notify",
        )?,
        Err(e) => Err(e.to_string()),
    };
    finish(state, caller, headers, id, result).await
}

/// `POST /incidents/{id}/close`: with the root cause.
pub async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<TextForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    let result = outcome(
        kit(&state).close(&caller.actor(), id, &form.text).await,
        "close",
    )?;
    finish(state, caller, headers, id, result).await
}

#[derive(Debug, Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    format: String,
}

/// `POST /incidents/{id}/report`: the report for marketplaces and clients as a download
/// (Markdown, or JSON), its export recorded on the timeline.
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Form(form): Form<ReportForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    report_response(&state, &caller, id, &form.format).await
}

/// The report of incident `id` in `format` (`md` or `json`), its export recorded.
pub async fn report_response(
    state: &AppState,
    caller: &Caller,
    id: i64,
    format: &str,
) -> PageResult {
    let format = match format {
        "" | "md" => "md",
        "json" => "json",
        _ => {
            return Err(AppError::refused(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the report's format is md or json",
            ));
        }
    };
    let store = state.access.store();
    let v = stockade_incident::show(store, id)
        .await
        .map_err(incident_error)?;
    kit(state)
        .record_report(&caller.actor(), id, format)
        .await
        .map_err(incident_error)?;
    let (body, kind) = if format == "json" {
        let text = serde_json::to_string_pretty(&stockade_incident::report::json(&v))
            .map_err(AppError::internal)?;
        (text, "application/json")
    } else {
        let zone = Some(state.console.timezone);
        (
            stockade_incident::report::markdown(&v, zone),
            "text/markdown; charset=utf-8",
        )
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    let name = format!("attachment; filename=\"incident-{id}.{format}\"");
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_map_to_the_kits_targets() {
        assert_eq!(
            revoke_target("api_keys", " all "),
            Ok(RevokeTarget::ApiKeys(Scope::All))
        );
        assert_eq!(
            revoke_target("sessions", "ops@example.com"),
            Ok(RevokeTarget::Sessions(Scope::One("ops@example.com".into())))
        );
        assert_eq!(
            revoke_target("credential", "ebay-token"),
            Ok(RevokeTarget::Credential("ebay-token".into()))
        );
        assert!(revoke_target("users", "x").is_err());
        assert!(revoke_target("connection", "  ").is_err());
        assert_eq!(
            isolate_target("workflow", "restock"),
            Ok(Isolate::Workflow("restock".into()))
        );
        assert!(isolate_target("lockdown", "").is_err());
        assert_eq!(release_target("lockdown", ""), Ok(Release::Lockdown));
        assert_eq!(
            release_target("connection", "tt-1"),
            Ok(Release::Connection("tt-1".into()))
        );
        assert!(release_target("workflow", "").is_err());
        assert!(parse_id("0").is_err() && parse_id("x").is_err() && parse_id("7").is_ok());
    }
}
