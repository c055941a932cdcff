//! `wait` on both backends: the job is deferred (the worker is free for other work), and
//! a new executor on the same database finishes it once it is due, without repeating the
//! steps before the wait.

use std::time::Duration;

use serde_json::json;
use stockade_store::{JobState, StepStatus};
use stockade_workflows::exec::RunOutcome;

use crate::exec_support::{Backend, Env, both, catalog, executor};

both!(a_wait_survives_a_restart_and_frees_the_worker);

const WAITS: &str = r#"
name: waits
trigger: manual
steps:
  - id: before
    uses: audit.note
    with: { message: "before" }
  - id: pause
    uses: wait
    with: { duration: PT1S }
  - id: after
    uses: audit.note
    with: { message: "after {{ steps.pause.output.waited_until_ms }}" }
"#;

const OTHER: &str = r#"
name: other
trigger: manual
steps:
  - id: only
    uses: audit.note
    with: { message: "other" }
"#;

async fn a_wait_survives_a_restart_and_frees_the_worker(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let id = env.enqueue("waits", json!({})).await;
    let started = stockade_core::time::now_ms();
    {
        let exec = executor(&env, catalog(&[WAITS, OTHER]), None);
        let lease = env.claim("w1", 30_000).await.expect("a job");
        let RunOutcome::Waiting(due) = exec.run_claimed(lease).await.expect("runs") else {
            panic!("the run should wait");
        };
        assert!(due >= started + 1000, "due {due}, started {started}");
        // The executor (the "process") goes away while the job waits.
    }
    let job = env.store.job(&id).await.unwrap().expect("job");
    assert_eq!(job.state, JobState::Queued, "deferred, not holding a lease");
    assert_eq!(env.actions("workflow.note").await, 1);
    // The worker is free: the waiting job is not claimable, another execution runs.
    let other = env.enqueue("other", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("the other job");
    assert_eq!(lease.job_id, other);
    let exec = executor(&env, catalog(&[WAITS, OTHER]), None);
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert!(env.claim("w1", 30_000).await.is_none(), "not due yet");

    // After the due time a new executor on the same database finishes it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let exec = executor(&env, catalog(&[WAITS, OTHER]), None);
    let lease = env.claim("w2", 30_000).await.expect("due now");
    assert_eq!(lease.job_id, id);
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert!(stockade_core::time::now_ms() >= started + 1000);
    let job = env.store.job(&id).await.unwrap().expect("job");
    assert_eq!(job.state, JobState::Succeeded);
    // `before` ran once; the wait and `after` each once.
    let notes: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    let texts: Vec<&str> = notes.iter().map(|n| n.0.as_str()).collect();
    assert_eq!(texts.iter().filter(|t| t.contains("\"before\"")).count(), 1);
    assert_eq!(
        texts.iter().filter(|t| t.contains("after 1")).count(),
        1,
        "{texts:?}"
    );
    let journal = env.store.journal(&id).await.unwrap();
    let pause: Vec<(&str, StepStatus)> = journal
        .iter()
        .filter(|r| r.step_id.starts_with("pause"))
        .map(|r| (r.step_id.as_str(), r.status))
        .collect();
    assert_eq!(
        pause,
        vec![
            ("pause~due", StepStatus::Succeeded),
            ("pause", StepStatus::Succeeded)
        ]
    );
    env.cleanup().await;
}
