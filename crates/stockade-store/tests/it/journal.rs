//! The job journal and what is built on it: the resume point after a crash, schedule
//! ticks that fire once, bounded pruning, and refused input.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use stockade_core::{Actor, Environment};
use stockade_store::{
    JobState, Lease, NewJob, StepOutcome, StepOutput, StepStarted, StepStatus, Store, StoreError,
};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both};
use crate::jobs::{KIND, actions, audit_len, claim, effect, state, workflow_actor};

both!(
    an_execution_resumes_after_a_crash_without_repeating_committed_steps,
    a_schedule_tick_fires_once_across_two_handles,
    pruning_is_bounded_by_age_and_count,
    bad_names_and_oversized_outputs_are_refused,
);

/// The rest of a resumed execution: the lost step again (same key, next attempt), a
/// failing step, and the job's completion.
async fn finish_resumed(store: &Store, actor: &Actor, lease: &Lease, lost: &StepStarted) {
    let rerun = store.start_step(lease, "notify").await.unwrap();
    assert_eq!(rerun.attempt, 2);
    assert_eq!(rerun.idempotency_key, lost.idempotency_key);
    let done = StepOutcome::Succeeded(StepOutput::None);
    store
        .commit_step(actor, lease, &rerun, &done, vec![effect("notify")])
        .await
        .unwrap();
    let failing = store.start_step(lease, "report").await.unwrap();
    let failed = StepOutcome::Failed("HTTP 503 from the report host".into());
    store
        .commit_step(actor, lease, &failing, &failed, vec![])
        .await
        .unwrap();
    store.complete(actor, lease, vec![]).await.unwrap();
}

async fn an_execution_resumes_after_a_crash_without_repeating_committed_steps(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let first_process = db.init(Environment::Dev).await;
    let actor = workflow_actor();
    let job = first_process
        .enqueue(&actor, &NewJob::new(KIND, json!({ "sku": "A-1" })))
        .await
        .unwrap();
    let lease = claim(&first_process, "process-1", 50).await;
    let sealed = vec![0xA5u8, 0, 0xFF, 7];
    let outputs = [
        ("fetch", StepOutput::Json(json!({ "orders": 2 }))),
        ("buyer", StepOutput::Sealed(sealed.clone())),
    ];
    for (step_id, output) in &outputs {
        let step = first_process.start_step(&lease, step_id).await.unwrap();
        let outcome = StepOutcome::Succeeded(output.clone());
        first_process
            .commit_step(&actor, &lease, &step, &outcome, vec![effect(step_id)])
            .await
            .unwrap();
    }
    // The third step starts, does its effect elsewhere, and the process dies before
    // committing it.
    let lost = first_process.start_step(&lease, "notify").await.unwrap();
    first_process.close().await;

    tokio::time::sleep(Duration::from_millis(100)).await;
    let second_process = db.open(Environment::Dev).await;
    assert_eq!(second_process.reap_expired(10).await.unwrap().requeued, 1);
    let lease = claim(&second_process, "process-2", 60_000).await;
    assert_eq!(lease.payload, json!({ "sku": "A-1" }));
    let resume = second_process.resume_point(&job.id).await.unwrap();
    let committed: Vec<(&str, &StepOutput)> = resume
        .committed
        .iter()
        .map(|r| (r.step_id.as_str(), &r.output))
        .collect();
    assert_eq!(
        committed,
        vec![("fetch", &outputs[0].1), ("buyer", &outputs[1].1)],
        "committed steps in order, outputs as stored (sealed bytes untouched)"
    );
    assert!(resume.succeeded("fetch") && resume.succeeded("buyer"));
    assert_eq!(resume.in_flight.len(), 1);
    let in_flight = &resume.in_flight[0];
    assert_eq!(in_flight, &lost);
    assert_eq!(in_flight.idempotency_key, format!("{}/notify", job.id));

    // Committed steps are never started again; the lost one re-runs with its key.
    for done in ["fetch", "buyer"] {
        let err = second_process.start_step(&lease, done).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
    finish_resumed(&second_process, &actor, &lease, &lost).await;

    let effects: BTreeMap<String, i64> = second_process
        .query_as::<(String, i64)>(
            "SELECT resource, COUNT(*) FROM audit WHERE action = 'test.effect' GROUP BY resource ORDER BY resource",
            vec![],
        )
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(effects.values().all(|n| *n == 1), "{effects:?}");
    assert_eq!(effects.len(), 3);
    let timeline: Vec<(String, i64, StepStatus)> = second_process
        .journal(&job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.step_id, r.attempt, r.status))
        .collect();
    assert_eq!(
        timeline,
        vec![
            ("fetch".into(), 1, StepStatus::Succeeded),
            ("buyer".into(), 1, StepStatus::Succeeded),
            ("notify".into(), 1, StepStatus::Running),
            ("notify".into(), 2, StepStatus::Succeeded),
            ("report".into(), 1, StepStatus::Failed),
        ]
    );
    let report = second_process.resume_point(&job.id).await.unwrap();
    assert_eq!(
        report.committed("report").unwrap().error.as_deref(),
        Some("HTTP 503 from the report host")
    );
    // Every outcome is audited as the workflow execution.
    let by_workflow = second_process
        .count(
            "SELECT COUNT(*) FROM audit WHERE actor = 'workflow:restock@3/exec-1' AND action LIKE 'job.%'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        by_workflow,
        1 + 4 + 1,
        "enqueue, four step commits, complete"
    );
    assert_eq!(state(&second_process, &job.id).await, JobState::Succeeded);
    second_process.close().await;
    db.cleanup().await;
}

