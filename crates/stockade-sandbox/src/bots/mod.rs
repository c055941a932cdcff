//! Chat-bot simulators: the DingTalk custom robot (`oapi.dingtalk.com/robot/send`), the
//! DingTalk enterprise internal-app robot (`api.dingtalk.com/v1.0/...`), the Feishu / Lark
//! custom bot (`/open-apis/bot/v2/hook/<uuid>`) and a generic signed webhook receiver, all
//! served by one HTTPS server on an ephemeral 127.0.0.1 port behind its own test CA.
//!
//! Bots are registered at run time. Each answers like the real service (paths, signature
//! schemes, ±1 hour timestamps, keywords, body size limits, IP allowlists, rate limits with
//! their penalties, the real error bodies, HTTP 200 with a non-zero code where the platform
//! does that; see `reference/security-specs.md` §1 and §2), and every request to a bot
//! path is recorded ([`Bots::received`]), accepted or not.
//!
//! Out-of-process tests can steer the simulator through loopback-only admin routes:
//! `GET /_sandbox/bots/received` (JSON array of [`Received`]), `DELETE
//! /_sandbox/bots/received`, `POST /_sandbox/bots/fault` with
//! `{"bot":"name","fault":"down|hang|throttle|none"}` (204; 404 for an unknown bot) and
//! `PUT /_sandbox/bots/rate-limits` with `{"enabled":bool}` (204).

mod dingtalk;
mod dingtalk_app;
mod feishu;
mod ipallow;
mod sign;
mod webhook;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use sign::{dingtalk_sign, feishu_sign, webhook_signature};

use crate::SandboxError;
use crate::rng::SplitMix64;
use crate::util::percent_encode;

/// Requests larger than this are not read further (every bot's own limit is lower).
const READ_LIMIT: usize = 1 << 20;
/// The most requests [`Bots::received`] keeps; the oldest are dropped first.
const MAX_RECEIVED: usize = 100_000;
/// How long the Feishu bot (and the generic webhook) stays throttled after
/// [`BotFault::Throttle`].
const FEISHU_THROTTLE: Duration = Duration::from_secs(10);

const HEX: &[u8] = b"0123456789abcdef";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// How to start the bot simulator. [`BotsConfig::default`] gives the values documented
/// on each field (the real platforms' limits).
#[derive(Debug, Clone)]
pub struct BotsConfig {
    /// Seeds every generated token, secret and id (default 1): the same seed and bot
    /// name give the same values.
    pub seed: u64,
    /// Whether rate limits are enforced (default true). Settable at run time
    /// ([`Bots::set_rate_limits`]).
    pub rate_limits: bool,
    /// DingTalk custom robot: accepted messages per robot per window (default 20).
    pub dingtalk_per_minute: u32,
    /// DingTalk custom robot: after exceeding the per-minute limit, every send answers
    /// 130101 for this long (default 10 minutes).
    pub dingtalk_penalty: Duration,
    /// The sliding window of both DingTalk rate limits (default 60 s; shorten it in tests).
    pub dingtalk_window: Duration,
    /// Feishu: accepted messages per bot per second (default 5).
    pub feishu_per_second: u32,
    /// Feishu: accepted messages per bot per minute (default 100).
    pub feishu_per_minute: u32,
    /// DingTalk internal-app access token lifetime (default 7200 s).
    pub app_token_ttl: Duration,
    /// DingTalk internal-app robot: messages per conversation per window (default 20).
    pub app_per_minute: u32,
}

impl Default for BotsConfig {
    fn default() -> Self {
        BotsConfig {
            seed: 1,
            rate_limits: true,
            dingtalk_per_minute: 20,
            dingtalk_penalty: Duration::from_secs(600),
            dingtalk_window: Duration::from_secs(60),
            feishu_per_second: 5,
            feishu_per_minute: 100,
            app_token_ttl: Duration::from_secs(7200),
            app_per_minute: 20,
        }
    }
}

