//! Sending one message to one channel: secrets from the credential store, the body
//! rendered and signed per platform, out through the egress gateway, and the answer
//! classified — a non-zero code inside an HTTP 200 is a failure.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use stockade_core::SecretString;
use stockade_egress::{Caller, Egress, EgressError, Gateway, Request};
use stockade_vault::{Vault, VaultError};

use crate::config::{ChannelConfig, ChannelKind};
use crate::model::Alert;
use crate::render::{self, Envelope};
use crate::scrub::scrub;
use crate::sign;

/// What the platform's answer means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Delivered { detail: String },
    /// "Too fast": wait at least this long before the next message.
    RateLimited { wait: Duration, detail: String },
    /// Down, unreachable or failing: retry with backoff.
    Transient { detail: String },
    /// The channel's configuration or credentials are wrong (signature, keyword, IP
    /// allowlist, unknown token): retrying cannot help until someone fixes it.
    Config { detail: String },
}

impl Outcome {
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Delivered { detail }
            | Outcome::RateLimited { detail, .. }
            | Outcome::Transient { detail }
            | Outcome::Config { detail } => detail,
        }
    }

    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Transient { .. } => "failed",
            Outcome::Config { .. } => "config_error",
        }
    }
}

/// A channel ready to send: its configuration, an egress handle limited to its host,
/// and (DingTalk app robot) a cached access token.
pub struct ChannelClient {
    pub config: ChannelConfig,
    environment: &'static str,
    dashboard: Option<String>,
    language: crate::config::Language,
    egress: Egress,
    app_token: Mutex<Option<(SecretString, Instant)>>,
}

impl std::fmt::Debug for ChannelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelClient")
            .field("name", &self.config.name)
            .field("kind", &self.config.kind)
            .finish_non_exhaustive()
    }
}

fn answer_text(s: &str) -> String {
    scrub(s, 120)
}

impl ChannelClient {
    pub fn new(
        gateway: &Gateway,
        config: ChannelConfig,
        environment: &'static str,
        dashboard: Option<String>,
    ) -> ChannelClient {
        let host = config.host().unwrap_or_default();
        let egress = gateway.client(Caller::Alerts(config.name.clone()), &[host.as_str()]);
        ChannelClient {
            config,
            environment,
            dashboard,
            language: crate::config::Language::En,
            egress,
            app_token: Mutex::new(None),
        }
    }

