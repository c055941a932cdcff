//! The Compliance page and `GET /api/v1/compliance` against a real `stockade serve`, on
//! SQLite and PostgreSQL: each clause's verdict follows its evidence (a user without MFA,
//! buyer fields stored unsealed, a broken audit chain, the configuration's password rule
//! and idle lock, the four-eyes rule and the certificate in prod), the page in both
//! languages, who may open it; the per-user language (stored by the language switch, it
//! wins over `Accept-Language`, on both backends); the sign-in, enrollment, recovery-code,
//! code prompt, signed-out and error pages in both languages; and `POST
//! /api/v1/auth/logout` without a session answering JSON 401.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{assert_translated, get};
use crate::harness::{Sandbox, drop_schema, pg_schema_url, require_tool, tamper};
use crate::server::{Auth, PASSWORD, Server, add_user, enroll, init, oathtool, set_cookie};

/// The report as `auth` reads it, in `lang`.
async fn report(server: &Server, auth: &Auth, lang: &str) -> Value {
    let res = auth
        .apply(server.client.get(server.url("/api/v1/compliance")))
        .header("accept-language", lang)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}\n{}", server.log_text());
    serde_json::from_str(&body).unwrap()
}

fn clause<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no clause {id} in {r}"))
}

/// Failing clauses of the company's policy, leaving out the host checks (their verdicts
/// depend on the machine the tests run on) and the Amazon DPP rows built on them.
fn policy_fails(r: &Value) -> usize {
    r["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .filter(|c| {
            let id = c["id"].as_str().unwrap();
            !id.starts_with("host_") && !id.starts_with("dpp_")
        })
        .count()
}

fn verdict(r: &Value, id: &str) -> String {
    clause(r, id)["verdict"].as_str().unwrap().to_owned()
}

