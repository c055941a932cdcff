//! The egress gateway: the only outbound HTTP client of the workspace.
//!
//! Every request goes through a [`Gateway`] (one per process) by way of an [`Egress`]
//! handle bound to a [`Caller`] and the hosts that caller may reach:
//!
//! - `https` only, TLS 1.2 or newer (rustls), the platform's roots plus
//!   [`EgressConfig::extra_root_pems`] when configured; no redirects are followed.
//! - Default deny: a request goes out only when its host and port are on the
//!   environment's allowlist *and* on the caller's list. A refused request never
//!   resolves or connects.
//! - A token bucket per host and, for operations given a limit with
//!   [`Gateway::define_limit`], one per (operation, partition); callers wait for a token.
//! - Retries with exponential backoff and full jitter: HTTP 429 always (the request was
//!   not processed), 5xx, timeouts and connection failures only for idempotent
//!   requests; `Retry-After` is honoured, capped by `backoff_max`.
//! - A circuit breaker per host: consecutive 5xx or transport failures pause the host
//!   for a cool-down, then one probe decides.
//! - Every attempt is recorded in `egress_log` (never bodies, header values or query
//!   strings: only the host, the caller's path template and operation), and a blocked
//!   request, a 4xx, a 5xx or a transport failure (final outcome) becomes an
//!   [`Anomaly`]: broadcast to subscribers and stored in `events` for the alert pipeline.

mod limits;
mod log;
mod policy;
mod request;
mod retry;
mod sandbox_trust;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use http::{HeaderMap, Method, StatusCode};
pub use request::{Request, Response};
use stockade_core::Environment;
use stockade_store::Store;
use tokio::sync::{broadcast, mpsc, oneshot};

use limits::{Breaker, Bucket, Daily};
use log::{LogRow, Msg};
use policy::{Refusal, Target};
use stockade_core::event::{EgressAnomaly, Event};

/// Gateway settings. [`EgressConfig::new`] gives the defaults and an empty allowlist.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub environment: Environment,
    /// `host` (port 443), `host:port`, or `*.example.com` (any subdomain), lower case.
    pub allowed_hosts: Vec<String>,
    /// PEM certificates trusted in addition to the platform's roots.
    pub extra_root_pems: Vec<String>,
    pub connect_timeout: Duration,
    /// Per attempt, from sending to the last byte of the body.
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub max_response_bytes: usize,
    pub log_retention: Duration,
    /// Whether the log writer prunes old rows itself (at start and hourly). The server
    /// turns it off: its retention job removes them in bounded batches.
    pub log_auto_prune: bool,
    /// Per-host token bucket: (requests per second, burst).
    pub host_rate: (f64, u32),
    /// This process's id among several sharing one database (`serve` on PostgreSQL),
    /// added to the User-Agent (`stockade/VERSION node/ID`) so a marketplace's (or the
    /// simulators') request log shows which process called.
    pub node: Option<String>,
}

impl EgressConfig {
    pub fn new(environment: Environment) -> Self {
        EgressConfig {
            environment,
            allowed_hosts: Vec::new(),
            extra_root_pems: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(20),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            max_response_bytes: 8 * 1024 * 1024,
            log_retention: Duration::from_secs(90 * 24 * 3600),
            log_auto_prune: true,
            host_rate: (50.0, 100),
            node: None,
        }
    }
}

/// Who is sending: recorded on every log row and anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    Connection(String),
    Workflow(String),
    Alerts(String),
    Sandbox,
    System(&'static str),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Connection(n) => write!(f, "connection:{n}"),
            Caller::Workflow(n) => write!(f, "workflow:{n}"),
            Caller::Alerts(n) => write!(f, "alerts:{n}"),
            Caller::Sandbox => f.write_str("sandbox"),
            Caller::System(n) => write!(f, "system:{n}"),
        }
    }
}

/// Why a request failed. Messages never contain URLs, query strings or header values.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(
        "outbound request to {host} blocked: the host is not allowed for this environment or this caller; add it to the egress allowlist if it should be reachable"
    )]
    Blocked { host: String },
    #[error(
        "invalid outbound request: the URL, a header or the body could not be used; check the configured base URL and credentials format"
    )]
    InvalidUrl,
    #[error("refused a non-HTTPS URL: outbound requests must use https://")]
    NotHttps,
    #[error(
        "TLS failed ({0}); the server must offer TLS 1.2 or newer with a certificate trusted by the system or the configured extra roots"
    )]
    Tls(String),
    #[error("could not reach the server ({0}); check the host, port and network")]
    Connect(String),
    #[error("the request timed out; the server is slow or unreachable, try again later")]
    Timeout,
    #[error(
        "requests to {host} are paused after repeated failures; they resume after a cool-down, try again later"
    )]
    CircuitOpen { host: String },
    #[error(
        "the response exceeded {limit} bytes and was discarded; raise the egress response limit if this is expected"
    )]
    ResponseTooLarge { limit: usize },
    #[error(
        "the response (HTTP {status}, content-type {content_type:?}) is not the expected JSON; the server may be failing or the URL may be wrong"
    )]
    NotJson { status: u16, content_type: String },
    #[error("the egress log could not be written: {0}")]
    Store(String),
    #[error(
        "a sandbox certificate authority is trusted only in a dev environment (this is {environment}); connect a {environment} instance to the marketplace's live or public sandbox endpoints"
    )]
    SandboxTrustRefused { environment: Environment },
    /// An incident control refuses this caller's requests: the workflow or connection is
    /// isolated, or the instance is locked down (alert channels are never refused).
    #[error(
        "outbound request refused: {0}; nothing was sent. It resumes after `stockade incident release`"
    )]
    Contained(&'static str),
}

