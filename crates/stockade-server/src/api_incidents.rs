//! The JSON API of incident response: list and read incidents (with their notification
//! deadlines, controls in force and timeline), open one or a drill, and every action of
//! `stockade incident` — revoke, isolate, release, lockdown, note, notify, close — plus
//! the report for marketplaces and clients.
//!
//! Invariants: the same `stockade_incident::IncidentKit` calls as the CLI and the
//! console, as the caller (audited, on the timeline, alerted); a refusal answers 422 with
//! the kit's message and changes nothing (the kit audits the refused attempt); an unknown
//! incident answers 404. Answers carry no secret and no personal data: free text was
//! checked when it was written.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use stockade_core::time::format_rfc3339_ms;
use stockade_incident::{
    ActionOutcome, Control, Deadline, DeadlineState, Incident, NewIncident, Party, Severity,
};
use utoipa::ToSchema;

use crate::api_types::ErrorBody;
use crate::console_incidents::{
    incident_error, isolate_target, kit, parse_id, release_target, report_response, revoke_target,
};
use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// One incident (or drill).
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentItem {
    pub id: i64,
    pub title: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// A drill exercises every step without revoking or locking anything real.
    pub drill: bool,
    /// `open` or `closed`.
    pub state: String,
    pub detected_at: String,
    pub opened_at: String,
    pub opened_by: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    pub root_cause: Option<String>,
    pub deadlines: Vec<DeadlineItem>,
}

/// A party's notification deadline (24 h from detection).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadlineItem {
    /// `amazon`, `tiktok`, `ebay` or `clients`.
    pub party: String,
    pub due_at: String,
    /// `pending`, `overdue`, `met`, `late` or `drill`.
    pub state: String,
    /// Time left (pending) or past the deadline (overdue, late), in seconds.
    pub seconds: Option<i64>,
    pub notified_at: Option<String>,
    /// Where the deadline comes from.
    pub basis: String,
}

/// An isolation or the lockdown in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct ControlItem {
    /// `lockdown`, `workflow` or `connection`.
    pub kind: String,
    /// The workflow or connection (empty for the lockdown).
    pub name: String,
    /// A drill's control is recorded, never enforced.
    pub drill: bool,
    pub incident_id: i64,
    pub since: String,
    pub actor: String,
}

/// One step on an incident's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineItem {
    pub at: String,
    pub actor: String,
    pub step: String,
    pub target: String,
    pub detail: String,
    pub affected: Option<i64>,
}

/// Incidents newest first, and the controls in force on this instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<IncidentItem>,
    pub controls: Vec<ControlItem>,
}

/// One incident with its controls in force and its timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    pub incident: IncidentItem,
    pub controls: Vec<ControlItem>,
    pub timeline: Vec<TimelineItem>,
}

/// What an action did (in a drill: would have done).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionAnswer {
    pub incident_id: i64,
    pub drill: bool,
    pub step: String,
    pub target: String,
    /// How many things it touched (in a drill: would have touched).
    pub affected: i64,
    pub summary: String,
}

fn item(i: &Incident, deadlines: &[Deadline]) -> IncidentItem {
    IncidentItem {
        id: i.id,
        title: i.title.clone(),
        severity: i.severity.clone(),
        drill: i.drill,
        state: if i.is_open() { "open" } else { "closed" }.to_owned(),
        detected_at: format_rfc3339_ms(i.detected_at_ms),
        opened_at: format_rfc3339_ms(i.opened_at_ms),
        opened_by: i.opened_by.clone(),
        closed_at: i.closed_at_ms.map(format_rfc3339_ms),
        closed_by: i.closed_by.clone(),
        root_cause: i.root_cause.clone(),
        deadlines: deadlines.iter().map(deadline).collect(),
    }
}

