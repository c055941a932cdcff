//! Alerts through the binary: channels in stockade.toml, secrets set from a private file,
//! `alert test` against the bot simulators (right and wrong secrets), and a running
//! `stockade serve` alerting security events other processes record, with the dashboard
//! API showing the channels' state.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use stockade_sandbox::bots::{Bots, BotsConfig, DingTalkRobotSpec, FeishuBotSpec, Received};

use crate::harness::Sandbox;
use crate::server::{Auth, Server, init};

fn secret_file(sb: &Sandbox, name: &str, value: serde_json::Value) -> String {
    let path = sb.dir.join(format!("{name}.json"));
    std::fs::write(&path, value.to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn shown(r: &Received) -> String {
    let b = &r.body;
    format!(
        "{}{}{}{}{}{}",
        b["actionCard"]["title"].as_str().unwrap_or(""),
        b["actionCard"]["text"].as_str().unwrap_or(""),
        b["markdown"]["title"].as_str().unwrap_or(""),
        b["markdown"]["text"].as_str().unwrap_or(""),
        b["card"]["header"]["title"]["content"]
            .as_str()
            .unwrap_or(""),
        b["card"]["body"]["elements"][0]["content"]
            .as_str()
            .unwrap_or("")
    )
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_channels_from_config_test_and_serve() {
    let bots = Bots::start(BotsConfig::default()).await.unwrap();
    let ding = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ding".into(),
        sign: true,
        keywords: vec!["Stockade".into()],
        ip_allow: vec![],
    });
    let feishu = bots.add_feishu(FeishuBotSpec {
        name: "feishu".into(),
        sign: true,
        keywords: vec![],
        ip_allow: vec![],
    });
    let probe = Sandbox::new();
    let ca = probe.dir.join("bots-ca.pem");
    std::fs::write(&ca, &bots.ca_pem).unwrap();
    let base = &bots.base_url;
    let sb = init(
        "dev",
        &format!(
            "[egress]\nextra_root_certs = [\"{}\"]\n\n[alerts]\ndashboard_url = \"https://stockade.example.com\"\n\n\
             [[alerts.channel]]\nname = \"ops-ding\"\nkind = \"dingtalk\"\nurl = \"{base}/robot/send\"\nkeyword = \"Stockade\"\nmin_severity = \"warning\"\n\n\
             [[alerts.channel]]\nname = \"ops-feishu\"\nkind = \"feishu\"\nurl = \"{base}/open-apis/bot/v2/hook\"\nsources = [\"access\", \"alerts\"]\n",
            ca.display()
        ),
    );
    // Secrets are missing until set; status says which and how.
    let status = sb.run(&["alert", "status"]).expect_code(0).stdout();
    assert!(
        status
            .contains("MISSING SECRETS access_token, secret (stockade alert secret set ops-ding)"),
        "{status}"
    );
    // A world-readable file is refused; a field of another kind is refused by name.
    let loose = sb.dir.join("loose.json");
    std::fs::write(&loose, "{}").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sb
        .run(&[
            "alert",
            "secret",
            "set",
            "ops-ding",
            "--credentials-file",
            loose.to_str().unwrap(),
        ])
        .expect_code(2);
    assert!(out.stderr().contains("chmod 600"), "{}", out.stderr());
    let wrong = secret_file(&sb, "wrong", json!({"app_key": "x"}));
    let out = sb
        .run(&[
            "alert",
            "secret",
            "set",
            "ops-ding",
            "--credentials-file",
            &wrong,
        ])
        .expect_code(2);
    assert!(
        out.stderr().contains("no secret field \"app_key\""),
        "{}",
        out.stderr()
    );

    let d = secret_file(
        &sb,
        "ding",
        json!({"access_token": ding.access_token, "secret": ding.secret}),
    );
    let out = sb
        .run(&[
            "alert",
            "secret",
            "set",
            "ops-ding",
            "--credentials-file",
            &d,
        ])
        .expect_code(0)
        .stdout();
    assert!(!out.contains(ding.secret.as_deref().unwrap()) && !out.contains(&ding.access_token));
    // Feishu with a wrong signing secret first.
    let f = secret_file(
        &sb,
        "feishu",
        json!({"hook_id": feishu.hook_id, "secret": "not-the-secret"}),
    );
    sb.run(&[
        "alert",
        "secret",
        "set",
        "ops-feishu",
        "--credentials-file",
        &f,
    ])
    .expect_code(0);

    let ok = sb
        .run(&["alert", "test", "--channel", "ops-ding"])
        .expect_code(0)
        .stdout();
    assert!(ok.contains("delivered") && ok.contains("errcode 0"), "{ok}");
    let bad = sb
        .run(&["alert", "test", "--channel", "ops-feishu"])
        .expect_code(1);
    let err = bad.stderr();
    assert!(
        err.contains("configuration error")
            && err.contains("19021")
            && err.contains("signing secret"),
        "{err}"
    );
    let unknown = sb
        .run(&["alert", "test", "--channel", "nope"])
        .expect_code(2);
    assert!(
        unknown
            .stderr()
            .contains("configured: ops-ding, ops-feishu"),
        "{}",
        unknown.stderr()
    );
    let f = secret_file(&sb, "feishu2", json!({"secret": feishu.secret}));
    sb.run(&[
        "alert",
        "secret",
        "set",
        "ops-feishu",
        "--credentials-file",
        &f,
    ])
    .expect_code(0);
    sb.run(&["alert", "test", "--channel", "ops-feishu"])
        .expect_code(0);
    assert_eq!(bots.accepted("ding").len(), 1);
    assert!(shown(&bots.accepted("ding")[0]).contains("Test alert"));

    // A running server alerts security events, including those other processes record.
    let server = Server::start(&sb);
    sb.run(&["ban", "add", "203.0.113.77", "--duration", "1h"])
        .expect_code(0);
    wait_for(
        "the ban alert on both channels",
        Duration::from_secs(10),
        || {
            bots.accepted("ding")
                .iter()
                .any(|r| shown(r).contains("banned"))
                && bots
                    .accepted("feishu")
                    .iter()
                    .any(|r| shown(r).contains("banned"))
        },
    )
    .await;
    let ban = bots
        .accepted("feishu")
        .into_iter()
        .find(|r| shown(r).contains("banned"))
        .unwrap();
    let text = shown(&ban);
    assert!(
        text.contains("203.0.113.0/24") && !text.contains("203.0.113.77"),
        "{text}"
    );
    // The dashboard API shows the channels' state and the recent alerts.
    let key = sb
        .run(&["apikey", "create", "--name", "dash", "--role", "viewer"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    let (status, body) = server
        .get_with("/api/v1/alerts", &Auth::Key(key.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let channels = body["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 2, "{body}");
    assert!(channels.iter().all(|c| c["status"] == "ok"), "{body}");
    assert!(
        body["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "ban"),
        "{body}"
    );
    let list = sb.run(&["alert", "list"]).expect_code(0).stdout();
    assert!(
        list.contains("ops-feishu") && list.contains("sent") && list.contains("banned"),
        "{list}"
    );
    for r in bots.received() {
        let t = format!("{}{}", r.query, r.body);
        assert!(
            !t.contains("203.0.113.77"),
            "the full address reached a bot"
        );
    }
    drop(server);
    sb.run(&["audit", "verify"]).expect_code(0);
    bots.shutdown().await;
}
