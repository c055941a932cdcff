//! The durable job queue: exactly-once claims, fencing, heartbeats, the reaper, dedup
//! and retries. Two `Store` handles on one database stand for two processes. The
//! journal, schedules and pruning are in `journal.rs`, with the helpers from here.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use stockade_core::{Actor, Environment};
use stockade_store::{
    AuditDetails, AuditEntry, Change, JobState, Lease, NewJob, StepOutcome, StepOutput, StepStatus,
    Store, StoreError, sql_params,
};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both};

both!(
    claims_are_exactly_once_under_eight_concurrent_claimers,
    a_stale_token_cannot_commit_over_its_successor,
    a_heartbeat_keeps_the_lease,
    the_reaper_requeues_in_bounded_batches_and_fails_jobs_out_of_attempts,
    enqueue_is_idempotent_on_its_dedup_key,
    a_retry_waits_for_its_backoff,
    fencing_holds_under_a_concurrent_takeover,
    a_job_enqueued_claimed_is_a_first_claim_and_expires_like_one,
    requiring_an_active_workflow_writes_nothing_when_it_is_not,
);

pub(crate) const KIND: &str = "test.job";

pub(crate) fn workflow_actor() -> Actor {
    Actor::Workflow("restock@3/exec-1".into())
}

pub(crate) async fn claim(store: &Store, worker: &str, lease_ms: i64) -> Lease {
    store
        .claim(worker, &[KIND], lease_ms)
        .await
        .unwrap()
        .expect("a due job")
}

pub(crate) async fn state(store: &Store, id: &str) -> JobState {
    store.job(id).await.unwrap().expect("job").state
}

pub(crate) async fn audit_len(store: &Store) -> i64 {
    store.audit_head().await.unwrap().map_or(0, |(seq, _)| seq)
}

pub(crate) async fn actions(store: &Store, action: &'static str) -> i64 {
    store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = $1",
            sql_params![action],
        )
        .await
        .unwrap()
}

pub(crate) fn effect(n: &str) -> Change {
    Change::event(AuditEntry::new(
        "test.effect",
        format!("effect:{n}"),
        AuditDetails::new(),
    ))
}

