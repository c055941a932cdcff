//! Simplified Chinese for the messages the system writes (`[alerts] language = "zh"`):
//! an alert's title, fact labels and hint, rebuilt from its kind and its already
//! cleaned facts, and the words of the message frame ([`crate::render`]).
//!
//! Invariants: only the text the system wrote changes. Identifiers come from the alert's
//! facts, which passed [`crate::model::ident`]; the scrubbed third-party `message` and a
//! workflow's own `alert.send` title are kept as they are, so nothing reaches a message
//! here that the English one would not carry. An alert of a kind this module does not
//! know keeps its English title and hint (visible, never blank).

use crate::model::{Alert, Severity};

/// The label of a fact in Chinese (unknown labels are kept).
pub fn label(en: &str) -> &str {
    match en {
        "Connection" => "连接",
        "Operation" => "操作",
        "Error class" => "错误类别",
        "HTTP status" => "HTTP 状态码",
        "Attempts" => "尝试次数",
        "Listings waiting" => "待推送商品数",
        "Orders waiting" => "待拉取订单数",
        "Order" => "订单",
        "Units short" => "缺少件数",
        "Units" => "件数",
        "Event" => "事件",
        "Caller" => "调用方",
        "Host" => "主机",
        "Path" => "路径",
        "Network" => "网段",
        "Ban count" => "封禁次数",
        "Reason" => "原因",
        "Until" => "截止",
        "User" => "用户",
        "By" => "操作人",
        "Channel" => "告警通道",
        "Alerts held" => "暂存告警数",
        "Workflow" => "工作流",
        "Version" => "版本",
        "Execution" => "执行",
        "Step" => "步骤",
        "Failed step" => "失败步骤",
        "Kind" => "类型",
        "Sink" => "镜像目标",
        "Incident" => "安全事件",
        "Severity" => "严重程度",
        "Target" => "对象",
        "Count" => "数量",
        "Drill" => "演练",
        other => other,
    }
}

/// A severity's word.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "严重",
        Severity::Error => "错误",
        Severity::Warning => "警告",
        Severity::Info => "提示",
    }
}

/// The environment's name.
pub fn environment(env: &str) -> &str {
    match env {
        "prod" => "生产环境",
        "staging" => "预发环境",
        "dev" => "开发环境",
        other => other,
    }
}

/// "12 分钟", "45 秒", "2 小时".
pub fn span(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    if s < 120 {
        format!("{s} 秒")
    } else if s < 7200 {
        format!("{} 分钟", s / 60)
    } else {
        format!("{} 小时", s / 3600)
    }
}

fn fact<'a>(a: &'a Alert, label: &str) -> &'a str {
    a.facts
        .iter()
        .find(|(k, _)| k == label)
        .map_or("?", |(_, v)| v.as_str())
}

/// The egress caller's name (`connection:tiktok-main` → `tiktok-main`).
fn who(a: &Alert) -> &str {
    let c = fact(a, "Caller");
    c.split_once(':').map_or(c, |(_, n)| n)
}