/// A DingTalk custom robot to register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DingTalkRobotSpec {
    /// The bot's name in [`Received::bot`], [`Bots::accepted`] and [`Bots::set_fault`].
    pub name: String,
    /// Sign (加签) security setting: a `SEC…` secret is generated and every message must
    /// carry `timestamp` and `sign` in the query.
    pub sign: bool,
    /// Custom keywords: when set, a message must contain at least one.
    pub keywords: Vec<String>,
    /// IP allowlist: exact IPs or CIDRs (empty = any peer).
    pub ip_allow: Vec<String>,
}

/// A registered DingTalk custom robot. `Debug` redacts the token, secret and URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DingTalkRobot {
    /// The name given at registration.
    pub name: String,
    /// The webhook `access_token` (64 hex characters).
    pub access_token: String,
    /// `"SEC"` + 64 hex characters when signing is on.
    pub secret: Option<String>,
    /// `base_url + "/robot/send?access_token=..."`.
    pub webhook_url: String,
}

impl DingTalkRobot {
    /// The webhook URL with `timestamp` and the (once percent-encoded) `sign` appended,
    /// or [`DingTalkRobot::webhook_url`] when the robot does not sign.
    pub fn signed_url(&self, timestamp_ms: i64) -> String {
        match &self.secret {
            Some(secret) => {
                let ts = timestamp_ms.to_string();
                let sign = dingtalk_sign(secret, &ts);
                format!(
                    "{}&timestamp={ts}&sign={}",
                    self.webhook_url,
                    percent_encode(&sign)
                )
            }
            None => self.webhook_url.clone(),
        }
    }
}

impl fmt::Debug for DingTalkRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkRobot")
            .field("name", &self.name)
            .field("access_token", &"[redacted]")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// A DingTalk enterprise internal app with a robot in one group conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DingTalkAppSpec {
    /// The bot's name in [`Received::bot`], [`Bots::accepted`] and [`Bots::set_fault`].
    pub name: String,
}

/// A registered DingTalk internal app. `Debug` redacts the app secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DingTalkApp {
    /// The name given at registration.
    pub name: String,
    /// `ding…` (20 characters), also the app's `robotCode`.
    pub app_key: String,
    /// The app secret (`appSecret` of the token request).
    pub app_secret: String,
    /// The robot's code (equal to `app_key`, as for an internal app's own robot).
    pub robot_code: String,
    /// The group the robot is in (`cid…`).
    pub open_conversation_id: String,
    /// Stands for `https://api.dingtalk.com`: `{api_base}/v1.0/oauth2/accessToken`,
    /// `{api_base}/v1.0/robot/groupMessages/send`.
    pub api_base: String,
}

impl fmt::Debug for DingTalkApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalkApp")
            .field("name", &self.name)
            .field("app_key", &self.app_key)
            .field("app_secret", &"[redacted]")
            .field("robot_code", &self.robot_code)
            .field("open_conversation_id", &self.open_conversation_id)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// A Feishu / Lark custom bot to register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeishuBotSpec {
    /// The bot's name in [`Received::bot`], [`Bots::accepted`] and [`Bots::set_fault`].
    pub name: String,
    /// Signature verification: a secret is generated and every message must carry
    /// top-level `timestamp` (seconds) and `sign`.
    pub sign: bool,
    /// Custom keywords: when set, a text-like value must contain at least one.
    pub keywords: Vec<String>,
    /// IP allowlist: exact IPs, CIDRs or `123.12.1.*` (empty = any peer).
    pub ip_allow: Vec<String>,
}

/// A registered Feishu / Lark custom bot. `Debug` redacts the hook id, secret and URL.
#[derive(Clone, PartialEq, Eq)]
pub struct FeishuBot {
    /// The name given at registration.
    pub name: String,
    /// The UUID in the webhook path (it is the bot's credential).
    pub hook_id: String,
    /// The signing secret when signature verification is on.
    pub secret: Option<String>,
    /// `base_url + "/open-apis/bot/v2/hook/<uuid>"`.
    pub webhook_url: String,
}

impl FeishuBot {
    /// Add top-level `"timestamp"` (a string of seconds) and `"sign"` to a message when
    /// the bot signs (no-op otherwise, or when `body` is not an object).
    pub fn sign_body(&self, body: &mut Value, timestamp_s: i64) {
        if let (Some(secret), Some(obj)) = (&self.secret, body.as_object_mut()) {
            let ts = timestamp_s.to_string();
            obj.insert("sign".into(), Value::String(feishu_sign(secret, &ts)));
            obj.insert("timestamp".into(), Value::String(ts));
        }
    }
}

