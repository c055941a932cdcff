//! The step kinds: their parameters, what each parameter names (a connection, a
//! credential, a host…), which outputs carry buyer data, and which steps send data out.
//!
//! This table is the single source the linter, the JSON Schema and the docs agree on;
//! the engine runs only kinds listed here.

use schemars::JsonSchema;
use serde::Deserialize;

/// What a parameter's value names, for the permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Plain data (may hold expressions).
    Data,
    /// A connection name: must be in `permissions.connections` when written literally.
    Connection,
    /// A credential name: literal, and in `permissions.credentials`.
    Credential,
    /// A URL whose host must be literal and in `permissions.hosts`.
    Url,
    /// An event kind: literal, and in `permissions.events`.
    Event,
    /// Another workflow's name (literal).
    Workflow,
    /// Source code run by the step (literal, never evaluated as an expression: `{{` in
    /// a script is the script's own text).
    Code,
    /// The name of a configured alert channel (literal).
    Channel,
}

/// One parameter of a step kind.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub required: bool,
    pub role: Role,
}

/// Which nested step lists a kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    None,
    If,
    Switch,
    ForEach,
}

/// A step kind.
#[derive(Debug, Clone, Copy)]
pub struct StepKind {
    pub name: &'static str,
    pub params: &'static [Param],
    /// Paths under `output` holding buyer data when `permissions.buyer_fields` is on.
    pub pii_outputs: &'static [&'static str],
    /// Sends data out of Stockade, into an alert or into the audit log: buyer data needs
    /// `allow_pii`.
    pub pii_sink: bool,
    pub control: Control,
    /// One line for the docs.
    pub summary: &'static str,
}

const fn p(name: &'static str, required: bool, role: Role) -> Param {
    Param {
        name,
        required,
        role,
    }
}

const fn kind(name: &'static str, params: &'static [Param], summary: &'static str) -> StepKind {
    StepKind {
        name,
        params,
        pii_outputs: &[],
        pii_sink: false,
        control: Control::None,
        summary,
    }
}

use Role::{Channel, Code, Connection, Credential, Data, Event, Url, Workflow};

