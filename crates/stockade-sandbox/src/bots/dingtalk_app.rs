//! DingTalk enterprise internal-app robot (api.dingtalk.com):
//! `POST /v1.0/oauth2/accessToken` and `POST /v1.0/robot/groupMessages/send`.
//!
//! The endpoints, header and body fields are confirmed (reference §1.1), but the error
//! `code` strings and messages below (`invalidClientIdOrSecret`, `InvalidAuthentication`,
//! `invalidParameter.robotCode.notExist`, `invalidParameter.openConversationId.invalid`,
//! `invalidParameter.msgParam.invalid`, `Forbidden.AccessDenied.QpsLimitForAppkeyAndApi`)
//! and their HTTP statuses are NOT confirmed by a primary source: clients should branch
//! on the HTTP status first.
//!
//! Send checks in order: token (401), robotCode (400), openConversationId (400),
//! msgKey/msgParam (400), rate per conversation (403, no extra penalty unless the
//! Throttle fault set one), success `{"processQueryKey":"..."}`.

use std::time::Instant;

use serde_json::{Value, json};

use super::{ALNUM, BotKind, BotsState, Clock, HEX, Incoming, Outcome, Reply, Shared, Window};
use super::{active, sign};

/// The token endpoint's path.
pub(crate) const TOKEN_PATH: &str = "/v1.0/oauth2/accessToken";

/// One registered app and its robot.
#[derive(Debug)]
pub(crate) struct App {
    pub name: String,
    pub app_key: String,
    pub app_secret: String,
    pub robot_code: String,
    pub conversation: String,
    /// Accepted messages to its conversation in the rate window.
    pub sent: Window,
    pub penalty_until: Option<Instant>,
}

/// An issued access token.
#[derive(Debug)]
pub(crate) struct Token {
    pub app_key: String,
    pub expires: Instant,
}

fn error(st: &mut BotsState, bot: &str, status: u16, code: &str, message: &str) -> Outcome {
    let requestid = st.rng.uuid().to_uppercase();
    Outcome {
        bot: bot.to_owned(),
        kind: BotKind::DingTalkApp,
        status,
        code: code.to_owned(),
        message: message.to_owned(),
        accepted: false,
        reply: Reply::Json(json!({"code": code, "message": message, "requestid": requestid})),
        record_body: None,
    }
}

fn success(bot: &str, body: Value) -> Outcome {
    Outcome {
        bot: bot.to_owned(),
        kind: BotKind::DingTalkApp,
        status: 200,
        code: "0".into(),
        message: "ok".into(),
        accepted: true,
        reply: Reply::Json(body),
        record_body: None,
    }
}

/// The request body with `appSecret` replaced.
fn redacted(body: &Value) -> Value {
    let mut b = body.clone();
    if let Some(s) = b.get_mut("appSecret").filter(|s| !s.is_null()) {
        *s = Value::String("[redacted]".into());
    }
    b
}

/// `POST /v1.0/oauth2/accessToken` `{"appKey","appSecret"}`. A valid token is returned
/// again (its lifetime renewed) until it expires, as DingTalk does.
pub(crate) fn token(sh: &Shared, st: &mut BotsState, inc: &Incoming, clk: Clock) -> Outcome {
    let record_body = Some(redacted(&inc.json));
    let key = inc.json.get("appKey").and_then(Value::as_str).unwrap_or("");
    let secret = inc
        .json
        .get("appSecret")
        .and_then(Value::as_str)
        .unwrap_or("");
    let app = st
        .apps
        .iter()
        .find(|a| a.app_key == key)
        .map(|a| (a.name.clone(), a.app_secret.clone()));
    let mut o = match app {
        Some((name, app_secret)) => {
            if let Some(o) = st.fault_outcome(&name, BotKind::DingTalkApp) {
                o
            } else if !sign::same(secret, &app_secret) {
                error(
                    st,
                    &name,
                    400,
                    "invalidClientIdOrSecret",
                    "无效的clientId或者clientSecret",
                )
            } else {
                let ttl = sh.cfg.app_token_ttl;
                let expires = clk.now + ttl;
                let existing = st
                    .app_tokens
                    .iter_mut()
                    .find(|(_, t)| t.app_key == key && t.expires > clk.now);
                let token = match existing {
                    Some((tok, t)) => {
                        t.expires = expires;
                        tok.clone()
                    }
                    None => {
                        let tok = st.rng.chars(32, HEX);
                        st.app_tokens.insert(
                            tok.clone(),
                            Token {
                                app_key: key.to_owned(),
                                expires,
                            },
                        );
                        tok
                    }
                };
                success(
                    &name,
                    json!({"accessToken": token, "expireIn": ttl.as_secs()}),
                )
            }
        }
        None => error(
            st,
            "",
            400,
            "invalidClientIdOrSecret",
            "无效的clientId或者clientSecret",
        ),
    };
    o.record_body = record_body;
    o
}

