//! Signed webhook / event delivery through the egress gateway, and the delivery log.
//! This is the only module that talks to `stockade-egress`.
//!
//! One dispatcher reads the queue in order and starts each delivery as its own task,
//! at most `delivery_concurrency` at once (the gateway's client keeps the connections
//! alive and pools them). Each delivery gets a sequence number when it starts; a flush
//! queued after delivery `n` is answered once no delivery numbered below `n` is still
//! running, so it waits for everything queued before it and for nothing after it. The
//! log keeps the newest `delivery_log_limit` deliveries; the counters are atomics, so a
//! load driver can watch progress without copying the log.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha1::Digest;
use stockade_core::SecretString;
use stockade_core::order::Marketplace;
use stockade_egress::{Caller, Gateway, Request};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::sign::{ebay_challenge_response, tiktok_webhook_signature};
use crate::sim::{EbayKey, Sim};
use crate::state::Market;

/// One delivery attempt series, as recorded by the sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub marketplace: Marketplace,
    /// The event: `ORDER_STATUS_CHANGE`, `SELLER_DEAUTHORIZATION`,
    /// `UPCOMING_AUTHORIZATION_EXPIRATION` (TikTok), `ORDER_CHANGE` (Amazon),
    /// `ORDER_CONFIRMATION`, `AUTHORIZATION_REVOCATION`, `MARKETPLACE_ACCOUNT_DELETION`
    /// or `challenge` (eBay endpoint validation).
    pub kind: String,
    pub url: String,
    /// The last HTTP status received; None when no answer arrived (or not sent).
    pub status: Option<u16>,
    /// Attempts made (retried on a non-2xx answer or a transport error).
    pub attempts: u32,
    /// Why it failed, when it did (for a challenge: a wrong or missing response).
    pub error: Option<String>,
    /// The exact body sent (empty for a challenge GET, and when
    /// `SandboxConfig::record_delivery_bodies` is off).
    pub body: String,
    /// The headers sent, except the shared-secret header of Amazon events (empty when
    /// `SandboxConfig::record_delivery_bodies` is off).
    pub headers: Vec<(String, String)>,
    pub at_ms: i64,
}

impl Delivery {
    /// Whether the receiver answered 2xx (a challenge: 200 with the right response).
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Delivery counters since the sandbox started, all marketplaces together. What is
/// still waiting for a slot is `queued - delivered - failed - in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStats {
    /// Events (and eBay challenges) handed to the outbox, including those that could
    /// not be sent at all (no gateway, an eBay endpoint not validated yet).
    pub queued: u64,
    /// Finished with a 2xx answer (a challenge: with the right response).
    pub delivered: u64,
    /// Given up on: every attempt failed, or it could not be sent.
    pub failed: u64,
    /// Being sent right now (attempts and the pauses between them).
    pub in_flight: u64,
}

/// How the outbox delivers and what it keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxConfig {
    /// Deliveries in flight at once (0 counts as 1).
    pub concurrency: usize,
    /// Deliveries kept in the log, the oldest dropped first.
    pub log_limit: usize,
    /// Whether the log keeps each delivery's body and headers.
    pub record_bodies: bool,
}

