use serde_json::{Value, json};
use stockade_core::SecretString;
use stockade_sandbox::sign::tiktok_sign;
use stockade_sandbox::{Endpoint, Marketplace, Sandbox, SandboxConfig};

use crate::{client, now_s, start};

pub struct Tts {
    pub http: reqwest::Client,
    pub ep: Endpoint,
    pub token: String,
}

impl Tts {
    pub async fn new(sb: &Sandbox) -> Tts {
        let http = client(sb);
        let ep = sb.tiktok.clone();
        let token = refresh(&http, &ep, &ep.sellers[0].refresh_token).await["data"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Tts { http, ep, token }
    }

    pub fn url(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&[u8]>,
        shop: bool,
    ) -> String {
        let mut q: Vec<(String, String)> = vec![
            ("app_key".into(), self.ep.app.client_id.clone()),
            ("timestamp".into(), now_s().to_string()),
        ];
        if shop {
            q.push(("shop_cipher".into(), self.ep.sellers[0].shop_cipher.clone()));
        }
        for (k, v) in extra {
            q.push(((*k).into(), (*v).into()));
        }
        let sign = tiktok_sign(self.ep.app.client_secret.expose_secret(), path, &q, body);
        q.push(("sign".into(), sign));
        let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}{path}?{}", self.ep.base_url, qs.join("&"))
    }

    pub async fn post(&self, path: &str, extra: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        let url = self.url(path, extra, Some(&bytes), true);
        let r = self
            .http
            .post(url)
            .header("x-tts-access-token", &self.token)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub async fn get(&self, path: &str, extra: &[(&str, &str)], shop: bool) -> (u16, Value) {
        let url = self.url(path, extra, None, shop);
        let r = self
            .http
            .get(url)
            .header("x-tts-access-token", &self.token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

pub async fn refresh(http: &reqwest::Client, ep: &Endpoint, rt: &SecretString) -> Value {
    let url = format!(
        "{}/api/v2/token/refresh?app_key={}&app_secret={}&refresh_token={}&grant_type=refresh_token",
        ep.base_url,
        ep.app.client_id,
        ep.app.client_secret.expose_secret(),
        rt.expose_secret()
    );
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn token_shops_and_signed_calls() {
    let sb = start(SandboxConfig::default()).await;
    let t = Tts::new(&sb).await;
    let (status, body) = t.get("/authorization/202309/shops", &[], false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    assert_eq!(
        body["data"]["shops"][0]["cipher"],
        t.ep.sellers[0].shop_cipher
    );

    // The code grant.
    let code = sb
        .auth_code(Marketplace::TikTok, &t.ep.sellers[0].seller_id)
        .unwrap();
    let url = format!(
        "{}/api/v2/token/get?app_key={}&app_secret={}&auth_code={}&grant_type=authorized_code",
        t.ep.base_url,
        t.ep.app.client_id,
        t.ep.app.client_secret.expose_secret(),
        code.expose_secret()
    );
    let v: Value = t.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["code"], 0, "{v}");
    assert!(v["data"]["access_token_expire_in"].as_i64().unwrap() > now_s());
    // Single use.
    let v: Value = t.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["code"], 36004004);

    // A corrupted signature is refused with the real error body.
    let good = t.url("/authorization/202309/shops", &[], None, false);
    let bad = good.replace("sign=", "sign=0");
    let r = t
        .http
        .get(bad)
        .header("x-tts-access-token", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], 106001);
    assert!(v["request_id"].is_string());
    assert!(v["data"].is_null());

    // Signing the body matters: change one byte after signing.
    let body = serde_json::to_vec(&json!({"sku_ids": ["x"]})).unwrap();
    let url = t.url("/product/202309/inventory/search", &[], Some(&body), true);
    let r = t
        .http
        .post(url)
        .header("x-tts-access-token", &t.token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"sku_ids": ["y"]})).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 106001);

