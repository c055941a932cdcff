//! n8n expressions (`={{ $json.x }}`, `$node["N"].json.x`, `$('N').item.json.x`,
//! `$('N').first().json.x`) translated into Stockade expressions (minijinja over
//! `trigger`, `steps.ID.output`, `item`).
//!
//! Invariant: a translation is returned only when it reads exactly the value n8n reads
//! (a plain path from a known item); anything else — operators, method calls, optional
//! chaining, `$now`, paired items we cannot follow — is refused with a reason, and the
//! caller keeps the original JavaScript verbatim in a `script` step marked for review.
//! [`js_value`] turns a parameter back into JavaScript for that script. A refusal's
//! reason names what was found, never the expression's text (it may hold a secret).

use serde_json::Value;

/// What a node's input items are, in Stockade terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Items {
    /// The webhook's one item: n8n's `{body, query, headers, params}` is `trigger.*`.
    Webhook,
    /// One item whose json is this expression.
    Single(String),
    /// A list of item jsons.
    Many(String),
    /// Not known exactly (the output of a step n8n shapes differently).
    Unknown,
}

/// Headers Stockade passes to a webhook workflow (`trigger.headers`).
const WEBHOOK_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-request-id",
    "x-delivery-id",
    "x-event-type",
];

/// Where expressions of one node are read.
pub struct Scope<'a> {
    pub input: &'a Items,
    /// The items of an earlier node, by n8n name (`None`: not visible or not known).
    pub node: &'a dyn Fn(&str) -> Option<Items>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("input", self.input)
            .finish_non_exhaustive()
    }
}

/// Why an expression reads the environment, if it does.
pub fn reads_env(text: &str) -> bool {
    text.contains("$env") || text.contains("process.env")
}

