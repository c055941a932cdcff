//! `[alerts] language = "zh"` through the binary and the bot simulators: a ban reaches
//! DingTalk and Feishu in Simplified Chinese (title, labels, hint, frame) with the robot's
//! keyword and without the full address; the console's test-send (an operator's session,
//! audited as that user) and the API's reach the bots in Chinese; a viewer sees no
//! test-send and is refused it; an unknown language is refused when the config is read.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use stockade_sandbox::bots::{Bots, BotsConfig, DingTalkRobotSpec, FeishuBotSpec, Received};

use crate::harness::{Sandbox, require_tool};
use crate::server::{Auth, Server, add_user, enroll, init};

fn shown(r: &Received) -> String {
    let b = &r.body;
    [
        &b["actionCard"]["title"],
        &b["actionCard"]["text"],
        &b["markdown"]["title"],
        &b["markdown"]["text"],
        &b["card"]["header"]["title"]["content"],
        &b["card"]["body"]["elements"][0]["content"],
    ]
    .iter()
    .filter_map(|v| v.as_str())
    .collect::<Vec<_>>()
    .join("\n")
}

fn secrets(sb: &Sandbox, name: &str, channel: &str, value: serde_json::Value) {
    let path = sb.dir.join(format!("{name}.json"));
    std::fs::write(&path, value.to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    sb.run(&[
        "alert",
        "secret",
        "set",
        channel,
        "--credentials-file",
        path.to_str().unwrap(),
    ])
    .expect_code(0);
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_form(server: &Server, auth: &Auth, path: &str, body: &str) -> (StatusCode, String) {
    let res = auth
        .apply(server.client.post(server.url(path)))
        .header("accept-language", "zh-CN")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_alert_messages_reach_the_bots_and_the_console_sends_tests() {
    if !require_tool("oathtool", "oathtool", "the Chinese alerts test") {
        return;
    }
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
    let channels = format!(
        "[egress]\nextra_root_certs = [\"{}\"]\n\n[alerts]\nlanguage = \"LANG\"\ndashboard_url = \"https://stockade.example.com\"\n\n\
         [[alerts.channel]]\nname = \"ops-ding\"\nkind = \"dingtalk\"\nurl = \"{base}/robot/send\"\nkeyword = \"Stockade\"\nmin_severity = \"warning\"\n\n\
         [[alerts.channel]]\nname = \"ops-feishu\"\nkind = \"feishu\"\nurl = \"{base}/open-apis/bot/v2/hook\"\n",
        ca.display()
    );
    // An unknown language is refused when the configuration is read.
    let bad = init("dev", &channels.replace("LANG", "fr"));
    let err = bad.run(&["config"]).expect_code(2).stderr();
    assert!(
        err.contains("[alerts] language") && err.contains("\"zh\""),
        "{err}"
    );

    let sb = init("dev", &channels.replace("LANG", "zh"));
    secrets(
        &sb,
        "ding",
        "ops-ding",
        json!({"access_token": ding.access_token, "secret": ding.secret}),
    );
    secrets(
        &sb,
        "feishu",
        "ops-feishu",
        json!({"hook_id": feishu.hook_id, "secret": feishu.secret}),
    );
    add_user(&sb, "op@shop.example", "operator");
    add_user(&sb, "view@shop.example", "viewer");
    let server = Server::start(&sb);

    // A ban: both bots get it in Chinese, with the keyword, the network only.
    sb.run(&["ban", "add", "203.0.113.77", "--duration", "1h"])
        .expect_code(0);
    wait_for("the ban on both bots", || {
        !bots.accepted("ding").is_empty() && !bots.accepted("feishu").is_empty()
    })
    .await;
    for r in [&bots.accepted("ding")[0], &bots.accepted("feishu")[0]] {
        let text = shown(r);
        assert!(text.contains("某个地址因多次认证失败被封禁"), "{text}");
        assert!(
            text.contains("网段: 203.0.113.0/24") && text.contains("开发环境"),
            "{text}"
        );
        assert!(
            text.contains("警告") && text.contains("stockade ban remove"),
            "{text}"
        );
        assert!(
            !text.contains("banned") && !text.contains("Network"),
            "{text}"
        );
    }
    assert!(
        shown(&bots.accepted("ding")[0]).contains("Stockade"),
        "the robot's keyword"
    );
    assert_eq!(
        bots.accepted("ding")[0].body["actionCard"]["singleTitle"],
        "打开控制台"
    );

    // The console's test-send: an operator's, audited as that user, in Chinese.
    let (_, op, _, _) = enroll(&server, "op@shop.example").await;
    let (_, viewer, _, _) = enroll(&server, "view@shop.example").await;
    // The bots have it; the deliveries are recorded as sent right after.
    let start = Instant::now();
    let page = loop {
        let page = viewer
            .apply(server.client.get(server.url("/alerts")))
            .header("accept-language", "zh-CN")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if page.matches("已发送").count() >= 2 || start.elapsed() > Duration::from_secs(15) {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        page.contains("ops-feishu") && page.contains("已发送"),
        "{page}"
    );
    assert!(
        !page.contains("action=\"/alerts/test\""),
        "a viewer has no test-send"
    );
    let (status, _) = post_form(&server, &viewer, "/alerts/test", "channel=ops-feishu").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(bots.accepted("feishu").len(), 1);
    let (status, page) = post_form(&server, &op, "/alerts/test", "channel=ops-feishu").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("已送达") && page.contains("ops-feishu"),
        "{page}"
    );
    assert_eq!(bots.accepted("feishu").len(), 2);
    let test = shown(&bots.accepted("feishu")[1]);
    assert!(
        test.contains("Stockade 测试告警：此通道工作正常") && test.contains("告警通道: ops-feishu"),
        "{test}"
    );
    let (status, page) = post_form(&server, &op, "/alerts/test", "channel=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("没有该名称的告警通道"), "{page}");

    // The API's test-send: the same, for an operator's key.
    let key = sb
        .run(&["apikey", "create", "--name", "ops", "--role", "operator"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    let res = server
        .client
        .post(server.url("/api/v1/alerts/channels/ops-ding/test"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["delivered"], true, "{body}");
    wait_for("the API's test message", || {
        bots.accepted("ding").len() == 2
    })
    .await;
    assert!(shown(&bots.accepted("ding")[1]).contains("测试告警"));

    for r in bots.received() {
        let t = format!("{}{}", r.query, r.body);
        assert!(
            !t.contains("203.0.113.77"),
            "the full address reached a bot"
        );
    }
    drop(server);
    let export = sb
        .run(&["audit", "export", "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    let tests: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("\"alert.test\""))
        .collect();
    assert_eq!(tests.len(), 2, "{export}");
    assert!(
        tests.iter().any(|l| l.contains("\"user:")),
        "the console's test is the user's: {tests:?}"
    );
    sb.run(&["audit", "verify"]).expect_code(0);
    bots.shutdown().await;
}