    /// The language of its messages (`[alerts] language`; default English).
    pub fn with_language(mut self, language: crate::config::Language) -> ChannelClient {
        self.language = language;
        self
    }

    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            environment: self.environment,
            keyword: self.config.keyword.as_deref(),
            dashboard: self.dashboard.as_deref(),
            lang: self.language,
        }
    }

    /// How many of `alerts` fit in one message.
    pub fn fitting(&self, alerts: &[Alert]) -> usize {
        render::fitting(self.config.kind, alerts, &self.envelope())
    }

    /// A fingerprint of the channel's settings and credential versions: when it changes,
    /// alerts held for a configuration error are released.
    pub async fn fingerprint(&self, vault: &Vault) -> String {
        let mut text = format!("{:?}", self.config);
        if let Ok(list) = vault.list_credentials().await {
            for c in list {
                if c.name.starts_with(&format!("alert/{}/", self.config.name)) {
                    text.push_str(&format!("|{}@{}", c.name, c.updated_at_ms));
                }
            }
        }
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
    }

    async fn secret(&self, vault: &Vault, field: &str) -> Result<SecretString, Outcome> {
        let name = self.config.credential_name(field);
        match vault.reveal_credential(&name).await {
            Ok(s) => Ok(s),
            Err(VaultError::Store(stockade_store::StoreError::NotFound(_))) => {
                Err(Outcome::Config {
                    detail: format!(
                        "the channel's {field} is not set: store it with `stockade alert secret set {}`",
                        self.config.name
                    ),
                })
            }
            Err(e) => Err(Outcome::Transient {
                detail: format!("the channel's {field} could not be read: {e}"),
            }),
        }
    }

    /// Render, sign and send `alerts` as one message.
    pub async fn send(&self, vault: &Vault, alerts: &[Alert]) -> Outcome {
        match self.try_send(vault, alerts).await {
            Ok(o) | Err(o) => o,
        }
    }

    async fn try_send(&self, vault: &Vault, alerts: &[Alert]) -> Result<Outcome, Outcome> {
        let env = self.envelope();
        let cfg = &self.config;
        let robot = cfg.robot_code.as_deref().unwrap_or("");
        let conversation = cfg.conversation.as_deref().unwrap_or("");
        let mut body = render::body(cfg.kind, alerts, &env, robot, conversation);
        // The platform checks the signature's timestamp against its own clock: when this
        // host's was stepped, the database's is the better guess.
        let now_ms = stockade_core::clock::now_ms();
        match cfg.kind {
            ChannelKind::Dingtalk => {
                let token = self.secret(vault, "access_token").await?;
                let secret = self.secret(vault, "secret").await?;
                let url = format!(
                    "{}?{}",
                    cfg.url,
                    sign::dingtalk_query(
                        token.expose_secret(),
                        Some(secret.expose_secret()),
                        now_ms
                    )
                );
                let req = Request::post(url, "/robot/send", "dingtalk.send").json(&body);
                let resp = self.egress.send(req).await;
                Ok(classify_dingtalk(cfg, resp))
            }
            ChannelKind::Feishu | ChannelKind::Lark => {
                let hook = self.secret(vault, "hook_id").await?;
                let secret = self.secret(vault, "secret").await?;
                let ts = now_ms / 1000;
                if let Value::Object(m) = &mut body {
                    m.insert("timestamp".into(), Value::String(ts.to_string()));
                    m.insert(
                        "sign".into(),
                        Value::String(sign::feishu_sign(secret.expose_secret(), ts)),
                    );
                }
                let url = format!("{}/{}", cfg.url, sign::url_encode(hook.expose_secret()));
                let req =
                    Request::post(url, "/open-apis/bot/v2/hook/{hook}", "feishu.send").json(&body);
                let resp = self.egress.send(req).await;
                Ok(classify_feishu(cfg, resp))
            }
            ChannelKind::DingtalkApp => {
                let mut refreshed = false;
                loop {
                    let token = self.app_token(vault, refreshed).await?;
                    let req = Request::post(
                        format!("{}/v1.0/robot/groupMessages/send", cfg.url),
                        "/v1.0/robot/groupMessages/send",
                        "dingtalk_app.send",
                    )
                    .secret_header("x-acs-dingtalk-access-token", &token)
                    .json(&body);
                    let resp = self.egress.send(req).await;
                    let outcome = classify_dingtalk_app(cfg, resp);
                    if let Outcome::Config { detail } = &outcome
                        && detail.contains("InvalidAuthentication")
                        && !refreshed
                    {
                        // The cached token expired or was revoked early: fetch a new one once.
                        refreshed = true;
                        continue;
                    }
                    return Ok(outcome);
                }
            }
            ChannelKind::Webhook => {
                let secret = self.secret(vault, "secret").await?;
                let bytes = body.to_string().into_bytes();
                let ts = now_ms / 1000;
                let signature = sign::webhook_signature(secret.expose_secret(), ts, &bytes);
                let delivery = format!(
                    "{}-{}",
                    alerts.first().map_or(0, |a| a.event_id),
                    alerts.len()
                );
                let req = Request::post(cfg.url.clone(), "{webhook}", "webhook.send")
                    .header("x-stockade-timestamp", ts.to_string())
                    .header("x-stockade-signature", signature)
                    .header("x-stockade-delivery", delivery)
                    .body(bytes, "application/json");
                let resp = self.egress.send(req).await;
                Ok(classify_webhook(cfg, resp))
            }
        }
    }

    /// The app robot's access token, fetched with the app key and secret and cached
    /// until five minutes before it expires.
    async fn app_token(&self, vault: &Vault, force: bool) -> Result<SecretString, Outcome> {
        if !force
            && let Some((t, until)) = &*self.app_token.lock().unwrap_or_else(|p| p.into_inner())
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let key = self.secret(vault, "app_key").await?;
        let secret = self.secret(vault, "app_secret").await?;
        let body =
            serde_json::json!({"appKey": key.expose_secret(), "appSecret": secret.expose_secret()});
        let req = Request::post(
            format!("{}/v1.0/oauth2/accessToken", self.config.url),
            "/v1.0/oauth2/accessToken",
            "dingtalk_app.token",
        )
        .json(&body);
        drop(body);
        let platform = self.config.kind.platform();
        let resp = self
            .egress
            .send(req)
            .await
            .map_err(|e| egress_outcome(platform, &e))?;
        let json: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if resp.status.is_success()
            && let Some(token) = json.get("accessToken").and_then(Value::as_str)
        {
            let ttl = json.get("expireIn").and_then(Value::as_i64).unwrap_or(7200);
            let until = Instant::now()
                + Duration::from_secs(u64::try_from((ttl - 300).max(30)).unwrap_or(30));
            let token = SecretString::new(token.to_owned());
            *self.app_token.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((token.clone(), until));
            return Ok(token);
        }
        let code = json.get("code").and_then(Value::as_str).unwrap_or("");
        let status = resp.status.as_u16();
        Err(if (400..500).contains(&status) && status != 429 {
            Outcome::Config {
                detail: format!(
                    "{platform} refused the app key or secret (HTTP {status}, code {}): check app_key and app_secret with `stockade alert secret set {}`",
                    answer_text(code),
                    self.config.name
                ),
            }
        } else {
            Outcome::Transient {
                detail: format!("{platform} did not issue an access token (HTTP {status})"),
            }
        })
    }
}

