//! The pipeline: event → severity → aggregation → scrubbing → outbox → sender.
//!
//! - **Router.** Events are written by their producers in the same transaction as the
//!   failure (sync error events, oversells, egress anomalies, access security events).
//!   The router reads the events after its persisted cursor, classifies each into an
//!   allow-listed, scrubbed [`Alert`](crate::Alert), and in one transaction writes an
//!   outbox row per channel that takes it (the first of its aggregation key), or folds
//!   it into the key's open window, marks the events routed and moves its cursor. It
//!   wakes on every write this process makes and polls for other processes' writes.
//! - **Windows.** When a window closes with folded repeats, one follow-up per channel
//!   says how many and since when; the window reopens, so a failure that goes on
//!   produces one message per window, not one per event.
//! - **Senders.** One per channel, in the process holding the channel's lease (a lease
//!   row with a fencing token; every commit a sender makes carries its fence). Each
//!   message takes every due row (a burst becomes one digest), waits for the channel's
//!   rate budget, is rendered, signed and sent through the egress gateway, and its
//!   outcome is committed with an audit row: delivered; rate-limited or failing (kept,
//!   retried with backoff); or a configuration error (held, not retried, raised on the
//!   other channels and the dashboard, released when the channel's settings change or
//!   by `stockade alert retry`).
//!
//! This module keeps the pipeline's handle ([`Alerts`]: start, wake, route now, stop)
//! and the state its tasks share; each job has its own file: `router.rs`, `windows.rs`,
//! `lease.rs` (each channel's sending lease), `sender.rs` (with the held/misconfigured handling), `outcome.rs` (recording a
//! delivery, retries and backoff), `limiter.rs`, `prune.rs`, and `status.rs` (what the
//! dashboard and the CLI read, and `alert test`).

mod lease;
mod limiter;
mod outcome;
mod prune;
mod router;
mod sender;
mod status;
mod windows;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use stockade_core::Actor;
use stockade_egress::Gateway;
use stockade_store::{EventStream, Store, StoreError, sql_params};
use stockade_vault::Vault;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::channel::ChannelClient;
use crate::config::AlertsConfig;
use limiter::Limiter;
use router::{route_batch, router_loop};
use sender::sender_loop;
use windows::flush_windows;

pub use lease::{ROUTER_LEASE, lease_name};
pub use prune::prune;
pub use sender::release_held;
pub use status::test_channel;

const ACTOR: Actor = Actor::System("alerts");

/// Why the pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("alert store error: {0}")]
    Store(#[from] StoreError),
    #[error("invalid alert settings: {0}")]
    Config(String),
    #[error("unknown alert channel {0:?}: it is not in the [alerts] configuration")]
    UnknownChannel(String),
    #[error(
        "another process routes alerts (it holds the lease {ROUTER_LEASE}; a running `stockade serve` routes on its own): nothing was routed; if that process has stopped, try again in {retry_in_s} s, when its lease expires"
    )]
    RouterBusy { retry_in_s: i64 },
}

pub type Result<T, E = AlertsError> = std::result::Result<T, E>;

/// Outbox due times and dedup windows are read by whichever process holds a channel or
/// routes events: the clock the processes share (stockade_core::clock).
fn now_ms() -> i64 {
    stockade_core::clock::now_ms()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Counters since start (for the bench and the demo).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PipelineStats {
    pub events_routed: u64,
    pub events_folded: u64,
    pub outbox_rows: u64,
    pub messages_sent: u64,
    pub send_failures: u64,
}

struct ChannelRuntime {
    client: ChannelClient,
    wake: Notify,
    limiter: Mutex<Limiter>,
    /// This process's sending lease on the channel ([`lease`]).
    lease: lease::HeldLease,
}

struct Inner {
    store: Store,
    /// The router's view of the event stream (subscriber `alerts`).
    events: EventStream,
    vault: Arc<Vault>,
    config: AlertsConfig,
    channels: Vec<Arc<ChannelRuntime>>,
    holder: String,
    /// This process's routing lease ([`router`]: one router at a time).
    router_lease: lease::HeldLease,
    /// Held for a round of routing (the router's, or [`Alerts::route_now`]'s): one at a
    /// time, so they never race each other for a batch.
    routing: tokio::sync::Mutex<()>,
    wake_router: Notify,
    stats: Mutex<PipelineStats>,
    telemetry: AlertTelemetry,
}

/// An alert counter's labels: the channel kind (`dingtalk`, `feishu`) and what happened.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct AlertLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

/// Alerts sent, failed and held per channel kind. Survives pipeline restarts (a config
/// reload) when the same handle is passed to [`Alerts::start_with`].
#[derive(Debug, Clone, Default)]
pub struct AlertTelemetry {
    pub alerts: prometheus_client::metrics::family::Family<
        AlertLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl AlertTelemetry {
    /// Register as `stockade_alerts_total{kind,outcome}`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "stockade_alerts",
            "Alerts per channel kind: sent (delivered), failed (a delivery attempt failed), held (a misconfigured channel holds them)",
            self.alerts.clone(),
        );
    }

    pub(crate) fn count(&self, kind: &'static str, outcome: &'static str, n: u64) {
        self.alerts
            .get_or_create(&AlertLabels { kind, outcome })
            .inc_by(n);
    }
}

