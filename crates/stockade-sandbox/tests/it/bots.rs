//! The DingTalk, DingTalk app, Feishu and generic webhook bot simulators over real HTTPS.

use std::time::Duration;

use serde_json::{Value, json};
use stockade_sandbox::bots::{
    BotFault, BotKind, Bots, BotsConfig, DingTalkAppSpec, DingTalkRobot, DingTalkRobotSpec,
    FeishuBotSpec, Received, WebhookSpec, dingtalk_sign, feishu_sign, webhook_signature,
};

fn client_with_timeout(bots: &Bots, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(bots.ca_pem.as_bytes()).unwrap()])
        .timeout(timeout)
        .build()
        .unwrap()
}

fn client(bots: &Bots) -> reqwest::Client {
    client_with_timeout(bots, Duration::from_secs(10))
}

async fn start(config: BotsConfig) -> Bots {
    Bots::start(config).await.unwrap()
}

fn now_ms() -> i64 {
    stockade_core::time::now_ms()
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POST raw bytes as JSON; (status, parsed body or Null).
async fn post_raw(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let r = http
        .post(url)
        .header("content-type", "application/json;charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    post_raw(http, url, serde_json::to_vec(body).unwrap()).await
}

fn dt(errcode: u64, errmsg: &str) -> Value {
    json!({"errcode": errcode, "errmsg": errmsg})
}

fn fs(code: u64, msg: &str) -> Value {
    json!({"code": code, "data": {}, "msg": msg})
}

fn fs_ok() -> Value {
    json!({"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"})
}

fn markdown(title: &str, text: &str) -> Value {
    json!({"msgtype":"markdown","markdown":{"title": title, "text": text}})
}

/// A signed DingTalk URL with an explicit (already encoded) sign query value.
fn dt_url(robot: &DingTalkRobot, ts: i64, sign_query_value: &str) -> String {
    format!(
        "{}&timestamp={ts}&sign={sign_query_value}",
        robot.webhook_url
    )
}

#[test]
fn golden_vectors() {
    assert_eq!(
        dingtalk_sign("this is secret", "1577262236757"),
        "hmPWwU+7lVdm3ZZz0r9tSfx0L4Q26jWOZr9+Gs6EZQM="
    );
    assert_eq!(
        enc(&dingtalk_sign("this is secret", "1577262236757")),
        "hmPWwU%2B7lVdm3ZZz0r9tSfx0L4Q26jWOZr9%2BGs6EZQM%3D"
    );
    assert_eq!(
        feishu_sign("demo", "1599360473"),
        "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
    );
}

#[tokio::test]
async fn dingtalk_accepts_signed_messages_and_records_them() {
    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let robot = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ops".into(),
        sign: true,
        keywords: vec!["ALERT".into()],
        ip_allow: vec![],
    });
    let secret = robot.secret.clone().unwrap();
    assert!(secret.starts_with("SEC") && secret.len() == 67);
    assert_eq!(robot.access_token.len(), 64);
    assert_eq!(
        robot.webhook_url,
        format!(
            "{}/robot/send?access_token={}",
            bots.base_url, robot.access_token
        )
    );

    let msg = markdown("ALERT wf 42", "### Workflow failed\n> run: 9f1c");
    let r = post_json(&http, &robot.signed_url(now_ms()), &msg).await;
    assert_eq!(r, (200, dt(0, "ok")));

    // A client whose query builder encodes the raw base64 itself (encoded exactly once).
    let ts = now_ms().to_string();
    let mut url = reqwest::Url::parse(&robot.webhook_url).unwrap();
    url.query_pairs_mut()
        .append_pair("timestamp", &ts)
        .append_pair("sign", &dingtalk_sign(&secret, &ts));
    let r = http
        .post(url)
        .json(&json!({"msgtype":"text","text":{"content":"ALERT via query()"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), dt(0, "ok"));

    let accepted = bots.accepted("ops");
    assert_eq!(accepted.len(), 2);
    let first = &accepted[0];
    assert_eq!(first.kind, BotKind::DingTalk);
    assert_eq!(first.body, msg);
    assert_eq!(first.body_len, serde_json::to_vec(&msg).unwrap().len());
    assert_eq!(first.code, "0");
    assert_eq!(first.message, "ok");
    assert_eq!(first.http_status, 200);
    assert_eq!(first.path, "/robot/send");
    assert!(first.query.contains(&robot.access_token));
    assert!(first.query.contains("&sign="));
    assert!(
        first
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    );
    assert_eq!(bots.received().len(), 2);
    bots.clear_received();
    assert!(bots.received().is_empty());
    bots.shutdown().await;
}

#[tokio::test]
async fn dingtalk_rejections_have_the_real_error_bodies() {
    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let robot = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ops".into(),
        sign: true,
        keywords: vec!["ALERT".into()],
        ip_allow: vec![],
    });
    let secret = robot.secret.clone().unwrap();
    let good = markdown("ALERT", "workflow failed");
    let now = now_ms();
    let ts = now.to_string();

    // 1. unknown / missing token
    let bad_token = format!("{}/robot/send?access_token=nope", bots.base_url);
    assert_eq!(
        post_json(&http, &bad_token, &good).await,
        (200, dt(300_001, "token is not exist"))
    );
    let no_token = format!("{}/robot/send", bots.base_url);
    assert_eq!(
        post_json(&http, &no_token, &good).await,
        (200, dt(300_001, "token is not exist"))
    );
    // 2. body over 20000 bytes (valid JSON, correctly signed)
    let big = json!({"msgtype":"text","text":{"content": format!("ALERT {}", "x".repeat(20_000))}});
    assert_eq!(
        post_json(&http, &robot.signed_url(now), &big).await,
        (200, dt(460_101, "message too long, exceed 20000 bytes"))
    );
    // 3. not JSON / unknown msgtype / missing object
    assert_eq!(
        post_raw(&http, &robot.signed_url(now), b"ALERT not json".to_vec()).await,
        (200, dt(40_035, "缺少参数 json"))
    );
    for body in [
        json!({"msgtype":"video","video":{"content":"ALERT"}}),
        json!({"text":{"content":"ALERT"}}),
        json!({"msgtype":"text"}),
    ] {
        assert_eq!(
            post_json(&http, &robot.signed_url(now), &body).await,
            (200, dt(40_035, "缺少参数 json"))
        );
    }
    // 5. sign: wrong secret, swapped key/message (Feishu scheme), double encoding,
    // missing sign, 2 h old timestamp, missing timestamp.
    let not_match = (200, dt(310_000, "sign not match"));
    let wrong = enc(&dingtalk_sign("SEC0000", &ts));
    assert_eq!(
        post_json(&http, &dt_url(&robot, now, &wrong), &good).await,
        not_match
    );
    let swapped = enc(&feishu_sign(&secret, &ts));
    assert_eq!(
        post_json(&http, &dt_url(&robot, now, &swapped), &good).await,
        not_match
    );
    let double = enc(&enc(&dingtalk_sign(&secret, &ts)));
    assert_eq!(
        post_json(&http, &dt_url(&robot, now, &double), &good).await,
        not_match
    );
    let missing_sign = format!("{}&timestamp={ts}", robot.webhook_url);
    assert_eq!(post_json(&http, &missing_sign, &good).await, not_match);
    let invalid_ts = (200, dt(310_000, "invalid timestamp"));
    let old = now - 2 * 3600 * 1000;
    assert_eq!(
        post_json(&http, &robot.signed_url(old), &good).await,
        invalid_ts
    );
    let future = now + 2 * 3600 * 1000;
    assert_eq!(
        post_json(&http, &robot.signed_url(future), &good).await,
        invalid_ts
    );
    assert_eq!(
        post_json(&http, &robot.webhook_url, &good).await,
        invalid_ts
    );
    let seconds = now / 1000; // seconds instead of milliseconds
    assert_eq!(
        post_json(&http, &robot.signed_url(seconds), &good).await,
        invalid_ts
    );
    // keyword missing (the keyword only in a URL does not count)
    let no_kw = json!({"msgtype":"actionCard","actionCard":{"title":"Failed","text":"run 9f1c",
        "singleTitle":"Open","singleURL":"https://ops.example/ALERT"}});
    assert_eq!(
        post_json(&http, &robot.signed_url(now), &no_kw).await,
        (200, dt(310_000, "keywords not in content"))
    );
    // IP allowlist
    let fenced = bots.add_dingtalk(DingTalkRobotSpec {
        name: "fenced".into(),
        keywords: vec!["ALERT".into()],
        ip_allow: vec!["10.0.0.0/8".into(), "192.168.1.7".into()],
        ..DingTalkRobotSpec::default()
    });
    assert_eq!(
        post_json(&http, &fenced.webhook_url, &good).await,
        (
            200,
            dt(
                310_000,
                "错误描述:ip 不在白名单中;解决方案:请确认IP地址在白名单中"
            )
        )
    );
    let open = bots.add_dingtalk(DingTalkRobotSpec {
        name: "loopback".into(),
        ip_allow: vec!["127.0.0.0/8".into()],
        keywords: vec!["ALERT".into()],
        ..DingTalkRobotSpec::default()
    });
    assert_eq!(
        post_json(&http, &open.webhook_url, &good).await,
        (200, dt(0, "ok"))
    );

    let received = bots.received();
    assert_eq!(received.len(), 18);
    assert!(
        received
            .iter()
            .all(|r| r.kind == BotKind::DingTalk && r.http_status == 200)
    );
    assert_eq!(received[0].bot, "");
    assert_eq!(received[0].code, "300001");
    assert_eq!(received[2].code, "460101");
    assert!(received[2].body_len > 20_000);
    assert_eq!(received[3].body, Value::Null);
    assert!(bots.accepted("ops").is_empty());
    assert!(bots.accepted("fenced").is_empty());
    assert_eq!(bots.accepted("loopback").len(), 1);
    bots.shutdown().await;
}

