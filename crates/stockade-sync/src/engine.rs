//! The running engine: per connection a fetcher, a pusher, a poller and a reconciler;
//! one ingest worker doing group commits; webhook handling.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use stockade_core::Actor;
use stockade_core::order::{Marketplace, Order};
use stockade_egress::Gateway;
use stockade_marketplaces::{
    AnyConnector, Connector, EventError, InboundEvent, InboundRequest, MarketError, QuantityUpdate,
};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, Store, sql_params};
use stockade_vault::Vault;
use stockade_vault::cipher::DataKey;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::catalog::ListingIds;
use crate::connections::{self, Connection, ConnectionStatus};
use crate::ingest::{self, Source};
use crate::metrics::Metrics;
use crate::{Result, SyncError, SyncOptions, now_ms, purge};

const ACTOR: Actor = Actor::System("sync");

/// How long a webhook waits for its order to be fetched and stored before answering 503.
const WEBHOOK_ANSWER_WITHIN: Duration = Duration::from_secs(8);

mod hooks;
mod returns;

/// A webhook's answer to the marketplace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl HookReply {
    fn ok() -> Self {
        HookReply {
            status: 200,
            content_type: "application/json",
            body: b"{\"ok\":true}".to_vec(),
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookFailure {
    /// No such connection for this marketplace (404; logged, not an authentication failure).
    UnknownConnection,
    /// The connection existed and was revoked (410: the marketplace should stop
    /// delivering; logged, not an authentication failure).
    Revoked,
    /// The signature is missing or wrong (401; counts for the ban guard).
    Signature(&'static str),
    /// Signed but unusable (400). The message names the problem, never the content.
    Malformed(String),
    /// Over the body limit (413).
    TooLarge,
    /// Not stored now (503): the marketplace retries.
    Unavailable(String),
}

const ACTIVE: u8 = 0;
const PAUSED: u8 = 1;
const REVOKED: u8 = 2;

fn status_code(s: ConnectionStatus) -> u8 {
    match s {
        ConnectionStatus::Active => ACTIVE,
        ConnectionStatus::Paused => PAUSED,
        ConnectionStatus::Revoked => REVOKED,
    }
}

type Reply = oneshot::Sender<Result<bool>>;

struct FetchJob {
    id: String,
    arrival: Instant,
    reply: oneshot::Sender<Result<bool>>,
}

struct IngestJob {
    live: Arc<Live>,
    order: Order,
    source: Source,
    arrival: Instant,
    replies: Vec<oneshot::Sender<Result<bool>>>,
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
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("name", &self.name).finish()
    }
}

impl Live {
    fn status(&self) -> u8 {
        self.status.load(Ordering::Relaxed)
    }
}

/// Batches waiting for their listings to be confirmed (for the latency figures).
#[derive(Debug, Default)]
struct Tracker {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (Vec<Instant>, usize)>>,
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
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sync").finish_non_exhaustive()
    }
}

/// The sync engine of one process.
#[derive(Debug, Clone)]
pub struct Sync {
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

impl Sync {
    /// Start the engine on every active or paused connection; finish any purge a crash
    /// interrupted.
    pub async fn start(vault: Arc<Vault>, gateway: Gateway, opts: SyncOptions) -> Result<Sync> {
        let store = vault.store().clone();
        let (ingest_tx, ingest_rx) = mpsc::channel(65_536);
        let (shutdown, _) = watch::channel(false);
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
            shutdown,
            tasks: Mutex::new(Vec::new()),
        });
        let sync = Sync { inner };
        sync.refresh().await?;
        let mut tasks = vec![tokio::spawn(ingest_loop(sync.inner.clone(), ingest_rx))];
        {
            let s = sync.clone();
            tasks.push(tokio::spawn(async move { s.refresh_loop().await }));
            let s = sync.clone();
            tasks.push(tokio::spawn(async move { s.retention_loop().await }));
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
                            let s = match l.status() {
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

    fn get_live(&self, name: &str) -> Option<Arc<Live>> {
        self.inner.live.read().ok()?.get(name).cloned()
    }

    fn is_revoked(&self, name: &str, marketplace: Marketplace) -> bool {
        self.inner
            .revoked
            .read()
            .is_ok_and(|r| r.get(name) == Some(&marketplace))
    }

    fn mark_revoked(&self, name: &str, marketplace: Marketplace) {
        if let Ok(mut r) = self.inner.revoked.write() {
            r.insert(name.to_owned(), marketplace);
        }
    }

    /// Pick up connections added, paused, resumed or revoked (by this process or another).
    pub async fn refresh(&self) -> Result<()> {
        let conns = connections::list(&self.inner.store).await?;
        for c in conns {
            if c.status == ConnectionStatus::Revoked {
                self.mark_revoked(&c.name, c.marketplace);
            }
            let existing = self.get_live(&c.name);
            match (c.status, existing) {
                (ConnectionStatus::Revoked, Some(l)) => {
                    l.status.store(REVOKED, Ordering::Relaxed);
                    stop(&l);
                    if let Ok(mut m) = self.inner.live.write() {
                        m.remove(&c.name);
                    }
                }
                (ConnectionStatus::Revoked, None) => {
                    // A purge interrupted after its transaction: finish the key destruction.
                    if let Ok(owner) = c.key_owner()
                        && let Ok(ids) =
                            self.inner.vault.shred(&owner, "deauthorized", &ACTOR).await
                        && !ids.is_empty()
                    {
                        tracing::warn!(connection = %c.name, "finished an interrupted purge: data key destroyed");
                    }
                }
                (_, Some(l)) if l.settings != c.settings || l.account != c.account => {
                    // `connection edit`: rebuild the connector with the new URLs and
                    // credentials; the connection's data stays.
                    stop(&l);
                    if let Ok(mut m) = self.inner.live.write() {
                        m.remove(&c.name);
                    }
                    if let Err(e) = self.launch(&c).await {
                        tracing::error!(connection = %c.name, error = %e, "cannot restart the edited connection");
                        self.inner
                            .metrics
                            .error(format!("{}: cannot start: {e}", c.name));
                    }
                }
                (s, Some(l)) => {
                    let before = l.status.swap(status_code(s), Ordering::Relaxed);
                    if before != status_code(s) {
                        l.wake.notify_one();
                    }
                }
                (_, None) => {
                    if let Err(e) = self.launch(&c).await {
                        tracing::error!(connection = %c.name, error = %e, "cannot start the connection");
                        self.inner
                            .metrics
                            .error(format!("{}: cannot start: {e}", c.name));
                    }
                }
            }
        }
        Ok(())
    }

    async fn refresh_loop(&self) {
        let mut stop_rx = self.inner.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.opts.refresh_interval) => {}
                _ = stop_rx.changed() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "could not refresh connections");
            }
        }
    }

    async fn launch(&self, c: &Connection) -> Result<()> {
        let inner = &self.inner;
        let connector =
            connections::connector(c, &inner.vault, &inner.gateway, inner.opts.lift_rate_limits)
                .await?;
        let key = inner.vault.data_key_for(&c.key_owner()?, &ACTOR).await?;
        let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let live = Arc::new(Live {
            id: c.id,
            name: c.name.clone(),
            marketplace: c.marketplace,
            account: c.account.clone(),
            settings: c.settings.clone(),
            app: connector.app_id().to_owned(),
            status: AtomicU8::new(status_code(c.status)),
            connector,
            key,
            fetch_tx,
            notice_tx,
            wake: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = vec![
            tokio::spawn(fetch_loop(inner.clone(), live.clone(), fetch_rx)),
            tokio::spawn(push_loop(inner.clone(), live.clone(), notice_rx)),
        ];
        if let Some(every) = inner.opts.poll_interval {
            tasks.push(tokio::spawn(poll_loop(inner.clone(), live.clone(), every)));
        }
        if let Some(every) = inner.opts.reconcile_interval {
            tasks.push(tokio::spawn(reconcile_loop(
                inner.clone(),
                live.clone(),
                every,
            )));
        }
        if let Ok(mut t) = live.tasks.lock() {
            t.extend(tasks);
        }
        if let Ok(mut m) = inner.live.write() {
            m.insert(c.name.clone(), live);
        }
        tracing::info!(connection = %c.name, marketplace = %c.marketplace, "sync started");
        Ok(())
    }

    /// Stop a connection at once and purge it (see [`purge`]).
    pub async fn revoke(&self, name: &str, reason: &str) -> Result<purge::PurgeReceipt> {
        if let Some(l) = self.get_live(name) {
            self.mark_revoked(name, l.marketplace);
            l.status.store(REVOKED, Ordering::Relaxed);
            stop(&l);
            if let Ok(mut m) = self.inner.live.write() {
                m.remove(name);
            }
        }
        purge::purge(&self.inner.vault, name, reason, &ACTOR).await
    }

    /// Ingest one order as if it had been fetched: the same idempotent path as webhooks
    /// and polls (tools and tests). Resolves once it is stored.
    pub async fn ingest(&self, connection: &str, order: Order) -> Result<()> {
        let live = self
            .get_live(connection)
            .ok_or_else(|| SyncError::UnknownConnection(connection.to_owned()))?;
        let (tx, rx) = oneshot::channel();
        let job = IngestJob {
            live,
            order,
            source: Source::Poll,
            arrival: Instant::now(),
            replies: vec![tx],
        };
        self.inner
            .ingest_tx
            .send(job)
            .await
            .map_err(|_| SyncError::ShuttingDown)?;
        rx.await.map_err(|_| SyncError::ShuttingDown)?.map(|_| ())
    }

    /// Wake every pusher (after a catalog import, for instance).
    pub fn wake_pushers(&self) {
        if let Ok(m) = self.inner.live.read() {
            for l in m.values() {
                l.wake.notify_one();
            }
        }
    }

    /// Poll one connection now (the demo and tests use it; the poller calls it on a timer).
    pub async fn poll_now(&self, name: &str) -> Result<usize> {
        let live = self
            .get_live(name)
            .ok_or_else(|| SyncError::UnknownConnection(name.to_owned()))?;
        poll_once(&self.inner, &live).await
    }

    /// Reconcile one connection now.
    pub async fn reconcile_now(&self, name: &str) -> Result<usize> {
        let live = self
            .get_live(name)
            .ok_or_else(|| SyncError::UnknownConnection(name.to_owned()))?;
        reconcile_once(&self.inner, &live).await
    }

    /// Whether every listing of every active connection has its newest target confirmed.
    pub async fn settled(&self) -> Result<bool> {
        let row = self
            .inner
            .store
            .query_one(
                "SELECT COUNT(*) FROM listings l JOIN connections c ON c.id = l.connection_id
             WHERE c.status = 'active' AND l.target_version > l.pushed_version",
                vec![],
            )
            .await?;
        Ok(match row {
            Some(r) => r.int(0)? == 0,
            None => true,
        })
    }

    async fn retention_loop(&self) {
        let mut stop_rx = self.inner.shutdown.subscribe();
        loop {
            if let Err(e) = delete_expired_pii(&self.inner).await {
                tracing::warn!(error = %e, "PII retention run failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop_rx.changed() => return,
            }
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

fn unavailable_reason(e: &SyncError) -> String {
    match e {
        SyncError::Market(m) => format!("the order could not be fetched ({})", m.kind),
        SyncError::Store(_) => "the order could not be stored".into(),
        SyncError::ShuttingDown => "sync is stopping".into(),
        _ => "the order could not be processed".into(),
    }
}

/// Fetched orders whose goods came back in a return the order does not show (TikTok's
/// Return & Refund API) become returned orders. A failure keeps the fetched orders as
/// they are: the poller looks for returns again.
async fn with_returns(live: &Live, mut orders: Vec<Order>) -> Vec<Order> {
    use stockade_core::order::OrderStatus;
    let shipped: Vec<String> = orders
        .iter()
        .filter(|o| matches!(o.status, OrderStatus::Shipped | OrderStatus::Delivered))
        .map(|o| o.external_id.clone())
        .collect();
    if shipped.is_empty() {
        return orders;
    }
    match live.connector.returned_orders(None, &shipped).await {
        Ok(returned) => merge_orders(&mut orders, returned),
        Err(e) => {
            tracing::warn!(connection = %live.name, error = %e, "looking up returns failed; the poller tries again");
        }
    }
    orders
}

/// Replace orders by their newer version (same external id), adding the others.
fn merge_orders(orders: &mut Vec<Order>, newer: Vec<Order>) {
    for n in newer {
        match orders.iter_mut().find(|o| o.external_id == n.external_id) {
            Some(o) => *o = n,
            None => orders.push(n),
        }
    }
}

/// Gather webhook order ids into batched fetches.
async fn fetch_loop(inner: Arc<Inner>, live: Arc<Live>, mut rx: mpsc::UnboundedReceiver<FetchJob>) {
    let permits = Arc::new(Semaphore::new(inner.opts.fetch_concurrency.max(1)));
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + inner.opts.fetch_wait;
        while jobs.len() < inner.opts.fetch_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(j)) => jobs.push(j),
                    _ => break,
                },
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (inner, live) = (inner.clone(), live.clone());
        tokio::spawn(async move {
            fetch_batch(&inner, &live, jobs).await;
            drop(permit);
        });
    }
}

async fn fetch_batch(inner: &Arc<Inner>, live: &Arc<Live>, jobs: Vec<FetchJob>) {
    let mut by_id: HashMap<String, (Instant, Vec<Reply>)> = HashMap::new();
    for j in jobs {
        let e = by_id.entry(j.id).or_insert((j.arrival, Vec::new()));
        e.0 = e.0.min(j.arrival);
        e.1.push(j.reply);
    }
    let ids: Vec<String> = by_id.keys().cloned().collect();
    let mut attempt = 0u32;
    let orders = loop {
        attempt += 1;
        match live.connector.get_orders(&ids).await {
            Ok(o) => break o,
            Err(e) if attempt < 3 && retryable(&e) => {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(e) => {
                inner
                    .metrics
                    .error(format!("{}: fetching orders failed: {e}", live.name));
                let _ = record_event(
                    inner,
                    &live.name,
                    "fetch_failed",
                    "get_orders",
                    e.status,
                    serde_json::json!({"connection": live.name, "class": e.kind.as_str(),
                        "attempts": attempt, "orders": ids.len(), "message": e.message}),
                )
                .await;
                let err = SyncError::Market(e);
                for (_, (_, replies)) in by_id {
                    for r in replies {
                        let _ = r.send(Err(SyncError::Invalid(unavailable_reason(&err))));
                    }
                }
                return;
            }
        }
    };
    let orders = with_returns(live, orders).await;
    for order in orders {
        let Some((arrival, replies)) = by_id.remove(&order.external_id) else {
            continue;
        };
        let job = IngestJob {
            live: live.clone(),
            order,
            source: Source::Webhook,
            arrival,
            replies,
        };
        if let Err(e) = inner.ingest_tx.send(job).await {
            for r in e.0.replies {
                let _ = r.send(Err(SyncError::ShuttingDown));
            }
        }
    }
    // Ids the marketplace does not know: nothing to store (the poller would find them
    // later if they appear).
    for (id, (_, replies)) in by_id {
        tracing::info!(connection = %live.name, order = %id, "an announced order was not found at the marketplace");
        for r in replies {
            let _ = r.send(Ok(false));
        }
    }
}

fn retryable(e: &MarketError) -> bool {
    use stockade_marketplaces::ErrorKind as K;
    matches!(e.kind, K::Throttled | K::Server | K::Transport)
}

/// Group commit: take everything queued (up to `batch_max`) and write it in one
/// transaction; answer every waiting webhook after the commit.
async fn ingest_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<IngestJob>) {
    let permits = Arc::new(Semaphore::new(inner.opts.commits_in_flight.max(1)));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < inner.opts.batch_max {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            commit_jobs(&inner, jobs).await;
            drop(permit);
        });
    }
}

