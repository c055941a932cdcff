//! The `/metrics` gate on a real server (the harness trusts `X-Forwarded-For` from its
//! loopback peer, so a request can come from a remote address): a remote caller without
//! credentials is refused (401, JSON), a key without the metrics permission gets 403, an
//! operator's key is admitted from anywhere, and loopback without credentials is admitted.
//! A refusal never reaches the source.

use reqwest::StatusCode;
use stockade_access::Role;
use stockade_core::Actor;

use crate::harness::{FIXED_METRICS, Options, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_for_loopback_or_a_key_with_the_permission() {
    let s = TestServer::spawn(Options::default()).await.unwrap();
    let get = |from: Option<&str>, key: Option<&str>| {
        let mut req = s.client.get(s.url("/metrics"));
        if let Some(ip) = from {
            req = req.header("x-forwarded-for", ip);
        }
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };
    // Remote, no credentials: refused, as JSON, with nothing of the metrics.
    let res = get(Some("203.0.113.40"), None).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body = res.text().await.unwrap();
    assert!(body.contains("\"unauthorized\""), "{body}");
    assert!(!body.contains("t_up"), "{body}");
    // Loopback (no forwarded address), no credentials: admitted.
    let res = get(None, None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.text().await.unwrap(),
        FIXED_METRICS.replace("# EOF\n", "")
    );
    // A viewer's key: not allowed to read metrics.
    let actor = Actor::System("test");
    let (_, viewer) = s
        .access
        .create_api_key("viewer", Role::Viewer, None, &actor)
        .await
        .unwrap();
    let res = get(Some("203.0.113.41"), Some(viewer.expose_secret()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // An operator's key: admitted from a remote address, OpenMetrics on request.
    let (_, operator) = s
        .access
        .create_api_key("scraper", Role::Operator, None, &actor)
        .await
        .unwrap();
    let res = get(Some("203.0.113.42"), Some(operator.expose_secret()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = s
        .client
        .get(s.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.42")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .bearer_auth(operator.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), FIXED_METRICS);
    // A bad key from loopback is refused (credentials are always checked).
    let res = get(None, Some("stk_not_a_key")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    s.cleanup().await;
}