    // Wrong token, then expired token.
    let r = t
        .http
        .get(&good)
        .header("x-tts-access-token", "ROW_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 105001);
    sb.expire_tokens_now();
    let r = t
        .http
        .get(&good)
        .header("x-tts-access-token", &t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 105002);
    // Refresh gives a working token again (the SDK's authorized_code value is accepted too).
    let v = refresh(&t.http, &t.ep, &t.ep.sellers[0].refresh_token).await;
    assert_eq!(v["code"], 0);

    // Stale timestamp.
    let mut q = vec![
        ("app_key".to_owned(), t.ep.app.client_id.clone()),
        ("timestamp".to_owned(), (now_s() - 1000).to_string()),
    ];
    let s = tiktok_sign(
        t.ep.app.client_secret.expose_secret(),
        "/authorization/202309/shops",
        &q,
        None,
    );
    q.push(("sign".into(), s));
    let url = format!(
        "{}/authorization/202309/shops?app_key={}&timestamp={}&sign={}",
        t.ep.base_url, q[0].1, q[1].1, q[2].1
    );
    let v: Value = t
        .http
        .get(url)
        .header(
            "x-tts-access-token",
            v["data"]["access_token"].as_str().unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 36004004);
    sb.shutdown().await;
}

#[tokio::test]
async fn orders_paginate_without_loss_and_inventory_updates() {
    let sb = start(SandboxConfig {
        skus: 20,
        initial_quantity: 1000,
        rate_limits: false,
        ..SandboxConfig::default()
    })
    .await;
    let ids = sb.generate_orders(Marketplace::TikTok, 250);
    assert_eq!(ids.len(), 250);
    let t = Tts::new(&sb).await;
    for (order, field) in [("ASC", "create_time"), ("DESC", "update_time")] {
        let mut seen = std::collections::HashSet::new();
        let mut token = String::new();
        loop {
            let mut extra = vec![
                ("page_size", "37"),
                ("sort_order", order),
                ("sort_field", field),
            ];
            if !token.is_empty() {
                extra.push(("page_token", token.as_str()));
            }
            let (status, v) = t
                .post(
                    "/order/202309/orders/search",
                    &extra,
                    &json!({"create_time_ge": 0}),
                )
                .await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["data"]["total_count"], 250);
            for o in v["data"]["orders"].as_array().unwrap() {
                assert!(
                    seen.insert(o["id"].as_str().unwrap().to_owned()),
                    "duplicate"
                );
                assert!(!o["line_items"].as_array().unwrap().is_empty());
                assert!(o["line_items"][0].get("quantity").is_none());
            }
            token = v["data"]["next_page_token"].as_str().unwrap().to_owned();
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(seen.len(), 250);
    }
    let two = format!("{},{}", ids[0], ids[1]);
    let (_, v) = t
        .get("/order/202309/orders", &[("ids", two.as_str())], true)
        .await;
    assert_eq!(v["data"]["orders"].as_array().unwrap().len(), 2);
    // Get Order Detail takes at most 50 ids; unknown ones are left out.
    let fifty = ids[..49].join(",") + ",576000000000000000";
    let (status, v) = t
        .get("/order/202309/orders", &[("ids", fifty.as_str())], true)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["orders"].as_array().unwrap().len(), 49);
    let fifty_one = ids[..51].join(",");
    let (status, v) = t
        .get("/order/202309/orders", &[("ids", fifty_one.as_str())], true)
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["code"], 36_004_004);

    // Inventory update on a product's two SKUs, quantity 0 accepted.
    let l = sb.listings(Marketplace::TikTok);
    let (a, b) = (&l[0], &l[1]);
    assert_eq!(a.product_id, b.product_id);
    let path = format!("/product/202309/products/{}/inventory/update", a.product_id);
    let body = json!({"skus": [
        {"id": a.sku_id, "inventory": [{"warehouse_id": a.warehouse_id, "quantity": 0}]},
        {"id": b.sku_id, "inventory": [{"quantity": 7}]},
        {"id": "123", "inventory": [{"quantity": 1}]},
    ]});
    let (status, v) = t.post(&path, &[], &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        sb.listing(Marketplace::TikTok, &a.seller_id, &a.sku)
            .unwrap()
            .quantity,
        0
    );
    assert_eq!(
        sb.listing(Marketplace::TikTok, &b.seller_id, &b.sku)
            .unwrap()
            .quantity,
        7
    );
    let (_, v) = t
        .post(
            "/product/202309/inventory/search",
            &[],
            &json!({"product_ids": [a.product_id]}),
        )
        .await;
    let skus = v["data"]["inventory"][0]["skus"].as_array().unwrap();
    assert_eq!(skus.len(), 2);
    assert_eq!(skus[1]["total_available_quantity"], 7);
    assert_eq!(
        skus[0]["warehouse_inventory"][0]["warehouse_id"],
        a.warehouse_id
    );
    // shop_cipher is required on shop calls.
    let url = t.url("/order/202309/orders", &[("ids", "1")], None, false);
    let v: Value = t
        .http
        .get(url)
        .header("x-tts-access-token", &t.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], 36004004);
    sb.shutdown().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_the_throttle_envelope() {
    let sb = start(SandboxConfig::default()).await;
    let t = Tts::new(&sb).await;
    let mut throttled = None;
    for _ in 0..15 {
        let (status, v) = t.get("/authorization/202309/shops", &[], false).await;
        if status == 429 {
            throttled = Some(v);
            break;
        }
    }
    let v = throttled.expect("no 429 after 15 rapid calls");
    assert_eq!(v["code"], 36009004);
    assert_eq!(v["message"], "Too many requests, please retry later.");
    sb.shutdown().await;
}
