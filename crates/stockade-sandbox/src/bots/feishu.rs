//! Feishu / Lark custom bot: `POST /open-apis/bot/v2/hook/{hook_id}`.
//!
//! Always HTTP 200 JSON. Checks in order: hook id (19001), body size / JSON / msg_type
//! (9499), IP allowlist (19022), signature and timestamp (19021), keywords (19024), rate
//! (11232: more than `feishu_per_second` in 1 s or `feishu_per_minute` in 60 s of
//! accepted messages), success.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{BotKind, BotsState, Clock, Incoming, Outcome, Reply, Shared, Window, active};
use super::{ipallow, sign};

/// Largest accepted body (20 KB).
const MAX_BODY: usize = 20 * 1024;
/// Accepted distance between `timestamp` and now.
const SKEW_S: i64 = 3600;

/// One registered bot.
#[derive(Debug)]
pub(crate) struct Bot {
    pub name: String,
    pub secret: Option<String>,
    pub keywords: Vec<String>,
    pub ip_allow: Vec<String>,
    /// Accepted messages in the last minute.
    pub sent: Window,
    pub throttled_until: Option<Instant>,
}

fn error(bot: &str, code: u32, msg: &str) -> Outcome {
    Outcome {
        bot: bot.to_owned(),
        kind: BotKind::Feishu,
        status: 200,
        code: code.to_string(),
        message: msg.to_owned(),
        accepted: false,
        reply: Reply::Json(json!({"code": code, "data": {}, "msg": msg})),
        record_body: None,
    }
}

fn success(bot: &str) -> Outcome {
    Outcome {
        bot: bot.to_owned(),
        kind: BotKind::Feishu,
        status: 200,
        code: "0".into(),
        message: "success".into(),
        accepted: true,
        reply: Reply::Json(json!({
            "StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"
        })),
        record_body: None,
    }
}

/// Whether the body is a message Feishu takes: a known `msg_type` with its `content`
/// object (`interactive`: a `card` object or JSON string).
fn well_formed(body: &Value) -> bool {
    match body.get("msg_type").and_then(Value::as_str) {
        Some("interactive") => body
            .get("card")
            .is_some_and(|c| c.is_object() || c.is_string()),
        Some("text" | "post" | "image" | "share_chat") => {
            body.get("content").is_some_and(Value::is_object)
        }
        _ => false,
    }
}

/// Every string under a `text`, `content` or `title` key, at any depth.
fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if matches!(k.as_str(), "text" | "content" | "title") => {
                        out.push(s.clone());
                    }
                    _ => collect_texts(v, out),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_texts(v, out);
            }
        }
        _ => {}
    }
}

/// The text-like values of a message (in `content` and `card`; a card given as a JSON
/// string is parsed).
fn texts(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = body.get("content") {
        collect_texts(c, &mut out);
    }
    match body.get("card") {
        Some(Value::String(s)) => {
            if let Ok(card) = serde_json::from_str::<Value>(s) {
                collect_texts(&card, &mut out);
            }
        }
        Some(card) => collect_texts(card, &mut out),
        None => {}
    }
    out
}

/// The `timestamp` field as sent (a string, or a number written in decimal).
fn timestamp(body: &Value) -> Option<String> {
    match body.get("timestamp")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_i64().map(|n| n.to_string()),
        _ => None,
    }
}

pub(crate) fn handle(
    sh: &Shared,
    st: &mut BotsState,
    inc: &Incoming,
    clk: Clock,
    hook_id: &str,
) -> Outcome {
    const BAD_TOKEN: &str = "param invalid: incoming webhook access token invalid";
    let Some(name) = st.feishu.get(hook_id).map(|b| b.name.clone()) else {
        return error("", 19_001, BAD_TOKEN);
    };
    if let Some(o) = st.fault_outcome(&name, BotKind::Feishu) {
        return o;
    }
    let Some(bot) = st.feishu.get_mut(hook_id) else {
        return error("", 19_001, BAD_TOKEN);
    };
    let body = &inc.json;
    if inc.body_len > MAX_BODY || !well_formed(body) {
        return error(&name, 9499, "Bad Request");
    }
    if !ipallow::allowed(&bot.ip_allow, inc.peer) {
        return error(&name, 19_022, "Ip Not Allowed");
    }
    if let Some(secret) = &bot.secret {
        let now_s = clk.now_ms.div_euclid(1000);
        let ts = timestamp(body);
        let fresh = ts
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|t| now_s.abs_diff(t) <= SKEW_S.unsigned_abs());
        let given = body.get("sign").and_then(Value::as_str).unwrap_or("");
        if !fresh || !sign::feishu_verify(secret, ts.as_deref().unwrap_or(""), given) {
            return error(
                &name,
                19_021,
                "sign match fail or timestamp is not within one hour from current time",
            );
        }
    }
    if !bot.keywords.is_empty() {
        let texts = texts(body);
        let found = bot
            .keywords
            .iter()
            .any(|k| texts.iter().any(|t| t.contains(k.as_str())));
        if !found {
            return error(&name, 19_024, "Key Words Not Found");
        }
    }
    let limited = active(bot.throttled_until, clk.now)
        || (sh.rate_limits() && {
            let minute = bot.sent.count(clk.now, Duration::from_secs(60));
            let second = bot.sent.count_within(clk.now, Duration::from_secs(1));
            second >= sh.cfg.feishu_per_second as usize
                || minute >= sh.cfg.feishu_per_minute as usize
        });
    if limited {
        return error(
            &name,
            11_232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
        );
    }
    bot.sent.push(clk.now);
    success(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_texts() {
        assert!(well_formed(
            &json!({"msg_type":"text","content":{"text":"x"}})
        ));
        assert!(!well_formed(&json!({"msg_type":"text"})));
        assert!(!well_formed(
            &json!({"msg_type":"interactive","content":{}})
        ));
        assert!(well_formed(&json!({"msg_type":"interactive","card":{}})));
        assert!(!well_formed(&json!({"msg_type":"video","content":{}})));
        let post = json!({"msg_type":"post","content":{"post":{"zh_cn":{"title":"T",
            "content":[[{"tag":"text","text":"run"},{"tag":"a","text":"open","href":"https://ALERT"}]]}}}});
        let t = texts(&post);
        assert!(t.contains(&"T".to_owned()) && t.contains(&"run".to_owned()));
        assert!(!t.iter().any(|s| s.contains("ALERT")));
        let card = json!({"msg_type":"interactive","card":{"header":{"title":{"tag":"plain_text",
            "content":"Workflow failed"}},"body":{"elements":[{"tag":"markdown","content":"**run**"}]}}});
        let t = texts(&card);
        assert!(t.contains(&"Workflow failed".to_owned()) && t.contains(&"**run**".to_owned()));
    }
}
