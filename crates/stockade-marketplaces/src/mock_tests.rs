//! Connector logic against a scripted transport: token refresh on expiry, pagination,
//! batching, the feed flow, the daily revision cap, key caching.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::{Value, json};
use stockade_core::SecretString;
use stockade_core::order::Marketplace;

use crate::transport::{HttpRequest, HttpResponse, SendFuture, Transport};
use crate::*;

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    url: String,
    operation: &'static str,
    secret: Option<String>,
    body: Vec<u8>,
}

type Handler = dyn Fn(&Seen, usize) -> (u16, String) + Send + Sync;

struct Mock {
    handler: Box<Handler>,
    seen: Mutex<Vec<Seen>>,
    daily: Mutex<HashMap<String, u32>>,
}

impl Mock {
    fn new(handler: impl Fn(&Seen, usize) -> (u16, String) + Send + Sync + 'static) -> Arc<Mock> {
        Arc::new(Mock {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
            daily: Mutex::new(HashMap::new()),
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, operation: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.operation == operation)
            .count()
    }
}

impl Transport for Mock {
    fn send(&self, _m: Marketplace, request: HttpRequest) -> SendFuture<'_> {
        let seen = Seen {
            method: request.method.clone(),
            url: request.url.clone(),
            operation: request.operation,
            secret: request
                .secret_headers
                .first()
                .map(|(_, v)| v.expose_secret().clone()),
            body: request.body.map(|(b, _)| b).unwrap_or_default(),
        };
        let n = {
            let mut log = self.seen.lock().unwrap();
            log.push(seen.clone());
            log.iter().filter(|s| s.operation == seen.operation).count()
        };
        let (status, body) = (self.handler)(&seen, n);
        Box::pin(async move {
            Ok(HttpResponse {
                status,
                headers: HeaderMap::new(),
                body: body.into_bytes(),
            })
        })
    }

    fn take_daily(&self, quota: &'static str, key: &str, limit: u32) -> bool {
        let mut d = self.daily.lock().unwrap();
        let c = d.entry(format!("{quota}/{key}")).or_insert(0);
        *c += 1;
        *c <= limit
    }

    fn seed_daily(&self, quota: &'static str, key: &str, used: u32) {
        let mut d = self.daily.lock().unwrap();
        let c = d.entry(format!("{quota}/{key}")).or_insert(0);
        *c = (*c).max(used);
    }
}

fn tt_ok(data: Value) -> (u16, String) {
    (
        200,
        json!({"code":0,"message":"Success","request_id":"r","data":data}).to_string(),
    )
}

fn tiktok(mock: Arc<Mock>) -> TikTokConnector {
    let mut cfg = TikTokConfig::with_base_urls("https://tt.test", "https://auth.tt.test");
    cfg.shop_cipher = Some("ROW_abc".into());
    TikTokConnector::with_transport(
        cfg,
        TikTokCredentials {
            app_key: "key".into(),
            app_secret: SecretString::from("secret".to_owned()),
            refresh_token: SecretString::from("r1".to_owned()),
        },
        mock,
    )
}

fn tt_order(id: u32, update: i64) -> Value {
    json!({"id": id.to_string(), "status":"AWAITING_SHIPMENT","create_time":1_700_000_000,"update_time":update,
           "line_items":[{"id":format!("l{id}"),"sku_id":"s1","seller_sku":"SKU-1"}]})
}

