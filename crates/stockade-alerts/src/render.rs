//! Native messages per channel: DingTalk markdown or actionCard (custom robot), the app
//! robot's `sampleMarkdown`/`sampleActionCard`, a Feishu/Lark interactive card, or the
//! generic webhook's JSON. One alert renders as one message; several (a burst held
//! back by a rate limit) as one digest. Signing is added by the sender.

use serde_json::{Value, json};

use crate::config::ChannelKind;
use crate::model::{Alert, Severity, span, utc};

/// What every message carries besides the alerts.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// `prod`, `staging` or `dev`.
    pub environment: &'a str,
    /// The robot's required keyword, put in every title and text.
    pub keyword: Option<&'a str>,
    /// Base URL of the dashboard.
    pub dashboard: Option<&'a str>,
}

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "🔴 CRITICAL",
        Severity::Error => "🟠 ERROR",
        Severity::Warning => "🟡 WARNING",
        Severity::Info => "🔵 INFO",
    }
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
    match env.keyword {
        Some(k) => format!("{k} · Stockade {}", env.environment),
        None => format!("Stockade {}", env.environment),
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
    let p = prefix(env);
    match alerts {
        [a] if a.count > 1 => format!("[{p}] {}: {} (×{})", a.severity, inert(&a.title), a.count),
        [a] => format!("[{p}] {}: {}", a.severity, inert(&a.title)),
        _ => {
            let mut counts = Vec::new();
            for s in Severity::ALL.iter().rev() {
                let n = alerts.iter().filter(|a| a.severity == *s).count();
                if n > 0 {
                    counts.push(format!("{n} {s}"));
                }
            }
            format!(
                "[{p}] {} alerts ({}) covering {} events",
                alerts.len(),
                counts.join(", "),
                total_events(alerts)
            )
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

fn repeat_line(a: &Alert) -> Option<String> {
    (a.count > 1).then(|| {
        let since = a.since_ms.unwrap_or(a.at_ms);
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
    let mut out = String::new();
    match alerts {
        [a] => {
            out.push_str(&format!(
                "#### {} · {}\n\n",
                mark(a.severity),
                inert(&a.title)
            ));
            if let Some(r) = repeat_line(a) {
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
                "\n{} · {}/{} · {} · event {}\n",
                prefix(env),
                a.source,
                a.kind,
                utc(a.at_ms),
                a.event_id
            ));
        }
        _ => {
            out.push_str(&format!(
                "#### {} · {} alerts, {} events\n\nSent together to stay within the bot's rate limit.\n\n",
                prefix(env),
                alerts.len(),
                total_events(alerts)
            ));
            for (i, a) in alerts.iter().enumerate() {
                let times = if a.count > 1 {
                    format!(
                        " ×{} in {}",
                        a.count,
                        span(a.at_ms - a.since_ms.unwrap_or(a.at_ms))
                    )
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "{}. {} {}{times} · {} · event {}\n",
                    i + 1,
                    mark(a.severity),
                    inert(&a.title),
                    utc(a.at_ms),
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
        }
    }
    if with_link && let Some(l) = link(alerts, env) {
        out.push_str(&format!("\n[Open the dashboard]({l})\n"));
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
                "singleTitle": "Open the dashboard",
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
                   "singleTitle": "Open the dashboard", "singleURL": url}),
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
            "text": {"tag": "plain_text", "content": "Open the dashboard"},
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
    };

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