/// A parameter value: `=`-prefixed strings are n8n expressions. Returns the Stockade
/// value (strings may hold `{{ }}`), or why it cannot be translated exactly.
pub fn value(v: &Value, scope: &Scope<'_>) -> Result<Value, String> {
    match v {
        Value::String(s) => text(s, scope).map(Value::String),
        Value::Array(a) => a
            .iter()
            .map(|x| value(x, scope))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| value(x, scope).map(|t| (k.clone(), t)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// The parts of an n8n template: literal text and `{{ expression }}` sources.
fn parts(template: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let (lit, after) = rest.split_at(start);
        let inner = &after[2..];
        let end = inner.find("}}").ok_or("an unclosed `{{`")?;
        out.push((false, lit));
        out.push((true, &inner[..end]));
        rest = &inner[end + 2..];
    }
    out.push((false, rest));
    Ok(out)
}

/// A string parameter as Stockade text.
pub fn text(s: &str, scope: &Scope<'_>) -> Result<String, String> {
    let Some(template) = s.strip_prefix('=') else {
        if stockade_workflows::expr::has_expression(s) {
            return Err("a literal holding `{{`".into());
        }
        return Ok(s.to_owned());
    };
    if reads_env(template) {
        return Err(
            "reads an environment variable ($env / process.env): Stockade workflows have none"
                .into(),
        );
    }
    let mut out = String::new();
    for (is_expr, part) in parts(template)? {
        if is_expr {
            out.push_str("{{ ");
            out.push_str(&path(part, scope)?);
            out.push_str(" }}");
        } else if stockade_workflows::expr::has_expression(part) || part.contains("}}") {
            return Err("literal text holding template braces".into());
        } else {
            out.push_str(part);
        }
    }
    Ok(out)
}

/// A value as a bare Stockade expression (for conditions): a whole `={{ E }}` or a literal.
pub fn operand(v: &Value, scope: &Scope<'_>) -> Result<String, String> {
    match v {
        Value::String(s) => match s.strip_prefix('=') {
            Some(t) => {
                let ps = parts(t)?;
                match ps.as_slice() {
                    [(false, a), (true, e), (false, b)]
                        if a.trim().is_empty() && b.trim().is_empty() =>
                    {
                        if reads_env(e) {
                            return Err("reads an environment variable".into());
                        }
                        path(e, scope)
                    }
                    _ if !t.contains("{{") => Ok(json_literal(&Value::String(t.to_owned()))),
                    _ => Err("a condition operand mixing text and expressions".into()),
                }
            }
            None => Ok(json_literal(v)),
        },
        Value::Null => Err("an empty operand".into()),
        other => Ok(json_literal(other)),
    }
}

fn json_literal(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "none".into())
}

/// One accessor after a root.
enum Acc {
    Key(String),
    Index(u64),
}

/// A JavaScript path expression (`$json.a["b"][0]`) as a Stockade expression.
pub fn path(src: &str, scope: &Scope<'_>) -> Result<String, String> {
    let src = src.trim();
    let (base, rest) = root(src, scope)?;
    let accs = accessors(rest).ok_or("not a plain path (operators, calls or optional chaining)")?;
    let mut accs = accs.into_iter();
    let mut out = match base {
        Items::Webhook => match accs.next() {
            Some(Acc::Key(k)) if k == "body" || k == "query" => format!("trigger.{k}"),
            Some(Acc::Key(k)) if k == "headers" => match accs.next() {
                Some(Acc::Key(h)) if WEBHOOK_HEADERS.contains(&h.as_str()) => {
                    format!("trigger.headers[{}]", json_literal(&Value::String(h)))
                }
                _ => return Err("a webhook header Stockade does not pass to workflows".into()),
            },
            _ => return Err("a webhook field other than body and query".into()),
        },
        Items::Single(p) => p,
        Items::Many(_) | Items::Unknown => {
            return Err("reads items whose shape differs in Stockade".into());
        }
    };
    for a in accs {
        match a {
            Acc::Key(k) if is_ident(&k) => {
                out.push('.');
                out.push_str(&k);
            }
            Acc::Key(k) => out.push_str(&format!("[{}]", json_literal(&Value::String(k)))),
            Acc::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Ok(out)
}

fn is_ident(k: &str) -> bool {
    k.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !matches!(
            k,
            "true" | "false" | "none" | "and" | "or" | "not" | "in" | "is" | "if" | "else"
        )
}

/// The root of a path: which items it reads (one item's json), and the rest.
fn root<'s>(src: &'s str, scope: &Scope<'_>) -> Result<(Items, &'s str), String> {
    if let Some(rest) = src.strip_prefix("$json") {
        return Ok((single(scope.input.clone(), false)?, rest));
    }
    for (prefix, first) in [("$input.item.json", false), ("$input.first().json", true)] {
        if let Some(rest) = src.strip_prefix(prefix) {
            return Ok((single(scope.input.clone(), first)?, rest));
        }
    }
    let (name, rest) = if let Some(r) = src.strip_prefix("$node[") {
        let (name, r) = quoted(r).ok_or("an unreadable $node[…]")?;
        let r = r.strip_prefix(']').ok_or("an unreadable $node[…]")?;
        (
            name,
            r.strip_prefix(".json")
                .map(|r| (false, r))
                .ok_or("$node[…] other than .json")?,
        )
    } else if let Some(r) = src.strip_prefix("$(") {
        let (name, r) = quoted(r.trim_start()).ok_or("an unreadable $(…)")?;
        let r = r
            .trim_start()
            .strip_prefix(')')
            .ok_or("an unreadable $(…)")?;
        if let Some(r) = r.strip_prefix(".item.json") {
            (name, (false, r))
        } else if let Some(r) = r.strip_prefix(".first().json") {
            (name, (true, r))
        } else {
            return Err(format!(
                "$('{name}') read other than .item.json or .first().json"
            ));
        }
    } else {
        return Err("not a path from $json, $node or $()".into());
    };
    let (first, rest) = rest;
    let items = (scope.node)(&name)
        .ok_or_else(|| format!("node `{name}` is not an earlier step on this path"))?;
    Ok((single(items, first)?, rest))
}

/// The json of one item of `items` (`first`: `.first()`, else the paired item).
fn single(items: Items, first: bool) -> Result<Items, String> {
    match items {
        Items::Many(list) if first => Ok(Items::Single(format!("{list}[0]"))),
        Items::Many(_) => Err("the paired item of a list (Stockade has no item pairing)".into()),
        Items::Unknown => Err("items whose shape differs in Stockade".into()),
        other => Ok(other),
    }
}

/// A quoted JS string at the start: its text and what follows.
fn quoted(s: &str) -> Option<(String, &str)> {
    let q = s.chars().next().filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let body = &s[1..];
    let end = body.find(q)?;
    let name = &body[..end];
    (!name.contains('\\') && !name.contains("${")).then(|| (name.to_owned(), &body[end + 1..]))
}

fn accessors(mut s: &str) -> Option<Vec<Acc>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_end();
        if s.is_empty() {
            return Some(out);
        }
        if let Some(r) = s.strip_prefix('.') {
            let end = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(r.len());
            if end == 0 || r.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                return None;
            }
            out.push(Acc::Key(r[..end].to_owned()));
            s = &r[end..];
        } else if let Some(r) = s.strip_prefix('[') {
            let r = r.trim_start();
            if let Some((k, after)) = quoted(r) {
                out.push(Acc::Key(k));
                s = after.trim_start().strip_prefix(']')?;
            } else {
                let end = r.find(']')?;
                out.push(Acc::Index(r[..end].trim().parse().ok()?));
                s = &r[end + 1..];
            }
        } else {
            return None;
        }
    }
}

