//! Workflow versions and their review: the owner of the `workflows` and
//! `workflow_versions` tables (migration 0011). The one I/O module of this crate besides
//! what later runs workflows; the definition, expression and lint modules stay pure.
//!
//! Invariants:
//! - A version is stored exactly as applied (its text and SHA-256), with the linter's
//!   verdict computed here, against the store's own environment, never taken from the
//!   caller. Applying the text of the newest version again stores nothing ("unchanged").
//! - A version whose lint fails is stored `rejected` and can never become active (the
//!   schema refuses an active row without a passing lint, too). A file with a
//!   `secret-literal` problem is not stored at all: the database would keep the secret.
//! - In dev and staging a passing version becomes active at once; in prod it stays
//!   `pending` until [`approve`] by a person other than the one who applied it (four
//!   eyes, checked here and again in the UPDATE and by a table CHECK). A refused approval
//!   writes nothing. A pending version may instead be [`reject`]ed (kept, never runs).
//! - At most one version per workflow is active (a partial unique index); activating one
//!   supersedes the previous one in the same transaction.
//! - Every write is one [`Store::commit`] with its audit row, under the acting user or
//!   API key; audit details hold names, numbers and hashes, never workflow text.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use stockade_core::{Actor, Environment, time::now_ms};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, Expect, FromRow, Mutation, Store, StoreError,
    sql_params,
};

use crate::definition::Workflow;
use crate::lint::{LintOptions, Problem, Rule, lint_set};

/// Errors of the registry. Every refusal leaves the database as it was.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no workflow named {0:?}: apply it first with `stockade workflow apply FILE`")]
    UnknownWorkflow(String),
    #[error(
        "workflow {name:?} has no version {version}: `stockade workflow versions {name}` lists them"
    )]
    UnknownVersion { name: String, version: i64 },
    #[error(
        "version {version} of {name:?} is {state}, not pending: only a pending version (prod, lint passed) can be approved; nothing was changed"
    )]
    NotPending {
        name: String,
        version: i64,
        state: VersionState,
    },
    #[error(
        "four eyes: version {version} of {name:?} was applied by {applied_by}, who cannot also approve it; another user must approve it. Nothing was changed"
    )]
    SelfApproval {
        name: String,
        version: i64,
        applied_by: String,
    },
    #[error("an approval is given by a user or an API key, not by {0}; nothing was changed")]
    NotAPerson(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Lint passed, waiting for a second person's approval (prod).
    Pending,
    /// The version that runs.
    Active,
    /// Was active; a newer approved version replaced it.
    Superseded,
    /// Lint failed: kept for the record, never runs.
    Rejected,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Pending => "pending",
            VersionState::Active => "active",
            VersionState::Superseded => "superseded",
            VersionState::Rejected => "rejected",
        }
    }
}

impl fmt::Display for VersionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for VersionState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [
            VersionState::Pending,
            VersionState::Active,
            VersionState::Superseded,
            VersionState::Rejected,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or(())
    }
}

/// A row of `workflows`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRow {
    pub name: String,
    pub enabled: bool,
    pub active_version: Option<i64>,
    pub latest_version: i64,
}

/// Columns `name, enabled, active_version, latest_version` of `workflows`.
impl FromRow for WorkflowRow {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(WorkflowRow {
            name: c.get()?,
            enabled: c.get()?,
            active_version: c.get()?,
            latest_version: c.get()?,
        })
    }
}

/// A row of `workflow_versions`, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub name: String,
    pub version: i64,
    pub content_sha256: String,
    pub lint_passed: bool,
    pub lint_problems: i64,
    pub state: VersionState,
    pub applied_by: String,
    pub applied_at_ms: i64,
    pub approved_by: Option<String>,
    pub approved_at_ms: Option<i64>,
}

/// Columns `name, version, content_sha256, lint_passed, lint_problems, state,
/// applied_by, applied_at_ms, approved_by, approved_at_ms` of `workflow_versions`.
impl FromRow for VersionRow {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(VersionRow {
            name: c.get()?,
            version: c.get()?,
            content_sha256: c.get()?,
            lint_passed: c.get()?,
            lint_problems: c.get()?,
            state: c.parse("workflow version state")?,
            applied_by: c.get()?,
            applied_at_ms: c.get()?,
            approved_by: c.get()?,
            approved_at_ms: c.get()?,
        })
    }
}

