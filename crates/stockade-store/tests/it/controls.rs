//! Incident controls across processes: two stores on one database stand for two
//! processes; a control one of them writes reaches the other. On PostgreSQL through
//! `NOTIFY` — the other's periodic read is set to a minute, so only the notification can
//! bring it within the wait; on SQLite through the periodic read.

use std::time::{Duration, Instant};

use stockade_core::Environment;
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, Store, sql_params};

use crate::harness::{Backend, TEST_ACTOR, TestDb};

async fn isolate(store: &Store, connection: &str) {
    let incident = Change::new(
        Mutation::Sql {
            statement: "INSERT INTO incidents (id, title, severity, drill, detected_at_ms, opened_at_ms, opened_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params: sql_params![1i64, "test", "high", 0i64, 0i64, 0i64, "test"],
            expect: Expect::One("incident"),
        },
        AuditEntry::new("incident.open", "incident:1", AuditDetails::new()),
    );
    let control = Change::new(
        Mutation::Sql {
            statement: "INSERT INTO incident_controls (kind, name, drill, incident_id, since_ms, actor) VALUES ($1, $2, $3, $4, $5, $6)",
            params: sql_params!["connection", connection, 0i64, 1i64, 0i64, "test"],
            expect: Expect::One("control"),
        },
        AuditEntry::new("incident.isolate", "incident:1", AuditDetails::new()),
    );
    store
        .commit(&TEST_ACTOR, vec![incident, control])
        .await
        .unwrap();
    let own = store.controls_changed().await.unwrap();
    assert!(own.connection_isolated(connection), "the writer at once");
}

/// Wait (at most `limit`) until `store` enforces the isolation of `connection`.
async fn reaches(store: &Store, connection: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if store.controls().connection_isolated(connection) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn follower(db: &TestDb, period: Option<Duration>) -> Store {
    let other = db.open(Environment::Dev).await;
    let c = other.controls();
    if let Some(p) = period {
        c.set_refresh(p);
    }
    // Its first read (after it started listening) is done before the change is written.
    let start = Instant::now();
    while !c.snapshot().loaded && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(c.snapshot().loaded);
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_reaches_another_process_by_notification_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let writer = db.init(Environment::Dev).await;
    let other = follower(&db, Some(Duration::from_secs(60))).await;
    assert!(!other.controls().connection_isolated("shop-a"));
    isolate(&writer, "shop-a").await;
    assert!(
        reaches(&other, "shop-a", Duration::from_secs(5)).await,
        "no notification reached the other process"
    );
    writer.close().await;
    other.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_reaches_another_process_by_the_periodic_read_sqlite() {
    let Some(db) = TestDb::new(Backend::Sqlite) else {
        return;
    };
    let writer = db.init(Environment::Dev).await;
    let other = follower(&db, None).await;
    isolate(&writer, "shop-a").await;
    assert!(reaches(&other, "shop-a", Duration::from_secs(3)).await);
    writer.close().await;
    other.close().await;
    db.cleanup().await;
}