/// Whether `msgParam` is a JSON string holding the keys `msgKey` needs.
fn valid_param(msg_key: &str, msg_param: Option<&Value>) -> bool {
    let keys: &[&str] = match msg_key {
        "sampleText" => &["content"],
        "sampleMarkdown" => &["title", "text"],
        "sampleActionCard" => &["title", "text", "singleTitle", "singleURL"],
        _ => return false,
    };
    let Some(raw) = msg_param.and_then(Value::as_str) else {
        return false;
    };
    let Ok(param) = serde_json::from_str::<Value>(raw) else {
        return false;
    };
    keys.iter()
        .all(|k| param.get(*k).is_some_and(Value::is_string))
}

/// `POST /v1.0/robot/groupMessages/send`, header `x-acs-dingtalk-access-token`.
pub(crate) fn send(sh: &Shared, st: &mut BotsState, inc: &Incoming, clk: Clock) -> Outcome {
    let token = inc.header("x-acs-dingtalk-access-token").unwrap_or("");
    let app_key = st
        .app_tokens
        .get(token)
        .filter(|t| t.expires > clk.now)
        .map(|t| t.app_key.clone());
    let idx = app_key.and_then(|k| st.apps.iter().position(|a| a.app_key == k));
    let Some((idx, name)) = idx.and_then(|i| st.apps.get(i).map(|a| (i, a.name.clone()))) else {
        return error(st, "", 401, "InvalidAuthentication", "不合法的access_token");
    };
    if let Some(o) = st.fault_outcome(&name, BotKind::DingTalkApp) {
        return o;
    }
    let field = |k: &str| inc.json.get(k).and_then(Value::as_str).unwrap_or("");
    let (robot_ok, conversation_ok) = match st.apps.get(idx) {
        Some(a) => (
            field("robotCode") == a.robot_code,
            field("openConversationId") == a.conversation,
        ),
        None => (false, false),
    };
    if !robot_ok {
        return error(
            st,
            &name,
            400,
            "invalidParameter.robotCode.notExist",
            "robotCode 不存在",
        );
    }
    if !conversation_ok {
        return error(
            st,
            &name,
            400,
            "invalidParameter.openConversationId.invalid",
            "openConversationId 无效",
        );
    }
    if !valid_param(field("msgKey"), inc.json.get("msgParam")) {
        return error(
            st,
            &name,
            400,
            "invalidParameter.msgParam.invalid",
            "msgParam 无效",
        );
    }
    let limited = match st.apps.get_mut(idx) {
        Some(a) => {
            active(a.penalty_until, clk.now)
                || (sh.rate_limits()
                    && a.sent.count(clk.now, sh.cfg.dingtalk_window)
                        >= sh.cfg.app_per_minute as usize)
        }
        None => true,
    };
    if limited {
        return error(
            st,
            &name,
            403,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
            "应用调用该接口的QPS超出限制",
        );
    }
    if let Some(a) = st.apps.get_mut(idx) {
        a.sent.push(clk.now);
    }
    let key = format!("{}=", st.rng.chars(43, ALNUM));
    success(&name, json!({"processQueryKey": key}))
}
