//! Retention against real databases (SQLite and PostgreSQL): a dry run counts exactly and
//! writes nothing; a run removes exactly the expired rows in many small batches, keeps the
//! rest (orders, lines, audit rows), removes the buyer ciphertext from the file, writes one
//! audit row with counts, and is idempotent; one run at a time; SQLite shrinks.

use stockade_core::time::now_ms;
use stockade_retention::{Rules, RunError, dry_run, run};
use stockade_store::Store;

use crate::seed::{self, DAY_MS, Seeded};

fn counts(report: &stockade_retention::Report) -> Vec<(&'static str, i64)> {
    report.kinds.iter().map(|k| (k.kind, k.rows)).collect()
}

async fn retention_rows(store: &Store) -> Vec<(i64, String)> {
    store
        .query_as(
            "SELECT seq, details FROM audit WHERE action = 'retention.run' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn dry_run_counts_exactly_and_writes_nothing_sqlite() {
    dry_run_counts_exactly(false).await;
}

#[tokio::test]
async fn dry_run_counts_exactly_and_writes_nothing_postgres() {
    dry_run_counts_exactly(true).await;
}

async fn dry_run_counts_exactly(pg: bool) {
    let Some((db, store)) = seed::open(pg).await else {
        return;
    };
    let seeded = seed::seed(&store, now_ms(), 4).await;
    let before = seed::table_counts(&store).await;
    let report = dry_run(&store, &Rules::default()).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(counts(&report), seeded.expected());
    assert_eq!(seed::table_counts(&store).await, before, "a dry run wrote");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_run_removes_exactly_the_expired_rows_sqlite() {
    removes_exactly_the_expired(false).await;
}

#[tokio::test]
async fn a_run_removes_exactly_the_expired_rows_postgres() {
    removes_exactly_the_expired(true).await;
}

async fn removes_exactly_the_expired(pg: bool) {
    let Some((db, store)) = seed::open(pg).await else {
        return;
    };
    let n = 7;
    let seeded: Seeded = seed::seed(&store, now_ms(), n).await;
    let audit_before: Vec<(i64, Vec<u8>)> = store
        .query_as("SELECT seq, hash FROM audit ORDER BY seq", vec![])
        .await
        .unwrap();
    let orders = store
        .count("SELECT COUNT(*) FROM orders", vec![])
        .await
        .unwrap();
    let lines = store
        .count("SELECT COUNT(*) FROM order_lines", vec![])
        .await
        .unwrap();

    let rules = Rules {
        batch: 3,
        ..Rules::default()
    };
    let report = run(&store, &rules).await.unwrap();
    assert_eq!(counts(&report), seeded.expected());
    // 7 rows a kind in batches of 3: at least three statements for each kind.
    assert!(report.batches >= 3 * 10, "{} batches", report.batches);

    // Buyer fields gone (and marked) on exactly the expired orders; orders and lines stay.
    let q = |sql: &'static str| store.count(sql, vec![]);
    assert_eq!(q("SELECT COUNT(*) FROM orders").await.unwrap(), orders);
    assert_eq!(q("SELECT COUNT(*) FROM order_lines").await.unwrap(), lines);
    assert_eq!(
        q(
            "SELECT COUNT(*) FROM orders WHERE pii_deleted_at_ms IS NOT NULL AND buyer_name IS NULL
             AND buyer_email IS NULL AND buyer_phone IS NULL AND buyer_address IS NULL"
        )
        .await
        .unwrap(),
        6 * n
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM orders WHERE pii_deleted_at_ms IS NULL AND buyer_name IS NOT NULL")
            .await
            .unwrap(),
        9,
        "three kept orders per marketplace"
    );
    // What is kept of each other kind.
    for (sql, kept) in [
        ("SELECT COUNT(*) FROM jobs", 3),
        ("SELECT COUNT(*) FROM job_steps", 3),
        ("SELECT COUNT(*) FROM schedule_ticks", 1),
        ("SELECT COUNT(*) FROM egress_log", 1),
        ("SELECT COUNT(*) FROM events", 2),
        ("SELECT COUNT(*) FROM alert_outbox", 2),
        ("SELECT COUNT(*) FROM sessions", 1),
        ("SELECT COUNT(*) FROM bans", 2),
    ] {
        assert_eq!(q(sql).await.unwrap(), kept, "{sql}");
    }

    // The ciphertext itself is gone from the database (file and write-ahead log).
    if !pg {
        let bytes = db.sqlite_bytes();
        let find = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            !find(&seed::cipher(1, "email")),
            "removed ciphertext still in the file"
        );
        assert!(
            find(&seed::cipher(2 * n + 1, "email")),
            "a kept order's ciphertext missing"
        );
    }

    // One audit row with the counts; the earlier audit rows untouched; the chain verifies.
    let rows = retention_rows(&store).await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]
            .1
            .contains(&format!("\"buyer_pii.amazon\":{}", 2 * n)),
        "{}",
        rows[0].1
    );
    assert!(!rows[0].1.contains("SEALED"), "contents in the audit row");
    let audit_after: Vec<(i64, Vec<u8>)> = store
        .query_as("SELECT seq, hash FROM audit ORDER BY seq", vec![])
        .await
        .unwrap();
    assert_eq!(audit_after[..audit_before.len()], audit_before[..]);
    assert!(store.verify_audit(None).await.unwrap().problem.is_none());
    let last = store.last_retention_run().await.unwrap().unwrap();
    assert_eq!(last.removed, report.total());

    // Idempotent: a second run removes nothing (and records that).
    let again = run(&store, &rules).await.unwrap();
    assert_eq!(again.total(), 0);
    assert_eq!(retention_rows(&store).await.len(), 2);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn one_run_at_a_time_sqlite() {
    one_run_at_a_time(false).await;
}

