use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use stockade_sandbox::{Endpoint, Marketplace, Sandbox, SandboxConfig};

use crate::{client, start};

pub async fn oauth(http: &reqwest::Client, ep: &Endpoint, form: &[(&str, &str)]) -> (u16, Value) {
    let r = http
        .post(format!("{}/identity/v1/oauth2/token", ep.base_url))
        .basic_auth(
            &ep.app.client_id,
            Some(ep.app.client_secret.expose_secret()),
        )
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub async fn user_token(sb: &Sandbox, http: &reqwest::Client) -> String {
    let ep = &sb.ebay;
    let (s, v) = oauth(http, ep, &[("grant_type", "refresh_token"), ("refresh_token", ep.sellers[0].refresh_token.expose_secret()), ("scope", "https://api.ebay.com/oauth/api_scope/sell.inventory https://api.ebay.com/oauth/api_scope/sell.fulfillment")]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in"], 7200);
    v["access_token"].as_str().unwrap().to_owned()
}

pub async fn app_token(sb: &Sandbox, http: &reqwest::Client) -> String {
    let (s, v) = oauth(
        http,
        &sb.ebay,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "https://api.ebay.com/oauth/api_scope"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Application Access Token");
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn oauth_and_token_errors() {
    let sb = start(SandboxConfig::default()).await;
    let http = client(&sb);
    let ep = &sb.ebay;
    let r = http
        .post(format!("{}/identity/v1/oauth2/token", ep.base_url))
        .basic_auth(&ep.app.client_id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let (s, v) = oauth(
        &http,
        ep,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "v^1.1#nope"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(
        v["error_description"],
        "the provided authorization refresh token is invalid or was issued to another client"
    );
    let (s, v) = oauth(
        &http,
        ep,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", ep.sellers[0].refresh_token.expose_secret()),
            (
                "scope",
                "https://api.ebay.com/oauth/api_scope/sell.finances",
            ),
        ],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_scope")));
    let code = sb
        .auth_code(Marketplace::Ebay, &ep.sellers[0].seller_id)
        .unwrap();
    let (s, v) = oauth(
        &http,
        ep,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", "Stockade-RuName"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["refresh_token_expires_in"], 47304000);

    let t = user_token(&sb, &http).await;
    let url = format!("{}/sell/inventory/v1/inventory_item/SKU-0001", ep.base_url);
    let r = http.get(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["availability"]["shipToLocationAvailability"]["quantity"],
        100
    );
    let r = http
        .get(&url)
        .bearer_auth(format!("{t}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    sb.expire_tokens_now();
    let r = http.get(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"errors":[{"errorId":1001,"domain":"OAuth","category":"REQUEST","message":"Invalid access token","longMessage":"Invalid access token. Check the value of the Authorization HTTP request header."}]})
    );
    // An application token cannot read a seller's inventory.
    let app = app_token(&sb, &http).await;
    let r = http.get(&url).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    sb.shutdown().await;
}

#[tokio::test]
async fn orders_paginate_with_next_links() {
    let sb = start(SandboxConfig {
        initial_quantity: 1000,
        rate_limits: false,
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = user_token(&sb, &http).await;
    sb.generate_orders(Marketplace::Ebay, 450);
    let ep = &sb.ebay;
    let mut url = format!(
        "{}/sell/fulfillment/v1/order?filter=lastmodifieddate:%5B2020-01-01T00:00:00.000Z..%5D&limit=200",
        ep.base_url
    );
    let mut seen = std::collections::HashSet::new();
    loop {
        let r = http.get(&url).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["total"], 450);
        for o in v["orders"].as_array().unwrap() {
            assert!(seen.insert(o["orderId"].as_str().unwrap().to_owned()));
            assert!(o["lineItems"][0]["quantity"].as_u64().unwrap() >= 1);
            assert!(o["fulfillmentStartInstructions"][0]["shippingStep"]["shipTo"]["contactAddress"]["postalCode"].is_string());
        }
        match v["next"].as_str() {
            Some(n) => url = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 450);
    let r = http
        .get(format!(
            "{}/sell/fulfillment/v1/order?filter=bogus:1",
            ep.base_url
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .get(format!(
            "{}/sell/fulfillment/v1/order?limit=201",
            ep.base_url
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // orderIds: at most 50, every other parameter ignored, unknown ids left out.
    let mut fifty: Vec<&str> = seen.iter().take(49).map(String::as_str).collect();
    fifty.push("00-00000-00000");
    let v: Value = http
        .get(format!(
            "{}/sell/fulfillment/v1/order?orderIds={}&limit=1&offset=7&filter=bogus:1",
            ep.base_url,
            fifty.join(",")
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["orders"].as_array().unwrap().len(), 49, "{v}");
    assert!(v.get("next").is_none());
    let fifty_one: Vec<&str> = seen.iter().take(51).map(String::as_str).collect();
    let r = http
        .get(format!(
            "{}/sell/fulfillment/v1/order?orderIds={}",
            ep.base_url,
            fifty_one.join(",")
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["errorId"], 30_900);
    let id = seen.iter().next().unwrap();
    let v: Value = http
        .get(format!("{}/sell/fulfillment/v1/order/{id}", ep.base_url))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["orderId"], id.as_str());
    let r = http
        .get(format!(
            "{}/sell/fulfillment/v1/order/00-00000-00000",
            ep.base_url
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    sb.shutdown().await;
}

#[tokio::test]
async fn bulk_update_and_revision_cap() {
    let sb = start(SandboxConfig {
        ebay_revision_cap: 3,
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = user_token(&sb, &http).await;
    let ep = &sb.ebay;
    let seller = &ep.sellers[0].seller_id;
    let v: Value = http
        .get(format!(
            "{}/sell/inventory/v1/offer?sku=SKU-0001",
            ep.base_url
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer = v["offers"][0]["offerId"].as_str().unwrap().to_owned();
    let url = format!(
        "{}/sell/inventory/v1/bulk_update_price_quantity",
        ep.base_url
    );
    let body = |q: u32| json!({"requests": [{"sku": "SKU-0001", "shipToLocationAvailability": {"quantity": q}, "offers": [{"offerId": offer, "availableQuantity": q}]}]});
    let r = http
        .post(&url)
        .bearer_auth(&t)
        .json(&body(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["responses"][0]["statusCode"],
        200
    );
    assert_eq!(
        sb.listing(Marketplace::Ebay, seller, "SKU-0001")
            .unwrap()
            .quantity,
        5
    );
    let mixed = json!({"requests": [{"sku": "SKU-0001", "shipToLocationAvailability": {"quantity": 6}}, {"sku": "NOPE", "shipToLocationAvailability": {"quantity": 1}}]});
    let r = http
        .post(&url)
        .bearer_auth(&t)
        .json(&mixed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["responses"][1]["errors"][0]["errorId"], 25702);
    let r = http
        .post(&url)
        .bearer_auth(&t)
        .json(&body(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The 4th revision today is refused.
    let r = http
        .post(&url)
        .bearer_auth(&t)
        .json(&body(8))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["responses"][0]["statusCode"], 400);
    assert_eq!(v["responses"][0]["errors"][0]["errorId"], 25019);
    assert_eq!(
        sb.listing(Marketplace::Ebay, seller, "SKU-0001")
            .unwrap()
            .quantity,
        7
    );
    // At most 25 requests per call.
    let many: Vec<Value> = (0..26)
        .map(|_| json!({"sku": "SKU-0002", "shipToLocationAvailability": {"quantity": 1}}))
        .collect();
    let r = http
        .post(&url)
        .bearer_auth(&t)
        .json(&json!({"requests": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    sb.shutdown().await;
}

#[tokio::test]
async fn burst_limit_answers_429_with_retry_after() {
    let sb = start(SandboxConfig {
        ebay_burst: (1.0, 3),
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = user_token(&sb, &http).await;
    let url = format!(
        "{}/sell/inventory/v1/inventory_item/SKU-0001",
        sb.ebay.base_url
    );
    let mut got = None;
    for _ in 0..5 {
        let r = http.get(&url).bearer_auth(&t).send().await.unwrap();
        if r.status().as_u16() == 429 {
            got = Some(r);
            break;
        }
    }
    let r = got.expect("no 429");
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["errorId"], 2001);
    sb.shutdown().await;
}

#[test]
fn real_ebay_sdk_vector_verifies_with_aws_lc() {
    let header = "eyJhbGciOiJlY2RzYSIsImtpZCI6Ijk5MzYyNjFhLTdkN2ItNDYyMS1hMGYxLTk2Y2NiNDI4YWY0OSIsInNpZ25hdHVyZSI6Ik1FWUNJUUNmeGZJV3V4bVdjSUJRSjljNS9YN2lHREpxczJSQ0dzQkVhQWppbnlycmZBSWhBSVY2d0djVGlCdVY1S0pVaWYyaG9reXJMK1E5c3NIa2FkK214Mm5FRTI1dyIsImRpZ2VzdCI6IlNIQTEifQ==";
    let key = B64.decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZhhxXKtR+TOvtDbgTPCkSof02qgBB7IsYOyf76ilExJ/upAa/vKIKheOoCyOpcLmi4t0b4uepb7LLjmMr90FUg==").unwrap();
    let message = r#"{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION","schemaVersion":"1.0","deprecated":false},"notification":{"notificationId":"49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d","eventDate":"2021-03-19T20:43:59.462Z","publishDate":"2021-03-19T20:43:59.679Z","publishAttemptCount":1,"data":{"username":"test_user","userId":"ma8vp1jySJC","eiasToken":"nY+sHZ2PrBmdj6wVnY+sEZ2PrA2dj6wJnY+gAZGEpwmdj6x9nY+seQ=="}}}"#;
    let h: Value = serde_json::from_slice(&B64.decode(header).unwrap()).unwrap();
    let sig = B64.decode(h["signature"].as_str().unwrap()).unwrap();
    // The key is an SPKI; aws-lc wants the uncompressed point after the fixed prefix.
    assert_eq!(&key[..26], &stockade_sandbox::sign::P256_SPKI_PREFIX);
    let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA1_ASN1,
        &key[26..],
    );
    assert!(
        pk.verify(message.as_bytes(), &sig).is_ok(),
        "the eBay SDK vector does not verify"
    );
}
