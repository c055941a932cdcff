//! Retention of executions: finished jobs past the age or beyond the count per workflow
//! go in bounded batches with their journal; queued and running jobs stay; on SQLite the
//! freed pages are handed back and the file shrinks.

use serde_json::json;
use stockade_core::Environment;
use stockade_store::{NewJob, StepOutcome, StepOutput, Store, sql_params};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both};

both!(old_and_surplus_executions_are_pruned_in_batches);

async fn finished(store: &Store, workflow: &str, payload_bytes: usize) -> String {
    let job = NewJob::new(
        "workflow",
        json!({ "workflow": workflow, "pad": "x".repeat(payload_bytes) }),
    );
    let id = store.enqueue(&TEST_ACTOR, &job).await.unwrap().id;
    let lease = store
        .claim("w", &["workflow"], 30_000)
        .await
        .unwrap()
        .expect("due");
    assert_eq!(lease.job_id, id);
    let step = store.start_step(&lease, "a").await.unwrap();
    let out = StepOutcome::Succeeded(StepOutput::Json(
        json!({ "pad": "y".repeat(payload_bytes) }),
    ));
    store
        .commit_step(&TEST_ACTOR, &lease, &step, &out, vec![])
        .await
        .unwrap();
    store.complete(&TEST_ACTOR, &lease, vec![]).await.unwrap();
    id
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    store.count(sql, vec![]).await.unwrap()
}

async fn old_and_surplus_executions_are_pruned_in_batches(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let pad = if backend == Backend::Sqlite {
        20_000
    } else {
        10
    };
    for _ in 0..20 {
        finished(&store, "a", pad).await;
    }
    // Those twenty finished long ago.
    store
        .tamper_for_tests("UPDATE jobs SET finished_at_ms = 1000")
        .await
        .unwrap();
    for _ in 0..8 {
        finished(&store, "a", pad).await;
    }
    for _ in 0..8 {
        finished(&store, "b", pad).await;
    }
    let waiting = store
        .enqueue(
            &TEST_ACTOR,
            &NewJob::new("workflow", json!({ "workflow": "a" })),
        )
        .await
        .unwrap()
        .id;
    let other_kind = NewJob::new("backup", json!({}));
    store.enqueue(&TEST_ACTOR, &other_kind).await.unwrap();
    let lease = store
        .claim("w", &["backup"], 30_000)
        .await
        .unwrap()
        .unwrap();
    store.complete(&TEST_ACTOR, &lease, vec![]).await.unwrap();
    store
        .tamper_for_tests("UPDATE jobs SET finished_at_ms = 1000 WHERE kind = 'backup'")
        .await
        .unwrap();
    if let Some(path) = db.sqlite_path() {
        assert_eq!(count(&store, "PRAGMA auto_vacuum").await, 2, "incremental");
        store.checkpoint().await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        assert!(before > 1_000_000, "{before}");
    }
    let cutoff = stockade_core::time::now_ms() - 3_600_000;
    let mut calls = 0;
    let mut deleted = 0;
    loop {
        let r = store
            .prune_executions("workflow", cutoff, 5, 7)
            .await
            .unwrap();
        assert!(r.jobs <= 7, "bounded");
        calls += 1;
        deleted += r.jobs;
        if r.jobs < 7 {
            break;
        }
    }
    // 20 old + 3 surplus of "a", 3 surplus of "b".
    assert_eq!(deleted, 26);
    assert!(calls >= 4, "{calls} calls");
    let left: Vec<(Option<String>, i64)> = store
        .query_as(
            "SELECT workflow, COUNT(*) FROM jobs WHERE kind = 'workflow' AND finished_at_ms IS NOT NULL
              GROUP BY workflow ORDER BY workflow",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(left, [(Some("a".into()), 5), (Some("b".into()), 5)]);
    assert!(
        store.job(&waiting).await.unwrap().is_some(),
        "a queued job stays"
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM jobs WHERE kind = 'backup'").await,
        1,
        "another kind is not touched"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM job_steps WHERE job_id NOT IN (SELECT id FROM jobs)"
        )
        .await,
        0,
        "the journal went with its jobs"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM job_steps").await, 10);
    let kept: i64 = store
        .count(
            "SELECT COUNT(*) FROM jobs WHERE finished_at_ms >= $1",
            sql_params![cutoff],
        )
        .await
        .unwrap();
    assert_eq!(kept, 10, "only recent ones are kept");
    if let Some(path) = db.sqlite_path() {
        let before = std::fs::metadata(&path).unwrap().len();
        assert!(store.reclaim_space().await.unwrap());
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 2, "the file shrank: {before} -> {after}");
    } else {
        assert!(!store.reclaim_space().await.unwrap());
    }
    store.close().await;
    db.cleanup().await;
}
