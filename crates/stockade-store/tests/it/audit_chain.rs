//! The audit chain: tampering of every kind is found and named; concurrent writers
//! (tasks, and several stores on one database as separate processes would be) still
//! produce one valid chain.

use std::sync::Arc;

use stockade_core::Environment;
use stockade_store::{
    Anchor, AuditDetails, AuditEntry, Change, Expect, Mutation, ProblemKind, Store, StoreError,
    StoreOptions,
};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both, event};

both!(
    altered_row_is_named,
    deleted_rows_are_named,
    inserted_row_is_named,
    reordered_rows_are_named,
    rewritten_hash_breaks_the_next_link,
    truncation_is_found_with_an_anchor,
    foreign_environment_row_is_named,
    concurrent_tasks_build_one_chain,
    a_failing_commit_among_concurrent_ones_is_rolled_back_alone,
    several_stores_on_one_database_build_one_chain,
    export_pages_cover_the_chain_in_order,
    the_watched_chain_checks_only_appended_rows_and_finds_a_bad_one,
);

/// A store with 20 extra event rows; returns it and the seq of the last row.
async fn chain(db: &TestDb) -> (Store, i64) {
    let store = db.init(Environment::Dev).await;
    let mut last = 0;
    for i in 0..20 {
        last = store
            .commit(&TEST_ACTOR, vec![event(i)])
            .await
            .unwrap()
            .last_seq;
    }
    assert_eq!(store.verify_audit(None).await.unwrap().problem, None);
    (store, last)
}

async fn expect_problem(store: &Store, seq: i64, kind: fn(&ProblemKind) -> bool) {
    let report = store.verify_audit(None).await.unwrap();
    let problem = report.problem.expect("tampering must be found");
    assert_eq!(problem.seq, seq, "{problem}");
    assert!(kind(&problem.kind), "{problem}");
    assert_eq!(report.rows_checked as i64, seq - 1);
}

async fn altered_row_is_named(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, _) = chain(&db).await;
    store
        .tamper_for_tests("UPDATE audit SET details = '{\"n\":99}' WHERE seq = 12")
        .await
        .unwrap();
    expect_problem(&store, 12, |k| *k == ProblemKind::Altered).await;
    store.close().await;
    db.cleanup().await;
}

async fn deleted_rows_are_named(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, _) = chain(&db).await;
    store
        .tamper_for_tests("DELETE FROM audit WHERE seq IN (9, 10)")
        .await
        .unwrap();
    expect_problem(&store, 9, |k| {
        *k == ProblemKind::Missing { next_present: 11 }
    })
    .await;
    store
        .tamper_for_tests("DELETE FROM audit WHERE seq = 1")
        .await
        .unwrap();
    expect_problem(&store, 1, |k| matches!(k, ProblemKind::Missing { .. })).await;
    store.close().await;
    db.cleanup().await;
}

async fn inserted_row_is_named(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, _) = chain(&db).await;
    // Make room at 8 by shifting later rows up, then insert a copy of row 3 there.
    store
        .tamper_for_tests("UPDATE audit SET seq = -seq - 1 WHERE seq >= 8")
        .await
        .unwrap();
    store
        .tamper_for_tests("UPDATE audit SET seq = -seq WHERE seq < 0")
        .await
        .unwrap();
    store
        .tamper_for_tests(
            "INSERT INTO audit (seq, ts_ms, env, actor, action, resource, details, prev_hash, hash)
             SELECT 8, ts_ms, env, actor, action, resource, details, prev_hash, hash FROM audit WHERE seq = 3",
        )
        .await
        .unwrap();
    expect_problem(&store, 8, |k| {
        matches!(k, ProblemKind::BrokenLink | ProblemKind::Altered)
    })
    .await;
    store.close().await;
    db.cleanup().await;
}