impl fmt::Debug for FeishuBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeishuBot")
            .field("name", &self.name)
            .field("hook_id", &"[redacted]")
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// A generic signed webhook receiver to register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookSpec {
    /// Its name: the last path segment of its URL, and the bot name in [`Received::bot`].
    /// Registering a name again replaces the earlier receiver.
    pub name: String,
}

/// A registered generic webhook receiver (our own scheme, see [`webhook_signature`]):
/// `POST {url}` with `X-Stockade-Timestamp` (Unix seconds, ±300 s),
/// `X-Stockade-Signature: sha256=<hex>` and `X-Stockade-Delivery`; answers 204, or 401
/// `{"error":"invalid signature"}`, 404 unknown name, 413 over 256 KiB, 400 not JSON.
/// `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookReceiver {
    /// The name given at registration.
    pub name: String,
    /// The HMAC key (64 hex characters).
    pub secret: String,
    /// `base_url + "/webhook/<name>"`.
    pub url: String,
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .field("url", &self.url)
            .finish()
    }
}

/// A fault injected into one bot (by name). Setting a fault replaces the previous one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotFault {
    /// Normal behaviour; also ends a throttle or rate-limit penalty and empties the
    /// bot's rate windows.
    #[default]
    None,
    /// Every request answers HTTP 503 with a small text/html body (a load balancer page).
    Down,
    /// Requests are never answered (held until the client gives up).
    Hang,
    /// Put the bot in its rate-limited state now: DingTalk robot and app start their
    /// penalty (`dingtalk_penalty`), Feishu answers 11232 for the next 10 s, the generic
    /// webhook answers 429 for the next 10 s. Applied even with rate limits off.
    Throttle,
}

/// Which kind of bot a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotKind {
    /// DingTalk custom robot (`/robot/send`); `"dingtalk"` in JSON.
    #[serde(rename = "dingtalk")]
    DingTalk,
    /// DingTalk internal-app robot (`/v1.0/...`, token requests included);
    /// `"dingtalk_app"` in JSON.
    #[serde(rename = "dingtalk_app")]
    DingTalkApp,
    /// Feishu / Lark custom bot.
    Feishu,
    /// Generic signed webhook receiver.
    Webhook,
}

impl BotKind {
    fn as_str(self) -> &'static str {
        match self {
            BotKind::DingTalk => "dingtalk",
            BotKind::DingTalkApp => "dingtalk_app",
            BotKind::Feishu => "feishu",
            BotKind::Webhook => "webhook",
        }
    }
}

/// One request a bot received. `Debug` leaves out the query, headers and body (they
/// carry tokens).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// The bot's name, or `""` when the token / hook id / name is unknown.
    pub bot: String,
    /// Which kind of bot the path belongs to.
    pub kind: BotKind,
    /// Arrival time, Unix milliseconds.
    pub at_ms: i64,
    /// The request path (without the query).
    pub path: String,
    /// The HTTP status answered (0: never answered, the [`BotFault::Hang`] fault).
    pub http_status: u16,
    /// `"0"` on success, else the platform code (`"310000"`, `"19021"`,
    /// `"InvalidAuthentication"`, `"401"`, `"503"` for [`BotFault::Down`], `""` for a hang).
    pub code: String,
    /// The `errmsg` / `msg` / `message` / `error` answered.
    pub message: String,
    /// Whether the bot accepted the request (a message delivered, a token issued).
    pub accepted: bool,
    /// The parsed JSON request body (`Null` if not JSON). A token request's `appSecret`
    /// is replaced by `"[redacted]"`.
    pub body: Value,
    /// The request body's length in bytes.
    pub body_len: usize,
    /// The raw query string (`""` when none).
    pub query: String,
    /// The request headers, names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// The first value of a request header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("bot", &self.bot)
            .field("kind", &self.kind)
            .field("at_ms", &self.at_ms)
            .field("path", &self.path)
            .field("http_status", &self.http_status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("accepted", &self.accepted)
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

// ---- internal state ----

/// The time a request is judged at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub now: Instant,
    pub now_ms: i64,
}

