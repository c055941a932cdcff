use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use stockade_core::Environment;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::sign::{ebay_challenge_response, tiktok_webhook_signature};
use stockade_sandbox::{Marketplace, SandboxConfig};

use crate::{client, start};

type Received = Vec<(String, HeaderMap, Vec<u8>)>;

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Received>>,
    token: String,
    base: Arc<Mutex<String>>,
}

async fn challenge(
    State(inbox): State<Inbox>,
    Path(m): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> String {
    let endpoint = format!("{}/hook/{m}", inbox.base.lock().unwrap());
    let code = q.get("challenge_code").cloned().unwrap_or_default();
    format!(
        "{{\"challengeResponse\":\"{}\"}}",
        ebay_challenge_response(&code, &inbox.token, &endpoint)
    )
}

async fn receive(
    State(inbox): State<Inbox>,
    Path(m): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    inbox.got.lock().unwrap().push((m, headers, body.to_vec()));
    "ok"
}

#[tokio::test]
async fn signed_events_and_revocations_are_delivered_through_egress() {
    let sb = start(SandboxConfig::default()).await;
    let inbox = Inbox {
        token: sb.ebay_verification_token().expose_secret().clone(),
        ..Inbox::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("https://{addr}");
    *inbox.base.lock().unwrap() = base.clone();
    let app = Router::new()
        .route("/hook/{m}", get(challenge).post(receive))
        .with_state(inbox.clone());
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(sb.tls_server_config()),
    )
    .unwrap();
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });

    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![addr.to_string()];
    cfg.extra_root_pems = vec![sb.ca_pem.clone()];
    sb.set_gateway(Some(Gateway::new(cfg, None).unwrap()));
    for m in Marketplace::ALL {
        sb.set_webhook(m, Some(format!("{base}/hook/{}", m.as_str())));
    }
    sb.flush_deliveries().await;
    let d = sb.deliveries();
    assert!(d.iter().any(|d| d.kind == "challenge" && d.ok()), "{d:?}");

    for m in Marketplace::ALL {
        assert_eq!(sb.generate_orders(m, 2).len(), 2);
    }
    let tt = sb.tiktok.sellers[0].seller_id.clone();
    let eb = sb.ebay.sellers[0].seller_id.clone();
    sb.authorization_expiring(&tt, stockade_core::time::now_ms() + 86_400_000)
        .unwrap();
    sb.revoke(Marketplace::TikTok, &tt).unwrap();
    sb.account_deletion(&eb).unwrap();
    sb.revoke(Marketplace::Ebay, &eb).unwrap();
    sb.flush_deliveries().await;
    let deliveries = sb.deliveries();
    assert!(deliveries.iter().all(|d| d.ok()), "{deliveries:?}");
    let kinds: Vec<&str> = deliveries.iter().map(|d| d.kind.as_str()).collect();
    for k in [
        "ORDER_STATUS_CHANGE",
        "UPCOMING_AUTHORIZATION_EXPIRATION",
        "SELLER_DEAUTHORIZATION",
        "ORDER_CHANGE",
        "ORDER_CONFIRMATION",
        "MARKETPLACE_ACCOUNT_DELETION",
        "AUTHORIZATION_REVOCATION",
    ] {
        assert!(kinds.contains(&k), "missing {k}: {kinds:?}");
    }

    // Fetch the eBay public key through the API with an application token.
    let http = client(&sb);
    let app_token = crate::ebay::app_token(&sb, &http).await;
    let got = inbox.got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        deliveries.iter().filter(|d| d.kind != "challenge").count()
    );
    let mut key_cache: Option<Vec<u8>> = None;
    for (m, headers, body) in got {
        match m.as_str() {
            "tiktok" => {
                let expected = tiktok_webhook_signature(
                    &sb.tiktok.app.client_id,
                    sb.tiktok.app.client_secret.expose_secret(),
                    &body,
                );
                assert_eq!(headers["authorization"].to_str().unwrap(), expected);
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert!([1, 6, 7].contains(&v["type"].as_i64().unwrap()));
            }
            "amazon" => {
                assert_eq!(
                    headers["x-stockade-event-key"].to_str().unwrap(),
                    sb.amazon_event_secret().expose_secret()
                );
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["detail-type"], "ORDER_CHANGE");
                assert_eq!(v["detail"]["NotificationType"], "ORDER_CHANGE");
                assert!(
                    v["detail"]["Payload"]["OrderChangeNotification"]["AmazonOrderId"].is_string()
                );
            }
            "ebay" => {
                let h: Value = serde_json::from_slice(
                    &B64.decode(headers["x-ebay-signature"].to_str().unwrap())
                        .unwrap(),
                )
                .unwrap();
                assert_eq!(h["digest"], "SHA1");
                if key_cache.is_none() {
                    let v: Value = http
                        .get(format!(
                            "{}/commerce/notification/v1/public_key/{}",
                            sb.ebay.base_url,
                            h["kid"].as_str().unwrap()
                        ))
                        .bearer_auth(&app_token)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert_eq!(v["algorithm"], "ECDSA");
                    let pem = v["key"].as_str().unwrap();
                    let b64 = pem
                        .trim_start_matches("-----BEGIN PUBLIC KEY-----")
                        .trim_end_matches("-----END PUBLIC KEY-----");
                    key_cache = Some(B64.decode(b64).unwrap());
                }
                let spki = key_cache.as_ref().unwrap();
                let sig = B64.decode(h["signature"].as_str().unwrap()).unwrap();
                let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
                    &aws_lc_rs::signature::ECDSA_P256_SHA1_ASN1,
                    &spki[26..],
                );
                assert!(
                    pk.verify(&body, &sig).is_ok(),
                    "eBay signature does not verify"
                );
                let mut tampered = body.clone();
                tampered[10] ^= 1;
                assert!(pk.verify(&tampered, &sig).is_err());
            }
            other => panic!("unexpected {other}"),
        }
    }
    task.abort();
    sb.shutdown().await;
}

