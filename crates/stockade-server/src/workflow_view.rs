//! What the workflow API ([`crate::api_workflows`]) and the workflow pages
//! ([`crate::console_workflows`]) both read, so a page and its JSON twin never disagree:
//! a workflow's summary (trigger, approval state, last run), a version's lint problems,
//! the line diff of two versions, an execution's step timeline, and the executions
//! cursor.
//!
//! Invariants: everything comes from `stockade_workflows` (`registry`, `runs`, `lint`,
//! `diff`), the same code as the CLI; nothing here writes. A timeline holds step ids,
//! attempts, states, times and the stored (scrubbed) error, never a step's output or an
//! input value. Lint runs on the stored text against the store's own environment, as
//! `apply` did. Lists are bounded.

use stockade_store::{JobState, Store};
use stockade_workflows::definition::{Trigger, Workflow};
use stockade_workflows::lint::{LintOptions, lint_set};
use stockade_workflows::registry::{self, WorkflowRow};
use stockade_workflows::runs::{self, RunRow};

use crate::api_types::{bad_cursor, decode_cursor, encode_cursor};
use crate::error::AppError;

/// A workflow as the list shows it.
#[derive(Debug, Clone)]
pub struct Summary {
    pub row: WorkflowRow,
    /// `manual`, `schedule`, `webhook` or `event`.
    pub trigger: &'static str,
    /// The cron pattern, webhook path or event kind (empty for manual).
    pub trigger_detail: String,
    /// The newest version's state (`pending` waits for approval).
    pub latest_state: String,
    /// The newest execution: its id, state and queue time.
    pub last_run: Option<(String, JobState, i64)>,
}

impl Summary {
    pub fn manual(&self) -> bool {
        self.trigger == "manual"
    }
}

/// The trigger of a workflow's text: its kind and detail.
pub fn trigger_of(text: &str) -> (&'static str, String) {
    match Workflow::parse(text).map(|w| w.trigger.value) {
        Ok(Trigger::Manual) => ("manual", String::new()),
        Ok(Trigger::Schedule(s)) => ("schedule", s.cron.value),
        Ok(Trigger::Webhook(h)) => ("webhook", format!("/hooks/workflows/{}", h.path.value)),
        Ok(Trigger::Event(e)) => ("event", e.kind.value),
        Err(_) => ("unknown", String::new()),
    }
}

/// The summary of each of `rows` (a bounded page).
pub async fn summaries(store: &Store, rows: Vec<WorkflowRow>) -> Result<Vec<Summary>, AppError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(summary(store, row).await?);
    }
    Ok(out)
}

pub async fn summary(store: &Store, row: WorkflowRow) -> Result<Summary, AppError> {
    let (_, text) = registry::content(store, &row.name, None).await?;
    let (trigger, trigger_detail) = trigger_of(&text);
    let latest_state = registry::version(store, &row.name, row.latest_version)
        .await?
        .map(|v| v.state.as_str().to_owned())
        .unwrap_or_default();
    let last_run = runs::list(store, Some(&row.name), None, 1)
        .await?
        .into_iter()
        .next()
        .map(|r| (r.id, r.state, r.created_at_ms));
    Ok(Summary {
        row,
        trigger,
        trigger_detail,
        latest_state,
        last_run,
    })
}

/// One lint problem of a stored version.
#[derive(Debug, Clone)]
pub struct LintLine {
    pub line: u64,
    pub col: u64,
    pub rule: String,
    pub message: String,
}

/// The lint problems of version `v` of `name`, linted again against the store's
/// environment (what `apply` counted).
pub async fn lint_version(store: &Store, name: &str, v: i64) -> Result<Vec<LintLine>, AppError> {
    let (_, text) = registry::content(store, name, Some(v)).await?;
    let options = LintOptions {
        env: Some(store.environment()),
        ..LintOptions::default()
    };
    let files = [(format!("{name}.yaml"), text)];
    let problems = lint_set(&files, &options)
        .into_iter()
        .flat_map(|(_, p)| p)
        .map(|p| LintLine {
            line: p.pos.line,
            col: p.pos.col,
            rule: p.rule.as_str().to_owned(),
            message: p.message,
        })
        .collect();
    Ok(problems)
}

/// One line of a diff: `' '` same, `'-'` removed, `'+'` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub mark: char,
    pub text: String,
}

/// The line diff from version `from` to version `to` of `name` (`stockade workflow diff`).
pub async fn diff(
    store: &Store,
    name: &str,
    from: i64,
    to: i64,
) -> Result<Vec<DiffLine>, AppError> {
    use stockade_workflows::diff::{Line, diff_lines};
    let (_, old) = registry::content(store, name, Some(from)).await?;
    let (_, new) = registry::content(store, name, Some(to)).await?;
    Ok(diff_lines(&old, &new)
        .into_iter()
        .map(|l| match l {
            Line::Same(t) => DiffLine {
                mark: ' ',
                text: t.to_owned(),
            },
            Line::Removed(t) => DiffLine {
                mark: '-',
                text: t.to_owned(),
            },
            Line::Added(t) => DiffLine {
                mark: '+',
                text: t.to_owned(),
            },
        })
        .collect())
}

/// A step attempt in a timeline.
#[derive(Debug, Clone)]
pub struct StepView {
    pub step: String,
    pub attempt: i64,
    /// `succeeded`, `failed`, `running` or `interrupted`.
    pub status: &'static str,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub took_ms: Option<i64>,
    pub error: Option<String>,
}

/// An execution and its step timeline (no outputs).
pub async fn execution(store: &Store, id: &str) -> Result<(RunRow, Vec<StepView>), AppError> {
    let (row, steps) = runs::show(store, id).await?;
    let timeline = steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepView {
            step: s.step_id.clone(),
            attempt: s.attempt,
            status: runs::step_label(row.state, &steps, i),
            started_at_ms: s.started_at_ms,
            finished_at_ms: s.finished_at_ms,
            took_ms: s.finished_at_ms.map(|f| f - s.started_at_ms),
            error: s.error.clone(),
        })
        .collect();
    Ok((row, timeline))
}

const EXECUTION_CURSOR: &str = "e1";

/// The cursor after execution `r` in the newest-first list.
pub fn execution_cursor(r: &RunRow) -> String {
    encode_cursor(EXECUTION_CURSOR, &format!("{}:{}", r.created_at_ms, r.id))
}

/// The `(created_at_ms, id)` held by an executions cursor.
pub fn execution_after(cursor: &str) -> Result<(i64, String), AppError> {
    let key = decode_cursor(EXECUTION_CURSOR, cursor)?;
    key.split_once(':')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .ok_or_else(bad_cursor)
}

/// One page of executions, newest first, after `cursor`, with the next page's cursor.
pub async fn execution_page(
    store: &Store,
    workflow: Option<&str>,
    status: Option<JobState>,
    limit: i64,
    cursor: Option<&str>,
) -> Result<(Vec<RunRow>, Option<String>), AppError> {
    let after = cursor.map(execution_after).transpose()?;
    let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
    let mut rows = runs::list_after(store, workflow, status, limit + 1, after).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more.then(|| rows.last()).flatten().map(execution_cursor);
    Ok((rows, next))
}