/// Timestamps of accepted messages, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Window(VecDeque<Instant>);

impl Window {
    /// Forget entries older than `span` and count the rest.
    pub fn count(&mut self, now: Instant, span: Duration) -> usize {
        while self
            .0
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= span)
        {
            self.0.pop_front();
        }
        self.0.len()
    }

    /// Entries younger than `span` (without forgetting older ones).
    pub fn count_within(&self, now: Instant, span: Duration) -> usize {
        self.0
            .iter()
            .rev()
            .take_while(|t| now.saturating_duration_since(**t) < span)
            .count()
    }

    pub fn push(&mut self, now: Instant) {
        self.0.push_back(now);
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// Whether `until` is still ahead.
pub(crate) fn active(until: Option<Instant>, now: Instant) -> bool {
    until.is_some_and(|u| u > now)
}

pub(crate) struct Shared {
    pub cfg: BotsConfig,
    pub rate_limits: AtomicBool,
    pub base_url: String,
    state: Mutex<BotsState>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BotsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rate_limits(&self) -> bool {
        self.rate_limits.load(Ordering::Relaxed)
    }
}

pub(crate) struct BotsState {
    seed: u64,
    /// Run-time randomness: app tokens, request ids, process query keys.
    pub rng: SplitMix64,
    issued: HashMap<(BotKind, String), u32>,
    /// By access token.
    pub dingtalk: HashMap<String, dingtalk::Robot>,
    pub apps: Vec<dingtalk_app::App>,
    /// By access token.
    pub app_tokens: HashMap<String, dingtalk_app::Token>,
    /// By hook id.
    pub feishu: HashMap<String, feishu::Bot>,
    /// By name.
    pub webhooks: HashMap<String, webhook::Hook>,
    /// Down / Hang faults by bot name.
    faults: HashMap<String, BotFault>,
    /// How long a bot takes to answer, by bot name (none: at once).
    delays: HashMap<String, Duration>,
    received: VecDeque<Received>,
}

impl BotsState {
    /// A generator for one bot's credentials, fixed by the seed, kind, name and how many
    /// bots of that kind and name came before.
    fn bot_rng(&mut self, kind: BotKind, name: &str) -> SplitMix64 {
        let n = self.issued.entry((kind, name.to_owned())).or_insert(0);
        let index = *n;
        *n += 1;
        let mut msg = Vec::with_capacity(64 + name.len());
        msg.extend_from_slice(&self.seed.to_be_bytes());
        msg.extend_from_slice(kind.as_str().as_bytes());
        msg.push(0);
        msg.extend_from_slice(name.as_bytes());
        msg.push(0);
        msg.extend_from_slice(&index.to_be_bytes());
        let d = digest::digest(&digest::SHA256, &msg);
        let mut b = [0u8; 8];
        for (dst, src) in b.iter_mut().zip(d.as_ref()) {
            *dst = *src;
        }
        SplitMix64::new(u64::from_be_bytes(b))
    }

    /// The outcome a Down or Hang fault imposes on a request to `bot`.
    pub fn fault_outcome(&self, bot: &str, kind: BotKind) -> Option<Outcome> {
        match self.faults.get(bot) {
            Some(BotFault::Down) => Some(Outcome {
                bot: bot.to_owned(),
                kind,
                status: 503,
                code: "503".into(),
                message: "Service Temporarily Unavailable".into(),
                accepted: false,
                reply: Reply::Html503,
                record_body: None,
            }),
            Some(BotFault::Hang) => Some(Outcome {
                bot: bot.to_owned(),
                kind,
                status: 0,
                code: String::new(),
                message: "no answer (hang fault)".into(),
                accepted: false,
                reply: Reply::Hang,
                record_body: None,
            }),
            _ => None,
        }
    }

    fn knows(&self, name: &str) -> bool {
        self.dingtalk.values().any(|r| r.name == name)
            || self.apps.iter().any(|a| a.name == name)
            || self.feishu.values().any(|b| b.name == name)
            || self.webhooks.contains_key(name)
    }

    /// Empty the rate windows and end the penalties of the bots named `name` (all bots
    /// when `None`).
    fn reset_limits(&mut self, name: Option<&str>) {
        let hit = |n: &str| name.is_none_or(|x| x == n);
        for r in self.dingtalk.values_mut().filter(|r| hit(&r.name)) {
            r.sent.clear();
            r.penalty_until = None;
        }
        for a in self.apps.iter_mut().filter(|a| hit(&a.name)) {
            a.sent.clear();
            a.penalty_until = None;
        }
        for b in self.feishu.values_mut().filter(|b| hit(&b.name)) {
            b.sent.clear();
            b.throttled_until = None;
        }
        for h in self.webhooks.values_mut().filter(|h| hit(&h.name)) {
            h.throttled_until = None;
        }
    }

    fn throttle(&mut self, name: &str, now: Instant, penalty: Duration) {
        for r in self.dingtalk.values_mut().filter(|r| r.name == name) {
            r.penalty_until = Some(now + penalty);
        }
        for a in self.apps.iter_mut().filter(|a| a.name == name) {
            a.penalty_until = Some(now + penalty);
        }
        for b in self.feishu.values_mut().filter(|b| b.name == name) {
            b.throttled_until = Some(now + FEISHU_THROTTLE);
        }
        if let Some(h) = self.webhooks.get_mut(name) {
            h.throttled_until = Some(now + FEISHU_THROTTLE);
        }
    }

    fn record(&mut self, r: Received) {
        if self.received.len() >= MAX_RECEIVED {
            self.received.pop_front();
        }
        self.received.push_back(r);
    }
}

/// A request as the bots see it.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub peer: Option<IpAddr>,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The body (empty when it was larger than [`READ_LIMIT`]).
    pub body: Bytes,
    pub body_len: usize,
    /// The parsed body, `Null` when not JSON.
    pub json: Value,
    /// Whether the body parsed as JSON.
    pub is_json: bool,
}