#[tokio::test]
async fn ebay_notifications_wait_for_a_verified_endpoint() {
    let sb = start(SandboxConfig::default()).await;
    // No gateway: the challenge cannot be answered, so notifications are held back.
    sb.set_webhook(Marketplace::Ebay, Some("https://127.0.0.1:9/hook".into()));
    sb.flush_deliveries().await;
    sb.generate_orders(Marketplace::Ebay, 1);
    sb.flush_deliveries().await;
    let d = sb.deliveries();
    assert!(d.iter().any(|d| d.kind == "challenge" && !d.ok()));
    assert!(
        d.iter()
            .any(|d| d.kind == "ORDER_CONFIRMATION" && d.attempts == 0 && !d.ok())
    );
    sb.shutdown().await;
}

/// What the load receiver saw: deliveries per order id, and how many were in flight at
/// most at once.
#[derive(Clone, Default)]
struct LoadInbox {
    per_order: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
}

async fn receive_load(State(inbox): State<LoadInbox>, body: Bytes) -> &'static str {
    use std::sync::atomic::Ordering;
    let now = inbox.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inbox.peak.fetch_max(now, Ordering::SeqCst);
    // A receiver that takes a moment, so deliveries overlap when they can.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    let id = v["data"]["order_id"].as_str().unwrap().to_owned();
    *inbox.per_order.lock().unwrap().entry(id).or_default() += 1;
    inbox.in_flight.fetch_sub(1, Ordering::SeqCst);
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_orders_are_delivered_once_each_concurrently_with_a_bounded_log() {
    let sb = start(SandboxConfig {
        initial_quantity: 10_000,
        delivery_concurrency: 16,
        delivery_log_limit: 100,
        ..SandboxConfig::default()
    })
    .await;
    let inbox = LoadInbox::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", axum::routing::post(receive_load))
        .with_state(inbox.clone());
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(sb.tls_server_config()),
    )
    .unwrap();
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });

    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![addr.to_string()];
    cfg.extra_root_pems = vec![sb.ca_pem.clone()];
    // No per-host pacing: the sandbox is the load generator here.
    cfg.host_rate = (0.0, 0);
    sb.set_gateway(Some(Gateway::new(cfg, None).unwrap()));
    sb.set_webhook(Marketplace::TikTok, Some(format!("https://{addr}/hook")));

    let ids = sb.generate_orders(Marketplace::TikTok, 2_000);
    assert_eq!(ids.len(), 2_000);
    sb.flush_deliveries().await;

    let per_order = inbox.per_order.lock().unwrap().clone();
    assert_eq!(per_order.len(), 2_000, "distinct order ids received");
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order was delivered twice"
    );
    assert!(ids.iter().all(|id| per_order.contains_key(id)));
    assert_eq!(
        sb.delivery_stats(),
        stockade_sandbox::DeliveryStats {
            queued: 2_000,
            delivered: 2_000,
            failed: 0,
            in_flight: 0,
        }
    );
    let peak = inbox.peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=16).contains(&peak), "peak concurrency {peak}");

    // The log keeps the newest 100, with their bodies by default.
    let log = sb.deliveries();
    assert_eq!(log.len(), 100);
    assert!(
        log.iter()
            .all(|d| d.ok() && d.attempts == 1 && !d.body.is_empty())
    );
    task.abort();
    sb.shutdown().await;
}

#[tokio::test]
async fn the_delivery_log_can_leave_out_bodies_and_headers() {
    let sb = start(SandboxConfig {
        record_delivery_bodies: false,
        ..SandboxConfig::default()
    })
    .await;
    // No gateway: every delivery fails at once, and is still logged and counted.
    sb.set_webhook(Marketplace::TikTok, Some("https://127.0.0.1:9/hook".into()));
    assert_eq!(sb.generate_orders(Marketplace::TikTok, 3).len(), 3);
    sb.flush_deliveries().await;
    let log = sb.deliveries();
    assert_eq!(log.len(), 3);
    assert!(
        log.iter()
            .all(|d| !d.ok() && d.body.is_empty() && d.headers.is_empty())
    );
    let stats = sb.delivery_stats();
    assert_eq!((stats.queued, stats.failed, stats.in_flight), (3, 3, 0));
    sb.shutdown().await;
}
