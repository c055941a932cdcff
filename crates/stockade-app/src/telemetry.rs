//! The process's one Prometheus registry and what `/metrics` renders.
//!
//! [`Telemetry::new`] creates the registry and registers the typed handles the rooms own
//! (sync, egress, alerts, access, workflows: each crate increments its own counters and
//! knows nothing of the server), plus the gauges read at scrape time from the store
//! (workflow queue depth, audit head sequence, active bans), the database's reachability
//! as the store last saw it, and `stockade_build_info`. [`Telemetry`] is the server's
//! [`MetricsSource`]: each scrape reads those gauges first, then encodes the registry as
//! OpenMetrics text. While the database is unreachable a scrape still answers: the
//! gauges read from it keep their last values and `stockade_database_reachable` is 0.
//!
//! Invariant: labels are connection names, marketplaces, allow-listed hosts, channel
//! kinds, jails, job kinds and fixed outcome words. Never an order id, a buyer field, an
//! e-mail, an address or a secret (a test checks the rendered text).

use std::pin::Pin;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use stockade_access::{Access, JailLabels};
use stockade_server::MetricsSource;
use stockade_store::Store;

/// `stockade_build_info`'s labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// `stockade_workflow_queue_depth`'s label: the job kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// The handles the rooms increment, handed to [`Telemetry::new`].
#[derive(Debug, Clone)]
pub struct Handles {
    pub sync: stockade_sync::SyncTelemetry,
    pub egress: stockade_egress::EgressTelemetry,
    pub alerts: stockade_alerts::AlertTelemetry,
    pub bans: stockade_access::BanTelemetry,
    pub workflows: stockade_workflows::engine::WorkflowTelemetry,
    /// Audit mirror: lag and failures per sink.
    pub mirror: stockade_mirror::MirrorTelemetry,
}

/// The registry and the scrape-time gauges.
pub struct Telemetry {
    registry: Registry,
    store: Store,
    access: Arc<Access>,
    queue_depth: Family<KindLabels, Gauge>,
    audit_head: Gauge,
    bans_active: Family<JailLabels, Gauge>,
    clock_skew: Gauge<f64, std::sync::atomic::AtomicU64>,
    database_reachable: Gauge,
    database_unavailable: Counter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    pub fn new(store: Store, access: Arc<Access>, handles: &Handles) -> Telemetry {
        let mut registry = Registry::default();
        // An info metric: `stockade_build_info{version="…"} 1`.
        registry.register(
            "stockade_build",
            "Stockade's version",
            prometheus_client::metrics::info::Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        handles.sync.register(&mut registry);
        handles.egress.register(&mut registry);
        handles.alerts.register(&mut registry);
        handles.bans.register(&mut registry);
        handles.workflows.register(&mut registry);
        handles.mirror.register(&mut registry);
        let queue_depth = Family::<KindLabels, Gauge>::default();
        registry.register(
            "stockade_workflow_queue_depth",
            "Jobs waiting in the queue (due or not), per kind, read at scrape time",
            queue_depth.clone(),
        );
        let audit_head = Gauge::default();
        registry.register(
            "stockade_audit_head_sequence",
            "Sequence number of the audit chain's last row, read at scrape time",
            audit_head.clone(),
        );
        let bans_active = Family::<JailLabels, Gauge>::default();
        registry.register(
            "stockade_bans_active",
            "Bans in force, per jail (all: a ban by hand), read at scrape time",
            bans_active.clone(),
        );
        let clock_skew = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "stockade_clock_skew_seconds",
            "This host's wall clock minus the database's (PostgreSQL; 0 on SQLite), read at scrape time: schedules, job claims and leases follow the database's clock while they disagree",
            clock_skew.clone(),
        );
        let database_reachable = Gauge::default();
        registry.register(
            "stockade_database_reachable",
            "1 while the database was last seen reachable, 0 from an operation failing because PostgreSQL could not be reached until one succeeds again (always 1 on SQLite)",
            database_reachable.clone(),
        );
        let database_unavailable = Counter::default();
        registry.register(
            "stockade_database_unavailable",
            "Database operations failed because the database was unreachable (connection refused or cut, no connection within the pool's timeout); always 0 on SQLite",
            database_unavailable.clone(),
        );
        Telemetry {
            registry,
            store,
            access,
            queue_depth,
            audit_head,
            bans_active,
            clock_skew,
            database_reachable,
            database_unavailable,
        }
    }

    /// Read the scrape-time gauges, then encode everything (OpenMetrics text, `# EOF`).
    pub async fn render_text(&self) -> Result<String, String> {
        // An unreachable database leaves its gauges as they were: the reads stop waiting
        // once the store finds it unreachable (a read failed that way, or its probe of a
        // slow one was refused), and are not tried while it is known to be down, so the
        // scrape answers within about a second of an outage.
        if self.store.database_reachable() {
            tokio::select! {
                read = self.read_database() => {
                    if let Err(e) = read
                        && self.store.database_reachable()
                    {
                        return Err(e);
                    }
                }
                () = until_unreachable(&self.store) => {}
            }
        }
        self.database_reachable
            .set(i64::from(self.store.database_reachable()));
        // The store counts; the counter follows it (never down, even when scrapes overlap).
        self.database_unavailable.inner().fetch_max(
            self.store.unavailable_operations(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// The gauges read from the database.
    async fn read_database(&self) -> Result<(), String> {
        let queued = self.store.queued_jobs().await.map_err(|e| e.to_string())?;
        let head = self.store.audit_head().await.map_err(|e| e.to_string())?;
        let bans = self.access.bans(false).await.map_err(|e| e.to_string())?;
        let skew_ms = self.store.sync_clock().await.map_err(|e| e.to_string())?;
        self.queue_depth.clear();
        // The workflow queue is always shown, at 0 when empty.
        self.queue_depth
            .get_or_create(&KindLabels {
                kind: stockade_workflows::exec::JOB_KIND.to_owned(),
            })
            .set(0);
        for (kind, n) in queued {
            self.queue_depth.get_or_create(&KindLabels { kind }).set(n);
        }
        self.audit_head.set(head.map_or(0, |(seq, _)| seq));
        // Whole milliseconds as seconds (a float gauge); a reading too slow to be precise
        // leaves the last one.
        #[allow(clippy::cast_precision_loss)]
        if let Some(ms) = skew_ms {
            self.clock_skew.set(ms as f64 / 1000.0);
        }
        self.bans_active.clear();
        for jail in stockade_access::Jail::ALL {
            self.bans_active
                .get_or_create(&JailLabels {
                    jail: jail.as_str(),
                })
                .set(0);
        }
        self.bans_active
            .get_or_create(&JailLabels { jail: "all" })
            .set(0);
        let now_s = stockade_core::time::now_ms() / 1000;
        for b in bans.iter().filter(|b| b.active_at(now_s)) {
            let jail = b.jail().map_or("all", |j| j.as_str());
            self.bans_active.get_or_create(&JailLabels { jail }).inc();
        }
        Ok(())
    }
}

/// Returns once `store` finds the database unreachable.
async fn until_unreachable(store: &Store) {
    while store.database_reachable() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl MetricsSource for Telemetry {
    fn render(
        &self,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(self.render_text())
    }
}
