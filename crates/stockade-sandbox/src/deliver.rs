//! Signed webhook / event delivery through the egress gateway, and the delivery log.
//! This is the only module that talks to `stockade-egress`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use serde_json::{Value, json};
use sha1::Digest;
use stockade_core::SecretString;
use stockade_core::order::Marketplace;
use stockade_egress::{Caller, Gateway, Request};
use tokio::sync::mpsc;

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
    /// The exact body sent (empty for a challenge GET).
    pub body: String,
    /// The headers sent, except the shared-secret header of Amazon events.
    pub headers: Vec<(String, String)>,
    pub at_ms: i64,
}

impl Delivery {
    /// Whether the receiver answered 2xx (a challenge: 200 with the right response).
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
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
    },
    Challenge {
        url: String,
        code: String,
        expected: String,
        sim: Arc<Sim>,
    },
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The queue of events to deliver, shared by the three simulators.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Job>,
    log: Arc<Mutex<Vec<Delivery>>>,
    gateway: Arc<Mutex<Option<Gateway>>>,
}

const ATTEMPTS: u32 = 3;

impl Outbox {
    /// Start the delivery worker (needs a tokio runtime).
    pub fn start(gateway: Option<Gateway>) -> (Outbox, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let worker_log = log.clone();
        let gateway = Arc::new(Mutex::new(gateway));
        let worker_gateway = gateway.clone();
        let task = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let gateway = worker_gateway.lock().ok().and_then(|g| g.clone());
                match job {
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                    Job::Post {
                        marketplace,
                        kind,
                        url,
                        headers,
                        secret,
                        body,
                    } => {
                        let d = post(
                            gateway.as_ref(),
                            marketplace,
                            kind,
                            url,
                            headers,
                            secret,
                            body,
                        )
                        .await;
                        push(&worker_log, d);
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
                        push(&worker_log, d);
                    }
                }
            }
        });
        (Outbox { tx, log, gateway }, task)
    }

    pub fn set_gateway(&self, gateway: Option<Gateway>) {
        if let Ok(mut g) = self.gateway.lock() {
            *g = gateway;
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait until everything queued so far has been delivered (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Job::Flush(tx)).is_ok() {
            let _ = rx.await;
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
        push(
            &self.log,
            Delivery {
                marketplace,
                kind: kind.to_owned(),
                url: url.to_owned(),
                status: None,
                attempts: 0,
                error: Some(why.to_owned()),
                body: String::from_utf8_lossy(&body).into_owned(),
                headers: Vec::new(),
                at_ms: stockade_core::time::now_ms(),
            },
        );
    }
}

fn push(log: &Mutex<Vec<Delivery>>, d: Delivery) {
    if let Ok(mut l) = log.lock() {
        l.push(d);
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

async fn post(
    gateway: Option<&Gateway>,
    marketplace: Marketplace,
    kind: String,
    url: String,
    headers: Vec<(&'static str, String)>,
    secret: Option<(&'static str, SecretString)>,
    body: Vec<u8>,
) -> Delivery {
    let mut d = Delivery {
        marketplace,
        kind,
        url: url.clone(),
        status: None,
        attempts: 0,
        error: None,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        at_ms: stockade_core::time::now_ms(),
    };
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
            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
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
    let _ = sim.outbox.tx.send(Job::Post {
        marketplace: sim.marketplace,
        kind: kind.to_owned(),
        url,
        headers,
        secret,
        body,
    });
}

/// Queue the eBay endpoint validation challenge for `url`.
pub(crate) fn send_challenge(sim: &Arc<Sim>, m: &mut Market, url: &str) {
    let code = m.rng.uuid();
    let expected = ebay_challenge_response(&code, &sim.cfg.ebay_verification_token, url);
    let _ = sim.outbox.tx.send(Job::Challenge {
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