/// The running pipeline.
pub struct Alerts {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("channels", &self.inner.config.channels.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Alerts {
    /// Start the router and one sender per channel on the current runtime. The gateway
    /// must allow the channels' hosts.
    pub async fn start(
        store: Store,
        vault: Arc<Vault>,
        gateway: &Gateway,
        config: AlertsConfig,
    ) -> Result<Alerts> {
        Alerts::start_with(store, vault, gateway, config, AlertTelemetry::default()).await
    }

    /// [`Alerts::start`], counting into `telemetry` (kept across restarts by the caller).
    pub async fn start_with(
        store: Store,
        vault: Arc<Vault>,
        gateway: &Gateway,
        config: AlertsConfig,
        telemetry: AlertTelemetry,
    ) -> Result<Alerts> {
        config.validate().map_err(AlertsError::Config)?;
        let env = store.environment().as_str();
        let channels: Vec<Arc<ChannelRuntime>> = config
            .channels
            .iter()
            .map(|c| {
                Arc::new(ChannelRuntime {
                    client: ChannelClient::new(
                        gateway,
                        c.clone(),
                        env,
                        config.dashboard_url.clone(),
                    )
                    .with_language(config.language),
                    wake: Notify::new(),
                    limiter: Mutex::new(Limiter {
                        sent: VecDeque::new(),
                        blocked_until: None,
                    }),
                    lease: lease::HeldLease::default(),
                })
            })
            .collect();
        for c in &config.channels {
            store
                .write_unaudited(
                    "INSERT INTO alert_channels (name, kind, status, failures) VALUES ($1, $2, 'ok', 0) ON CONFLICT (name) DO NOTHING",
                    sql_params![c.name.as_str(), c.kind.as_str()],
                )
                .await?;
        }
        let holder = format!(
            "{}-{}",
            std::process::id(),
            hex::encode(now_ms().to_be_bytes())
        );
        let events = EventStream::subscribe(&store, "alerts").await?;
        let inner = Arc::new(Inner {
            store,
            events,
            vault,
            config,
            channels,
            holder,
            router_lease: lease::HeldLease::default(),
            routing: tokio::sync::Mutex::new(()),
            wake_router: Notify::new(),
            stats: Mutex::new(PipelineStats::default()),
            telemetry,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (i, s) = (inner.clone(), stop_rx.clone());
        let mut tasks = vec![
            tokio::spawn(router_loop(inner.clone(), stop_rx.clone())),
            tokio::spawn(async move {
                let wake = || async { i.wake_router.notify_one() };
                lease::keep(&i, &i.router_lease, ROUTER_LEASE, "routing", s, wake).await;
            }),
        ];
        for ch in &inner.channels {
            let (i, c, s) = (inner.clone(), ch.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                lease::keep_lease(&i, &c, s).await;
            }));
            tasks.push(tokio::spawn(sender_loop(
                inner.clone(),
                ch.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(Alerts { inner, stop, tasks })
    }

    /// Look for new events now.
    pub fn wake(&self) {
        self.inner.wake_router.notify_one();
    }

    /// Route pending events and close due windows now, under the router's lease and with
    /// its fence, as the router does: this pipeline's grant, or the lease taken now (kept
    /// from then on, given back at shutdown). While another process holds it, refused
    /// ([`AlertsError::RouterBusy`]) with nothing written.
    pub async fn route_now(&self) -> Result<usize> {
        let grant = lease::take_router(&self.inner).await?;
        let _routing = self.inner.routing.lock().await;
        let n = route_batch(&self.inner, Some(&grant)).await?;
        flush_windows(&self.inner, Some(&grant)).await?;
        Ok(n)
    }

    pub fn stats(&self) -> PipelineStats {
        *lock(&self.inner.stats)
    }

    /// Stop the tasks. Nothing is lost: events after the router's cursor and unsent rows
    /// stay in the database for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for ch in &self.inner.channels {
            ch.wake.notify_one();
        }
        self.inner.wake_router.notify_one();
        for t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("an alert task did not stop in time");
            }
        }
        // Give the leases back so another process can send at once.
        for ch in &self.inner.channels {
            lease::release(&self.inner.store, &ch.lease).await;
        }
        lease::release(&self.inner.store, &self.inner.router_lease).await;
    }
}
