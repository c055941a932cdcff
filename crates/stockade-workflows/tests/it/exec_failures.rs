//! Failures on both backends: the typed error event and the on_error job are written
//! with the failure, messages are scrubbed, and an error workflow that fails does not
//! loop.

use serde_json::{Value, json};
use stockade_core::Actor;
use stockade_store::JobState;
use stockade_workflows::exec::{ExecutionPayload, RunOutcome};

use crate::exec_support::{Backend, Env, both, catalog, executor};

both!(
    the_failure_event_and_the_on_error_job_are_written_with_the_failure,
    an_error_workflow_that_fails_does_not_loop,
    a_job_for_an_unknown_workflow_or_version_fails_cleanly,
);

const MAIN: &str = r#"
name: main
trigger: manual
on_error: handler
steps:
  - id: first
    uses: audit.note
    with: { message: "first" }
  - id: boom
    uses: fail
    with: { message: "customer jane.doe@example.com has no stock" }
"#;

const HANDLER_OK: &str = r#"
name: handler
trigger: manual
steps:
  - id: log
    uses: audit.note
    with: { message: "error in {{ trigger.error.workflow }} at {{ trigger.error.step }}" }
"#;

// An error workflow that fails, and names itself as its own error workflow.
const HANDLER_FAILS: &str = r#"
name: handler
trigger: manual
on_error: handler
steps:
  - id: broken
    uses: fail
    with: { message: "the handler is broken" }
"#;

async fn events(env: &Env) -> Vec<String> {
    env.store
        .query_as(
            "SELECT detail FROM events WHERE source = 'workflow' AND kind = 'failed' ORDER BY id",
            vec![],
        )
        .await
        .unwrap()
}

async fn the_failure_event_and_the_on_error_job_are_written_with_the_failure(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = executor(&env, catalog(&[MAIN, HANDLER_OK]), None);
    let id = env.enqueue("main", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let RunOutcome::Failed(event) = exec.run_claimed(lease).await.unwrap() else {
        panic!("fails")
    };
    assert_eq!(
        (
            event.workflow.as_str(),
            event.version,
            event.step.as_str(),
            event.class.as_str()
        ),
        ("main", 1, "boom", "fail")
    );
    assert_eq!((event.execution.as_str(), event.attempts), (id.as_str(), 1));
    assert!(
        !event.message.contains("jane.doe"),
        "scrubbed: {}",
        event.message
    );
    let stored = events(&env).await;
    assert_eq!(stored.len(), 1);
    let detail: Value = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(detail["execution"], json!(id));
    assert!(!stored[0].contains("jane.doe"));
    assert_eq!(
        env.store.job(&id).await.unwrap().unwrap().state,
        JobState::Failed
    );
    // The event, the job's failure and the error job are in one commit.
    let seqs: Vec<(String, i64)> = env
        .store
        .query_as(
            "SELECT action, seq FROM audit WHERE action IN ('workflow.failed', 'job.fail', 'job.enqueue') ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    let tail: Vec<&str> = seqs.iter().rev().take(3).map(|(a, _)| a.as_str()).collect();
    assert_eq!(tail, vec!["job.enqueue", "workflow.failed", "job.fail"]);
    // The error workflow runs with the event as its trigger.
    let lease = env.claim("w1", 30_000).await.expect("the error job");
    assert_eq!(lease.payload["error_depth"], json!(1));
    assert_eq!(lease.payload["trigger"]["error"]["execution"], json!(id));
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    let notes: Vec<String> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        notes.iter().any(|n| n.contains("error in main at boom")),
        "{notes:?}"
    );
    env.cleanup().await;
}

async fn an_error_workflow_that_fails_does_not_loop(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = executor(&env, catalog(&[MAIN, HANDLER_FAILS]), None);
    env.enqueue("main", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert!(matches!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Failed(_)
    ));
    let lease = env.claim("w1", 30_000).await.expect("the error job");
    let RunOutcome::Failed(e) = exec.run_claimed(lease).await.unwrap() else {
        panic!("the handler fails")
    };
    assert_eq!(e.workflow, "handler");
    // One alert event for it, and nothing more enqueued: no loop.
    assert_eq!(events(&env).await.len(), 2);
    assert_eq!(env.count("SELECT COUNT(*) FROM jobs").await, 2);
    assert!(env.claim("w1", 30_000).await.is_none());
    env.cleanup().await;
}

async fn a_job_for_an_unknown_workflow_or_version_fails_cleanly(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = executor(&env, catalog(&[MAIN, HANDLER_OK]), None);
    let unknown = env.enqueue("nope", json!({})).await;
    let pinned = ExecutionPayload {
        version: Some(7),
        ..ExecutionPayload::new("main", json!({}), json!({}))
    };
    let old = env
        .store
        .enqueue(&Actor::System("test"), &pinned.job())
        .await
        .unwrap()
        .id;
    let mut ran = Vec::new();
    for _ in 0..2 {
        let lease = env.claim("w1", 30_000).await.expect("a job");
        let id = lease.job_id.clone();
        ran.push(id.clone());
        let RunOutcome::Failed(e) = exec.run_claimed(lease).await.unwrap() else {
            panic!("fails")
        };
        assert_eq!(e.class, "invalid");
        assert_eq!(
            env.store.job(&id).await.unwrap().unwrap().state,
            JobState::Failed
        );
    }
    ran.sort();
    let mut both = vec![unknown, old];
    both.sort();
    assert_eq!(ran, both);
    // Nothing of `main` ran, no error workflow was enqueued, both failures are events.
    assert_eq!(env.actions("workflow.note").await, 0);
    assert_eq!(env.count("SELECT COUNT(*) FROM jobs").await, 2);
    assert_eq!(events(&env).await.len(), 2);
    env.cleanup().await;
}
