//! The engine on both backends: a run enqueued for an applied workflow is claimed and
//! completed by its workers (journal, audit row under the workflow's actor); a pinned job
//! runs its own version; a disabled workflow does not run; an engine stopped mid-run
//! leaves the job resumable, and another engine finishes it without repeating the
//! committed step; a waiting run frees its worker and finishes under a new engine.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stockade_core::Actor;
use stockade_store::{JobState, StepStatus};
use stockade_workflows::engine::{Engine, EngineConfig, StoredDefinitions};
use stockade_workflows::exec::{ExecutionPayload, Executor};
use stockade_workflows::{registry, runs};

use crate::exec_support::{Act, Backend, Env, Probe, both};

const V1: &str = "name: nightly\ntrigger: manual\nsteps:\n  - id: a\n    uses: audit.note\n    with: { message: \"first\" }\n  - id: b\n    uses: audit.note\n    with: { message: \"second\" }\n";
const V2: &str = "name: nightly\ntrigger: manual\nsteps:\n  - id: only\n    uses: audit.note\n    with: { message: \"v2\" }\n";

fn ops() -> Actor {
    Actor::User("usr_ops".into())
}

fn fast() -> EngineConfig {
    EngineConfig {
        workers: 2,
        lease_ms: 2_000,
        poll: Duration::from_millis(50),
        reap_every: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

async fn apply(env: &Env, text: &str) {
    let out = registry::apply(&env.store, &ops(), &[("nightly.yaml".into(), text.into())])
        .await
        .unwrap();
    assert!(
        matches!(out[0].applied, registry::Applied::Stored { .. }),
        "{:?}",
        out[0]
    );
}

async fn enqueue(env: &Env, version: Option<i64>) -> String {
    let mut p = ExecutionPayload::new("nightly", json!({}), json!({ "manual": true }));
    p.version = version;
    env.store.enqueue(&ops(), &p.job()).await.unwrap().id
}

async fn until_finished(env: &Env, job: &str) -> JobState {
    for _ in 0..200 {
        let state = env.store.job(job).await.unwrap().unwrap().state;
        if matches!(state, JobState::Succeeded | JobState::Failed) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} did not finish");
}

async fn workflow_actors(env: &Env, action: &str) -> Vec<String> {
    env.store
        .audit_rows(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .map(|r| r.actor)
        .collect()
}

async fn runs_an_applied_workflow(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env, V1).await;
    let engine = Engine::start(env.store.clone(), fast());
    let job = enqueue(&env, None).await;
    assert_eq!(until_finished(&env, &job).await, JobState::Succeeded);
    let journal = env.store.journal(&job).await.unwrap();
    let done: Vec<_> = journal
        .iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .map(|s| s.step_id.as_str())
        .collect();
    assert_eq!(done, ["a", "b"]);
    let actors = workflow_actors(&env, "workflow.note").await;
    assert_eq!(actors.len(), 2, "{actors:?}");
    assert!(
        actors
            .iter()
            .all(|a| a == &format!("workflow:nightly@1/{job}"))
    );

    // Version 2 becomes active; a job pinned to 1 still runs version 1.
    apply(&env, V2).await;
    let pinned = enqueue(&env, Some(1)).await;
    let current = enqueue(&env, None).await;
    assert_eq!(until_finished(&env, &pinned).await, JobState::Succeeded);
    assert_eq!(until_finished(&env, &current).await, JobState::Succeeded);
    let steps = |j: String| {
        let store = env.store.clone();
        async move {
            let journal = store.journal(&j).await.unwrap();
            journal.into_iter().map(|s| s.step_id).collect::<Vec<_>>()
        }
    };
    assert_eq!(steps(pinned).await, ["a", "b"]);
    assert_eq!(steps(current.clone()).await, ["only"]);
    let actors = workflow_actors(&env, "workflow.note").await;
    assert!(actors.contains(&format!("workflow:nightly@2/{current}")));

    // A disabled workflow does not run: its job fails, nothing is noted.
    registry::set_enabled(&env.store, &ops(), "nightly", false)
        .await
        .unwrap();
    let before = workflow_actors(&env, "workflow.note").await.len();
    let off = enqueue(&env, None).await;
    assert_eq!(until_finished(&env, &off).await, JobState::Failed);
    assert_eq!(workflow_actors(&env, "workflow.note").await.len(), before);

    engine.stop(Duration::from_secs(2)).await;
    env.cleanup().await;
}

async fn a_stopped_engine_leaves_the_run_resumable(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env, V1).await;
    // Step a commits, step b hangs: the engine is stopped in the middle of b.
    let probe = Probe::new(&env.store, &[Act::Succeed, Act::Hang]);
    let defs = Arc::new(StoredDefinitions::new(env.store.clone()));
    let exec = Executor::new(env.store.clone(), defs.clone())
        .lease_ms(2_000)
        .with_handler("audit.note", probe.clone());
    let first = Engine::start_with(env.store.clone(), defs, Arc::new(exec), fast());
    let job = enqueue(&env, None).await;
    for _ in 0..200 {
        if probe.calls().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(probe.calls().len(), 2, "step b is in flight");
    first.stop(Duration::from_millis(100)).await;
    let held = env.store.job(&job).await.unwrap().unwrap();
    assert_eq!(held.state, JobState::Running, "abandoned, not failed");

    // Another engine (another process) takes it over once the lease expires.
    let second = Engine::start(env.store.clone(), fast());
    assert_eq!(until_finished(&env, &job).await, JobState::Succeeded);
    second.stop(Duration::from_secs(2)).await;
    let journal = env.store.journal(&job).await.unwrap();
    let a: Vec<_> = journal.iter().filter(|s| s.step_id == "a").collect();
    assert_eq!(a.len(), 1, "step a ran once: {journal:?}");
    assert_eq!(workflow_actors(&env, "probe.effect").await.len(), 1);
    // Step b ran again under the same idempotency key, by the second engine's handler.
    assert_eq!(workflow_actors(&env, "workflow.note").await.len(), 1);
    let b: Vec<_> = journal.iter().filter(|s| s.step_id == "b").collect();
    assert_eq!(b.last().unwrap().status, StepStatus::Succeeded);
    env.cleanup().await;
}

async fn manual_runs_are_pinned_listed_and_shown(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let jobs = "SELECT COUNT(*) FROM jobs";
    let refused = runs::enqueue_manual(&env.store, &ops(), "nightly", json!({})).await;
    assert!(matches!(refused, Err(runs::RunError::NotRunnable(_))));
    apply(&env, V1).await;
    let bad = runs::enqueue_manual(&env.store, &ops(), "nightly", json!({ "x": 1 })).await;
    assert!(matches!(bad, Err(runs::RunError::BadInputs(_))), "{bad:?}");
    assert_eq!(env.count(jobs).await, 0, "a refusal enqueues nothing");

    let first = runs::enqueue_manual(&env.store, &ops(), "nightly", json!({}))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    // Version 2 is applied while the run waits: the run still runs version 1.
    apply(&env, V2).await;
    let engine = Engine::start(env.store.clone(), fast());
    assert_eq!(
        until_finished(&env, &first.execution).await,
        JobState::Succeeded
    );
    engine.stop(Duration::from_secs(2)).await;

    let (row, steps) = runs::show(&env.store, &first.execution).await.unwrap();
    assert_eq!((row.workflow.as_str(), row.version), ("nightly", Some(1)));
    assert_eq!(row.attempts, 1);
    assert!(row.took_ms().is_some_and(|t| t >= 0));
    let ids: Vec<_> = steps.iter().map(|s| s.step_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);

    let queued = enqueue(&env, None).await;
    let all = runs::list(&env.store, Some("nightly"), None, 50)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, queued, "newest first");
    let done = runs::list(&env.store, None, Some(JobState::Succeeded), 50)
        .await
        .unwrap();
    assert_eq!(done.len(), 1);
    assert!(
        runs::list(&env.store, Some("other"), None, 50)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        runs::show(&env.store, "job_missing").await,
        Err(runs::RunError::UnknownRun(_))
    ));
    env.cleanup().await;
}