/// Every step kind.
pub const KINDS: &[StepKind] = &[
    StepKind {
        pii_outputs: &["orders"],
        ..kind(
            "marketplace.fetch_orders",
            &[
                p("connection", true, Connection),
                p("since", false, Data),
                p("status", false, Data),
                p("limit", false, Data),
            ],
            "Orders from a connection (buyer fields masked unless `buyer_fields`).",
        )
    },
    kind(
        "marketplace.set_stock",
        &[
            p("connection", true, Connection),
            p("sku", true, Data),
            p("quantity", true, Data),
        ],
        "Push an absolute quantity of a SKU to a connection.",
    ),
    kind(
        "stock.get",
        &[p("sku", true, Data)],
        "A SKU's on hand, reserved and available units.",
    ),
    StepKind {
        pii_sink: true,
        ..kind(
            "stock.adjust",
            &[
                p("sku", true, Data),
                p("delta", true, Data),
                p("reason", true, Data),
            ],
            "Move a SKU's on-hand stock by a signed number of units (audited, with the reason).",
        )
    },
    StepKind {
        pii_outputs: &["buyer", "shipping_address"],
        ..kind(
            "order.get",
            &[p("order", true, Data), p("connection", false, Connection)],
            "One order (buyer fields masked unless `buyer_fields`).",
        )
    },
    StepKind {
        pii_sink: true,
        ..kind(
            "http.request",
            &[
                p("url", true, Url),
                p("method", false, Data),
                p("headers", false, Data),
                p("body", false, Data),
                p("credential", false, Credential),
                p("credential_header", false, Data),
            ],
            "An HTTPS request through the egress gateway to a declared host; a credential is injected by name.",
        )
    },
    StepKind {
        pii_sink: true,
        ..kind(
            "alert.send",
            &[
                p("message", true, Data),
                p("title", false, Data),
                p("severity", false, Data),
                p("channel", false, Channel),
            ],
            "An alert to the configured channels (DingTalk, Feishu, webhook), or to the one named by `channel`.",
        )
    },
    StepKind {
        pii_sink: true,
        ..kind(
            "audit.note",
            &[p("message", true, Data), p("subject", false, Data)],
            "A row in the audit log.",
        )
    },
    StepKind {
        control: Control::If,
        ..kind(
            "if",
            &[p("condition", true, Data)],
            "Run `then` when the condition holds, else `else`.",
        )
    },
    StepKind {
        control: Control::Switch,
        ..kind(
            "switch",
            &[p("value", true, Data)],
            "Run the `cases` branch named by the value, else `default`.",
        )
    },
    StepKind {
        control: Control::ForEach,
        ..kind(
            "for_each",
            &[
                p("items", true, Data),
                p("max_items", false, Data),
                p("parallelism", false, Data),
            ],
            "Run `steps` once per item (bounded by `max_items`, default 100).",
        )
    },
    kind(
        "wait",
        &[
            p("duration", false, Data),
            p("until", false, Data),
            p("event", false, Event),
            p("timeout", false, Data),
        ],
        "Wait durably for a duration, a time or an event (survives restarts).",
    ),
    kind(
        "workflow.call",
        &[p("workflow", true, Workflow), p("inputs", false, Data)],
        "Run another workflow; its failure fails this step.",
    ),
    StepKind {
        pii_sink: true,
        ..kind(
            "fail",
            &[p("message", true, Data)],
            "Fail the execution with a message (it reaches the error event and its alerts).",
        )
    },
    kind(
        "script",
        &[
            p("code", true, Code),
            p("language", false, Data),
            p("input", false, Data),
            p("nodes", false, Data),
            p("limits", false, Data),
            p("mode", false, Data),
        ],
        "JavaScript in a sandbox with no I/O, memory/time/output limits and the n8n Code node's data API.",
    ),
    StepKind {
        pii_sink: true,
        ..kind(
            "nocodb.list",
            &[
                p("url", true, Url),
                p("credential", true, Credential),
                p("table", true, Data),
                p("where", false, Data),
                p("sort", false, Data),
                p("fields", false, Data),
                p("limit", false, Data),
                p("offset", false, Data),
            ],
            "Rows of a NocoDB table (API token from the credential store).",
        )
    },
    StepKind {
        pii_sink: true,
        ..kind(
            "nocodb.insert",
            &[
                p("url", true, Url),
                p("credential", true, Credential),
                p("table", true, Data),
                p("rows", true, Data),
            ],
            "Insert rows into a NocoDB table (at most 100 per request).",
        )
    },
    StepKind {
        pii_sink: true,
        ..kind(
            "nocodb.update",
            &[
                p("url", true, Url),
                p("credential", true, Credential),
                p("table", true, Data),
                p("rows", true, Data),
            ],
            "Update NocoDB rows by `Id` (at most 100 per request).",
        )
    },
    StepKind {
        pii_sink: true,
        ..kind(
            "nocodb.delete",
            &[
                p("url", true, Url),
                p("credential", true, Credential),
                p("table", true, Data),
                p("ids", true, Data),
            ],
            "Delete NocoDB rows by `Id` (at most 100 per request).",
        )
    },
    kind(
        "unsupported",
        &[
            p("node", true, Data),
            p("type", true, Data),
            p("reason", false, Data),
            p("parameters", false, Data),
        ],
        "A node of an imported n8n workflow that could not be converted: always a lint error until replaced.",
    ),
    kind(
        "orders.summary",
        &[
            p("since", false, Data),
            p("until", false, Data),
            p("within", false, Data),
            p("connections", false, Data),
        ],
        "Per declared connection: orders created in a window, cancellations, units and best-selling SKUs (no buyer data).",
    ),
    kind(
        "executions.count",
        &[
            p("status", false, Data),
            p("within", false, Data),
            p("since", false, Data),
            p("until", false, Data),
            p("workflow", false, Data),
        ],
        "Finished executions of a status (default failed) in a window, in total and per workflow.",
    ),
    kind(
        "stock.reconcile_report",
        &[p("connections", false, Data), p("since", false, Data)],
        "Per declared connection: listings in drift (target, pushed, confirmed, read back), unmatched lines, oversold orders.",
    ),
    kind(
        "marketplace.pull_orders",
        &[p("connection", true, Connection)],
        "Pull a connection's orders changed since its cursor and ingest them as webhooks do (idempotent).",
    ),
];

