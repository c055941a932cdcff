//! Operating executions on both backends: concurrency limits (admission race between two
//! store handles; queue, skip, fail), the whole-execution timeout across resumes, cancel
//! (queued; running stops at its next step boundary) and rerun (from a step, without
//! repeating the steps before it).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stockade_core::{Actor, Environment};
use stockade_store::{Admission, JobState, StepStatus, Store, StoreOptions, sql_params};
use stockade_workflows::definition::OnLimit;
use stockade_workflows::engine::{EngineConfig, prune_pass};
use stockade_workflows::exec::{ExecError, ExecutionPayload, JOB_KIND, RunOutcome};
use stockade_workflows::runs::{self, RunError};
use stockade_workflows::{operate, registry};

use crate::exec_support::{Act, Backend, Env, Probe, both, catalog, executor};

both!(
    two_processes_never_admit_more_than_the_limit,
    a_full_limit_queues_skips_or_fails_as_declared,
    the_timeout_counts_from_the_first_start_across_resumes,
    a_cancelled_running_execution_stops_at_its_next_step_boundary,
    a_rerun_from_a_step_does_not_repeat_the_steps_before_it,
    the_engine_prune_pass_keeps_the_newest_per_workflow,
);

fn ops() -> Actor {
    Actor::User("usr_ops".into())
}

async fn second_handle(env: &Env) -> Store {
    Store::open(&env.db.url, Environment::Dev, &StoreOptions::default())
        .await
        .expect("a second handle")
}

async fn two_processes_never_admit_more_than_the_limit(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let other = second_handle(&env).await;
    for round in 0..3 {
        let mut leases = Vec::new();
        for n in 0..8 {
            env.enqueue("limited", json!({ "n": n })).await;
            leases.push(env.claim(&format!("w{n}"), 30_000).await.expect("a job"));
        }
        let key = format!("limited:round-{round}");
        let tasks: Vec<_> = leases
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, lease)| {
                let store = if i % 2 == 0 {
                    env.store.clone()
                } else {
                    other.clone()
                };
                let key = key.clone();
                tokio::spawn(async move { store.admit(&ops(), &lease, &key, 2).await.unwrap() })
            })
            .collect();
        let mut admitted = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if t.await.unwrap() == Admission::Admitted {
                admitted.push(i);
            }
        }
        assert_eq!(admitted.len(), 2, "round {round}: exactly the limit runs");
        let holding = env
            .store
            .count(
                "SELECT COUNT(*) FROM jobs WHERE concurrency_key IS NOT NULL AND state = 'running'",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(holding, 2);
        // A slot frees when its job ends; a waiting job is admitted then.
        let done = &leases[admitted[0]];
        env.store.complete(&ops(), done, vec![]).await.unwrap();
        let waiting = (0..8).find(|i| !admitted.contains(i)).unwrap();
        assert_eq!(
            other
                .admit(&ops(), &leases[waiting], &key, 2)
                .await
                .unwrap(),
            Admission::Admitted
        );
        for (i, l) in leases.iter().enumerate() {
            if i != admitted[0] {
                env.store.complete(&ops(), l, vec![]).await.unwrap();
            }
        }
    }
    assert_eq!(
        env.actions("job.admit").await,
        3 * 3,
        "refusals write nothing"
    );
    other.close().await;
    env.cleanup().await;
}

fn limited(name: &str, mode: &str) -> String {
    format!(
        "name: {name}\ntrigger: manual\npermissions: {{ hosts: [example.com] }}\nconcurrency: {{ limit: 1, on_limit: {mode} }}\non_error: handler\nsteps:\n  - id: call\n    uses: http.request\n    with: {{ url: \"https://example.com/x\" }}\n"
    )
}

