//! `stockade bench alerts`: failures recorded as sync error events (with planted buyer
//! data in the marketplace's error text) → router → outbox → senders → the DingTalk,
//! DingTalk app, Feishu and webhook bot simulators, which verify every signature. The
//! latency is from the failure's commit to the signed request reaching the bot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_alerts::{Alerts, AlertsConfig, ChannelConfig, ChannelKind};
use stockade_core::event::{Event, MarketFailure};
use stockade_core::time::now_ms;
use stockade_core::{Actor, Environment, SecretString};
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::bots::{
    Bots, BotsConfig, DingTalkAppSpec, DingTalkRobotSpec, FeishuBotSpec, Received, WebhookSpec,
};
use stockade_store::{AuditDetails, AuditEntry, Store, StoreOptions};
use stockade_vault::{
    CredentialScopes, KeyOwner, MasterKeySource, MasterKeys, NewCredential, Vault,
};

use super::live::{peak_rss_mb, temp_dir};
use crate::cli::BenchAlertsArgs;
use crate::exit::Failure;

const ACTOR: Actor = Actor::System("bench");
const CHANNELS: [&str; 4] = ["ding", "feishu", "app", "hook"];
const BUYER: &str = "Ana Buyer";
/// Buyer data planted in every failure's error text; none may reach a bot.
const PLANTED: [&str; 5] = [
    "ana.buyer@example.org",
    "+86 139 1234 5678",
    "5500 0000 0000 0004",
    "42 Wallaby Way",
    "tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
];

async fn put(vault: &Vault, name: &str, value: &str) -> Result<(), Failure> {
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
        .await?;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Event ids a received message reports.
fn event_ids(r: &Received) -> Vec<i64> {
    let b = &r.body;
    if let Some(alerts) = b["alerts"].as_array() {
        return alerts
            .iter()
            .filter_map(|a| a["event_id"].as_i64())
            .collect();
    }
    let mut text = String::new();
    for v in [
        &b["markdown"]["text"],
        &b["actionCard"]["text"],
        &b["card"]["body"]["elements"][0]["content"],
    ] {
        if let Some(t) = v.as_str() {
            text.push_str(t);
        }
    }
    if let Some(p) = b["msgParam"].as_str()
        && let Ok(p) = serde_json::from_str::<serde_json::Value>(p)
        && let Some(t) = p["text"].as_str()
    {
        text.push_str(t);
    }
    let mut ids = Vec::new();
    for part in text.split("event ").skip(1) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(id) = digits.parse() {
            ids.push(id);
        }
    }
    ids
}

/// What the bots saw: latencies (sorted), losses, message counts and planted-value leaks.
struct Outcome {
    latencies: Vec<f64>,
    lost: usize,
    messages: usize,
    refused: usize,
    pii_leaks: usize,
    leaked: Vec<usize>,
}

