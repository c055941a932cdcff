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
//!
//! The lists of workflows and executions are paged by an opaque cursor
//! (`?limit=&cursor=`, answering `next_cursor`, `null` on the last page): keyset paging
//! on the list's own order (name; newest first by queue time then id), so rows added
//! meanwhile never repeat or skip a row already paged past.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stockade_core::time::format_rfc3339_ms;
use stockade_store::JobState;
use stockade_workflows::operate;
use stockade_workflows::registry::{self, RegistryError, VersionRow};
use stockade_workflows::runs::{self, RunError, RunRow};
use utoipa::{IntoParams, ToSchema};

use crate::api_types::{ErrorBody, PageQuery, decode_cursor, encode_cursor, page_limit};
use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;
use crate::workflow_view as view;

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;
type ApiResult<T> = Result<Json<T>, AppError>;

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

pub fn time(ms: Option<i64>) -> Option<String> {
    ms.map(format_rfc3339_ms)
}

fn bad_query(expected: &'static str) -> AppError {
    refused(StatusCode::BAD_REQUEST, "invalid_request", expected)
}

/// A stored version of a workflow with its lint result and approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionItem {
    pub version: i64,
    /// `pending`, `active`, `rejected`, `superseded`…
    pub state: String,
    pub sha256: String,
    pub lint_passed: bool,
    pub lint_problems: i64,
    pub applied_by: String,
    pub applied_at: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
}

pub fn version_item(v: &VersionRow) -> VersionItem {
    VersionItem {
        version: v.version,
        state: v.state.as_str().to_owned(),
        sha256: v.content_sha256.clone(),
        lint_passed: v.lint_passed,
        lint_problems: v.lint_problems,
        applied_by: v.applied_by.clone(),
        applied_at: time(Some(v.applied_at_ms)),
        approved_by: v.approved_by.clone(),
        approved_at: time(v.approved_at_ms),
    }
}

/// An execution (a run of a workflow version): state, attempts, times, stored error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionItem {
    pub id: String,
    pub workflow: String,
    pub version: Option<i64>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub took_ms: Option<i64>,
    pub error: Option<String>,
}

