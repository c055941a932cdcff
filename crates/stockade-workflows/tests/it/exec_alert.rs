//! `alert.send` through the real alert pipeline to the Feishu simulator: one message even
//! when the execution is resumed after a crash, keyed by the step's idempotency key;
//! buyer data refused without `allow_pii` at run time.

use std::time::{Duration, Instant};

use serde_json::json;
use stockade_alerts::{Alerts, AlertsConfig, ChannelConfig, ChannelKind};
use stockade_core::Environment;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::bots::FeishuBotSpec;
use stockade_sandbox::{Bots, BotsConfig};
use stockade_workflows::exec::{
    AlertChannels, AlertSend, ErrorClass, RunOutcome, StepCtx, StepHandler,
};
use stockade_workflows::expr::Evaluated;

use crate::alert_rig::{DING, FEISHU, Rig};
use crate::exec_support::{
    Act, Backend, Env, Probe, both, catalog, executor, open_vault, put_credential,
};

both!(
    an_alert_reaches_its_channel_once_across_a_crash,
    a_named_channel_alone_gets_the_alert
);

const NOTIFY: &str = r#"
name: notify
trigger: manual
steps:
  - id: warn
    uses: alert.send
    with: { title: "Restock", message: "Stockade: restock MUG-1 now", severity: warning }
  - id: after
    uses: http.request
    with: { url: "https://example.com/after" }
"#;

async fn an_alert_reaches_its_channel_once_across_a_crash(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let vault = open_vault(&env).await;
    let bots = Bots::start(BotsConfig::default()).await.expect("bots");
    let feishu = bots.add_feishu(FeishuBotSpec {
        name: "feishu".into(),
        sign: true,
        keywords: vec!["Stockade".into()],
        ip_allow: vec![],
    });
    put_credential(&vault, "alert/feishu/hook_id", &feishu.hook_id, &[], &[]).await;
    let secret = feishu.secret.clone().unwrap_or_default();
    put_credential(&vault, "alert/feishu/secret", &secret, &[], &[]).await;
    let mut egress = EgressConfig::new(Environment::Dev);
    egress.allowed_hosts = vec![bots.base_url.trim_start_matches("https://").to_owned()];
    egress.extra_root_pems = vec![bots.ca_pem.clone()];
    egress.max_attempts = 1;
    let gateway = Gateway::new(egress, Some(env.store.clone())).expect("gateway");
    let mut channel = ChannelConfig::new(
        "feishu",
        ChannelKind::Feishu,
        &format!("{}/open-apis/bot/v2/hook", bots.base_url),
    );
    channel.keyword = Some("Stockade".into());
    let config = AlertsConfig {
        channels: vec![channel],
        window: Duration::from_secs(3),
        poll_interval: Duration::from_millis(100),
        ..AlertsConfig::default()
    };
    let alerts = Alerts::start(env.store.clone(), vault.clone(), &gateway, config)
        .await
        .expect("alerts");

    // The run dies in the step after the alert; another worker resumes it.
    let probe = Probe::new(&env.store, &[Act::Hang, Act::Succeed]);
    let exec = executor(&env, catalog(&[NOTIFY]), Some(probe.clone())).lease_ms(300);
    let id = env.enqueue("notify", json!({})).await;
    let lease = env.claim("w1", 300).await.expect("a job");
    let first = tokio::time::timeout(Duration::from_millis(1000), exec.run_claimed(lease)).await;
    assert!(first.is_err(), "the first run died in `after`");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.store.reap_expired(100).await.unwrap().requeued, 1);
    let lease = env.claim("w2", 30_000).await.expect("re-queued");
    let exec2 = executor(&env, catalog(&[NOTIFY]), Some(probe));
    assert_eq!(
        exec2.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );

    let start = Instant::now();
    while bots.accepted("feishu").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no alert arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = bots.accepted("feishu");
    assert_eq!(got.len(), 1, "one alert");
    let text = got[0].body.to_string();
    assert!(text.contains("restock MUG-1 now"), "{text}");
    assert!(text.contains(&id), "the execution is named: {text}");
    assert_eq!(env.actions("workflow.alert").await, 1);
    let keys: Vec<(String,)> = env
        .store
        .query_as("SELECT detail FROM events WHERE kind = 'alert'", vec![])
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].0.contains(&format!("\"key\":\"{id}/warn\"")),
        "{}",
        keys[0].0
    );

    // Buyer data without allow_pii is refused at run time (the lint checks it too).
    let actor = stockade_workflows::exec::actor("notify", 1, "job_1");
    let permissions = stockade_workflows::definition::Permissions::default();
    let ctx = StepCtx {
        store: &env.store,
        execution: "job_1",
        workflow: "notify",
        version: 1,
        step: "warn",
        idempotency_key: "job_1/warn",
        attempt: 1,
        actor: &actor,
        allow_pii: false,
        permissions: &permissions,
    };
    let params = Evaluated {
        value: json!({ "message": "ship to Jane Q. Buyer" }),
        pii: true,
    };
    let refused = AlertSend::default()
        .run(&ctx, &params)
        .await
        .expect_err("refused");
    assert_eq!(refused.class, ErrorClass::Permission);

    alerts.shutdown().await;
    bots.shutdown().await;
    env.cleanup().await;
}