/// The Chinese title and hint of `a`, `None` for a kind not known here.
fn title_and_hint(a: &Alert) -> Option<(String, Option<&'static str>)> {
    let conn = || fact(a, "Connection");
    let host = || fact(a, "Host");
    Some(match (a.source.as_str(), a.kind.as_str()) {
        ("backup", "backup_failed") => (
            "定时备份失败".to_owned(),
            Some(
                "用 stockade backup list 查看错误，并手动运行 stockade backup create；备份成功之前，可恢复的最新副本会越来越旧。",
            ),
        ),
        ("audit_mirror", "failing") => (
            format!("审计镜像到 {} 失败", fact(a, "Sink")),
            Some(
                "不会丢失数据：记录仍在审计日志中等待。用 stockade audit mirror status 查看错误，处理方法见运维文档。",
            ),
        ),
        ("incident", step) => return incident(a, step),
        ("audit_mirror", "recovered") => (format!("审计镜像到 {} 已恢复", fact(a, "Sink")), None),
        ("sync", "push_failed") => (
            format!("库存推送到 {} 失败", conn()),
            Some("推送会持续重试；成功之前该渠道显示的是过时的数量。"),
        ),
        ("sync", "fetch_failed") => (
            format!("从 {} 拉取订单失败", conn()),
            Some("平台会重发通知，轮询也会补上遗漏的订单。"),
        ),
        ("sync", "oversell") => (
            format!("{} 超卖：订单到达时已无库存", fact(a, "SKU")),
            Some("请补货或取消该订单；所有渠道现在都将此 SKU 显示为 0。"),
        ),
        ("sync", "unmatched_sku") => (
            format!("订单中的 {} 不在商品目录中", fact(a, "SKU")),
            Some("用 stockade sku import 添加该 SKU：其未完成订单会立即预留库存。"),
        ),
        ("sync", "foreign_event") => (
            format!("{} 收到了属于其他应用连接的事件", conn()),
            Some("已忽略：请检查在平台上登记的 webhook 地址。"),
        ),
        ("sync", "authorization_expiring") => (
            format!("{} 的授权即将过期", conn()),
            Some("请在过期前重新授权该连接，否则同步会停止。"),
        ),
        ("egress", "blocked") => (
            format!("已拦截 {} 发往 {} 的未授权外发请求", who(a), host()),
            Some("没有发送任何内容。如果该主机合法，请把它加入外发白名单；否则请调查调用方。"),
        ),
        ("egress", "client_error") if fact(a, "HTTP status") == "429" => (
            format!("{} 正在限制 {} 的请求频率", host(), who(a)),
            Some("请求会重试；如持续出现 429，需要调低频率上限。"),
        ),
        ("egress", "client_error") => (
            format!(
                "{} 拒绝了 {} 的请求（HTTP {}）",
                host(),
                who(a),
                fact(a, "HTTP status")
            ),
            Some("请检查该连接的凭据和授权。"),
        ),
        ("egress", "server_error") => (
            format!(
                "{} 处理 {} 的请求失败（HTTP {}）",
                host(),
                who(a),
                fact(a, "HTTP status")
            ),
            None,
        ),
        ("egress", "transport") => (
            format!("{} 无法连接 {}", who(a), host()),
            Some("请检查网络和平台的状态页。"),
        ),
        ("egress", "malformed") => (format!("{} 给 {} 的应答异常", host(), who(a)), None),
        ("access", "ban") => (
            "某个地址因多次认证失败被封禁".to_owned(),
            Some("用 stockade ban list 查看地址；误封可用 stockade ban remove 解除。"),
        ),
        ("access", "apikey_wrong_environment") => (
            wrong_environment(&a.title),
            Some("各环境相互隔离：请查明谁持有该密钥，以及它为何到达本服务器。"),
        ),
        ("access", "mfa_reset") => (
            format!("用户 {} 的 MFA 已被重置", fact(a, "User")),
            Some("该用户下次登录时必须绑定新的验证器；请确认这次重置是预期的。"),
        ),
        ("alerts", "channel_config") => (
            format!("告警通道 {} 配置有误：其告警已暂存", fact(a, "Channel")),
            Some(
                "请修复该通道（stockade alert test --channel NAME 会指出问题）；修复后会补发暂存的告警。",
            ),
        ),
        ("alerts", "channel_down") => (
            format!("告警通道 {} 无法投递", fact(a, "Channel")),
            Some("发往它的告警会保留并重试；请检查机器人和网络。"),
        ),
        ("workflow", "failed") => (format!("工作流 {} 执行失败", fact(a, "Workflow")), None),
        ("workflow", "alert") => {
            // The step's own title is the author's text: kept; only the default is ours.
            let default = format!("Workflow {}", fact(a, "Workflow"));
            let title = if a.title == default {
                format!("工作流 {}", fact(a, "Workflow"))
            } else {
                a.title.clone()
            };
            (title, None)
        }
        ("test", "test") => (
            "Stockade 测试告警：此通道工作正常".to_owned(),
            Some("这是一条测试消息（stockade alert test 或控制台发送）；没有任何故障。"),
        ),
        _ => return None,
    })
}