#[tokio::test]
async fn tiktok_refreshes_on_expiry_pages_through_and_signs() {
    let mock = Mock::new(|s, n| match s.operation {
        "tiktok.token" => tt_ok(
            json!({"access_token": format!("at{n}"), "access_token_expire_in": 4_000_000_000i64, "refresh_token": "r2"}),
        ),
        "tiktok.orders.search" => {
            // The first access token is reported expired once.
            if s.secret.as_deref() == Some("at1") {
                return (
                    200,
                    json!({"code":105_002,"message":"Expired credentials","data":null}).to_string(),
                );
            }
            let page = util::query_param(&s.url, "page_token");
            match page.as_deref() {
                None => tt_ok(
                    json!({"orders":[tt_order(1, 1_700_000_100), tt_order(2, 1_700_000_200)],"next_page_token":"p2","total_count":3}),
                ),
                Some("p2") => tt_ok(
                    json!({"orders":[tt_order(3, 1_700_000_300)],"next_page_token":"","total_count":3}),
                ),
                _ => (400, "{}".into()),
            }
        }
        _ => (404, "{}".into()),
    });
    let c = tiktok(mock.clone());
    let (orders, high) = c.list_all_orders(1_699_000_000_000).await.unwrap();
    assert_eq!(
        orders
            .iter()
            .map(|o| o.external_id.as_str())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    assert_eq!(high, 1_700_000_300_000);
    assert_eq!(
        mock.count("tiktok.token"),
        2,
        "refreshed once more after 105002"
    );
    assert_eq!(
        c.take_rotated_refresh_token()
            .map(|t| t.expose_secret().clone()),
        Some("r2".into())
    );

    // Every search request carries a sign that matches the reference algorithm.
    for s in mock
        .seen()
        .iter()
        .filter(|s| s.operation == "tiktok.orders.search")
    {
        let (path, query) = s
            .url
            .trim_start_matches("https://tt.test")
            .split_once('?')
            .unwrap();
        let pairs: Vec<(String, String)> = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (util::percent_decode(k), util::percent_decode(v))
            })
            .collect();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sign = refs.iter().find(|(k, _)| *k == "sign").unwrap().1;
        assert_eq!(
            sign,
            sign::tiktok_sign("secret", path, &refs, Some(&s.body))
        );
        assert!(
            refs.iter()
                .any(|(k, v)| *k == "shop_cipher" && *v == "ROW_abc")
        );
        let body: Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(body["update_time_ge"], 1_699_000_000);
    }
}

#[tokio::test]
async fn tiktok_throttle_and_html_are_typed() {
    let mock = Mock::new(|s, _| {
        match s.operation {
        "tiktok.token" => tt_ok(json!({"access_token":"a","access_token_expire_in":4_000_000_000i64})),
        "tiktok.orders.get" => (429, json!({"code":36_009_004,"message":"Too many requests, please retry later.","request_id":"x","data":null}).to_string()),
        _ => (200, "<html>oops</html>".into()),
    }
    });
    let c = tiktok(mock);
    let e = c.get_order("1").await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref(), e.status),
        (ErrorKind::Throttled, Some("36009004"), Some(429))
    );
    let e = c.list_orders(&OrderCursor::default()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Malformed);
}

#[tokio::test]
async fn tiktok_inventory_groups_by_product() {
    let mock = Mock::new(|s, _| match s.operation {
        "tiktok.token" => {
            tt_ok(json!({"access_token":"a","access_token_expire_in":4_000_000_000i64}))
        }
        "tiktok.inventory.update" => {
            if s.url.contains("/products/p2/") {
                tt_ok(
                    json!({"errors":[{"code":"12052048","message":"sku frozen","detail":{"sku_id":"v3"}}]}),
                )
            } else {
                tt_ok(json!({}))
            }
        }
        _ => (404, "{}".into()),
    });
    let c = tiktok(mock.clone());
    let upd = |sku: &str, p: &str, v: &str, q| QuantityUpdate {
        sku: sku.into(),
        quantity: q,
        listing: ListingRef {
            sku: sku.into(),
            product_id: Some(p.into()),
            variant_id: Some(v.into()),
            warehouse_ids: vec!["w1".into(), "w2".into()],
            ..ListingRef::default()
        },
    };
    let acks = c
        .set_quantities(&[
            upd("A", "p1", "v1", 5),
            upd("B", "p2", "v3", 0),
            upd("C", "p1", "v2", 7),
            QuantityUpdate {
                sku: "D".into(),
                quantity: 1,
                listing: ListingRef::sku("D"),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        acks.iter().map(|a| a.accepted).collect::<Vec<_>>(),
        [true, false, true, false]
    );
    assert_eq!(
        acks[1].error.as_ref().unwrap().code.as_deref(),
        Some("12052048")
    );
    assert_eq!(mock.count("tiktok.inventory.update"), 2);
    let first = mock
        .seen()
        .into_iter()
        .find(|s| s.url.contains("/products/p1/"))
        .unwrap();
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        body["skus"][0]["inventory"],
        json!([{"warehouse_id":"w1","quantity":5},{"warehouse_id":"w2","quantity":0}])
    );
    assert_eq!(body["skus"].as_array().unwrap().len(), 2);
}

fn amazon(mock: Arc<Mock>, threshold: usize) -> AmazonConnector {
    let mut cfg = AmazonConfig::with_base_urls(
        "https://sp.test",
        "https://lwa.test/auth/o2/token",
        "ASELLER",
    );
    cfg.feed_threshold = threshold;
    cfg.feed_poll_interval = Duration::from_millis(1);
    AmazonConnector::with_transport(
        cfg,
        AmazonCredentials {
            client_id: "cid".into(),
            client_secret: SecretString::from("cs".to_owned()),
            refresh_token: SecretString::from("Atzr|r".to_owned()),
            event_key: Some(SecretString::from("k".to_owned())),
        },
        mock,
    )
}

#[tokio::test]
async fn amazon_invalid_grant_is_revoked() {
    let mock = Mock::new(|_, _| {
        (400, json!({"error":"invalid_grant","error_description":"The request has an invalid grant parameter : refresh_token"}).to_string())
    });
    let e = amazon(mock.clone(), 20).refresh_token().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref(), e.status),
        (ErrorKind::Revoked, Some("invalid_grant"), Some(400))
    );
    let body = String::from_utf8(mock.seen()[0].body.clone()).unwrap();
    assert!(body.contains("grant_type=refresh_token") && body.contains("refresh_token=Atzr%7Cr"));
    assert!(!e.to_string().contains("Atzr"));
}