/// Literal values a parameter accepts (an expression is checked when it runs).
pub const CHOICES: &[(&str, &str, &[&str])] = &[
    (
        "http.request",
        "method",
        &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
    ),
    ("alert.send", "severity", &["info", "warning", "critical"]),
    ("script", "language", &["javascript"]),
    ("script", "mode", &["all_items", "each_item"]),
    (
        "executions.count",
        "status",
        &["failed", "succeeded", "cancelled"],
    ),
];

/// Parameters holding an ISO-8601 duration when written literally.
pub const DURATIONS: &[(&str, &str)] = &[
    ("wait", "duration"),
    ("wait", "timeout"),
    ("orders.summary", "within"),
    ("executions.count", "within"),
];

/// The kind named `name`.
pub fn find(name: &str) -> Option<&'static StepKind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The names of the step kinds, for the JSON Schema of `uses`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub enum StepKindName {
    #[serde(rename = "marketplace.fetch_orders")]
    FetchOrders,
    #[serde(rename = "marketplace.set_stock")]
    SetStock,
    #[serde(rename = "stock.get")]
    StockGet,
    #[serde(rename = "stock.adjust")]
    StockAdjust,
    #[serde(rename = "order.get")]
    OrderGet,
    #[serde(rename = "http.request")]
    HttpRequest,
    #[serde(rename = "alert.send")]
    AlertSend,
    #[serde(rename = "audit.note")]
    AuditNote,
    #[serde(rename = "if")]
    If,
    #[serde(rename = "switch")]
    Switch,
    #[serde(rename = "for_each")]
    ForEach,
    #[serde(rename = "wait")]
    Wait,
    #[serde(rename = "workflow.call")]
    WorkflowCall,
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "script")]
    Script,
    #[serde(rename = "nocodb.list")]
    NocodbList,
    #[serde(rename = "nocodb.insert")]
    NocodbInsert,
    #[serde(rename = "nocodb.update")]
    NocodbUpdate,
    #[serde(rename = "nocodb.delete")]
    NocodbDelete,
    #[serde(rename = "unsupported")]
    Unsupported,
    #[serde(rename = "orders.summary")]
    OrdersSummary,
    #[serde(rename = "executions.count")]
    ExecutionsCount,
    #[serde(rename = "stock.reconcile_report")]
    StockReconcileReport,
    #[serde(rename = "marketplace.pull_orders")]
    PullOrders,
}

/// Event kinds a workflow can be triggered by or wait for.
pub const EVENT_KINDS: &[(&str, &str)] = &[
    ("order.created", "a new order was ingested"),
    ("order.cancelled", "an order was cancelled"),
    (
        "stock.low",
        "a SKU's available stock fell below its threshold",
    ),
    ("oversell", "a reservation took available stock below zero"),
    (
        "unmatched_sku",
        "an order line named a SKU not in the catalog",
    ),
    ("push.failed", "stock pushes to a channel keep failing"),
    ("fetch.failed", "fetching notified orders keeps failing"),
    (
        "connection.revoked",
        "a seller revoked a connection (after the purge)",
    ),
    ("authorization.expiring", "a connection's grant ends soon"),
    ("egress.blocked", "the egress gateway refused a request"),
    ("workflow.failed", "an execution failed after its retries"),
];

/// Whether `kind` is a known event kind.
pub fn is_event_kind(kind: &str) -> bool {
    EVENT_KINDS.iter().any(|(k, _)| *k == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_enum_and_the_table_name_the_same_kinds() {
        let schema = schemars::schema_for!(StepKindName);
        let text = serde_json::to_string(&schema).unwrap_or_default();
        for k in KINDS {
            assert!(text.contains(&format!("\"{}\"", k.name)), "{}", k.name);
        }
    }
}
