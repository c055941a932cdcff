//! The live rig shared by `stockade demo` and `stockade bench sync`: a throw-away dev
//! environment (its own directory, master key and database), the three marketplace
//! simulators with a catalog on every channel, the real HTTPS server with the sync engine
//! behind its webhook routes, and a steady stream of buyer orders.
//!
//! The server, sync and alerts are the application `stockade serve` runs, wired to the
//! simulators by [`stockade_app::sandbox::launch`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stockade_access::Access;
use stockade_app::App;
use stockade_app::sandbox::{SandboxApp, catalog_csv, launch};
use stockade_core::order::Marketplace;
use stockade_egress::Gateway;
use stockade_marketplaces::{HookError, HookFuture, HookSink, InboundRequest};
use stockade_sandbox::{Sandbox, SandboxConfig};
use stockade_store::{DatabaseUrl, Store};
use stockade_sync::{SyncEngine, SyncOptions};
use stockade_vault::Vault;
use tokio::task::JoinHandle;

use crate::exit::Failure;

/// How to build the rig.
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub skus: usize,
    pub on_hand: i64,
    pub buffer: i64,
    /// The marketplaces' published rate limits on (simulators and connectors).
    pub realistic_limits: bool,
    /// PostgreSQL instead of a SQLite file in the throw-away directory.
    pub postgres: Option<String>,
    pub sync: SyncOptions,
    pub seed: u64,
    pub keep: bool,
    /// Every n-th SKU starts with a twentieth of `on_hand` (0: none), so low stock shows.
    pub low_stock_every: usize,
    /// With `low_stock_every`: those SKUs start with this many units instead, so buyers
    /// on every channel sell them out during a run (the oversell window).
    pub low_stock_units: Option<i64>,
}

/// The sync engine's hook sink, counting per marketplace the deliveries it answered 503
/// (the marketplace delivers them again).
struct CountingHooks(SyncEngine, Arc<[AtomicU64; 3]>);

fn index_of(m: Marketplace) -> usize {
    Marketplace::ALL.iter().position(|x| *x == m).unwrap_or(0)
}

impl HookSink for CountingHooks {
    fn deliver(
        &self,
        marketplace: Marketplace,
        connection: String,
        request: InboundRequest,
    ) -> HookFuture {
        let answer = self.0.deliver(marketplace, connection, request);
        let deferred = self.1.clone();
        Box::pin(async move {
            let r = answer.await;
            if let (Err(HookError::Unavailable(_) | HookError::Overloaded), Some(n)) =
                (&r, deferred.get(index_of(marketplace)))
            {
                n.fetch_add(1, Ordering::Relaxed);
            }
            r
        })
    }
}

pub struct Rig {
    pub dir: PathBuf,
    keep: bool,
    app: Option<App>,
    pub vault: Arc<Vault>,
    pub access: Arc<Access>,
    pub sb: Arc<Sandbox>,
    pub gateway: Gateway,
    pub sync: SyncEngine,
    pub server: std::net::SocketAddr,
    /// Each SKU's on-hand stock as the catalog set it at the start.
    pub on_hand: std::collections::HashMap<String, i64>,
    pg: Option<(String, String)>,
    deferred: Arc<[AtomicU64; 3]>,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

pub fn temp_dir(prefix: &str) -> Result<PathBuf, Failure> {
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix)
        .map_err(|_| Failure::runtime("the system random number generator failed"))?;
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(suffix)));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

impl Rig {
    pub async fn start(opts: RigOptions) -> Result<Rig, Failure> {
        let dir = temp_dir("stockade-demo")?;
        let sb = Sandbox::start(SandboxConfig {
            seed: opts.seed,
            skus: opts.skus,
            initial_quantity: 0,
            rate_limits: opts.realistic_limits,
            record_delivery_bodies: false,
            delivery_log_limit: 10_000,
            delivery_concurrency: 128,
            feed_step: Duration::from_millis(50),
            ..SandboxConfig::default()
        })
        .await
        .map_err(|e| Failure::runtime(format!("cannot start the simulators: {e}")))?;

        let (url, pg) = database(&opts, &dir)?;
        let deferred: Arc<[AtomicU64; 3]> = Arc::default();
        let counters = deferred.clone();
        let catalog = low_stock(
            catalog_csv(
                &sb,
                opts.on_hand,
                opts.buffer,
                None,
                if opts.low_stock_units.is_some() {
                    0
                } else {
                    opts.low_stock_every
                },
            ),
            opts.low_stock_every,
            opts.low_stock_units,
        );
        let on_hand = on_hand_of(&catalog);
        let app = launch(
            &sb,
            &dir,
            url,
            SandboxApp {
                sync: opts.sync.clone(),
                realistic_limits: opts.realistic_limits,
                catalog: Some(catalog),
                hooks: Some(Box::new(move |sync| {
                    Arc::new(CountingHooks(sync, counters)) as Arc<dyn HookSink>
                })),
                tune_egress: None,
            },
        )
        .await?;
        sb.flush_deliveries().await;
        Ok(Rig {
            dir,
            keep: opts.keep,
            vault: app.vault().clone(),
            access: app.access().clone(),
            sb: Arc::new(sb),
            gateway: app.gateway().clone(),
            sync: app.sync().clone(),
            server: app.addr(),
            on_hand,
            app: Some(app),
            pg,
            deferred,
        })
    }

