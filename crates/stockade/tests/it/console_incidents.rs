//! Incident response in the console and its API, against a real `stockade serve` (run
//! from the Connections/Security test on SQLite and PostgreSQL): open from the Security
//! page, a refused title writes nothing; isolate a connection from the incident's page and
//! its webhooks answer 503 until released over the API; lockdown refuses an operator's
//! change (423) and a second lockdown, the page lifts it; notes with personal data
//! refused; a notice stops Amazon's deadline; the report downloads with the timeline; a
//! closed incident refuses actions; an auditor reads but cannot act; every step audited
//! as the acting user; both languages.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::get;
use crate::server::{Auth, Server};

fn csrf(auth: &Auth) -> String {
    match auth {
        Auth::Cookie { csrf, .. } => csrf.clone(),
        _ => String::new(),
    }
}

/// Post a form: status, `Location`, body.
async fn form(
    server: &Server,
    auth: &Auth,
    path: &str,
    body: &str,
) -> (StatusCode, String, String) {
    let res = auth
        .apply(server.client.post(server.url(path)))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-language", "en")
        .body(format!("csrf={}&{body}", csrf(auth)))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, res.text().await.unwrap())
}

async fn api(server: &Server, auth: &Auth, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut rb = auth.apply(server.client.post(server.url(path)));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let res = rb.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn audit_count(server: &Server, admin: &Auth, action: &str) -> usize {
    let (s, body) = server
        .get_with(&format!("/api/v1/audit?action={action}&limit=100"), admin)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .count()
}

async fn incidents(server: &Server, auth: &Auth) -> Value {
    let (s, body) = server.get_with("/api/v1/incidents", auth).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

/// A TikTok delivery to `connection`'s webhook: its status.
async fn hook(server: &Server, connection: &str) -> StatusCode {
    server
        .client
        .post(server.url(&format!("/hooks/tiktok/{connection}")))
        .header("authorization", "deadbeef")
        .header("content-type", "application/json")
        .body(r#"{"type":1,"shop_id":"7495000000002","timestamp":1700000000,"data":{}}"#)
        .send()
        .await
        .unwrap()
        .status()
}

/// Wait (at most 3 s) until `connection`'s webhook answers 503 or not, as asked.
async fn hook_until(server: &Server, connection: &str, unavailable: bool) -> StatusCode {
    let start = Instant::now();
    loop {
        let s = hook(server, connection).await;
        if (s == StatusCode::SERVICE_UNAVAILABLE) == unavailable
            || start.elapsed() > Duration::from_secs(3)
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn incident_actions(server: &Server, admin: &Auth, op: &Auth, auditor: &Auth) {
    // The section on the Security page: the form for administrators only.
    let (_, page) = get(server, admin, "/security", "en").await;
    assert!(
        page.contains("Incident response")
            && page.contains("id=\"incident-open\"")
            && page.contains("Not locked down"),
        "{page}"
    );
    let (_, page) = get(server, auditor, "/security", "en").await;
    assert!(
        page.contains("Incident response") && !page.contains("id=\"incident-open\""),
        "{page}"
    );
    let before = incidents(server, admin).await["incidents"]
        .as_array()
        .unwrap()
        .len();

    // A title with personal data: refused on the page, nothing written.
    let (s, _, page) = form(
        server,
        admin,
        "/incidents",
        "title=Leak+reported+by+buyer%40example.com&severity=high",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(
        page.contains("id=\"incident-error\"") && !page.contains("buyer@example.com"),
        "{page}"
    );
    assert_eq!(
        incidents(server, admin).await["incidents"]
            .as_array()
            .unwrap()
            .len(),
        before
    );
    let (s, _, _) = form(
        server,
        auditor,
        "/incidents",
        "title=Auditor+test&severity=low",
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Opened from the page.
    let (s, location, _) = form(
        server,
        admin,
        "/incidents",
        "title=Suspicious+API+key+use&severity=critical",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let id: i64 = location
        .strip_prefix("/incidents/")
        .and_then(|r| r.split('?').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{location}"));
    let base = format!("/incidents/{id}");
    let (s, page) = get(server, admin, &format!("{base}?done=opened"), "en").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains("Incident opened")
            && page.contains("Suspicious API key use")
            && page.contains("Amazon")
            && page.contains("left"),
        "{page}"
    );
    let (s, zh) = get(server, admin, &base, "zh-CN").await;
    assert_eq!(s, StatusCode::OK);
    assert!(zh.contains("通报时限") && zh.contains("时间线"), "{zh}");
    let (_, en) = get(server, admin, &base, "en").await;
    crate::console::assert_translated(&base, &zh, &en);

    // Isolate shop-b from the page: its webhooks answer 503; shop-a's do not.
    let (s, loc, body) = form(
        server,
        admin,
        &format!("{base}/isolate"),
        "kind=connection&target=shop-b",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    assert!(loc.ends_with("done=isolate"));
    assert_eq!(
        hook_until(server, "shop-b", true).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_ne!(
        hook(server, "shop-a").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let controls = incidents(server, admin).await["controls"].clone();
    assert!(
        controls
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "connection" && c["name"] == "shop-b"),
        "{controls}"
    );
    // Unknown names: refused inline, nothing isolated.
    let (s, _, page) = form(
        server,
        admin,
        &format!("{base}/isolate"),
        "kind=workflow&target=no-such-workflow",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"refusal\""), "{page}");
    // Released over the API; releasing again is refused.
    let release = json!({"kind": "connection", "target": "shop-b"});
    let (s, body) = api(
        server,
        admin,
        &format!("/api/v1{base}/release"),
        Some(release.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_ne!(
        hook_until(server, "shop-b", false).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, body) = api(
        server,
        admin,
        &format!("/api/v1{base}/release"),
        Some(release),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Lockdown: an operator's change refused, a second lockdown refused, lifted on the page.
    let (s, body) = api(server, admin, &format!("/api/v1{base}/lockdown"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = api(server, op, "/api/v1/connections/shop-a/pause", None).await;
    assert_eq!(s, StatusCode::LOCKED);
    let (s, body) = api(server, admin, &format!("/api/v1{base}/lockdown"), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, page) = get(server, admin, "/security", "en").await;
    assert!(page.contains("Locked down"), "{page}");
    let (s, _, body) = form(
        server,
        admin,
        &format!("{base}/release"),
        "kind=lockdown&target=",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{body}");
    let start = Instant::now();
    loop {
        let (s, _) = api(server, op, "/api/v1/connections/shop-a/resume", None).await;
        if s != StatusCode::LOCKED || start.elapsed() > Duration::from_secs(3) {
            assert_eq!(s, StatusCode::OK);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Notes: personal data refused, a plain note kept.
    let (s, _, page) = form(
        server,
        admin,
        &format!("{base}/note"),
        "text=Call+back+on+%2B86+138+0013+8000",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!page.contains("0013"), "{page}");
    let (s, _, _) = form(
        server,
        admin,
        &format!("{base}/note"),
        "text=Key+rotated+after+review+of+egress+log",
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // Amazon notified: its deadline is met.
    let (s, body) = api(
        server,
        admin,
        &format!("/api/v1{base}/notify"),
        Some(json!({"party": "amazon", "text": "Sent through the security contact form"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    let (_, detail) = server.get_with(&format!("/api/v1{base}"), admin).await;
    let amazon = detail["incident"]["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["party"] == "amazon")
        .cloned()
        .unwrap();
    assert_eq!(amazon["state"], "met", "{detail}");

    // The report for marketplaces: a Markdown download with the timeline.
    let res = admin
        .apply(server.client.post(server.url(&format!("{base}/report"))))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&format=md", csrf(admin)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(&format!("incident-{id}.md"))
    );
    let md = res.text().await.unwrap();
    assert!(
        md.contains("Suspicious API key use") && md.contains("isolate") && md.contains("lockdown"),
        "{md}"
    );

    // Closed with the root cause; afterwards actions are refused.
    let (s, body) = api(
        server,
        admin,
        &format!("/api/v1{base}/close"),
        Some(json!({"text": "A key left in a shared script; rotated and removed"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "closed");
    let (s, _) = api(
        server,
        admin,
        &format!("/api/v1{base}/isolate"),
        Some(json!({"kind": "connection", "target": "shop-a"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // An auditor reads the incident, without forms, and cannot act.
    let (s, page) = get(server, auditor, &base, "en").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("Timeline") && !page.contains("id=\"revoke-form\""));
    let (s, _) = api(server, auditor, &format!("/api/v1{base}/lockdown"), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Every step audited as the administrator; the refused ones too.
    for (action, n) in [
        ("incident.open", 1),
        ("incident.isolate", 1),
        ("incident.release", 2),
        ("incident.lockdown", 1),
        ("incident.note", 1),
        ("incident.notify", 1),
        ("incident.report", 1),
        ("incident.close", 1),
    ] {
        assert!(
            audit_count(server, admin, action).await >= n,
            "{action} not audited"
        );
    }
    assert!(audit_count(server, admin, "incident.refused").await >= 4);
}