async fn a_schedule_tick_fires_once_across_two_handles(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let one = db.init(Environment::Dev).await;
    let two = db.open(Environment::Dev).await;
    let tick = 1_800_000_000_000_i64;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let job = NewJob::new(KIND, json!({ "tick": tick }));
            store
                .fire_schedule(&TEST_ACTOR, "nightly-restock", tick, &job)
                .await
                .unwrap()
        }));
    }
    let mut fired = Vec::new();
    for t in tasks {
        fired.extend(t.await.unwrap());
    }
    assert_eq!(fired.len(), 1, "one tick, one job");
    let jobs = one
        .count("SELECT COUNT(*) FROM jobs", vec![])
        .await
        .unwrap();
    assert_eq!(jobs, 1);
    assert_eq!(actions(&one, "schedule.fire").await, 1);
    let lease = claim(&two, "w", 1000).await;
    assert_eq!(lease.job_id, fired[0]);

    // A tick whose job cannot be inserted is not taken.
    let taken = NewJob::new(KIND, json!({})).dedup_key("taken");
    one.enqueue(&TEST_ACTOR, &taken).await.unwrap();
    let later = tick + 120_000;
    let refused = one
        .fire_schedule(&TEST_ACTOR, "weekly", later, &taken)
        .await;
    assert!(
        matches!(refused, Err(StoreError::NotFound(_))),
        "{refused:?}"
    );
    let fresh = NewJob::new(KIND, json!({}));
    let fired_later = one
        .fire_schedule(&TEST_ACTOR, "weekly", later, &fresh)
        .await;
    assert!(fired_later.unwrap().is_some());
    assert_eq!(one.last_tick("weekly").await.unwrap(), Some(later));

    // The bare claim, across handles and a restart.
    let next = tick + 60_000;
    let (a, b) = tokio::join!(
        one.claim_tick(&TEST_ACTOR, "nightly-restock", next),
        two.claim_tick(&TEST_ACTOR, "nightly-restock", next),
    );
    assert_ne!(a.unwrap(), b.unwrap(), "exactly one of two claims wins");
    two.close().await;
    one.close().await;
    let restarted = db.open(Environment::Dev).await;
    assert!(
        !restarted
            .claim_tick(&TEST_ACTOR, "nightly-restock", next)
            .await
            .unwrap()
    );
    assert!(
        restarted
            .claim_tick(&TEST_ACTOR, "hourly", next)
            .await
            .unwrap()
    );
    assert_eq!(
        restarted.last_tick("nightly-restock").await.unwrap(),
        Some(next)
    );
    assert_eq!(restarted.last_tick("never").await.unwrap(), None);
    // Pruning keeps each schedule's newest tick for the catch-up rule.
    let far_future = i64::MAX;
    assert_eq!(restarted.prune_ticks(far_future, 100).await.unwrap(), 1);
    assert_eq!(
        restarted.last_tick("nightly-restock").await.unwrap(),
        Some(next)
    );
    assert_eq!(restarted.last_tick("weekly").await.unwrap(), Some(later));
    assert_eq!(restarted.last_tick("hourly").await.unwrap(), Some(next));
    // A pruned tick, or one behind the newest, never fires (ticks only move forward).
    for old in [tick, next, next - 1] {
        assert!(
            !restarted
                .claim_tick(&TEST_ACTOR, "nightly-restock", old)
                .await
                .unwrap(),
            "{old}"
        );
    }
    assert!(
        restarted
            .claim_tick(&TEST_ACTOR, "nightly-restock", next + 60_000)
            .await
            .unwrap()
    );
    restarted.close().await;
    db.cleanup().await;
}

