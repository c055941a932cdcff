//! Operating executions: cancelling one ([`cancel`]) and running one again ([`rerun`]).
//!
//! Invariants:
//! - A cancel ends a queued or running execution `cancelled` in one audited commit and
//!   bumps its fencing token: a worker running it is refused at its next commit and stops
//!   at that step boundary, writing nothing. A step already running finishes its own
//!   effect outside the database (an HTTP call in flight is not recalled), but its result
//!   is never committed. A cancelled execution produces no error event and runs no
//!   `on_error` workflow. A finished execution cannot be cancelled (refused, nothing
//!   written).
//! - A rerun is a new execution of the same workflow version with the same inputs and
//!   trigger data. With `from_step`, the succeeded steps before that top-level step are
//!   copied from the old journal into the new one as committed, in the same audited
//!   commit as the new job, so they do not run again and their outputs feed the later
//!   steps; steps before it that did not succeed run again. `from_step` must name a
//!   top-level step (not one nested in `if`/`switch`/`for_each`/`workflow.call`: its
//!   siblings' outputs would be half copied); anything else is refused and nothing is
//!   written. The version must still be allowed to run (workflow enabled, version
//!   reviewed).

use stockade_core::Actor;
use stockade_store::{AuditDetails, AuditEntry, Change, JobState, Mutation, Store, StoreError};
use stockade_store::{jobs, sql_params};

use crate::definition::Workflow;
use crate::exec::{ExecutionPayload, JOB_KIND};
use crate::registry::{self, VersionState};
use crate::runs::{RunError, Started};

/// Cancel execution `id` as `actor`; returns the state it had (queued or running).
pub async fn cancel(store: &Store, actor: &Actor, id: &str) -> Result<JobState, RunError> {
    payload_of(store, id).await?;
    match store
        .cancel_job(actor, id, "cancelled by an operator")
        .await
    {
        Ok(state) => Ok(state),
        Err(StoreError::NotFound(_)) => Err(RunError::UnknownRun(id.to_owned())),
        Err(StoreError::Conflict(why)) => Err(RunError::Refused(why)),
        Err(e) => Err(e.into()),
    }
}

async fn payload_of(store: &Store, id: &str) -> Result<ExecutionPayload, RunError> {
    let text: Option<String> = store
        .query_one_as(
            "SELECT payload FROM jobs WHERE kind = $1 AND id = $2",
            sql_params![JOB_KIND, id],
        )
        .await?;
    let text = text.ok_or_else(|| RunError::UnknownRun(id.to_owned()))?;
    serde_json::from_str(&text).map_err(|_| {
        RunError::Refused("the execution's payload is not one this server reads".into())
    })
}

/// Start a new execution like `id` (same version, inputs and trigger data), as `actor`;
/// with `from_step`, the succeeded steps before that top-level step are not run again.
pub async fn rerun(
    store: &Store,
    actor: &Actor,
    id: &str,
    from_step: Option<&str>,
) -> Result<Started, RunError> {
    let old = payload_of(store, id).await?;
    let name = old.workflow.clone();
    let enabled = registry::workflow(store, &name)
        .await?
        .is_some_and(|w| w.enabled);
    let (version, text) = match registry::content(store, &name, old.version).await {
        Ok(found) if enabled => found,
        _ => return Err(RunError::NotRunnable(name)),
    };
    let reviewed = registry::version(store, &name, version)
        .await?
        .is_some_and(|r| matches!(r.state, VersionState::Active | VersionState::Superseded));
    if !reviewed {
        return Err(RunError::NotRunnable(name));
    }
    let before = match from_step {
        None => Vec::new(),
        Some(step) => {
            let workflow =
                Workflow::parse(&text).map_err(|_| RunError::NotRunnable(name.clone()))?;
            steps_before(&workflow, step)?
        }
    };
    let mut payload = old.clone();
    payload.version = Some(version);
    let (new_id, enqueue) = jobs::enqueue_change(&payload.job())?;
    let mut changes = vec![enqueue];
    if !before.is_empty() {
        let rows: Vec<_> = store
            .journal(id)
            .await?
            .into_iter()
            .filter(|r| before.iter().any(|b| belongs(&r.step_id, b)))
            .collect();
        changes.push(jobs::copy_steps_change(id, &new_id, &rows));
    }
    changes.push(Change::new(
        Mutation::None,
        AuditEntry::new(
            "workflow.rerun",
            format!("job:{new_id}"),
            AuditDetails::new()
                .str("workflow", &name)
                .int("version", version)
                .str("rerun_of", id)
                .str("from_step", from_step.unwrap_or("")),
        ),
    ));
    store.commit(actor, changes).await?;
    Ok(Started {
        execution: new_id,
        version,
    })
}

/// The top-level step ids before `step`; refused when `step` is not a top-level step.
fn steps_before(workflow: &Workflow, step: &str) -> Result<Vec<String>, RunError> {
    let ids: Vec<&str> = workflow.steps.iter().map(|s| s.id.value.as_str()).collect();
    match ids.iter().position(|s| *s == step) {
        Some(i) => Ok(ids[..i].iter().map(|s| (*s).to_owned()).collect()),
        None => Err(RunError::BadStep(format!(
            "{step:?} is not a top-level step of this version (a step inside if/switch/for_each/workflow.call cannot be a starting point); its top-level steps: {}",
            ids.join(", ")
        ))),
    }
}

/// Whether journal row `row` (a step path) belongs to top-level step `top`.
fn belongs(row: &str, top: &str) -> bool {
    row == top
        || row
            .strip_prefix(top)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_journal_rows_belong_to_their_top_level_step() {
        assert!(belongs("a", "a"));
        assert!(belongs("a/b", "a"));
        assert!(belongs("a#3/b", "a"));
        assert!(!belongs("ab", "a"));
        assert!(!belongs("b/a", "a"));
    }

    #[test]
    fn only_a_top_level_step_is_a_starting_point() {
        let w = Workflow::parse(
            "name: w\ntrigger: manual\nsteps:\n  - id: a\n    uses: audit.note\n    with: { message: x }\n  - id: b\n    uses: if\n    if: \"{{ true }}\"\n    then:\n      - id: c\n        uses: audit.note\n        with: { message: y }\n  - id: d\n    uses: audit.note\n    with: { message: z }\n",
        )
        .unwrap();
        assert_eq!(steps_before(&w, "d").unwrap(), vec!["a", "b"]);
        assert!(steps_before(&w, "a").unwrap().is_empty());
        assert!(matches!(steps_before(&w, "c"), Err(RunError::BadStep(_))));
        assert!(matches!(steps_before(&w, "zz"), Err(RunError::BadStep(_))));
    }
}