async fn claims_are_exactly_once_under_eight_concurrent_claimers(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let one = db.init(Environment::Dev).await;
    let two = db.open(Environment::Dev).await;
    const JOBS: usize = 60;
    for n in 0..JOBS {
        one.enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({ "n": n })))
            .await
            .unwrap();
    }
    // Another kind is never handed to these claimers.
    one.enqueue(&TEST_ACTOR, &NewJob::new("other.kind", json!({})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = if w % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(lease) = store
                .claim(&format!("worker-{w}"), &[KIND], 60_000)
                .await
                .unwrap()
            {
                got.push((lease.job_id, lease.token, lease.payload["n"].as_i64()));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let ids: BTreeSet<&str> = all.iter().map(|(id, _, _)| id.as_str()).collect();
    let ns: BTreeSet<Option<i64>> = all.iter().map(|(_, _, n)| *n).collect();
    assert_eq!(all.len(), JOBS, "every job claimed exactly once");
    assert_eq!(ids.len(), JOBS);
    assert_eq!(ns.len(), JOBS);
    assert!(all.iter().all(|(_, token, _)| *token == 1));
    let running = one
        .count(
            "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND kind = $1",
            sql_params![KIND],
        )
        .await
        .unwrap();
    assert_eq!(running, JOBS as i64);
    assert!(one.claim("late", &[KIND], 1000).await.unwrap().is_none());
    two.close().await;
    one.close().await;
    db.cleanup().await;
}

async fn a_stale_token_cannot_commit_over_its_successor(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let actor = workflow_actor();
    let job = store
        .enqueue(&actor, &NewJob::new(KIND, json!({})))
        .await
        .unwrap();
    let mut slow = claim(&store, "slow", 40).await;
    let step = store.start_step(&slow, "adjust").await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.reap_expired(100).await.unwrap().requeued, 1);
    let fast = claim(&store, "fast", 60_000).await;
    assert_eq!((fast.token, fast.attempt), (slow.token + 1, 2));

    // Every write of the slow worker is refused and writes nothing.
    let before = audit_len(&store).await;
    let ok = StepOutcome::Succeeded(StepOutput::Json(json!({ "qty": 1 })));
    let refused = [
        store
            .commit_step(&actor, &slow, &step, &ok, vec![effect("slow")])
            .await,
        store.complete(&actor, &slow, vec![effect("slow")]).await,
        store.fail(&actor, &slow, "late").await,
        store.retry_at(&actor, &slow, 0, "late").await,
        store.heartbeat(&mut slow, 60_000).await,
        store.start_step(&slow, "other").await.map(|_| ()),
    ];
    for r in refused {
        assert!(matches!(r, Err(StoreError::Fenced(_))), "{r:?}");
    }
    let raw = slow.fence();
    let fenced = store
        .commit(
            &actor,
            vec![Change::new(
                stockade_store::Mutation::Many {
                    steps: vec![raw],
                    guard: false,
                },
                AuditEntry::new("test.fenced", "x", AuditDetails::new()),
            )],
        )
        .await;
    assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
    assert_eq!(
        audit_len(&store).await,
        before,
        "no audit row from a stale worker"
    );
    let journal = store.journal(&job.id).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].status, StepStatus::Running);
    assert_eq!(journal[0].token, 1);
    let record = store.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.lease_owner.as_deref()),
        (JobState::Running, Some("fast"))
    );

    // The successor commits normally, and the slow worker cannot record its step late
    // under the successor's token either.
    let again = store.start_step(&fast, "adjust").await.unwrap();
    assert_eq!(again.attempt, 2);
    assert_eq!(again.idempotency_key, step.idempotency_key);
    let late = store.commit_step(&actor, &fast, &step, &ok, vec![]).await;
    assert!(matches!(late, Err(StoreError::NotFound(_))), "{late:?}");
    store
        .commit_step(&actor, &fast, &again, &ok, vec![effect("fast")])
        .await
        .unwrap();
    store.complete(&actor, &fast, vec![]).await.unwrap();
    assert_eq!(state(&store, &job.id).await, JobState::Succeeded);
    assert_eq!(actions(&store, "test.effect").await, 1);
    store.close().await;
    db.cleanup().await;
}

async fn a_heartbeat_keeps_the_lease(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let job = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})))
        .await
        .unwrap();
    let mut lease = claim(&store, "w", 1000).await;
    let first_expiry = lease.expires_at_ms;
    // 1.5 s of work on a 1 s lease: the heartbeats keep it.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        store.heartbeat(&mut lease, 1000).await.unwrap();
        assert_eq!(store.reap_expired(100).await.unwrap().requeued, 0);
    }
    assert!(lease.expires_at_ms >= first_expiry + 1400);
    let record = store.job(&job.id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Running);
    assert_eq!(record.lease_expires_at_ms, Some(lease.expires_at_ms));
    assert_eq!(record.lease_token, lease.token);
    // Without them, the reaper takes the job back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.reap_expired(100).await.unwrap().requeued, 1);
    let record = store.job(&job.id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Queued);
    assert_eq!((record.attempts, record.lease_owner), (1, None));
    assert!(record.last_error.unwrap().contains("lease expired"));
    let err = store.heartbeat(&mut lease, 1000).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced(_)), "{err}");
    store.close().await;
    db.cleanup().await;
}