impl Incoming {
    async fn read(req: Request) -> Incoming {
        let (parts, body) = req.into_parts();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let (body, body_len) = match axum::body::to_bytes(body, READ_LIMIT).await {
            Ok(b) => {
                let n = b.len();
                (b, n)
            }
            Err(_) => (
                Bytes::new(),
                declared
                    .filter(|n| *n > READ_LIMIT)
                    .unwrap_or(READ_LIMIT + 1),
            ),
        };
        let parsed = serde_json::from_slice::<Value>(&body).ok();
        Incoming {
            peer,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers,
            body,
            body_len,
            is_json: parsed.is_some(),
            json: parsed.unwrap_or(Value::Null),
        }
    }

    /// The first value of a header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a request is answered.
#[derive(Debug)]
pub(crate) enum Reply {
    Json(Value),
    Empty,
    Html503,
    Hang,
}

/// A bot's verdict on one request.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub bot: String,
    pub kind: BotKind,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub accepted: bool,
    pub reply: Reply,
    /// Recorded instead of the request body (redaction).
    pub record_body: Option<Value>,
}

const DOWN_HTML: &str = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n";

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(value).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// Read the request, let `f` judge it under the lock, record it, answer.
async fn serve<F>(shared: Arc<Shared>, req: Request, f: F) -> Response
where
    F: FnOnce(&Shared, &mut BotsState, &Incoming, Clock) -> Outcome,
{
    let at_ms = stockade_core::time::now_ms();
    let inc = Incoming::read(req).await;
    let clock = Clock {
        now: Instant::now(),
        now_ms: stockade_core::time::now_ms(),
    };
    let (reply, status, delay) = {
        let mut st = shared.lock();
        let o = f(&shared, &mut st, &inc, clock);
        let delay = st.delays.get(&o.bot).copied();
        let received = Received {
            bot: o.bot,
            kind: o.kind,
            at_ms,
            path: inc.path.clone(),
            http_status: o.status,
            code: o.code,
            message: o.message,
            accepted: o.accepted,
            body: o.record_body.unwrap_or_else(|| inc.json.clone()),
            body_len: inc.body_len,
            query: inc.query.clone(),
            headers: inc.headers.clone(),
        };
        st.record(received);
        (o.reply, o.status, delay)
    };
    // A slow bot: recorded on arrival, answered later (the sender waits for it).
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    match reply {
        Reply::Json(v) => json_response(status, &v),
        Reply::Empty => empty(status),
        Reply::Html503 => {
            let mut r = Response::new(Body::from(DOWN_HTML));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        }
        Reply::Hang => std::future::pending::<Response>().await,
    }
}