#[tokio::test]
async fn amazon_feed_flow_for_large_batches() {
    let mock = Mock::new(|s, n| {
        match s.operation {
        "amazon.lwa" => (200, json!({"access_token":"Atza|a","expires_in":3600,"token_type":"bearer"}).to_string()),
        "amazon.createFeedDocument" => (201, json!({"feedDocumentId":"doc1","url":"https://s3.test/upload/doc1"}).to_string()),
        "amazon.uploadFeedDocument" => (200, String::new()),
        "amazon.createFeed" => (202, json!({"feedId":"f1"}).to_string()),
        "amazon.getFeed" => {
            let status = if n < 3 { "IN_PROGRESS" } else { "DONE" };
            (200, json!({"feedId":"f1","processingStatus":status,"resultFeedDocumentId":"res1"}).to_string())
        }
        "amazon.getFeedDocument" => (200, json!({"feedDocumentId":"res1","url":"https://s3.test/download/res1"}).to_string()),
        "amazon.downloadFeedDocument" => (200, json!({"header":{"sellerId":"ASELLER","version":"2.0","feedId":"f1"},
            "issues":[{"messageId":2,"code":"90220","severity":"ERROR","message":"bad sku"},{"messageId":1,"code":"1","severity":"WARNING","message":"w"}],
            "summary":{"errors":1,"warnings":1,"messagesProcessed":3,"messagesAccepted":2,"messagesInvalid":1}}).to_string()),
        _ => (500, "{}".into()),
    }
    });
    let c = amazon(mock.clone(), 2);
    let updates: Vec<QuantityUpdate> = ["A", "B", "C"]
        .iter()
        .map(|s| QuantityUpdate {
            sku: (*s).into(),
            quantity: 4,
            listing: ListingRef::sku(*s),
        })
        .collect();
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_eq!(
        acks.iter().map(|a| a.accepted).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(mock.count("amazon.getFeed"), 3);
    let upload = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "amazon.uploadFeedDocument")
        .unwrap();
    assert_eq!(upload.method, Method::PUT);
    assert!(
        upload.secret.is_none(),
        "no access token on the presigned URL"
    );
    let doc: Value = serde_json::from_slice(&upload.body).unwrap();
    assert_eq!(doc["header"]["sellerId"], "ASELLER");
    assert_eq!(doc["messages"][1]["sku"], "B");
    assert_eq!(doc["messages"][1]["patches"][0]["value"][0]["quantity"], 4);
    let create = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "amazon.createFeed")
        .unwrap();
    let body: Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["feedType"], "JSON_LISTINGS_FEED");
    assert_eq!(body["inputFeedDocumentId"], "doc1");
}