/// "An API key of environment X was used against this Y server" in Chinese.
fn wrong_environment(en: &str) -> String {
    let rest = en.strip_prefix("An API key of environment ").unwrap_or("?");
    let (key_env, server) = rest
        .split_once(" was used against this ")
        .unwrap_or(("?", "?"));
    let server = server.strip_suffix(" server").unwrap_or(server);
    format!(
        "{} 的 API 密钥被用于本{}服务器",
        environment(key_env),
        environment(server)
    )
}

/// `a` with the system's words in Chinese; other kinds get their generic title.
/// An incident step's Chinese title and hint (see `classify::incident`).
fn incident(a: &Alert, step: &str) -> Option<(String, Option<&'static str>)> {
    let what = if fact(a, "Drill") == "yes" {
        "演练"
    } else {
        "安全事件"
    };
    let id = fact(a, "Incident");
    let target = fact(a, "Target");
    let title = match step {
        "open" => format!("{what} {id} 已开启，严重程度 {}", fact(a, "Severity")),
        "revoke" => format!("{what} {id}：已吊销 {target}"),
        "isolate" => format!("{what} {id}：已隔离 {target}"),
        "release" => format!("{what} {id}：已解除 {target}"),
        "lockdown" => format!("{what} {id}：实例已锁定"),
        "notify" => format!("{what} {id}：已记录一次通知"),
        "note" => format!("{what} {id}：已添加备注"),
        "close" => format!("{what} {id} 已关闭"),
        "report" => format!("{what} {id}：已导出报告"),
        _ => return None,
    };
    let hint = a.hint.as_ref().map(|_| {
        "按 docs/incident.md 处理：吊销受影响的密钥并隔离，在发现后 24 小时内通知亚马逊（stockade incident show 显示倒计时）。"
    });
    Some((title, hint))
}

pub fn localize(a: &Alert) -> Alert {
    let mut out = a.clone();
    match title_and_hint(a) {
        Some((title, hint)) => {
            out.title = title;
            out.hint = hint.map(str::to_owned);
        }
        None if a.title == format!("Event {} from {}", a.kind, a.source) => {
            out.title = format!("来自 {} 的事件 {}", a.source, a.kind);
        }
        None => {}
    }
    out.facts = a
        .facts
        .iter()
        .map(|(k, v)| (label(k).to_owned(), v.clone()))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(source: &str, kind: &str, title: &str, facts: &[(&str, &str)]) -> Alert {
        Alert {
            severity: Severity::Error,
            source: source.into(),
            kind: kind.into(),
            title: title.into(),
            facts: facts
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            message: Some("upstream said no".into()),
            hint: Some("English hint".into()),
            key: "k".into(),
            event_id: 1,
            at_ms: 0,
            count: 1,
            since_ms: None,
            about_channel: None,
            to_channel: None,
        }
    }

    #[test]
    fn titles_labels_and_hints_become_chinese_and_keep_identifiers() {
        let a = alert(
            "sync",
            "push_failed",
            "Stock push to tiktok-main is failing",
            &[("Connection", "tiktok-main"), ("Attempts", "5")],
        );
        let z = localize(&a);
        assert_eq!(z.title, "库存推送到 tiktok-main 失败");
        assert_eq!(z.facts[0], ("连接".into(), "tiktok-main".into()));
        assert!(z.hint.unwrap().contains("推送会持续重试"));
        assert_eq!(
            z.message.as_deref(),
            Some("upstream said no"),
            "third-party text kept"
        );
        let w = alert(
            "access",
            "apikey_wrong_environment",
            "An API key of environment dev was used against this prod server",
            &[],
        );
        assert_eq!(
            localize(&w).title,
            "开发环境 的 API 密钥被用于本生产环境服务器"
        );
        let own = alert(
            "workflow",
            "alert",
            "Restock MUG-1",
            &[("Workflow", "restock")],
        );
        assert_eq!(
            localize(&own).title,
            "Restock MUG-1",
            "an author's title is kept"
        );
        let other = alert("x", "y", "Event y from x", &[]);
        assert_eq!(localize(&other).title, "来自 x 的事件 y");
    }
}
