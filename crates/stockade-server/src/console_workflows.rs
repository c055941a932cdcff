//! The console's Workflows and Executions pages: the workflow list (trigger, active
//! version, enabled, approval state, last run), one workflow (its versions, the line
//! diff of two versions, a version's lint problems, Approve/Reject for a second user,
//! Run for a manual workflow), the executions list (filtered by workflow and status,
//! paged by cursor) and one execution's step timeline with Cancel and Re-run.
//!
//! Invariants: reads come from [`crate::workflow_view`] (shared with the JSON API) and
//! actions call the same `stockade_workflows` functions as the API and the CLI
//! (`registry::approve`/`reject`, `runs::enqueue_manual`, `operate::cancel`/`rerun`)
//! under the caller's actor, so each is audited as that caller and a refusal writes
//! nothing. A refusal (four eyes, wrong state) is shown inline on the page it came
//! from, in the user's language, with its status code. Permissions are the route
//! table's; a form is rendered only for a role that may post it. No step output or
//! input value is ever shown.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use stockade_access::Permission;
use stockade_store::JobState;
use stockade_workflows::operate;
use stockade_workflows::registry::{self, VersionRow};
use stockade_workflows::runs::{self, RunRow};

use crate::console::{Chrome, encode};
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::i18n::Lang;
use crate::state::AppState;
use crate::workflow_view::{self as view, DiffLine, LintLine, StepView, Summary};

type PageResult = Result<Response, AppError>;

/// Rows per page on the lists.
const PAGE_ROWS: i64 = 50;

/// The text of a refusal in the user's language, or the error itself when it is not a
/// refusal an action can meet (it then becomes the error page).
fn refusal(lang: Lang, e: AppError) -> Result<(StatusCode, String), AppError> {
    match &e {
        AppError::Refused { status, code, .. } => {
            let key = match *code {
                "four_eyes" => "wf.r_four_eyes",
                "conflict" => "wf.r_conflict",
                "not_found" => "wf.r_not_found",
                "invalid_request" => "wf.r_invalid",
                _ => return Err(e),
            };
            Ok((*status, lang.t(key).to_owned()))
        }
        _ => Err(e),
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "succeeded" | "active" => "ok",
        "failed" | "rejected" | "interrupted" => "bad",
        "pending" | "running" | "queued" => "warn",
        _ => "",
    }
}

/// The i18n key of a state word (version, execution or step state).
fn state_key(state: &str) -> &'static str {
    match state {
        "pending" => "wf.s_pending",
        "active" => "wf.s_active",
        "superseded" => "wf.s_superseded",
        "rejected" => "wf.s_rejected",
        "queued" => "ex.s_queued",
        "running" => "ex.s_running",
        "succeeded" => "ex.s_succeeded",
        "failed" => "ex.s_failed",
        "cancelled" => "ex.s_cancelled",
        "interrupted" => "ex.s_interrupted",
        _ => "common.unknown",
    }
}

fn trigger_key(trigger: &str) -> &'static str {
    match trigger {
        "manual" => "wf.t_manual",
        "schedule" => "wf.t_schedule",
        "webhook" => "wf.t_webhook",
        "event" => "wf.t_event",
        _ => "common.unknown",
    }
}

/// What both workflow pages' templates call on top of [`Chrome`].
#[derive(Debug)]
pub struct Words<'a>(&'a Chrome);

impl Words<'_> {
    pub fn state(&self, s: &str) -> &'static str {
        self.0.t(state_key(s))
    }
    pub fn class(&self, s: &str) -> &'static str {
        state_class(s)
    }
    pub fn trigger(&self, t: &str) -> &'static str {
        self.0.t(trigger_key(t))
    }
    pub fn took(&self, ms: Option<i64>) -> String {
        match ms {
            None => "—".to_owned(),
            Some(ms) if ms < 10_000 => format!("{ms} ms"),
            Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
        }
    }
}

