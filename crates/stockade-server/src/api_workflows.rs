//! The workflow API for the console: workflows and their versions, approval (four eyes:
//! the registry refuses the author), manual runs, executions with their step timelines,
//! cancel and rerun. Each route needs one permission (routes.rs): `ViewWorkflows` for
//! reads, `RunWorkflows` for run/cancel/rerun, `ApproveWorkflows` for approval.
//!
//! Invariants: the work is done by `stockade_workflows` (`registry`, `runs`, `operate`),
//! the same code as the CLI, under the caller's actor (user or API key), so every change
//! is audited as that caller. A refused request writes nothing. Answers hold ids, names,
//! states, times, attempts and stored (scrubbed) errors, never a step's output, an input
//! value or a secret. Bodies are bounded by the router's body limit (64 KiB).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use stockade_core::time::format_rfc3339_ms;
use stockade_store::JobState;
use stockade_workflows::operate;
use stockade_workflows::registry::{self, RegistryError, VersionRow};
use stockade_workflows::runs::{self, RunError, RunRow};

use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;
type ApiResult = Result<Json<Value>, AppError>;

fn refused(status: StatusCode, code: &'static str, e: impl std::fmt::Display) -> AppError {
    AppError::refused(status, code, e.to_string())
}

impl From<RegistryError> for AppError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownWorkflow(_) | RegistryError::UnknownVersion { .. } => {
                refused(StatusCode::NOT_FOUND, "not_found", e)
            }
            RegistryError::SelfApproval { .. } | RegistryError::NotAPerson(_) => {
                refused(StatusCode::FORBIDDEN, "four_eyes", e)
            }
            RegistryError::Store(s) => s.into(),
            other => refused(StatusCode::CONFLICT, "conflict", other),
        }
    }
}

impl From<RunError> for AppError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::UnknownRun(_) => refused(StatusCode::NOT_FOUND, "not_found", e),
            RunError::NotRunnable(_) | RunError::Refused(_) => {
                refused(StatusCode::CONFLICT, "conflict", e)
            }
            RunError::BadInputs(_) | RunError::BadStep(_) => {
                refused(StatusCode::BAD_REQUEST, "invalid_request", e)
            }
            RunError::Registry(r) => r.into(),
            RunError::Store(s) => s.into(),
        }
    }
}

/// A body that did not parse: 413 past the router's limit, else 400 (never echoed).
fn bad_body(e: &axum::extract::rejection::JsonRejection, expected: &str) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is larger than the server's limit for JSON bodies (64 KiB)",
        );
    }
    AppError::bad_body(expected)
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |t| Value::String(format_rfc3339_ms(t)))
}

fn version_json(v: &VersionRow) -> Value {
    json!({
        "version": v.version, "state": v.state.as_str(), "sha256": v.content_sha256,
        "lint_passed": v.lint_passed, "lint_problems": v.lint_problems,
        "applied_by": v.applied_by, "applied_at": time(Some(v.applied_at_ms)),
        "approved_by": v.approved_by, "approved_at": time(v.approved_at_ms),
    })
}

fn run_json(r: &RunRow) -> Value {
    json!({
        "id": r.id, "workflow": r.workflow, "version": r.version, "state": r.state.as_str(),
        "attempts": r.attempts, "max_attempts": r.max_attempts,
        "queued_at": time(Some(r.created_at_ms)), "started_at": time(r.started_at_ms),
        "finished_at": time(r.finished_at_ms), "took_ms": r.took_ms(), "error": r.error,
    })
}

/// GET /api/v1/workflows
pub async fn list(State(state): State<AppState>) -> ApiResult {
    let rows = registry::workflows(state.access.store()).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|w| {
            json!({"name": w.name, "enabled": w.enabled, "active_version": w.active_version,
                   "latest_version": w.latest_version})
        })
        .collect();
    Ok(Json(json!({ "workflows": items })))
}

/// GET /api/v1/workflows/{name}/versions
pub async fn versions(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let rows = registry::versions(state.access.store(), &name).await?;
    let items: Vec<Value> = rows.iter().map(version_json).collect();
    Ok(Json(json!({ "name": name, "versions": items })))
}

/// POST /api/v1/workflows/{name}/versions/{v}/approve
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, v)): Path<(String, i64)>,
) -> ApiResult {
    let row = registry::approve(state.access.store(), &caller.actor(), &name, v).await?;
    Ok(Json(json!({ "name": name, "version": version_json(&row) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    inputs: Option<Value>,
}

// The inputs may hold business data: never printed.
impl std::fmt::Debug for RunBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunBody { .. }")
    }
}

/// POST /api/v1/workflows/{name}/run  `{"inputs": {...}}`
pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: JsonBody<RunBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let Json(body) = body.map_err(|e| bad_body(&e, "an optional \"inputs\" object"))?;
    let inputs = body.inputs.unwrap_or_else(|| json!({}));
    let started =
        runs::enqueue_manual(state.access.store(), &caller.actor(), &name, inputs).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "execution": started.execution, "version": started.version })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

/// GET /api/v1/executions?workflow=&status=&limit=
pub async fn executions(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|_| {
        refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the query takes workflow, status and limit",
        )
    })?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<JobState>().map_err(|_| {
                refused(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "status is one of queued, running, succeeded, failed, cancelled",
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let rows = runs::list(state.access.store(), q.workflow.as_deref(), status, limit).await?;
    let items: Vec<Value> = rows.iter().map(run_json).collect();
    Ok(Json(json!({ "executions": items })))
}

/// GET /api/v1/executions/{id}: the execution and its step timeline (no outputs).
pub async fn execution(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let (row, steps) = runs::show(state.access.store(), &id).await?;
    let timeline: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "step": s.step_id, "attempt": s.attempt,
                "status": runs::step_label(row.state, &steps, i),
                "started_at": time(Some(s.started_at_ms)), "finished_at": time(s.finished_at_ms),
                "took_ms": s.finished_at_ms.map(|f| f - s.started_at_ms), "error": s.error,
            })
        })
        .collect();
    Ok(Json(
        json!({ "execution": run_json(&row), "steps": timeline }),
    ))
}

/// POST /api/v1/executions/{id}/cancel
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult {
    let was = operate::cancel(state.access.store(), &caller.actor(), &id).await?;
    Ok(Json(
        json!({ "execution": id, "state": "cancelled", "was": was.as_str() }),
    ))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    #[serde(default)]
    from_step: Option<String>,
}

/// POST /api/v1/executions/{id}/rerun  `{"from_step": "S"}` (optional)
pub async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<RerunBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let Json(body) = body.map_err(|e| bad_body(&e, "an optional \"from_step\""))?;
    let started = operate::rerun(
        state.access.store(),
        &caller.actor(),
        &id,
        body.from_step.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "execution": started.execution, "version": started.version, "rerun_of": id })),
    ))
}