const ADDRESSED: &str = r#"
name: addressed
trigger: manual
steps:
  - id: page
    uses: alert.send
    with: { title: "Stockade page", message: "paged ops only", severity: critical, channel: ops-dingtalk }
  - id: tell
    uses: alert.send
    with: { title: "Stockade note", message: "told the team only", severity: info, channel: team-feishu }
  - id: everyone
    uses: alert.send
    with: { title: "Stockade all", message: "for every channel", severity: warning }
"#;

const UNKNOWN: &str = r#"
name: unknown-channel
trigger: manual
steps:
  - id: page
    uses: alert.send
    with: { message: "nobody hears this", channel: ops-pager }
"#;

async fn a_named_channel_alone_gets_the_alert(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let rig = Rig::start(&env).await;
    let names = AlertChannels::fixed(vec![DING.into(), FEISHU.into()]);
    let exec =
        executor(&env, catalog(&[ADDRESSED, UNKNOWN]), None).with_alert_channels(names.clone());
    env.enqueue("addressed", json!({})).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    assert_eq!(
        exec.run_claimed(lease).await.unwrap(),
        RunOutcome::Succeeded
    );

    // (The sender may put several alerts in one message to stay within a bot's limit,
    // listing their titles.)
    let ding = rig
        .wait_text(DING, &["Stockade page", "Stockade all"])
        .await;
    let feishu = rig
        .wait_text(FEISHU, &["Stockade note", "Stockade all"])
        .await;
    let has = |got: &[String], text: &str| got.iter().any(|m| m.contains(text));
    assert!(!has(&ding, "Stockade note"), "{ding:?}");
    assert!(!has(&feishu, "Stockade page"), "{feishu:?}");

    // A name the configuration does not have fails the step, before anything is written.
    let before = env
        .count("SELECT COUNT(*) FROM events WHERE kind = 'alert'")
        .await;
    env.enqueue("unknown-channel", json!({})).await;
    let lease = env.claim("w2", 30_000).await.expect("a job");
    let RunOutcome::Failed(f) = exec.run_claimed(lease).await.unwrap() else {
        panic!("the step must fail")
    };
    assert_eq!(f.class, "invalid", "{f:?}");
    assert!(f.message.contains("ops-pager"), "{}", f.message);
    assert!(
        f.message.contains("ops-dingtalk, team-feishu"),
        "{}",
        f.message
    );
    let after = env
        .count("SELECT COUNT(*) FROM events WHERE kind = 'alert'")
        .await;
    assert_eq!(before, after, "no alert event for an unknown channel");
    rig.stop().await;
    env.cleanup().await;
}