#[derive(Template)]
#[template(path = "workflows.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Summary>,
    next: Option<String>,
}

impl ListPage {
    fn w(&self) -> Words<'_> {
        Words(&self.c)
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct CursorQuery {
    #[serde(default)]
    cursor: Option<String>,
}

/// `/workflows`: every workflow by name, a page at a time.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<CursorQuery>,
) -> PageResult {
    use crate::api_types::{decode_cursor, encode_cursor};
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => decode_cursor("w1", c)?,
        None => String::new(),
    };
    let store = state.access.store();
    let mut rows = registry::workflows_after(store, &after, PAGE_ROWS + 1).await?;
    let more = rows.len() as i64 > PAGE_ROWS;
    rows.truncate(PAGE_ROWS as usize);
    let next = more
        .then(|| rows.last().map(|w| encode_cursor("w1", &w.name)))
        .flatten();
    let rows = view::summaries(store, rows).await?;
    let c = Chrome::new(&state, &caller, &headers, "workflows", "/workflows".into());
    Ok(render(StatusCode::OK, &ListPage { c, rows, next }))
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct DetailPage {
    c: Chrome,
    s: Summary,
    versions: Vec<VersionRow>,
    from: i64,
    to: i64,
    diff: Vec<DiffLine>,
    lint_v: i64,
    lint: Vec<LintLine>,
    runs: Vec<RunRow>,
    notice: String,
    error: String,
    /// `user:<id>` → the user's email, for who applied and approved.
    people: std::collections::HashMap<String, String>,
}

impl DetailPage {
    /// An actor as people know it: a user's email, else the actor as stored.
    fn who<'a>(&'a self, actor: &'a str) -> &'a str {
        self.people.get(actor).map_or(actor, String::as_str)
    }
    fn w(&self) -> Words<'_> {
        Words(&self.c)
    }
    fn can_approve(&self) -> bool {
        self.c.role.can(Permission::ApproveWorkflows)
    }
    fn can_run(&self) -> bool {
        self.c.role.can(Permission::RunWorkflows)
            && self.s.manual()
            && self.s.row.enabled
            && self.s.row.active_version.is_some()
    }
    fn name_enc(&self) -> String {
        encode(&self.s.row.name)
    }
    fn diff_class(&self, l: &DiffLine) -> &'static str {
        match l.mark {
            '+' => "add",
            '-' => "del",
            _ => "same",
        }
    }
    fn diff_changed(&self) -> bool {
        self.diff.iter().any(|l| l.mark != ' ')
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DetailQuery {
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    to: Option<i64>,
    #[serde(default)]
    lint: Option<i64>,
    /// What was just done (a notice key suffix).
    #[serde(default)]
    done: String,
}

async fn detail_page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    name: &str,
    q: &DetailQuery,
    error: String,
) -> Result<DetailPage, AppError> {
    let store = state.access.store();
    let row = registry::workflow(store, name)
        .await?
        .ok_or_else(|| registry::RegistryError::UnknownWorkflow(name.to_owned()))?;
    let latest = row.latest_version;
    let s = view::summary(store, row).await?;
    let versions = registry::versions(store, name).await?;
    let known = |v: i64| v >= 1 && v <= latest;
    let to = q.to.filter(|v| known(*v)).unwrap_or(latest);
    let from = q.from.filter(|v| known(*v)).unwrap_or((to - 1).max(1));
    let diff = if from != to {
        view::diff(store, name, from, to).await?
    } else {
        Vec::new()
    };
    let lint_v = q.lint.filter(|v| known(*v)).unwrap_or(latest);
    let lint = view::lint_version(store, name, lint_v).await?;
    let runs = runs::list(store, Some(name), None, 5).await?;
    let people = state
        .access
        .users()
        .await?
        .into_iter()
        .map(|u| (format!("user:{}", u.id), u.email))
        .collect();
    let here = format!("/workflows/{}", encode(name));
    let c = Chrome::new(state, caller, headers, "workflows", here);
    let notice = match q.done.as_str() {
        "approved" => c.t("wf.done_approved"),
        "rejected" => c.t("wf.done_rejected"),
        _ => "",
    }
    .to_owned();
    Ok(DetailPage {
        c,
        s,
        versions,
        from,
        to,
        diff,
        lint_v,
        lint,
        runs,
        notice,
        error,
        people,
    })
}

