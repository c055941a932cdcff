//! PostgreSQL losing a connection in the middle of a commit, as a restart does
//! (`pg_terminate_backend`: FATAL 57P01 to the client): the server rolled the
//! transaction back, so the store runs it once more on a fresh connection and it is
//! written exactly once. (SQLite has no connection to lose.)

use std::time::{Duration, Instant};

use stockade_core::Environment;
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation};

use crate::harness::{Backend, TEST_ACTOR, TestDb};

/// A statement that keeps the transaction open long enough to be cut, and names itself.
const SLOW: &str = "SELECT pg_sleep(0.8) AS lost_connection_probe";
const KILL: &str = "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity
     WHERE query = 'SELECT pg_sleep(0.8) AS lost_connection_probe' AND pid <> pg_backend_pid()) x WHERE t";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_before_commit_is_run_again_and_written_once() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let killer = db.open(Environment::Dev).await;
    let audit_before = store
        .count("SELECT COUNT(*) FROM audit", vec![])
        .await
        .unwrap();
    let retries_before = store.commit_retries();

    // Terminate the commit's backend once, while it sleeps inside the transaction.
    let kill = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if killer.count(KILL, vec![]).await.unwrap() > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    let change = Change::new(
        Mutation::Many {
            steps: vec![
                Mutation::SetMeta {
                    key: "test.lost_connection".into(),
                    value: "written".into(),
                },
                Mutation::Sql {
                    statement: SLOW,
                    params: vec![],
                    expect: Expect::Any,
                },
            ],
            guard: false,
        },
        AuditEntry::new("test.lost_connection", "thing:1", AuditDetails::new()),
    );
    let receipt = store.commit(&TEST_ACTOR, vec![change]).await;
    assert!(
        kill.await.unwrap(),
        "the commit's backend was never terminated"
    );
    let receipt = receipt.expect("the commit is run again on a fresh connection");
    assert_eq!(receipt.last_seq, receipt.first_seq, "one audit row");
    assert_eq!(store.commit_retries(), retries_before + 1);
    assert_eq!(
        store
            .count("SELECT COUNT(*) FROM audit", vec![])
            .await
            .unwrap(),
        audit_before + 1,
        "written exactly once"
    );
    assert_eq!(
        store.meta("test.lost_connection").await.unwrap().as_deref(),
        Some("written")
    );
    assert!(store.verify_audit(None).await.unwrap().problem.is_none());
    store.close().await;
    db.cleanup().await;
}
