//! DingTalk / Feishu / Lark message nodes, and HTTP Request calls to their bot webhook
//! URLs, → `alert.send` to a named channel (configured once as `[[alerts.channel]]`;
//! the bot's access token in the URL is never copied). Alerts pass Stockade's scrubber.

use serde_json::Value;

use crate::convert::{Cx, Draft};
use crate::expr::Items;
use crate::yaml::Y;

/// Whether a node type (after its package) is a chat message node.
pub fn is_message_kind(kind: &str) -> bool {
    let k = kind.to_ascii_lowercase();
    k.contains("dingtalk") || k.contains("dingding") || k.contains("feishu") || k.contains("lark")
}

fn channel_of(kind: &str) -> &'static str {
    let k = kind.to_ascii_lowercase();
    if k.contains("feishu") {
        "feishu"
    } else if k.contains("lark") {
        "lark"
    } else {
        "dingtalk"
    }
}

/// A community DingTalk/Feishu node: the message from its usual parameter names.
pub fn message(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let channel = channel_of(cx.node.short_kind());
    let p = &cx.node.parameters;
    let text = [
        "content",
        "text",
        "message",
        "msg",
        "markdown",
        "markdownText",
    ]
    .iter()
    .find_map(|k| p.get(*k).filter(|v| v.is_string()).cloned());
    let Some(text) = text else {
        return Err("a chat message node whose message parameter is not recognised".into());
    };
    let title = ["title"]
        .iter()
        .find_map(|k| p.get(*k).filter(|v| v.is_string()).cloned());
    send(cx, channel, text, title)
}

/// An HTTP call to a bot webhook: the message from the DingTalk / Feishu body shapes.
pub fn bot_call(cx: &mut Cx<'_>, channel: &str, body: Option<Value>) -> Result<Vec<Draft>, String> {
    let body = body.unwrap_or(Value::Null);
    let text = body
        .pointer("/text/content")
        .or_else(|| body.pointer("/markdown/text"))
        .or_else(|| body.pointer("/content/text"))
        .or_else(|| body.pointer("/card/elements/0/text/content"))
        .cloned();
    let title = body.pointer("/markdown/title").cloned();
    match text {
        Some(t) => {
            cx.note(format!("an HTTP call to the {channel} bot webhook: an alert to channel `{channel}`; the URL's access token is not copied"));
            send(cx, channel, t, title)
        }
        None => Err(format!(
            "a {channel} bot call whose message is not in text.content / markdown.text / content.text"
        )),
    }
}

fn send(
    cx: &mut Cx<'_>,
    channel: &str,
    text: Value,
    title: Option<Value>,
) -> Result<Vec<Draft>, String> {
    cx.acc.channels.insert(channel.to_owned());
    let message = cx.value("message", &text);
    let mut with = vec![("message", message)];
    if let Some(t) = title {
        let t = cx.value("title", &t);
        with.push(("title", t));
    }
    with.push(("channel", Y::s(channel)));
    cx.note(format!("configure an alert channel named `{channel}` ([[alerts.channel]] in stockade.toml) with the bot's URL and secret"));
    cx.out = Items::Unknown;
    Ok(vec![cx.step("alert.send", with)])
}