async fn reordered_rows_are_named(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, _) = chain(&db).await;
    store
        .tamper_for_tests("UPDATE audit SET seq = -seq WHERE seq IN (14, 15)")
        .await
        .unwrap();
    store
        .tamper_for_tests("UPDATE audit SET seq = 15 WHERE seq = -14")
        .await
        .unwrap();
    store
        .tamper_for_tests("UPDATE audit SET seq = 14 WHERE seq = -15")
        .await
        .unwrap();
    expect_problem(&store, 14, |k| {
        matches!(k, ProblemKind::BrokenLink | ProblemKind::Altered)
    })
    .await;
    store.close().await;
    db.cleanup().await;
}

async fn rewritten_hash_breaks_the_next_link(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, _) = chain(&db).await;
    // An attacker who rewrites row 6 and gives it a self-consistent hash still breaks
    // row 7's link to it; here we copy row 2's hash into row 6 to stand for that.
    store
        .tamper_for_tests(
            "UPDATE audit SET hash = (SELECT hash FROM audit WHERE seq = 2) WHERE seq = 6",
        )
        .await
        .unwrap();
    expect_problem(&store, 6, |k| *k == ProblemKind::Altered).await;
    store
        .tamper_for_tests(
            "UPDATE audit SET prev_hash = (SELECT hash FROM audit WHERE seq = 1) WHERE seq = 4",
        )
        .await
        .unwrap();
    expect_problem(&store, 4, |k| *k == ProblemKind::BrokenLink).await;
    store.close().await;
    db.cleanup().await;
}

async fn truncation_is_found_with_an_anchor(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, last) = chain(&db).await;
    let (seq, hash) = store.verify_audit(None).await.unwrap().head.unwrap();
    assert_eq!(seq, last);
    let anchor = Anchor { seq, hash };
    assert_eq!(
        store.verify_audit(Some(anchor)).await.unwrap().problem,
        None
    );
    store
        .tamper_for_tests(&format!("DELETE FROM audit WHERE seq >= {}", last - 2))
        .await
        .unwrap();
    // Without the anchor a cut tail is indistinguishable from a shorter chain...
    assert_eq!(store.verify_audit(None).await.unwrap().problem, None);
    // ...with it, the cut is found.
    let problem = store
        .verify_audit(Some(anchor))
        .await
        .unwrap()
        .problem
        .expect("truncation found");
    assert_eq!(problem.kind, ProblemKind::AnchorMismatch);
    store.close().await;
    db.cleanup().await;
}

async fn foreign_environment_row_is_named(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, _) = chain(&db).await;
    store
        .tamper_for_tests("UPDATE audit SET env = 'prod' WHERE seq = 5")
        .await
        .unwrap();
    expect_problem(
        &store,
        5,
        |k| matches!(k, ProblemKind::ForeignEnvironment(e) if e == "prod"),
    )
    .await;
    store.close().await;
    db.cleanup().await;
}

async fn concurrent_tasks_build_one_chain(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let start = store.verify_audit(None).await.unwrap().rows_checked;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let changes = (0..(1 + i % 3))
                    .map(|k| event(t * 1000 + i * 10 + k))
                    .collect();
                store.commit(&TEST_ACTOR, changes).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = store.verify_audit(None).await.unwrap();
    assert_eq!(report.problem, None);
    // Each task commits 25 times with 1, 2 or 3 rows: 9×1 + 8×2 + 8×3 = 49 rows.
    assert_eq!(report.rows_checked, start + 8 * 49);
    store.close().await;
    db.cleanup().await;
}