async fn the_reaper_requeues_in_bounded_batches_and_fails_jobs_out_of_attempts(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let job = NewJob::new(KIND, json!({ "n": n })).max_attempts(2);
        ids.push(store.enqueue(&TEST_ACTOR, &job).await.unwrap().id);
    }
    // A live lease is left alone.
    let live = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})).run_at(0))
        .await
        .unwrap();
    let live_lease = claim(&store, "alive", 60_000).await;
    assert_eq!(live_lease.job_id, live.id, "the oldest due job first");
    for _ in 0..5 {
        claim(&store, "doomed", 1).await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let passes: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(store.reap_expired(2).await.unwrap().requeued);
        }
        v
    };
    assert_eq!(passes, vec![2, 2, 1, 0]);
    assert!(store.reap_expired(0).await.is_err(), "a batch is bounded");
    // Second and last attempt: the reaper fails them, audited, instead of looping.
    let mut last = Vec::new();
    for _ in 0..5 {
        let lease = claim(&store, "doomed", 1).await;
        assert_eq!(lease.attempt, 2);
        assert!(!lease.attempts_left());
        last.push(lease);
    }
    let retry = store
        .retry_at(&TEST_ACTOR, &last[0], 0, "again")
        .await
        .unwrap_err();
    assert!(matches!(retry, StoreError::Invalid(_)), "{retry}");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let report = store.reap_expired(3).await.unwrap();
    assert_eq!((report.requeued, report.failed), (0, 3));
    assert_eq!(store.reap_expired(10).await.unwrap().failed, 2);
    for id in &ids {
        let r = store.job(id).await.unwrap().unwrap();
        assert_eq!(r.state, JobState::Failed);
        assert!(r.finished_at_ms.is_some());
        assert!(r.last_error.unwrap().contains("last attempt"));
    }
    assert_eq!(state(&store, &live.id).await, JobState::Running);
    let by_reaper = store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = 'job.fail' AND actor = 'system:jobs'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(by_reaper, 5);
    store.close().await;
    db.cleanup().await;
}

async fn enqueue_is_idempotent_on_its_dedup_key(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let one = db.init(Environment::Dev).await;
    let two = db.open(Environment::Dev).await;
    let delivery = NewJob::new(KIND, json!({ "hook": 1 })).dedup_key("webhook:delivery-77");
    let first = one.enqueue(&TEST_ACTOR, &delivery).await.unwrap();
    assert!(first.created);
    let audit_before = audit_len(&one).await;
    // The same delivery again, eight times at once from two processes.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        let job = delivery.clone();
        tasks.push(tokio::spawn(async move {
            store.enqueue(&TEST_ACTOR, &job).await.unwrap()
        }));
    }
    for t in tasks {
        let again = t.await.unwrap();
        assert_eq!(
            (again.id.as_str(), again.created),
            (first.id.as_str(), false)
        );
    }
    assert_eq!(
        audit_len(&one).await,
        audit_before,
        "a duplicate writes no audit row"
    );
    // Concurrent first deliveries of a new key: one job.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move {
            let job = NewJob::new(KIND, json!({})).dedup_key("webhook:delivery-78");
            store.enqueue(&TEST_ACTOR, &job).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut seen = BTreeSet::new();
    for t in tasks {
        let e = t.await.unwrap();
        created += usize::from(e.created);
        seen.insert(e.id);
    }
    assert_eq!((created, seen.len()), (1, 1));
    // Keys are per kind; jobs without a key are never merged.
    let other = delivery.clone();
    let other = NewJob {
        kind: "other.kind".into(),
        ..other
    };
    assert!(one.enqueue(&TEST_ACTOR, &other).await.unwrap().created);
    for _ in 0..2 {
        let e = one
            .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})))
            .await
            .unwrap();
        assert!(e.created);
    }
    let jobs = one
        .count("SELECT COUNT(*) FROM jobs", vec![])
        .await
        .unwrap();
    assert_eq!(jobs, 5);
    assert_eq!(actions(&one, "job.enqueue").await, 5);
    for bad in [
        NewJob::new("Bad Kind", json!({})),
        NewJob::new(KIND, json!({})).dedup_key(""),
        NewJob::new(KIND, json!({})).max_attempts(0),
    ] {
        let err = one.enqueue(&TEST_ACTOR, &bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    two.close().await;
    one.close().await;
    db.cleanup().await;
}

async fn a_retry_waits_for_its_backoff(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let job = store
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})))
        .await
        .unwrap();
    let lease = claim(&store, "w", 60_000).await;
    let backoff = stockade_store::Backoff {
        base_ms: 300,
        factor: 2,
        max_ms: 10_000,
        jitter_percent: 0,
    };
    let run_at = stockade_core::time::now_ms() + backoff.delay_ms(lease.attempt);
    let long_error = "x".repeat(5000);
    store
        .retry_at(&TEST_ACTOR, &lease, run_at, &long_error)
        .await
        .unwrap();
    let record = store.job(&job.id).await.unwrap().unwrap();
    assert_eq!((record.state, record.run_at_ms), (JobState::Queued, run_at));
    assert_eq!(
        record.last_error.unwrap().chars().count(),
        stockade_store::jobs::MAX_ERROR_CHARS + 1,
        "stored errors are bounded"
    );
    assert!(
        store.claim("w", &[KIND], 1000).await.unwrap().is_none(),
        "not due yet"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let again = claim(&store, "w", 60_000).await;
    assert_eq!((again.attempt, again.token), (2, 2));
    // The old lease cannot retry or finish what the new one holds.
    let stale = store.retry_at(&TEST_ACTOR, &lease, 0, "stale").await;
    assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
    // A durable wait gives its attempt back and sleeps in the queue.
    let wake = stockade_core::time::now_ms() + 200;
    store.defer_until(&again, wake).await.unwrap();
    let record = store.job(&job.id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.attempts, record.run_at_ms),
        (JobState::Queued, 1, wake)
    );
    assert!(store.claim("w", &[KIND], 1000).await.unwrap().is_none());
    let stale = store.defer_until(&again, 0).await;
    assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let again = claim(&store, "w", 60_000).await;
    assert_eq!((again.attempt, again.token), (2, 3));
    store.complete(&TEST_ACTOR, &again, vec![]).await.unwrap();
    assert_eq!(actions(&store, "job.retry").await, 1);
    assert_eq!(actions(&store, "job.complete").await, 1);
    store.close().await;
    db.cleanup().await;
}

