//! Incident response end to end: `stockade incident …` from a shell while `stockade serve`
//! runs. An isolated connection's webhook answers 503 (with Retry-After) within about a
//! second while another connection's deliveries are still verified and stored; release
//! brings it back. A lockdown refuses non-admin sign-in and API use and every mutating
//! request, still stores marketplace webhooks, and is lifted by release. Refusals exit 2
//! and change nothing; the report holds the timeline; the audit chain verifies.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use stockade_core::time::now_ms;

use aws_lc_rs::hmac;

use crate::console_ops::add_tiktok;
use crate::harness::Sandbox;
use crate::server::{Auth, PASSWORD, Server, add_user, init};

/// A delivery to `/hooks/tiktok/{name}` signed with the connection's app secret
/// (`add_tiktok`'s): an "authorization expiring" notice for `shop`, which the server
/// verifies and stores as an event without calling the marketplace. Status and
/// Retry-After.
async fn deliver(server: &Server, name: &str, shop: &str) -> (StatusCode, Option<String>) {
    let body = json!({"type": 7, "shop_id": shop, "timestamp": now_ms() / 1000,
                      "data": {"expiration_time": now_ms() / 1000 + 86_400}})
    .to_string();
    let sig = stockade_marketplaces::sign::tiktok_webhook_signature(
        "6a1b2c3d4e5f",
        &format!("secret-of-{name}"),
        body.as_bytes(),
    );
    let res = server
        .client
        .post(server.url(&format!("/hooks/tiktok/{name}")))
        .header("authorization", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (res.status(), retry)
}

/// Deliver until the answer is `want`; how long that took.
async fn until(server: &Server, name: &str, shop: &str, want: StatusCode) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = deliver(server, name, shop).await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name}: still {status}, want {want}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn api_key(sb: &Sandbox, name: &str, role: &str) -> Auth {
    let out = sb
        .run(&["apikey", "create", "--name", name, "--role", role])
        .expect_code(0)
        .stdout();
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("stk_"))
        .unwrap_or_else(|| panic!("no key in:\n{out}"))
        .to_owned();
    Auth::Key(token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolate_and_lockdown_from_the_cli_while_the_server_runs() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    add_tiktok(&sb, "shop-a", "7495000000001");
    add_tiktok(&sb, "shop-b", "7495000000002");
    add_user(&sb, "op@shop.example", "operator");
    let admin = api_key(&sb, "incident-admin", "admin");
    let operator = api_key(&sb, "incident-op", "operator");

    for cmd in [
        &["incident", "--help"][..],
        &["incident", "open", "--help"],
        &["incident", "revoke", "--help"],
        &["incident", "isolate", "--help"],
        &["incident", "release", "--help"],
        &["incident", "lockdown", "--help"],
        &["incident", "report", "--help"],
    ] {
        let out = sb.run(cmd).expect_code(0).stdout();
        assert!(out.contains("Usage: stockade incident"), "{out}");
    }

    // Nothing open yet: refused, exit 2.
    let out = sb
        .run(&["incident", "isolate", "--connection", "shop-a"])
        .expect_code(2);
    assert!(
        out.stderr().contains("no incident is open"),
        "{}",
        out.stderr()
    );

    let server = Server::start(&sb);
    until(&server, "shop-a", "7495000000001", StatusCode::OK).await;

    let out = sb
        .run(&[
            "incident",
            "open",
            "--title",
            "Webhook secret exposed",
            "--severity",
            "high",
        ])
        .expect_code(0)
        .stdout();
    assert!(out.contains("opened incident #1"), "{out}");
    assert!(
        out.contains("Amazon: notify within 24 h — 23 h 59 m left"),
        "{out}"
    );

    // An unknown connection: refused, nothing isolated.
    let out = sb
        .run(&["incident", "isolate", "--connection", "nope"])
        .expect_code(2);
    assert!(
        out.stderr().contains("no connection named"),
        "{}",
        out.stderr()
    );

    sb.run(&["incident", "isolate", "--connection", "shop-a"])
        .expect_code(0);
    let took = until(
        &server,
        "shop-a",
        "7495000000001",
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    eprintln!("isolation reached the running server in {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let (status, retry) = deliver(&server, "shop-a", "7495000000001").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some(), "no Retry-After");
    // Another connection's deliveries are verified and stored.
    let (status, _) = deliver(&server, "shop-b", "7495000000002").await;
    assert_eq!(status, StatusCode::OK);

    sb.run(&["incident", "release", "--connection", "shop-a"])
        .expect_code(0);
    let took = until(&server, "shop-a", "7495000000001", StatusCode::OK).await;
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let out = sb
        .run(&["incident", "release", "--connection", "shop-a"])
        .expect_code(2);
    assert!(out.stderr().contains("not isolated"), "{}", out.stderr());

    // Lockdown.
    sb.run(&["incident", "lockdown"]).expect_code(0);
    let out = sb.run(&["incident", "lockdown"]).expect_code(2);
    assert!(
        out.stderr().contains("already in lockdown"),
        "{}",
        out.stderr()
    );
    let started = Instant::now();
    loop {
        let (s, _) = server.get_with("/api/v1/connections", &operator).await;
        if s == StatusCode::LOCKED {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An administrator reads, but changes nothing.
    let (s, _) = server.get_with("/api/v1/connections", &admin).await;
    assert_eq!(s, StatusCode::OK);
    let res = server
        .client
        .post(server.url("/api/v1/bans"))
        .bearer_auth(match &admin {
            Auth::Key(k) => k.as_str(),
            _ => unreachable!(),
        })
        .json(&json!({"ip": "203.0.113.9", "duration": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::LOCKED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "lockdown", "{body}");
    assert!(!sb.run(&["ban", "list"]).stdout().contains("203.0.113.9"));
    // A non-administrator cannot sign in.
    let (s, _, body) = server
        .post_json(
            "/api/v1/auth/login",
            json!({"email": "op@shop.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::LOCKED, "{body}");
    // Marketplace webhooks are still received, verified and stored.
    let (status, _) = deliver(&server, "shop-b", "7495000000002").await;
    assert_eq!(status, StatusCode::OK);

    sb.run(&["incident", "release", "--lockdown"])
        .expect_code(0);
    let started = Instant::now();
    loop {
        let (s, _) = server.get_with("/api/v1/connections", &operator).await;
        if s == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    // The deliveries to shop-b (one while shop-a was isolated, one during the lockdown)
    // are stored.
    let store = stockade_store::Store::open(
        &stockade_store::DatabaseUrl::Sqlite(sb.data().join("stockade.db")),
        stockade_core::Environment::Dev,
        &Default::default(),
    )
    .await
    .unwrap();
    let stored = store
        .count(
            "SELECT COUNT(*) FROM events WHERE kind = 'authorization_expiring' AND detail LIKE '%shop-b%'",
            vec![],
        )
        .await
        .unwrap();
    store.close().await;
    assert!(stored >= 2, "{stored} shop-b deliveries stored");

    sb.run(&[
        "incident",
        "note",
        "1",
        "Secret rotated on the marketplace side",
    ])
    .expect_code(0);
    let out = sb
        .run(&["incident", "note", "1", "ask jo@example.com"])
        .expect_code(2);
    assert!(out.stderr().contains("personal data"), "{}", out.stderr());
    assert!(!out.stderr().contains("jo@example.com"));
    sb.run(&[
        "incident",
        "notify",
        "1",
        "--party",
        "amazon",
        "--note",
        "Sent to the security contact",
    ])
    .expect_code(0);
    let show = sb.run(&["incident", "show", "1"]).expect_code(0).stdout();
    assert!(
        show.contains("Amazon: notify within 24 h — notified at"),
        "{show}"
    );
    assert!(show.contains("eBay: notify within 24 h"), "{show}");
    sb.run(&[
        "incident",
        "close",
        "1",
        "--root-cause",
        "The webhook secret was shared in a chat; rotated",
    ])
    .expect_code(0);
    let list = sb.run(&["incident", "list"]).expect_code(0).stdout();
    assert!(list.contains("#1 incident high closed"), "{list}");
    let md = sb.run(&["incident", "report", "1"]).expect_code(0).stdout();
    for want in [
        "# Incident #1: Webhook secret exposed",
        "| isolate |",
        "| lockdown |",
        "| release |",
        "Secret rotated on the marketplace side",
        "The webhook secret was shared in a chat",
    ] {
        assert!(md.contains(want), "{want} not in:\n{md}");
    }
    let json = sb
        .run(&["incident", "report", "1", "--format", "json"])
        .expect_code(0)
        .stdout();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["deadlines"][0]["party"], "amazon");
    assert_eq!(v["deadlines"][0]["met"], true);

    // Compliance: that incident skipped `revoke`, so it is no evidence of the whole plan;
    // a complete drill (which revokes nothing real: the admin key keeps working) is.
    let server = Server::start(&sb);
    let incident = |r: serde_json::Value| {
        r["clauses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "incident")
            .cloned()
            .unwrap()
    };
    let (s, r) = server.get_with("/api/v1/compliance", &admin).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let c = incident(r);
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(c.to_string().contains("incident_incomplete"), "{c}");
    for args in [
        &[
            "incident",
            "open",
            "--title",
            "Half-year drill",
            "--severity",
            "low",
            "--drill",
        ][..],
        &["incident", "revoke", "--api-keys", "all"],
        &["incident", "revoke", "--sessions", "all"],
        &["incident", "isolate", "--connection", "shop-a"],
        &["incident", "lockdown"],
        &["incident", "release", "--lockdown"],
        &["incident", "release", "--connection", "shop-a"],
        &[
            "incident",
            "close",
            "2",
            "--root-cause",
            "Drill: every step exercised",
        ],
        &["incident", "report", "2"],
    ] {
        let out = sb.run(args).expect_code(0).stdout();
        if args[1] == "revoke" && args[2] == "--api-keys" {
            assert!(out.contains("would revoke 2"), "{out}");
        }
    }
    let (s, r) = server.get_with("/api/v1/compliance", &admin).await;
    assert_eq!(s, StatusCode::OK, "the drill revoked the admin key: {r}");
    let c = incident(r);
    assert_eq!(c["verdict"], "pass", "{c}");
    assert!(c.to_string().contains("incident_last"), "{c}");
    // Webhooks were never refused by the drill's (unenforced) isolation.
    let (status, _) = deliver(&server, "shop-a", "7495000000001").await;
    assert_eq!(status, StatusCode::OK);
    drop(server);
    sb.run(&["audit", "verify"]).expect_code(0);
}

const SECRET: &str = "3f9c1a7e5b2d4c6e8f0a1b2c3d4e5f60";
const HOOK: &str = "name: supplier-stock\ntrigger:\n  webhook:\n    path: supplier/stock\n    auth: { hmac: supplier-hmac }\n    respond: result\npermissions: { credentials: [supplier-hmac] }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"delivery {{ trigger.body.delivery }}\" }\n";
const TICK: &str = "name: every-second\ntrigger: { schedule: { cron: \"* * * * * *\" } }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"tick {{ trigger.scheduled_at }}\" }\n";

fn succeeded(sb: &Sandbox, name: &str) -> usize {
    sb.run(&["workflow", "runs", name, "--status", "succeeded"])
        .expect_code(0)
        .stdout()
        .lines()
        .count()
        .saturating_sub(1)
}

/// An isolated workflow runs nothing (its scheduled runs wait in the queue) and its
/// webhook answers 503 with Retry-After; released, it runs and answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_workflow_does_not_run_until_released() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let mut files = Vec::new();
    for (name, text) in [("hook.yaml", HOOK), ("tick.yaml", TICK)] {
        let path = sb.dir.join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path.display().to_string());
    }
    let mut args = vec!["workflow", "apply"];
    args.extend(files.iter().map(String::as_str));
    sb.run(&args).expect_code(0);
    sb.run_with_stdin(
        &sb.data(),
        &[
            "credential",
            "set",
            "supplier-hmac",
            "--workflow",
            "supplier-stock",
            "--secret-stdin",
        ],
        Some(&format!("{SECRET}\n")),
    )
    .expect_code(0);
    sb.run(&[
        "incident",
        "open",
        "--title",
        "Supplier feed abused",
        "--severity",
        "medium",
    ])
    .expect_code(0);
    let out = sb
        .run(&["incident", "isolate", "--workflow", "nope"])
        .expect_code(2);
    assert!(
        out.stderr().contains("no workflow named"),
        "{}",
        out.stderr()
    );
    sb.run(&["incident", "isolate", "--workflow", "every-second"])
        .expect_code(0);
    sb.run(&["incident", "isolate", "--workflow", "supplier-stock"])
        .expect_code(0);

    let server = Server::start(&sb);
    let body = br#"{"delivery":"D-17"}"#.to_vec();
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let signature = format!("sha256={}", hex::encode(hmac::sign(&key, &body).as_ref()));
    let post = || {
        server
            .client
            .post(server.url("/hooks/workflows/supplier/stock"))
            .header("content-type", "application/json")
            .header("x-stockade-signature", signature.clone())
            .body(body.clone())
            .send()
    };
    let res = post().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    // The schedule fires every second, but nothing runs while isolated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(succeeded(&sb, "every-second"), 0, "{}", server.log_text());
    assert_eq!(succeeded(&sb, "supplier-stock"), 0);

    sb.run(&["incident", "release", "--workflow", "every-second"])
        .expect_code(0);
    sb.run(&["incident", "release", "--workflow", "supplier-stock"])
        .expect_code(0);
    let started = Instant::now();
    while succeeded(&sb, "every-second") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no run after the release:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    loop {
        let res = post().await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
    sb.run(&["audit", "verify"]).expect_code(0);
}

/// The security channel hears every step, also while the instance is locked down (alert
/// channels are the one outbound traffic a lockdown lets through), never the free text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_channel_is_alerted_during_a_lockdown() {
    use stockade_sandbox::bots::{Bots, BotsConfig, FeishuBotSpec};
    let bots = Bots::start(BotsConfig::default()).await.unwrap();
    let feishu = bots.add_feishu(FeishuBotSpec {
        name: "security".into(),
        sign: true,
        keywords: vec![],
        ip_allow: vec![],
    });
    let probe = Sandbox::new();
    let ca = probe.dir.join("bots-ca.pem");
    std::fs::write(&ca, &bots.ca_pem).unwrap();
    let sb = init(
        "dev",
        &format!(
            "[egress]\nextra_root_certs = [\"{}\"]\n\n[[alerts.channel]]\nname = \"security\"\nkind = \"feishu\"\nurl = \"{}/open-apis/bot/v2/hook\"\nsources = [\"incident\"]\n",
            ca.display(),
            bots.base_url
        ),
    );
    let secret = sb.dir.join("feishu.json");
    std::fs::write(
        &secret,
        json!({"hook_id": feishu.hook_id, "secret": feishu.secret}).to_string(),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    sb.run(&[
        "alert",
        "secret",
        "set",
        "security",
        "--credentials-file",
        secret.to_str().unwrap(),
    ])
    .expect_code(0);
    let server = Server::start(&sb);
    sb.run(&[
        "incident",
        "open",
        "--title",
        "Leaked admin key",
        "--severity",
        "critical",
    ])
    .expect_code(0);
    sb.run(&["incident", "lockdown"]).expect_code(0);
    sb.run(&[
        "incident",
        "note",
        "1",
        "Rotating the marketplace secrets now",
    ])
    .expect_code(0);
    let text = |r: &stockade_sandbox::bots::Received| r.body.to_string();
    let started = Instant::now();
    loop {
        let got: Vec<String> = bots.accepted("security").iter().map(text).collect();
        if got
            .iter()
            .any(|t| t.contains("Incident 1: a note was added"))
        {
            assert!(
                got.iter()
                    .any(|t| t.contains("Incident 1 opened, severity critical")),
                "{got:?}"
            );
            assert!(
                got.iter()
                    .any(|t| t.contains("Incident 1: the instance is locked down")),
                "{got:?}"
            );
            // The title and the note stay out of the channel.
            assert!(
                got.iter()
                    .all(|t| !t.contains("Leaked admin key") && !t.contains("Rotating")),
                "{got:?}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no alert during the lockdown: {got:?}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.run(&["incident", "release", "--lockdown"])
        .expect_code(0);
    drop(server);
    sb.run(&["audit", "verify"]).expect_code(0);
}
