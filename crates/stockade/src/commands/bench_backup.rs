//! `stockade bench backup`: a database with `--orders` orders (the console bench's
//! seeder: one line each, one audit row each, in audited batches), then
//! - the backup: time, file size, MB/s (payload and file), restore-drill time;
//! - the store's ingest throughput without and with a concurrent backup: order inserts in
//!   audited commits of [`INGEST_BATCH`] orders (each with its line and audit row), the
//!   write path the sync engine's ingest commits through, run in this process.
//!
//! `--reuse DIR` keeps the seeded data directory between runs (seeded when empty).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use stockade_backup::create::CreateOptions;
use stockade_backup::crypt::{Decryption, Encryption};
use stockade_core::{Actor, Environment};
use stockade_store::{
    AuditDetails, AuditEntry, Change, DatabaseUrl, Expect, Mutation, Store, sql_params,
};
use stockade_vault::{MasterKeySource, MasterKeys, Vault};

use super::bench::say;
use super::bench_console_seed as seed;
use crate::cli_backup::BenchBackupArgs;
use crate::exit::Failure;

const ACTOR: Actor = Actor::System("bench");
/// Orders per ingest commit.
pub const INGEST_BATCH: i64 = 100;

fn rt(e: impl std::fmt::Display) -> Failure {
    Failure::runtime(e.to_string())
}

pub async fn run(args: BenchBackupArgs) -> Result<(), Failure> {
    let say = |s: String| say(args.json, s);
    let dir = match &args.reuse {
        Some(d) => d.clone(),
        None => {
            let mut b = [0u8; 6];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| rt("no random numbers"))?;
            std::env::temp_dir().join(format!("stockade-bench-backup-{}", hex::encode(b)))
        }
    };
    std::fs::create_dir_all(&dir).map_err(rt)?;
    let url = DatabaseUrl::Sqlite(dir.join("stockade.db"));
    let store = open_or_seed(&dir, &url, args.orders, &say).await?;
    let out = measure(&store, &url, &dir, &args, &say).await;
    store.close().await;
    if args.reuse.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

async fn open_or_seed(
    dir: &Path,
    url: &DatabaseUrl,
    orders: usize,
    say: &dyn Fn(String),
) -> Result<Store, Failure> {
    let env = Environment::Dev;
    if let DatabaseUrl::Sqlite(p) = url
        && p.exists()
    {
        let store = Store::open(url, env, &Default::default()).await?;
        let have = store.count("SELECT COUNT(*) FROM orders", vec![]).await?;
        say(format!("reusing {} ({have} orders)", dir.display()));
        return Ok(store);
    }
    let key = dir.join("master.key");
    let master = MasterKeys::generate(env, MasterKeySource::File(key.clone()))?;
    master.write_new_file(&key).map_err(Failure::from_master)?;
    let (store, _) = Store::init(url, env, &Default::default()).await?;
    let vault = Vault::bootstrap(store, master, &ACTOR).await?;
    let store = vault.store().clone();
    let t0 = Instant::now();
    seed::seed(&store, 1_000, orders, stockade_core::time::now_ms(), say).await?;
    say(format!(
        "seeded {orders} orders in {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    drop(vault);
    Ok(store)
}

/// Insert orders in audited commits until `stop`; counts orders into `done`.
async fn ingest(
    store: Store,
    from: i64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicI64>,
) -> Result<(), Failure> {
    let mut i = from;
    let skus = 1_000i64;
    while !stop.load(Ordering::Relaxed) {
        let (a, b) = (i, i + INGEST_BATCH);
        let now = stockade_core::time::now_ms();
        let mut changes = vec![
            Change::new(
                Mutation::Sql {
                    statement: seed::ORDERS,
                    params: sql_params![a, b, now],
                    expect: Expect::Any,
                },
                AuditEntry::new(
                    "bench.ingest",
                    "bench:orders",
                    AuditDetails::new().int("rows", b - a),
                ),
            ),
            Change::new(
                Mutation::Sql {
                    statement: seed::LINES,
                    params: sql_params![a, b, now, skus],
                    expect: Expect::Any,
                },
                AuditEntry::new(
                    "bench.ingest",
                    "bench:order_lines",
                    AuditDetails::new().int("rows", b - a),
                ),
            ),
        ];
        for k in a..b {
            changes.push(Change::event(AuditEntry::new(
                "bench.order",
                format!("order:BO-{k}"),
                AuditDetails::new().int("lines", 1),
            )));
        }
        store.commit(&ACTOR, changes).await?;
        done.fetch_add(b - a, Ordering::Relaxed);
        i = b;
    }
    Ok(())
}

/// Orders/s of the ingest load while `during` runs (or for `secs` when it is None).
async fn ingest_rate<F: std::future::Future<Output = T>, T>(
    store: &Store,
    from: i64,
    secs: u64,
    during: Option<F>,
) -> Result<(f64, i64, Option<T>), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicI64::new(0));
    let task = tokio::spawn(ingest(store.clone(), from, stop.clone(), done.clone()));
    let t0 = Instant::now();
    let out = match during {
        Some(f) => Some(f.await),
        None => {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            None
        }
    };
    let elapsed = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    task.await.map_err(rt)??;
    Ok((n as f64 / elapsed.max(1e-9), n, out))
}