/// What applying one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing stored: the file does not parse as a workflow (no name to store it under),
    /// or an earlier file of the same apply has the same name.
    NotStored,
    /// Nothing stored: the linter found what looks like a secret in the file, and a
    /// stored version would keep it in the database.
    SecretRefused,
    /// The newest stored version already has this exact content.
    Unchanged { version: i64, state: VersionState },
    /// A new version, in this state.
    Stored { version: i64, state: VersionState },
}

/// One file's result: its name if it has one, the lint problems, what was stored.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub file: String,
    pub name: Option<String>,
    pub problems: Vec<Problem>,
    pub applied: Applied,
}

/// The hex SHA-256 of a workflow's text, as stored and audited.
pub fn content_sha256(text: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, text.as_bytes()).as_ref())
}

/// Lint `files` (path, text) together for the store's environment and store a version of
/// each, one audited commit per file, in order.
pub async fn apply(
    store: &Store,
    actor: &Actor,
    files: &[(String, String)],
) -> Result<Vec<FileOutcome>> {
    apply_with(store, actor, files, crate::exec::ScriptSettings::default()).await
}

/// [`apply`] linting `script` limits against these maxima (`[workflows.script]`).
pub async fn apply_with(
    store: &Store,
    actor: &Actor,
    files: &[(String, String)],
    script: crate::exec::ScriptSettings,
) -> Result<Vec<FileOutcome>> {
    let env = store.environment();
    let options = LintOptions {
        env: Some(env),
        script,
        ..LintOptions::default()
    };
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(files.len());
    for ((file, text), (_, problems)) in files.iter().zip(lint_set(files, &options)) {
        let name = Workflow::parse(text).ok().map(|w| w.name.value);
        let secret = problems.iter().any(|p| p.rule == Rule::SecretLiteral);
        let applied = match &name {
            Some(_) if secret => Applied::SecretRefused,
            Some(n) if !seen.contains(n) => {
                seen.push(n.clone());
                apply_one(store, actor, env, n, text, problems.len()).await?
            }
            _ => Applied::NotStored,
        };
        out.push(FileOutcome {
            file: file.clone(),
            name,
            problems,
            applied,
        });
    }
    Ok(out)
}

async fn apply_one(
    store: &Store,
    actor: &Actor,
    env: Environment,
    name: &str,
    text: &str,
    problems: usize,
) -> Result<Applied> {
    let hash = content_sha256(text);
    let current = workflow(store, name).await?;
    let latest = current.as_ref().map_or(0, |w| w.latest_version);
    if latest > 0
        && let Some(v) = version(store, name, latest).await?
        && v.content_sha256 == hash
    {
        return Ok(Applied::Unchanged {
            version: v.version,
            state: v.state,
        });
    }
    let passed = problems == 0;
    let state = match (passed, env) {
        (false, _) => VersionState::Rejected,
        (true, Environment::Prod) => VersionState::Pending,
        (true, _) => VersionState::Active,
    };
    let next = latest + 1;
    let now = now_ms();
    let mut steps = vec![
        sql(
            "INSERT INTO workflows (name, enabled, active_version, latest_version, created_at_ms, updated_at_ms) VALUES ($1, 1, NULL, 0, $2, $2) ON CONFLICT (name) DO NOTHING",
            sql_params![name, now],
            Expect::Any,
        ),
        // Optimistic guard: a concurrent apply of the same workflow fails this commit.
        sql(
            "UPDATE workflows SET latest_version = $1, updated_at_ms = $2 WHERE name = $3 AND latest_version = $4",
            sql_params![next, now, name, latest],
            Expect::One("the workflow as read (another apply changed it meanwhile; run it again)"),
        ),
    ];
    if state == VersionState::Active {
        steps.push(supersede_active(name));
    }
    steps.push(sql(
        "INSERT INTO workflow_versions (name, version, content, content_sha256, lint_passed, lint_problems, state, applied_by, applied_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        sql_params![
            name,
            next,
            text,
            hash.as_str(),
            passed,
            problems as i64,
            state.as_str(),
            actor.to_string(),
            now
        ],
        Expect::Any,
    ));
    if state == VersionState::Active {
        steps.push(set_active(name, next, now));
    }
    let details = AuditDetails::new()
        .int("version", next)
        .str("content_sha256", &hash)
        .int("lint_problems", problems as i64)
        .str("state", state.as_str());
    let audit = AuditEntry::new("workflow.apply", format!("workflow:{name}"), details);
    commit(store, actor, steps, audit).await?;
    Ok(Applied::Stored {
        version: next,
        state,
    })
}

