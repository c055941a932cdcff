//! `bench sync` against simulators in this process ([`Rig`]) or in a child process
//! (`--sandbox-process`, [`ChildRig`]): the server, engine and database always run here,
//! so this process's CPU is the server's own when the simulators run elsewhere.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stockade_app::App;
use stockade_app::sandbox::{Place, SandboxApp, catalog_csv_of, launch_with};
use stockade_core::order::Marketplace;
use stockade_sandbox::{ListingState, OrderSummary, QtyChange};
use stockade_store::Store;
use stockade_sync::SyncEngine;
use stockade_vault::Vault;
use tokio::task::JoinHandle;

use super::bench_child::{ChildOptions, ChildSandbox};
use super::live::{Rig, RigOptions, database, low_stock, on_hand_of, temp_dir};
use crate::exit::Failure;

/// The server in this process against the simulators in a child process.
pub struct ChildRig {
    dir: DirGuard,
    app: Option<App>,
    vault: Arc<Vault>,
    sync: SyncEngine,
    on_hand: HashMap<String, i64>,
    child: Arc<ChildSandbox>,
    pg: Option<(String, String)>,
}

impl std::fmt::Debug for ChildRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildRig")
            .field("dir", &self.dir.0)
            .finish_non_exhaustive()
    }
}

/// The rig's throw-away directory, removed when dropped (at the end, on an error, on
/// Ctrl-C).
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port for the server (the simulators must know where to deliver
/// before it listens).
fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::runtime(format!("cannot find a free loopback port: {e}")))
}

impl ChildRig {
    /// Start the simulators' process (pinned to `cpus`), then the server against it.
    pub async fn start(opts: RigOptions, cpus: Option<Vec<usize>>) -> Result<ChildRig, Failure> {
        let dir = DirGuard(temp_dir("stockade-bench")?);
        Self::start_in(dir, opts, cpus).await
    }

    async fn start_in(
        guard: DirGuard,
        opts: RigOptions,
        cpus: Option<Vec<usize>>,
    ) -> Result<ChildRig, Failure> {
        let dir = guard.0.as_path();
        let child_dir = dir.join("sandbox");
        std::fs::create_dir_all(&child_dir)
            .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", child_dir.display())))?;
        let (receiver_ca_pem, tls) = stockade_sandbox::receiver_tls()
            .map_err(|e| Failure::runtime(format!("cannot make the server's test TLS: {e}")))?;
        let port = free_port()?;
        let hook_base = format!("https://127.0.0.1:{port}/hooks");
        let child = ChildSandbox::start(
            &ChildOptions {
                seed: opts.seed,
                skus: opts.skus,
                realistic_limits: opts.realistic_limits,
                hook_base: hook_base.clone(),
                receiver_ca_pem,
                cpus,
            },
            &child_dir,
        )
        .await?;
        let mut listings: Vec<ListingState> = Vec::new();
        for m in Marketplace::ALL {
            listings.extend(child.listings(m).await?);
        }
        let every = if opts.low_stock_units.is_some() {
            0
        } else {
            opts.low_stock_every
        };
        let catalog = low_stock(
            catalog_csv_of(&listings, opts.on_hand, opts.buffer, None, every),
            opts.low_stock_every,
            opts.low_stock_units,
        );
        let on_hand = on_hand_of(&catalog);
        let (url, pg) = database(&opts, dir)?;
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let place = Place {
            sims: &child.sims,
            tls,
            listen,
            dir,
            url,
        };
        let app = launch_with(
            place,
            SandboxApp {
                sync: opts.sync.clone(),
                realistic_limits: opts.realistic_limits,
                catalog: Some(catalog),
                hooks: None,
                tune_egress: None,
            },
        )
        .await?;
        // The server answers now: eBay's validation challenge can be sent.
        child
            .set_webhook(Marketplace::Ebay, &format!("{hook_base}/ebay/ebay"))
            .await?;
        child.flush(Duration::from_secs(30)).await?;
        Ok(ChildRig {
            dir: guard,
            vault: app.vault().clone(),
            sync: app.sync().clone(),
            app: Some(app),
            on_hand,
            child: Arc::new(child),
            pg,
        })
    }