fn deadline(d: &Deadline) -> DeadlineItem {
    let (state, seconds, notified) = match d.state {
        DeadlineState::Pending { left_ms } => ("pending", Some(left_ms / 1000), None),
        DeadlineState::Overdue { by_ms } => ("overdue", Some(by_ms / 1000), None),
        DeadlineState::Met { notified_at_ms } => ("met", None, Some(notified_at_ms)),
        DeadlineState::Late {
            notified_at_ms,
            by_ms,
        } => ("late", Some(by_ms / 1000), Some(notified_at_ms)),
        DeadlineState::Drill => ("drill", None, None),
    };
    DeadlineItem {
        party: d.party.as_str().to_owned(),
        due_at: format_rfc3339_ms(d.due_at_ms),
        state: state.to_owned(),
        seconds,
        notified_at: notified.map(format_rfc3339_ms),
        basis: d.basis.to_owned(),
    }
}

fn control(c: &Control) -> ControlItem {
    ControlItem {
        kind: c.kind.clone(),
        name: c.name.clone(),
        drill: c.drill,
        incident_id: c.incident_id,
        since: format_rfc3339_ms(c.since_ms),
        actor: c.actor.clone(),
    }
}

fn answer(o: ActionOutcome) -> Json<ActionAnswer> {
    Json(ActionAnswer {
        incident_id: o.incident_id,
        drill: o.drill,
        step: o.step.to_owned(),
        target: o.target,
        affected: o.affected,
        summary: o.summary,
    })
}

fn bad_target(m: String) -> AppError {
    AppError::refused(StatusCode::BAD_REQUEST, "invalid_request", m)
}

/// Every incident (newest first) with its deadlines, and the controls in force.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", operation_id = "incident_list",
    responses((status = 200, description = "Incidents and controls", body = IncidentList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<IncidentList>, AppError> {
    let store = state.access.store();
    let incidents = stockade_incident::list(store)
        .await
        .map_err(incident_error)?
        .iter()
        .map(|s| item(&s.incident, &s.deadlines))
        .collect();
    let controls = stockade_incident::controls(store)
        .await
        .map_err(incident_error)?
        .iter()
        .map(control)
        .collect();
    Ok(Json(IncidentList {
        incidents,
        controls,
    }))
}

/// One incident: deadlines, controls in force, timeline.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents", operation_id = "incident_show",
    params(("id" = i64, Path, description = "The incident's number")),
    responses(
        (status = 200, description = "The incident", body = IncidentDetail),
        (status = 404, description = "No such incident", body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetail>, AppError> {
    let id = parse_id(&id)?;
    let v = stockade_incident::show(state.access.store(), id)
        .await
        .map_err(incident_error)?;
    Ok(Json(IncidentDetail {
        incident: item(&v.incident, &v.deadlines),
        controls: v.controls.iter().map(control).collect(),
        timeline: v
            .timeline
            .iter()
            .map(|e| TimelineItem {
                at: format_rfc3339_ms(e.at_ms),
                actor: e.actor.clone(),
                step: e.step.clone(),
                target: e.target.clone(),
                detail: e.detail.clone(),
                affected: e.affected,
            })
            .collect(),
    }))
}

/// A new incident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// 4–120 characters; nothing shaped like an email, a phone number or a token.
    title: String,
    /// `low`, `medium`, `high` or `critical`.
    severity: String,
    /// Exercise every step without revoking or locking anything real.
    #[serde(default)]
    drill: bool,
    /// When it was detected (RFC 3339); the deadlines count from here. Default: now.
    #[serde(default)]
    detected_at: Option<String>,
}

/// Open an incident (or a drill) and alert the security channel. Audited
/// `incident.open`, as with `stockade incident open`.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", operation_id = "incident_open",
    request_body = OpenBody,
    responses(
        (status = 201, description = "Opened", body = IncidentItem),
        (status = 400, description = "Not {title, severity}", body = ErrorBody),
        (status = 422, description = "Refused (title, severity, time); nothing written", body = ErrorBody),
    ))]
pub async fn open(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: JsonBody<OpenBody>,
) -> Result<(StatusCode, Json<IncidentItem>), AppError> {
    let Json(body) = body.map_err(|_| AppError::bad_body("\"title\" and \"severity\""))?;
    let severity = body.severity.parse::<Severity>().map_err(incident_error)?;
    let detected_at_ms = match body.detected_at.as_deref() {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    AppError::refused(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "refused",
                        "detected_at must be an RFC 3339 time such as 2026-01-31T08:00:00Z",
                    )
                })?
                .timestamp_millis(),
        ),
    };
    let new = NewIncident {
        title: body.title,
        severity,
        drill: body.drill,
        detected_at_ms,
    };
    let inc = kit(&state)
        .open(&caller.actor(), new)
        .await
        .map_err(incident_error)?;
    let v = stockade_incident::show(state.access.store(), inc.id)
        .await
        .map_err(incident_error)?;
    Ok((StatusCode::CREATED, Json(item(&v.incident, &v.deadlines))))
}

