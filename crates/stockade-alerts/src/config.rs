//! Channels and routing: which alerts go where, and how each channel is reached.
//! Secrets are not here: they live in the credential store as `alert/<channel>/<field>`.

use std::time::Duration;

use serde::Serialize;

use crate::model::{Alert, SOURCES, Severity};

/// The kinds of channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// DingTalk custom group robot (webhook + `SEC…` signing secret).
    Dingtalk,
    /// DingTalk enterprise internal-app robot (app key/secret → access token, group send).
    DingtalkApp,
    /// Feishu (CN) custom bot.
    Feishu,
    /// Lark (international) custom bot: the Feishu protocol on Lark's host.
    Lark,
    /// Any HTTPS endpoint, HMAC-signed JSON.
    Webhook,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Dingtalk,
        ChannelKind::DingtalkApp,
        ChannelKind::Feishu,
        ChannelKind::Lark,
        ChannelKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::DingtalkApp => "dingtalk_app",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Lark => "lark",
            ChannelKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The platform's product name, for messages to people.
    pub fn platform(self) -> &'static str {
        match self {
            ChannelKind::Dingtalk => "DingTalk",
            ChannelKind::DingtalkApp => "DingTalk (app robot)",
            ChannelKind::Feishu => "Feishu",
            ChannelKind::Lark => "Lark",
            ChannelKind::Webhook => "the webhook",
        }
    }

    /// The default endpoint (base URL) of the real service.
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            ChannelKind::Dingtalk => Some("https://oapi.dingtalk.com/robot/send"),
            ChannelKind::DingtalkApp => Some("https://api.dingtalk.com"),
            ChannelKind::Feishu => Some("https://open.feishu.cn/open-apis/bot/v2/hook"),
            ChannelKind::Lark => Some("https://open.larksuite.com/open-apis/bot/v2/hook"),
            ChannelKind::Webhook => None,
        }
    }

    /// The credential fields the channel needs (`alert/<channel>/<field>`).
    pub fn secret_fields(self) -> &'static [&'static str] {
        match self {
            ChannelKind::Dingtalk => &["access_token", "secret"],
            ChannelKind::DingtalkApp => &["app_key", "app_secret"],
            ChannelKind::Feishu | ChannelKind::Lark => &["hook_id", "secret"],
            ChannelKind::Webhook => &["secret"],
        }
    }

    /// Sending limits kept below the platform's: (per second, per minute).
    /// DingTalk allows 20 a minute per robot (and throttles for 10 minutes beyond);
    /// Feishu 5 a second and 100 a minute per bot.
    pub fn default_limits(self) -> (u32, u32) {
        match self {
            ChannelKind::Dingtalk | ChannelKind::DingtalkApp => (18, 18),
            ChannelKind::Feishu | ChannelKind::Lark => (4, 90),
            ChannelKind::Webhook => (10, 300),
        }
    }

    /// How long to wait after the platform said "too fast".
    pub fn default_throttle_backoff(self) -> Duration {
        match self {
            // "more than 20 a minute … throttled for 10 minutes"
            ChannelKind::Dingtalk => Duration::from_secs(600),
            ChannelKind::DingtalkApp => Duration::from_secs(60),
            ChannelKind::Feishu | ChannelKind::Lark => Duration::from_secs(10),
            ChannelKind::Webhook => Duration::from_secs(30),
        }
    }

    /// Largest request body the platform takes (bytes); renders stay under it.
    pub fn max_body(self) -> usize {
        match self {
            ChannelKind::Dingtalk | ChannelKind::DingtalkApp => 20_000,
            ChannelKind::Feishu | ChannelKind::Lark => 20 * 1024,
            ChannelKind::Webhook => 256 * 1024,
        }
    }
}

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    /// DingTalk: the robot send URL without its token; Feishu/Lark: the hook URL without
    /// the hook id; DingTalk app: the API base; webhook: the full URL.
    pub url: String,
    /// A keyword the robot requires (DingTalk and Feishu "custom keywords"); put in
    /// every title.
    pub keyword: Option<String>,
    pub min_severity: Severity,
    /// Sources this channel receives (empty: all).
    pub sources: Vec<String>,
    /// DingTalk app robot: its robot code and the group's open conversation id.
    pub robot_code: Option<String>,
    pub conversation: Option<String>,
    /// Sending limits (per second, per minute).
    pub per_second: u32,
    pub per_minute: u32,
    pub throttle_backoff: Duration,
}

