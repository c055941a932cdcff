//! The read-only routes a benchmark in another process uses: `/_sandbox/acknowledged`
//! (orders whose delivery the receiver answered 2xx) and `/_sandbox/quantity-history`
//! (every change of a listing's displayed quantity), as JSON over the simulators' TLS.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use axum::Router;
use serde_json::Value;
use stockade_core::Environment;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::{Marketplace, QtyChange, QtySource, SandboxConfig};

use crate::{client, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_and_quantity_history_are_read_back_over_http() {
    let sb = start(SandboxConfig {
        initial_quantity: 1_000,
        ..SandboxConfig::default()
    })
    .await;
    // A receiver answering 200 for TikTok; Amazon delivers nowhere (nothing acknowledged).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
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
    sb.set_webhook(Marketplace::TikTok, Some(format!("https://{addr}/hook")));

    let tiktok: BTreeSet<String> = sb
        .generate_orders(Marketplace::TikTok, 5)
        .into_iter()
        .collect();
    let amazon = sb.generate_orders(Marketplace::Amazon, 3);
    assert_eq!((tiktok.len(), amazon.len()), (5, 3));
    sb.flush_deliveries().await;

    let http = client(&sb);
    let get = |m: Marketplace, path: &'static str| {
        let url = format!("{}{path}", sb.endpoint(m).base_url);
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let acked = get(Marketplace::TikTok, "/_sandbox/acknowledged").await;
    assert_eq!(acked["marketplace"], "tiktok");
    let ids: BTreeSet<String> = acked["order_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, tiktok, "every answered delivery, nothing else");
    let acked = get(Marketplace::Amazon, "/_sandbox/acknowledged").await;
    assert_eq!(acked["order_ids"], serde_json::json!([]), "never answered");

    // The history as the simulator holds it, buyer changes included; no buyer data.
    let h = get(Marketplace::Amazon, "/_sandbox/quantity-history").await;
    let changes: Vec<QtyChange> = serde_json::from_value(h["changes"].clone()).unwrap();
    let (expected, dropped) = sb.quantity_history(Marketplace::Amazon);
    assert_eq!(changes, expected);
    assert_eq!(h["dropped"], dropped);
    let bought = changes
        .iter()
        .filter(|c| c.source == QtySource::Buyer)
        .count();
    assert!(bought >= 3, "one change per order line at least: {bought}");
    let keys: BTreeSet<&str> = h["changes"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "at_ms",
            "marketplace",
            "quantity",
            "seller_id",
            "sku",
            "source"
        ])
    );

    task.abort();
    sb.shutdown().await;
}
