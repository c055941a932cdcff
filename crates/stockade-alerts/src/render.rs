//! Native messages per channel: DingTalk markdown or actionCard (custom robot), the app
//! robot's `sampleMarkdown`/`sampleActionCard`, a Feishu/Lark interactive card, or the
//! generic webhook's JSON. One alert renders as one message; several (a burst held
//! back by a rate limit) as one digest. Signing is added by the sender. With
//! `[alerts] language = "zh"` the DingTalk and Feishu/Lark messages are in Simplified
//! Chinese ([`crate::zh`]); the generic webhook's JSON stays English.

use serde_json::{Value, json};

use std::borrow::Cow;

use crate::config::{ChannelKind, Language};
use crate::model::{Alert, Severity, span, utc};
use crate::zh;

/// What every message carries besides the alerts.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `prod`, `staging` or `dev`.
    pub environment: &'a str,
    /// The robot's required keyword, put in every title and text.
    pub keyword: Option<&'a str>,
    /// Base URL of the dashboard.
    pub dashboard: Option<&'a str>,
    /// The language of the words the system writes.
    pub lang: Language,
}

fn zh(env: &Envelope<'_>) -> bool {
    env.lang == Language::Zh
}

/// The alerts with the system's words in the envelope's language.
fn localized<'x>(alerts: &'x [Alert], env: &Envelope<'_>) -> Cow<'x, [Alert]> {
    if zh(env) {
        Cow::Owned(alerts.iter().map(zh::localize).collect())
    } else {
        Cow::Borrowed(alerts)
    }
}

fn severity_word(s: Severity, env: &Envelope<'_>) -> String {
    if zh(env) {
        zh::severity(s).to_owned()
    } else {
        s.to_string()
    }
}

fn span_in(ms: i64, env: &Envelope<'_>) -> String {
    if zh(env) { zh::span(ms) } else { span(ms) }
}

fn open_dashboard(env: &Envelope<'_>) -> &'static str {
    if zh(env) {
        "打开控制台"
    } else {
        "Open the dashboard"
    }
}

fn event_word(env: &Envelope<'_>) -> &'static str {
    if zh(env) { "事件" } else { "event" }
}

fn mark(s: Severity, env: &Envelope<'_>) -> String {
    if zh(env) {
        let dot = mark(
            s,
            &Envelope {
                lang: Language::En,
                ..*env
            },
        );
        let dot = dot.split(' ').next().unwrap_or("");
        return format!("{dot} {}", zh::severity(s));
    }
    match s {
        Severity::Critical => "🔴 CRITICAL",
        Severity::Error => "🟠 ERROR",
        Severity::Warning => "🟡 WARNING",
        Severity::Info => "🔵 INFO",
    }
    .to_owned()
}

fn color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "red",
        Severity::Error => "orange",
        Severity::Warning => "yellow",
        Severity::Info => "blue",
    }
}

/// Free text made inert for markdown: no links, emphasis, headings, quotes or HTML.
fn inert(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '*' | '[' | ']' | '(' | ')' | '#' | '>' | '<' | '`' | '|' | '~' | '!' => ' ',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect()
}

fn prefix(env: &Envelope<'_>) -> String {
    let name = if zh(env) {
        zh::environment(env.environment)
    } else {
        env.environment
    };
    match env.keyword {
        Some(k) => format!("{k} · Stockade {name}"),
        None => format!("Stockade {name}"),
    }
}

fn worst(alerts: &[Alert]) -> Severity {
    alerts
        .iter()
        .map(|a| a.severity)
        .max()
        .unwrap_or(Severity::Info)
}

fn total_events(alerts: &[Alert]) -> i64 {
    alerts.iter().map(|a| a.count.max(1)).sum()
}

/// The title shown in the conversation list (and the card header).
pub fn title(alerts: &[Alert], env: &Envelope<'_>) -> String {
    let alerts = &*localized(alerts, env);
    let p = prefix(env);
    match alerts {
        [a] if a.count > 1 => format!(
            "[{p}] {}: {} (×{})",
            severity_word(a.severity, env),
            inert(&a.title),
            a.count
        ),
        [a] => format!(
            "[{p}] {}: {}",
            severity_word(a.severity, env),
            inert(&a.title)
        ),
        _ => {
            let mut counts = Vec::new();
            for s in Severity::ALL.iter().rev() {
                let n = alerts.iter().filter(|a| a.severity == *s).count();
                if n > 0 {
                    counts.push(format!("{n} {}", severity_word(*s, env)));
                }
            }
            if zh(env) {
                format!(
                    "[{p}] {} 条告警（{}），共 {} 个事件",
                    alerts.len(),
                    counts.join("、"),
                    total_events(alerts)
                )
            } else {
                format!(
                    "[{p}] {} alerts ({}) covering {} events",
                    alerts.len(),
                    counts.join(", "),
                    total_events(alerts)
                )
            }
        }
    }
}