#[tokio::test]
async fn amazon_small_batches_patch_and_retry_once_on_403() {
    let mock = Mock::new(|s, _| {
        match s.operation {
        "amazon.lwa" => (200, json!({"access_token": format!("Atza|{}", s.body.len()), "expires_in":3600}).to_string()),
        "amazon.patchListingsItem" if s.url.contains("/B%20") => (400, json!({"errors":[{"code":"InvalidInput","message":"bad","details":""}]}).to_string()),
        "amazon.patchListingsItem" => (200, json!({"sku":"A","status":"ACCEPTED","submissionId":"x","issues":[]}).to_string()),
        "amazon.searchOrders" => (429, json!({"errors":[{"code":"QuotaExceeded","message":"You exceeded your quota for the requested resource.","details":""}]}).to_string()),
        _ => (500, "{}".into()),
    }
    });
    let c = amazon(mock.clone(), 20);
    let acks = c
        .set_quantities(&[
            QuantityUpdate {
                sku: "A/1".into(),
                quantity: 1,
                listing: ListingRef::sku("A/1"),
            },
            QuantityUpdate {
                sku: "B 2".into(),
                quantity: 2,
                listing: ListingRef::sku("B 2"),
            },
        ])
        .await
        .unwrap();
    assert!(acks[0].accepted);
    assert_eq!(
        acks[1].error.as_ref().unwrap().code.as_deref(),
        Some("InvalidInput")
    );
    let first = &mock.seen()[1];
    assert!(first.url.starts_with(
        "https://sp.test/listings/2021-08-01/items/ASELLER/A%2F1?marketplaceIds=ATVPDKIKX0DER"
    ));
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["productType"], "PRODUCT");
    assert_eq!(body["patches"][0]["op"], "merge");
    let e = c
        .list_orders(&OrderCursor {
            since_ms: 0,
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::Throttled, Some("QuotaExceeded"))
    );
    let search = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "amazon.searchOrders")
        .unwrap();
    assert!(
        search
            .url
            .contains("lastUpdatedAfter=1970-01-01T00%3A00%3A00.000Z")
    );
}

fn ebay(mock: Arc<Mock>) -> EbayConnector {
    let mut cfg = EbayConfig::with_base_url("https://ebay.test");
    cfg.endpoint_url = Some("http://www.testendpoint.com/webhook".into());
    cfg.daily_revision_limit = 2;
    EbayConnector::with_transport(
        cfg,
        EbayCredentials {
            client_id: "cid".into(),
            client_secret: SecretString::from("cs".to_owned()),
            refresh_token: SecretString::from("v^1.1#r".to_owned()),
            verification_token: Some(SecretString::from(
                "71745723-d031-455c-bfa5-f90d11b4f20a".to_owned(),
            )),
        },
        mock,
    )
}

fn ebay_order(id: u32) -> Value {
    json!({"orderId": id.to_string(), "creationDate":"2026-01-01T00:00:00.000Z","lastModifiedDate":"2026-01-01T00:00:01.000Z",
           "orderFulfillmentStatus":"NOT_STARTED","orderPaymentStatus":"PAID","lineItems":[{"lineItemId":"1","sku":"S","quantity":1}]})
}

#[tokio::test]
async fn ebay_pages_by_offset_and_refreshes_on_401() {
    let mock = Mock::new(|s, n| {
        match s.operation {
        "ebay.token" => (200, json!({"access_token": format!("t{n}"), "expires_in":7200,"token_type":"User Access Token"}).to_string()),
        "ebay.orders.search" => {
            if s.secret.as_deref() == Some("Bearer t1") {
                return (401, json!({"errors":[{"errorId":1001,"domain":"OAuth","category":"REQUEST","message":"Invalid access token"}]}).to_string());
            }
            let offset: u32 = util::query_param(&s.url, "offset").unwrap().parse().unwrap();
            let orders: Vec<Value> = (offset..(offset + 2).min(5)).map(ebay_order).collect();
            let next = if offset + 2 < 5 { json!(format!("https://ebay.test/sell/fulfillment/v1/order?limit=2&offset={}", offset + 2)) } else { Value::Null };
            (200, json!({"href":"h","limit":2,"offset":offset,"next":next,"total":5,"orders":orders}).to_string())
        }
        _ => (500, "{}".into()),
    }
    });
    let c = ebay(mock.clone());
    let (orders, _) = c.list_all_orders(0).await.unwrap();
    assert_eq!(
        orders
            .iter()
            .map(|o| o.external_id.clone())
            .collect::<Vec<_>>(),
        ["0", "1", "2", "3", "4"]
    );
    assert_eq!(mock.count("ebay.token"), 2);
    let token_req = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "ebay.token")
        .unwrap();
    use base64::Engine as _;
    assert_eq!(
        token_req.secret.unwrap(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("cid:cs")
        )
    );
    let search = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "ebay.orders.search")
        .unwrap();
    assert!(
        search
            .url
            .contains("filter=lastmodifieddate%3A%5B1970-01-01T00%3A00%3A00.000Z..%5D")
    );
}

