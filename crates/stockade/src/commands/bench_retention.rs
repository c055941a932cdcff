//! `stockade bench retention`: how fast a retention run removes a large backlog, and what
//! it costs the order ingest running beside it (see docs/benchmarks.md).
//!
//! A throw-away database (SQLite in a temporary directory, or a fresh PostgreSQL schema
//! dropped afterwards) is seeded with `--rows` expired rows: half orders whose buyer fields
//! hold ciphertext-sized blobs, half request log rows. Ingest is measured as the sync
//! engine writes an order: one audited commit per order, from concurrent writers. First
//! ingest alone for `--duration`, then ingest while one retention run removes the backlog
//! in transactions of `--batch` rows. Prints rows removed per second, the run's time, the
//! ingest rate alone and during the run, and the commit latency p99 of both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use stockade_core::{Actor, Environment, time::now_ms};
use stockade_retention::Rules;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, Store, StoreOptions, sql_params,
};

use super::demo::parse_duration;
use super::live::{cpu_seconds, temp_dir};
use crate::cli::BenchRetentionArgs;
use crate::exit::Failure;

const ACTOR: Actor = Actor::System("bench");
/// Concurrent ingest writers (orders arriving from several connections at once).
const WRITERS: usize = 16;

const SEED_ORDERS: &str = "INSERT INTO orders (connection_id, external_id, status,
    marketplace_status, status_rank, created_at_ms, updated_at_ms, ingested_at_ms,
    buyer_name, buyer_email, buyer_phone, buyer_address)
  WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $2)
  SELECT 1, 'old-' || CAST($1 + i AS TEXT), 'delivered', 'Delivered', 4, 1000, 1000, 1000,
         $3, $3, $3, $3 FROM c";
const SEED_LOG: &str = "INSERT INTO egress_log (at_ms, environment, caller, method, host,
    path_template, operation, outcome, latency_us, bytes_sent, bytes_received, attempt)
  WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $1)
  SELECT 1000, 'dev', 'sync', 'GET', 'sellingpartnerapi-eu.amazon.com',
         '/orders/v0/orders/{id}', 'getOrder', 'ok', 1200, 300, 2400, 1 FROM c";
const INGEST: &str = "INSERT INTO orders (connection_id, external_id, status, marketplace_status,
    status_rank, created_at_ms, updated_at_ms, ingested_at_ms, buyer_name, buyer_email,
    buyer_phone, buyer_address) VALUES (2, $1, 'placed', 'Unshipped', 1, $2, $2, $2, $3, $3, $3, $3)";

pub async fn run(args: BenchRetentionArgs) -> Result<(), Failure> {
    let duration = parse_duration(&args.duration, "--duration")?;
    if !(1_000..=10_000_000).contains(&args.rows) {
        return Err(Failure::usage("--rows must be from 1000 to 10000000"));
    }
    if !(1..=stockade_store::jobs::MAX_BATCH).contains(&args.batch) {
        return Err(Failure::usage("--batch must be from 1 to 10000"));
    }
    let say = |s: String| super::bench::say(args.json, s);
    let dir = temp_dir("stockade-bench-retention")?;
    let (store, pg) = open(&args, &dir).await?;
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    say(format!(
        "bench retention: {} expired rows ({backend}), batch {}, ingest by {WRITERS} writers for {}s",
        args.rows,
        args.batch,
        duration.as_secs()
    ));
    let started = Instant::now();
    seed(&store, args.rows).await?;
    say(format!(
        "seeded in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        file_size(&dir).map_or(String::new(), |b| format!(", file {:.1} MiB", mib(b)))
    ));

    let alone = ingest(&store, duration, None).await?;
    store.checkpoint().await?;
    let size_before = file_size(&dir);
    let rules = Rules {
        batch: args.batch,
        ..Rules::default()
    };
    let cpu0 = cpu_seconds();
    let done = Arc::new(AtomicBool::new(false));
    let run_store = store.clone();
    let flag = done.clone();
    let retention = tokio::spawn(async move {
        let t = Instant::now();
        let r = stockade_retention::run(&run_store, &rules).await;
        flag.store(true, Ordering::SeqCst);
        (r, t.elapsed())
    });
    let during = ingest(&store, duration, Some(done)).await?;
    let (report, took) = retention
        .await
        .map_err(|e| Failure::runtime(format!("the retention run failed: {e}")))?;
    let report = report.map_err(|e| Failure::runtime(e.to_string()))?;
    let cpu = cpu_seconds() - cpu0;
    let removed = report.total();
    let rate = removed as f64 / took.as_secs_f64().max(1e-9);
    say(format!(
        "retention run: {removed} rows removed in {:.2}s = {rate:.0} rows/s, {} batches{}",
        took.as_secs_f64(),
        report.batches,
        file_size(&dir).map_or(String::new(), |a| format!(
            ", file {:.1} MiB before the run → {:.1} MiB after",
            mib(size_before.unwrap_or(0)),
            mib(a)
        ))
    ));
    say(format!(
        "ingest alone: {:.0} orders/s (commit p99 {:.1} ms); during the run: {:.0} orders/s (p99 {:.1} ms) over {:.1}s; process CPU {cpu:.1}s",
        alone.rate, alone.p99_ms, during.rate, during.p99_ms, during.secs
    ));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "backend": backend, "rows": args.rows, "batch": args.batch,
                "removed": removed, "run_s": took.as_secs_f64(), "rows_per_s": rate,
                "batches": report.batches,
                "ingest_alone_per_s": alone.rate, "ingest_alone_p99_ms": alone.p99_ms,
                "ingest_during_per_s": during.rate, "ingest_during_p99_ms": during.p99_ms,
            })
        );
    }
    store.close().await;
    if let Some((url, schema)) = &pg {
        stockade_store::testing::drop_postgres_schema(url, schema).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if removed != i64::try_from(args.rows).unwrap_or(i64::MAX) {
        return Err(Failure::runtime(format!(
            "the run removed {removed} of {} expired rows",
            args.rows
        )));
    }
    Ok(())
}

