//! The n8n export format as the importer reads it: a workflow object
//! (`{name, nodes, connections, settings, pinData}`) or an array of them, read leniently
//! from JSON (unknown keys ignored, missing ones defaulted) but refused when it is not
//! n8n at all.
//!
//! Invariants: [`parse`] never panics; it refuses input over [`MAX_INPUT`] before
//! parsing, JSON that does not parse (with line and column) and JSON without the shape
//! of an n8n workflow (a `nodes` array whose entries have a `name` and a `type`).

use serde_json::{Map, Value};

/// Largest export accepted, in bytes.
pub const MAX_INPUT: usize = 16 * 1024 * 1024;

/// Why an export was refused whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("the export is {0} bytes; at most {MAX_INPUT} are read")]
    TooLarge(usize),
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not an n8n workflow export: {0}")]
    NotN8n(String),
}

/// One edge: from a node's output to a node's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub output: usize,
    pub to: usize,
    pub input: usize,
}

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub kind: String,
    pub version: f64,
    pub parameters: Map<String, Value>,
    /// Credential slot (e.g. `httpHeaderAuth`) → the credential's name in n8n.
    pub credentials: Vec<(String, String)>,
    pub position: (f64, f64),
    pub disabled: bool,
    /// `continueRegularOutput`, `continueErrorOutput`, `stopWorkflow` (or from the old
    /// `continueOnFail`).
    pub on_error: Option<String>,
    pub retry: Option<(u32, u64)>,
    pub execute_once: bool,
}

impl Node {
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.parameters.get(key)
    }

    pub fn str_param(&self, key: &str) -> Option<&str> {
        self.param(key).and_then(Value::as_str)
    }

    /// The part of the type after the package (`n8n-nodes-base.code` → `code`).
    pub fn short_kind(&self) -> &str {
        self.kind.rsplit('.').next().unwrap_or(&self.kind)
    }
}

/// One workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: Option<String>,
    pub name: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Connections of a kind other than `main` (AI sub-nodes) and to unknown nodes.
    pub odd_connections: Vec<String>,
    pub timezone: Option<String>,
    pub error_workflow: Option<String>,
    /// Names of nodes with pinned data.
    pub pinned: Vec<String>,
}

impl Workflow {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// Parse an export (one workflow or an array of them).
pub fn parse(bytes: &[u8]) -> Result<Vec<Workflow>, ImportError> {
    if bytes.len() > MAX_INPUT {
        return Err(ImportError::TooLarge(bytes.len()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ImportError::NotJson(format!(
            "line {} column {}: {}",
            e.line(),
            e.column(),
            e.classify_name()
        ))
    })?;
    let list = match value {
        Value::Array(a) => a,
        Value::Object(o) => vec![Value::Object(o)],
        _ => {
            return Err(ImportError::NotN8n(
                "the top level is neither an object nor an array".into(),
            ));
        }
    };
    if list.is_empty() {
        return Err(ImportError::NotN8n(
            "an empty array holds no workflow".into(),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            workflow(v).map_err(|why| ImportError::NotN8n(format!("workflow {}: {why}", i + 1)))
        })
        .collect()
}

trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

fn workflow(v: &Value) -> Result<Workflow, String> {
    let o = v.as_object().ok_or("not an object")?;
    let nodes = o
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or("no `nodes` array")?;
    if nodes.is_empty() {
        return Err("`nodes` is empty".into());
    }
    let nodes = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| node(n).ok_or(format!("node {} has no `name` and `type`", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err("two nodes have the same name".into());
    }
    let connections = match o.get("connections") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c.clone(),
        Some(_) => return Err("`connections` is not an object".into()),
    };
    let settings = o.get("settings").and_then(Value::as_object);
    let setting = |k: &str| {
        settings
            .and_then(|s| s.get(k))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_i64().map(|i| i.to_string()))
            })
            .filter(|s| !s.is_empty())
    };
    let mut w = Workflow {
        id: o.get("id").and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_i64().map(|i| i.to_string()))
        }),
        name: o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        nodes,
        edges: Vec::new(),
        odd_connections: Vec::new(),
        timezone: setting("timezone").filter(|t| t != "DEFAULT"),
        error_workflow: setting("errorWorkflow"),
        pinned: o
            .get("pinData")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default(),
    };
    read_connections(&mut w, &connections);
    Ok(w)
}

fn read_connections(w: &mut Workflow, connections: &Map<String, Value>) {
    for (source, kinds) in connections {
        let Some(from) = w.index(source) else {
            w.odd_connections
                .push(format!("connections name an unknown node `{source}`"));
            continue;
        };
        let Some(kinds) = kinds.as_object() else {
            continue;
        };
        for (kind, outputs) in kinds {
            if kind != "main" {
                w.odd_connections.push(format!(
                    "`{source}` has `{kind}` connections (AI sub-nodes)"
                ));
                continue;
            }
            let outputs = outputs.as_array().map(Vec::as_slice).unwrap_or(&[]);
            for (output, targets) in outputs.iter().enumerate() {
                for t in targets.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let target = t.get("node").and_then(Value::as_str).unwrap_or("");
                    match w.index(target) {
                        Some(to) => w.edges.push(Edge {
                            from,
                            output,
                            to,
                            input: t.get("index").and_then(Value::as_u64).unwrap_or(0) as usize,
                        }),
                        None => w
                            .odd_connections
                            .push(format!("`{source}` connects to an unknown node `{target}`")),
                    }
                }
            }
        }
    }
    w.edges.sort_by_key(|e| (e.from, e.output, e.to, e.input));
    w.edges.dedup();
}

fn node(v: &Value) -> Option<Node> {
    let o = v.as_object()?;
    let name = o.get("name")?.as_str()?.to_owned();
    let kind = o.get("type")?.as_str()?.to_owned();
    let pos = o.get("position").and_then(Value::as_array);
    let coord = |i: usize| {
        pos.and_then(|p| p.get(i))
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
    };
    let credentials = o
        .get("credentials")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .map(|(slot, v)| {
                    let name = v
                        .get("name")
                        .and_then(Value::as_str)
                        .or_else(|| v.as_str())
                        .unwrap_or("")
                        .to_owned();
                    (slot.clone(), name)
                })
                .collect()
        })
        .unwrap_or_default();
    let on_error = o
        .get("onError")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            (o.get("continueOnFail").and_then(Value::as_bool) == Some(true))
                .then(|| "continueRegularOutput".to_owned())
        });
    let retry = (o.get("retryOnFail").and_then(Value::as_bool) == Some(true)).then(|| {
        let tries = o
            .get("maxTries")
            .and_then(Value::as_u64)
            .unwrap_or(3)
            .clamp(1, 20) as u32;
        let wait = o
            .get("waitBetweenTries")
            .and_then(Value::as_u64)
            .unwrap_or(1000);
        (tries, wait)
    });
    Some(Node {
        name,
        kind,
        version: o.get("typeVersion").and_then(Value::as_f64).unwrap_or(1.0),
        parameters: o
            .get("parameters")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        credentials,
        position: (coord(0), coord(1)),
        disabled: o.get("disabled").and_then(Value::as_bool) == Some(true),
        on_error,
        retry,
        execute_once: o.get("executeOnce").and_then(Value::as_bool) == Some(true),
    })
}