/// Something the alert pipeline should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub at_ms: i64,
    pub caller: String,
    pub kind: AnomalyKind,
    pub host: String,
    pub method: String,
    pub path_template: String,
    pub operation: String,
    pub status: Option<u16>,
}

/// The anomaly kinds are the egress event kinds (`Malformed`: see `Request::expect_json`).
pub use stockade_core::event::EgressKind as AnomalyKind;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Host(String),
    Operation(&'static str, String),
}

/// The settings a running gateway can take on without a restart ([`Gateway::reconfigure`]).
struct Live {
    allowed_hosts: Vec<String>,
    client: reqwest::Client,
    request_timeout: Duration,
    max_attempts: u32,
}

struct Inner {
    /// The settings it was built with: environment, backoff, breaker, response limit and
    /// log retention are fixed for its lifetime.
    config: EgressConfig,
    host_rate: Option<(f64, f64)>,
    live: std::sync::RwLock<Arc<Live>>,
    /// Per operation: (rate, burst, the bucket it draws from: itself or a shared one).
    limits: Mutex<HashMap<&'static str, (f64, f64, &'static str)>>,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    breakers: Mutex<HashMap<String, Breaker>>,
    daily: Mutex<Daily>,
    anomalies: broadcast::Sender<Anomaly>,
    writer: Option<mpsc::Sender<Msg>>,
    telemetry: EgressTelemetry,
    jitter: retry::Jitter,
    /// Dev only: callers that trust a local sandbox's CA (see [`Gateway::trust_sandbox`]).
    sandbox: Mutex<HashMap<String, reqwest::Client>>,
    /// Incident controls (isolation, lockdown) of the store it logs to.
    controls: stockade_store::Controls,
    /// Cap on the calls of one round a connection keeps in flight; 0 = no cap.
    round_cap: std::sync::atomic::AtomicUsize,
    /// This process's share of a shared bucket's partition (bucket → partition → share
    /// in (0, 1]); absent: the whole rate ([`Gateway::share_bucket`]).
    shares: std::sync::RwLock<HashMap<&'static str, HashMap<String, f64>>>,
}