async fn dingtalk_route(AxumState(s): AxumState<Arc<Shared>>, req: Request) -> Response {
    serve(s, req, dingtalk::handle).await
}

async fn app_token_route(AxumState(s): AxumState<Arc<Shared>>, req: Request) -> Response {
    serve(s, req, dingtalk_app::token).await
}

async fn app_send_route(AxumState(s): AxumState<Arc<Shared>>, req: Request) -> Response {
    serve(s, req, dingtalk_app::send).await
}

async fn feishu_route(
    AxumState(s): AxumState<Arc<Shared>>,
    Path(hook_id): Path<String>,
    req: Request,
) -> Response {
    serve(s, req, move |sh, st, inc, clk| {
        feishu::handle(sh, st, inc, clk, &hook_id)
    })
    .await
}

async fn webhook_route(
    AxumState(s): AxumState<Arc<Shared>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    serve(s, req, move |sh, st, inc, clk| {
        webhook::handle(sh, st, inc, clk, &name)
    })
    .await
}

// ---- admin routes ----

async fn loopback_only(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": "the sandbox admin routes answer loopback clients only"}),
        );
    }
    next.run(req).await
}

async fn get_received(AxumState(s): AxumState<Arc<Shared>>) -> Response {
    let list: Vec<Received> = s.lock().received.iter().cloned().collect();
    json_response(
        StatusCode::OK,
        &serde_json::to_value(list).unwrap_or(Value::Null),
    )
}

async fn delete_received(AxumState(s): AxumState<Arc<Shared>>) -> Response {
    s.lock().received.clear();
    empty(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct FaultRequest {
    bot: String,
    fault: BotFault,
}

async fn post_fault(AxumState(s): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<FaultRequest>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "expected {\"bot\":\"name\",\"fault\":\"down|hang|throttle|none\"}"}),
        );
    };
    if set_fault(&s, &req.bot, req.fault) {
        empty(StatusCode::NO_CONTENT)
    } else {
        json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no bot named {:?}", req.bot)}),
        )
    }
}

#[derive(Deserialize)]
struct RateLimitsRequest {
    enabled: bool,
}

async fn put_rate_limits(AxumState(s): AxumState<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<RateLimitsRequest>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "expected {\"enabled\":true|false}"}),
        );
    };
    set_rate_limits(&s, req.enabled);
    empty(StatusCode::NO_CONTENT)
}

/// Apply a fault; false when no bot has that name (the fault is stored anyway).
fn set_fault(shared: &Shared, name: &str, fault: BotFault) -> bool {
    let mut st = shared.lock();
    let known = st.knows(name);
    match fault {
        BotFault::None => {
            st.faults.remove(name);
            st.reset_limits(Some(name));
        }
        BotFault::Down | BotFault::Hang => {
            st.faults.insert(name.to_owned(), fault);
        }
        BotFault::Throttle => {
            st.faults.remove(name);
            st.throttle(name, Instant::now(), shared.cfg.dingtalk_penalty);
        }
    }
    known
}

fn set_rate_limits(shared: &Shared, on: bool) {
    let mut st = shared.lock();
    shared.rate_limits.store(on, Ordering::Relaxed);
    st.reset_limits(None);
}

fn router(shared: Arc<Shared>) -> Router {
    let admin = Router::new()
        .route(
            "/_sandbox/bots/received",
            get(get_received).delete(delete_received),
        )
        .route("/_sandbox/bots/fault", post(post_fault))
        .route("/_sandbox/bots/rate-limits", put(put_rate_limits))
        .route_layer(axum::middleware::from_fn(loopback_only));
    Router::new()
        .route("/robot/send", post(dingtalk_route))
        .route("/v1.0/oauth2/accessToken", post(app_token_route))
        .route("/v1.0/robot/groupMessages/send", post(app_send_route))
        .route("/open-apis/bot/v2/hook/{hook_id}", post(feishu_route))
        .route("/webhook/{name}", post(webhook_route))
        .merge(admin)
        .fallback(|| async { json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})) })
        .with_state(shared)
}

