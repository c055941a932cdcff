//! DingTalk custom robot: `POST /robot/send?access_token=T[&timestamp=MS&sign=S]`.
//!
//! Always HTTP 200 `{"errcode":N,"errmsg":"..."}`. Checks in order: token (300001), body
//! size (460101, over 20000 bytes), body shape (40035), rate (130101: the robot is in its
//! penalty, or the message would exceed `dingtalk_per_minute` accepted messages in the
//! window, which starts the penalty), security settings (310000: IP allowlist, then
//! timestamp and sign, then keywords), success. Rejected messages do not count.

use serde_json::{Value, json};

use super::{BotKind, BotsState, Clock, Incoming, Outcome, Reply, Shared, Window, active};
use super::{ipallow, sign};
use crate::util::{parse_query, query_get};

/// Largest accepted body.
const MAX_BODY: usize = 20_000;
/// Accepted distance between `timestamp` and now.
const SKEW_MS: i64 = 3600 * 1000;

pub(crate) const IP_NOT_ALLOWED: &str = "错误描述:ip 不在白名单中;解决方案:请确认IP地址在白名单中";

/// One registered robot.
#[derive(Debug)]
pub(crate) struct Robot {
    pub name: String,
    pub secret: Option<String>,
    pub keywords: Vec<String>,
    pub ip_allow: Vec<String>,
    /// Accepted messages in the rate window.
    pub sent: Window,
    pub penalty_until: Option<std::time::Instant>,
}

fn answer(bot: &str, errcode: u32, errmsg: &str) -> Outcome {
    Outcome {
        bot: bot.to_owned(),
        kind: BotKind::DingTalk,
        status: 200,
        code: errcode.to_string(),
        message: errmsg.to_owned(),
        accepted: errcode == 0,
        reply: Reply::Json(json!({"errcode": errcode, "errmsg": errmsg})),
        record_body: None,
    }
}

fn has_str(obj: &Value, key: &str) -> bool {
    obj.get(key).is_some_and(Value::is_string)
}

fn non_empty_array(obj: &Value, key: &str) -> bool {
    obj.get(key)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The message object for `msgtype`, when the body is a well-formed message.
fn message(body: &Value) -> Option<(&str, &Value)> {
    let msgtype = body.get("msgtype")?.as_str()?;
    let obj = body.get(msgtype).filter(|v| v.is_object())?;
    let ok = match msgtype {
        "text" => has_str(obj, "content"),
        "link" => has_str(obj, "title") && has_str(obj, "text") && has_str(obj, "messageUrl"),
        "markdown" => has_str(obj, "title") && has_str(obj, "text"),
        "actionCard" => {
            has_str(obj, "title")
                && has_str(obj, "text")
                && ((has_str(obj, "singleTitle") && has_str(obj, "singleURL"))
                    || non_empty_array(obj, "btns"))
        }
        "feedCard" => non_empty_array(obj, "links"),
        _ => false,
    };
    ok.then_some((msgtype, obj))
}

/// The values keywords are looked for in.
fn texts<'a>(msgtype: &str, obj: &'a Value) -> Vec<&'a str> {
    let fields: &[&str] = match msgtype {
        "text" => &["content"],
        "link" | "markdown" | "actionCard" => &["title", "text"],
        _ => &[],
    };
    let mut out: Vec<&str> = fields
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_str))
        .collect();
    if msgtype == "feedCard"
        && let Some(links) = obj.get("links").and_then(Value::as_array)
    {
        out.extend(
            links
                .iter()
                .filter_map(|l| l.get("title").and_then(Value::as_str)),
        );
    }
    out
}

pub(crate) fn handle(sh: &Shared, st: &mut BotsState, inc: &Incoming, clk: Clock) -> Outcome {
    let query = parse_query(&inc.query);
    let token = query_get(&query, "access_token").unwrap_or_default();
    let Some(name) = st.dingtalk.get(token).map(|r| r.name.clone()) else {
        return answer("", 300_001, "token is not exist");
    };
    if let Some(o) = st.fault_outcome(&name, BotKind::DingTalk) {
        return o;
    }
    let Some(robot) = st.dingtalk.get_mut(token) else {
        return answer("", 300_001, "token is not exist");
    };
    if inc.body_len > MAX_BODY {
        return answer(&name, 460_101, "message too long, exceed 20000 bytes");
    }
    let Some((msgtype, obj)) = message(&inc.json) else {
        return answer(&name, 40_035, "缺少参数 json");
    };
    const TOO_FAST: &str = "send too fast, exceed 20 times per minute";
    if active(robot.penalty_until, clk.now) {
        return answer(&name, 130_101, TOO_FAST);
    }
    if sh.rate_limits()
        && robot.sent.count(clk.now, sh.cfg.dingtalk_window) >= sh.cfg.dingtalk_per_minute as usize
    {
        robot.penalty_until = Some(clk.now + sh.cfg.dingtalk_penalty);
        return answer(&name, 130_101, TOO_FAST);
    }
    if !ipallow::allowed(&robot.ip_allow, inc.peer) {
        return answer(&name, 310_000, IP_NOT_ALLOWED);
    }
    if let Some(secret) = &robot.secret {
        let ts = query_get(&query, "timestamp").unwrap_or_default();
        let fresh = ts
            .parse::<i64>()
            .is_ok_and(|t| clk.now_ms.abs_diff(t) <= SKEW_MS.unsigned_abs());
        if !fresh {
            return answer(&name, 310_000, "invalid timestamp");
        }
        let given = query_get(&query, "sign").unwrap_or_default();
        if !sign::dingtalk_verify(secret, ts, given) {
            return answer(&name, 310_000, "sign not match");
        }
    }
    if !robot.keywords.is_empty() {
        let texts = texts(msgtype, obj);
        let found = robot
            .keywords
            .iter()
            .any(|k| texts.iter().any(|t| t.contains(k.as_str())));
        if !found {
            return answer(&name, 310_000, "keywords not in content");
        }
    }
    robot.sent.push(clk.now);
    answer(&name, 0, "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shapes() {
        assert!(message(&json!({"msgtype":"text","text":{"content":"x"}})).is_some());
        assert!(message(&json!({"msgtype":"text","text":{}})).is_none());
        assert!(message(&json!({"msgtype":"text"})).is_none());
        assert!(message(&json!({"msgtype":"nope","nope":{}})).is_none());
        assert!(
            message(&json!({"msgtype":"markdown","markdown":{"title":"t","text":"x"}})).is_some()
        );
        assert!(
            message(
                &json!({"msgtype":"actionCard","actionCard":{"title":"t","text":"x",
                "singleTitle":"o","singleURL":"https://e"}})
            )
            .is_some()
        );
        assert!(
            message(
                &json!({"msgtype":"actionCard","actionCard":{"title":"t","text":"x",
                "btns":[{"title":"o","actionURL":"https://e"}]}})
            )
            .is_some()
        );
        assert!(
            message(&json!({"msgtype":"actionCard","actionCard":{"title":"t","text":"x"}}))
                .is_none()
        );
        assert!(message(&Value::Null).is_none());
    }

    #[test]
    fn keyword_fields() {
        let body = json!({"msgtype":"markdown","markdown":{"title":"ALERT","text":"body"}});
        let (t, o) = message(&body).unwrap_or(("", &Value::Null));
        assert_eq!(texts(t, o), vec!["ALERT", "body"]);
        let body =
            json!({"msgtype":"feedCard","feedCard":{"links":[{"title":"a","messageURL":"u"}]}});
        let (t, o) = message(&body).unwrap_or(("", &Value::Null));
        assert_eq!(texts(t, o), vec!["a"]);
    }
}
