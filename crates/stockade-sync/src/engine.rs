//! The running engine: per connection a fetcher, a pusher, a poller and a reconciler;
//! one ingest worker doing group commits; webhook handling.
//!
//! This file holds the engine's state (`Inner`, one `Live` per running connection), its
//! start, stop and summary, and the helpers the jobs share (`record_event`, `stop`). Each
//! job lives in its own module:
//! - `registry`: which connections run (refresh, launch, revoke, revoked names);
//! - `hooks`: webhook deliveries (verify, entitle, act), the server's `HookSink`;
//! - `fetch`: webhook order ids batched into fetches;
//! - `commit`: the ingest worker's group commits and batch notices;
//! - `pusher`: target quantities pushed to the channels;
//! - `reconciler`: channel quantities read back, drift repaired;
//! - `poller`: orders listed since the persisted cursor;
//! - `returns`: returns reports (Amazon).
//!
//! Buyer fields of old orders are removed by the retention job (`stockade-retention`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use stockade_core::event::MarketFailure;
use stockade_core::order::{Marketplace, Order};
use stockade_core::{Actor, Event};
use stockade_egress::Gateway;
use stockade_marketplaces::AnyConnector;
use stockade_store::{AuditDetails, AuditEntry, Change, Mutation, Store};
use stockade_vault::Vault;
use stockade_vault::cipher::DataKey;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::ingest::Source;
use crate::metrics::Metrics;
use crate::{Result, SyncOptions};

const ACTOR: Actor = Actor::System("sync");

/// How long a webhook waits for its order to be fetched and stored before answering 503
/// (a fetch held back by the marketplace's rate limit answers sooner: see `hooks.rs`).
const WEBHOOK_ANSWER_WITHIN: Duration = Duration::from_secs(3);

mod app_shares;
mod coalesce;
mod commit;
// Several processes: pushers woken across processes.
mod cross_wake;
mod fetch;
// Webhook fetches handed to the connection's owner (scale-out).
mod handoff;
mod handoff_request;
mod handoff_wait;
mod hooks;
// Which process runs each connection's own work (leases; scale-out on PostgreSQL).
mod listed;
mod owner;
mod plan;
mod poll_skip;
mod poller;
mod pusher;
mod reconciler;
mod registry;
mod returns;
// eBay's revisions per listing per day, shared by a connection's owners.
mod revisions;
mod shed;

use fetch::FetchJob;
pub use owner::Ownership;

const ACTIVE: u8 = 0;
const PAUSED: u8 = 1;
const REVOKED: u8 = 2;

struct IngestJob {
    live: Arc<Live>,
    order: Order,
    source: Source,
    arrival: Instant,
    replies: Vec<oneshot::Sender<Result<bool>>>,
    /// Counted in the arrival → confirmed figures (not a fetch that only fills in an
    /// order its summary already stored).
    timed: bool,
}

#[derive(Debug, Clone)]
struct Notice {
    batch: u64,
    skus: Arc<HashSet<String>>,
    first_arrival: Instant,
}

/// One running connection.
struct Live {
    id: i64,
    name: String,
    marketplace: Marketplace,
    account: String,
    /// The settings the connector was built from (an edit changes them: rebuild).
    settings: crate::ConnectionSettings,
    /// The marketplace app of the connection's credentials (see `AnyConnector::app_id`).
    app: String,
    status: AtomicU8,
    connector: AnyConnector,
    key: Arc<DataKey>,
    fetch_tx: mpsc::UnboundedSender<FetchJob>,
    notice_tx: mpsc::UnboundedSender<Notice>,
    wake: Notify,
    /// Batch notices sent to this pusher (a batch that changed none of its SKUs sends none).
    woken: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The connections this process owns (see `owner`).
    owned: Arc<owner::Owned>,
    /// Its credentials when the connector was built: how many, the newest's date.
    creds: (usize, i64),
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("name", &self.name).finish()
    }
}

impl Live {
    /// This connection's metric labels (its name and marketplace; never buyer data).
    fn labels(&self) -> crate::metrics::ChannelLabels {
        crate::metrics::ChannelLabels {
            channel: self.name.clone(),
            marketplace: self.marketplace.as_str().to_owned(),
        }
    }