pub async fn run(args: BenchAlertsArgs) -> Result<(), Failure> {
    let failures = args.failures.clamp(1, 10_000);
    let burst = args.burst.clamp(1, 50);
    let say = |s: String| super::bench::say(args.json, s);
    let dir = temp_dir("stockade-bench-alerts")?;
    let (store, vault, pg) = open_store(&args, &dir).await?;
    let bots = Bots::start(BotsConfig::default())
        .await
        .map_err(|e| Failure::runtime(format!("cannot start the bot simulators: {e}")))?;
    let mut egress = EgressConfig::new(Environment::Dev);
    egress.allowed_hosts = vec![bots.base_url.trim_start_matches("https://").to_owned()];
    egress.extra_root_pems = vec![bots.ca_pem.clone()];
    let gateway = Gateway::new(egress, Some(store.clone()))
        .map_err(|e| Failure::runtime(format!("egress: {e}")))?;
    let config = configure_channels(&bots, &vault).await?;
    let alerts = Alerts::start(store.clone(), vault.clone(), &gateway, config)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;

    // DingTalk allows 20 messages a minute and a burst may leave in two messages (the
    // first at once, the rest as a digest): one burst every 7 s stays within the limit.
    let bursts = failures.div_ceil(burst);
    say(format!(
        "bench alerts: {failures} distinct failures in {bursts} bursts of {burst}, one burst every 7 s, to 4 channels (DingTalk robot, DingTalk app, Feishu, webhook), {}",
        if pg.is_some() { "PostgreSQL" } else { "SQLite" }
    ));
    let recorded = record_failures(&store, failures, burst).await?;
    await_deliveries(&bots, &recorded).await;
    let o = measure(&bots, &recorded);
    if !o.leaked.is_empty() {
        let kinds = ["email", "phone", "card", "address", "token", "name"];
        let leaked: Vec<_> = o.leaked.iter().map(|i| kinds[*i]).collect();
        say(format!(
            "LEAKED planted values of kind: {}",
            leaked.join(", ")
        ));
    }
    let (p50, p99, max) = (
        percentile(&o.latencies, 0.5),
        percentile(&o.latencies, 0.99),
        o.latencies.last().copied().unwrap_or(0.0),
    );
    let (messages, refused, lost, pii_leaks) = (o.messages, o.refused, o.lost, o.pii_leaks);
    say(format!(
        "failure recorded → signed request at the bot: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms over {} deliveries",
        o.latencies.len()
    ));
    say(format!(
        "messages accepted {messages}, refused {refused}, outbox rows {}, lost {lost}, PII leaks {pii_leaks}, peak RSS {:.0} MiB",
        alerts.stats().outbox_rows,
        peak_rss_mb()
    ));
    alerts.shutdown().await;
    let _ = gateway.flush().await;
    bots.shutdown().await;
    if let Ok(v) = Arc::try_unwrap(vault) {
        v.close().await;
    }
    if let Some((url, schema)) = &pg {
        stockade_store::testing::drop_postgres_schema(url, schema).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "failures": failures, "channels": CHANNELS.len(),
                "p50_ms": p50, "p99_ms": p99, "max_ms": max,
                "delivered": messages, "refused": refused,
                "lost": lost, "pii_leaks": pii_leaks,
                "backend": if pg.is_some() { "postgres" } else { "sqlite" },
            })
        );
    }
    if lost > 0 || pii_leaks > 0 {
        return Err(Failure::runtime(format!(
            "{lost} alert deliveries lost, {pii_leaks} PII leaks"
        )));
    }
    Ok(())
}

/// A fresh master key in `dir` and a store on SQLite in `dir` or on a new PostgreSQL
/// schema (returned, with its base URL, so the caller drops it at the end).
async fn open_store(
    args: &BenchAlertsArgs,
    dir: &std::path::Path,
) -> Result<(Store, Arc<Vault>, Option<(String, String)>), Failure> {
    let key_path = dir.join("master.key");
    let master = MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))?;
    master
        .write_new_file(&key_path)
        .map_err(Failure::from_master)?;
    let (url, pg) = super::live::bench_database(args.database_url.as_deref(), dir)?;
    let (store, _) = Store::init(&url, Environment::Dev, &StoreOptions::default()).await?;
    let vault = Arc::new(Vault::bootstrap(store.clone(), master, &ACTOR).await?);
    Ok((store, vault, pg))
}

/// One bot of each kind on the simulators, its secrets in the vault, and the four
/// channels pointing at them.
async fn configure_channels(bots: &Bots, vault: &Vault) -> Result<AlertsConfig, Failure> {
    let keyword = "Stockade";
    let ding = bots.add_dingtalk(DingTalkRobotSpec {
        name: "ding".into(),
        sign: true,
        keywords: vec![keyword.into()],
        ip_allow: vec![],
    });
    let feishu = bots.add_feishu(FeishuBotSpec {
        name: "feishu".into(),
        sign: true,
        keywords: vec![keyword.into()],
        ip_allow: vec![],
    });
    let app = bots.add_dingtalk_app(DingTalkAppSpec { name: "app".into() });
    let hook = bots.add_webhook(WebhookSpec {
        name: "hook".into(),
    });
    let ding_secret = ding.secret.as_deref().unwrap_or("");
    let feishu_secret = feishu.secret.as_deref().unwrap_or("");
    for (name, value) in [
        ("alert/ding/access_token", ding.access_token.as_str()),
        ("alert/ding/secret", ding_secret),
        ("alert/feishu/hook_id", feishu.hook_id.as_str()),
        ("alert/feishu/secret", feishu_secret),
        ("alert/app/app_key", app.app_key.as_str()),
        ("alert/app/app_secret", app.app_secret.as_str()),
        ("alert/hook/secret", hook.secret.as_str()),
    ] {
        put(vault, name, value).await?;
    }
    let base = bots.base_url.clone();
    let mut d = ChannelConfig::new("ding", ChannelKind::Dingtalk, &format!("{base}/robot/send"));
    d.keyword = Some(keyword.into());
    let mut f = ChannelConfig::new(
        "feishu",
        ChannelKind::Feishu,
        &format!("{base}/open-apis/bot/v2/hook"),
    );
    f.keyword = Some(keyword.into());
    let mut a = ChannelConfig::new("app", ChannelKind::DingtalkApp, &base);
    a.robot_code = Some(app.robot_code.clone());
    a.conversation = Some(app.open_conversation_id.clone());
    let w = ChannelConfig::new("hook", ChannelKind::Webhook, &hook.url);
    Ok(AlertsConfig {
        channels: vec![d, f, a, w],
        dashboard_url: Some("https://stockade.example.com".into()),
        ..AlertsConfig::default()
    })
}

