//! Throughput of the three simulators: many concurrent keep-alive HTTPS clients, rate
//! limits off, a cheap authenticated read on each marketplace (TikTok signed
//! inventory search, Amazon getListingsItem, eBay inventory_item). Prints requests/s.
//!
//! `SANDBOX_BENCH_SECS` (default 5) and `SANDBOX_BENCH_CONCURRENCY` (default 48).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use stockade_sandbox::sign::tiktok_sign;
use stockade_sandbox::{Marketplace, Sandbox, SandboxConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

struct Target {
    marketplace: Marketplace,
    token: String,
}

async fn run() {
    let secs = env("SANDBOX_BENCH_SECS", 5);
    let concurrency = env("SANDBOX_BENCH_CONCURRENCY", 48);
    let sb = Arc::new(
        Sandbox::start(SandboxConfig {
            rate_limits: false,
            ..SandboxConfig::default()
        })
        .await
        .unwrap(),
    );
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sb.ca_pem.as_bytes()).unwrap()])
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .unwrap();

    let tt = &sb.tiktok;
    let v: Value = http
        .get(format!(
            "{}/api/v2/token/refresh?app_key={}&app_secret={}&refresh_token={}&grant_type=refresh_token",
            tt.base_url,
            tt.app.client_id,
            tt.app.client_secret.expose_secret(),
            tt.sellers[0].refresh_token.expose_secret()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tiktok = v["data"]["access_token"].as_str().unwrap().to_owned();
    let am = &sb.amazon;
    let v: Value = http
        .post(format!("{}/auth/o2/token", am.base_url))
        .form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                am.sellers[0].refresh_token.expose_secret().as_str(),
            ),
            ("client_id", am.app.client_id.as_str()),
            (
                "client_secret",
                am.app.client_secret.expose_secret().as_str(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let amazon = v["access_token"].as_str().unwrap().to_owned();
    let eb = &sb.ebay;
    let v: Value = http
        .post(format!("{}/identity/v1/oauth2/token", eb.base_url))
        .basic_auth(
            &eb.app.client_id,
            Some(eb.app.client_secret.expose_secret()),
        )
        .form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                eb.sellers[0].refresh_token.expose_secret().as_str(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ebay = v["access_token"].as_str().unwrap().to_owned();
    let targets = Arc::new([
        Target {
            marketplace: Marketplace::TikTok,
            token: tiktok,
        },
        Target {
            marketplace: Marketplace::Amazon,
            token: amazon,
        },
        Target {
            marketplace: Marketplace::Ebay,
            token: ebay,
        },
    ]);
    let sku_id = sb.listings(Marketplace::TikTok)[0].sku_id.clone();

    let ok = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let (http, sb, targets, ok, failed, sku_id) = (
            http.clone(),
            sb.clone(),
            targets.clone(),
            ok.clone(),
            failed.clone(),
            sku_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let which = (i % 3) as usize;
            let t = &targets[which];
            while Instant::now() < deadline {
                let req = match t.marketplace {
                    Marketplace::TikTok => {
                        let ep = &sb.tiktok;
                        let path = "/product/202309/inventory/search";
                        let body = format!("{{\"sku_ids\":[\"{sku_id}\"]}}");
                        let q = vec![
                            ("app_key".to_owned(), ep.app.client_id.clone()),
                            ("shop_cipher".to_owned(), ep.sellers[0].shop_cipher.clone()),
                            ("timestamp".to_owned(), (stockade_core::time::now_ms() / 1000).to_string()),
                        ];
                        let sign = tiktok_sign(ep.app.client_secret.expose_secret(), path, &q, Some(body.as_bytes()));
                        http.post(format!(
                            "{}{path}?app_key={}&shop_cipher={}&timestamp={}&sign={sign}",
                            ep.base_url, q[0].1, q[1].1, q[2].1
                        ))
                        .header("x-tts-access-token", &t.token)
                        .header("content-type", "application/json")
                        .body(body)
                    }
                    Marketplace::Amazon => {
                        let ep = &sb.amazon;
                        http.get(format!(
                            "{}/listings/2021-08-01/items/{}/SKU-0001?marketplaceIds=ATVPDKIKX0DER&includedData=summaries,attributes",
                            ep.base_url, ep.sellers[0].seller_id
                        ))
                        .header("x-amz-access-token", &t.token)
                    }
                    Marketplace::Ebay => http
                        .get(format!("{}/sell/inventory/v1/inventory_item/SKU-0001", sb.ebay.base_url))
                        .bearer_auth(&t.token),
                };
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok[which].fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts: Vec<u64> = ok.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = counts.iter().sum();
    println!(
        "sandbox throughput: {concurrency} keep-alive clients for {elapsed:.1} s, rate limits off"
    );
    for (m, c) in ["tiktok", "amazon", "ebay"].iter().zip(&counts) {
        println!("  {m:<7} {:>9.0} req/s", *c as f64 / elapsed);
    }
    println!(
        "  total   {:>9.0} req/s ({} failed)",
        total as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
    if let Ok(sb) = Arc::try_unwrap(sb) {
        sb.shutdown().await;
    }
}