    /// The connection's status for this process's loops: an active connection another
    /// process owns reads as paused here (see `owner`).
    fn status(&self) -> u8 {
        let s = self.status.load(Ordering::Relaxed);
        if s == ACTIVE && !self.owned.may_act(self.id) {
            PAUSED
        } else {
            s
        }
    }
}

/// Batches waiting for their listings to be confirmed (for the latency figures).
#[derive(Debug, Default)]
struct Tracker {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (Vec<Instant>, usize)>>,
}

/// Whether the incident controls hold this connection's pushes and polls: it is
/// isolated, or the instance is locked down (they pause quietly instead of failing at
/// the egress gateway). Webhooks still come in during a lockdown.
fn contained(inner: &Inner, connection: &str) -> bool {
    let c = inner.store.controls().snapshot();
    c.locked_down() || c.connection_isolated(connection)
}

struct Inner {
    store: Store,
    vault: Arc<Vault>,
    gateway: Gateway,
    opts: SyncOptions,
    live: RwLock<HashMap<String, Arc<Live>>>,
    /// Revoked connections (name → marketplace): deliveries to them are answered 410.
    revoked: RwLock<HashMap<String, Marketplace>>,
    ingest_tx: mpsc::Sender<IngestJob>,
    metrics: Arc<Metrics>,
    tracker: Tracker,
    /// Which SKUs each connection lists (which pushers a batch wakes).
    listed: listed::Listed,
    /// Webhook deliveries pending, and the shedding past the bound.
    admission: shed::Admission,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The connections this process owns (see `owner`).
    owned: Arc<owner::Owned>,
    /// Handed-over fetches to write (see `handoff_request`).
    handoff_requests: mpsc::Sender<handoff_request::Request>,
    /// Deliveries waiting for the owner's fetch (see `handoff_wait`).
    handoff_waits: handoff_wait::Waits,
    /// A wake-up for the other processes' pushers is wanted (see `cross_wake`).
    cross_wake: Notify,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine").finish_non_exhaustive()
    }
}

/// The sync engine of one process.
#[derive(Debug, Clone)]
pub struct SyncEngine {
    inner: Arc<Inner>,
}

/// Figures for the live summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub changes_applied: u64,
    pub unchanged: u64,
    pub webhooks_accepted: u64,
    pub webhooks_rejected: u64,
    pub polled: u64,
    pub batches: u64,
    pub pushes_confirmed: u64,
    pub push_calls: u64,
    pub pushes_coalesced: u64,
    pub push_failures: u64,
    pub drift_repaired: u64,
    pub error_events: u64,
    pub connections: Vec<(String, String)>,
}

/// Store the low-stock threshold the `stock.low` trigger reads (migration 0013), in an
/// audited commit, when it differs from the stored one.
pub async fn set_low_stock_threshold(store: &Store, threshold: i64) -> Result<()> {
    let value = threshold.to_string();
    if store.meta(crate::LOW_STOCK_META).await?.as_deref() == Some(value.as_str()) {
        return Ok(());
    }
    let change = Change::new(
        Mutation::SetMeta {
            key: crate::LOW_STOCK_META.to_owned(),
            value,
        },
        AuditEntry::new(
            "sync.low_stock_threshold",
            "setting:sync.low_stock_threshold",
            AuditDetails::new().int("threshold", threshold),
        ),
    );
    store.commit(&Actor::System("sync"), vec![change]).await?;
    Ok(())
}

