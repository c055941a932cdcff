//! A small YAML writer for the generated workflows: an ordered tree ([`Y`]) written
//! with keys in the order the importer chose, so output is deterministic and reads like
//! a hand-written file.
//!
//! Invariants: every string is written so that Stockade's YAML 1.2 reader gives back
//! exactly the same text (plain only when unambiguous, a literal block for multi-line
//! code, double-quoted JSON-style otherwise); nothing here panics.

/// A YAML value with ordered mappings.
#[derive(Debug, Clone, PartialEq)]
pub enum Y {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Y>),
    Map(Vec<(String, Y)>),
}

impl Y {
    pub fn s(text: impl Into<String>) -> Y {
        Y::Str(text.into())
    }

    pub fn map(entries: Vec<(&str, Y)>) -> Y {
        Y::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// A JSON value as YAML (object keys in JSON's order).
    pub fn from_json(v: &serde_json::Value) -> Y {
        use serde_json::Value as J;
        match v {
            J::Null => Y::Null,
            J::Bool(b) => Y::Bool(*b),
            J::Number(n) => n
                .as_i64()
                .map(Y::Int)
                .unwrap_or_else(|| Y::Float(n.as_f64().unwrap_or(0.0))),
            J::String(s) => Y::Str(s.clone()),
            J::Array(a) => Y::Seq(a.iter().map(Y::from_json).collect()),
            J::Object(o) => Y::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Y::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// The document text of `root` (a mapping), ending in a newline.
pub fn to_string(root: &Y) -> String {
    let mut out = String::new();
    match root {
        Y::Map(entries) if !entries.is_empty() => map_body(entries, 0, &mut out),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn map_body(entries: &[(String, Y)], indent: usize, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            pad(indent, out);
        }
        out.push_str(&key(k));
        out.push(':');
        value_after_key(v, indent, out);
    }
}

fn value_after_key(v: &Y, indent: usize, out: &mut String) {
    match v {
        Y::Map(e) if !e.is_empty() => {
            out.push('\n');
            pad(indent + 2, out);
            map_body(e, indent + 2, out);
        }
        Y::Seq(items) if !items.is_empty() => {
            out.push('\n');
            seq_body(items, indent + 2, out);
        }
        Y::Str(s) if block_ok(s) => {
            block(s, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn seq_body(items: &[Y], indent: usize, out: &mut String) {
    for item in items {
        pad(indent, out);
        out.push_str("- ");
        match item {
            Y::Map(e) if !e.is_empty() => map_body(e, indent + 2, out),
            Y::Seq(inner) if !inner.is_empty() => {
                out.push('\n');
                seq_body(inner, indent + 2, out);
            }
            Y::Str(s) if block_ok(s) => {
                // A block scalar directly as a sequence item.
                out.pop();
                out.push(' ');
                block(s, indent + 2, out);
            }
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// Multi-line text written as a literal block keeps every character.
fn block_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.contains('\r')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !s
            .lines()
            .any(|l| l.ends_with([' ', '\t']) && l.trim().is_empty() && !l.is_empty())
}

fn block(s: &str, indent: usize, out: &mut String) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    };
    out.push(' ');
    out.push_str(chomp);
    out.push('\n');
    let body = s.trim_end_matches('\n');
    for line in body.split('\n') {
        if !line.is_empty() {
            pad(indent, out);
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

fn key(k: &str) -> String {
    if plain_ok(k) { k.to_owned() } else { quoted(k) }
}

/// A value on one line: scalars, and empty or small flow collections.
fn inline(v: &Y) -> String {
    match v {
        Y::Null => "null".into(),
        Y::Bool(b) => b.to_string(),
        Y::Int(i) => i.to_string(),
        Y::Float(f) if f.is_finite() => {
            let t = f.to_string();
            if t.contains(['.', 'e', 'E']) {
                t
            } else {
                format!("{t}.0")
            }
        }
        Y::Float(_) => "null".into(),
        Y::Str(s) => {
            if plain_ok(s) {
                s.clone()
            } else {
                quoted(s)
            }
        }
        Y::Seq(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Y::Map(e) => format!(
            "{{{}}}",
            e.iter()
                .map(|(k, v)| format!("{}: {}", key(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

const RESERVED: &[&str] = &[
    "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~", "True", "False", "Null",
    "NULL", "TRUE", "FALSE", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF",
];

/// Plain scalars only for simple words that cannot read as another type.
fn plain_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && !RESERVED.contains(&s)
}

/// A double-quoted scalar with JSON escapes (valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_the_workflow_reader() {
        let code = "const a = 1;\n\treturn [{ json: { a } }];\n";
        let doc = Y::map(vec![
            ("name", Y::s("x")),
            ("yes", Y::s("on")),
            ("code", Y::s(code)),
            ("q", Y::s("{{ trigger.body.id }}")),
            ("list", Y::Seq(vec![Y::s("a b"), Y::Int(3)])),
        ]);
        let text = to_string(&doc);
        let node: stockade_workflows::yaml::Located<stockade_workflows::yaml::Node> =
            stockade_workflows::yaml::parse(&text).unwrap();
        assert_eq!(
            node.value.get("code").and_then(|c| c.value.as_str()),
            Some(code)
        );
        assert_eq!(
            node.value.get("yes").and_then(|c| c.value.as_str()),
            Some("on")
        );
        assert_eq!(
            node.value.get("q").and_then(|c| c.value.as_str()),
            Some("{{ trigger.body.id }}")
        );
    }
}
