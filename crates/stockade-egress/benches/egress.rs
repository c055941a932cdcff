//! Egress path overhead: the gateway against a bare reqwest client, both over keep-alive
//! HTTPS to a trivial axum TLS server on loopback, sequential requests. The gateway runs
//! without a store, with the SQLite log writer, and (when STOCKADE_TEST_PG_URL is set)
//! with the PostgreSQL log writer.
//!
//! `cargo bench -p stockade-egress --bench egress` (EGRESS_BENCH_N requests per run,
//! default 3000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use stockade_core::Environment;
use stockade_egress::{Caller, EgressConfig, Gateway, Request};
use stockade_store::{DatabaseUrl, Store, StoreOptions};

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: format!("{}{}", cert.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    }
}

async fn server(pki: &Pki) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let app = axum::Router::new().route(
        "/items/{id}",
        axum::routing::get(|| async { r#"{"ok":true}"# }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    let srv = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(async move {
        let _ = srv.serve(app.into_make_service()).await;
    });
    addr
}

fn report(name: &str, n: usize, elapsed: Duration, baseline: Option<f64>) -> f64 {
    let us = elapsed.as_secs_f64() * 1e6 / n as f64;
    match baseline {
        Some(b) => println!(
            "{name:<28} {us:>9.1} µs/request   overhead {:>+8.1} µs ({:+.0}%)",
            us - b,
            (us - b) / b * 100.0
        ),
        None => println!("{name:<28} {us:>9.1} µs/request"),
    }
    us
}

async fn run_gateway(g: &Gateway, addr: SocketAddr, n: usize) -> Duration {
    let host = format!("127.0.0.1:{}", addr.port());
    let c = g.client(Caller::System("bench"), &[host.as_str()]);
    let url = |i: usize| format!("https://{host}/items/{i}?token=bench");
    for i in 0..100 {
        c.send(Request::get(url(i), "/items/{id}", "getItem"))
            .await
            .unwrap();
    }
    let t = Instant::now();
    for i in 0..n {
        let r = c
            .send(Request::get(url(i), "/items/{id}", "getItem"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let e = t.elapsed();
    g.flush().await.unwrap();
    e
}

fn config(pki: &Pki, addr: SocketAddr) -> EgressConfig {
    let mut c = EgressConfig::new(Environment::Dev);
    c.allowed_hosts = vec![format!("127.0.0.1:{}", addr.port())];
    c.extra_root_pems = vec![pki.ca_pem.clone()];
    // Measure the path, not the rate limit.
    c.host_rate = (1e9, u32::MAX);
    c
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("EGRESS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let pki = pki();
    let addr = server(&pki).await;
    println!("egress bench: {n} sequential GETs, keep-alive HTTPS on loopback");

    let bare = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let url = |i: usize| format!("https://127.0.0.1:{}/items/{i}?token=bench", addr.port());
    for i in 0..100 {
        bare.get(url(i))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let t = Instant::now();
    for i in 0..n {
        let r = bare.get(url(i)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let base = report("bare reqwest", n, t.elapsed(), None);

    let g = Gateway::new(config(&pki, addr), None).unwrap();
    let e = run_gateway(&g, addr, n).await;
    report("gateway, no log", n, e, Some(base));

    let dir = std::env::temp_dir().join(format!("stockade-egress-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url_db = DatabaseUrl::Sqlite(dir.join("bench.db"));
    let (store, _) = Store::init(&url_db, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    let g = Gateway::new(config(&pki, addr), Some(store.clone())).unwrap();
    let e = run_gateway(&g, addr, n).await;
    report("gateway + SQLite log", n, e, Some(base));
    drop(g);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    if let Some(pg) = std::env::var("STOCKADE_TEST_PG_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        let schema = format!("egress_bench_{}", std::process::id());
        let url_db = DatabaseUrl::Postgres {
            url: pg.clone(),
            schema: Some(schema.clone()),
        };
        let (store, _) = Store::init(&url_db, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap();
        let g = Gateway::new(config(&pki, addr), Some(store.clone())).unwrap();
        let e = run_gateway(&g, addr, n).await;
        report("gateway + PostgreSQL log", n, e, Some(base));
        drop(g);
        store.close().await;
        stockade_store::testing::drop_postgres_schema(&pg, &schema).await;
    }
}