impl SyncEngine {
    /// Start the engine on every active or paused connection; finish any purge a crash
    /// interrupted.
    pub async fn start(
        vault: Arc<Vault>,
        gateway: Gateway,
        opts: SyncOptions,
    ) -> Result<SyncEngine> {
        let store = vault.store().clone();
        set_low_stock_threshold(&store, opts.low_stock_threshold).await?;
        let (ingest_tx, ingest_rx) = mpsc::channel(65_536);
        let (handoff_requests, handoff_rx) = mpsc::channel(65_536);
        let (shutdown, _) = watch::channel(false);
        let owned = Arc::new(owner::Owned::new(opts.ownership.is_some()));
        let inner = Arc::new(Inner {
            store,
            vault,
            gateway,
            opts,
            live: RwLock::new(HashMap::new()),
            revoked: RwLock::new(HashMap::new()),
            ingest_tx,
            metrics: Arc::new(Metrics::default()),
            tracker: Tracker::default(),
            listed: listed::Listed::new(),
            admission: shed::Admission::new(),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            owned,
            handoff_requests,
            handoff_waits: handoff_wait::Waits::default(),
            cross_wake: Notify::new(),
        });
        let sync = SyncEngine { inner };
        sync.refresh().await?;
        let mut tasks = vec![tokio::spawn(commit::ingest_loop(
            sync.inner.clone(),
            ingest_rx,
        ))];
        {
            let s = sync.clone();
            tasks.push(tokio::spawn(async move { s.refresh_loop().await }));
        }
        if let Some(o) = sync.inner.opts.ownership.clone() {
            // Take this process's share before serving, so a lone process pushes from
            // its first second rather than after a round of the loop.
            if let Err(e) = owner::round(&sync.inner, &o).await {
                tracing::warn!("connection ownership: {e}; trying again shortly");
            }
            if o.takes_work {
                tasks.push(tokio::spawn(handoff::claim_loop(sync.inner.clone())));
                tasks.push(tokio::spawn(cross_wake::receive_loop(sync.inner.clone())));
            }
            tasks.push(tokio::spawn(owner::owner_loop(sync.inner.clone(), o)));
            tasks.push(tokio::spawn(handoff_request::request_loop(
                sync.inner.clone(),
                handoff_rx,
            )));
            tasks.push(tokio::spawn(handoff_wait::wait_loop(sync.inner.clone())));
            tasks.push(tokio::spawn(cross_wake::send_loop(sync.inner.clone())));
        }
        if let Ok(mut t) = sync.inner.tasks.lock() {
            t.extend(tasks);
        }
        Ok(sync)
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Stop every task. Work not committed is answered with 503 (the marketplaces retry).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let lives: Vec<Arc<Live>> = self
            .inner
            .live
            .write()
            .map(|mut m| m.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for l in lives {
            stop(&l);
        }
        let tasks: Vec<JoinHandle<()>> = self
            .inner
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in tasks {
            t.abort();
        }
        // Nothing of this process pushes any more: hand its connections over at once.
        self.release_ownership().await;
    }

    /// Counters for the live summary.
    pub fn summary(&self) -> Summary {
        let m = &self.inner.metrics;
        let g = Metrics::get;
        Summary {
            changes_applied: g(&m.changes_applied),
            unchanged: g(&m.unchanged),
            webhooks_accepted: g(&m.webhooks_accepted),
            webhooks_rejected: g(&m.webhooks_rejected),
            polled: g(&m.polled),
            batches: g(&m.batches),
            pushes_confirmed: g(&m.pushes_confirmed),
            push_calls: g(&m.push_calls),
            pushes_coalesced: g(&m.pushes_coalesced),
            push_failures: g(&m.push_failures),
            drift_repaired: g(&m.drift_repaired),
            error_events: g(&m.error_events),
            connections: self
                .inner
                .live
                .read()
                .map(|m| {
                    let mut v: Vec<(String, String)> = m
                        .values()
                        .map(|l| {
                            let s = match l.status.load(Ordering::Relaxed) {
                                ACTIVE => "active",
                                PAUSED => "paused",
                                _ => "revoked",
                            };
                            (l.name.clone(), s.to_owned())
                        })
                        .collect();
                    v.sort();
                    v
                })
                .unwrap_or_default(),
        }
    }
}

fn stop(l: &Live) {
    if let Ok(mut t) = l.tasks.lock() {
        for h in t.drain(..) {
            h.abort();
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A marketplace error as a sync event's detail (class, message, status).
fn market_failure(connection: &str, e: &stockade_marketplaces::MarketError) -> MarketFailure {
    MarketFailure {
        class: Some(e.kind.as_str().to_owned()),
        connection: connection.to_owned(),
        message: Some(e.message.clone()),
        status: e.status,
        ..MarketFailure::default()
    }
}

/// Record a sync error event (DESIGN §6) for the alert pipeline, audited.
async fn record_event(inner: &Inner, event: Event) -> Result<()> {
    Metrics::inc(&inner.metrics.error_events, 1);
    let c = event.columns();
    let audit = AuditEntry::new(
        "sync.event",
        c.caller,
        AuditDetails::new()
            .str("kind", &c.kind)
            .str("operation", &c.operation),
    );
    inner.store.append_event(&ACTOR, &event, audit).await?;
    Ok(())
}