fn egress_outcome(platform: &str, e: &EgressError) -> Outcome {
    match e {
        EgressError::Blocked { .. } | EgressError::NotHttps | EgressError::InvalidUrl => {
            Outcome::Config {
                detail: format!("cannot send to {platform}: {e}"),
            }
        }
        _ => Outcome::Transient {
            detail: format!("cannot reach {platform}: {e}"),
        },
    }
}

fn http_failure(platform: &str, status: u16) -> Outcome {
    if status == 429 {
        Outcome::RateLimited {
            wait: Duration::from_secs(60),
            detail: format!("{platform} answered HTTP 429 (too many requests)"),
        }
    } else {
        Outcome::Transient {
            detail: format!("{platform} answered HTTP {status}"),
        }
    }
}

fn classify_dingtalk(
    cfg: &ChannelConfig,
    resp: Result<stockade_egress::Response, EgressError>,
) -> Outcome {
    let p = cfg.kind.platform();
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return egress_outcome(p, &e),
    };
    if !resp.status.is_success() {
        return http_failure(p, resp.status.as_u16());
    }
    let json: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let Some(code) = json.get("errcode").and_then(Value::as_i64) else {
        return Outcome::Transient {
            detail: format!("{p} answered without an errcode"),
        };
    };
    let msg = json.get("errmsg").and_then(Value::as_str).unwrap_or("");
    let said = format!("{p} answered errcode {code} ({})", answer_text(msg));
    let name = &cfg.name;
    match code {
        0 => Outcome::Delivered { detail: said },
        130_101 => Outcome::RateLimited {
            wait: cfg.throttle_backoff,
            detail: format!("{said}: more than 20 messages a minute; the robot is throttled"),
        },
        310_000 => {
            let lower = msg.to_ascii_lowercase();
            let why = if lower.contains("sign") || msg.contains("签名") {
                format!(
                    "the signature was rejected: the signing secret (SEC…) is wrong; set it again with `stockade alert secret set {name}`"
                )
            } else if lower.contains("timestamp") || msg.contains("时间戳") {
                "the timestamp was rejected: this server's clock is more than an hour off; fix NTP"
                    .to_owned()
            } else if lower.contains("keyword") || msg.contains("关键词") {
                format!(
                    "the robot requires a keyword the message lacks: set `keyword` of channel {name} to one of the robot's keywords"
                )
            } else if lower.contains("ip") || msg.contains("白名单") {
                "this server's IP address is not on the robot's IP allowlist: add it in the robot's security settings".to_owned()
            } else {
                "the robot's security settings rejected the message".to_owned()
            };
            Outcome::Config {
                detail: format!("{said}: {why}"),
            }
        }
        300_001 | 300_005 | 400_101 | 400_102 => Outcome::Config {
            detail: format!(
                "{said}: the robot's access token is unknown or the robot was removed; set access_token with `stockade alert secret set {name}`"
            ),
        },
        460_101 => Outcome::Transient {
            detail: format!("{said}: the message was too long"),
        },
        _ => Outcome::Transient { detail: said },
    }
}

