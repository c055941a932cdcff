//! The Workflows, Executions and Alerts pages in headless Chromium against a real prod
//! `stockade serve` (four eyes apply there): user A applies a workflow with the CLI and
//! cannot approve it in the console (the refusal is shown on the page); user B signs in
//! with TOTP, approves it, sees the diff of a second version, approves that too, runs it
//! and watches its step timeline finish; the Alerts page shows a ban alert
//! delivered to the DingTalk bot simulator and sends a test message. Screenshots of each
//! page at laptop and phone widths, in English and Chinese, go to `target/screenshots/`.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::json;
use stockade_sandbox::bots::{Bots, BotsConfig, DingTalkRobotSpec};

use crate::browser::{path_of, screenshot_dir};
use crate::harness::{Sandbox, require_tool};
use crate::server::{PASSWORD, Server, add_user, init, oathtool};
use crate::webdriver::Browser;

const V1: &str = "name: restock-note\ndescription: note a restock in the audit log\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: restock checked }\n";
const V2: &str = "name: restock-note\ndescription: note a restock in the audit log\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: restock checked }\n  - id: confirm\n    uses: audit.note\n    with: { message: restock confirmed }\n";

fn write(sb: &Sandbox, name: &str, text: &str) -> String {
    let path = sb.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Sign in through the pages and enroll TOTP (the code from `oathtool`).
async fn sign_in(b: &Browser, server: &Server, email: &str) {
    b.goto(&server.url("/login")).await;
    b.fill("#email", email).await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    assert_eq!(path_of(&b.current_url().await), "/mfa/enroll");
    let key = b.text(".qr + p code").await;
    b.fill("#code", &oathtool(&key, 0)).await;
    b.click("button[type=submit]").await;
    assert_eq!(b.count("ol.codes li").await, 10, "{}", b.source().await);
}

/// Both widths of one page.
async fn shoot(b: &Browser, server: &Server, path: &str, name: &str) {
    let shots = screenshot_dir();
    for (w, h) in [(1366, 768), (360, 740)] {
        b.set_size(w, h).await;
        b.goto(&server.url(path)).await;
        b.screenshot(&shots.join(format!("console-{name}-{w}.png")))
            .await;
    }
    b.set_size(1366, 768).await;
}

fn browser_binaries() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    crate::webdriver::browser_binaries("the workflow pages' browser test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_user_approves_runs_and_watches_a_workflow_in_chromium() {
    if !require_tool("oathtool", "oathtool", "the workflow pages' browser test") {
        return;
    }
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let bots = Bots::start(BotsConfig::default()).await.unwrap();
    let ding = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ding".into(),
        sign: true,
        keywords: vec!["Stockade".into()],
        ip_allow: vec![],
    });
    let probe = Sandbox::new();
    let ca = probe.dir.join("bots-ca.pem");
    std::fs::write(&ca, &bots.ca_pem).unwrap();
    let sb = init(
        "prod",
        &format!(
            "[server]\nself_signed = true\n\n[egress]\nextra_root_certs = [\"{}\"]\n\n[alerts]\n\
             [[alerts.channel]]\nname = \"ops-dingtalk\"\nkind = \"dingtalk\"\nurl = \"{}/robot/send\"\nkeyword = \"Stockade\"\nmin_severity = \"warning\"\n",
            ca.display(),
            bots.base_url
        ),
    );
    let secrets = sb.dir.join("ding.json");
    std::fs::write(
        &secrets,
        json!({"access_token": ding.access_token, "secret": ding.secret}).to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    sb.run(&[
        "alert",
        "secret",
        "set",
        "ops-dingtalk",
        "--credentials-file",
        secrets.to_str().unwrap(),
    ])
    .expect_code(0);
    add_user(&sb, "ann@shop.example", "operator");
    add_user(&sb, "bo@shop.example", "operator");
    let v1 = write(&sb, "v1.yaml", V1);
    sb.run(&["workflow", "apply", "--as", "ann@shop.example", &v1])
        .expect_code(0);
    let server = Server::start(&sb);
    let b = Browser::start(&chromium, &chromedriver, sb.dir.join("chromium-profile")).await;
    b.set_size(1366, 768).await;

    // A: the author. The console offers the review, and the registry refuses it inline.
    sign_in(&b, &server, "ann@shop.example").await;
    b.goto(&server.url("/workflows/restock-note")).await;
    b.click("#v-1 button.approve").await;
    let refusal = b.text("#refusal").await;
    assert!(
        refusal.contains("another user must approve it"),
        "{refusal}"
    );
    assert!(b.text("#v-1").await.contains("awaiting approval"));
    b.click("form[action='/logout'] button").await;

    // B: signs in with TOTP and approves.
    sign_in(&b, &server, "bo@shop.example").await;
    b.goto(&server.url("/workflows")).await;
    assert!(b.text("#wf-1").await.contains("awaiting approval"));
    b.goto(&server.url("/workflows/restock-note")).await;
    b.click("#v-1 button.approve").await;
    assert!(b.text(".notice").await.contains("Version approved"));
    assert!(b.text("#v-1").await.contains("in effect"));

    // A second version: B sees its diff, approves it, runs it.
    let v2 = write(&sb, "v2.yaml", V2);
    sb.run(&["workflow", "apply", "--as", "ann@shop.example", &v2])
        .expect_code(0);
    b.goto(&server.url("/workflows/restock-note")).await;
    let diff = b.text("#diff-lines").await;
    assert!(diff.contains("+  - id: confirm"), "{diff}");
    assert!(
        b.text("#v-1").await.contains("bo@shop.example"),
        "the approver by email"
    );
    shoot(&b, &server, "/workflows/restock-note", "workflow-en").await;
    shoot(
        &b,
        &server,
        "/workflows/restock-note#diff",
        "workflow-diff-en",
    )
    .await;
    b.click("#v-2 button.approve").await;
    assert!(b.text("#v-2").await.contains("in effect"));
    shoot(&b, &server, "/workflows", "workflows-en").await;
    b.goto(&server.url("/workflows/restock-note")).await;
    b.click("#run").await;
    let execution = path_of(&b.current_url().await);
    assert!(execution.starts_with("/executions/job_"), "{execution}");
    let start = Instant::now();
    loop {
        b.goto(&server.url(&execution)).await;
        if b.text("#run-state").await == "finished OK" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the run did not finish: {}",
            b.source().await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        b.count("#timeline li.step.ok").await,
        2,
        "{}",
        b.source().await
    );
    let timeline = b.text("#timeline").await;
    assert!(
        timeline.contains("note") && timeline.contains("confirm"),
        "{timeline}"
    );
    assert!(b.count("#rerun").await == 1 && b.count("#cancel").await == 0);
    shoot(&b, &server, &execution, "execution-en").await;
    shoot(&b, &server, "/executions", "executions-en").await;

    // Alerts: a ban is alerted to the bot; B sends a test message from the page.
    sb.run(&["ban", "add", "203.0.113.77", "--duration", "1h"])
        .expect_code(0);
    let start = Instant::now();
    while bots.accepted("ding").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no ban alert reached the bot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The bot has it; the delivery is recorded as sent right after.
    let start = Instant::now();
    loop {
        b.goto(&server.url("/alerts")).await;
        let alerts = b.text("#alerts").await;
        assert!(alerts.contains("banned"), "{alerts}");
        if alerts.contains("sent ✓") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{alerts}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.click("#channel-1 .test-send").await;
    let tested = b.text("#tested").await;
    assert!(
        tested.contains("Delivered") && tested.contains("ops-dingtalk"),
        "{tested}"
    );
    assert_eq!(bots.accepted("ding").len(), 2);
    shoot(&b, &server, "/alerts", "alerts-en").await;

    // The same pages in Chinese.
    b.click("#lang-switch").await;
    let main = b.text("main").await;
    assert!(
        main.contains("告警通道") && main.contains("已发送"),
        "{main}"
    );
    shoot(&b, &server, "/alerts", "alerts-zh").await;
    shoot(&b, &server, "/workflows", "workflows-zh").await;
    shoot(
        &b,
        &server,
        "/workflows/restock-note?from=1&to=2#diff",
        "workflow-diff-zh",
    )
    .await;
    shoot(&b, &server, &execution, "execution-zh").await;
    drop(b);
    drop(server);
    sb.run(&["audit", "verify"]).expect_code(0);
    let export = sb.run(&["audit", "export"]).expect_code(0).stdout();
    assert!(export.contains("workflow.approve") && export.contains("alert.test"));
    bots.shutdown().await;
}
