use std::time::Duration;

use serde_json::{Value, json};
use stockade_sandbox::{Endpoint, Marketplace, Sandbox, SandboxConfig};

use crate::{client, start};

pub async fn lwa(http: &reqwest::Client, ep: &Endpoint, rt: &str, as_json: bool) -> (u16, Value) {
    let url = format!("{}/auth/o2/token", ep.base_url);
    let secret = ep.app.client_secret.expose_secret().as_str();
    let req = if as_json {
        http.post(url).json(&json!({"grant_type": "refresh_token", "refresh_token": rt, "client_id": ep.app.client_id, "client_secret": secret}))
    } else {
        http.post(url).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", ep.app.client_id.as_str()),
            ("client_secret", secret),
        ])
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn token(sb: &Sandbox, http: &reqwest::Client) -> String {
    let ep = &sb.amazon;
    let (s, v) = lwa(http, ep, ep.sellers[0].refresh_token.expose_secret(), false).await;
    assert_eq!(s, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn lwa_tokens_and_auth_errors() {
    let sb = start(SandboxConfig::default()).await;
    let http = client(&sb);
    let ep = &sb.amazon;
    let rt = ep.sellers[0].refresh_token.expose_secret();
    let (s, v) = lwa(&http, ep, rt, true).await;
    assert_eq!(s, 200);
    assert!(v["access_token"].as_str().unwrap().starts_with("Atza|"));
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["token_type"], "bearer");
    let (s, v) = lwa(&http, ep, "Atzr|wrong", false).await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_grant");

    let base = format!(
        "{}/orders/2026-01-01/orders?createdAfter=2020-01-01T00:00:00Z",
        ep.base_url
    );
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "Unauthorized");
    assert_eq!(
        v["errors"][0]["details"],
        "Access token is missing in the request header."
    );
    let t = token(&sb, &http).await;
    let r = http
        .get(&base)
        .header("x-amz-access-token", format!("{t}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    sb.expire_tokens_now();
    let r = http
        .get(&base)
        .header("x-amz-access-token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["errors"][0]["details"],
        "The access token you provided has expired."
    );

    // Revocation: refresh then answers invalid_grant.
    sb.revoke(Marketplace::Amazon, &ep.sellers[0].seller_id)
        .unwrap();
    let (s, v) = lwa(&http, ep, rt, false).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let new_rt = sb
        .reauthorize(Marketplace::Amazon, &ep.sellers[0].seller_id)
        .unwrap();
    let (s, _) = lwa(&http, ep, new_rt.expose_secret(), false).await;
    assert_eq!(s, 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn search_orders_validation_and_pagination() {
    let sb = start(SandboxConfig {
        initial_quantity: 1000,
        rate_limits: false,
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = token(&sb, &http).await;
    sb.generate_orders(Marketplace::Amazon, 230);
    let ep = &sb.amazon;
    for bad in [
        "",
        "?createdAfter=2020-01-01T00:00:00Z&lastUpdatedAfter=2020-01-01T00:00:00Z",
        "?createdAfter=yesterday",
        "?createdAfter=2020-01-01T00:00:00Z&maxResultsPerPage=101",
        "?lastUpdatedAfter=2020-01-01T00:00:00Z&createdBefore=2030-01-01T00:00:00Z",
    ] {
        let r = http
            .get(format!("{}/orders/2026-01-01/orders{bad}", ep.base_url))
            .header("x-amz-access-token", &t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["code"], "InvalidInput");
    }
    let mut seen = std::collections::HashSet::new();
    let mut url = format!(
        "{}/orders/2026-01-01/orders?lastUpdatedAfter=2020-01-01T00:00:00Z&maxResultsPerPage=100&includedData=BUYER,RECIPIENT",
        ep.base_url
    );
    loop {
        let v: Value = http
            .get(&url)
            .header("x-amz-access-token", &t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for o in v["orders"].as_array().unwrap() {
            assert!(seen.insert(o["orderId"].as_str().unwrap().to_owned()));
            assert!(o["recipient"]["deliveryAddress"]["postalCode"].is_string());
            assert!(
                o["buyer"]["buyerEmail"]
                    .as_str()
                    .unwrap()
                    .ends_with("@marketplace.amazon.com")
            );
            assert_eq!(o["fulfillment"]["fulfillmentStatus"], "UNSHIPPED");
        }
        match v["pagination"]["nextToken"].as_str() {
            Some(n) => {
                url = format!(
                    "{}/orders/2026-01-01/orders?paginationToken={n}&includedData=BUYER,RECIPIENT",
                    ep.base_url
                )
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 230);
    let id = seen.iter().next().unwrap();
    let v: Value = http
        .get(format!("{}/orders/2026-01-01/orders/{id}", ep.base_url))
        .header("x-amz-access-token", &t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["order"]["orderId"], id.as_str());
    assert!(v["order"].get("buyer").is_none());
    let r = http
        .get(format!(
            "{}/orders/2026-01-01/orders/111-0000000-0000000",
            ep.base_url
        ))
        .header("x-amz-access-token", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    sb.shutdown().await;
}

#[tokio::test]
async fn listings_patch_get_and_rate_limit() {
    let sb = start(SandboxConfig::default()).await;
    let http = client(&sb);
    let t = token(&sb, &http).await;
    let ep = &sb.amazon;
    let seller = &ep.sellers[0].seller_id;
    let url = format!(
        "{}/listings/2021-08-01/items/{seller}/SKU-0001?marketplaceIds=ATVPDKIKX0DER",
        ep.base_url
    );
    let patch = json!({"productType": "PRODUCT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability", "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 42}]}]});
    let r = http
        .patch(&url)
        .header("x-amz-access-token", &t)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ACCEPTED");
    assert_eq!(
        sb.listing(Marketplace::Amazon, seller, "SKU-0001")
            .unwrap()
            .quantity,
        42
    );
    let v: Value = http
        .get(format!("{url}&includedData=attributes,summaries"))
        .header("x-amz-access-token", &t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["attributes"]["fulfillment_availability"][0]["quantity"],
        42
    );
    assert_eq!(v["summaries"][0]["productType"], "PRODUCT");
    // Invalid value → INVALID with issues; missing productType → 400.
    let bad = json!({"productType": "PRODUCT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability", "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": -1}]}]});
    let v: Value = http
        .patch(&url)
        .header("x-amz-access-token", &t)
        .json(&bad)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "INVALID");
    let r = http
        .patch(&url)
        .header("x-amz-access-token", &t)
        .json(&json!({"patches": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Another seller's path is refused.
    let other = url.replace(seller.as_str(), "A000000000000");
    let r = http
        .patch(&other)
        .header("x-amz-access-token", &t)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // patchListingsItem: rate 5, burst 5 (the calls above used 4).
    let mut saw = None;
    for _ in 0..5 {
        let r = http
            .patch(&url)
            .header("x-amz-access-token", &t)
            .json(&patch)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            saw = Some(r);
            break;
        }
    }
    let r = saw.expect("no 429");
    assert_eq!(r.headers()["x-amzn-ErrorType"], "QuotaExceeded");
    assert!(r.headers().get("retry-after").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"errors":[{"code":"QuotaExceeded","message":"You exceeded your quota for the requested resource.","details":""}]})
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let r = http
        .patch(&url)
        .header("x-amz-access-token", &t)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn json_listings_feed_flow() {
    let sb = start(SandboxConfig {
        feed_step: Duration::from_millis(50),
        ..SandboxConfig::default()
    })
    .await;
    let http = client(&sb);
    let t = token(&sb, &http).await;
    let ep = &sb.amazon;
    let seller = &ep.sellers[0].seller_id;
    let ct = "application/json; charset=UTF-8";
    let v: Value = http
        .post(format!("{}/feeds/2021-06-30/documents", ep.base_url))
        .header("x-amz-access-token", &t)
        .json(&json!({"contentType": ct}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let doc_id = v["feedDocumentId"].as_str().unwrap().to_owned();
    let upload = v["url"].as_str().unwrap().to_owned();
    let doc = json!({"header": {"sellerId": seller, "version": "2.0"}, "messages": [
        {"messageId": 1, "sku": "SKU-0002", "operationType": "PATCH", "productType": "PRODUCT", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability", "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 9}]}]},
        {"messageId": 2, "sku": "NOPE", "operationType": "PATCH", "productType": "PRODUCT", "patches": []},
    ]});
    // A wrong signature on the presigned URL is refused.
    let r = http
        .put(format!("{upload}0"))
        .header("content-type", ct)
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .put(&upload)
        .header("content-type", ct)
        .body(doc.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.post(format!("{}/feeds/2021-06-30/feeds", ep.base_url)).header("x-amz-access-token", &t).json(&json!({"feedType": "JSON_LISTINGS_FEED", "marketplaceIds": ["ATVPDKIKX0DER"], "inputFeedDocumentId": doc_id})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let feed_id = r.json::<Value>().await.unwrap()["feedId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    let result_doc = loop {
        let v: Value = http
            .get(format!("{}/feeds/2021-06-30/feeds/{feed_id}", ep.base_url))
            .header("x-amz-access-token", &t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = v["processingStatus"].as_str().unwrap().to_owned();
        if !statuses.contains(&s) {
            statuses.push(s.clone());
        }
        if s == "DONE" {
            break v["resultFeedDocumentId"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert_eq!(statuses.first().map(String::as_str), Some("IN_QUEUE"));
    assert_eq!(
        sb.listing(Marketplace::Amazon, seller, "SKU-0002")
            .unwrap()
            .quantity,
        9
    );
    let v: Value = http
        .get(format!(
            "{}/feeds/2021-06-30/documents/{result_doc}",
            ep.base_url
        ))
        .header("x-amz-access-token", &t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report: Value = http
        .get(v["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["summary"]["messagesProcessed"], 2);
    assert_eq!(report["summary"]["messagesAccepted"], 1);
    assert_eq!(report["issues"][0]["messageId"], 2);
    sb.shutdown().await;
}

#[tokio::test]
async fn quantity_history_records_patches_buyers_and_edits_with_their_time() {
    use stockade_sandbox::QtySource;
    let sb = start(SandboxConfig::default()).await;
    let http = client(&sb);
    let t = token(&sb, &http).await;
    let ep = &sb.amazon;
    let seller = ep.sellers[0].seller_id.clone();
    let before = stockade_core::time::now_ms();
    sb.set_quantity(Marketplace::Amazon, &seller, "SKU-0002", 7)
        .unwrap();
    let url = format!(
        "{}/listings/2021-08-01/items/{seller}/SKU-0002?marketplaceIds=ATVPDKIKX0DER",
        ep.base_url
    );
    let patch = json!({"productType": "PRODUCT", "patches": [{"op": "merge", "path": "/attributes/fulfillment_availability", "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]}]});
    let r = http
        .patch(&url)
        .header("x-amz-access-token", &t)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A validation preview changes nothing, so it records nothing.
    let r = http
        .patch(format!("{url}&mode=VALIDATION_PREVIEW"))
        .header("x-amz-access-token", &t)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    sb.generate_orders(Marketplace::Amazon, 5);
    let after = stockade_core::time::now_ms();
    let (history, dropped) = sb.quantity_history(Marketplace::Amazon);
    assert_eq!(dropped, 0);
    let sku2: Vec<_> = history
        .iter()
        .filter(|c| c.sku == "SKU-0002" && c.source != QtySource::Buyer)
        .map(|c| (c.quantity, c.source))
        .collect();
    assert_eq!(
        sku2,
        vec![
            (100, QtySource::Direct),
            (7, QtySource::Direct),
            (3, QtySource::PerListing)
        ]
    );
    let patched = history
        .iter()
        .find(|c| c.source == QtySource::PerListing)
        .unwrap();
    assert!(patched.at_ms >= before && patched.at_ms <= after);
    assert_eq!(patched.seller_id, seller);
    // Every unit a buyer took shows as a drop of the listing's quantity at the order's time.
    let orders = sb.orders(Marketplace::Amazon);
    let bought: u32 = orders.iter().flat_map(|o| &o.lines).map(|l| l.1).sum();
    let buyer: Vec<_> = history
        .iter()
        .filter(|c| c.source == QtySource::Buyer)
        .collect();
    assert!(!buyer.is_empty() && bought > 0);
    for c in &buyer {
        assert!(orders.iter().any(|o| o.created_ms == c.at_ms));
    }
    // The listing's current quantity is the last change recorded for it.
    for l in sb.listings(Marketplace::Amazon) {
        let last = history.iter().rev().find(|c| c.sku == l.sku).unwrap();
        assert_eq!(last.quantity, l.quantity, "{}", l.sku);
    }
    sb.shutdown().await;
}