fn execution_item(r: &RunRow) -> ExecutionItem {
    ExecutionItem {
        id: r.id.clone(),
        workflow: r.workflow.clone(),
        version: r.version,
        state: r.state.as_str().to_owned(),
        attempts: r.attempts,
        max_attempts: r.max_attempts,
        queued_at: time(Some(r.created_at_ms)),
        started_at: time(r.started_at_ms),
        finished_at: time(r.finished_at_ms),
        took_ms: r.took_ms(),
        error: r.error.clone(),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowItem {
    pub name: String,
    pub enabled: bool,
    pub active_version: Option<i64>,
    pub latest_version: i64,
    /// What starts it: `manual`, `schedule`, `webhook` or `event`.
    pub trigger: String,
    /// The cron pattern, webhook path or event kind (empty for manual).
    pub trigger_detail: String,
    /// The newest version's state: `pending` waits for a second user's approval.
    pub latest_state: String,
    /// The newest execution, if any.
    pub last_run: Option<LastRun>,
}

/// A workflow's newest execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastRun {
    pub id: String,
    pub state: String,
    pub queued_at: Option<String>,
}

/// The list item of a workflow summary (shared with the page).
pub fn workflow_item(s: view::Summary) -> WorkflowItem {
    WorkflowItem {
        name: s.row.name,
        enabled: s.row.enabled,
        active_version: s.row.active_version,
        latest_version: s.row.latest_version,
        trigger: s.trigger.to_owned(),
        trigger_detail: s.trigger_detail,
        latest_state: s.latest_state,
        last_run: s.last_run.map(|(id, state, at)| LastRun {
            id,
            state: state.as_str().to_owned(),
            queued_at: time(Some(at)),
        }),
    }
}

/// One page of workflows by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPage {
    pub workflows: Vec<WorkflowItem>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

const WORKFLOW_CURSOR: &str = "w1";

/// GET /api/v1/workflows?limit=&cursor=
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", params(PageQuery),
    responses(
        (status = 200, description = "One page of workflows, by name", body = WorkflowPage),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<WorkflowPage> {
    let Query(q) = query.map_err(|_| bad_query("the query takes limit and cursor"))?;
    let limit = page_limit(q.limit);
    let after = match q.cursor.as_deref() {
        Some(c) => decode_cursor(WORKFLOW_CURSOR, c)?,
        None => String::new(),
    };
    let mut rows = registry::workflows_after(state.access.store(), &after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|w| encode_cursor(WORKFLOW_CURSOR, &w.name)))
        .flatten();
    let workflows = view::summaries(state.access.store(), rows)
        .await?
        .into_iter()
        .map(workflow_item)
        .collect();
    Ok(Json(WorkflowPage {
        workflows,
        next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub name: String,
    pub versions: Vec<VersionItem>,
}

/// GET /api/v1/workflows/{name}/versions
#[utoipa::path(get, path = "/api/v1/workflows/{name}/versions", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "The workflow's versions, oldest first", body = VersionList),
        (status = 404, description = "No such workflow", body = ErrorBody),
    ))]
pub async fn versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<VersionList> {
    let rows = registry::versions(state.access.store(), &name).await?;
    let versions = rows.iter().map(version_item).collect();
    Ok(Json(VersionList { name, versions }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Approved {
    pub name: String,
    pub version: VersionItem,
}

/// POST /api/v1/workflows/{name}/versions/{v}/approve
#[utoipa::path(post, path = "/api/v1/workflows/{name}/versions/{version}/approve", tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name"),
        ("version" = i64, Path, description = "The version to approve"),
    ),
    responses(
        (status = 200, description = "Approved (and active)", body = Approved),
        (status = 403, description = "Four eyes: the author cannot approve, nor an API key", body = ErrorBody),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
        (status = 409, description = "Not approvable in its state", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, v)): Path<(String, i64)>,
) -> ApiResult<Approved> {
    let row = registry::approve(state.access.store(), &caller.actor(), &name, v).await?;
    Ok(Json(Approved {
        name,
        version: version_item(&row),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The workflow's inputs (an object; default `{}`).
    #[serde(default)]
    inputs: Option<Value>,
}

// The inputs may hold business data: never printed.
impl std::fmt::Debug for RunBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunBody { .. }")
    }
}

/// A queued execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    pub execution: String,
    pub version: i64,
    /// On a rerun: the execution it reruns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<String>,
}

/// POST /api/v1/workflows/{name}/run  `{"inputs": {...}}`
#[utoipa::path(post, path = "/api/v1/workflows/{name}/run", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    request_body = RunBody,
    responses(
        (status = 202, description = "Queued", body = Started),
        (status = 400, description = "Bad body or inputs", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "Not runnable (no active version, disabled)", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: JsonBody<RunBody>,
) -> Result<(StatusCode, Json<Started>), AppError> {
    let Json(body) = body.map_err(|e| bad_body(&e, "an optional \"inputs\" object"))?;
    let inputs = body.inputs.unwrap_or_else(|| json!({}));
    let started =
        runs::enqueue_manual(state.access.store(), &caller.actor(), &name, inputs).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Started {
            execution: started.execution,
            version: started.version,
            rerun_of: None,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this workflow's executions.
    #[serde(default)]
    workflow: Option<String>,
    /// Only executions in this state: queued, running, succeeded, failed, cancelled.
    #[serde(default)]
    status: Option<String>,
    /// Rows per page, 1 to 1000 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `next_cursor` of the previous page; absent for the first page.
    #[serde(default)]
    cursor: Option<String>,
}

/// One page of executions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionPage {
    pub executions: Vec<ExecutionItem>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// GET /api/v1/executions?workflow=&status=&limit=&cursor=
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", params(ListQuery),
    responses(
        (status = 200, description = "One page of executions, newest first", body = ExecutionPage),
        (status = 400, description = "Bad filter, limit or cursor", body = ErrorBody),
    ))]
pub async fn executions(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<ExecutionPage> {
    let Query(q) =
        query.map_err(|_| bad_query("the query takes workflow, status, limit and cursor"))?;
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
    let limit = page_limit(q.limit);
    let (rows, next_cursor) = view::execution_page(
        state.access.store(),
        q.workflow.as_deref(),
        status,
        limit,
        q.cursor.as_deref(),
    )
    .await?;
    Ok(Json(ExecutionPage {
        executions: rows.iter().map(execution_item).collect(),
        next_cursor,
    }))
}

/// A step attempt in an execution's timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepItem {
    pub step: String,
    pub attempt: i64,
    /// `succeeded`, `failed`, `running` or `interrupted`.
    pub status: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub took_ms: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionDetail {
    pub execution: ExecutionItem,
    pub steps: Vec<StepItem>,
}

/// GET /api/v1/executions/{id}: the execution and its step timeline (no outputs).
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "The execution and its step timeline", body = ExecutionDetail),
        (status = 404, description = "No such execution", body = ErrorBody),
    ))]