/// The link for a message, if a dashboard is configured.
pub fn link(alerts: &[Alert], env: &Envelope<'_>) -> Option<String> {
    let base = env.dashboard?.trim_end_matches('/');
    Some(match alerts {
        [a] => format!("{base}/alerts#event-{}", a.event_id),
        _ => format!("{base}/alerts"),
    })
}

fn repeat_line(a: &Alert, env: &Envelope<'_>) -> Option<String> {
    (a.count > 1).then(|| {
        let since = a.since_ms.unwrap_or(a.at_ms);
        if zh(env) {
            return format!(
                "**{}内 ×{}**（自 {} 起重复；首次已发出告警）",
                zh::span(a.at_ms - since),
                a.count,
                utc(since)
            );
        }
        format!(
            "**×{} in {}** (repeats since {}; the first was alerted then)",
            a.count,
            span(a.at_ms - since),
            utc(since)
        )
    })
}

/// Markdown body (DingTalk's and Feishu's common subset).
pub fn markdown(alerts: &[Alert], env: &Envelope<'_>, with_link: bool) -> String {
    let alerts = &*localized(alerts, env);
    let mut out = match alerts {
        [a] => single_markdown(a, env),
        _ => digest_markdown(alerts, env),
    };
    if with_link && let Some(l) = link(alerts, env) {
        out.push_str(&format!("\n[{}]({l})\n", open_dashboard(env)));
    }
    out
}

fn single_markdown(a: &Alert, env: &Envelope<'_>) -> String {
    let mut out = format!("#### {} · {}\n\n", mark(a.severity, env), inert(&a.title));
    if let Some(r) = repeat_line(a, env) {
        out.push_str(&r);
        out.push_str("\n\n");
    }
    for (k, v) in &a.facts {
        out.push_str(&format!("- {k}: {}\n", inert(v)));
    }
    if let Some(m) = &a.message {
        out.push_str(&format!("\n> {}\n", inert(m)));
    }
    if let Some(h) = &a.hint {
        out.push_str(&format!("\n{}\n", inert(h)));
    }
    out.push_str(&format!(
        "\n{} · {}/{} · {} · {} {}\n",
        prefix(env),
        a.source,
        a.kind,
        utc(a.at_ms),
        event_word(env),
        a.event_id
    ));
    out
}

fn digest_markdown(alerts: &[Alert], env: &Envelope<'_>) -> String {
    let mut out = if zh(env) {
        format!(
            "#### {} · {} 条告警，{} 个事件\n\n为遵守机器人的频率限制，合并为一条发送。\n\n",
            prefix(env),
            alerts.len(),
            total_events(alerts)
        )
    } else {
        format!(
            "#### {} · {} alerts, {} events\n\nSent together to stay within the bot's rate limit.\n\n",
            prefix(env),
            alerts.len(),
            total_events(alerts)
        )
    };
    for (i, a) in alerts.iter().enumerate() {
        let times = if a.count > 1 {
            let s = span_in(a.at_ms - a.since_ms.unwrap_or(a.at_ms), env);
            if zh(env) {
                format!(" {s}内 ×{}", a.count)
            } else {
                format!(" ×{} in {s}", a.count)
            }
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{}. {} {}{times} · {} · {} {}\n",
            i + 1,
            mark(a.severity, env),
            inert(&a.title),
            utc(a.at_ms),
            event_word(env),
            a.event_id
        ));
        let facts: Vec<String> = a
            .facts
            .iter()
            .take(4)
            .map(|(k, v)| format!("{k}: {}", inert(v)))
            .collect();
        if !facts.is_empty() {
            out.push_str(&format!("   {}\n", facts.join(" · ")));
        }
    }
    out
}

/// DingTalk custom robot body: an actionCard with a button when there is a dashboard
/// link, markdown otherwise.
pub fn dingtalk(alerts: &[Alert], env: &Envelope<'_>) -> Value {
    let title = title(alerts, env);
    match link(alerts, env) {
        Some(url) => json!({
            "msgtype": "actionCard",
            "actionCard": {
                "title": title,
                "text": markdown(alerts, env, false),
                "btnOrientation": "0",
                "singleTitle": open_dashboard(env),
                "singleURL": url,
            }
        }),
        None => json!({
            "msgtype": "markdown",
            "markdown": { "title": title, "text": markdown(alerts, env, false) },
            "at": { "isAtAll": false }
        }),
    }
}

