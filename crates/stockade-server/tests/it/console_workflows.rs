//! The console's Workflows, Executions and Alerts pages through the real HTTPS server in
//! a prod environment (where a version waits for a second person's approval), both
//! backends: each page in English and Chinese with no catalogue text left untranslated;
//! four eyes (the author's approval is refused inline, in the user's language, writing
//! nothing; another caller's approval activates the version); reject; the diff and lint
//! of versions; run, cancel and re-run from the pages; a viewer sees no action and gets
//! 403 on each POST; the new API reads (diff, lint, reject, the list's trigger and last
//! run) and the alerts API's cursor paging with its old fields kept.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade_access::Role;
use stockade_core::{Actor, Environment};
use stockade_store::Store;
use stockade_workflows::registry;

use crate::harness::{Backend, Options, TestServer};

const V1: &str = "name: restock\ndescription: restock a SKU\ntrigger: manual\non_error: builtin.alert\ninputs:\n  sku: { type: string, required: true }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"restock {{ inputs.sku }}\" }\n";
const V2: &str = "name: restock\ndescription: restock a SKU\ntrigger: manual\non_error: builtin.alert\ninputs:\n  sku: { type: string, required: true }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"restock {{ inputs.sku }}\" }\n  - id: done\n    uses: audit.note\n    with: { message: all-done-marker }\n";

const EN: &str = include_str!("../../static/i18n/en.tsv");
const ZH: &str = include_str!("../../static/i18n/zh.tsv");

/// A caller: an API key of a role (a distinct actor per key).
struct Key<'a> {
    server: &'a TestServer,
    secret: String,
    id: String,
}

impl Key<'_> {
    async fn page(&self, path: &str, lang: &str) -> (StatusCode, String) {
        let res = self
            .server
            .client
            .get(self.server.url(path))
            .bearer_auth(&self.secret)
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// A form post: (status, location, body).
    async fn form(&self, path: &str, body: &str, lang: &str) -> (StatusCode, String, String) {
        let res = self
            .server
            .client
            .post(self.server.url(path))
            .bearer_auth(&self.secret)
            .header("accept-language", lang)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (res.status(), location, res.text().await.unwrap())
    }

    async fn json(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        let res = self
            .server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(&self.secret)
            .header("content-type", "application/json")
            .body(if path.contains("/bans") {
                String::new()
            } else {
                "{}".into()
            })
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

async fn key<'a>(server: &'a TestServer, name: &str, role: Role) -> Key<'a> {
    let (info, secret) = server
        .access
        .create_api_key(name, role, None, &Actor::System("test"))
        .await
        .unwrap();
    Key {
        server,
        secret: secret.expose_secret().to_owned(),
        id: info.id,
    }
}

/// The text between tags.
fn visible(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out
}

/// No English catalogue text on the Chinese page, and the other way round.
fn assert_translated(path: &str, zh_page: &str, en_page: &str) {
    let pairs = |t: &'static str| {
        t.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .collect::<Vec<_>>()
    };
    let (zh_text, en_text) = (visible(zh_page), visible(en_page));
    for ((k, e), (_, z)) in pairs(EN).into_iter().zip(pairs(ZH)) {
        if e.len() > 3 && !["Stockade", "SKU", "CSV"].contains(&e) && !z.contains(e) {
            assert!(
                !zh_text.contains(e),
                "{path} (zh) shows {k}: {e:?}\n{zh_text}"
            );
        }
        if z.chars().count() > 1 && !e.contains(z) {
            assert!(!en_text.contains(z), "{path} (en) shows {k}: {z:?}");
        }
    }
    assert!(zh_page.contains("lang=\"zh-CN\""), "{path}");
}

async fn version_state(store: &Store, v: i64) -> String {
    registry::version(store, "restock", v)
        .await
        .unwrap()
        .unwrap()
        .state
        .as_str()
        .to_owned()
}

#[tokio::test]
async fn workflow_pages_on_sqlite() {
    workflow_pages(Backend::Sqlite).await;
}

#[tokio::test]
async fn workflow_pages_on_postgres() {
    workflow_pages(Backend::Postgres).await;
}