/// A parameter as JavaScript source (for a generated script): expressions verbatim.
pub fn js_value(v: &Value) -> String {
    match v {
        Value::String(s) => match s.strip_prefix('=') {
            None => json_literal(v),
            Some(t) => match parts(t) {
                Ok(ps) => match ps.as_slice() {
                    [(false, a), (true, e), (false, b)] if a.is_empty() && b.is_empty() => {
                        format!("({})", e.trim())
                    }
                    _ => {
                        let mut out = String::from("`");
                        for (is_expr, p) in ps {
                            if is_expr {
                                out.push_str(&format!("${{{}}}", p.trim()));
                            } else {
                                out.push_str(
                                    &p.replace('\\', "\\\\")
                                        .replace('`', "\\`")
                                        .replace("${", "\\${"),
                                );
                            }
                        }
                        out.push('`');
                        out
                    }
                },
                Err(_) => json_literal(&Value::String(t.to_owned())),
            },
        },
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(js_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{ {} }}",
            o.iter()
                .map(|(k, x)| format!(
                    "{}: {}",
                    json_literal(&Value::String(k.clone())),
                    js_value(x)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => json_literal(other),
    }
}

/// Whether any string inside `v` is an n8n expression.
pub fn has_n8n_expression(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with('='),
        Value::Array(a) => a.iter().any(has_n8n_expression),
        Value::Object(o) => o.values().any(has_n8n_expression),
        _ => false,
    }
}

/// The n8n node names a piece of JavaScript reads (`$('X')`, `$node["X"]`, `$items("X")`).
pub fn referenced_nodes(code: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for marker in ["$(", "$node[", "$items("] {
        let mut rest = code;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            if let Some((name, _)) = quoted(rest.trim_start())
                && !out.contains(&name)
            {
                out.push(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope_eval(input: Items, s: &str) -> Result<String, String> {
        let nodes = |n: &str| match n {
            "Fetch" => Some(Items::Many("steps.fetch.output.items".into())),
            "Call" => Some(Items::Single("steps.call.output.body".into())),
            _ => None,
        };
        text(
            s,
            &Scope {
                input: &input,
                node: &nodes,
            },
        )
    }

    #[test]
    fn exact_paths_translate_and_the_rest_is_refused() {
        let w = Items::Webhook;
        assert_eq!(
            scope_eval(w.clone(), "={{ $json.body.order_id }}").unwrap(),
            "{{ trigger.body.order_id }}"
        );
        assert_eq!(
            scope_eval(w.clone(), "=Order {{ $json[\"body\"]['sku code'][0] }}!").unwrap(),
            "Order {{ trigger.body[\"sku code\"][0] }}!"
        );
        assert_eq!(
            scope_eval(w.clone(), "={{ $node[\"Call\"].json.id }}").unwrap(),
            "{{ steps.call.output.body.id }}"
        );
        assert_eq!(
            scope_eval(w.clone(), "={{ $('Call').item.json.id }}").unwrap(),
            "{{ steps.call.output.body.id }}"
        );
        assert_eq!(
            scope_eval(w.clone(), "={{ $('Fetch').first().json.n }}").unwrap(),
            "{{ steps.fetch.output.items[0].n }}"
        );
        assert!(scope_eval(w.clone(), "={{ $('Fetch').item.json.n }}").is_err());
        assert!(scope_eval(w.clone(), "={{ $json.body.a + 1 }}").is_err());
        assert!(scope_eval(w.clone(), "={{ $json.body?.a }}").is_err());
        assert!(
            scope_eval(w.clone(), "={{ $env.TOKEN }}")
                .unwrap_err()
                .contains("environment")
        );
        assert!(scope_eval(w, "={{ $json.params.id }}").is_err());
        assert_eq!(scope_eval(Items::Unknown, "plain").unwrap(), "plain");
        assert!(scope_eval(Items::Unknown, "={{ $json.x }}").is_err());
    }

    #[test]
    fn javascript_keeps_expressions_verbatim() {
        assert_eq!(js_value(&json!("={{ $json.a * 2 }}")), "($json.a * 2)");
        assert_eq!(
            js_value(&json!("=n: {{ $json.a }} `x`")),
            "`n: ${$json.a} \\`x\\``"
        );
        assert_eq!(js_value(&json!({"k": 1})), "{ \"k\": 1 }");
        assert_eq!(
            referenced_nodes("$('A').all(); $node[\"B\"].json; $items('A')"),
            vec!["A", "B"]
        );
    }
}