#[tokio::test]
async fn dingtalk_rate_limit_starts_a_penalty_that_outlasts_the_window() {
    let bots = start(BotsConfig {
        dingtalk_window: Duration::from_secs(2),
        dingtalk_penalty: Duration::from_secs(3),
        ..BotsConfig::default()
    })
    .await;
    let http = client(&bots);
    let robot = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ops".into(),
        keywords: vec!["ALERT".into()],
        ..DingTalkRobotSpec::default()
    });
    let good = json!({"msgtype":"text","text":{"content":"ALERT"}});
    let too_fast = (
        200,
        dt(130_101, "send too fast, exceed 20 times per minute"),
    );
    // Rejected messages do not count.
    for _ in 0..3 {
        let r = post_json(
            &http,
            &robot.webhook_url,
            &json!({"msgtype":"text","text":{"content":"x"}}),
        )
        .await;
        assert_eq!(r.1["errcode"], 310_000);
    }
    for i in 0..20 {
        let r = post_json(&http, &robot.webhook_url, &good).await;
        assert_eq!(r, (200, dt(0, "ok")), "message {i}");
    }
    assert_eq!(post_json(&http, &robot.webhook_url, &good).await, too_fast);
    assert_eq!(post_json(&http, &robot.webhook_url, &good).await, too_fast);
    // The window has emptied, the penalty still holds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(post_json(&http, &robot.webhook_url, &good).await, too_fast);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        post_json(&http, &robot.webhook_url, &good).await,
        (200, dt(0, "ok"))
    );
    assert_eq!(bots.accepted("ops").len(), 21);
    assert_eq!(
        bots.received()
            .iter()
            .filter(|r| r.code == "130101")
            .count(),
        3
    );

    // With rate limits off nothing is throttled.
    bots.set_rate_limits(false);
    for _ in 0..25 {
        assert_eq!(
            post_json(&http, &robot.webhook_url, &good).await,
            (200, dt(0, "ok"))
        );
    }
    bots.shutdown().await;
}