impl ChannelConfig {
    /// A channel with the kind's defaults.
    pub fn new(name: &str, kind: ChannelKind, url: &str) -> ChannelConfig {
        let (per_second, per_minute) = kind.default_limits();
        ChannelConfig {
            name: name.to_owned(),
            kind,
            url: url.trim_end_matches('/').to_owned(),
            keyword: None,
            min_severity: Severity::Warning,
            sources: Vec::new(),
            robot_code: None,
            conversation: None,
            per_second,
            per_minute,
            throttle_backoff: kind.default_throttle_backoff(),
        }
    }

    /// Does this channel take `alert`? A channel never receives the alert about itself;
    /// an alert addressed to one channel goes to that channel only.
    pub fn accepts(&self, alert: &Alert) -> bool {
        if let Some(to) = &alert.to_channel {
            return *to == self.name && alert.about_channel.as_deref() != Some(to.as_str());
        }
        if alert.about_channel.as_deref() == Some(self.name.as_str()) {
            return false;
        }
        if alert.source == "test" {
            return false;
        }
        alert.severity >= self.min_severity
            && (self.sources.is_empty() || self.sources.contains(&alert.source))
    }

    /// The host (and port, if not 443) the channel sends to, for the egress allowlist.
    pub fn host(&self) -> Option<String> {
        host_of(&self.url)
    }

    /// The credential name of one secret field.
    pub fn credential_name(&self, field: &str) -> String {
        format!("alert/{}/{field}", self.name)
    }

    /// Check the settings a channel cannot work without; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_channel_name(&self.name) {
            return Err(format!(
                "alert channel name {:?}: use 1 to 40 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if !self.url.starts_with("https://") || self.host().is_none() {
            return Err(format!(
                "alert channel {}: url must be an https:// URL",
                self.name
            ));
        }
        if self.url.contains('?') || self.url.contains('#') {
            return Err(format!(
                "alert channel {}: url must not carry a query string (the access token is a secret: store it with `stockade alert secret set {}`)",
                self.name, self.name
            ));
        }
        if self.kind == ChannelKind::DingtalkApp
            && (self.robot_code.as_deref().unwrap_or("").is_empty()
                || self.conversation.as_deref().unwrap_or("").is_empty())
        {
            return Err(format!(
                "alert channel {}: a dingtalk_app channel needs robot_code and conversation (the group's openConversationId)",
                self.name
            ));
        }
        for s in &self.sources {
            if !SOURCES.contains(&s.as_str()) {
                return Err(format!(
                    "alert channel {}: unknown source {s:?} (known: {})",
                    self.name,
                    SOURCES.join(", ")
                ));
            }
        }
        if self.per_minute == 0 || self.per_second == 0 {
            return Err(format!(
                "alert channel {}: sending limits must be at least 1",
                self.name
            ));
        }
        let (ps, pm) = self.kind.default_limits();
        if self.per_second > ps || self.per_minute > pm {
            return Err(format!(
                "alert channel {}: {} allows at most {ps} a second and {pm} a minute from Stockade (the platform's limit with a margin); set lower values only",
                self.name,
                self.kind.platform()
            ));
        }
        if let Some(k) = &self.keyword
            && (k.is_empty() || k.chars().count() > 40 || k.chars().any(char::is_control))
        {
            return Err(format!(
                "alert channel {}: keyword must be 1 to 40 printable characters",
                self.name
            ));
        }
        Ok(())
    }
}

pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `https://host[:port]/…` → `host` or `host:port` (lower case), as the egress
/// allowlist spells it.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let a = authority.to_ascii_lowercase();
    Some(a.strip_suffix(":443").map_or(a.clone(), str::to_owned))
}

/// The language of the messages the system writes to DingTalk and Feishu/Lark
/// (`[alerts] language`): titles, labels, hints and the message frame. Identifiers,
/// third-party text and a workflow's own `alert.send` title stay as they are; the generic
/// webhook's JSON stays English (it is read by programs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Language {
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Language {
    pub fn parse(s: &str) -> Option<Language> {
        match s {
            "en" => Some(Language::En),
            "zh" | "zh-CN" | "zh-Hans" => Some(Language::Zh),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Zh => "zh",
        }
    }
}

/// The alert pipeline's settings.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub channels: Vec<ChannelConfig>,
    /// The language of the messages (default English).
    pub language: Language,
    /// Repeats of the same source and error class within this window fold into one
    /// follow-up message with a count.
    pub window: Duration,
    /// Base URL of this server's dashboard, for links in messages.
    pub dashboard_url: Option<String>,
    /// How often the router looks for new events when nothing wakes it.
    pub poll_interval: Duration,
    /// Delivered outbox rows are kept this long.
    pub retention: Duration,
    /// Transient failures back off from `retry_base` doubling up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Consecutive transient failures after which the other channels hear that this one
    /// cannot deliver.
    pub down_after: u32,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            channels: Vec::new(),
            language: Language::En,
            window: Duration::from_secs(300),
            dashboard_url: None,
            poll_interval: Duration::from_millis(500),
            retention: Duration::from_secs(30 * 86_400),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            down_after: 5,
        }
    }
}

impl AlertsConfig {
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (i, c) in self.channels.iter().enumerate() {
            c.validate()?;
            if self.channels[..i].iter().any(|o| o.name == c.name) {
                return Err(format!("alert channel {} is defined twice", c.name));
            }
        }
        if let Some(u) = &self.dashboard_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err("[alerts] dashboard_url must be an http(s) URL".into());
        }
        Ok(())
    }

    /// The hosts the alert channels send to (added to the egress allowlist).
    pub fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.channels.iter().filter_map(|c| c.host()).collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_validation() {
        assert_eq!(
            host_of("https://oapi.dingtalk.com/robot/send").as_deref(),
            Some("oapi.dingtalk.com")
        );
        assert_eq!(
            host_of("https://127.0.0.1:8443/x").as_deref(),
            Some("127.0.0.1:8443")
        );
        assert_eq!(
            host_of("https://A.example.com:443").as_deref(),
            Some("a.example.com")
        );
        assert!(host_of("http://x").is_none());
        assert!(host_of("https://u:p@x/").is_none());

        let mut c = ChannelConfig::new(
            "ops",
            ChannelKind::Dingtalk,
            "https://oapi.dingtalk.com/robot/send",
        );
        assert!(c.validate().is_ok());
        c.url = "https://oapi.dingtalk.com/robot/send?access_token=abc".into();
        assert!(c.validate().unwrap_err().contains("secret"));
        c.url = "https://oapi.dingtalk.com/robot/send".into();
        c.per_minute = 25;
        assert!(c.validate().unwrap_err().contains("at most"));
        let app = ChannelConfig::new("app", ChannelKind::DingtalkApp, "https://api.dingtalk.com");
        assert!(app.validate().unwrap_err().contains("robot_code"));
        let mut bad = ChannelConfig::new("x y", ChannelKind::Webhook, "https://h/");
        assert!(bad.validate().is_err());
        bad.name = "ok".into();
        bad.sources = vec!["nope".into()];
        assert!(bad.validate().unwrap_err().contains("unknown source"));
    }
}