#[tokio::test]
async fn one_run_at_a_time_postgres() {
    one_run_at_a_time(true).await;
}

async fn one_run_at_a_time(pg: bool) {
    let Some((db, store)) = seed::open(pg).await else {
        return;
    };
    seed::seed(&store, now_ms(), 2).await;
    let now = now_ms();
    assert!(
        store
            .claim_retention("other", now, now + 60_000)
            .await
            .unwrap()
    );
    let before = seed::table_counts(&store).await;
    assert!(matches!(
        run(&store, &Rules::default()).await,
        Err(RunError::Busy)
    ));
    assert_eq!(
        seed::table_counts(&store).await,
        before,
        "a refused run wrote"
    );
    store.release_retention("other").await.unwrap();
    assert!(run(&store, &Rules::default()).await.unwrap().total() > 0);
    store.close().await;
    db.cleanup().await;
}

/// A large deletion on SQLite hands its pages back: the file shrinks.
#[tokio::test]
async fn the_sqlite_file_shrinks_after_a_large_deletion() {
    let Some((db, store)) = seed::open(false).await else {
        return;
    };
    let old = now_ms() - 200 * DAY_MS;
    for _ in 0..40 {
        store
            .write_unaudited(
                "INSERT INTO egress_log (at_ms, environment, caller, method, host, path_template,
                   operation, outcome, latency_us, bytes_sent, bytes_received, attempt)
                 SELECT $1, 'dev', 'sync', 'GET', 'h', printf('%.400c', 'x'), 'op', 'ok', 1, 0, 0, 1
                   FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000)
                         SELECT i FROM c)",
                stockade_store::sql_params![old],
            )
            .await
            .unwrap();
    }
    store.checkpoint().await.unwrap();
    let path = db.dir.join("stockade.db");
    let big = std::fs::metadata(&path).unwrap().len();
    assert_eq!(store.count("PRAGMA auto_vacuum", vec![]).await.unwrap(), 2);
    let report = run(&store, &Rules::default()).await.unwrap();
    assert_eq!(
        report
            .kinds
            .iter()
            .find(|k| k.kind == "egress_log")
            .unwrap()
            .rows,
        40_000
    );
    assert!(report.reclaimed);
    let small = std::fs::metadata(&path).unwrap().len();
    assert!(small * 4 < big, "file {big} -> {small} bytes");
    store.close().await;
    db.cleanup().await;
}

/// A SQLite database created before retention (`auto_vacuum = NONE`) is switched to
/// incremental auto-vacuum once, when the retention migration is applied; its audit chain
/// still verifies.
#[tokio::test]
async fn an_older_sqlite_database_is_converted_by_the_retention_migration() {
    let Some((db, store)) = seed::open(false).await else {
        return;
    };
    seed::seed(&store, now_ms(), 2).await;
    // Make it look like a database from before retention.
    for sql in [
        "PRAGMA auto_vacuum = NONE",
        "VACUUM",
        "DROP TABLE retention_runs",
        "DROP TABLE retention_lease",
        "DROP INDEX sessions_expires",
        "DROP INDEX alert_outbox_done",
        "DELETE FROM schema_migrations WHERE version = 19",
    ] {
        store.tamper_for_tests(sql).await.unwrap();
    }
    assert_eq!(store.count("PRAGMA auto_vacuum", vec![]).await.unwrap(), 0);
    store.close().await;

    let env = stockade_core::Environment::Dev;
    let options = stockade_store::StoreOptions::default();
    assert!(
        Store::open(&db.url, env, &options).await.is_err(),
        "pending migration"
    );
    let (store, report) = Store::migrate(&db.url, env, &options).await.unwrap();
    assert_eq!(report.applied, vec![19]);
    assert_eq!(store.count("PRAGMA auto_vacuum", vec![]).await.unwrap(), 2);
    assert!(store.verify_audit(None).await.unwrap().problem.is_none());
    assert!(run(&store, &Rules::default()).await.unwrap().reclaimed);
    store.close().await;
    db.cleanup().await;
}