async fn finished_job(store: &Store, n: i64, succeed: bool) -> String {
    let job = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({ "n": n })))
        .await
        .unwrap();
    let lease = claim(store, "w", 60_000).await;
    assert_eq!(lease.job_id, job.id);
    let step = store.start_step(&lease, "only").await.unwrap();
    let done = StepOutcome::Succeeded(StepOutput::Json(json!(n)));
    store
        .commit_step(&TEST_ACTOR, &lease, &step, &done, vec![])
        .await
        .unwrap();
    if succeed {
        store.complete(&TEST_ACTOR, &lease, vec![]).await.unwrap();
    } else {
        store.fail(&TEST_ACTOR, &lease, "boom").await.unwrap();
    }
    // Distinct finish times, so "oldest" is well defined.
    tokio::time::sleep(Duration::from_millis(3)).await;
    job.id
}

async fn pruning_is_bounded_by_age_and_count(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let mut finished = Vec::new();
    for n in 0..7 {
        finished.push(finished_job(&store, n, n % 3 != 0).await);
    }
    let queued = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})).run_at(i64::MAX))
        .await
        .unwrap();
    let running = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})))
        .await
        .unwrap();
    let lease = claim(&store, "w", 60_000).await;
    store.start_step(&lease, "busy").await.unwrap();
    let steps = |store: Store| async move {
        store
            .count("SELECT COUNT(*) FROM job_steps", vec![])
            .await
            .unwrap()
    };
    assert_eq!(steps(store.clone()).await, 8);

    // By age, three at a time: the oldest first.
    let cutoff = stockade_core::time::now_ms() + 1000;
    assert_eq!(store.prune_jobs(cutoff, 100, 3).await.unwrap(), 3);
    for id in &finished[..3] {
        assert!(store.job(id).await.unwrap().is_none());
        assert!(
            store.journal(id).await.unwrap().is_empty(),
            "journal goes too"
        );
    }
    assert_eq!(steps(store.clone()).await, 5);
    // By count: keep the newest two finished jobs.
    assert_eq!(store.prune_jobs(0, 2, 1).await.unwrap(), 1);
    assert_eq!(store.prune_jobs(0, 2, 100).await.unwrap(), 1);
    assert_eq!(store.prune_jobs(0, 2, 100).await.unwrap(), 0);
    for id in &finished[..5] {
        assert!(store.job(id).await.unwrap().is_none());
    }
    for id in &finished[5..] {
        assert!(store.job(id).await.unwrap().is_some());
    }
    // Unfinished jobs are never pruned.
    assert_eq!(store.prune_jobs(i64::MAX, 0, 100).await.unwrap(), 2);
    assert_eq!(state(&store, &queued.id).await, JobState::Queued);
    assert_eq!(state(&store, &running.id).await, JobState::Running);
    assert_eq!(steps(store.clone()).await, 1);
    store.close().await;
    db.cleanup().await;
}

async fn bad_names_and_oversized_outputs_are_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let job = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})))
        .await
        .unwrap();
    for (worker, kinds, lease_ms) in [
        ("", &[KIND][..], 1000),
        ("w", &[][..], 1000),
        ("w", &["NOT A KIND"][..], 1000),
        ("w", &[KIND][..], 0),
    ] {
        let err = store.claim(worker, kinds, lease_ms).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    let lease = claim(&store, "w", 60_000).await;
    for bad in ["", "a\nb", &"s".repeat(201)] {
        let err = store.start_step(&lease, bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    let step = store.start_step(&lease, "big").await.unwrap();
    let before = audit_len(&store).await;
    let huge = StepOutcome::Succeeded(StepOutput::Sealed(vec![0; (1 << 20) + 1]));
    let err = store
        .commit_step(&TEST_ACTOR, &lease, &step, &huge, vec![effect("big")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(audit_len(&store).await, before, "a refusal writes nothing");
    assert_eq!(
        store.journal(&job.id).await.unwrap()[0].status,
        StepStatus::Running
    );
    // The same step committed twice: the second is refused.
    let small = StepOutcome::Succeeded(StepOutput::Json(json!("ok")));
    store
        .commit_step(&TEST_ACTOR, &lease, &step, &small, vec![])
        .await
        .unwrap();
    let twice = store
        .commit_step(&TEST_ACTOR, &lease, &step, &small, vec![effect("twice")])
        .await;
    assert!(matches!(twice, Err(StoreError::NotFound(_))), "{twice:?}");
    assert_eq!(actions(&store, "test.effect").await, 0);
    store.close().await;
    db.cleanup().await;
}
