//! The real alert pipeline for the tests of `alert.send` with `channel:` and of the
//! example workflows: two loopback bot simulators (DingTalk robot `ops-dingtalk`, Feishu
//! bot `team-feishu`), each a configured `[[alerts.channel]]`, routed and sent by
//! [`Alerts`] through the egress gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_alerts::{Alerts, AlertsConfig, ChannelConfig, ChannelKind};
use stockade_core::Environment;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::bots::{DingTalkRobotSpec, FeishuBotSpec};
use stockade_sandbox::{Bots, BotsConfig};
use stockade_vault::Vault;

use crate::exec_support::{Env, open_vault, put_credential};

/// The DingTalk and Feishu channel names the examples use.
pub const DING: &str = "ops-dingtalk";
pub const FEISHU: &str = "team-feishu";

pub struct Rig {
    pub bots: Bots,
    pub alerts: Alerts,
    pub vault: Arc<Vault>,
}

impl Rig {
    /// The bots, their credentials in `env`'s vault and the alert pipeline on `env`'s
    /// store. Both channels take every severity from `info` up.
    pub async fn start(env: &Env) -> Rig {
        let vault = open_vault(env).await;
        let bots = Bots::start(BotsConfig::default()).await.expect("bots");
        let ding = bots.add_dingtalk(DingTalkRobotSpec {
            name: DING.into(),
            sign: true,
            keywords: vec!["Stockade".into()],
            ip_allow: vec![],
        });
        let feishu = bots.add_feishu(FeishuBotSpec {
            name: FEISHU.into(),
            sign: true,
            keywords: vec!["Stockade".into()],
            ip_allow: vec![],
        });
        let cred = |field: &str, name: &str| format!("alert/{name}/{field}");
        put_credential(
            &vault,
            &cred("access_token", DING),
            &ding.access_token,
            &[],
            &[],
        )
        .await;
        let secret = ding.secret.clone().unwrap_or_default();
        put_credential(&vault, &cred("secret", DING), &secret, &[], &[]).await;
        put_credential(&vault, &cred("hook_id", FEISHU), &feishu.hook_id, &[], &[]).await;
        let secret = feishu.secret.clone().unwrap_or_default();
        put_credential(&vault, &cred("secret", FEISHU), &secret, &[], &[]).await;
        let mut egress = EgressConfig::new(Environment::Dev);
        egress.allowed_hosts = vec![bots.base_url.trim_start_matches("https://").to_owned()];
        egress.extra_root_pems = vec![bots.ca_pem.clone()];
        egress.max_attempts = 1;
        let gateway = Gateway::new(egress, Some(env.store.clone())).expect("gateway");
        let base = bots.base_url.clone();
        let mut d = ChannelConfig::new(DING, ChannelKind::Dingtalk, &format!("{base}/robot/send"));
        let mut f = ChannelConfig::new(
            FEISHU,
            ChannelKind::Feishu,
            &format!("{base}/open-apis/bot/v2/hook"),
        );
        for c in [&mut d, &mut f] {
            c.keyword = Some("Stockade".into());
            c.min_severity = stockade_alerts::Severity::Info;
        }
        let config = AlertsConfig {
            channels: vec![d, f],
            window: Duration::from_secs(3),
            poll_interval: Duration::from_millis(100),
            ..AlertsConfig::default()
        };
        let alerts = Alerts::start(env.store.clone(), vault.clone(), &gateway, config)
            .await
            .expect("alerts");
        Rig {
            bots,
            alerts,
            vault,
        }
    }

    /// The bodies `channel` accepted, once every one of `texts` is among them (then a
    /// short settle, so an extra message would show); panics after 10 s.
    pub async fn wait_text(&self, channel: &str, texts: &[&str]) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.got(channel);
            if texts.iter().all(|t| got.iter().any(|m| m.contains(t))) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{channel}: waiting for {texts:?}, got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        self.got(channel)
    }

    /// The bodies `channel` accepted so far.
    pub fn got(&self, channel: &str) -> Vec<String> {
        self.bots
            .accepted(channel)
            .iter()
            .map(|m| m.body.to_string())
            .collect()
    }

    pub async fn stop(self) {
        self.alerts.shutdown().await;
        self.bots.shutdown().await;
    }
}