async fn a_full_limit_queues_skips_or_fails_as_declared(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let texts = [
        limited("q", "queue"),
        limited("s", "skip"),
        limited("f", "fail"),
    ];
    let cat = catalog(&[&texts[0], &texts[1], &texts[2]]);
    let probe = Probe::new(&env.store, &[Act::Hang]);
    let exec = Arc::new(executor(&env, cat, Some(probe.clone())));
    for (name, mode) in [
        ("q", OnLimit::Queue),
        ("s", OnLimit::Skip),
        ("f", OnLimit::Fail),
    ] {
        // The first execution takes the one slot and hangs in its step.
        let first = env.enqueue(name, json!({})).await;
        let lease = env.claim("w1", 30_000).await.expect("a job");
        let e = exec.clone();
        let holder = tokio::spawn(async move { e.run_claimed(lease).await });
        for _ in 0..100 {
            if env.store.journal(&first).await.unwrap().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let second = env.enqueue(name, json!({})).await;
        let lease = env.claim("w2", 30_000).await.expect("the second job");
        assert_eq!(lease.job_id, second);
        let before = env.store.audit_head().await.unwrap().map_or(0, |h| h.0);
        assert_eq!(
            exec.run_claimed(lease).await.unwrap(),
            RunOutcome::Limited(mode)
        );
        let job = env.store.job(&second).await.unwrap().unwrap();
        assert!(
            env.store.journal(&second).await.unwrap().is_empty(),
            "no step ran"
        );
        match mode {
            OnLimit::Queue => {
                assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
                assert!(job.run_at_ms > stockade_core::time::now_ms());
                let after = env.store.audit_head().await.unwrap().map_or(0, |h| h.0);
                assert_eq!(after, before, "waiting is not audited");
            }
            OnLimit::Skip => {
                assert_eq!(job.state, JobState::Cancelled);
                assert!(
                    job.last_error
                        .unwrap()
                        .starts_with("skipped: concurrency limit")
                );
                assert_eq!(env.actions("job.skip").await, 1);
                let listed = runs::list(&env.store, Some("s"), Some(JobState::Cancelled), 10)
                    .await
                    .unwrap();
                assert_eq!(listed.len(), 1, "a skipped run is listed");
            }
            OnLimit::Fail => {
                assert_eq!(job.state, JobState::Failed);
                assert!(job.last_error.unwrap().contains("on_limit: fail"));
                assert_eq!(env.actions("workflow.failed").await, 0, "no error event");
                assert_eq!(
                    env.count("SELECT COUNT(*) FROM jobs WHERE workflow = 'handler'")
                        .await,
                    0,
                    "no error workflow"
                );
            }
        }
        holder.abort();
        env.store.cancel_job(&ops(), &first, "test").await.unwrap();
        if mode == OnLimit::Queue {
            env.store.cancel_job(&ops(), &second, "test").await.unwrap();
        }
    }
    env.cleanup().await;
}

const TIMED: &str = "name: timed\ntrigger: manual\ntimeout: PT1S\non_error: handler\nsteps:\n  - id: a\n    uses: audit.note\n    with: { message: x }\n";

async fn the_timeout_counts_from_the_first_start_across_resumes(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = executor(&env, catalog(&[TIMED]), None);
    let id = env.enqueue("timed", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let first = env
        .store
        .job_started_at(&id)
        .await
        .unwrap()
        .expect("started");
    // The first holder dies; the job goes back to the queue and is claimed again.
    env.store.defer_until(&lease, 0).await.unwrap();
    let lease = env.claim("w2", 30_000).await.expect("claimed again");
    assert_eq!(env.store.job_started_at(&id).await.unwrap(), Some(first));
    // Pretend the first start was five seconds ago: the second holder gets no time.
    env.store
        .tamper_for_tests("UPDATE jobs SET started_at_ms = started_at_ms - 5000")
        .await
        .unwrap();
    let RunOutcome::Failed(event) = exec.run_claimed(lease).await.unwrap() else {
        panic!("the execution times out")
    };
    assert_eq!(event.class, "timeout");
    assert!(event.message.contains("first start"), "{}", event.message);
    assert_eq!(env.actions("workflow.note").await, 0, "no step ran");
    assert_eq!(env.actions("workflow.failed").await, 1);
    assert_eq!(
        env.count("SELECT COUNT(*) FROM jobs WHERE workflow = 'handler'")
            .await,
        1,
        "the on_error workflow runs"
    );
    let handler: String = env
        .store
        .query_one_as("SELECT id FROM jobs WHERE workflow = 'handler'", vec![])
        .await
        .unwrap()
        .unwrap();
    env.store
        .cancel_job(&ops(), &handler, "test")
        .await
        .unwrap();
    // The same workflow with time left runs.
    let id = env.enqueue("timed", json!({})).await;
    let lease = env.claim("w3", 30_000).await.expect("a job");
    assert_eq!(lease.job_id, id);
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    env.cleanup().await;
}

const THREE: &str = "name: three\ntrigger: manual\npermissions: { hosts: [example.com] }\nsteps:\n  - id: a\n    uses: audit.note\n    with: { message: a }\n  - id: b\n    uses: http.request\n    with: { url: \"https://example.com/{{ steps.a.output.noted }}\" }\n  - id: c\n    uses: audit.note\n    with: { message: c }\n";

async fn a_cancelled_running_execution_stops_at_its_next_step_boundary(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let probe = Probe::new(&env.store, &[Act::Slow]);
    let exec = executor(&env, catalog(&[THREE]), Some(probe.clone()));
    // A queued execution never runs.
    let queued = env.enqueue("three", json!({})).await;
    assert_eq!(
        operate::cancel(&env.store, &ops(), &queued).await.unwrap(),
        JobState::Queued
    );
    assert!(env.claim("w0", 30_000).await.is_none());
    // A running one: cancelled while its step b runs.
    let id = env.enqueue("three", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    let store = env.store.clone();
    let id2 = id.clone();
    let canceller = tokio::spawn(async move {
        for _ in 0..100 {
            let j = store.journal(&id2).await.unwrap();
            if j.iter().any(|s| s.step_id == "b") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        operate::cancel(&store, &ops(), &id2).await.unwrap()
    });
    let ran = exec.run_claimed(lease).await;
    assert_eq!(canceller.await.unwrap(), JobState::Running);
    assert!(matches!(ran, Err(ExecError::Fenced)), "{ran:?}");
    let job = env.store.job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let journal = env.store.journal(&id).await.unwrap();
    let steps: Vec<_> = journal
        .iter()
        .map(|s| (s.step_id.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [("a", StepStatus::Succeeded), ("b", StepStatus::Failed)]
    );
    assert_eq!(journal[1].error.as_deref(), Some("cancelled"));
    assert_eq!(
        env.actions("probe.effect").await,
        0,
        "b's result was not committed"
    );
    assert_eq!(env.actions("workflow.note").await, 1, "c never ran");
    assert_eq!(env.actions("workflow.failed").await, 0, "no error event");
    assert_eq!(env.actions("job.cancel").await, 2);
    // A finished execution cannot be cancelled; nothing is written.
    let head = env.store.audit_head().await.unwrap();
    assert!(matches!(
        operate::cancel(&env.store, &ops(), &id).await,
        Err(RunError::Refused(_))
    ));
    assert!(matches!(
        operate::cancel(&env.store, &ops(), "job_nope").await,
        Err(RunError::UnknownRun(_))
    ));
    assert_eq!(env.store.audit_head().await.unwrap(), head);
    env.cleanup().await;
}

async fn a_rerun_from_a_step_does_not_repeat_the_steps_before_it(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let out = registry::apply(&env.store, &ops(), &[("three.yaml".into(), THREE.into())])
        .await
        .unwrap();
    assert!(
        matches!(out[0].applied, registry::Applied::Stored { .. }),
        "{out:?}"
    );
    let probe = Probe::new(&env.store, &[Act::FailTransient, Act::Succeed]);
    let exec = executor(&env, catalog(&[THREE]), Some(probe.clone()));
    let first = runs::enqueue_manual(&env.store, &ops(), "three", json!({}))
        .await
        .unwrap();
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert!(matches!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Failed(_)
    ));
    assert_eq!(env.actions("workflow.note").await, 1, "a ran, c did not");
    // Refused, writing nothing: an unknown step, a nested one.
    let head = env.store.audit_head().await.unwrap();
    for bad in ["nope", ""] {
        let r = operate::rerun(&env.store, &ops(), &first.execution, Some(bad)).await;
        assert!(matches!(r, Err(RunError::BadStep(_))), "{r:?}");
    }
    assert_eq!(env.store.audit_head().await.unwrap(), head);
    let again = operate::rerun(&env.store, &ops(), &first.execution, Some("b"))
        .await
        .unwrap();
    assert_eq!(again.version, first.version);
    let lease = env.claim("w2", 30_000).await.expect("the rerun");
    assert_eq!(lease.job_id, again.execution);
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(
        env.actions("workflow.note").await,
        2,
        "a did not run again; c ran"
    );
    let journal = env.store.journal(&again.execution).await.unwrap();
    let ids: Vec<_> = journal.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(probe.calls().len(), 2);
    assert_eq!(
        probe.calls()[1].0,
        format!("{}/b", again.execution),
        "the new execution's own key"
    );
    assert_eq!(env.actions("workflow.rerun").await, 1);
    // Without a step every step runs again.
    let all = operate::rerun(&env.store, &ops(), &again.execution, None)
        .await
        .unwrap();
    let lease = env.claim("w3", 30_000).await.expect("the rerun");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );
    assert_eq!(env.store.journal(&all.execution).await.unwrap().len(), 3);
    assert_eq!(env.actions("workflow.note").await, 4);
    let payload: String = env
        .store
        .query_one_as(
            "SELECT payload FROM jobs WHERE kind = $1 AND id = $2",
            sql_params![JOB_KIND, all.execution.as_str()],
        )
        .await
        .unwrap()
        .unwrap();
    let p: ExecutionPayload = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        (p.workflow.as_str(), p.version),
        ("three", Some(first.version))
    );
    env.cleanup().await;
}

async fn the_engine_prune_pass_keeps_the_newest_per_workflow(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = executor(&env, catalog(&[TIMED]), None);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(env.enqueue("timed", json!({})).await);
        let lease = env.claim("w", 30_000).await.expect("a job");
        assert_eq!(
            exec.run_claimed(lease).await.unwrap(),
            RunOutcome::Succeeded
        );
    }
    let running = env.enqueue("timed", json!({})).await;
    let config = EngineConfig {
        keep_per_workflow: 2,
        ..EngineConfig::default()
    };
    assert_eq!(prune_pass(&env.store, &config).await.unwrap(), 2);
    assert_eq!(prune_pass(&env.store, &config).await.unwrap(), 0);
    let left = runs::list(&env.store, Some("timed"), None, 100)
        .await
        .unwrap();
    let left: Vec<_> = left.iter().map(|r| r.id.clone()).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&running) && left.contains(&ids[3]) && left.contains(&ids[2]));
    assert!(env.store.journal(&ids[0]).await.unwrap().is_empty());
    env.cleanup().await;
}