#[derive(Debug)]
enum Job {
    Post {
        marketplace: Marketplace,
        kind: String,
        url: String,
        headers: Vec<(&'static str, String)>,
        secret: Option<(&'static str, SecretString)>,
        body: Vec<u8>,
        /// The order the event announces (its acknowledgement is remembered).
        order: Option<String>,
    },
    Challenge {
        url: String,
        code: String,
        expected: String,
        sim: Arc<Sim>,
    },
    Flush(oneshot::Sender<()>),
}

/// Which deliveries are running, by sequence number, and the flushes waiting on them.
#[derive(Debug, Default)]
struct Tracker {
    running: BTreeSet<u64>,
    /// `(n, reply)`: answer once nothing below `n` runs. Pushed in increasing `n`.
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Tracker {
    fn flush(&mut self, upto: u64, reply: oneshot::Sender<()>) {
        if self.running.first().is_none_or(|first| *first >= upto) {
            let _ = reply.send(());
        } else {
            self.waiters.push_back((upto, reply));
        }
    }

    fn finish(&mut self, seq: u64) {
        self.running.remove(&seq);
        let low = self.running.first().copied().unwrap_or(u64::MAX);
        while self.waiters.front().is_some_and(|(upto, _)| *upto <= low) {
            if let Some((_, reply)) = self.waiters.pop_front() {
                let _ = reply.send(());
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    config: OutboxConfig,
    log: Mutex<VecDeque<Delivery>>,
    gateway: Mutex<Option<Gateway>>,
    tracker: Mutex<Tracker>,
    counters: Counters,
    /// Orders whose announcing delivery the receiver answered 2xx.
    acked: crate::acked::Acknowledged,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Record a finished delivery: count it, and log it within the limit.
    fn record(&self, mut d: Delivery) {
        let counter = if d.ok() {
            &self.counters.delivered
        } else {
            &self.counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self.config.log_limit == 0 {
            return;
        }
        if !self.config.record_bodies {
            d.body = String::new();
            d.headers = Vec::new();
        }
        let mut log = lock(&self.log);
        while log.len() >= self.config.log_limit {
            log.pop_front();
        }
        log.push_back(d);
    }
}

/// One running delivery. Dropping it (finished, panicked or aborted at shutdown) frees
/// its slot and answers the flushes that were waiting only for it.
struct Running {
    shared: Arc<Shared>,
    seq: u64,
    recorded: bool,
    _permit: OwnedSemaphorePermit,
}

impl Running {
    fn record(&mut self, d: Delivery) {
        self.shared.record(d);
        self.recorded = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.recorded {
            self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .counters
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        lock(&self.shared.tracker).finish(self.seq);
    }
}

/// The queue of events to deliver, shared by the three simulators.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Job>,
    shared: Arc<Shared>,
}

/// Attempts per delivery, 0.1 s after the first failure and doubling (1.5 s in all).
/// Marketplaces publish no exact schedule and keep retrying far longer; five attempts
/// keep a test's receiver from being given up on while a loaded machine answers 503.
const ATTEMPTS: u32 = 5;

impl Outbox {
    /// Start the dispatcher (needs a tokio runtime). Aborting the returned task also
    /// aborts the deliveries it started.
    pub fn start(
        gateway: Option<Gateway>,
        config: OutboxConfig,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let shared = Arc::new(Shared {
            config,
            log: Mutex::new(VecDeque::new()),
            gateway: Mutex::new(gateway),
            tracker: Mutex::new(Tracker::default()),
            counters: Counters::default(),
            acked: Default::default(),
        });
        let task = tokio::spawn(dispatch(rx, shared.clone()));
        (Outbox { tx, shared }, task)
    }

    pub fn set_gateway(&self, gateway: Option<Gateway>) {
        *lock(&self.shared.gateway) = gateway;
    }

    /// The deliveries kept in the log, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        lock(&self.shared.log).iter().cloned().collect()
    }

    pub fn stats(&self) -> DeliveryStats {
        let c = &self.shared.counters;
        DeliveryStats {
            queued: c.queued.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            in_flight: c.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Order ids of `m` whose announcing delivery was answered 2xx.
    pub fn acknowledged(&self, m: Marketplace) -> std::collections::HashSet<String> {
        self.shared.acked.of(m)
    }

    /// Wait until everything queued so far has been delivered (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn enqueue(&self, job: Job) {
        self.shared.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(job).is_err() {
            // The dispatcher has stopped (the sandbox is shutting down).
            self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_skipped(
        &self,
        marketplace: Marketplace,
        kind: &str,
        url: &str,
        body: Vec<u8>,
        why: &str,
    ) {
        self.shared.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.shared.record(Delivery {
            marketplace,
            kind: kind.to_owned(),
            url: url.to_owned(),
            status: None,
            attempts: 0,
            error: Some(why.to_owned()),
            body: body_text(&self.shared.config, &body),
            headers: Vec::new(),
            at_ms: stockade_core::time::now_ms(),
        });
    }
}

/// The body as the log keeps it (nothing when bodies are not recorded).
fn body_text(config: &OutboxConfig, body: &[u8]) -> String {
    if config.record_bodies && config.log_limit > 0 {
        String::from_utf8_lossy(body).into_owned()
    } else {
        String::new()
    }
}

/// Read the queue in order; start each delivery when a slot is free.
async fn dispatch(mut rx: mpsc::UnboundedReceiver<Job>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut next_seq: u64 = 0;
    while let Some(job) = rx.recv().await {
        // Reap finished tasks so the set stays as small as what runs.
        while running.try_join_next().is_some() {}
        if let Job::Flush(reply) = job {
            lock(&shared.tracker).flush(next_seq, reply);
            continue;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let seq = next_seq;
        next_seq += 1;
        lock(&shared.tracker).running.insert(seq);
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut slot = Running {
            shared: shared.clone(),
            seq,
            recorded: false,
            _permit: permit,
        };
        let gateway = lock(&shared.gateway).clone();
        running.spawn(async move {
            let config = slot.shared.config;
            let record_bodies = config.record_bodies && config.log_limit > 0;
            match job {
                Job::Post {
                    marketplace,
                    kind,
                    url,
                    headers,
                    secret,
                    body,
                    order,
                } => {
                    let d = post(
                        gateway.as_ref(),
                        marketplace,
                        kind,
                        url,
                        headers,
                        secret,
                        body,
                        record_bodies,
                    )
                    .await;
                    if let Some(order) = order
                        && d.ok()
                    {
                        slot.shared.acked.insert(marketplace, order);
                    }
                    slot.record(d);
                }
                Job::Challenge {
                    url,
                    code,
                    expected,
                    sim,
                } => {
                    let d = challenge(gateway.as_ref(), &url, &code, &expected).await;
                    if d.ok() {
                        sim.lock().ebay_verified = true;
                    }
                    slot.record(d);
                }
                Job::Flush(_) => {}
            }
        });
    }
}

fn host_port(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    Some(if has_port {
        authority.to_ascii_lowercase()
    } else {
        format!("{}:443", authority.to_ascii_lowercase())
    })
}

#[allow(clippy::too_many_arguments)]
async fn post(
    gateway: Option<&Gateway>,
    marketplace: Marketplace,
    kind: String,
    url: String,
    headers: Vec<(&'static str, String)>,
    secret: Option<(&'static str, SecretString)>,
    body: Vec<u8>,
    record_bodies: bool,
) -> Delivery {
    let mut d = Delivery {
        marketplace,
        kind,
        url: url.clone(),
        status: None,
        attempts: 0,
        error: None,
        body: String::new(),
        headers: Vec::new(),
        at_ms: stockade_core::time::now_ms(),
    };
    if record_bodies {
        d.body = String::from_utf8_lossy(&body).into_owned();
        d.headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
    }
    let Some(gateway) = gateway else {
        d.error = Some("no egress gateway configured in SandboxConfig".into());
        return d;
    };
    let hosts: Vec<String> = host_port(&url).into_iter().collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let client = gateway.client(Caller::Sandbox, &host_refs);
    for attempt in 1..=ATTEMPTS {
        let mut req = Request::post(url.clone(), "webhook", operation(marketplace));
        for (k, v) in &headers {
            req = req.header(k, v.clone());
        }
        if let Some((name, value)) = &secret {
            req = req.secret_header(name, value);
        }
        req = req.body(body.clone(), "application/json");
        d.attempts = attempt;
        match client.send(req).await {
            Ok(r) => {
                d.status = Some(r.status.as_u16());
                if r.status.is_success() {
                    d.error = None;
                    return d;
                }
                d.error = Some(format!("the receiver answered HTTP {}", r.status.as_u16()));
            }
            Err(e) => {
                d.status = None;
                d.error = Some(e.to_string());
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
        }
    }
    d
}

fn operation(m: Marketplace) -> &'static str {
    match m {
        Marketplace::TikTok => "sandbox.tiktok.webhook",
        Marketplace::Amazon => "sandbox.amazon.event",
        Marketplace::Ebay => "sandbox.ebay.notification",
    }
}

async fn challenge(gateway: Option<&Gateway>, url: &str, code: &str, expected: &str) -> Delivery {
    let mut d = Delivery {
        marketplace: Marketplace::Ebay,
        kind: "challenge".into(),
        url: url.to_owned(),
        status: None,
        attempts: 1,
        error: None,
        body: String::new(),
        headers: Vec::new(),
        at_ms: stockade_core::time::now_ms(),
    };
    let Some(gateway) = gateway else {
        d.error = Some("no egress gateway configured in SandboxConfig".into());
        return d;
    };
    let hosts: Vec<String> = host_port(url).into_iter().collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let client = gateway.client(Caller::Sandbox, &host_refs);
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}challenge_code={code}");
    match client
        .send(Request::get(full, "webhook", "sandbox.ebay.challenge"))
        .await
    {
        Ok(r) => {
            d.status = Some(r.status.as_u16());
            let got = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
                v.get("challengeResponse")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            if r.status.as_u16() != 200 {
                d.error = Some(format!("the endpoint answered HTTP {}", r.status.as_u16()));
            } else if got.as_deref() != Some(expected) {
                d.error = Some("wrong or missing challengeResponse".into());
            }
        }
        Err(e) => d.error = Some(e.to_string()),
    }
    d
}

/// Serialize JSON compactly (no insignificant whitespace), keys in insertion order.
pub(crate) fn compact(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Sign `body` with SHA1withECDSA: DER signature, base64.
pub(crate) fn ebay_signature(key: &EbayKey, body: &[u8]) -> Option<String> {
    let digest = sha1::Sha1::digest(body);
    let sig: p256::ecdsa::Signature = key.signing.sign_prehash(&digest).ok()?;
    let der = sig.to_der();
    let header = json!({"alg": "ecdsa", "kid": key.kid, "signature": B64.encode(der.as_bytes()), "digest": "SHA1"});
    Some(B64.encode(compact(&header)))
}

/// Queue a signed event from `sim` to its configured webhook URL (if any).
pub(crate) fn emit(sim: &Sim, m: &Market, kind: &str, body: Vec<u8>) {
    emit_about(sim, m, kind, body, None);
}

/// Queue a signed event announcing `order` (a 2xx answer to it is remembered: see
/// [`crate::Sandbox::acknowledged_orders`]).
pub(crate) fn emit_about(sim: &Sim, m: &Market, kind: &str, body: Vec<u8>, order: Option<String>) {
    let Some(url) = m.webhook.clone() else {
        return;
    };
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    let mut secret = None;
    match sim.marketplace {
        Marketplace::TikTok => {
            headers.push((
                "Authorization",
                tiktok_webhook_signature(&m.app.client_id, &m.app.client_secret, &body),
            ));
        }
        Marketplace::Amazon => {
            secret = Some((
                sim.cfg.amazon_event_header,
                SecretString::from(sim.cfg.amazon_event_secret.clone()),
            ));
        }
        Marketplace::Ebay => {
            if !m.ebay_verified {
                sim.outbox.record_skipped(
                    sim.marketplace,
                    kind,
                    &url,
                    body,
                    "the endpoint has not answered the validation challenge",
                );
                return;
            }
            match sim.ebay_key.as_ref().and_then(|k| ebay_signature(k, &body)) {
                Some(sig) => headers.push(("X-EBAY-SIGNATURE", sig)),
                None => return,
            }
        }
    }
    sim.outbox.enqueue(Job::Post {
        marketplace: sim.marketplace,
        kind: kind.to_owned(),
        url,
        headers,
        secret,
        body,
        order,
    });
}

/// Queue the eBay endpoint validation challenge for `url`.
pub(crate) fn send_challenge(sim: &Arc<Sim>, m: &mut Market, url: &str) {
    let code = m.rng.uuid();
    let expected = ebay_challenge_response(&code, &sim.cfg.ebay_verification_token, url);
    sim.outbox.enqueue(Job::Challenge {
        url: url.to_owned(),
        code,
        expected,
        sim: sim.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_waits_for_earlier_deliveries_only() {
        let mut t = Tracker::default();
        // Nothing running: answered at once.
        let (tx, mut rx) = oneshot::channel();
        t.flush(0, tx);
        assert!(rx.try_recv().is_ok());

        for seq in 0..3 {
            t.running.insert(seq);
        }
        let (tx, mut first) = oneshot::channel();
        t.flush(2, tx); // waits for 0 and 1
        t.running.insert(3);
        let (tx, mut second) = oneshot::channel();
        t.flush(4, tx); // waits for 0 to 3
        t.finish(1);
        assert!(first.try_recv().is_err());
        t.finish(0);
        assert!(first.try_recv().is_ok(), "2 and 3 are later than the flush");
        t.finish(3);
        assert!(second.try_recv().is_err());
        t.finish(2);
        assert!(second.try_recv().is_ok());
        assert!(t.waiters.is_empty());
    }

    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            host_port("https://127.0.0.1:8443/hook").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(
            host_port("https://Example.com/x?y").as_deref(),
            Some("example.com:443")
        );
        assert_eq!(host_port("http://example.com/"), None);
    }
}
