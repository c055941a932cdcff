//! Reading YAML with positions: [`Located<T>`] (a value and where it was written),
//! [`Node`] (a generic YAML tree whose every scalar and key keeps its position) and the
//! one parser entry point, [`parse`].
//!
//! Invariants: parsing is bounded (input size, nesting, node and alias budgets), a
//! mapping with a duplicate key is refused, and every parse error carries a line and
//! column. Nothing here panics on input.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Largest workflow file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// A 1-based line and column in the file (0:0 when unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u64,
    pub col: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl Pos {
    fn of(l: serde_saphyr::Location) -> Pos {
        Pos {
            line: l.line(),
            col: l.column(),
        }
    }
}

/// A value and the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Located<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Located { value, pos }
    }
}

impl<T> std::ops::Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Located {
            pos: Pos::of(s.referenced),
            value: s.value,
        })
    }
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
}

/// A YAML value with the position of every key and value (the `with` of a step, and
/// the whole document for the secret scan).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Located<Node>>),
    Map(Vec<(Located<String>, Located<Node>)>),
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Located<Node>> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Every string scalar under this node (keys excluded), with its position, in
    /// document order.
    pub fn strings<'a>(&'a self, pos: Pos, out: &mut Vec<(&'a str, Pos)>) {
        match self {
            Node::Str(s) => out.push((s, pos)),
            Node::List(items) => items.iter().for_each(|i| i.value.strings(i.pos, out)),
            Node::Map(entries) => entries
                .iter()
                .for_each(|(_, v)| v.value.strings(v.pos, out)),
            _ => {}
        }
    }

    /// The plain JSON value (positions dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Node::Null => J::Null,
            Node::Bool(b) => J::Bool(*b),
            Node::Int(i) => J::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Node::Str(s) => J::String(s.clone()),
            Node::List(items) => J::Array(items.iter().map(|i| i.value.to_json()).collect()),
            Node::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }
}

impl schemars::JsonSchema for Node {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({})
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Located<Node>>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(Located<String>, Located<Node>)> = Vec::new();
        while let Some(key) = map.next_key::<Located<String>>()? {
            if entries.iter().any(|(k, _)| k.value == key.value) {
                return Err(de::Error::custom(format!("duplicate key `{}`", key.value)));
            }
            let value = map.next_value::<Located<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

/// A file that is not a well-formed workflow document: the message and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos} {message}")]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
    budget.max_events = 200_000;
    budget.max_aliases = 100;
    budget.max_anchors = 100;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options
}

/// Parse one YAML document into `T`, bounded, refusing duplicate keys.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ParseError {
            pos: Pos { line: 1, col: 1 },
            message: format!("file larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    if text.trim().is_empty() {
        return Err(ParseError {
            pos: Pos { line: 1, col: 1 },
            message: "the file is empty".into(),
        });
    }
    serde_saphyr::from_str_with_options::<T>(text, options()).map_err(|e| {
        // A file:line:col is always printed: the start when the parser knows no better.
        let pos = e
            .location()
            .map(Pos::of)
            .filter(|p| p.line > 0)
            .unwrap_or(Pos { line: 1, col: 1 });
        ParseError {
            pos,
            message: one_line(&e.to_string()),
        }
    })
}

/// The message of a parse error on one line, without the position it repeats.
fn one_line(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let cut = first.find(" at line ").map_or(first, |i| &first[..i]);
    let cut = cut.split(", set DuplicateKeyPolicy").next().unwrap_or(cut);
    match cut.trim_start_matches("error: ") {
        "expected mapping start" => "a workflow is a YAML mapping (name:, trigger:, steps:)".into(),
        "unexpected value for unit enum variant" => {
            "this choice is one word, not a mapping or a list (e.g. `trigger: manual`)".into()
        }
        other => redact_quoted(other),
    }
}

/// Parse errors quote the offending value (`unknown variant `…``): a value that looks
/// like a secret is not repeated.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let quoted = i % 2 == 1;
        if quoted && crate::secrets::looks_like_secret(part).is_some() {
            out.push_str(stockade_core::pii::REDACTED);
        } else {
            out.push_str(part);
        }
    }
    out
}