#[tokio::test]
async fn feishu_accepts_signed_messages_and_rejects_like_feishu() {
    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let bot = bots.add_feishu(FeishuBotSpec {
        name: "lark".into(),
        sign: true,
        keywords: vec!["ALERT".into()],
        ip_allow: vec![],
    });
    assert_eq!(
        bot.webhook_url,
        format!("{}/open-apis/bot/v2/hook/{}", bots.base_url, bot.hook_id)
    );
    assert_eq!(bot.hook_id.len(), 36);
    let secret = bot.secret.clone().unwrap();
    let now = now_ms() / 1000;

    let mut msg = json!({"msg_type":"text","content":{"text":"ALERT workflow 42 failed"}});
    bot.sign_body(&mut msg, now);
    assert_eq!(
        post_json(&http, &bot.webhook_url, &msg).await,
        (200, fs_ok())
    );
    // timestamp as a number also works; an interactive card with the keyword in its header.
    let card = json!({"msg_type":"interactive","timestamp": now, "sign": feishu_sign(&secret, &now.to_string()),
        "card":{"schema":"2.0","header":{"title":{"tag":"plain_text","content":"ALERT wf 42"},"template":"red"},
        "body":{"elements":[{"tag":"markdown","content":"**run** 9f1c"}]}}});
    assert_eq!(
        post_json(&http, &bot.webhook_url, &card).await,
        (200, fs_ok())
    );
    let accepted = bots.accepted("lark");
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].body, msg);
    assert_eq!(accepted[0].kind, BotKind::Feishu);
    assert_eq!(
        accepted[0].path,
        format!("/open-apis/bot/v2/hook/{}", bot.hook_id)
    );

    let with = |mut body: Value, ts: &str, sign: &str| {
        body["timestamp"] = json!(ts);
        body["sign"] = json!(sign);
        body
    };
    let text = json!({"msg_type":"text","content":{"text":"ALERT"}});
    let ts = now.to_string();
    let sign_fail = (
        200,
        fs(
            19_021,
            "sign match fail or timestamp is not within one hour from current time",
        ),
    );
    // unknown hook
    let unknown = format!(
        "{}/open-apis/bot/v2/hook/00000000-0000-4000-8000-000000000000",
        bots.base_url
    );
    assert_eq!(
        post_json(&http, &unknown, &text).await,
        (
            200,
            fs(
                19_001,
                "param invalid: incoming webhook access token invalid"
            )
        )
    );
    // 9499: oversize, not JSON, missing/unknown msg_type, interactive without card
    let bad_request = (200, fs(9499, "Bad Request"));
    let big = with(
        json!({"msg_type":"text","content":{"text": format!("ALERT {}", "x".repeat(20_480))}}),
        &ts,
        &feishu_sign(&secret, &ts),
    );
    assert_eq!(post_json(&http, &bot.webhook_url, &big).await, bad_request);
    assert_eq!(
        post_raw(&http, &bot.webhook_url, b"ALERT".to_vec()).await,
        bad_request
    );
    for body in [
        json!({"content":{"text":"ALERT"}}),
        json!({"msg_type":"video","content":{"text":"ALERT"}}),
        json!({"msg_type":"interactive","content":{"text":"ALERT"}}),
    ] {
        let body = with(body, &ts, &feishu_sign(&secret, &ts));
        assert_eq!(post_json(&http, &bot.webhook_url, &body).await, bad_request);
    }
    // 19021: wrong secret, DingTalk scheme (key/message swapped), 2 h old, milliseconds, missing
    for body in [
        with(text.clone(), &ts, &feishu_sign("wrong", &ts)),
        with(text.clone(), &ts, &dingtalk_sign(&secret, &ts)),
        with(
            text.clone(),
            &(now - 7200).to_string(),
            &feishu_sign(&secret, &(now - 7200).to_string()),
        ),
        with(
            text.clone(),
            &(now * 1000).to_string(),
            &feishu_sign(&secret, &(now * 1000).to_string()),
        ),
        text.clone(),
    ] {
        assert_eq!(post_json(&http, &bot.webhook_url, &body).await, sign_fail);
    }
    // 19024: the keyword only in an href
    let post = with(
        json!({"msg_type":"post","content":{"post":{"zh_cn":{"title":"Workflow failed",
            "content":[[{"tag":"text","text":"run 9f1c: "},{"tag":"a","text":"open","href":"https://ops.example/ALERT"}]]}}}}),
        &ts,
        &feishu_sign(&secret, &ts),
    );
    assert_eq!(
        post_json(&http, &bot.webhook_url, &post).await,
        (200, fs(19_024, "Key Words Not Found"))
    );
    // 19022: IP allowlist (checked before the signature)
    let fenced = bots.add_feishu(FeishuBotSpec {
        name: "fenced".into(),
        sign: true,
        ip_allow: vec!["123.12.1.*".into(), "10.0.0.0/8".into()],
        ..FeishuBotSpec::default()
    });
    assert_eq!(
        post_json(&http, &fenced.webhook_url, &text).await,
        (200, fs(19_022, "Ip Not Allowed"))
    );
    let open = bots.add_feishu(FeishuBotSpec {
        name: "loopback".into(),
        ip_allow: vec!["127.0.0.*".into()],
        ..FeishuBotSpec::default()
    });
    assert_eq!(
        post_json(&http, &open.webhook_url, &text).await,
        (200, fs_ok())
    );

    let received = bots.received();
    assert!(
        received
            .iter()
            .all(|r| r.kind == BotKind::Feishu && r.http_status == 200)
    );
    assert_eq!(received.iter().filter(|r| r.code == "19021").count(), 5);
    assert_eq!(received.iter().filter(|r| r.code == "9499").count(), 5);
    assert_eq!(bots.accepted("lark").len(), 2);
    assert!(bots.accepted("fenced").is_empty());
    bots.shutdown().await;
}