pub async fn execution(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ExecutionDetail> {
    let (row, steps) = view::execution(state.access.store(), &id).await?;
    let timeline = steps
        .into_iter()
        .map(|s| StepItem {
            step: s.step,
            attempt: s.attempt,
            status: s.status.to_owned(),
            started_at: time(Some(s.started_at_ms)),
            finished_at: time(s.finished_at_ms),
            took_ms: s.took_ms,
            error: s.error,
        })
        .collect();
    Ok(Json(ExecutionDetail {
        execution: execution_item(&row),
        steps: timeline,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cancelled {
    pub execution: String,
    /// Always `cancelled`.
    pub state: String,
    /// The state it was in.
    pub was: String,
}

/// POST /api/v1/executions/{id}/cancel
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions",
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "Cancelled", body = Cancelled),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Cancelled> {
    let was = operate::cancel(state.access.store(), &caller.actor(), &id).await?;
    Ok(Json(Cancelled {
        execution: id,
        state: "cancelled".into(),
        was: was.as_str().to_owned(),
    }))
}

#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// Rerun from this step (the steps before it keep their outputs); default: all.
    #[serde(default)]
    from_step: Option<String>,
}

/// POST /api/v1/executions/{id}/rerun  `{"from_step": "S"}` (optional)
#[utoipa::path(post, path = "/api/v1/executions/{id}/rerun", tag = "executions",
    params(("id" = String, Path, description = "The execution's id")),
    request_body = RerunBody,
    responses(
        (status = 202, description = "Queued", body = Started),
        (status = 400, description = "Bad body or step", body = ErrorBody),
        (status = 404, description = "No such execution", body = ErrorBody),
        (status = 409, description = "Not rerunnable", body = ErrorBody),
    ))]
pub async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: JsonBody<RerunBody>,
) -> Result<(StatusCode, Json<Started>), AppError> {
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
        Json(Started {
            execution: started.execution,
            version: started.version,
            rerun_of: Some(id),
        }),
    ))
}

// --- The review reads and the rejection ---

/// POST /api/v1/workflows/{name}/versions/{v}/reject
#[utoipa::path(post, path = "/api/v1/workflows/{name}/versions/{version}/reject", tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name"),
        ("version" = i64, Path, description = "The pending version to reject"),
    ),
    responses(
        (status = 200, description = "Rejected: kept for the record, never runs", body = Approved),
        (status = 403, description = "Not a user or an API key", body = ErrorBody),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
    ))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, v)): Path<(String, i64)>,
) -> ApiResult<Approved> {
    let row = registry::reject(state.access.store(), &caller.actor(), &name, v).await?;
    Ok(Json(Approved {
        name,
        version: version_item(&row),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The older version.
    from: i64,
    /// The newer version.
    to: i64,
}

/// One line of a version diff.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffItem {
    /// `" "` unchanged, `"-"` removed, `"+"` added.
    pub op: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiffAnswer {
    pub name: String,
    pub from: i64,
    pub to: i64,
    /// Whether the two versions differ at all.
    pub changed: bool,
    /// Every line of both versions once, in order.
    pub lines: Vec<DiffItem>,
}

/// GET /api/v1/workflows/{name}/diff?from=&to=: the line diff of two versions' YAML.
#[utoipa::path(get, path = "/api/v1/workflows/{name}/diff", tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name"), DiffQuery),
    responses(
        (status = 200, description = "The line diff (as `stockade workflow diff`)", body = DiffAnswer),
        (status = 400, description = "from and to are required version numbers", body = ErrorBody),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
    ))]
pub async fn diff(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<DiffAnswer> {
    let Query(q) = query.map_err(|_| bad_query("the query takes from and to (version numbers)"))?;
    let lines = view::diff(state.access.store(), &name, q.from, q.to).await?;
    Ok(Json(DiffAnswer {
        changed: lines.iter().any(|l| l.mark != ' '),
        lines: lines
            .into_iter()
            .map(|l| DiffItem {
                op: l.mark.to_string(),
                text: l.text,
            })
            .collect(),
        name,
        from: q.from,
        to: q.to,
    }))
}

/// One lint problem.
#[derive(Debug, Serialize, ToSchema)]
pub struct LintItem {
    pub line: u64,
    pub col: u64,
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LintAnswer {
    pub name: String,
    pub version: i64,
    pub passed: bool,
    pub problems: Vec<LintItem>,
}

/// GET /api/v1/workflows/{name}/versions/{v}/lint: the version's lint problems.
#[utoipa::path(get, path = "/api/v1/workflows/{name}/versions/{version}/lint", tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name"),
        ("version" = i64, Path, description = "The version"),
    ),
    responses(
        (status = 200, description = "The lint problems (empty when it passed)", body = LintAnswer),
        (status = 404, description = "No such workflow or version", body = ErrorBody),
    ))]
pub async fn lint(
    State(state): State<AppState>,
    Path((name, v)): Path<(String, i64)>,
) -> ApiResult<LintAnswer> {
    let problems = view::lint_version(state.access.store(), &name, v).await?;
    Ok(Json(LintAnswer {
        passed: problems.is_empty(),
        problems: problems
            .into_iter()
            .map(|p| LintItem {
                line: p.line,
                col: p.col,
                rule: p.rule,
                message: p.message,
            })
            .collect(),
        name,
        version: v,
    }))
}