/// What to revoke, isolate or release.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    /// revoke: `credential`, `connection`, `api_keys`, `sessions`; isolate: `workflow`,
    /// `connection`; release: `workflow`, `connection`, `lockdown`.
    kind: String,
    /// A name or id, or `all` (API keys, sessions); empty for the lockdown.
    #[serde(default)]
    target: String,
}

/// Revoke at once, on every process: a credential, a connection's marketplace tokens (its
/// orders stay), API keys (`all` or one) or sessions (`all` or one user's). In a drill,
/// counts what would be revoked and revokes nothing. Audited `incident.revoke`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/revoke", tag = "incidents", operation_id = "incident_revoke",
    params(("id" = i64, Path, description = "The incident's number")),
    request_body = TargetBody,
    responses(
        (status = 200, description = "Revoked", body = ActionAnswer),
        (status = 400, description = "Not {kind, target}", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 422, description = "Refused (unknown name, closed incident); nothing changed", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<TargetBody>,
) -> Result<Json<ActionAnswer>, AppError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(|_| AppError::bad_body("\"kind\" and \"target\""))?;
    let t = revoke_target(&b.kind, &b.target).map_err(bad_target)?;
    let o = kit(&state)
        .revoke(&caller.actor(), Some(id), t)
        .await
        .map_err(incident_error)?;
    Ok(answer(o))
}

/// Isolate a workflow or a connection until released: no executions, no egress, its
/// webhooks answered 503. Audited `incident.isolate`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/isolate", tag = "incidents", operation_id = "incident_isolate",
    params(("id" = i64, Path, description = "The incident's number")),
    request_body = TargetBody,
    responses(
        (status = 200, description = "Isolated", body = ActionAnswer),
        (status = 400, description = "Not {kind, target}", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 422, description = "Refused (unknown name, already isolated); nothing changed", body = ErrorBody),
    ))]
pub async fn isolate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<TargetBody>,
) -> Result<Json<ActionAnswer>, AppError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(|_| AppError::bad_body("\"kind\" and \"target\""))?;
    let t = isolate_target(&b.kind, &b.target).map_err(bad_target)?;
    let o = kit(&state)
        .isolate(&caller.actor(), Some(id), t)
        .await
        .map_err(incident_error)?;
    Ok(answer(o))
}

/// Release an isolated workflow or connection, or lift the lockdown. Audited
/// `incident.release`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/release", tag = "incidents", operation_id = "incident_release",
    params(("id" = i64, Path, description = "The incident's number")),
    request_body = TargetBody,
    responses(
        (status = 200, description = "Released", body = ActionAnswer),
        (status = 400, description = "Not {kind, target}", body = ErrorBody),
        (status = 422, description = "Refused (not isolated, not locked down); nothing changed", body = ErrorBody),
    ))]
pub async fn release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<TargetBody>,
) -> Result<Json<ActionAnswer>, AppError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(|_| AppError::bad_body("\"kind\" and \"target\""))?;
    let t = release_target(&b.kind, &b.target).map_err(bad_target)?;
    let o = kit(&state)
        .release(&caller.actor(), Some(id), t)
        .await
        .map_err(incident_error)?;
    Ok(answer(o))
}