/// The gateway. Cheap to clone; all clones share buckets, breakers and the log writer.
#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("environment", &self.0.config.environment)
            .field("allowed_hosts", &self.live().allowed_hosts)
            .field("logging", &self.0.writer.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Gateway {
    /// Build the gateway. With a store, the log writer is spawned on the current tokio
    /// runtime (there must be one) and the store must belong to the same environment.
    pub fn new(config: EgressConfig, store: Option<Store>) -> Result<Gateway, EgressError> {
        let extra: Vec<&str> = config.extra_root_pems.iter().map(String::as_str).collect();
        let client = build_client(&config, &extra)?;
        let controls = store
            .as_ref()
            .map_or_else(stockade_store::Controls::none, Store::controls);
        let writer = match store {
            None => None,
            Some(store) => {
                if store.environment() != config.environment {
                    return Err(EgressError::Store(format!(
                        "the database belongs to environment {}, the gateway to {}",
                        store.environment(),
                        config.environment
                    )));
                }
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(EgressError::Store(
                        "the log writer needs a running tokio runtime".into(),
                    ));
                }
                Some(log::spawn(
                    store,
                    config.environment.as_str(),
                    config.log_retention,
                    config.log_auto_prune,
                ))
            }
        };
        let seed = u64::try_from(stockade_core::time::now_ms()).unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        let (anomalies, _) = broadcast::channel(1024);
        Ok(Gateway(Arc::new(Inner {
            host_rate: limits::valid_rate(config.host_rate.0, config.host_rate.1),
            live: std::sync::RwLock::new(Arc::new(Live {
                allowed_hosts: config.allowed_hosts.clone(),
                client,
                request_timeout: config.request_timeout,
                max_attempts: config.max_attempts,
            })),
            config,
            limits: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            breakers: Mutex::new(HashMap::new()),
            daily: Mutex::new(Daily::default()),
            anomalies,
            writer,
            telemetry: EgressTelemetry::default(),
            jitter: retry::Jitter::new(seed),
            sandbox: Mutex::new(HashMap::new()),
            controls,
            round_cap: std::sync::atomic::AtomicUsize::new(0),
            shares: std::sync::RwLock::new(HashMap::new()),
        })))
    }

    /// Take on new settings without a restart: the allowlist, the extra trust roots and
    /// the connect timeout (a new HTTPS client), the request timeout and the attempts.
    /// Requests already sent finish under the old settings. Nothing changes when it
    /// refuses (another environment, an invalid root certificate). The environment,
    /// backoff, breaker, response limit, host rate and log retention stay as built.
    pub fn reconfigure(&self, config: &EgressConfig) -> Result<(), EgressError> {
        if config.environment != self.0.config.environment {
            return Err(EgressError::Store(format!(
                "the gateway belongs to environment {}, not {}",
                self.0.config.environment, config.environment
            )));
        }
        let extra: Vec<&str> = config.extra_root_pems.iter().map(String::as_str).collect();
        let client = build_client(config, &extra)?;
        let live = Arc::new(Live {
            allowed_hosts: config.allowed_hosts.clone(),
            client,
            request_timeout: config.request_timeout,
            max_attempts: config.max_attempts,
        });
        *self
            .0
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = live;
        Ok(())
    }

    /// The allowlist in force.
    pub fn allowed_hosts(&self) -> Vec<String> {
        self.live().allowed_hosts.clone()
    }

    fn live(&self) -> Arc<Live> {
        self.0
            .live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A handle for `caller`, which may reach only the hosts on both the environment's
    /// allowlist and `hosts` (same pattern syntax).
    pub fn client(&self, caller: Caller, hosts: &[&str]) -> Egress {
        Egress {
            gateway: self.clone(),
            caller_text: Arc::from(caller.to_string()),
            caller,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Rate-limit `operation`: a token bucket per (operation, partition). A rate that is
    /// not a positive number removes the limit.
    pub fn define_limit(&self, operation: &'static str, rate_per_sec: f64, burst: u32) {
        let mut limits = lock(&self.0.limits);
        match limits::valid_rate(rate_per_sec, burst) {
            Some((rate, burst)) => {
                limits.insert(operation, (rate, burst, operation));
            }
            None => {
                tracing::warn!(
                    operation,
                    "ignored a rate limit that is not a positive rate"
                );
                limits.remove(operation);
            }
        }
    }

    /// Rate-limit `operations` together: one token bucket per (`bucket`, partition) that
    /// every one of them draws from, as a marketplace that counts calls per application
    /// across its APIs does (eBay). A rate that is not a positive number removes the
    /// limits.
    pub fn define_shared_limit(
        &self,
        bucket: &'static str,
        operations: &[&'static str],
        rate_per_sec: f64,
        burst: u32,
    ) {
        let mut limits = lock(&self.0.limits);
        let valid = limits::valid_rate(rate_per_sec, burst);
        for op in operations {
            match valid {
                Some((rate, burst)) => {
                    limits.insert(op, (rate, burst, bucket));
                }
                None => {
                    limits.remove(op);
                }
            }
        }
    }

    /// Let this process spend only `share` (in (0, 1]) of `bucket`'s rate and burst for
    /// `partition` — the part of a limit the marketplace counts across processes (eBay's
    /// calls per application) that falls to this one; `None` gives it the whole again.
    /// The burst is scaled too, at least one token. Takes effect at the next call.
    pub fn share_bucket(&self, bucket: &'static str, partition: &str, share: Option<f64>) {
        let Ok(mut shares) = self.0.shares.write() else {
            return;
        };
        match share.filter(|s| s.is_finite() && *s > 0.0 && *s < 1.0) {
            Some(s) => {
                shares
                    .entry(bucket)
                    .or_default()
                    .insert(partition.to_owned(), s);
            }
            None => {
                if let Some(m) = shares.get_mut(bucket) {
                    m.remove(partition);
                    if m.is_empty() {
                        shares.remove(bucket);
                    }
                }
            }
        }
    }

    /// This process's share of `bucket` for `partition` (1 when not shared).
    pub fn bucket_share(&self, bucket: &'static str, partition: &str) -> f64 {
        self.0
            .shares
            .read()
            .ok()
            .and_then(|s| s.get(bucket).and_then(|m| m.get(partition).copied()))
            .unwrap_or(1.0)
    }

    /// Take one unit of a per-UTC-day quota for `key`; `false` once `limit` were taken
    /// today. Counts are kept in memory by this process (see [`Gateway::seed_daily`]).
    pub fn take_daily(&self, quota: &'static str, key: &str, limit: u32) -> bool {
        lock(&self.0.daily).take(stockade_core::clock::now_ms(), quota, key, limit)
    }

    /// Raise today's count of `quota` for `key` to `used` (a count kept elsewhere: a
    /// connection's revisions spent by the process that owned it before this one). A
    /// lower count changes nothing: what this process took itself still counts.
    pub fn seed_daily(&self, quota: &'static str, key: &str, used: u32) {
        lock(&self.0.daily).seed(stockade_core::clock::now_ms(), quota, key, used);
    }

    /// Cap the calls of one round each connection keeps in flight at `cap` (at least
    /// one), or lift the cap with `None`. The sync engine caps rounds while webhook
    /// deliveries queue, so pushes leave the CPU to ingest; rounds already running keep
    /// the number they started with.
    pub fn cap_round_calls(&self, cap: Option<usize>) {
        let v = cap.map_or(0, |c| c.max(1));
        self.0
            .round_cap
            .store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many of a round's calls to keep in flight when `wanted` would be: `wanted`,
    /// or the cap set by [`Gateway::cap_round_calls`] when lower.
    pub fn round_calls(&self, wanted: usize) -> usize {
        match self.0.round_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => wanted.max(1),
            cap => wanted.clamp(1, cap),
        }
    }

    /// Anomalies from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Anomaly> {
        self.0.anomalies.subscribe()
    }

    /// Wait until every row recorded so far is written.
    pub async fn flush(&self) -> Result<(), EgressError> {
        let Some(writer) = &self.0.writer else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        writer
            .send(Msg::Flush(reply))
            .await
            .map_err(|_| EgressError::Store("the log writer has stopped".into()))?;
        rx.await
            .map_err(|_| EgressError::Store("the log writer has stopped".into()))?
            .map_err(EgressError::Store)
    }

    /// Delete log rows and events older than the retention period now (the writer also
    /// does this at start and hourly unless `log_auto_prune` is off, as in the server,
    /// whose retention job removes them). Returns the number of rows deleted.
    pub async fn prune(&self) -> Result<u64, EgressError> {
        let Some(writer) = &self.0.writer else {
            return Ok(0);
        };
        let (reply, rx) = oneshot::channel();
        writer
            .send(Msg::Prune(reply))
            .await
            .map_err(|_| EgressError::Store("the log writer has stopped".into()))?;
        rx.await
            .map_err(|_| EgressError::Store("the log writer has stopped".into()))?
            .map_err(EgressError::Store)
    }

    /// The request counters, for the composition root to register.
    pub fn telemetry(&self) -> EgressTelemetry {
        self.0.telemetry.clone()
    }

    async fn record(&self, row: LogRow) {
        self.0.telemetry.count(&row.host, row.status, row.outcome);
        if let Some(w) = &self.0.writer
            && w.send(Msg::Log(row)).await.is_err()
        {
            tracing::warn!("the egress log writer has stopped; a log row was lost");
        }
    }

    async fn anomaly(&self, a: Anomaly, detail: String) {
        tracing::info!(
            kind = a.kind.as_str(),
            caller = %a.caller,
            host = %a.host,
            path = %a.path_template,
            status = ?a.status,
            "egress anomaly"
        );
        if let Some(w) = &self.0.writer {
            let event = Event::Egress(EgressAnomaly {
                kind: a.kind,
                caller: a.caller.clone(),
                host: a.host.clone(),
                path_template: a.path_template.clone(),
                operation: a.operation.clone(),
                status: a.status,
                detail,
            });
            if w.send(Msg::Event(a.at_ms, event)).await.is_err() {
                tracing::warn!("the egress log writer has stopped; an event was lost");
            }
        }
        let _ = self.0.anomalies.send(a);
    }

    /// Wait for a token from the host bucket and the operation's bucket.
    async fn wait_for_tokens(&self, host: &str, operation: &'static str, partition: &str) {
        let limit = lock(&self.0.limits).get(operation).copied();
        let share = limit.map_or(1.0, |(_, _, bucket)| self.bucket_share(bucket, partition));
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        {
            let mut buckets = lock(&self.0.buckets);
            if let Some((rate, burst)) = self.0.host_rate {
                let b = buckets
                    .entry(BucketKey::Host(host.to_owned()))
                    .or_insert_with(|| Bucket::new(rate, burst, now));
                wait = wait.max(b.reserve(now));
            }
            if let Some((rate, burst, bucket)) = limit {
                let (rate, burst) = (rate * share, (burst * share).floor().max(1.0));
                let b = buckets
                    .entry(BucketKey::Operation(bucket, partition.to_owned()))
                    .or_insert_with(|| Bucket::new(rate, burst, now));
                b.redefine(rate, burst);
                wait = wait.max(b.reserve(now));
            }
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A host's rate-limit state as of now (for the console): the host bucket's tokens
    /// and burst (`None` before its first request or without a host rate) and whether
    /// its circuit breaker holds requests off. Takes nothing.
    pub fn host_state(&self, host: &str) -> HostState {
        let now = Instant::now();
        let bucket = lock(&self.0.buckets)
            .get(&BucketKey::Host(host.to_owned()))
            .map(|b| b.peek(now));
        let breaker_open = lock(&self.0.breakers)
            .get(host)
            .is_some_and(|b| b.blocking(now));
        HostState {
            tokens: bucket.map(|b| b.0),
            burst: bucket.map(|b| b.1),
            breaker_open,
        }
    }

    fn breaker_admit(&self, host: &str) -> bool {
        let cooldown = self.0.config.breaker_cooldown;
        lock(&self.0.breakers)
            .entry(host.to_owned())
            .or_default()
            .admit(Instant::now(), cooldown)
    }

    fn breaker_record(&self, host: &str, ok: bool) {
        let c = &self.0.config;
        lock(&self.0.breakers)
            .entry(host.to_owned())
            .or_default()
            .record(ok, Instant::now(), c.breaker_failures, c.breaker_cooldown);
    }
}

/// A host's rate-limit state ([`Gateway::host_state`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostState {
    /// Tokens in the host bucket now; negative while callers wait for reserved ones.
    pub tokens: Option<f64>,
    pub burst: Option<f64>,
    /// The circuit breaker holds requests off (too many failures; cooling down).
    pub breaker_open: bool,
}

/// A caller's handle on the gateway.
#[derive(Debug, Clone)]
pub struct Egress {
    gateway: Gateway,
    caller: Caller,
    caller_text: Arc<str>,
    hosts: Vec<String>,
}

/// What one attempt produced.
struct Attempt {
    result: Result<Response, EgressError>,
    status: Option<u16>,
}

/// Why the incident controls refuse `caller` now, if they do. Alert channels are never
/// refused, so the security channel still hears about the incident.
fn contained(controls: &stockade_store::ControlSnapshot, caller: &Caller) -> Option<&'static str> {
    match caller {
        Caller::Alerts(_) => None,
        _ if controls.locked_down() => {
            Some("the instance is locked down (only alert channels may send)")
        }
        Caller::Connection(n) if controls.connection_isolated(n) => {
            Some("this connection is isolated by an incident")
        }
        Caller::Workflow(n) if controls.workflow_isolated(n) => {
            Some("this workflow is isolated by an incident")
        }
        _ => None,
    }
}

impl Egress {
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    fn row(&self, req: &Request, host: &str, outcome: &'static str) -> LogRow {
        LogRow {
            at_ms: stockade_core::time::now_ms(),
            caller: self.caller_text.to_string(),
            method: req.method.as_str().to_owned(),
            host: host.to_owned(),
            path_template: req.path_template,
            operation: req.operation,
            status: None,
            outcome,
            latency_us: 0,
            bytes_sent: 0,
            bytes_received: 0,
            attempt: 0,
        }
    }

    fn anomaly_for(
        &self,
        req: &Request,
        host: &str,
        kind: AnomalyKind,
        status: Option<u16>,
    ) -> Anomaly {
        Anomaly {
            at_ms: stockade_core::time::now_ms(),
            caller: self.caller_text.to_string(),
            kind,
            host: host.to_owned(),
            method: req.method.as_str().to_owned(),
            path_template: req.path_template.to_owned(),
            operation: req.operation.to_owned(),
            status,
        }
    }

    async fn refuse(&self, req: &Request, host: &str, err: EgressError) -> EgressError {
        let g = &self.gateway;
        g.record(self.row(req, host, "blocked")).await;
        let a = self.anomaly_for(req, host, AnomalyKind::Blocked, None);
        let detail = format!(
            "{} refused: {}",
            req.method,
            match err {
                EgressError::NotHttps => "not https",
                _ => "host not allowed",
            }
        );
        g.anomaly(a, detail).await;
        err
    }

    /// Send `req` under the gateway's policy (see the crate documentation). After the
    /// last attempt the last response is returned, whatever its status.
    pub async fn send(&self, req: Request) -> Result<Response, EgressError> {
        let g = &self.gateway;
        let cfg = &g.0.config;
        let live = g.live();
        if req.invalid {
            return Err(EgressError::InvalidUrl);
        }
        if let Some(why) = contained(&g.0.controls.snapshot(), &self.caller) {
            // Recorded as a blocked request, without an anomaly event: an isolated
            // caller's every attempt would otherwise flood the security channel.
            let host = Target::parse(&req.url).map_or_else(|_| String::new(), |t| t.key);
            g.record(self.row(&req, &host, "blocked")).await;
            return Err(EgressError::Contained(why));
        }
        let target = match Target::parse(&req.url) {
            Ok(t) => t,
            Err(Refusal::NotHttps { key }) => {
                return Err(self.refuse(&req, &key, EgressError::NotHttps).await);
            }
            Err(r) => return Err(r.into_error()),
        };
        let sandbox = g.sandbox_client(&self.caller_text);
        let env_allows = policy::allowed(&live.allowed_hosts, &target.host, target.port)
            || (sandbox.is_some() && sandbox_trust::is_loopback(&target.host));
        if !env_allows || !policy::allowed(&self.hosts, &target.host, target.port) {
            let err = EgressError::Blocked {
                host: target.key.clone(),
            };
            return Err(self.refuse(&req, &target.key, err).await);
        }

        let max_attempts = live.max_attempts.max(1);
        let timeout = req.timeout.unwrap_or(live.request_timeout);
        let mut attempt: u32 = 0;
        let mut last: Option<Attempt> = None;
        loop {
            attempt += 1;
            if !g.breaker_admit(&target.key) {
                if let Some(prev) = last {
                    return self.finish(&req, &target, prev, attempt - 1).await;
                }
                let mut row = self.row(&req, &target.key, "circuit_open");
                row.attempt = attempt;
                g.record(row).await;
                return Err(EgressError::CircuitOpen {
                    host: target.key.clone(),
                });
            }
            g.wait_for_tokens(&target.key, req.operation, &req.partition)
                .await;

            let mut row = self.row(&req, &target.key, "ok");
            let started = Instant::now();
            let client = sandbox.as_ref().unwrap_or(&live.client);
            let outcome = self.attempt(client, &req, &target, timeout).await;
            row.latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
            row.attempt = attempt;
            row.status = outcome.status;
            row.bytes_sent = req.body.as_ref().map_or(0, |b| b.len() as i64);
            let mut retry_after = None;
            let (retryable, host_ok) = match &outcome.result {
                Ok(resp) => {
                    row.bytes_received = resp.body.len() as i64;
                    let s = resp.status;
                    if s.is_client_error() || s.is_server_error() {
                        row.outcome = "http_error";
                    }
                    if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() {
                        retry_after = resp
                            .headers
                            .get(http::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| {
                                retry::parse_retry_after(v, stockade_core::time::now_ms())
                            });
                    }
                    (
                        s == StatusCode::TOO_MANY_REQUESTS
                            || (s.is_server_error() && req.idempotent),
                        !s.is_server_error(),
                    )
                }
                Err(e) => {
                    row.outcome = outcome_name(e);
                    match e {
                        EgressError::Timeout | EgressError::Connect(_) => (req.idempotent, false),
                        EgressError::Tls(_) => (false, false),
                        _ => (false, true),
                    }
                }
            };
            g.breaker_record(&target.key, host_ok);
            g.record(row).await;

            if retryable && attempt < max_attempts {
                let delay = match retry_after {
                    Some(d) => d.min(cfg.backoff_max),
                    None => g.0.jitter.up_to(retry::backoff_ceiling(
                        cfg.backoff_base,
                        cfg.backoff_max,
                        attempt,
                    )),
                };
                tracing::debug!(
                    host = %target.key,
                    path = req.path_template,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "retrying outbound request"
                );
                tokio::time::sleep(delay).await;
                last = Some(outcome);
                continue;
            }
            return self.finish(&req, &target, outcome, attempt).await;
        }
    }

    /// The final outcome: count attempts, emit an anomaly when it went wrong.
    async fn finish(
        &self,
        req: &Request,
        target: &Target,
        outcome: Attempt,
        attempts: u32,
    ) -> Result<Response, EgressError> {
        let kind = match &outcome.result {
            Ok(r) if r.status.is_server_error() => Some(AnomalyKind::ServerError),
            Ok(r) if r.status.is_client_error() => Some(AnomalyKind::ClientError),
            Ok(r) if req.expect_json && !r.body.is_empty() && !is_json(&r.body) => {
                Some(AnomalyKind::Malformed)
            }
            Ok(_) => None,
            Err(_) => Some(AnomalyKind::Transport),
        };
        if let Some(kind) = kind {
            let what = match &outcome.result {
                Ok(_) if kind == AnomalyKind::Malformed => "malformed_body",
                Ok(_) => "http_error",
                Err(e) => outcome_name(e),
            };
            let detail = format!("{} {what} after {attempts} attempt(s)", req.method);
            let a = self.anomaly_for(req, &target.key, kind, outcome.status);
            self.gateway.anomaly(a, detail).await;
        }
        outcome.result.map(|mut r| {
            r.attempts = attempts;
            r
        })
    }

    async fn attempt(
        &self,
        client: &reqwest::Client,
        req: &Request,
        target: &Target,
        timeout: Duration,
    ) -> Attempt {
        let limit = self.gateway.0.config.max_response_bytes;
        let mut builder = client
            .request(req.method.clone(), target.url.clone())
            .headers(req.headers.clone());
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let mut status = None;
        let work = async {
            let mut resp = builder.send().await.map_err(|e| classify(&e))?;
            status = Some(resp.status().as_u16());
            let too_large = EgressError::ResponseTooLarge { limit };
            if resp
                .content_length()
                .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
            {
                return Err(too_large);
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| classify(&e))? {
                if body.len().saturating_add(chunk.len()) > limit {
                    return Err(too_large);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response {
                status: resp.status(),
                headers: resp.headers().clone(),
                body,
                attempts: 1,
            })
        };
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(EgressError::Timeout),
        };
        Attempt { result, status }
    }
}

fn outcome_name(e: &EgressError) -> &'static str {
    match e {
        EgressError::Timeout => "timeout",
        EgressError::Tls(_) => "tls",
        EgressError::ResponseTooLarge { .. } => "too_large",
        EgressError::CircuitOpen { .. } => "circuit_open",
        EgressError::Blocked { .. } | EgressError::NotHttps => "blocked",
        _ => "connect",
    }
}

/// The HTTPS client: TLS 1.2+, no redirects, no proxy, the platform's roots plus `extra`
/// (PEM bundles).
fn build_client(config: &EgressConfig, extra: &[&str]) -> Result<reqwest::Client, EgressError> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .no_proxy()
        .user_agent(match &config.node {
            Some(node) => format!("stockade/{} node/{node}", env!("CARGO_PKG_VERSION")),
            None => concat!("stockade/", env!("CARGO_PKG_VERSION")).to_owned(),
        });
    let mut roots = Vec::new();
    for pem in extra {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|_| EgressError::Tls("an extra root certificate is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(EgressError::Tls(
                "an extra root certificate entry holds no certificate".into(),
            ));
        }
        roots.extend(certs);
    }
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    builder
        .build()
        .map_err(|e| EgressError::Tls(format!("cannot build the HTTPS client: {}", chain(&e))))
}