    /// The rig's throw-away directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir.0
    }

    /// The PostgreSQL URL of the rig's schema (none on SQLite).
    pub fn database_url(&self) -> Option<String> {
        self.pg.as_ref().map(|(base, schema)| {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}stockade_schema={schema}")
        })
    }

    /// Buyers place `rate` orders a second across the three channels, through the
    /// child's admin route (one request per marketplace every 20 ms), until aborted.
    fn order_stream(&self, rate: f64) -> (JoinHandle<()>, Arc<AtomicU64>) {
        let child = self.child.clone();
        let placed = Arc::new(AtomicU64::new(0));
        let counter = placed.clone();
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(20);
            let start = Instant::now();
            let (mut sent, mut next) = (0u64, 0usize);
            loop {
                tokio::time::sleep(tick).await;
                let due = (rate * start.elapsed().as_secs_f64()) as u64;
                let n = due.saturating_sub(sent);
                let mut per = [0usize; 3];
                for _ in 0..n {
                    if let Some(c) = per.get_mut(next % 3) {
                        *c += 1;
                    }
                    next += 1;
                }
                sent += n;
                // Each request is its own task: aborting the stream does not cut one short
                // after the child placed its orders, so every placed order is counted.
                let place = |i: usize| {
                    let (child, counter) = (child.clone(), counter.clone());
                    let n = per.get(i).copied().unwrap_or(0);
                    tokio::spawn(async move {
                        if let Some(m) = Marketplace::ALL.get(i).filter(|_| n > 0) {
                            let placed = child.place_orders(*m, n).await.unwrap_or(0);
                            counter.fetch_add(placed, Ordering::Relaxed);
                        }
                    })
                };
                let _ = tokio::join!(place(0), place(1), place(2));
            }
        });
        (task, placed)
    }

    async fn finish(mut self) {
        let budget = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + budget;
        if let Some(app) = self.app.take() {
            let stopped = app.run_until_stopped_within(std::future::ready(()), budget);
            let _ = tokio::time::timeout_at(deadline, stopped).await;
        }
        self.child.stop().await;
        drop(self.sync);
        if let Ok(v) = Arc::try_unwrap(self.vault) {
            let _ = tokio::time::timeout_at(deadline, v.close()).await;
        }
        if let Some((url, schema)) = &self.pg {
            stockade_store::testing::drop_postgres_schema(url, schema).await;
        }
        drop(self.child);
        drop(self.dir);
    }
}

/// What `bench sync` runs against: the simulators in this process or in a child.
#[derive(Debug)]
pub enum BenchRig {
    InProcess(Rig),
    Child(ChildRig),
}

impl BenchRig {
    pub fn sync(&self) -> &SyncEngine {
        match self {
            BenchRig::InProcess(r) => &r.sync,
            BenchRig::Child(r) => &r.sync,
        }
    }

    pub fn store(&self) -> &Store {
        match self {
            BenchRig::InProcess(r) => r.store(),
            BenchRig::Child(r) => r.vault.store(),
        }
    }

    /// Each SKU's on-hand stock as the catalog set it at the start.
    pub fn on_hand(&self) -> &HashMap<String, i64> {
        match self {
            BenchRig::InProcess(r) => &r.on_hand,
            BenchRig::Child(r) => &r.on_hand,
        }
    }

    /// The simulators' process id, when they run in a child.
    pub fn sandbox_pid(&self) -> Option<u32> {
        match self {
            BenchRig::InProcess(_) => None,
            BenchRig::Child(r) => Some(r.child.pid()),
        }
    }

    /// CPU seconds the simulators' process has used (`None` in process).
    pub fn sandbox_cpu_seconds(&self) -> Option<f64> {
        match self {
            BenchRig::InProcess(_) => None,
            BenchRig::Child(r) => Some(r.child.cpu_seconds()),
        }
    }

    /// Buyers place `rate` orders a second across the three channels until aborted.
    pub fn order_stream(&self, rate: f64) -> (JoinHandle<()>, Arc<AtomicU64>) {
        match self {
            BenchRig::InProcess(r) => r.order_stream(rate, false),
            BenchRig::Child(r) => r.order_stream(rate),
        }
    }

    /// Wait until every event queued so far was delivered or given up on.
    pub async fn flush_deliveries(&self) -> Result<(), Failure> {
        match self {
            BenchRig::InProcess(r) => {
                r.sb.flush_deliveries().await;
                Ok(())
            }
            BenchRig::Child(r) => r.child.flush(Duration::from_secs(120)).await,
        }
    }

    pub async fn orders(&self, m: Marketplace) -> Result<Vec<OrderSummary>, Failure> {
        match self {
            BenchRig::InProcess(r) => Ok(r.sb.orders(m)),
            BenchRig::Child(r) => r.child.orders(m).await,
        }
    }

    pub async fn acknowledged(&self, m: Marketplace) -> Result<HashSet<String>, Failure> {
        match self {
            BenchRig::InProcess(r) => Ok(r.sb.acknowledged_orders(m)),
            BenchRig::Child(r) => r.child.acknowledged(m).await,
        }
    }

    pub async fn quantity_history(&self, m: Marketplace) -> Result<(Vec<QtyChange>, u64), Failure> {
        match self {
            BenchRig::InProcess(r) => Ok(r.sb.quantity_history(m)),
            BenchRig::Child(r) => r.child.quantity_history(m).await,
        }
    }

    /// Deliveries the simulators gave up on so far.
    pub async fn deliveries_failed(&self) -> Result<u64, Failure> {
        match self {
            BenchRig::InProcess(r) => Ok(r.sb.delivery_stats().failed),
            BenchRig::Child(r) => Ok(r.child.delivery_stats().await?.failed),
        }
    }

    pub async fn finish(self) {
        match self {
            BenchRig::InProcess(r) => r.finish().await,
            BenchRig::Child(r) => r.finish().await,
        }
    }
}