/// `/workflows/{name}?from=&to=&lint=`: versions, diff, lint, approval and run.
pub async fn detail(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<DetailQuery>,
) -> PageResult {
    let page = detail_page(&state, &caller, &headers, &name, &q, String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

/// The workflow page again with a refusal shown inline (its status code kept).
async fn refused_on_workflow(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    name: &str,
    e: AppError,
) -> PageResult {
    let (status, text) = refusal(Lang::for_caller(caller, headers), e)?;
    let q = DetailQuery::default();
    let page = detail_page(state, caller, headers, name, &q, text).await?;
    Ok(render(status, &page))
}

/// POST `/workflows/{name}/versions/{version}/approve` (four eyes: the registry refuses
/// the author, shown inline).
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((name, v)): Path<(String, i64)>,
) -> PageResult {
    match registry::approve(state.access.store(), &caller.actor(), &name, v).await {
        Ok(_) => Ok(redirect_done(&name, "approved")),
        Err(e) => refused_on_workflow(&state, &caller, &headers, &name, e.into()).await,
    }
}

/// POST `/workflows/{name}/versions/{version}/reject`.
pub async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((name, v)): Path<(String, i64)>,
) -> PageResult {
    match registry::reject(state.access.store(), &caller.actor(), &name, v).await {
        Ok(_) => Ok(redirect_done(&name, "rejected")),
        Err(e) => refused_on_workflow(&state, &caller, &headers, &name, e.into()).await,
    }
}

fn redirect_done(name: &str, done: &str) -> Response {
    Redirect::to(&format!("/workflows/{}?done={done}", encode(name))).into_response()
}

#[derive(Deserialize)]
pub struct RunForm {
    #[serde(default)]
    inputs: String,
}

// The inputs may hold business data: never printed.
impl std::fmt::Debug for RunForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunForm { .. }")
    }
}