/// The messages of an error's causes, without the top level (reqwest's own message
/// carries the URL, query included).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        parts.push("no further detail".into());
    }
    let mut s = parts.join(": ");
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A rustls error anywhere in the chain. `io::Error` wrappers (tokio-rustls wraps the
/// rustls error in one, hyper-rustls wraps that in another) hide it from `source`, so
/// they are opened with `get_ref`.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut depth = 0;
    while let Some(err) = cur {
        depth += 1;
        if depth > 32 {
            break;
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            cur = Some(inner as &(dyn std::error::Error + 'static));
            continue;
        }
        cur = err.source();
    }
    None
}

fn classify(e: &reqwest::Error) -> EgressError {
    if e.is_timeout() {
        return EgressError::Timeout;
    }
    if let Some(t) = tls_cause(e) {
        return EgressError::Tls(t);
    }
    EgressError::Connect(chain(e))
}

/// Whether `body` is one syntactically complete JSON document.
fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_cap_lowers_and_lifts_the_calls_in_flight() {
        let g = Gateway::new(EgressConfig::new(Environment::Dev), None).unwrap();
        assert_eq!(g.round_calls(8), 8);
        g.cap_round_calls(Some(2));
        assert_eq!((g.round_calls(8), g.round_calls(1)), (2, 1));
        g.clone().cap_round_calls(Some(0));
        assert_eq!(g.round_calls(8), 1, "a cap of zero still lets one call out");
        g.cap_round_calls(None);
        assert_eq!(g.round_calls(8), 8);
    }

    #[test]
    fn caller_display() {
        assert_eq!(
            Caller::Connection("shop1".into()).to_string(),
            "connection:shop1"
        );
        assert_eq!(Caller::Workflow("sync".into()).to_string(), "workflow:sync");
        assert_eq!(Caller::Alerts("mail".into()).to_string(), "alerts:mail");
        assert_eq!(Caller::Sandbox.to_string(), "sandbox");
        assert_eq!(Caller::System("init").to_string(), "system:init");
    }

    /// Connectors hold `Egress` in `Send` futures and share the gateway across tasks.
    #[test]
    fn handles_and_futures_are_send() {
        fn is_send_sync<T: Send + Sync + Clone>() {}
        fn is_send<T: Send>(_: &T) {}
        is_send_sync::<Gateway>();
        is_send_sync::<Egress>();
        is_send_sync::<Request>();
        let Ok(g) = Gateway::new(EgressConfig::new(Environment::Dev), None) else {
            panic!("gateway")
        };
        let e = g.client(Caller::System("t"), &[]);
        is_send(&e.send(Request::get("https://x/", "/", "x")));
        is_send(&g.flush());
    }

    #[tokio::test]
    async fn a_process_spends_only_its_share_of_a_shared_partition() {
        let mut c = EgressConfig::new(Environment::Dev);
        c.host_rate = (0.0, 1);
        let g = Gateway::new(c, None).expect("gateway");
        g.define_shared_limit("ebay.app", &["ebay.a"], 0.001, 8);
        g.share_bucket("ebay.app", "app-1", Some(0.25));
        g.share_bucket("ebay.app", "app-2", Some(0.5));
        g.share_bucket("ebay.app", "app-2", None);
        g.share_bucket("ebay.app", "app-3", Some(f64::NAN));
        for p in ["app-1", "app-2", "app-3"] {
            g.wait_for_tokens("h", "ebay.a", p).await;
        }
        let now = Instant::now();
        let peek = |p: &str| {
            lock(&g.0.buckets)
                .get(&BucketKey::Operation("ebay.app", p.to_owned()))
                .map(|b| b.peek(now))
                .map(|(t, burst)| (t.round(), burst))
        };
        assert_eq!(peek("app-1"), Some((1.0, 2.0)), "a quarter of a burst of 8");
        assert_eq!(peek("app-2"), Some((7.0, 8.0)), "the share was taken back");
        assert_eq!(peek("app-3"), Some((7.0, 8.0)), "not a number: the whole");
        // A share never leaves less than one token of burst.
        g.share_bucket("ebay.app", "app-1", Some(0.01));
        g.wait_for_tokens("h", "ebay.a", "app-1").await;
        let now = Instant::now();
        let b = lock(&g.0.buckets)
            .get(&BucketKey::Operation("ebay.app", "app-1".to_owned()))
            .map(|b| b.peek(now).1);
        assert_eq!(b, Some(1.0));
    }

    #[tokio::test]
    async fn a_shared_limit_is_one_bucket_per_partition_across_its_operations() {
        let mut c = EgressConfig::new(Environment::Dev);
        c.host_rate = (0.0, 1);
        let g = Gateway::new(c, None).expect("gateway");
        g.define_shared_limit("ebay.app", &["ebay.a", "ebay.b"], 0.001, 2);
        g.define_limit("other", 0.001, 2);
        // Two operations of one application (two of its connections) draw from one
        // bucket; another application has its own.
        g.wait_for_tokens("h", "ebay.a", "app-1").await;
        g.wait_for_tokens("h", "ebay.b", "app-1").await;
        g.wait_for_tokens("h", "ebay.a", "app-2").await;
        g.wait_for_tokens("h", "other", "app-1").await;
        let now = Instant::now();
        let buckets = lock(&g.0.buckets);
        let tokens = |op: &'static str, p: &str| {
            buckets
                .get(&BucketKey::Operation(op, p.to_owned()))
                .map(|b| b.peek(now).0.round())
        };
        assert_eq!(
            tokens("ebay.app", "app-1"),
            Some(0.0),
            "both calls spent it"
        );
        assert_eq!(tokens("ebay.app", "app-2"), Some(1.0));
        assert_eq!(tokens("ebay.a", "app-1"), None, "no bucket per operation");
        assert_eq!(
            tokens("other", "app-1"),
            Some(1.0),
            "plain limits stay per operation"
        );
        drop(buckets);
        // Removing the limit removes it for every operation of the group.
        g.define_shared_limit("ebay.app", &["ebay.a", "ebay.b"], 0.0, 1);
        assert!(lock(&g.0.limits).get("ebay.b").is_none());
    }

    /// Regression: the allowlist needed a restart. A reconfigured gateway (and every
    /// handle cloned from it) follows the new allowlist; a refused reconfiguration
    /// (an invalid root, another environment) changes nothing.
    #[tokio::test]
    async fn reconfigure_changes_the_allowlist_or_nothing() {
        let mut c = EgressConfig::new(Environment::Dev);
        c.allowed_hosts = vec!["a.example".into()];
        let Ok(g) = Gateway::new(c.clone(), None) else {
            panic!("gateway")
        };
        let e = g.client(Caller::System("t"), &["*.example", "b.example"]);
        let blocked =
            |r: Result<Response, EgressError>| matches!(r, Err(EgressError::Blocked { .. }));
        assert!(blocked(
            e.send(Request::get("https://b.example/", "/", "x")).await
        ));
        let mut bad = c.clone();
        bad.allowed_hosts = vec!["b.example".into()];
        bad.extra_root_pems = vec!["not a certificate".into()];
        assert!(matches!(g.reconfigure(&bad), Err(EgressError::Tls(_))));
        let mut other = bad.clone();
        other.environment = Environment::Prod;
        other.extra_root_pems.clear();
        assert!(g.reconfigure(&other).is_err());
        assert_eq!(g.allowed_hosts(), vec!["a.example".to_owned()]);
        let mut good = c.clone();
        good.allowed_hosts = vec!["b.example".into()];
        g.reconfigure(&good).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.allowed_hosts(), vec!["b.example".to_owned()]);
        assert!(blocked(
            e.send(Request::get("https://a.example/", "/", "x")).await
        ));
    }

    #[test]
    fn defaults() {
        let c = EgressConfig::new(Environment::Dev);
        assert!(c.allowed_hosts.is_empty());
        assert_eq!(c.max_attempts, 4);
        assert_eq!(c.max_response_bytes, 8 << 20);
        assert_eq!(c.host_rate, (50.0, 100));
    }
}

/// The labels of an outbound request: the allow-listed host and the status class
/// (`2xx`…`5xx`), or the outcome word when no status came back (`blocked`, `timeout`, …).
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct EgressLabels {
    pub host: String,
    pub class: String,
}

/// Outbound request attempts (and refusals), by host and status class.
#[derive(Debug, Clone, Default)]
pub struct EgressTelemetry {
    pub requests: prometheus_client::metrics::family::Family<
        EgressLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl EgressTelemetry {
    /// Register as `stockade_egress_requests_total{host,class}`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "stockade_egress_requests",
            "Outbound request attempts and refusals, by allow-listed host and status class",
            self.requests.clone(),
        );
    }

    fn count(&self, host: &str, status: Option<u16>, outcome: &str) {
        let class = match status {
            Some(s @ 100..=599) => format!("{}xx", s / 100),
            Some(_) => "other".to_owned(),
            None => outcome.to_owned(),
        };
        // A refused host is whatever a caller asked for: never a label (unbounded).
        let host = if outcome == "blocked" {
            "(not allowed)"
        } else {
            host
        };
        self.requests
            .get_or_create(&EgressLabels {
                host: host.to_owned(),
                class,
            })
            .inc();
    }
}