async fn measure(
    store: &Store,
    url: &DatabaseUrl,
    dir: &Path,
    args: &BenchBackupArgs,
    say: &dyn Fn(String),
) -> Result<(), Failure> {
    let orders = store.count("SELECT COUNT(*) FROM orders", vec![]).await?;
    let db_bytes = std::fs::metadata(dir.join("stockade.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    let id = age::x25519::Identity::generate();
    let enc = Encryption::Recipients(vec![id.to_public()]);
    let key_path = dir.join("bench-age-key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key_path, format!("{}\n", id.to_string().expose_secret())).map_err(rt)?;
    }
    let dec = Decryption::from_args(Some(&key_path), None).map_err(rt)?;
    let backup = |to: PathBuf| {
        let enc = &enc;
        async move {
            let t0 = Instant::now();
            let r = stockade_backup::create(
                store,
                &ACTOR,
                CreateOptions {
                    database: url,
                    to,
                    encryption: enc,
                    scratch_parent: dir.to_path_buf(),
                    trigger: "cli",
                },
            )
            .await;
            (r, t0.elapsed())
        }
    };
    // Quiet backup.
    let quiet = dir.join(format!("quiet-{}.age", stockade_core::time::now_ms()));
    let (r, quiet_t) = backup(quiet.clone()).await;
    let r = r.map_err(super::backup::fail)?;
    let secs = quiet_t.as_secs_f64();
    say(format!(
        "backup: {orders} orders, database file {:.1} MB, snapshot {:.1} MB → backup file {:.1} MB in {secs:.1}s ({:.1} MB/s of snapshot, {:.1} MB/s written)",
        db_bytes as f64 / 1e6,
        r.payload_bytes as f64 / 1e6,
        r.file_bytes as f64 / 1e6,
        r.payload_bytes as f64 / 1e6 / secs,
        r.file_bytes as f64 / 1e6 / secs
    ));
    let t0 = Instant::now();
    let d = stockade_backup::drill(store, url, &ACTOR, &quiet, &dec, dir)
        .await
        .map_err(super::backup::fail)?;
    say(format!(
        "restore drill: {:.1}s ({} audit rows verified)",
        t0.elapsed().as_secs_f64(),
        d.audit_rows
    ));
    let _ = std::fs::remove_file(&quiet);
    // Ingest without, then with, a concurrent backup.
    let base = 10_000_000 + stockade_core::time::now_ms() % 1_000_000 * 100;
    let (alone, n1, _) =
        ingest_rate::<std::future::Ready<()>, ()>(store, base, args.ingest_seconds, None).await?;
    say(format!(
        "ingest alone: {alone:.0} orders/s ({n1} orders in {}s)",
        args.ingest_seconds
    ));
    let busy = dir.join(format!("busy-{}.age", stockade_core::time::now_ms()));
    let (during, n2, out) = ingest_rate(
        store,
        base + n1 + INGEST_BATCH,
        0,
        Some(backup(busy.clone())),
    )
    .await?;
    let (r2, t2) = out.ok_or_else(|| rt("no backup result"))?;
    r2.map_err(super::backup::fail)?;
    let _ = std::fs::remove_file(&busy);
    say(format!(
        "ingest during a backup: {during:.0} orders/s ({n2} orders in {:.1}s; {:.0}% of alone); that backup took {:.1}s ({:.0}% of quiet)",
        t2.as_secs_f64(),
        100.0 * during / alone.max(1e-9),
        t2.as_secs_f64(),
        100.0 * t2.as_secs_f64() / secs.max(1e-9)
    ));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "orders": orders, "db_bytes": db_bytes, "file_bytes": r.file_bytes,
                "backup_s": secs, "mb_per_s": r.payload_bytes as f64 / 1e6 / secs,
                "drill_s": d.elapsed.as_secs_f64(),
                "ingest_alone_per_s": alone, "ingest_during_backup_per_s": during,
                "backup_under_ingest_s": t2.as_secs_f64(),
            })
        );
    }
    Ok(())
}