const PAUSE: &str = "name: pause\ntrigger: manual\nsteps:\n  - id: w\n    uses: wait\n    with: { duration: PT1S }\n  - id: done\n    uses: audit.note\n    with: { message: \"after the wait\" }\n";

async fn a_waiting_run_frees_its_worker_and_finishes_after_a_restart(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    apply(&env, V1).await;
    apply(&env, PAUSE).await;
    let one = EngineConfig {
        workers: 1,
        ..fast()
    };
    let first = Engine::start(env.store.clone(), one.clone());
    let p = ExecutionPayload::new("pause", json!({}), json!({ "manual": true }));
    let paused = env.store.enqueue(&ops(), &p.job()).await.unwrap().id;
    for _ in 0..100 {
        if env
            .store
            .journal(&paused)
            .await
            .unwrap()
            .iter()
            .any(|s| s.step_id == "w~due")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The only worker is free: another run finishes while the first waits.
    let other = enqueue(&env, None).await;
    assert_eq!(until_finished(&env, &other).await, JobState::Succeeded);
    let waiting = env.store.job(&paused).await.unwrap().unwrap();
    assert_eq!(
        waiting.state,
        JobState::Queued,
        "waiting in the queue, not on a worker"
    );
    first.stop(Duration::from_secs(1)).await;

    // A new engine (a restarted process) finishes it once it is due.
    let second = Engine::start(env.store.clone(), one);
    assert_eq!(until_finished(&env, &paused).await, JobState::Succeeded);
    second.stop(Duration::from_secs(1)).await;
    let journal = env.store.journal(&paused).await.unwrap();
    let due = journal.iter().find(|s| s.step_id == "w~due").unwrap();
    let done = journal.iter().find(|s| s.step_id == "done").unwrap();
    let stockade_store::StepOutput::Json(marker) = &due.output else {
        panic!("the due time is journaled");
    };
    let due_ms = marker["due_ms"].as_i64().unwrap();
    assert!(due_ms >= due.started_at_ms + 900, "{journal:?}");
    assert!(done.started_at_ms >= due_ms, "{journal:?}");
    env.cleanup().await;
}

both!(
    runs_an_applied_workflow,
    a_stopped_engine_leaves_the_run_resumable,
    manual_runs_are_pinned_listed_and_shown,
    a_waiting_run_frees_its_worker_and_finishes_after_a_restart
);