#[tokio::test]
async fn ebay_bulk_chunks_of_25_and_daily_cap() {
    let mock = Mock::new(|s, _| match s.operation {
        "ebay.token" => (
            200,
            json!({"access_token":"t","expires_in":7200}).to_string(),
        ),
        "ebay.inventory.offers" => (200, json!({"offers":[{"offerId":"o-lookup"}]}).to_string()),
        "ebay.inventory.bulk_update" => {
            let body: Value = serde_json::from_slice(&s.body).unwrap();
            let responses: Vec<Value> = body["requests"].as_array().unwrap().iter().map(|r| {
                if r["sku"] == "S7" {
                    json!({"sku":"S7","offerId":"o","statusCode":400,"errors":[{"errorId":25019,"message":"The listing revision limit for today has been reached."}]})
                } else {
                    json!({"sku": r["sku"], "offerId":"o","statusCode":200})
                }
            }).collect();
            (207, json!({"responses":responses}).to_string())
        }
        _ => (500, "{}".into()),
    });
    let c = ebay(mock.clone());
    let mut updates: Vec<QuantityUpdate> = (0..30)
        .map(|i| QuantityUpdate {
            sku: format!("S{i}"),
            quantity: 3,
            listing: ListingRef {
                offer_ids: vec![format!("o{i}")],
                ..ListingRef::sku(format!("S{i}"))
            },
        })
        .collect();
    updates[0].listing.offer_ids.clear();
    let acks = c.set_quantities(&updates).await.unwrap();
    assert_eq!(acks.iter().filter(|a| a.accepted).count(), 29);
    assert_eq!(acks[7].error.as_ref().unwrap().kind, ErrorKind::Throttled);
    assert_eq!(mock.count("ebay.inventory.bulk_update"), 2);
    assert_eq!(mock.count("ebay.inventory.offers"), 1);
    let first = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "ebay.inventory.bulk_update")
        .unwrap();
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["requests"].as_array().unwrap().len(), 25);
    assert_eq!(
        body["requests"][0]["offers"][0],
        json!({"offerId":"o-lookup","availableQuantity":3})
    );
    // Two more rounds for S1: the second is the last allowed today, the third is refused
    // without being sent.
    let one = [updates[1].clone()];
    assert!(c.set_quantities(&one).await.unwrap()[0].accepted);
    let refused = c.set_quantities(&one).await.unwrap();
    assert_eq!(
        refused[0].error.as_ref().unwrap().code.as_deref(),
        Some("daily_revision_limit")
    );
    assert_eq!(mock.count("ebay.inventory.bulk_update"), 3);
    // Revisions another process spent today count here once seeded: S2 used one here,
    // and two counted elsewhere (that one included) leave none; a lower count keeps
    // the higher.
    c.seed_revisions(&[("S2".into(), 2), ("S3".into(), 0)]);
    let two = [updates[2].clone(), updates[3].clone()];
    let acks = c.set_quantities(&two).await.unwrap();
    assert_eq!(
        acks[0].error.as_ref().unwrap().code.as_deref(),
        Some("daily_revision_limit"),
        "seeded to the limit: refused without a call"
    );
    assert!(acks[1].accepted);
    assert_eq!(mock.count("ebay.inventory.bulk_update"), 4);
}