/// Commits arriving together are written in one transaction (SQLite's group commit, tried
/// first without a savepoint per commit): one of them failing half-way must leave nothing
/// of itself and take nothing of the others with it.
async fn a_failing_commit_among_concurrent_ones_is_rolled_back_alone(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let start = store.verify_audit(None).await.unwrap().rows_checked;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..25 {
                let n = t * 1000 + i * 10;
                let mut changes = vec![event(n), event(n + 1)];
                if i % 5 == 2 {
                    // Its first change applies, its second finds nothing to update.
                    changes.push(Change::new(
                        Mutation::Sql {
                            statement: "UPDATE stockade_meta SET value = value WHERE key = 'no such key'",
                            params: vec![],
                            expect: Expect::One("a meta row that does not exist"),
                        },
                        AuditEntry::new("test.fail", "meta:none", AuditDetails::new()),
                    ));
                }
                match store.commit(&TEST_ACTOR, changes).await {
                    Ok(_) => assert!(i % 5 != 2, "commit {n} should have failed"),
                    Err(StoreError::NotFound(_)) if i % 5 == 2 => failed += 1,
                    Err(e) => panic!("commit {n}: {e}"),
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    assert_eq!(failed, 8 * 5);
    let report = store.verify_audit(None).await.unwrap();
    assert_eq!(report.problem, None);
    // 20 successful commits of 2 rows per task; nothing of the failed ones.
    assert_eq!(report.rows_checked, start + 8 * 20 * 2);
    let leftovers = store
        .count(
            "SELECT COUNT(*) FROM audit WHERE action = 'test.event' AND resource LIKE 'thing:%2_'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(leftovers, 0);
    store.close().await;
    db.cleanup().await;
}

async fn several_stores_on_one_database_build_one_chain(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    db.init(Environment::Dev).await.close().await;
    // Separate stores have separate writer threads (SQLite) or connection pools
    // (PostgreSQL), exactly as separate processes would.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(
            Store::open(&db.url, Environment::Dev, &StoreOptions::default())
                .await
                .unwrap(),
        ));
    }
    let start = stores[0].verify_audit(None).await.unwrap().rows_checked;
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..2 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                for i in 0..30 {
                    store
                        .commit(
                            &TEST_ACTOR,
                            vec![event(s * 10_000 + t * 1000 + i), event(i)],
                        )
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let report = stores[0].verify_audit(None).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.rows_checked, start + 4 * 2 * 30 * 2);
    db.cleanup().await;
}

async fn export_pages_cover_the_chain_in_order(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, last) = chain(&db).await;
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_rows(after, 7).await.unwrap();
        let Some(tail) = page.last() else { break };
        after = tail.seq;
        seqs.extend(page.iter().map(|r| r.seq));
    }
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    store.close().await;
    db.cleanup().await;
}

/// The console's view of the chain: the first check walks it all, later ones only the
/// rows appended since (linked to the last good hash); an appended row that does not
/// follow is found, and a problem makes the next check walk everything again.
async fn the_watched_chain_checks_only_appended_rows_and_finds_a_bad_one(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let (store, last) = chain(&db).await;
    let first = store.watched_audit().await.unwrap();
    assert_eq!(first.report.problem, None);
    assert_eq!(first.report.rows_checked as i64, last);
    assert!(first.full_walk_at_ms.is_some());
    for i in 0..3 {
        store
            .commit(&TEST_ACTOR, vec![event(100 + i)])
            .await
            .unwrap();
    }
    let next = store.watched_audit().await.unwrap();
    assert_eq!(next.report.problem, None);
    assert_eq!(
        next.report.rows_checked, 3,
        "only the appended rows are read"
    );
    assert_eq!(next.rows_verified as i64, last + 3);
    assert_eq!(next.report.head.unwrap().0, last + 3);
    // Nothing appended: nothing read, the head stays.
    let idle = store.watched_audit().await.unwrap();
    assert_eq!(idle.report.rows_checked, 0);
    assert_eq!(idle.report.head.unwrap().0, last + 3);
    // An appended row altered behind the store's back is found by the next view.
    store.commit(&TEST_ACTOR, vec![event(200)]).await.unwrap();
    let bad = last + 4;
    store
        .tamper_for_tests(&format!(
            "UPDATE audit SET actor = 'user:x' WHERE seq = {bad}"
        ))
        .await
        .unwrap();
    let found = store.watched_audit().await.unwrap();
    assert_eq!(found.report.problem.expect("found").seq, bad);
    assert_eq!(found.full_walk_at_ms, None);
    // The next view walks the whole chain again and still names it.
    let again = store.watched_audit().await.unwrap();
    assert_eq!(again.report.problem.expect("found").seq, bad);
    assert_eq!(again.report.rows_checked as i64, bad - 1);
}