    /// Deliveries from `m` answered 503 (the marketplace delivers them again).
    pub fn deliveries_deferred(&self, m: Marketplace) -> u64 {
        self.deferred
            .get(index_of(m))
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    pub fn store(&self) -> &Store {
        self.vault.store()
    }

    /// Buyers place `rate` orders a second across the three channels (and ship or cancel
    /// a share of them when `lifecycle`), until the task is aborted.
    pub fn order_stream(
        &self,
        rate: f64,
        lifecycle: bool,
    ) -> (JoinHandle<()>, Arc<std::sync::atomic::AtomicU64>) {
        let sb = self.sb.clone();
        let placed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = placed.clone();
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(10);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut i = 0usize;
            loop {
                tokio::time::sleep(tick).await;
                let due = rate * start.elapsed().as_secs_f64();
                let n = (due as u64).saturating_sub(sent);
                for _ in 0..n {
                    let m = Marketplace::ALL[i % 3];
                    i += 1;
                    let made = sb.generate_orders(m, 1).len() as u64;
                    counter.fetch_add(made, std::sync::atomic::Ordering::Relaxed);
                    if lifecycle && i.is_multiple_of(3) {
                        sb.advance_random(Marketplace::ALL[(i / 3) % 3], 1);
                    }
                }
                sent += n;
            }
        });
        (task, placed)
    }

    pub async fn finish(self) {
        self.finish_within(Duration::from_secs(30)).await;
    }

    /// Stop everything, giving the server, the simulators and the request log at most
    /// `budget` in all to drain (what is not drained by then is dropped: a throw-away
    /// environment).
    pub async fn finish_within(mut self, budget: Duration) {
        let deadline = tokio::time::Instant::now() + budget;
        if let Some(app) = self.app.take() {
            let stopped = app.run_until_stopped_within(std::future::ready(()), budget);
            let _ = tokio::time::timeout_at(deadline, stopped).await;
        }
        if let Ok(sb) = Arc::try_unwrap(self.sb) {
            let _ = tokio::time::timeout_at(deadline, sb.shutdown()).await;
        }
        drop((self.access, self.gateway, self.sync));
        if let Ok(v) = Arc::try_unwrap(self.vault) {
            let _ = tokio::time::timeout_at(deadline, v.close()).await;
        }
        if let Some((url, schema)) = &self.pg {
            stockade_store::testing::drop_postgres_schema(url, schema).await;
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The rig's database: a fresh schema on PostgreSQL (base URL and schema returned, to
/// drop it afterwards), or a SQLite file in `dir`.
pub(super) fn database(
    opts: &RigOptions,
    dir: &std::path::Path,
) -> Result<(DatabaseUrl, Option<(String, String)>), Failure> {
    bench_database(opts.postgres.as_deref(), dir)
}

/// A benchmark's database: a fresh schema `stockade_bench_RANDOM` on the PostgreSQL
/// server at `postgres` (returned as (server URL, schema) so it can be dropped), or
/// `stockade.db` in `dir`.
pub(super) fn bench_database(
    postgres: Option<&str>,
    dir: &std::path::Path,
) -> Result<(DatabaseUrl, Option<(String, String)>), Failure> {
    Ok(match postgres {
        Some(base) => {
            let mut b = [0u8; 4];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| Failure::runtime("rng"))?;
            let schema = format!("stockade_bench_{}", hex::encode(b));
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = DatabaseUrl::parse(&format!("{base}{sep}stockade_schema={schema}"))?;
            (url, Some((base.to_owned(), schema)))
        }
        None => (DatabaseUrl::Sqlite(dir.join("stockade.db")), None),
    })
}

/// Each SKU's on-hand stock in a catalog CSV (header first).
pub(super) fn on_hand_of(catalog: &str) -> std::collections::HashMap<String, i64> {
    catalog
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            Some((f.next()?.to_owned(), f.next()?.parse().ok()?))
        })
        .collect()
}

/// Every `every`-th SKU row of a catalog CSV (header first) gets `units` on hand.
pub(super) fn low_stock(csv: String, every: usize, units: Option<i64>) -> String {
    let Some(units) = units.filter(|_| every > 0) else {
        return csv;
    };
    let mut out = String::with_capacity(csv.len());
    for (i, line) in csv.lines().enumerate() {
        let row = i.wrapping_sub(1);
        match line.split_once(',') {
            Some((sku, rest)) if i > 0 && row % every == every - 1 => {
                let rest = rest.split_once(',').map_or("", |(_, r)| r);
                out.push_str(&format!("{sku},{units},{rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds (user + system) process `proc_dir` (`self` or a pid) has used; 0 when it
/// is gone.
pub fn cpu_seconds_of(proc_dir: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{proc_dir}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the name: state is 0, utime 11, stime 12 (clock ticks, 100 Hz here).
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory of this process in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