// ---- the public handle ----

/// The running bot simulator.
pub struct Bots {
    /// PEM of the test CA that signed the server's certificate (trust it in clients).
    pub ca_pem: String,
    /// `https://127.0.0.1:PORT`: every bot path is served under it.
    pub base_url: String,
    /// The address the server listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Bots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bots")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Bots {
    /// Start the server on a 127.0.0.1 ephemeral port (needs a tokio runtime).
    pub async fn start(config: BotsConfig) -> Result<Bots, SandboxError> {
        let material = crate::tls::generate()?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| SandboxError::Bind(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| SandboxError::Bind(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SandboxError::Bind(e.to_string()))?;
        let base_url = format!("https://{addr}");
        let shared = Arc::new(Shared {
            rate_limits: AtomicBool::new(config.rate_limits),
            base_url: base_url.clone(),
            state: Mutex::new(BotsState {
                seed: config.seed,
                rng: SplitMix64::new(config.seed ^ 0xB0_75_5E_ED),
                issued: HashMap::new(),
                dingtalk: HashMap::new(),
                apps: Vec::new(),
                app_tokens: HashMap::new(),
                feishu: HashMap::new(),
                webhooks: HashMap::new(),
                faults: HashMap::new(),
                delays: HashMap::new(),
                received: VecDeque::new(),
            }),
            cfg: config,
        });
        let app = router(shared.clone());
        let handle: axum_server::Handle<SocketAddr> = axum_server::Handle::new();
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(material.server_config),
        );
        let server = axum_server::from_tcp(listener)
            .map_err(|e| SandboxError::Bind(e.to_string()))?
            .acceptor(acceptor)
            .handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server
                .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                .await
            {
                tracing::warn!("bot simulator stopped: {e}");
            }
        });
        Ok(Bots {
            ca_pem: material.ca_pem,
            base_url,
            addr,
            shared,
            handle,
            task,
        })
    }

    /// Register a DingTalk custom robot.
    pub fn add_dingtalk(&self, spec: DingTalkRobotSpec) -> DingTalkRobot {
        let mut st = self.shared.lock();
        let mut rng = st.bot_rng(BotKind::DingTalk, &spec.name);
        let access_token = rng.chars(64, HEX);
        let secret = spec.sign.then(|| format!("SEC{}", rng.chars(64, HEX)));
        st.dingtalk.insert(
            access_token.clone(),
            dingtalk::Robot {
                name: spec.name.clone(),
                secret: secret.clone(),
                keywords: spec.keywords,
                ip_allow: spec.ip_allow,
                sent: Window::default(),
                penalty_until: None,
            },
        );
        DingTalkRobot {
            name: spec.name,
            webhook_url: format!("{}/robot/send?access_token={access_token}", self.base_url),
            access_token,
            secret,
        }
    }

    /// Register a DingTalk internal app with its robot in one group conversation.
    pub fn add_dingtalk_app(&self, spec: DingTalkAppSpec) -> DingTalkApp {
        let mut st = self.shared.lock();
        let mut rng = st.bot_rng(BotKind::DingTalkApp, &spec.name);
        let app_key = format!(
            "ding{}",
            rng.chars(16, b"abcdefghijklmnopqrstuvwxyz0123456789")
        );
        let app_secret = rng.chars(64, ALNUM);
        let open_conversation_id = format!("cid{}==", rng.chars(22, ALNUM));
        st.apps.push(dingtalk_app::App {
            name: spec.name.clone(),
            app_key: app_key.clone(),
            app_secret: app_secret.clone(),
            robot_code: app_key.clone(),
            conversation: open_conversation_id.clone(),
            sent: Window::default(),
            penalty_until: None,
        });
        DingTalkApp {
            name: spec.name,
            robot_code: app_key.clone(),
            app_key,
            app_secret,
            open_conversation_id,
            api_base: self.base_url.clone(),
        }
    }

    /// Register a Feishu / Lark custom bot.
    pub fn add_feishu(&self, spec: FeishuBotSpec) -> FeishuBot {
        let mut st = self.shared.lock();
        let mut rng = st.bot_rng(BotKind::Feishu, &spec.name);
        let hook_id = rng.uuid();
        let secret = spec.sign.then(|| rng.chars(22, ALNUM));
        st.feishu.insert(
            hook_id.clone(),
            feishu::Bot {
                name: spec.name.clone(),
                secret: secret.clone(),
                keywords: spec.keywords,
                ip_allow: spec.ip_allow,
                sent: Window::default(),
                throttled_until: None,
            },
        );
        FeishuBot {
            name: spec.name,
            webhook_url: format!("{}/open-apis/bot/v2/hook/{hook_id}", self.base_url),
            hook_id,
            secret,
        }
    }

    /// Register a generic signed webhook receiver (replacing one of the same name).
    pub fn add_webhook(&self, spec: WebhookSpec) -> WebhookReceiver {
        let mut st = self.shared.lock();
        let mut rng = st.bot_rng(BotKind::Webhook, &spec.name);
        let secret = rng.chars(64, HEX);
        st.webhooks.insert(
            spec.name.clone(),
            webhook::Hook {
                name: spec.name.clone(),
                secret: secret.clone(),
                bearer: None,
                throttled_until: None,
            },
        );
        WebhookReceiver {
            url: format!("{}/webhook/{}", self.base_url, percent_encode(&spec.name)),
            name: spec.name,
            secret,
        }
    }

    /// Register a generic receiver that authenticates callers by `Authorization: Bearer
    /// TOKEN` instead of a signature (replacing one of the same name): a third-party API
    /// a workflow's `http.request` calls with a stored credential. Its `secret` is the
    /// token.
    pub fn add_bearer_webhook(&self, name: &str, token: &str) -> WebhookReceiver {
        let mut st = self.shared.lock();
        st.webhooks.insert(
            name.to_owned(),
            webhook::Hook {
                name: name.to_owned(),
                secret: token.to_owned(),
                bearer: Some(token.to_owned()),
                throttled_until: None,
            },
        );
        WebhookReceiver {
            url: format!("{}/webhook/{}", self.base_url, percent_encode(name)),
            name: name.to_owned(),
            secret: token.to_owned(),
        }
    }

    /// Every request received on a bot path, in arrival order (at most the latest
    /// 100 000).
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.iter().cloned().collect()
    }

    /// The accepted messages of the bot named `bot` (DingTalk app token requests left
    /// out), in arrival order.
    pub fn accepted(&self, bot: &str) -> Vec<Received> {
        self.shared
            .lock()
            .received
            .iter()
            .filter(|r| r.accepted && r.bot == bot && r.path != dingtalk_app::TOKEN_PATH)
            .cloned()
            .collect()
    }

    /// Forget the recorded requests.
    pub fn clear_received(&self) {
        self.shared.lock().received.clear();
    }

    /// Inject a fault into the bot(s) named `bot`, replacing the previous one (also
    /// `POST /_sandbox/bots/fault`).
    pub fn set_fault(&self, bot: &str, fault: BotFault) {
        set_fault(&self.shared, bot, fault);
    }

    /// Make the bot(s) named `bot` answer `delay` after a request arrives, as a real
    /// platform's latency (zero: at once again).
    pub fn set_delay(&self, bot: &str, delay: Duration) {
        let mut st = self.shared.lock();
        if delay.is_zero() {
            st.delays.remove(bot);
        } else {
            st.delays.insert(bot.to_owned(), delay);
        }
    }

    /// Turn rate limiting on or off (also `PUT /_sandbox/bots/rate-limits`); either way
    /// every rate window is emptied and every penalty ends.
    pub fn set_rate_limits(&self, on: bool) {
        set_rate_limits(&self.shared, on);
    }

    /// Make every DingTalk app access token issued so far invalid now.
    pub fn expire_app_tokens(&self) {
        self.shared.lock().app_tokens.clear();
    }

    /// Stop the server.
    pub async fn shutdown(self) {
        self.handle.shutdown();
        self.task.abort();
        let _ = self.task.await;
    }
}