/// DingTalk enterprise app robot body (`/v1.0/robot/groupMessages/send`).
pub fn dingtalk_app(
    alerts: &[Alert],
    env: &Envelope<'_>,
    robot_code: &str,
    conversation: &str,
) -> Value {
    let title = title(alerts, env);
    let (key, param) = match link(alerts, env) {
        Some(url) => (
            "sampleActionCard",
            json!({"title": title, "text": markdown(alerts, env, false),
                   "singleTitle": open_dashboard(env), "singleURL": url}),
        ),
        None => (
            "sampleMarkdown",
            json!({"title": title, "text": markdown(alerts, env, false)}),
        ),
    };
    json!({
        "msgKey": key,
        "msgParam": param.to_string(),
        "openConversationId": conversation,
        "robotCode": robot_code,
    })
}

/// Feishu / Lark interactive card (schema 2.0).
pub fn feishu(alerts: &[Alert], env: &Envelope<'_>) -> Value {
    let mut elements = vec![json!({"tag": "markdown", "content": markdown(alerts, env, false)})];
    if let Some(url) = link(alerts, env) {
        elements.push(json!({
            "tag": "button",
            "text": {"tag": "plain_text", "content": open_dashboard(env)},
            "type": "primary",
            "behaviors": [{"type": "open_url", "default_url": url}],
        }));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "schema": "2.0",
            "header": {
                "title": {"tag": "plain_text", "content": title(alerts, env)},
                "template": color(worst(alerts)),
            },
            "body": {"elements": elements},
        }
    })
}

/// Generic webhook JSON: the alerts' allow-listed fields as they are.
pub fn webhook(alerts: &[Alert], env: &Envelope<'_>) -> Value {
    // Read by programs: always English, whatever `[alerts] language` says.
    let env = &Envelope {
        lang: Language::En,
        ..*env
    };
    json!({
        "type": "stockade.alerts",
        "environment": env.environment,
        "title": title(alerts, env),
        "events": total_events(alerts),
        "alerts": alerts,
        "dashboard": link(alerts, env),
    })
}

/// The unsigned body for `kind`.
pub fn body(
    kind: ChannelKind,
    alerts: &[Alert],
    env: &Envelope<'_>,
    robot_code: &str,
    conversation: &str,
) -> Value {
    match kind {
        ChannelKind::Dingtalk => dingtalk(alerts, env),
        ChannelKind::DingtalkApp => dingtalk_app(alerts, env, robot_code, conversation),
        ChannelKind::Feishu | ChannelKind::Lark => feishu(alerts, env),
        ChannelKind::Webhook => webhook(alerts, env),
    }
}

/// Room kept for signing fields and headroom.
const SIGN_ROOM: usize = 256;