/// Records `failures` push failures on distinct connections, `burst` at a time, one
/// burst every 7 s; returns each event's id with the time it was committed.
async fn record_failures(
    store: &Store,
    failures: usize,
    burst: usize,
) -> Result<HashMap<i64, i64>, Failure> {
    let message = format!(
        "HTTP 503 from upstream: buyer {} <{}> phone {} card {} ship to {} auth {}",
        BUYER, PLANTED[0], PLANTED[1], PLANTED[2], PLANTED[3], PLANTED[4]
    );
    let mut recorded: HashMap<i64, i64> = HashMap::new();
    let t0 = Instant::now();
    let mut n = 0;
    for b in 0..failures.div_ceil(burst) {
        let next = t0 + Duration::from_secs(7 * b as u64);
        tokio::time::sleep_until(next.into()).await;
        for _ in 0..burst.min(failures - n) {
            let conn = format!("shop-{n:04}");
            let event = Event::PushFailed(MarketFailure {
                attempts: Some(5),
                class: Some("server".to_owned()),
                connection: conn.clone(),
                listings: Some(7),
                message: Some(message.clone()),
                orders: None,
                status: Some(503),
            });
            let audit = AuditEntry::new(
                "sync.event",
                format!("connection:{conn}"),
                AuditDetails::new(),
            );
            store.append_event(&ACTOR, &event, audit).await?;
            let committed = now_ms();
            let id = store.last_connection_event(&conn).await?.unwrap_or(0);
            recorded.insert(id, committed);
            n += 1;
        }
    }
    Ok(recorded)
}

/// (channel index, event id) → when that channel's bot first accepted a message naming it.
fn delivered_pairs(bots: &Bots) -> HashMap<(usize, i64), i64> {
    let mut seen = HashMap::new();
    for (ci, ch) in CHANNELS.iter().enumerate() {
        for r in bots.accepted(ch) {
            if r.path.ends_with("/accessToken") {
                continue;
            }
            for id in event_ids(&r) {
                seen.entry((ci, id)).or_insert(r.at_ms);
            }
        }
    }
    seen
}

/// Waits for every failure on every channel (or gives up after 30 s).
async fn await_deliveries(bots: &Bots, recorded: &HashMap<i64, i64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = delivered_pairs(bots);
        let complete = recorded
            .keys()
            .all(|id| (0..CHANNELS.len()).all(|ci| seen.contains_key(&(ci, *id))));
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn measure(bots: &Bots, recorded: &HashMap<i64, i64>) -> Outcome {
    let seen = delivered_pairs(bots);
    let mut latencies = Vec::new();
    let mut lost = 0usize;
    for (id, at) in recorded {
        for ci in 0..CHANNELS.len() {
            match seen.get(&(ci, *id)) {
                Some(t) => latencies.push((t - at).max(0) as f64),
                None => lost += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let received = bots.received();
    let messages = received
        .iter()
        .filter(|r| r.accepted && !r.path.ends_with("/accessToken"))
        .count();
    let refused = received
        .iter()
        .filter(|r| !r.accepted && !r.path.ends_with("/accessToken"))
        .count();
    let mut pii_leaks = 0;
    let mut leaked: Vec<usize> = Vec::new();
    for r in &received {
        let text = format!("{}{}", r.query, r.body);
        for (i, p) in PLANTED.iter().chain([BUYER].iter()).enumerate() {
            if text.contains(p) {
                pii_leaks += 1;
                if !leaked.contains(&i) {
                    leaked.push(i);
                }
            }
        }
    }
    Outcome {
        latencies,
        lost,
        messages,
        refused,
        pii_leaks,
        leaked,
    }
}