#[tokio::test]
async fn feishu_rate_limits_per_second_and_per_minute() {
    let limited = (
        200,
        fs(
            11_232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
        ),
    );
    let text = json!({"msg_type":"text","content":{"text":"alert"}});

    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let bot = bots.add_feishu(FeishuBotSpec {
        name: "lark".into(),
        ..FeishuBotSpec::default()
    });
    for _ in 0..5 {
        assert_eq!(
            post_json(&http, &bot.webhook_url, &text).await,
            (200, fs_ok())
        );
    }
    assert_eq!(post_json(&http, &bot.webhook_url, &text).await, limited);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        post_json(&http, &bot.webhook_url, &text).await,
        (200, fs_ok())
    );
    bots.shutdown().await;

    let bots = start(BotsConfig {
        feishu_per_second: 1000,
        ..BotsConfig::default()
    })
    .await;
    let http = client(&bots);
    let bot = bots.add_feishu(FeishuBotSpec {
        name: "lark".into(),
        ..FeishuBotSpec::default()
    });
    for i in 0..100 {
        let r = post_json(&http, &bot.webhook_url, &text).await;
        assert_eq!(r, (200, fs_ok()), "message {i}");
    }
    assert_eq!(post_json(&http, &bot.webhook_url, &text).await, limited);
    assert_eq!(post_json(&http, &bot.webhook_url, &text).await, limited);
    assert_eq!(bots.accepted("lark").len(), 100);
    bots.shutdown().await;
}