/// A worker that keeps committing while its lease expires and another process takes
/// the job over: once one of its commits is refused, none of its later commits lands,
/// and every commit it was told succeeded is in the journal with its effect.
async fn fencing_holds_under_a_concurrent_takeover(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let one = db.init(Environment::Dev).await;
    let two = db.open(Environment::Dev).await;
    let job = one
        .enqueue(&TEST_ACTOR, &NewJob::new(KIND, json!({})))
        .await
        .unwrap();
    let slow = claim(&one, "slow", 150).await;
    let worker = {
        let store = one.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for n in 0..5000 {
                let step_id = format!("s{n}");
                let r = match store.start_step(&slow, &step_id).await {
                    Ok(step) => {
                        let ok = StepOutcome::Succeeded(StepOutput::None);
                        store
                            .commit_step(&TEST_ACTOR, &slow, &step, &ok, vec![effect(&step_id)])
                            .await
                    }
                    Err(e) => Err(e),
                };
                let fenced = matches!(r, Err(StoreError::Fenced(_)));
                assert!(r.is_ok() || fenced, "{r:?}");
                results.push(r.is_ok());
                if results.iter().rev().take(20).all(|ok| !ok) && results.len() > 20 {
                    break;
                }
            }
            results
        })
    };
    let successor = loop {
        two.reap_expired(10).await.unwrap();
        if let Some(lease) = two.claim("fast", &[KIND], 60_000).await.unwrap() {
            break lease;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let results = worker.await.unwrap();
    assert_eq!(successor.token, 2);
    let first_refusal = results
        .iter()
        .position(|ok| !ok)
        .expect("the takeover fenced the worker");
    assert!(
        results[first_refusal..].iter().all(|ok| !ok),
        "no commit after the first refusal: {results:?}"
    );
    let committed = i64::try_from(first_refusal).unwrap();
    assert!(
        committed > 0,
        "the worker committed before its lease expired"
    );
    let journal = one.journal(&job.id).await.unwrap();
    let succeeded = journal
        .iter()
        .filter(|r| r.status == StepStatus::Succeeded)
        .count();
    assert_eq!(i64::try_from(succeeded).unwrap(), committed);
    assert!(journal.iter().all(|r| r.token == 1));
    assert_eq!(actions(&one, "test.effect").await, committed);
    two.close().await;
    one.close().await;
    db.cleanup().await;
}

async fn a_job_enqueued_claimed_is_a_first_claim_and_expires_like_one(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let mut lease = store
        .enqueue_claimed(
            &TEST_ACTOR,
            &NewJob::new(KIND, json!({ "n": 1 })),
            "w1",
            300,
        )
        .await
        .unwrap()
        .expect("written");
    assert_eq!((lease.token, lease.attempt), (1, 1));
    let record = store.job(&lease.job_id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Running);
    assert_eq!((record.attempts, record.lease_token), (1, 1));
    assert_eq!(record.lease_owner.as_deref(), Some("w1"));
    assert_eq!(record.lease_expires_at_ms, Some(lease.expires_at_ms));
    assert_eq!(actions(&store, "job.enqueue").await, 1);
    // Nobody else can claim it; its holder heartbeats and commits under token 1.
    assert!(store.claim("w2", &[KIND], 1000).await.unwrap().is_none());
    store.heartbeat(&mut lease, 300).await.unwrap();
    // Left to expire, the reaper re-queues it and the next claim fences the first holder.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.reap_expired(100).await.unwrap().requeued, 1);
    let next = claim(&store, "w2", 30_000).await;
    assert_eq!(
        (next.job_id.as_str(), next.token, next.attempt),
        (lease.job_id.as_str(), 2, 2)
    );
    let stale = store.complete(&workflow_actor(), &lease, vec![]).await;
    assert!(matches!(stale, Err(StoreError::Fenced(_))), "{stale:?}");
    store
        .complete(&workflow_actor(), &next, vec![])
        .await
        .unwrap();
    assert_eq!(state(&store, &next.job_id).await, JobState::Succeeded);
    store.close().await;
    db.cleanup().await;
}

async fn requiring_an_active_workflow_writes_nothing_when_it_is_not(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    store
        .tamper_for_tests(
            "INSERT INTO workflows (name, enabled, active_version, latest_version, created_at_ms, updated_at_ms)
             VALUES ('restock', 1, 3, 3, 1, 1), ('paused', 0, 1, 1, 1, 1)",
        )
        .await
        .unwrap();
    let job = |name: &str, v: i64| {
        NewJob::new(KIND, json!({ "workflow": name })).requiring_active(name, v)
    };
    // Active at that version: enqueued (either way).
    assert!(
        store
            .enqueue(&TEST_ACTOR, &job("restock", 3))
            .await
            .unwrap()
            .created
    );
    assert!(
        store
            .enqueue_claimed(&TEST_ACTOR, &job("restock", 3), "w", 1000)
            .await
            .unwrap()
            .is_some()
    );
    let (jobs, rows) = (count_jobs(&store).await, audit_len(&store).await);
    // Another version, a disabled or an unknown workflow: nothing, not even an audit row.
    for (name, v) in [("restock", 2), ("paused", 1), ("gone", 1)] {
        let err = store.enqueue(&TEST_ACTOR, &job(name, v)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(
            store
                .enqueue_claimed(&TEST_ACTOR, &job(name, v), "w", 1000)
                .await
                .unwrap()
                .is_none()
        );
        // Required in a larger commit: the whole commit is refused.
        let (_, change) =
            stockade_store::jobs::claimed_change(&job(name, v), "w", 1000, true).unwrap();
        let refused = store
            .commit(&TEST_ACTOR, vec![effect("before"), change])
            .await;
        assert!(refused.is_err(), "{refused:?}");
    }
    assert_eq!(
        (count_jobs(&store).await, audit_len(&store).await),
        (jobs, rows)
    );
    // A change by another author in one commit names that author on its row.
    let key = Actor::ApiKey("key_7".into());
    store
        .commit(
            &workflow_actor(),
            vec![effect("by-key").by(&key), effect("by-run")],
        )
        .await
        .unwrap();
    let last: Vec<String> = store
        .audit_rows(rows, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.actor)
        .collect();
    assert_eq!(last, vec![key.to_string(), workflow_actor().to_string()]);
    assert!(store.verify_audit(None).await.unwrap().problem.is_none());
    store.close().await;
    db.cleanup().await;
}

async fn count_jobs(store: &Store) -> i64 {
    store
        .count("SELECT COUNT(*) FROM jobs", vec![])
        .await
        .unwrap()
}