async fn open(
    args: &BenchRetentionArgs,
    dir: &std::path::Path,
) -> Result<(Store, Option<(String, String)>), Failure> {
    let (url, pg) = super::live::bench_database(args.database_url.as_deref(), dir)?;
    let (store, _) = Store::init(&url, Environment::Dev, &StoreOptions::default()).await?;
    Ok((store, pg))
}

/// Two connections (an old Amazon shop with the backlog, a live one receiving orders),
/// then the expired rows in chunks.
async fn seed(store: &Store, rows: u64) -> Result<(), Failure> {
    for (id, name) in [(1_i64, "old-shop"), (2, "live-shop")] {
        store
            .write_unaudited(
                "INSERT INTO connections (id, name, marketplace, endpoint, account, settings,
                   status, created_at_ms, updated_at_ms) VALUES ($1, $2, 'amazon', 'sandbox', 'a',
                   '{\"api_url\":\"https://127.0.0.1:9\"}', 'revoked', 0, 0)",
                sql_params![id, name],
            )
            .await?;
    }
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    let orders = rows / 2;
    let blob = vec![0xA5_u8; 60];
    let chunk = 20_000;
    let mut done = 0;
    while done < orders {
        let n = chunk.min(orders - done);
        store
            .write_unaudited(SEED_ORDERS, sql_params![done, n, blob.clone()])
            .await?;
        done += n;
    }
    let mut done = 0;
    while done < rows - orders {
        let n = chunk.min(rows - orders - done);
        store.write_unaudited(SEED_LOG, sql_params![n]).await?;
        done += n;
    }
    store.checkpoint().await?;
    Ok(())
}

struct Ingest {
    rate: f64,
    p99_ms: f64,
    secs: f64,
}

/// Orders committed by [`WRITERS`] writers for `duration`, or until `until` is set (and
/// at least a second).
async fn ingest(
    store: &Store,
    duration: Duration,
    until: Option<Arc<AtomicBool>>,
) -> Result<Ingest, Failure> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let until = until.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0_u64;
            loop {
                let elapsed = start.elapsed();
                let stop = match &until {
                    Some(flag) => {
                        flag.load(Ordering::SeqCst) && elapsed >= Duration::from_secs(1)
                            || elapsed >= duration.saturating_mul(10)
                    }
                    None => elapsed >= duration,
                };
                if stop {
                    return Ok::<_, stockade_store::StoreError>(lat);
                }
                let t = Instant::now();
                let change = Change::new(
                    Mutation::Sql {
                        statement: INGEST,
                        params: sql_params![
                            format!("new-{w}-{i}-{}", now_ms()),
                            now_ms(),
                            vec![0x5A_u8; 60]
                        ],
                        expect: Expect::One("order"),
                    },
                    AuditEntry::new("order.ingest", "orders", AuditDetails::new().int("n", 1)),
                );
                store.commit(&ACTOR, vec![change]).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let lat = t
            .await
            .map_err(|e| Failure::runtime(format!("an ingest writer failed: {e}")))??;
        all.extend(lat);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    Ok(Ingest {
        rate: all.len() as f64 / secs.max(1e-9),
        p99_ms: p99,
        secs,
    })
}

fn file_size(dir: &std::path::Path) -> Option<u64> {
    std::fs::metadata(dir.join("stockade.db"))
        .ok()
        .map(|m| m.len())
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}