#[tokio::test]
async fn dingtalk_app_token_flow_and_group_messages() {
    let bots = start(BotsConfig {
        app_per_minute: 3,
        ..BotsConfig::default()
    })
    .await;
    let http = client(&bots);
    let app = bots.add_dingtalk_app(DingTalkAppSpec { name: "app".into() });
    assert!(app.app_key.starts_with("ding"));
    assert!(app.open_conversation_id.starts_with("cid"));
    assert_eq!(app.api_base, bots.base_url);
    let token_url = format!("{}/v1.0/oauth2/accessToken", app.api_base);
    let send_url = format!("{}/v1.0/robot/groupMessages/send", app.api_base);

    // wrong secret / unknown key
    for body in [
        json!({"appKey": app.app_key, "appSecret": "wrong"}),
        json!({"appKey": "dingnope", "appSecret": app.app_secret}),
    ] {
        let (status, v) = post_json(&http, &token_url, &body).await;
        assert_eq!(status, 400);
        assert_eq!(v["code"], "invalidClientIdOrSecret");
        assert_eq!(v["message"], "无效的clientId或者clientSecret");
        assert_eq!(v["requestid"].as_str().unwrap().len(), 36);
    }
    let creds = json!({"appKey": app.app_key, "appSecret": app.app_secret});
    let (status, v) = post_json(&http, &token_url, &creds).await;
    assert_eq!(status, 200);
    assert_eq!(v["expireIn"], 7200);
    let token = v["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    // Asked again within its lifetime: the same token.
    let (_, again) = post_json(&http, &token_url, &creds).await;
    assert_eq!(again["accessToken"], token.as_str());

    let msg = |key: &str, param: Value| {
        json!({"msgParam": param, "msgKey": key,
            "openConversationId": app.open_conversation_id, "robotCode": app.robot_code})
    };
    let md = msg(
        "sampleMarkdown",
        json!(json!({"title":"ALERT","text":"### failed"}).to_string()),
    );
    let send = |body: Value, token: Option<String>| {
        let mut req = http.post(&send_url).json(&body);
        if let Some(t) = token {
            req = req.header("x-acs-dingtalk-access-token", t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = send(md.clone(), Some(token.clone())).await;
    assert_eq!(status, 200);
    assert!(!v["processQueryKey"].as_str().unwrap().is_empty());

    // missing / unknown token
    let (status, v) = send(md.clone(), None).await;
    assert_eq!(
        (status, v["code"].clone()),
        (401, json!("InvalidAuthentication"))
    );
    assert_eq!(v["message"], "不合法的access_token");
    let (status, _) = send(md.clone(), Some("0".repeat(32))).await;
    assert_eq!(status, 401);
    // wrong robotCode / conversation
    let mut other = md.clone();
    other["robotCode"] = json!("dingunknown");
    let (status, v) = send(other, Some(token.clone())).await;
    assert_eq!(
        (status, v["code"].clone()),
        (400, json!("invalidParameter.robotCode.notExist"))
    );
    let mut other = md.clone();
    other["openConversationId"] = json!("cidSomeOtherGroup==");
    let (status, v) = send(other, Some(token.clone())).await;
    assert_eq!(
        (status, v["code"].clone()),
        (400, json!("invalidParameter.openConversationId.invalid"))
    );
    // msgParam not a JSON string / missing keys / unknown msgKey
    for body in [
        msg("sampleMarkdown", json!({"title":"ALERT","text":"x"})),
        msg("sampleMarkdown", json!("{\"title\":\"ALERT\"}")),
        msg("sampleMarkdown", json!("not json")),
        msg("sampleVideo", json!("{\"title\":\"ALERT\",\"text\":\"x\"}")),
    ] {
        let (status, v) = send(body, Some(token.clone())).await;
        assert_eq!(
            (status, v["code"].clone()),
            (400, json!("invalidParameter.msgParam.invalid"))
        );
        assert!(v["requestid"].is_string());
    }
    // sampleText and sampleActionCard, then the per-conversation limit (3 here)
    let (status, _) = send(
        msg("sampleText", json!("{\"content\":\"ALERT\"}")),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let card =
        json!({"title":"ALERT","text":"x","singleTitle":"Open","singleURL":"https://ops.example"});
    let (status, _) = send(
        msg("sampleActionCard", json!(card.to_string())),
        Some(token.clone()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = send(md.clone(), Some(token.clone())).await;
    assert_eq!(
        (status, v["code"].clone()),
        (403, json!("Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"))
    );

    // expiry
    bots.set_rate_limits(false);
    bots.expire_app_tokens();
    let (status, v) = send(md.clone(), Some(token.clone())).await;
    assert_eq!(
        (status, v["code"].clone()),
        (401, json!("InvalidAuthentication"))
    );
    let (_, v) = post_json(&http, &token_url, &creds).await;
    let fresh = v["accessToken"].as_str().unwrap().to_owned();
    assert_ne!(fresh, token);
    let (status, _) = send(md.clone(), Some(fresh)).await;
    assert_eq!(status, 200);

    // Messages only in accepted(); token requests recorded with the secret redacted.
    let accepted = bots.accepted("app");
    assert_eq!(accepted.len(), 4);
    assert!(
        accepted
            .iter()
            .all(|r| r.path == "/v1.0/robot/groupMessages/send")
    );
    assert_eq!(accepted[0].body, md);
    let token_reqs: Vec<Received> = bots
        .received()
        .into_iter()
        .filter(|r| r.path == "/v1.0/oauth2/accessToken")
        .collect();
    assert_eq!(token_reqs.len(), 5);
    assert!(token_reqs.iter().all(|r| r.kind == BotKind::DingTalkApp));
    assert!(
        token_reqs
            .iter()
            .all(|r| r.body["appSecret"] == "[redacted]")
    );
    assert!(bots.received().iter().all(|r| {
        !serde_json::to_string(&r.body)
            .unwrap()
            .contains(&app.app_secret)
    }));
    bots.shutdown().await;
}

#[tokio::test]
async fn generic_webhook_checks_signature_time_size_and_json() {
    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let hook = bots.add_webhook(WebhookSpec {
        name: "alerts".into(),
    });
    assert_eq!(hook.url, format!("{}/webhook/alerts", bots.base_url));
    let send = |url: String, body: Vec<u8>, ts: String, sig: String| {
        let req = http
            .post(url)
            .header("content-type", "application/json")
            .header("x-stockade-timestamp", ts)
            .header("x-stockade-signature", sig)
            .header("x-stockade-delivery", "d-1")
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };
    let body = br#"{"event":"workflow.failed","run":"9f1c"}"#.to_vec();
    let ts = (now_ms() / 1000).to_string();
    let sig = webhook_signature(&hook.secret, &ts, &body);
    assert_eq!(
        send(hook.url.clone(), body.clone(), ts.clone(), sig.clone()).await,
        (204, Value::Null)
    );
    let invalid = (401, json!({"error":"invalid signature"}));
    // wrong secret, tampered body, upper-case hex, 10 minutes old, missing
    let wrong = webhook_signature("wrong", &ts, &body);
    assert_eq!(
        send(hook.url.clone(), body.clone(), ts.clone(), wrong).await,
        invalid
    );
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(
        send(hook.url.clone(), tampered, ts.clone(), sig.clone()).await,
        invalid
    );
    let upper = format!(
        "sha256={}",
        sig.trim_start_matches("sha256=").to_uppercase()
    );
    assert_eq!(
        send(hook.url.clone(), body.clone(), ts.clone(), upper).await,
        invalid
    );
    let old = (now_ms() / 1000 - 600).to_string();
    let old_sig = webhook_signature(&hook.secret, &old, &body);
    assert_eq!(
        send(hook.url.clone(), body.clone(), old, old_sig).await,
        invalid
    );
    assert_eq!(
        send(hook.url.clone(), body.clone(), ts.clone(), String::new()).await,
        invalid
    );
    // unknown name, oversize, not JSON
    let unknown = format!("{}/webhook/nope", bots.base_url);
    assert_eq!(
        send(unknown, body.clone(), ts.clone(), sig.clone()).await.0,
        404
    );
    let big = vec![b' '; 256 * 1024 + 1];
    let big_sig = webhook_signature(&hook.secret, &ts, &big);
    assert_eq!(
        send(hook.url.clone(), big, ts.clone(), big_sig).await.0,
        413
    );
    let text = b"not json".to_vec();
    let text_sig = webhook_signature(&hook.secret, &ts, &text);
    assert_eq!(
        send(hook.url.clone(), text, ts.clone(), text_sig).await.0,
        400
    );

    let accepted = bots.accepted("alerts");
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].kind, BotKind::Webhook);
    assert_eq!(accepted[0].http_status, 204);
    assert_eq!(accepted[0].body["run"], "9f1c");
    assert_eq!(accepted[0].header("x-stockade-delivery"), Some("d-1"));
    let codes: Vec<String> = bots.received().into_iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        ["0", "401", "401", "401", "401", "401", "404", "413", "400"]
    );
    bots.shutdown().await;
}

#[tokio::test]
async fn a_bearer_webhook_checks_the_token_instead_of_a_signature() {
    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let hook = bots.add_bearer_webhook("supplier", "tok-abc123");
    assert_eq!(hook.url, format!("{}/webhook/supplier", bots.base_url));
    let send = |auth: Option<&str>, body: &'static str| {
        let mut req = http
            .post(hook.url.clone())
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(Some("Bearer tok-abc123"), r#"{"n":1}"#).await, 204);
    assert_eq!(send(Some("Bearer tok-wrong"), r#"{"n":1}"#).await, 401);
    assert_eq!(send(None, r#"{"n":1}"#).await, 401);
    assert_eq!(send(Some("Bearer tok-abc123"), "not json").await, 400);
    let got = bots.received();
    assert_eq!(got.len(), 4);
    assert!(got[0].accepted && !got[1].accepted);
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-abc123"));
}

#[tokio::test]
async fn faults_and_admin_routes() {
    let bots = start(BotsConfig::default()).await;
    let http = client(&bots);
    let robot = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ops".into(),
        ..DingTalkRobotSpec::default()
    });
    let lark = bots.add_feishu(FeishuBotSpec {
        name: "lark".into(),
        ..FeishuBotSpec::default()
    });
    let app = bots.add_dingtalk_app(DingTalkAppSpec { name: "app".into() });
    let text = json!({"msgtype":"text","text":{"content":"alert"}});
    let fs_text = json!({"msg_type":"text","content":{"text":"alert"}});

    // Down: 503 text/html, recorded as not accepted.
    bots.set_fault("ops", BotFault::Down);
    let r = http
        .post(&robot.webhook_url)
        .json(&text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("503"));
    let last = bots.received().pop().unwrap();
    assert_eq!(
        (last.bot.as_str(), last.http_status, last.accepted),
        ("ops", 503, false)
    );
    assert_eq!(last.code, "503");
    // Other bots are unaffected.
    assert_eq!(
        post_json(&http, &lark.webhook_url, &fs_text).await,
        (200, fs_ok())
    );

    // Throttle: DingTalk starts its (10 min) penalty; None ends it.
    bots.set_fault("ops", BotFault::Throttle);
    assert_eq!(
        post_json(&http, &robot.webhook_url, &text).await,
        (
            200,
            dt(130_101, "send too fast, exceed 20 times per minute")
        )
    );
    bots.set_fault("ops", BotFault::None);
    assert_eq!(
        post_json(&http, &robot.webhook_url, &text).await,
        (200, dt(0, "ok"))
    );

    // The admin routes: set faults over HTTP.
    let fault_url = format!("{}/_sandbox/bots/fault", bots.base_url);
    let set = |bot: &str, fault: &str| {
        let req = http
            .post(&fault_url)
            .json(&json!({"bot": bot, "fault": fault}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(set("lark", "throttle").await, 204);
    assert_eq!(
        post_json(&http, &lark.webhook_url, &fs_text).await,
        (
            200,
            fs(
                11_232,
                "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"
            )
        )
    );
    assert_eq!(set("lark", "down").await, 204);
    assert_eq!(post_json(&http, &lark.webhook_url, &fs_text).await.0, 503);
    assert_eq!(set("lark", "none").await, 204);
    assert_eq!(
        post_json(&http, &lark.webhook_url, &fs_text).await,
        (200, fs_ok())
    );
    assert_eq!(set("nobody", "down").await, 404);
    assert_eq!(set("lark", "explode").await, 400);

    // Throttle on the app robot: its sends answer the QPS error.
    let (_, v) = post_json(
        &http,
        &format!("{}/v1.0/oauth2/accessToken", bots.base_url),
        &json!({"appKey": app.app_key, "appSecret": app.app_secret}),
    )
    .await;
    let token = v["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(set("app", "throttle").await, 204);
    let r = http
        .post(format!("{}/v1.0/robot/groupMessages/send", bots.base_url))
        .header("x-acs-dingtalk-access-token", &token)
        .json(
            &json!({"msgParam":"{\"content\":\"x\"}","msgKey":"sampleText",
            "openConversationId": app.open_conversation_id,"robotCode": app.robot_code}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Hang: never answered; the client gives up.
    assert_eq!(set("ops", "hang").await, 204);
    let impatient = client_with_timeout(&bots, Duration::from_millis(300));
    let e = impatient
        .post(&robot.webhook_url)
        .json(&text)
        .send()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let last = bots.received().pop().unwrap();
    assert_eq!(
        (last.bot.as_str(), last.http_status, last.accepted),
        ("ops", 0, false)
    );

    // GET /_sandbox/bots/received returns what received() returns.
    let received_url = format!("{}/_sandbox/bots/received", bots.base_url);
    let over_http: Vec<Received> = http
        .get(&received_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, bots.received());
    assert!(over_http.len() >= 10);
    let raw: Value = http
        .get(&received_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw[0]["kind"], "dingtalk");
    assert_eq!(raw[0]["code"], "503");
    let r = http.delete(&received_url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert!(bots.received().is_empty());
    bots.shutdown().await;
}

#[tokio::test]
async fn credentials_are_seeded_and_debug_redacts_them() {
    let make = |seed: u64| async move {
        let bots = start(BotsConfig {
            seed,
            ..BotsConfig::default()
        })
        .await;
        let d = bots.add_dingtalk(DingTalkRobotSpec {
            name: "ops".into(),
            sign: true,
            ..DingTalkRobotSpec::default()
        });
        let f = bots.add_feishu(FeishuBotSpec {
            name: "lark".into(),
            sign: true,
            ..FeishuBotSpec::default()
        });
        let a = bots.add_dingtalk_app(DingTalkAppSpec { name: "app".into() });
        let w = bots.add_webhook(WebhookSpec {
            name: "hook".into(),
        });
        bots.shutdown().await;
        (
            vec![
                d.access_token.clone(),
                d.secret.clone().unwrap(),
                f.hook_id.clone(),
                f.secret.clone().unwrap(),
                a.app_key.clone(),
                a.app_secret.clone(),
                a.open_conversation_id.clone(),
                w.secret.clone(),
            ],
            format!("{d:?} {f:?} {a:?} {w:?}"),
        )
    };
    let (a, debug) = make(7).await;
    let (b, _) = make(7).await;
    let (c, _) = make(8).await;
    assert_eq!(a, b);
    for (x, y) in a.iter().zip(&c) {
        assert_ne!(x, y);
    }
    // Debug shows no token or secret (the app key and conversation id are identifiers).
    for (i, secret) in a.iter().enumerate() {
        if i == 4 || i == 6 {
            continue;
        }
        assert!(!debug.contains(secret.as_str()), "Debug leaks value {i}");
    }
    assert!(debug.contains("[redacted]"));
}