#[tokio::test]
async fn ebay_challenge_and_signed_post_with_cached_key() {
    let mock = Mock::new(|s, _| {
        match s.operation {
        "ebay.token.app" => (200, json!({"access_token":"app","expires_in":7200}).to_string()),
        "ebay.notification.public_key" => (200, json!({"key":"-----BEGIN PUBLIC KEY-----MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZhhxXKtR+TOvtDbgTPCkSof02qgBB7IsYOyf76ilExJ/upAa/vKIKheOoCyOpcLmi4t0b4uepb7LLjmMr90FUg==-----END PUBLIC KEY-----","algorithm":"ECDSA","digest":"SHA1"}).to_string()),
        _ => (500, "{}".into()),
    }
    });
    let c = ebay(mock.clone());
    let challenge = InboundRequest {
        method: Method::GET,
        path_and_query: "/hooks/ebay?challenge_code=a8628072-3d33-45ee-9004-bee86830a22d".into(),
        headers: HeaderMap::new(),
        body: Vec::new(),
    };
    assert_eq!(
        c.verify_event(&challenge).await.unwrap(),
        InboundEvent::Challenge {
            response_body: r#"{"challengeResponse":"ca527df75caa230092d7e90484071e8f05d63068f1317973d6a3a42593734bbb"}"#.into()
        }
    );
    let body = br#"{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION","schemaVersion":"1.0","deprecated":false},"notification":{"notificationId":"49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d","eventDate":"2021-03-19T20:43:59.462Z","publishDate":"2021-03-19T20:43:59.679Z","publishAttemptCount":1,"data":{"username":"test_user","userId":"ma8vp1jySJC","eiasToken":"nY+sHZ2PrBmdj6wVnY+sEZ2PrA2dj6wJnY+gAZGEpwmdj6x9nY+seQ=="}}}"#;
    let mut headers = HeaderMap::new();
    headers.insert("x-ebay-signature", "eyJhbGciOiJlY2RzYSIsImtpZCI6Ijk5MzYyNjFhLTdkN2ItNDYyMS1hMGYxLTk2Y2NiNDI4YWY0OSIsInNpZ25hdHVyZSI6Ik1FWUNJUUNmeGZJV3V4bVdjSUJRSjljNS9YN2lHREpxczJSQ0dzQkVhQWppbnlycmZBSWhBSVY2d0djVGlCdVY1S0pVaWYyaG9reXJMK1E5c3NIa2FkK214Mm5FRTI1dyIsImRpZ2VzdCI6IlNIQTEifQ==".parse().unwrap());
    let post = InboundRequest::post("/hooks/ebay", headers, body.to_vec());
    for _ in 0..3 {
        assert!(matches!(
            c.verify_event(&post).await.unwrap(),
            InboundEvent::Revoked { .. }
        ));
    }
    assert_eq!(
        mock.count("ebay.notification.public_key"),
        1,
        "the key is cached"
    );
    let key_req = mock
        .seen()
        .into_iter()
        .find(|s| s.operation == "ebay.notification.public_key")
        .unwrap();
    assert!(
        key_req
            .url
            .ends_with("/commerce/notification/v1/public_key/9936261a-7d7b-4621-a0f1-96ccb428af49")
    );
    assert_eq!(key_req.secret.as_deref(), Some("Bearer app"));
    let mut bad = post.clone();
    bad.body[60] ^= 1;
    assert_eq!(
        c.verify_event(&bad).await.unwrap_err(),
        EventError::BadSignature
    );
}

#[test]
fn batch_ids_keep_each_usable_id_once_in_order() {
    let ids: Vec<String> = ["b", "a", "", "b", "x,y", "c"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(batch_ids(&ids), ["b", "a", "c"]);
}

#[tokio::test]
async fn try_join_bounded_keeps_the_bound_and_stops_at_the_first_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let running = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let calls = (0..20u32).map(|i| {
        let (running, peak) = (&running, &peak);
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(u64::from(i % 3))).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<u32, MarketError>(i)
        }
    });
    let mut got = try_join_bounded(calls, 4).await.unwrap();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert!(peak.load(Ordering::SeqCst) <= 4);

    let failing = (0..5u32).map(|i| async move {
        if i == 2 {
            Err(MarketError::new(
                Marketplace::TikTok,
                ErrorKind::Server,
                "boom",
            ))
        } else {
            Ok(i)
        }
    });
    let e = try_join_bounded(failing, 2).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Server);
}