/// How many of `alerts` (from the front) fit in one message of `kind` (at least 1: a
/// single alert is always small, its text being truncated).
pub fn fitting(kind: ChannelKind, alerts: &[Alert], env: &Envelope<'_>) -> usize {
    let limit = kind.max_body().saturating_sub(SIGN_ROOM);
    let fits = |n: usize| body(kind, &alerts[..n], env, "r", "c").to_string().len() <= limit;
    let mut n = alerts.len().min(50);
    while n > 1 && !fits(n) {
        n = (n * 3 / 4).max(1);
    }
    n.max(1).min(alerts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: i64, sev: Severity, count: i64) -> Alert {
        Alert {
            severity: sev,
            source: "sync".into(),
            kind: "push_failed".into(),
            title: "Stock push to tiktok-main is failing".into(),
            facts: vec![
                ("Connection".into(), "tiktok-main".into()),
                ("Attempts".into(), "5".into()),
            ],
            message: Some("upstream [said] **bold** <b>x</b>".into()),
            hint: Some("Pushes keep retrying.".into()),
            key: "sync:push_failed:tiktok-main:server".into(),
            event_id: id,
            at_ms: 1_700_000_300_000,
            count,
            since_ms: (count > 1).then_some(1_700_000_000_000),
            about_channel: None,
            to_channel: None,
        }
    }

    const ENV: Envelope<'static> = Envelope {
        environment: "prod",
        keyword: Some("Stockade-Alert"),
        dashboard: Some("https://ops.example.com/"),
        lang: Language::En,
    };

    #[test]
    fn chinese_messages_translate_the_frame_and_keep_the_keyword() {
        let zh_env = Envelope {
            lang: Language::Zh,
            ..ENV
        };
        let a = [alert(42, Severity::Error, 1)];
        let d = dingtalk(&a, &zh_env);
        let card = &d["actionCard"];
        let t = card["title"].as_str().unwrap();
        assert!(
            t.contains("Stockade-Alert") && t.contains("生产环境") && t.contains("错误"),
            "{t}"
        );
        assert!(t.contains("库存推送到 tiktok-main 失败"), "{t}");
        let text = card["text"].as_str().unwrap();
        assert!(
            text.contains("连接: tiktok-main") && text.contains("事件 42"),
            "{text}"
        );
        assert_eq!(card["singleTitle"], "打开控制台");
        let many = [
            alert(1, Severity::Critical, 3),
            alert(2, Severity::Error, 1),
        ];
        let t = title(&many, &zh_env);
        assert!(
            t.contains("2 条告警") && t.contains("1 严重") && t.contains("共 4 个事件"),
            "{t}"
        );
        let f = feishu(&many, &zh_env);
        let md = f["card"]["body"]["elements"][0]["content"]
            .as_str()
            .unwrap();
        assert!(
            md.contains("合并为一条发送") && md.contains("5 分钟内 ×3"),
            "{md}"
        );
        // The webhook JSON is for programs: English.
        let w = webhook(&a, &zh_env)["title"].as_str().unwrap().to_owned();
        assert!(w.contains("failing") && !w.contains("库存"), "{w}");
    }

    #[test]
    fn single_alert_renders_natively_with_keyword_and_link() {
        let a = [alert(42, Severity::Error, 1)];
        let d = dingtalk(&a, &ENV);
        assert_eq!(d["msgtype"], "actionCard");
        let card = &d["actionCard"];
        assert!(card["title"].as_str().unwrap().contains("Stockade-Alert"));
        assert!(
            card["text"]
                .as_str()
                .unwrap()
                .contains("Connection: tiktok-main")
        );
        assert!(!card["text"].as_str().unwrap().contains("**bold**"));
        assert_eq!(card["singleURL"], "https://ops.example.com/alerts#event-42");

        let f = feishu(&a, &ENV);
        assert_eq!(f["msg_type"], "interactive");
        assert_eq!(f["card"]["header"]["template"], "orange");
        assert!(
            f["card"]["header"]["title"]["content"]
                .as_str()
                .unwrap()
                .contains("Stockade-Alert")
        );

        let app = dingtalk_app(&a, &ENV, "dingrobot", "cid123");
        assert_eq!(app["msgKey"], "sampleActionCard");
        let param: Value = serde_json::from_str(app["msgParam"].as_str().unwrap()).unwrap();
        assert!(param["title"].as_str().unwrap().contains("Stockade-Alert"));

        let plain = Envelope {
            dashboard: None,
            ..ENV
        };
        assert_eq!(dingtalk(&a, &plain)["msgtype"], "markdown");
        assert_eq!(
            dingtalk_app(&a, &plain, "r", "c")["msgKey"],
            "sampleMarkdown"
        );
        let w = webhook(&a, &plain);
        assert_eq!(w["alerts"][0]["event_id"], 42);
    }

    #[test]
    fn follow_ups_and_digests_show_counts() {
        let a = [alert(1, Severity::Error, 12)];
        let t = title(&a, &ENV);
        assert!(t.contains("×12"), "{t}");
        assert!(markdown(&a, &ENV, false).contains("×12 in 5 min"));
        let many: Vec<Alert> = (0..5)
            .map(|i| {
                alert(
                    i,
                    if i == 0 {
                        Severity::Critical
                    } else {
                        Severity::Error
                    },
                    2,
                )
            })
            .collect();
        let t = title(&many, &ENV);
        assert!(
            t.contains("5 alerts") && t.contains("1 critical") && t.contains("10 events"),
            "{t}"
        );
        assert_eq!(feishu(&many, &ENV)["card"]["header"]["template"], "red");
    }

    #[test]
    fn digests_fit_the_platform_body_limit() {
        let many: Vec<Alert> = (0..200)
            .map(|i| {
                let mut a = alert(i, Severity::Error, 1);
                a.message = Some("x".repeat(300));
                a.title = "T".repeat(200);
                a
            })
            .collect();
        for kind in ChannelKind::ALL {
            let n = fitting(kind, &many, &ENV);
            assert!(n >= 1);
            let len = body(kind, &many[..n], &ENV, "r", "c").to_string().len();
            assert!(len <= kind.max_body() - 256, "{kind:?} {n} {len}");
        }
    }
}