/// Approve a pending prod version: it becomes active (the previous active version is
/// superseded). Refused, writing nothing, for the user who applied it, for a version that
/// is not pending, and for an actor that is not a user or an API key.
pub async fn approve(store: &Store, actor: &Actor, name: &str, v: i64) -> Result<VersionRow> {
    if !matches!(actor, Actor::User(_) | Actor::ApiKey(_)) {
        return Err(RegistryError::NotAPerson(actor.to_string()));
    }
    let row = require_version(store, name, v).await?;
    if row.state != VersionState::Pending || !row.lint_passed {
        return Err(RegistryError::NotPending {
            name: name.to_owned(),
            version: v,
            state: row.state,
        });
    }
    let who = actor.to_string();
    if row.applied_by == who {
        return Err(RegistryError::SelfApproval {
            name: name.to_owned(),
            version: v,
            applied_by: row.applied_by,
        });
    }
    let now = now_ms();
    let steps = vec![
        supersede_active(name),
        // The checks again, in the statement: a concurrent change cannot slip past them.
        sql(
            "UPDATE workflow_versions SET state = 'active', approved_by = $1, approved_at_ms = $2 WHERE name = $3 AND version = $4 AND state = 'pending' AND lint_passed = 1 AND applied_by <> $1",
            sql_params![who.as_str(), now, name, v],
            Expect::One("a pending version with a passing lint, applied by someone else"),
        ),
        set_active(name, v, now),
    ];
    let details = AuditDetails::new()
        .int("version", v)
        .str("content_sha256", &row.content_sha256)
        .str("applied_by", &row.applied_by);
    let audit = AuditEntry::new("workflow.approve", format!("workflow:{name}"), details);
    commit(store, actor, steps, audit).await?;
    require_version(store, name, v).await
}

/// Reject a pending prod version: it is kept for the record as `rejected` and never
/// runs; the active version (if any) stays. Refused, writing nothing, for a version that
/// is not pending and for an actor that is not a user or an API key. Unlike approval,
/// the author may reject (withdraw) their own version: rejecting lets nothing run.
pub async fn reject(store: &Store, actor: &Actor, name: &str, v: i64) -> Result<VersionRow> {
    if !matches!(actor, Actor::User(_) | Actor::ApiKey(_)) {
        return Err(RegistryError::NotAPerson(actor.to_string()));
    }
    let row = require_version(store, name, v).await?;
    if row.state != VersionState::Pending {
        return Err(RegistryError::NotPending {
            name: name.to_owned(),
            version: v,
            state: row.state,
        });
    }
    let steps = vec![sql(
        "UPDATE workflow_versions SET state = 'rejected' WHERE name = $1 AND version = $2 AND state = 'pending'",
        sql_params![name, v],
        Expect::One("a pending version"),
    )];
    let details = AuditDetails::new()
        .int("version", v)
        .str("content_sha256", &row.content_sha256)
        .str("applied_by", &row.applied_by);
    let audit = AuditEntry::new("workflow.reject", format!("workflow:{name}"), details);
    commit(store, actor, steps, audit).await?;
    require_version(store, name, v).await
}

/// Enable or disable a workflow (a disabled workflow keeps its versions and does not
/// run). Returns whether anything changed; no change writes nothing.
pub async fn set_enabled(store: &Store, actor: &Actor, name: &str, enabled: bool) -> Result<bool> {
    let wf = workflow(store, name)
        .await?
        .ok_or_else(|| RegistryError::UnknownWorkflow(name.to_owned()))?;
    if wf.enabled == enabled {
        return Ok(false);
    }
    let steps = vec![sql(
        "UPDATE workflows SET enabled = $1, updated_at_ms = $2 WHERE name = $3",
        sql_params![enabled, now_ms(), name],
        Expect::One("workflow"),
    )];
    let action = if enabled {
        "workflow.enable"
    } else {
        "workflow.disable"
    };
    let audit = AuditEntry::new(action, format!("workflow:{name}"), AuditDetails::new());
    commit(store, actor, steps, audit).await?;
    Ok(true)
}

/// Active workflow versions, and how many of them no second person approved (for the
/// compliance report's four-eyes clause; in dev and staging versions activate unapproved).
pub async fn review_counts(store: &Store) -> Result<(i64, i64)> {
    let row: Option<(i64, i64)> = store
        .query_one_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN approved_by IS NULL THEN 1 ELSE 0 END), 0)
             FROM workflow_versions WHERE state = 'active'",
            vec![],
        )
        .await?;
    Ok(row.unwrap_or((0, 0)))
}

/// Every workflow, by name.
pub async fn workflows(store: &Store) -> Result<Vec<WorkflowRow>> {
    Ok(store
        .query_as(
            "SELECT name, enabled, active_version, latest_version FROM workflows ORDER BY name",
            vec![],
        )
        .await?)
}

