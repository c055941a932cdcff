use std::time::Duration;

use serde_json::{Value, json};
use stockade_sandbox::{Faults, Marketplace, SandboxConfig};

use crate::{client, start};

#[tokio::test]
async fn faults_take_effect_and_are_settable_over_http() {
    let sb = start(SandboxConfig {
        rate_limits: false,
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = crate::ebay::user_token(&sb, &http).await;
    let url = format!(
        "{}/sell/inventory/v1/inventory_item/SKU-0001",
        sb.ebay.base_url
    );
    let get = || http.get(&url).bearer_auth(&t).send();

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            error_rate: 1.0,
            ..Faults::none()
        },
    );
    let r = get().await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["errorId"],
        2003
    );

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            throttle_rate: 1.0,
            ..Faults::none()
        },
    );
    assert_eq!(get().await.unwrap().status().as_u16(), 429);

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            storm_until_ms: stockade_core::time::now_ms() + 300,
            ..Faults::none()
        },
    );
    assert_eq!(get().await.unwrap().status().as_u16(), 429);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get().await.unwrap().status().as_u16(), 200);

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            malformed_rate: 1.0,
            ..Faults::none()
        },
    );
    for _ in 0..4 {
        let r = get().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(
            r.json::<Value>().await.is_err(),
            "a malformed body parsed as JSON"
        );
    }

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            drop_rate: 1.0,
            ..Faults::none()
        },
    );
    let e = get()
        .await
        .expect_err("a dropped connection produced a response");
    assert!(!e.is_timeout());

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            timeout_rate: 1.0,
            ..Faults::none()
        },
    );
    let e = http
        .get(&url)
        .bearer_auth(&t)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("a hang answered");
    assert!(e.is_timeout());

    sb.set_faults(
        Marketplace::Ebay,
        Faults {
            latency_ms: 200,
            ..Faults::none()
        },
    );
    let started = std::time::Instant::now();
    assert_eq!(get().await.unwrap().status().as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Over HTTP, on the Amazon server: a storm, then cleared.
    let admin = format!("{}/_sandbox/faults", sb.amazon.base_url);
    let r = http
        .put(&admin)
        .json(&json!({"throttle_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sb.faults(Marketplace::Amazon).throttle_rate, 1.0);
    let r = http
        .post(format!("{}/auth/o2/token", sb.amazon.base_url))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["x-amzn-ErrorType"], "QuotaExceeded");
    // Admin routes are never faulted.
    let v: Value = http.get(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["throttle_rate"], 1.0);
    let r = http
        .put(&admin)
        .json(&json!({"bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    http.put(&admin).json(&json!({})).send().await.unwrap();
    assert_eq!(sb.faults(Marketplace::Amazon), Faults::none());

    // The other admin routes.
    let base = &sb.tiktok.base_url;
    let v: Value = http
        .post(format!("{base}/_sandbox/orders"))
        .json(&json!({"count": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v["order_ids"][0].as_str().unwrap().to_owned();
    let v: Value = http
        .post(format!("{base}/_sandbox/orders/{id}/advance"))
        .json(&json!({"action": "ship"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "shipped");
    let v: Value = http
        .get(format!("{base}/_sandbox/listings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 10);
    let seller = &sb.tiktok.sellers[0].seller_id;
    let r = http
        .put(format!("{base}/_sandbox/listings/{seller}/SKU-0003"))
        .json(&json!({"quantity": 77}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        sb.listing(Marketplace::TikTok, seller, "SKU-0003")
            .unwrap()
            .quantity,
        77
    );
    let r = http
        .post(format!("{base}/_sandbox/expire-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .post(format!("{base}/_sandbox/revoke"))
        .json(&json!({"seller_id": seller}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v = crate::tiktok::refresh(&http, &sb.tiktok, &sb.tiktok.sellers[0].refresh_token).await;
    assert_eq!(v["code"], 105001);
    sb.shutdown().await;
}
