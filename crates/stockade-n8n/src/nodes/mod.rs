//! Per node type: what step(s) an n8n node becomes. [`convert`] dispatches on the type;
//! each module handles a family (triggers, code, HTTP, flow control, data, NocoDB,
//! chat alerts). A converter returns the node's drafts, or `Err(reason)` when the node
//! cannot be converted, which becomes an `unsupported` step naming node and type.

pub mod alert;
pub mod code;
pub mod data;
pub mod flow;
pub mod http;
pub mod nocodb;
pub mod trigger;

use crate::convert::{Cx, Draft};
use crate::expr::Items;
use crate::yaml::Y;

/// Convert a (non-trigger) node.
pub fn convert(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let kind = cx.node.short_kind().to_owned();
    let package = cx.node.kind.split('.').next().unwrap_or("").to_owned();
    if alert::is_message_kind(&kind) {
        return alert::message(cx);
    }
    if package != "n8n-nodes-base" {
        return Err(format!(
            "no Stockade equivalent for the `{package}` package's nodes"
        ));
    }
    match kind.as_str() {
        "code" | "function" | "functionItem" => code::code(cx),
        "httpRequest" => http::http(cx),
        "if" | "filter" => flow::if_node(cx),
        "switch" => flow::switch(cx),
        "set" => data::set(cx),
        "merge" => data::merge(cx),
        "wait" => flow::wait(cx),
        "noOp" => {
            cx.out = cx.input.clone();
            cx.note("does nothing in n8n: no step");
            Ok(Vec::new())
        }
        "splitInBatches" => flow::loop_node(cx),
        "executeWorkflow" => flow::call(cx),
        "respondToWebhook" => flow::respond(cx),
        "stopAndError" => flow::stop(cx),
        "nocoDb" => nocodb::nocodb(cx),
        _ => Err("no Stockade equivalent for this node type".into()),
    }
}

/// The `unsupported` step standing for a node.
pub fn unsupported(cx: &Cx<'_>, why: &str) -> Draft {
    let mut d = cx.step(
        "unsupported",
        vec![
            ("node", Y::s(&cx.node.name)),
            ("type", Y::s(&cx.node.kind)),
            ("reason", Y::s(why)),
        ],
    );
    // Retry and continue_on_error make no sense on a placeholder.
    d.entries.truncate(3);
    d
}

/// An ISO-8601 duration from milliseconds (`PT1.5S`).
pub fn iso_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// The list expression of the node's input (a one-item list for a single item).
pub fn list_of(items: &Items) -> Option<String> {
    match items {
        Items::Many(l) => Some(l.clone()),
        Items::Single(p) => Some(format!("[{p}]")),
        Items::Webhook => Some("[trigger]".into()),
        Items::Unknown => None,
    }
}