/// One page of workflows by name, after `after` (the previous page's last name; `""`:
/// from the first).
pub async fn workflows_after(store: &Store, after: &str, limit: i64) -> Result<Vec<WorkflowRow>> {
    Ok(store
        .query_as(
            "SELECT name, enabled, active_version, latest_version FROM workflows WHERE name > $1 ORDER BY name LIMIT $2",
            sql_params![after, limit.clamp(1, 10_000)],
        )
        .await?)
}

/// One workflow, if stored.
pub async fn workflow(store: &Store, name: &str) -> Result<Option<WorkflowRow>> {
    Ok(store
        .query_one_as(
            "SELECT name, enabled, active_version, latest_version FROM workflows WHERE name = $1",
            sql_params![name],
        )
        .await?)
}

/// A workflow's versions, oldest first; unknown workflows are an error.
pub async fn versions(store: &Store, name: &str) -> Result<Vec<VersionRow>> {
    if workflow(store, name).await?.is_none() {
        return Err(RegistryError::UnknownWorkflow(name.to_owned()));
    }
    Ok(store
        .query_as(
            "SELECT name, version, content_sha256, lint_passed, lint_problems, state, applied_by, applied_at_ms, approved_by, approved_at_ms FROM workflow_versions WHERE name = $1 ORDER BY version",
            sql_params![name],
        )
        .await?)
}

/// One version's row, if stored.
pub async fn version(store: &Store, name: &str, v: i64) -> Result<Option<VersionRow>> {
    Ok(store
        .query_one_as(
            "SELECT name, version, content_sha256, lint_passed, lint_problems, state, applied_by, applied_at_ms, approved_by, approved_at_ms FROM workflow_versions WHERE name = $1 AND version = $2",
            sql_params![name, v],
        )
        .await?)
}

async fn require_version(store: &Store, name: &str, v: i64) -> Result<VersionRow> {
    if workflow(store, name).await?.is_none() {
        return Err(RegistryError::UnknownWorkflow(name.to_owned()));
    }
    version(store, name, v)
        .await?
        .ok_or_else(|| RegistryError::UnknownVersion {
            name: name.to_owned(),
            version: v,
        })
}

/// A version's text exactly as applied: version `v`, or without it the active version
/// (the newest one when none is active). Returns the version number with the text.
pub async fn content(store: &Store, name: &str, v: Option<i64>) -> Result<(i64, String)> {
    let wf = workflow(store, name)
        .await?
        .ok_or_else(|| RegistryError::UnknownWorkflow(name.to_owned()))?;
    let v = v.or(wf.active_version).unwrap_or(wf.latest_version);
    let text: Option<String> = store
        .query_one_as(
            "SELECT content FROM workflow_versions WHERE name = $1 AND version = $2",
            sql_params![name, v],
        )
        .await?;
    text.map(|t| (v, t))
        .ok_or_else(|| RegistryError::UnknownVersion {
            name: name.to_owned(),
            version: v,
        })
}

/// The active version's number and text of an enabled workflow: what runs. `None` when
/// the workflow is unknown, disabled or has no active version.
pub async fn runnable(store: &Store, name: &str) -> Result<Option<(i64, String)>> {
    match workflow(store, name).await? {
        Some(WorkflowRow {
            enabled: true,
            active_version: Some(v),
            ..
        }) => Ok(Some(content(store, name, Some(v)).await?)),
        _ => Ok(None),
    }
}

fn sql(statement: &'static str, params: Vec<stockade_store::SqlValue>, expect: Expect) -> Mutation {
    Mutation::Sql {
        statement,
        params,
        expect,
    }
}

fn supersede_active(name: &str) -> Mutation {
    sql(
        "UPDATE workflow_versions SET state = 'superseded' WHERE name = $1 AND state = 'active'",
        sql_params![name],
        Expect::Any,
    )
}

fn set_active(name: &str, v: i64, now: i64) -> Mutation {
    sql(
        "UPDATE workflows SET active_version = $1, updated_at_ms = $2 WHERE name = $3",
        sql_params![v, now, name],
        Expect::One("workflow"),
    )
}

async fn commit(
    store: &Store,
    actor: &Actor,
    steps: Vec<Mutation>,
    audit: AuditEntry,
) -> Result<()> {
    let change = Change::new(
        Mutation::Many {
            steps,
            guard: false,
        },
        audit,
    );
    store.commit(actor, vec![change]).await?;
    Ok(())
}