/// The evidence of a clause: key → its arguments.
fn evidence(r: &Value, id: &str, key: &str) -> Option<Vec<String>> {
    clause(r, id)["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| {
            e["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        })
}

/// Blob literals of the backend: one that looks sealed (format byte 1, 40 bytes) and a
/// plain-text one.
fn blobs(pg: bool) -> (String, String) {
    let sealed = format!("01{}", "ab".repeat(39));
    if pg {
        (
            format!("'\\x{sealed}'::bytea"),
            "convert_to('Alice Example', 'UTF8')".into(),
        )
    } else {
        (format!("X'{sealed}'"), "'Alice Example'".into())
    }
}

fn order_sql(id: i64, buyer: &str) -> String {
    format!(
        "INSERT INTO orders (id, connection_id, external_id, status, marketplace_status, status_rank, created_at_ms, updated_at_ms, ingested_at_ms, buyer_name) VALUES ({id}, 1, 'T-{id}', 'paid', 'PAID', 1, 0, 0, 0, {buyer})"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_verdicts_follow_their_evidence_on_sqlite() {
    if !require_tool("oathtool", "oathtool", "the compliance test") {
        return;
    }
    let sb = init("dev", "");
    let url = format!("sqlite://{}", sb.data().join("stockade.db").display());
    compliance_flow(sb, &url, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_verdicts_follow_their_evidence_on_postgres() {
    if !require_tool("oathtool", "oathtool", "the compliance test") {
        return;
    }
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    compliance_flow(sb, &url, true).await;
    drop_schema(&schema).await;
}

async fn compliance_flow(sb: Sandbox, url: &str, pg: bool) {
    for (email, role) in [
        ("admin@shop.example", "admin"),
        ("audit@shop.example", "auditor"),
        ("view@shop.example", "viewer"),
        ("op@shop.example", "operator"),
    ] {
        add_user(&sb, email, role);
    }
    let server = Server::start(&sb);
    let (_, admin, _, _) = enroll(&server, "admin@shop.example").await;
    let (_, auditor, _, _) = enroll(&server, "audit@shop.example").await;
    let (_, viewer, _, _) = enroll(&server, "view@shop.example").await;
    let (_, op, _, _) = enroll(&server, "op@shop.example").await;

    // A fresh dev environment: what holds, what does not, what cannot be checked here.
    let r = report(&server, &admin, "en").await;
    assert_eq!(r["environment"], "dev");
    for (id, want) in [
        ("mfa", "pass"),
        ("password", "pass"),
        ("idle_lock", "pass"),
        ("tls", "pass"),
        ("pii", "not_applicable"),
        ("audit", "pass"),
        ("bans", "pass"),
        ("egress", "pass"),
        ("review", "not_applicable"),
        ("isolation", "pass"),
        ("alerts", "fail"),
        ("backups", "fail"),
        ("incident", "fail"),
        ("retention", "pass"),
        ("mirror", "fail"),
        ("host", "cannot_check"),
    ] {
        assert_eq!(verdict(&r, id), want, "{id}: {}", clause(&r, id));
    }
    // alerts, backups, the audit mirror (none configured in a fresh environment) and
    // incident response (no drill closed yet).
    assert_eq!(policy_fails(&r), 4, "{r}");
    assert!(evidence(&r, "incident", "incident_none").is_some());
    // Compliance report: TLS as served (this server, probed), the plaintext scan, the
    // host checks (whatever this machine shows, each answered) and the Amazon DPP rows.
    assert_eq!(evidence(&r, "tls", "tls_served").unwrap()[2], "TLS 1.3");
    assert_eq!(verdict(&r, "pii_scan"), "not_applicable");
    for id in [
        "host_ssh",
        "host_firewall",
        "host_fail2ban",
        "host_updates",
        "host_files",
        "host_user",
    ] {
        assert!(
            !clause(&r, id)["evidence"].as_array().unwrap().is_empty(),
            "{id}"
        );
    }
    assert_eq!(verdict(&r, "dpp_transit"), "pass");
    assert_eq!(
        verdict(&r, "dpp_logging"),
        "fail",
        "rests on the mirror and alerts"
    );
    assert!(evidence(&r, "mirror", "mirror_off").is_some());
    // backup: no backup, no schedule, no drill yet; a backup and a drill are evidence.
    assert!(evidence(&r, "backups", "backup_none").is_some());
    assert!(evidence(&r, "backups", "backup_no_drill").is_some());
    std::fs::write(sb.dir.join("pass.txt"), "compliance drill passphrase\n").unwrap();
    sb.run(&[
        "--env",
        "dev",
        "backup",
        "create",
        "--to",
        "b.age",
        "--passphrase-file",
        "pass.txt",
    ])
    .expect_code(0);
    sb.run(&[
        "--env",
        "dev",
        "backup",
        "drill",
        "b.age",
        "--passphrase-file",
        "pass.txt",
    ])
    .expect_code(0);
    let r = report(&server, &admin, "en").await;
    assert!(
        evidence(&r, "backups", "backup_last").is_some(),
        "{}",
        clause(&r, "backups")
    );
    assert!(
        evidence(&r, "backups", "backup_drill").is_some(),
        "{}",
        clause(&r, "backups")
    );
    assert!(evidence(&r, "backups", "backup_unscheduled").is_some());
    assert_eq!(verdict(&r, "backups"), "fail", "no schedule yet");
    assert_eq!(policy_fails(&r), 4, "{r}");
    assert_eq!(evidence(&r, "mfa", "mfa_users").unwrap(), ["4", "4"]);
    let dates = evidence(&r, "tls", "tls_cert").expect("the served certificate's dates");
    assert!(
        dates[0] < dates[1] && dates[1].starts_with("20"),
        "{dates:?}"
    );
    assert!(evidence(&r, "tls", "tls_dev_cert").is_some());
    let audit = evidence(&r, "audit", "audit_ok").unwrap();
    assert_eq!(audit[2].len(), 64, "the head hash: {audit:?}");
    assert_eq!(evidence(&r, "isolation", "env_database").unwrap(), ["dev"]);
    assert!(
        clause(&r, "mfa")["title"]
            .as_str()
            .unwrap()
            .contains("Multi-factor")
    );
    let zh = report(&server, &admin, "zh-CN").await;
    assert_eq!(zh["language"], "zh");
    assert!(
        clause(&zh, "mfa")["title"]
            .as_str()
            .unwrap()
            .contains("多因素")
    );

    // The page: admin and auditor, in both languages; nobody else, and no link for them.
    for who in [&admin, &auditor] {
        let (s, zh_page) = get(&server, who, "/compliance", "zh-CN,zh;q=0.9").await;
        assert_eq!(s, StatusCode::OK, "{zh_page}");
        let (_, en_page) = get(&server, who, "/compliance", "en").await;
        assert_translated("/compliance", &zh_page, &en_page);
        assert!(en_page.contains("id=\"clause-mfa\"") && en_page.contains("Cannot check here"));
        // The Amazon DPP rows: a second table on the page.
        assert!(
            en_page.contains("id=\"dpp-clauses\"") && en_page.contains("id=\"clause-dpp_logging\"")
        );
        assert!(zh_page.contains("亚马逊数据保护政策"));
        assert!(zh_page.contains("无法在此检查") && zh_page.contains("合规"));
        assert!(en_page.contains("href=\"/compliance\""));
    }
    for who in [&viewer, &op] {
        let (s, page) = get(&server, who, "/compliance", "en").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
        let (s, body) = server.get_with("/api/v1/compliance", who).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "forbidden");
        let (_, overview) = get(&server, who, "/overview", "en").await;
        assert!(!overview.contains("href=\"/compliance\""), "{overview}");
    }

    // A user who has not enrolled TOTP fails the MFA clause, until disabled.
    add_user(&sb, "late@shop.example", "viewer");
    let r = report(&server, &auditor, "en").await;
    assert_eq!(verdict(&r, "mfa"), "fail");
    assert_eq!(evidence(&r, "mfa", "mfa_missing").unwrap(), ["1"]);
    sb.run(&["user", "disable", "--email", "late@shop.example"])
        .expect_code(0);
    assert_eq!(
        verdict(&report(&server, &auditor, "en").await, "mfa"),
        "pass"
    );

    // Buyer fields: sealed ones pass; one stored in plain text fails.
    let (sealed, plain) = blobs(pg);
    tamper(url, &order_sql(9001, &sealed)).await;
    let r = report(&server, &auditor, "en").await;
    assert_eq!(verdict(&r, "pii"), "pass", "{}", clause(&r, "pii"));
    assert_eq!(evidence(&r, "pii", "pii_sealed").unwrap(), ["1", "1"]);
    tamper(url, &order_sql(9002, &plain)).await;
    let r = report(&server, &auditor, "en").await;
    assert_eq!(verdict(&r, "pii"), "fail");
    assert_eq!(evidence(&r, "pii", "pii_unsealed").unwrap(), ["1"]);

    // Bans in force are counted.
    sb.run(&["ban", "add", "203.0.113.77"]).expect_code(0);
    let r = report(&server, &auditor, "en").await;
    assert_eq!(evidence(&r, "bans", "bans_active").unwrap(), ["1"]);

    per_user_language(&server, &viewer, &admin).await;

    // A row changed behind the store's back breaks the chain: the audit clause fails.
    let (_, before) = get(&server, &auditor, "/compliance?fresh=1", "en").await;
    tamper(url, "UPDATE audit SET actor = 'user:someone' WHERE seq = 3").await;
    let r = report(&server, &auditor, "en").await;
    assert_eq!(verdict(&r, "audit"), "fail", "{}", clause(&r, "audit"));
    assert!(evidence(&r, "audit", "audit_broken").is_some());
    // The page shows the evidence it took last (its time on the page) until it is
    // older than 5 minutes or "Check again now" (`?fresh=1`) gathers it at once.
    let (_, shared) = get(&server, &auditor, "/compliance", "en").await;
    assert_eq!(
        shared.matches("verdict-fail").count(),
        before.matches("verdict-fail").count()
    );
    assert!(shared.contains("href=\"/compliance?fresh=1\""));
    let (_, fresh) = get(&server, &auditor, "/compliance?fresh=1", "en").await;
    assert!(fresh.contains("The hash chain is broken"), "{fresh}");
    assert!(!shared.contains("The hash chain is broken"));
    assert_eq!(
        fresh.matches("verdict-fail").count(),
        before.matches("verdict-fail").count() + 1
    );
}

/// The language switch stores a signed-in user's choice; it wins over the browser's
/// `Accept-Language` on every later request, and is audited.
async fn per_user_language(server: &Server, viewer: &Auth, admin: &Auth) {
    let (_, page) = get(server, viewer, "/overview", "en").await;
    assert!(page.contains("lang=\"en\""));
    let res = viewer
        .apply(server.client.get(server.url("/lang?set=zh&back=/overview")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // No language cookie sent: the stored choice decides.
    let (_, page) = get(server, viewer, "/overview", "en-US,en;q=0.9").await;
    assert!(page.contains("lang=\"zh-CN\""), "{page}");
    let (s, rows) = server
        .get_with("/api/v1/audit?action=user.language", admin)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows["rows"].as_array().unwrap().len(), 1, "{rows}");
    assert!(rows["rows"].to_string().contains("zh"), "{rows}");
    // Switching back stores English.
    viewer
        .apply(server.client.get(server.url("/lang?set=en&back=/overview")))
        .send()
        .await
        .unwrap();
    let (_, page) = get(server, viewer, "/overview", "zh-CN").await;
    assert!(page.contains("lang=\"en\""), "{page}");
}

/// The configuration's rules are the evidence: a password rule without the character mix
/// and an idle lock longer than the policy's 15 minutes fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_reads_the_configuration_it_runs_with() {
    if !require_tool("oathtool", "oathtool", "the compliance test") {
        return;
    }
    // A DingTalk channel whose access token was never stored: configured, not delivering.
    let sb = init(
        "dev",
        "[access]\npassword_require_mix = false\nidle_timeout = \"30m\"\n\n\
         [[alerts.channel]]\nname = \"ops-ding\"\nkind = \"dingtalk\"\n\
         url = \"https://oapi.dingtalk.com/robot/send\"\n",
    );
    add_user(&sb, "admin@shop.example", "admin");
    let server = Server::start(&sb);
    let (_, admin, _, _) = enroll(&server, "admin@shop.example").await;
    let r = report(&server, &admin, "en").await;
    assert_eq!(verdict(&r, "password"), "fail");
    assert!(evidence(&r, "password", "pw_mix_off").is_some());
    assert_eq!(verdict(&r, "idle_lock"), "fail");
    assert_eq!(evidence(&r, "idle_lock", "idle").unwrap(), ["30", "15"]);
    assert_eq!(evidence(&r, "alerts", "alert_channels").unwrap(), ["1"]);
    assert!(evidence(&r, "alerts", "alert_none").is_none());
    // Its verdict follows whether it delivers (the status the alert pipeline recorded).
    let down = evidence(&r, "alerts", "alert_not_delivering").is_some();
    assert_eq!(verdict(&r, "alerts"), if down { "fail" } else { "pass" });
}

/// In prod the four-eyes rule applies (an active version nobody else approved fails it)
/// and a generated development certificate does not pass for TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_in_prod_holds_four_eyes_and_a_real_certificate() {
    if !require_tool("oathtool", "oathtool", "the compliance test") {
        return;
    }
    let sb = init("prod", "[server]\nself_signed = true\n");
    add_user(&sb, "admin@shop.example", "admin");
    let server = Server::start(&sb);
    let (_, admin, _, _) = enroll(&server, "admin@shop.example").await;
    let r = report(&server, &admin, "en").await;
    assert_eq!(r["environment"], "prod");
    assert_eq!(verdict(&r, "review"), "pass", "{}", clause(&r, "review"));
    assert_eq!(evidence(&r, "review", "review_counts").unwrap(), ["0", "0"]);
    assert_eq!(verdict(&r, "tls"), "fail", "{}", clause(&r, "tls"));
    let url = format!("sqlite://{}", sb.data().join("stockade.db").display());
    tamper_prod(
        &url,
        "INSERT INTO workflows (name, enabled, active_version, latest_version, created_at_ms, updated_at_ms) VALUES ('restock', 1, 1, 1, 0, 0)",
    )
    .await;
    tamper_prod(
        &url,
        "INSERT INTO workflow_versions (name, version, content, content_sha256, lint_passed, lint_problems, state, applied_by, applied_at_ms) VALUES ('restock', 1, 'x', 'x', 1, 0, 'active', 'user:usr_1', 0)",
    )
    .await;
    let r = report(&server, &admin, "en").await;
    assert_eq!(verdict(&r, "review"), "fail");
    assert_eq!(evidence(&r, "review", "review_counts").unwrap(), ["1", "1"]);
}

async fn tamper_prod(url: &str, sql: &str) {
    let url = stockade_store::DatabaseUrl::parse(url).unwrap();
    let store =
        stockade_store::Store::open(&url, stockade_core::Environment::Prod, &Default::default())
            .await
            .unwrap();
    store.tamper_for_tests(sql).await.unwrap();
    store.close().await;
}

/// GET a page with a cookie header and a language.
async fn page(server: &Server, path: &str, cookie: &str, lang: &str) -> (StatusCode, String) {
    let res = server
        .client
        .get(server.url(path))
        .header("cookie", cookie)
        .header("accept-language", lang)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// Sign in through the form; returns the session cookie header and where it went.
async fn form_sign_in(server: &Server, email: &str, lang: &str) -> (String, String) {
    let res = server
        .client
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    let (csrf, _) = set_cookie(res.headers(), "__Host-stockade_csrf").unwrap();
    let res = server
        .client
        .post(server.url("/login"))
        .header("cookie", format!("__Host-stockade_csrf={csrf}"))
        .header("accept-language", lang)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let (session, _) = set_cookie(res.headers(), "__Host-stockade").unwrap();
    (format!("__Host-stockade={session}"), to)
}

/// The CSRF token of a page's form.
fn form_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Enroll through the pages in `lang`; returns the recovery-codes page and the session.
async fn form_enroll(server: &Server, email: &str, lang: &str) -> (String, String, String) {
    let (cookie, to) = form_sign_in(server, email, lang).await;
    assert_eq!(to, "/mfa/enroll");
    let (_, en) = page(server, "/mfa/enroll", &cookie, "en").await;
    let key = en
        .split("Key: <code>")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let res = server
        .client
        .post(server.url("/mfa/enroll"))
        .header("cookie", &cookie)
        .header("accept-language", lang)
        .form(&[("csrf", form_csrf(&en)), ("code", oathtool(key, 0))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (session, _) = set_cookie(res.headers(), "__Host-stockade").unwrap();
    (
        res.text().await.unwrap(),
        format!("__Host-stockade={session}"),
        key.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_pages_are_translated_and_api_logout_answers_json() {
    if !require_tool("oathtool", "oathtool", "the sign-in pages test") {
        return;
    }
    let sb = init("dev", "");
    add_user(&sb, "zh@shop.example", "viewer");
    add_user(&sb, "en@shop.example", "viewer");
    let server = Server::start(&sb);
    let none = "x=1";

    // Sign-in page: the language from Accept-Language, with the switch and the banner.
    let (_, zh) = page(&server, "/login", none, "zh-CN").await;
    let (_, en) = page(&server, "/login", none, "en").await;
    assert_translated("/login", &zh, &en);
    assert!(zh.contains("登录") && zh.contains("开发环境") && zh.contains("id=\"lang-switch\""));
    // …or from the language cookie.
    let (_, zh2) = page(&server, "/login", "stockade_lang=zh", "en").await;
    assert!(zh2.contains("lang=\"zh-CN\""));

    // Enrollment (same session, both languages), then recovery codes in each language.
    let (cookie, _) = form_sign_in(&server, "zh@shop.example", "zh").await;
    let (_, zh) = page(&server, "/mfa/enroll", &cookie, "zh-CN").await;
    let (_, en) = page(&server, "/mfa/enroll", &cookie, "en").await;
    assert_translated("/mfa/enroll", &zh, &en);
    assert!(zh.contains("设置两步验证"), "{zh}");
    let (zh_codes, zh_session, zh_key) = form_enroll(&server, "zh@shop.example", "zh-CN").await;
    let (en_codes, en_session, _) = form_enroll(&server, "en@shop.example", "en").await;
    assert_translated("recovery codes", &zh_codes, &en_codes);
    assert!(zh_codes.contains("恢复码") && !zh_codes.contains("id=\"lang-switch\""));

    // The code prompt.
    let (cookie, to) = form_sign_in(&server, "zh@shop.example", "zh").await;
    assert_eq!(to, "/mfa");
    let (_, zh) = page(&server, "/mfa", &cookie, "zh-CN").await;
    let (_, en) = page(&server, "/mfa", &cookie, "en").await;
    assert_translated("/mfa", &zh, &en);
    // A wrong code: the refusal in the page's language.
    let res = server
        .client
        .post(server.url("/mfa"))
        .header("cookie", &cookie)
        .header("accept-language", "zh-CN")
        .form(&[("csrf", form_csrf(&zh)), ("code", "000000".into())])
        .send()
        .await
        .unwrap();
    let wrong = res.text().await.unwrap();
    if !wrong.contains("验证码无效") {
        // 000000 may be the right code (one in a million): nothing to check then.
        assert!(!wrong.contains("did not work"), "{wrong}");
    }
    let _ = zh_key;

    // An error page (a viewer opening the audit log), in both languages.
    let (s, zh) = page(&server, "/audit", &zh_session, "zh-CN").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, en) = page(&server, "/audit", &zh_session, "en").await;
    assert_translated("error page", &zh, &en);
    assert!(
        zh.contains("请求被拒绝") && en.contains("may not do this"),
        "{zh}"
    );

    // Signed out, in each language.
    let sign_out = |cookie: String, lang: &'static str| {
        let server = &server;
        async move {
            let (_, home) = page(server, "/overview", &cookie, "en").await;
            let res = server
                .client
                .post(server.url("/logout"))
                .header("cookie", &cookie)
                .header("accept-language", lang)
                .header("x-csrf-token", form_csrf(&home))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.text().await.unwrap()
        }
    };
    let zh = sign_out(zh_session, "zh-CN").await;
    let en = sign_out(en_session, "en").await;
    assert_translated("signed out", &zh, &en);
    assert!(zh.contains("您已退出登录") && en.contains("You are signed out"));

    // The API's sign-out without a session: its JSON 401, not the sign-in page.
    let res = server
        .client
        .post(server.url("/api/v1/auth/logout"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    // A page's sign-out without a session still goes to the sign-in page.
    let res = server
        .client
        .post(server.url("/logout"))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/login");
}
