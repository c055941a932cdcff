//! Foundation benchmarks: field encryption, audit append (SQLite and PostgreSQL, single
//! and batched), and audit verification. Prints figures; asserts nothing about time.
//!
//!   cargo bench -p stockade --bench foundation
//!   STOCKADE_TEST_PG_URL=postgres://… cargo bench -p stockade --bench foundation   (adds PostgreSQL)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use stockade_core::{Actor, Environment};
use stockade_store::{AuditDetails, AuditEntry, Change, DatabaseUrl, Store, StoreOptions};
use stockade_vault::FieldContext;
use stockade_vault::cipher::DataKey;

const ACTOR: Actor = Actor::System("bench");

fn event(n: usize) -> Change {
    Change::event(AuditEntry::new(
        "order.ingest",
        format!("order:tiktok-1/{n}"),
        AuditDetails::new()
            .int("n", n as i64)
            .str("status", "AWAITING_SHIPMENT")
            .str("buyer", "hmac-sha256:5f2c9a"),
    ))
}

fn bench_crypto() {
    let key = DataKey::new(7, "prod", &[42u8; 32]).unwrap();
    let ctx = FieldContext::new("orders", "buyer_address", "ord-1234567");
    let value = [b'x'; 100];
    for _ in 0..10_000 {
        black_box(
            key.open_field(&ctx, &key.seal_field(&ctx, &value).unwrap())
                .unwrap(),
        );
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            let ct = key.seal_field(&ctx, black_box(&value)).unwrap();
            black_box(key.open_field(&ctx, &ct).unwrap());
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(n));
    }
    println!(
        "field encrypt+decrypt, 100-byte value (AES-256-GCM, random nonce): {best:.0} ns per round trip (best of 5 × 200k)"
    );
}

async fn bench_store(label: &str, url: DatabaseUrl, single: usize, batches: usize, batch: usize) {
    let (store, _) = Store::init(&url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();

    let start = Instant::now();
    for i in 0..single {
        store.commit(&ACTOR, vec![event(i)]).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label}: audit append, one row per commit (sequential): {:.0} rows/s ({single} rows)",
        single as f64 / secs
    );

    let store = Arc::new(store);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let (tasks_n, per_task) = (32, single / 4);
    for t in 0..tasks_n {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                store
                    .commit(&ACTOR, vec![event(t * 1_000_000 + i)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label}: audit append, one row per commit from {tasks_n} concurrent tasks (group commit): {:.0} rows/s ({} rows)",
        (tasks_n * per_task) as f64 / secs,
        tasks_n * per_task
    );

    let start = Instant::now();
    for b in 0..batches {
        let changes = (0..batch).map(|i| event(b * batch + i)).collect();
        store.commit(&ACTOR, changes).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label}: audit append, batched ({batch} rows per commit): {:.0} rows/s ({} rows)",
        (batches * batch) as f64 / secs,
        batches * batch
    );

    for _ in 0..2 {
        let start = Instant::now();
        let report = store.verify_audit(None).await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert!(report.problem.is_none());
        println!(
            "{label}: audit verify: {:.0} rows/s ({} rows in {:.3} s)",
            report.rows_checked as f64 / secs,
            report.rows_checked,
            secs
        );
    }
    if let Ok(store) = Arc::try_unwrap(store) {
        if matches!(url, DatabaseUrl::Postgres { .. }) {
            let _ = store
                .tamper_for_tests(&format!(
                    "DROP SCHEMA IF EXISTS \"bench_{}\" CASCADE",
                    std::process::id()
                ))
                .await;
        }
        store.close().await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run quickly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if quick {
        println!("(quick run: use `cargo bench` for figures)");
    }
    bench_crypto();
    let dir = std::env::temp_dir().join(format!("stockade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (single, batches, batch) = if quick {
        (200, 5, 100)
    } else {
        (4_000, 300, 1_000)
    };
    rt.block_on(bench_store(
        "sqlite (WAL, synchronous=FULL)",
        DatabaseUrl::Sqlite(dir.join("bench.db")),
        single,
        batches,
        batch,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    match std::env::var("STOCKADE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => {
            let db = DatabaseUrl::Postgres {
                url,
                schema: Some(format!("bench_{}", std::process::id())),
            };
            let (single, batches) = if quick { (200, 5) } else { (2_000, 100) };
            rt.block_on(bench_store("postgresql", db, single, batches, batch));
        }
        _ => println!("postgresql: skipped (set STOCKADE_TEST_PG_URL)"),
    }
}