async fn commit_jobs(inner: &Arc<Inner>, jobs: Vec<IngestJob>) {
    let now = now_ms();
    let mut ready = Vec::with_capacity(jobs.len());
    let mut changes = Vec::with_capacity(jobs.len());
    for job in jobs {
        match ingest::seal_buyer(&job.live.key, job.live.id, &job.order) {
            Ok(buyer) => {
                changes.push(ingest::order_change(
                    job.live.id,
                    &job.live.name,
                    &job.order,
                    buyer,
                    job.source,
                    now,
                ));
                ready.push(job);
            }
            Err(e) => {
                tracing::error!(connection = %job.live.name, error = %e, "could not encrypt an order");
                for r in job.replies {
                    let _ = r.send(Err(SyncError::Invalid("encryption failed".into())));
                }
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    match inner.store.commit(&ACTOR, changes).await {
        Ok(receipt) => finish_batch(inner, ready, receipt.last_seq - receipt.first_seq + 1),
        Err(e) if ready.len() > 1 => {
            // One bad change must not hold the others back: write them one by one.
            tracing::warn!(error = %e, orders = ready.len(), "a batch failed; committing its orders one by one");
            for job in ready {
                let change = match ingest::seal_buyer(&job.live.key, job.live.id, &job.order) {
                    Ok(b) => ingest::order_change(
                        job.live.id,
                        &job.live.name,
                        &job.order,
                        b,
                        job.source,
                        now,
                    ),
                    Err(_) => continue,
                };
                match inner.store.commit(&ACTOR, vec![change]).await {
                    Ok(r) => finish_batch(inner, vec![job], r.last_seq - r.first_seq + 1),
                    Err(e) => fail_job(inner, job, e),
                }
            }
        }
        Err(e) => {
            for job in ready {
                fail_job(
                    inner,
                    job,
                    stockade_store::StoreError::Database(e.to_string()),
                );
            }
        }
    }
}

fn fail_job(inner: &Inner, job: IngestJob, e: stockade_store::StoreError) {
    tracing::error!(connection = %job.live.name, order = %job.order.external_id, error = %e, "an order could not be stored");
    inner.metrics.error(format!(
        "{}: an order could not be stored: {e}",
        job.live.name
    ));
    for r in job.replies {
        let _ = r.send(Err(SyncError::Store(stockade_store::StoreError::Database(
            "not stored".into(),
        ))));
    }
}

fn finish_batch(inner: &Arc<Inner>, jobs: Vec<IngestJob>, applied: i64) {
    let m = &inner.metrics;
    let n = jobs.len() as u64;
    let applied = u64::try_from(applied.max(0)).unwrap_or(0).min(n);
    Metrics::inc(&m.changes_applied, applied);
    Metrics::inc(&m.unchanged, n - applied);
    Metrics::inc(&m.batches, 1);
    Metrics::inc(&m.batched_orders, n);
    let mut skus = HashSet::new();
    let mut arrivals = Vec::with_capacity(jobs.len());
    for job in jobs {
        m.arrival_to_commit.record(job.arrival.elapsed());
        for l in &job.order.lines {
            skus.insert(l.sku.clone());
        }
        arrivals.push(job.arrival);
        for r in job.replies {
            let _ = r.send(Ok(true));
        }
    }
    if applied == 0 {
        return;
    }
    let first_arrival = arrivals.iter().min().copied().unwrap_or_else(Instant::now);
    let pushers: Vec<Arc<Live>> = inner
        .live
        .read()
        .map(|l| {
            l.values()
                .filter(|l| l.status() == ACTIVE)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if pushers.is_empty() {
        for a in arrivals {
            m.order_to_confirmed.record(a.elapsed());
        }
        return;
    }
    let batch = inner.tracker.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut open) = inner.tracker.open.lock() {
        open.insert(batch, (arrivals, pushers.len()));
    }
    let skus = Arc::new(skus);
    for p in pushers {
        let notice = Notice {
            batch,
            skus: skus.clone(),
            first_arrival,
        };
        if p.notice_tx.send(notice).is_err() {
            tracker_done(inner, batch);
        }
        p.wake.notify_one();
    }
}

fn tracker_done(inner: &Inner, batch: u64) {
    let finished = match inner.tracker.open.lock() {
        Ok(mut open) => match open.get_mut(&batch) {
            Some(entry) => {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 {
                    open.remove(&batch).map(|e| e.0)
                } else {
                    None
                }
            }
            None => None,
        },
        Err(_) => None,
    };
    if let Some(arrivals) = finished {
        for a in arrivals {
            inner.metrics.order_to_confirmed.record(a.elapsed());
        }
    }
}

const PENDING: &str =
    "SELECT sku, listing_ref, target_qty, target_version, pushed_version FROM listings
     WHERE connection_id = $1 AND target_version > pushed_version
     ORDER BY CASE WHEN target_qty = 0 THEN 0 ELSE 1 END, sku LIMIT 500";
const ACK: &str = "UPDATE listings SET pushed_version = $1, acked_qty = $2, acked_at_ms = $3,
        push_failures = 0, push_failing_since_ms = NULL, push_last_error = NULL
     WHERE connection_id = $4 AND sku = $5 AND pushed_version < $1";

struct Pending {
    sku: String,
    ids: ListingIds,
    qty: u32,
    version: i64,
    pushed: i64,
}

/// Push the newest target of every changed listing; resolve batch notices.
async fn push_loop(
    inner: Arc<Inner>,
    live: Arc<Live>,
    mut notices: mpsc::UnboundedReceiver<Notice>,
) {
    let mut waiting: Vec<(Notice, HashSet<String>)> = Vec::new();
    let mut failures: u32 = 0;
    let mut reported = false;
    // A streak recorded by an earlier process is cleared by this one's first good round.
    let mut streak_recorded = true;
    let staleness = inner.metrics.staleness_of(&live.name);
    let mut again = true;
    loop {
        if !again {
            if failures > 0 {
                // While failing, wake-ups do not shorten the backoff.
                tokio::time::sleep(backoff(&inner.opts, failures)).await;
            } else {
                tokio::select! {
                    _ = live.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        again = false;
        while let Ok(n) = notices.try_recv() {
            let skus = (*n.skus).clone();
            waiting.push((n, skus));
        }
        if live.status() != ACTIVE {
            for (n, _) in waiting.drain(..) {
                tracker_done(&inner, n.batch);
            }
            continue;
        }
        let known = waiting.len();
        let rows = match inner.store.query(PENDING, sql_params![live.id]).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(connection = %live.name, error = %e, "could not read pending listings");
                failures = failures.saturating_add(1);
                continue;
            }
        };
        let pending: Vec<Pending> = rows
            .iter()
            .filter_map(|r| {
                Some(Pending {
                    sku: r.text(0).ok()?,
                    ids: serde_json::from_str(&r.text(1).ok()?).unwrap_or_default(),
                    qty: u32::try_from(r.int(2).ok()?.max(0)).unwrap_or(u32::MAX),
                    version: r.int(3).ok()?,
                    pushed: r.int(4).ok()?,
                })
            })
            .collect();
        let truncated = pending.len() >= 500;
        if !truncated {
            let set: HashSet<&str> = pending.iter().map(|p| p.sku.as_str()).collect();
            for (_, skus) in waiting.iter_mut().take(known) {
                skus.retain(|s| set.contains(s.as_str()));
            }
        }
        let mut confirmed: HashSet<String> = HashSet::new();
        if !pending.is_empty() {
            let (zeros, rest): (Vec<&Pending>, Vec<&Pending>) =
                pending.iter().partition(|p| p.qty == 0);
            let mut failed: Option<MarketError> = None;
            for group in [zeros, rest] {
                if group.is_empty() {
                    continue;
                }
                for chunk in group.chunks(inner.opts.push_batch.max(1)) {
                    match push_chunk(&inner, &live, chunk).await {
                        Ok((ok, err)) => {
                            confirmed.extend(ok);
                            if err.is_some() {
                                failed = err;
                            }
                        }
                        Err(e) => failed = Some(e),
                    }
                }
            }
            if confirmed.len() < pending.len() {
                failures = failures.saturating_add(1);
                Metrics::inc(&inner.metrics.push_failures, 1);
                let text = failed.as_ref().map_or_else(
                    || "the channel did not confirm the new quantities".to_owned(),
                    crate::health::error_text,
                );
                crate::health::record_failure(&inner.store, live.id, &text, now_ms()).await;
                streak_recorded = true;
                if let Some(e) = &failed {
                    inner
                        .metrics
                        .error(format!("{}: push failed: {e}", live.name));
                    if failures >= inner.opts.push_attempts_before_event && !reported {
                        reported = true;
                        let _ = record_event(
                            &inner,
                            &live.name,
                            "push_failed",
                            "set_quantities",
                            e.status,
                            serde_json::json!({"connection": live.name, "class": e.kind.as_str(),
                                "attempts": failures, "listings": pending.len() - confirmed.len(),
                                "message": e.message}),
                        )
                        .await;
                    }
                }
            } else {
                failures = 0;
                reported = false;
                again = truncated;
                if streak_recorded {
                    crate::health::record_ok(&inner.store, live.id).await;
                    streak_recorded = false;
                }
            }
        } else if streak_recorded {
            // Nothing waits for the channel (any more): no streak to show.
            failures = 0;
            crate::health::record_ok(&inner.store, live.id).await;
            streak_recorded = false;
        }
        // Resolve notices: a listing is done when it needed nothing or was confirmed.
        let now = Instant::now();
        let mut i = 0;
        while i < waiting.len().min(known) {
            let (n, skus) = &mut waiting[i];
            let before = skus.len();
            skus.retain(|s| !confirmed.contains(s));
            if skus.len() < before {
                staleness.record(now.saturating_duration_since(n.first_arrival));
            }
            if skus.is_empty() {
                let (n, _) = waiting.remove(i);
                tracker_done(&inner, n.batch);
            } else {
                i += 1;
            }
        }
    }
}

fn backoff(opts: &SyncOptions, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    opts.push_retry_base
        .saturating_mul(1u32 << exp)
        .min(opts.push_retry_max)
}

/// Send one chunk; record what the channel confirmed. Returns the confirmed SKUs and the
/// last error of a listing the channel refused.
async fn push_chunk(
    inner: &Arc<Inner>,
    live: &Arc<Live>,
    chunk: &[&Pending],
) -> std::result::Result<(Vec<String>, Option<MarketError>), MarketError> {
    let updates: Vec<QuantityUpdate> = chunk
        .iter()
        .map(|p| QuantityUpdate {
            sku: p.sku.clone(),
            quantity: p.qty,
            listing: p.ids.to_ref(&p.sku),
        })
        .collect();
    Metrics::inc(&inner.metrics.push_calls, 1);
    let acks = live.connector.set_quantities(&updates).await?;
    let now = now_ms();
    let mut steps = Vec::new();
    let mut ok = Vec::new();
    let mut err = None;
    let mut zeros = 0;
    for (p, ack) in chunk.iter().zip(acks) {
        if ack.accepted {
            steps.push(Mutation::Sql {
                statement: ACK,
                params: sql_params![p.version, i64::from(p.qty), now, live.id, p.sku.as_str()],
                expect: Expect::Any,
            });
            if p.qty == 0 {
                zeros += 1;
            }
            Metrics::inc(
                &inner.metrics.pushes_coalesced,
                u64::try_from((p.version - p.pushed - 1).max(0)).unwrap_or(0),
            );
            ok.push(p.sku.clone());
        } else if let Some(e) = ack.error {
            err = Some(e);
        }
    }
    if !steps.is_empty() {
        let n = steps.len() as i64;
        if let Err(e) = inner
            .store
            .commit(
                &ACTOR,
                vec![Change::new(
                    Mutation::Many {
                        steps,
                        guard: false,
                    },
                    AuditEntry::new(
                        "listing.push",
                        format!("connection:{}", live.name),
                        AuditDetails::new().int("listings", n).int("zeros", zeros),
                    ),
                )],
            )
            .await
        {
            tracing::warn!(connection = %live.name, error = %e, "could not record confirmed quantities; they will be pushed again");
            return Ok((Vec::new(), err));
        }
        Metrics::inc(&inner.metrics.pushes_confirmed, ok.len() as u64);
    }
    Ok((ok, err))
}

const LISTINGS_OF: &str =
    "SELECT sku, listing_ref, target_qty, target_version, pushed_version FROM listings
     WHERE connection_id = $1 ORDER BY sku";
const DRIFT: &str =
    "UPDATE listings SET channel_qty = $1, checked_at_ms = $2, target_version = target_version + 1
     WHERE connection_id = $3 AND sku = $4 AND target_version = $5 AND pushed_version = $5";
const CHECKED: &str = "UPDATE listings SET channel_qty = $1, checked_at_ms = $2 WHERE connection_id = $3 AND sku = $4";

async fn reconcile_loop(inner: Arc<Inner>, live: Arc<Live>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if live.status() != ACTIVE {
            continue;
        }
        if let Err(e) = reconcile_once(&inner, &live).await {
            tracing::warn!(connection = %live.name, error = %e, "reconciliation failed");
            inner
                .metrics
                .error(format!("{}: reconciliation failed: {e}", live.name));
        }
    }
}

/// Read every listing's quantity back; a settled listing that shows something else than
/// its target gets a new version, so the pusher sends it again. Returns the drift count.
async fn reconcile_once(inner: &Arc<Inner>, live: &Arc<Live>) -> Result<usize> {
    let rows = inner.store.query(LISTINGS_OF, sql_params![live.id]).await?;
    let mut listings = Vec::with_capacity(rows.len());
    for r in &rows {
        let ids: ListingIds = serde_json::from_str(&r.text(1)?).unwrap_or_default();
        listings.push((r.text(0)?, ids, r.int(2)?, r.int(3)?, r.int(4)?));
    }
    let mut drift = 0;
    let now = now_ms();
    for chunk in listings.chunks(50) {
        let refs: Vec<_> = chunk.iter().map(|(s, ids, ..)| ids.to_ref(s)).collect();
        let seen: HashMap<String, u32> = live
            .connector
            .get_quantities(&refs)
            .await?
            .into_iter()
            .collect();
        let mut steps = Vec::new();
        let mut drifted = 0i64;
        for (sku, _, target, version, pushed) in chunk {
            let Some(&q) = seen.get(sku) else { continue };
            let q = i64::from(q);
            if q != *target && version == pushed {
                drifted += 1;
                steps.push(Mutation::Sql {
                    statement: DRIFT,
                    params: sql_params![q, now, live.id, sku.as_str(), *version],
                    expect: Expect::Any,
                });
            } else {
                steps.push(Mutation::Sql {
                    statement: CHECKED,
                    params: sql_params![q, now, live.id, sku.as_str()],
                    expect: Expect::Any,
                });
            }
        }
        if steps.is_empty() {
            continue;
        }
        inner
            .store
            .commit(
                &ACTOR,
                vec![Change::new(
                    Mutation::Many {
                        steps,
                        guard: false,
                    },
                    AuditEntry::new(
                        "listing.reconcile",
                        format!("connection:{}", live.name),
                        AuditDetails::new()
                            .int("checked", chunk.len() as i64)
                            .int("drift", drifted),
                    ),
                )],
            )
            .await?;
        drift += usize::try_from(drifted).unwrap_or(0);
    }
    Metrics::inc(&inner.metrics.reconcile_runs, 1);
    Metrics::inc(&inner.metrics.drift_repaired, drift as u64);
    if drift > 0 {
        tracing::warn!(connection = %live.name, drift, "channel quantities drifted; pushing the right ones again");
        live.wake.notify_one();
    }
    Ok(drift)
}

const CURSOR: &str = "SELECT since_ms FROM sync_cursors WHERE connection_id = $1";
const SET_CURSOR: &str = "INSERT INTO sync_cursors (connection_id, since_ms, updated_at_ms) VALUES ($1, $2, $3)
     ON CONFLICT (connection_id) DO UPDATE SET since_ms = excluded.since_ms, updated_at_ms = excluded.updated_at_ms
     WHERE excluded.since_ms > sync_cursors.since_ms";

async fn poll_loop(inner: Arc<Inner>, live: Arc<Live>, every: Duration) {
    loop {
        if live.status() == ACTIVE
            && let Err(e) = poll_once(&inner, &live).await
        {
            tracing::warn!(connection = %live.name, error = %e, "polling orders failed");
            inner
                .metrics
                .error(format!("{}: polling failed: {e}", live.name));
        }
        tokio::time::sleep(every).await;
    }
}

/// List orders changed since the persisted cursor (minus the overlap), ingest them all,
/// and move the cursor only after they are stored.
async fn poll_once(inner: &Arc<Inner>, live: &Arc<Live>) -> Result<usize> {
    let since = match inner.store.query_one(CURSOR, sql_params![live.id]).await? {
        Some(r) => r.int(0)?,
        None => now_ms() - ms(inner.opts.poll_lookback),
    };
    let from = since - ms(inner.opts.poll_overlap);
    let (mut orders, high) = live.connector.list_all_orders(from.max(0)).await?;
    // Returns the orders themselves do not show (TikTok): seen here, or never.
    let returned = live
        .connector
        .returned_orders(Some(from.max(0)), &[])
        .await?;
    merge_orders(&mut orders, returned);
    let n = orders.len();
    let mut waits = Vec::with_capacity(n);
    for order in orders {
        let (tx, rx) = oneshot::channel();
        let job = IngestJob {
            live: live.clone(),
            order,
            source: Source::Poll,
            arrival: Instant::now(),
            replies: vec![tx],
        };
        inner
            .ingest_tx
            .send(job)
            .await
            .map_err(|_| SyncError::ShuttingDown)?;
        waits.push(rx);
    }
    for w in waits {
        w.await.map_err(|_| SyncError::ShuttingDown)??;
    }
    Metrics::inc(&inner.metrics.polled, n as u64);
    let high = high.max(since);
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps: vec![Mutation::Sql {
                        statement: SET_CURSOR,
                        params: sql_params![live.id, high, now_ms()],
                        expect: Expect::Any,
                    }],
                    guard: true,
                },
                AuditEntry::new(
                    "sync.cursor",
                    format!("connection:{}", live.name),
                    AuditDetails::new()
                        .int("since_ms", high)
                        .int("orders", n as i64),
                ),
            )],
        )
        .await?;
    // Returns only a report shows (Amazon): requested when due, followed until done.
    match returns::poll_returns_report(inner, live).await {
        Ok(r) => Ok(n + r),
        Err(e) => {
            tracing::warn!(connection = %live.name, error = %e, "reading the returns report failed; the next poll tries again");
            inner
                .metrics
                .error(format!("{}: returns report failed: {e}", live.name));
            Ok(n)
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const INSERT_EVENT: &str = "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
     VALUES ($1, 'sync', $2, $3, '', '', $4, $5, $6)";

/// Record a sync error event (DESIGN §6) for the alert pipeline, audited.
async fn record_event(
    inner: &Inner,
    connection: &str,
    kind: &'static str,
    operation: &'static str,
    status: Option<u16>,
    detail: serde_json::Value,
) -> Result<()> {
    Metrics::inc(&inner.metrics.error_events, 1);
    let caller = format!("connection:{connection}");
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Sql {
                    statement: INSERT_EVENT,
                    params: sql_params![
                        now_ms(),
                        kind,
                        caller.as_str(),
                        operation,
                        status.map(i64::from),
                        detail.to_string()
                    ],
                    expect: Expect::One("event"),
                },
                AuditEntry::new(
                    "sync.event",
                    caller.clone(),
                    AuditDetails::new()
                        .str("kind", kind)
                        .str("operation", operation),
                ),
            )],
        )
        .await?;
    Ok(())
}

const EXPIRE_PII: &str =
    "UPDATE orders SET buyer_name = NULL, buyer_email = NULL, buyer_phone = NULL,
        buyer_address = NULL, pii_deleted_at_ms = $1
     WHERE pii_deleted_at_ms IS NULL AND status_rank >= 4 AND updated_at_ms < $2";

/// Delete buyer fields of orders completed longer ago than the retention period.
async fn delete_expired_pii(inner: &Inner) -> Result<()> {
    let now = now_ms();
    let before = now - ms(inner.opts.pii_retention);
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps: vec![Mutation::Sql {
                        statement: EXPIRE_PII,
                        params: sql_params![now, before],
                        expect: Expect::Any,
                    }],
                    guard: true,
                },
                AuditEntry::new(
                    "order.pii_retention",
                    "orders",
                    AuditDetails::new().int("completed_before_ms", before),
                ),
            )],
        )
        .await?;
    Ok(())
}