/// POST `/workflows/{name}/run`: a manual run with the form's JSON inputs (default
/// `{}`), then its timeline.
pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<RunForm>,
) -> PageResult {
    let text = form.inputs.trim();
    let inputs = if text.is_empty() {
        Ok(serde_json::json!({}))
    } else {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|_| AppError::refused(StatusCode::BAD_REQUEST, "invalid_request", "inputs"))
    };
    let started = match inputs {
        Ok(inputs) => runs::enqueue_manual(state.access.store(), &caller.actor(), &name, inputs)
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    match started {
        Ok(s) => Ok(Redirect::to(&format!("/executions/{}", encode(&s.execution))).into_response()),
        Err(e) => refused_on_workflow(&state, &caller, &headers, &name, e).await,
    }
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ExecutionsPage {
    c: Chrome,
    workflow: String,
    status: String,
    rows: Vec<RunRow>,
    next: Option<String>,
}

impl ExecutionsPage {
    fn w(&self) -> Words<'_> {
        Words(&self.c)
    }
    fn next_link(&self, cursor: &str) -> String {
        format!(
            "/executions?workflow={}&status={}&cursor={}",
            encode(&self.workflow),
            encode(&self.status),
            encode(cursor)
        )
    }
    fn statuses(&self) -> [&'static str; 5] {
        ["queued", "running", "succeeded", "failed", "cancelled"]
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ExecutionsQuery {
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    cursor: String,
}

/// `/executions?workflow=&status=&cursor=`: newest first, a page at a time.
pub async fn executions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<ExecutionsQuery>,
) -> PageResult {
    let status = q.status.parse::<JobState>().ok();
    let workflow = Some(q.workflow.trim()).filter(|w| !w.is_empty());
    let cursor = Some(q.cursor.as_str()).filter(|c| !c.is_empty());
    let store = state.access.store();
    let (rows, next) = view::execution_page(store, workflow, status, PAGE_ROWS, cursor).await?;
    let status = status.map(|s| s.as_str().to_owned()).unwrap_or_default();
    let here = format!(
        "/executions?workflow={}&status={}",
        encode(&q.workflow),
        encode(&status)
    );
    let c = Chrome::new(&state, &caller, &headers, "executions", here);
    let page = ExecutionsPage {
        c,
        workflow: q.workflow,
        status,
        rows,
        next,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    c: Chrome,
    run: RunRow,
    steps: Vec<StepView>,
    error: String,
    notice: String,
}

impl ExecutionPage {
    fn w(&self) -> Words<'_> {
        Words(&self.c)
    }
    fn can_run(&self) -> bool {
        self.c.role.can(Permission::RunWorkflows)
    }
    fn cancellable(&self) -> bool {
        matches!(self.run.state, JobState::Queued | JobState::Running)
    }
    fn finished(&self) -> bool {
        !self.cancellable()
    }
    fn id_enc(&self) -> String {
        encode(&self.run.id)
    }
    /// The steps a re-run may start from, in first-run order.
    fn step_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for s in &self.steps {
            if !ids.contains(&s.step.as_str()) {
                ids.push(&s.step);
            }
        }
        ids
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

async fn execution_page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    done: &str,
    error: String,
) -> Result<ExecutionPage, AppError> {
    let (run, steps) = view::execution(state.access.store(), id).await?;
    let c = Chrome::new(
        state,
        caller,
        headers,
        "executions",
        format!("/executions/{}", encode(id)),
    );
    let notice = match done {
        "cancelled" => c.t("ex.done_cancelled"),
        "rerun" => c.t("ex.done_rerun"),
        "started" => c.t("ex.done_started"),
        _ => "",
    }
    .to_owned();
    Ok(ExecutionPage {
        c,
        run,
        steps,
        error,
        notice,
    })
}

/// `/executions/{id}`: the run and its step timeline (status, duration, error).
pub async fn execution(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> PageResult {
    let page = execution_page(&state, &caller, &headers, &id, &q.done, String::new()).await?;
    Ok(render(StatusCode::OK, &page))
}

async fn refused_on_execution(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    e: AppError,
) -> PageResult {
    let lang = Lang::for_caller(caller, headers);
    let (status, text) = match &e {
        AppError::Refused {
            status,
            code: "invalid_request",
            ..
        } => (*status, lang.t("ex.r_bad_step").to_owned()),
        _ => refusal(lang, e)?,
    };
    let page = execution_page(state, caller, headers, id, "", text).await?;
    Ok(render(status, &page))
}

/// POST `/executions/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    match operate::cancel(state.access.store(), &caller.actor(), &id).await {
        Ok(_) => Ok(
            Redirect::to(&format!("/executions/{}?done=cancelled", encode(&id))).into_response(),
        ),
        Err(e) => refused_on_execution(&state, &caller, &headers, &id, e.into()).await,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct RerunForm {
    /// Re-run from this step (the steps before it keep their outputs); empty: all.
    #[serde(default)]
    from_step: String,
}

/// POST `/executions/{id}/rerun` (`from_step=` optional): a new execution of the same
/// version and inputs; its page next.
pub async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RerunForm>,
) -> PageResult {
    let from = Some(form.from_step.trim()).filter(|s| !s.is_empty());
    match operate::rerun(state.access.store(), &caller.actor(), &id, from).await {
        Ok(s) => Ok(
            Redirect::to(&format!("/executions/{}?done=rerun", encode(&s.execution)))
                .into_response(),
        ),
        Err(e) => refused_on_execution(&state, &caller, &headers, &id, e.into()).await,
    }
}