/// Lock the instance down: read-only, no egress but the alert channels, only
/// administrators sign in; marketplace webhooks are still received and stored. Audited
/// `incident.lockdown`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/lockdown", tag = "incidents", operation_id = "incident_lockdown",
    params(("id" = i64, Path, description = "The incident's number")),
    responses(
        (status = 200, description = "Locked down", body = ActionAnswer),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 422, description = "Refused (locked down already, closed incident); nothing changed", body = ErrorBody),
    ))]
pub async fn lockdown(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ActionAnswer>, AppError> {
    let id = parse_id(&id)?;
    let o = kit(&state)
        .lockdown(&caller.actor(), Some(id))
        .await
        .map_err(incident_error)?;
    Ok(answer(o))
}

/// A note, a notice or a root cause.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    /// 4–1000 characters (a notice's note: 500); nothing shaped like an email, a phone
    /// number or a token.
    text: String,
    /// For a notice: `amazon`, `tiktok`, `ebay` or `clients`.
    #[serde(default)]
    party: Option<String>,
}

/// What happened, written to the timeline. Audited `incident.note`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/notes", tag = "incidents", operation_id = "incident_note",
    params(("id" = i64, Path, description = "The incident's number")),
    request_body = TextBody,
    responses(
        (status = 204, description = "Written"),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 422, description = "Refused text; nothing written", body = ErrorBody),
    ))]
pub async fn note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<TextBody>,
) -> Result<StatusCode, AppError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(|_| AppError::bad_body("\"text\""))?;
    kit(&state)
        .note(&caller.actor(), id, &b.text)
        .await
        .map_err(incident_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Record that a party (a marketplace or the clients) was notified, stopping its
/// deadline. Audited `incident.notify`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/notify", tag = "incidents", operation_id = "incident_notify",
    params(("id" = i64, Path, description = "The incident's number")),
    request_body = TextBody,
    responses(
        (status = 204, description = "Recorded"),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 422, description = "Refused (party, text); nothing written", body = ErrorBody),
    ))]
pub async fn notify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<TextBody>,
) -> Result<StatusCode, AppError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(|_| AppError::bad_body("\"party\" and \"text\""))?;
    let party = b
        .party
        .as_deref()
        .unwrap_or_default()
        .parse::<Party>()
        .map_err(incident_error)?;
    kit(&state)
        .notify(&caller.actor(), id, party, &b.text)
        .await
        .map_err(incident_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Close with the root cause (`text`). Audited `incident.close`.
#[utoipa::path(post, path = "/api/v1/incidents/{id}/close", tag = "incidents", operation_id = "incident_close",
    params(("id" = i64, Path, description = "The incident's number")),
    request_body = TextBody,
    responses(
        (status = 200, description = "Closed", body = IncidentItem),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 422, description = "Refused (closed already, text); nothing changed", body = ErrorBody),
    ))]
pub async fn close(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<TextBody>,
) -> Result<Json<IncidentItem>, AppError> {
    let id = parse_id(&id)?;
    let Json(b) = body.map_err(|_| AppError::bad_body("\"text\" (the root cause)"))?;
    kit(&state)
        .close(&caller.actor(), id, &b.text)
        .await
        .map_err(incident_error)?;
    let v = stockade_incident::show(state.access.store(), id)
        .await
        .map_err(incident_error)?;
    Ok(Json(item(&v.incident, &v.deadlines)))
}

/// The report's format.
#[derive(Debug, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `md` (default) or `json`.
    #[serde(default)]
    format: String,
}

/// The report for marketplaces and clients (timeline, actions, deadlines met or not),
/// as Markdown or JSON; its export is recorded on the timeline (audited
/// `incident.report`).
#[utoipa::path(post, path = "/api/v1/incidents/{id}/report", tag = "incidents", operation_id = "incident_report",
    params(("id" = i64, Path, description = "The incident's number"), ReportQuery),
    responses(
        (status = 200, description = "The report (text/markdown or application/json)"),
        (status = 400, description = "Unknown format", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
    ))]
pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let id = parse_id(&id)?;
    let Query(q) = q.map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the query takes format=md|json",
        )
    })?;
    report_response(&state, &caller, id, &q.format).await
}