fn classify_feishu(
    cfg: &ChannelConfig,
    resp: Result<stockade_egress::Response, EgressError>,
) -> Outcome {
    let p = cfg.kind.platform();
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return egress_outcome(p, &e),
    };
    if !resp.status.is_success() {
        return http_failure(p, resp.status.as_u16());
    }
    let json: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let Some(code) = json
        .get("code")
        .or_else(|| json.get("StatusCode"))
        .and_then(Value::as_i64)
    else {
        return Outcome::Transient {
            detail: format!("{p} answered without a code"),
        };
    };
    let msg = json
        .get("msg")
        .or_else(|| json.get("StatusMessage"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let said = format!("{p} answered code {code} ({})", answer_text(msg));
    let name = &cfg.name;
    let config = |why: String| Outcome::Config {
        detail: format!("{said}: {why}"),
    };
    match code {
        0 => Outcome::Delivered { detail: said },
        11_232 => Outcome::RateLimited {
            wait: cfg.throttle_backoff,
            detail: format!("{said}: the bot is rate-limited"),
        },
        19_021 => config(format!(
            "the signature or timestamp was rejected: the signing secret is wrong (set it again with `stockade alert secret set {name}`) or this server's clock is more than an hour off"
        )),
        19_022 => config(
            "this server's IP address is not on the bot's IP allowlist: add it in the bot's security settings".to_owned(),
        ),
        19_024 => config(format!(
            "the bot requires a keyword the message lacks: set `keyword` of channel {name} to one of the bot's keywords"
        )),
        19_001 | 19_002 | 19_007 => config(format!(
            "the hook id is unknown or the bot is disabled: set hook_id with `stockade alert secret set {name}`"
        )),
        _ => Outcome::Transient { detail: said },
    }
}

fn classify_dingtalk_app(
    cfg: &ChannelConfig,
    resp: Result<stockade_egress::Response, EgressError>,
) -> Outcome {
    let p = cfg.kind.platform();
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return egress_outcome(p, &e),
    };
    let json: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let status = resp.status.as_u16();
    if resp.status.is_success() && json.get("processQueryKey").is_some() {
        return Outcome::Delivered {
            detail: format!("{p} accepted the message (HTTP {status})"),
        };
    }
    let code = json.get("code").and_then(Value::as_str).unwrap_or("");
    let said = format!("{p} answered HTTP {status}, code {}", answer_text(code));
    if code.contains("QpsLimit") || code.contains("Throttling") || status == 429 {
        return Outcome::RateLimited {
            wait: cfg.throttle_backoff,
            detail: format!("{said}: too many messages"),
        };
    }
    if code == "InvalidAuthentication" {
        return Outcome::Config {
            detail: format!(
                "{said} (InvalidAuthentication): the access token was refused; check app_key and app_secret"
            ),
        };
    }
    if code.starts_with("invalidParameter") || code.contains("robot") || code.contains("NotFound") {
        return Outcome::Config {
            detail: format!(
                "{said}: check robot_code and conversation (the group's openConversationId) of channel {}",
                cfg.name
            ),
        };
    }
    if (400..500).contains(&status) && !json.is_null() && resp.status != 408 {
        return Outcome::Config { detail: said };
    }
    http_failure(p, status)
}

fn classify_webhook(
    cfg: &ChannelConfig,
    resp: Result<stockade_egress::Response, EgressError>,
) -> Outcome {
    let p = cfg.kind.platform();
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return egress_outcome(p, &e),
    };
    let status = resp.status.as_u16();
    match status {
        200..=299 => Outcome::Delivered {
            detail: format!("{p} answered HTTP {status}"),
        },
        401 | 403 => Outcome::Config {
            detail: format!(
                "{p} answered HTTP {status}: the receiver rejected the signature; set the shared secret with `stockade alert secret set {}`",
                cfg.name
            ),
        },
        404 | 405 | 410 => Outcome::Config {
            detail: format!("{p} answered HTTP {status}: check the channel's url"),
        },
        408 | 429 | 500..=599 => http_failure(p, status),
        _ => Outcome::Transient {
            detail: format!("{p} answered HTTP {status}"),
        },
    }
}