async fn workflow_pages(backend: Backend) {
    let Some(server) = TestServer::spawn(Options {
        backend,
        env: Environment::Prod,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let store = server.access.store().clone();
    let author = key(&server, "author", Role::Operator).await;
    let second = key(&server, "second", Role::Operator).await;
    let viewer = key(&server, "viewer", Role::Viewer).await;
    let admin = key(&server, "admin", Role::Admin).await;

    // Empty states say what to do next.
    let (s, page) = viewer.page("/workflows", "en").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("stockade workflow apply"), "{page}");
    let (_, page) = viewer.page("/executions", "zh-CN").await;
    assert!(page.contains("没有匹配的执行记录"), "{page}");

    // The author applies: pending in prod.
    let by_author = Actor::ApiKey(author.id.clone());
    registry::apply(&store, &by_author, &[("restock.yaml".into(), V1.into())])
        .await
        .unwrap();
    assert_eq!(version_state(&store, 1).await, "pending");

    for path in ["/workflows", "/workflows/restock", "/executions", "/alerts"] {
        let (s, zh) = admin.page(path, "zh-CN,zh;q=0.9").await;
        assert_eq!(s, StatusCode::OK, "{path}: {zh}");
        let (_, en) = admin.page(path, "en").await;
        assert_translated(path, &zh, &en);
        assert!(
            en.contains("href=\"/workflows\"") && en.contains("href=\"/alerts\""),
            "nav"
        );
    }
    let (_, list) = viewer.page("/workflows", "en").await;
    assert!(
        list.contains(">restock</a>") && list.contains("awaiting approval"),
        "{list}"
    );
    assert!(
        list.contains("never run") && list.contains("run manually"),
        "{list}"
    );

    // A viewer sees no review, run or test form, and each POST is 403, writing nothing.
    let (_, page) = viewer.page("/workflows/restock", "en").await;
    assert!(
        !page.contains("/approve\"") && !page.contains("/reject\"") && !page.contains("/run\"")
    );
    let head = store.audit_head().await.unwrap();
    for path in [
        "/workflows/restock/versions/1/approve",
        "/workflows/restock/versions/1/reject",
        "/workflows/restock/run",
        "/alerts/test",
    ] {
        let (s, _, _) = viewer.form(path, "inputs=%7B%7D&channel=x", "en").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(store.audit_head().await.unwrap(), head);

    // Four eyes: the author's approval is refused inline, in each language, nothing changed.
    let (_, page) = author.page("/workflows/restock", "en").await;
    assert!(
        page.contains("/workflows/restock/versions/1/approve"),
        "{page}"
    );
    let (s, _, body) = author
        .form("/workflows/restock/versions/1/approve", "", "en")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        body.contains("id=\"refusal\"") && body.contains("another user must approve it"),
        "{body}"
    );
    let (s, _, body) = author
        .form("/workflows/restock/versions/1/approve", "", "zh-CN")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("双人复核"), "{body}");
    assert_eq!(version_state(&store, 1).await, "pending");
    assert_eq!(store.audit_head().await.unwrap(), head);

    // Another caller approves: active, audited as that caller.
    let (s, to, _) = second
        .form("/workflows/restock/versions/1/approve", "", "en")
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(to, "/workflows/restock?done=approved");
    assert_eq!(version_state(&store, 1).await, "active");
    let (_, page) = second.page(&to, "en").await;
    assert!(
        page.contains("Version approved") && page.contains("/workflows/restock/run"),
        "{page}"
    );

    // A second version: the diff shows the added step; lint passes; it is rejected.
    registry::apply(&store, &by_author, &[("restock.yaml".into(), V2.into())])
        .await
        .unwrap();
    let (_, page) = viewer.page("/workflows/restock?from=1&to=2", "en").await;
    assert!(
        page.contains("<span class=\"add\">+  - id: done</span>"),
        "{page}"
    );
    assert!(page.contains("No lint problem"), "{page}");
    let (s, diff) = viewer
        .json(
            reqwest::Method::GET,
            "/api/v1/workflows/restock/diff?from=1&to=2",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{diff}");
    assert_eq!(diff["changed"], true);
    assert!(
        diff["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["op"] == "+" && l["text"] == "  - id: done")
    );
    assert_eq!(
        viewer
            .json(
                reqwest::Method::GET,
                "/api/v1/workflows/restock/diff?from=1"
            )
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (s, lint) = viewer
        .json(
            reqwest::Method::GET,
            "/api/v1/workflows/restock/versions/2/lint",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lint["passed"], true);
    let (s, to, _) = second
        .form("/workflows/restock/versions/2/reject", "", "en")
        .await;
    assert_eq!(
        (s, to.as_str()),
        (StatusCode::SEE_OTHER, "/workflows/restock?done=rejected")
    );
    assert_eq!(version_state(&store, 2).await, "rejected");
    let (s, body) = second
        .json(
            reqwest::Method::POST,
            "/api/v1/workflows/restock/versions/2/reject",
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (_, list) = viewer.json(reqwest::Method::GET, "/api/v1/workflows").await;
    assert_eq!(list["workflows"][0]["trigger"], "manual");
    assert_eq!(list["workflows"][0]["latest_state"], "rejected");
    assert_eq!(list["workflows"][0]["active_version"], 1);

    // Run from the page (bad inputs refused inline), then cancel and re-run.
    let (s, _, body) = second
        .form(
            "/workflows/restock/run",
            "inputs=%7B%22nope%22%3A1%7D",
            "zh-CN",
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("输入参数必须是一个 JSON 对象"), "{body}");
    let (s, to, _) = second
        .form(
            "/workflows/restock/run",
            "inputs=%7B%22sku%22%3A%22MUG-SECRET-1%22%7D",
            "en",
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/executions/"), "{to}");
    let (_, page) = second.page(&to, "en").await;
    assert!(
        page.contains("in the queue") && page.contains("id=\"cancel\""),
        "{page}"
    );
    assert!(
        !page.contains("MUG-SECRET-1"),
        "no input values on the page"
    );
    let (_, page) = viewer.page(&to, "en").await;
    assert!(
        !page.contains("id=\"cancel\"") && !page.contains("/cancel\""),
        "{page}"
    );
    assert_eq!(
        viewer.form(&format!("{to}/cancel"), "", "en").await.0,
        StatusCode::FORBIDDEN
    );
    let (s, back, _) = second.form(&format!("{to}/cancel"), "", "en").await;
    assert_eq!(
        (s, back.clone()),
        (StatusCode::SEE_OTHER, format!("{to}?done=cancelled"))
    );
    let (_, page) = second.page(&back, "zh-CN").await;
    assert!(
        page.contains("已取消") && page.contains("id=\"rerun\""),
        "{page}"
    );
    let (s, _, body) = second.form(&format!("{to}/cancel"), "", "zh-CN").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(body.contains("当前状态下无法执行此操作"), "{body}");
    let (s, _, body) = second
        .form(&format!("{to}/rerun"), "from_step=nope", "en")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("that step is not in this execution"),
        "{body}"
    );
    let (s, rerun, _) = second.form(&format!("{to}/rerun"), "", "en").await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        rerun.ends_with("?done=rerun") && !rerun.starts_with(&to),
        "{rerun}"
    );
    let (_, page) = viewer
        .page("/executions?workflow=restock&status=cancelled", "en")
        .await;
    assert_eq!(page.matches("<tr id=\"ex-").count(), 1, "{page}");
    let (_, page) = viewer.page("/executions?workflow=restock", "en").await;
    assert_eq!(page.matches("<tr id=\"ex-").count(), 2, "{page}");
    let (_, list) = viewer.page("/workflows", "en").await;
    assert!(
        list.contains("/executions/job_"),
        "the last run is linked: {list}"
    );

    // Alerts: three bans raise three alerts; the API pages them by cursor, old fields kept.
    for i in 1..=3 {
        let res = server
            .client
            .post(server.url("/api/v1/bans"))
            .bearer_auth(&admin.secret)
            .json(&json!({"ip": format!("198.51.100.{i}"), "duration": "1h"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let (s, first) = viewer
        .json(reqwest::Method::GET, "/api/v1/alerts?limit=2")
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert!(first["channels"].is_array() && first["recent"].is_array());
    let alerts = first["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{first}");
    for field in [
        "event_id", "at_ms", "at", "severity", "source", "kind", "title", "delivery",
    ] {
        assert!(alerts[0].get(field).is_some(), "{field} kept: {first}");
    }
    assert_eq!(alerts[0]["delivery"], "not routed yet");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second_page) = viewer
        .json(
            reqwest::Method::GET,
            &format!("/api/v1/alerts?limit=2&cursor={cursor}"),
        )
        .await;
    let rest = second_page["alerts"].as_array().unwrap();
    assert_eq!(rest.len(), 1, "{second_page}");
    assert!(rest[0]["event_id"].as_i64() < alerts[1]["event_id"].as_i64());
    assert_eq!(second_page["next_cursor"], Value::Null);
    assert_eq!(
        viewer
            .json(reqwest::Method::GET, "/api/v1/alerts?cursor=bogus")
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (_, page) = viewer.page("/alerts", "zh-CN").await;
    assert_eq!(page.matches("<tr id=\"event-").count(), 3, "{page}");
    assert!(
        page.contains("某个地址因多次认证失败被封禁") && page.contains("尚未分发"),
        "{page}"
    );
    assert!(
        !page.contains("198.51.100.1<"),
        "addresses are shown as networks only"
    );
    // No test-send here (no channel configured in this harness): refused inline.
    let (s, _, body) = second.form("/alerts/test", "channel=nope", "zh-CN").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("没有该名称的告警通道"), "{body}");
    server.cleanup().await;
}
