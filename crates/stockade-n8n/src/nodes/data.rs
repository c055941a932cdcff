//! Set / Edit Fields and Merge → generated `script` steps.
//!
//! Edit Fields becomes a short script setting the fields on each item, each value the
//! node's own expression (JavaScript, verbatim) or literal; Merge's common modes
//! (append, combine by position, combine by matching fields, choose a branch) become a
//! script over `$('Input 1').all()` and `$('Input 2').all()`. The generated code says
//! which node it came from; other Merge modes are unsupported.

use serde_json::Value;

use crate::convert::{Cx, Draft};
use crate::expr::Items;
use crate::yaml::Y;

/// n8n globals a generated script has: anything else in an expression needs review.
const KNOWN_GLOBALS: &[&str] = &["$json", "$input", "$node", "$items", "$("];

fn unknown_globals(js: &str) -> Option<String> {
    let mut rest = js;
    while let Some(i) = rest.find('$') {
        let tail = &rest[i..];
        if !KNOWN_GLOBALS.iter().any(|g| tail.starts_with(g)) && !tail.starts_with("${") {
            let name: String = tail
                .chars()
                .take_while(|c| *c == '$' || c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            return Some(name);
        }
        rest = &rest[i + 1..];
    }
    None
}

/// One field: name, type (`string`, `number`, `boolean`, `array`, `object`, `any`), value.
fn fields(n: &crate::model::Node) -> Vec<(String, String, Value)> {
    if let Some(list) = n
        .param("assignments")
        .and_then(|a| a.get("assignments"))
        .and_then(Value::as_array)
    {
        return list
            .iter()
            .filter_map(|a| {
                Some((
                    a.get("name")?.as_str()?.to_owned(),
                    a.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .to_owned(),
                    a.get("value").cloned().unwrap_or(Value::Null),
                ))
            })
            .collect();
    }
    if let Some(list) = n
        .param("fields")
        .and_then(|a| a.get("values"))
        .and_then(Value::as_array)
    {
        return list
            .iter()
            .filter_map(|a| {
                let kind = a
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("stringValue");
                Some((
                    a.get("name")?.as_str()?.to_owned(),
                    kind.trim_end_matches("Value").to_owned(),
                    a.get(kind).cloned().unwrap_or(Value::Null),
                ))
            })
            .collect();
    }
    let mut out = Vec::new();
    for kind in ["string", "number", "boolean"] {
        for a in n
            .param("values")
            .and_then(|v| v.get(kind))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(name) = a.get("name").and_then(Value::as_str) {
                out.push((
                    name.to_owned(),
                    kind.to_owned(),
                    a.get("value").cloned().unwrap_or(Value::Null),
                ));
            }
        }
    }
    out
}

fn typed_js(kind: &str, v: &Value) -> String {
    let js = crate::expr::js_value(v);
    match kind {
        "number" => format!("Number({js})"),
        "boolean" => format!("(((v) => v === true || v === \"true\")({js}))"),
        "string" => format!("String({js})"),
        "array" | "object" if v.as_str().is_some_and(|s| !s.starts_with('=')) => {
            format!("JSON.parse({js})")
        }
        _ => js,
    }
}

pub fn set(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let n = cx.node;
    let raw = n.str_param("mode") == Some("raw");
    let keep = if n.version >= 3.3 {
        n.param("includeOtherFields")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    } else if n.version >= 3.0 {
        n.str_param("include").unwrap_or("all") == "all"
    } else {
        !n.param("keepOnlySet")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    if n.version >= 3.0
        && n.str_param("include")
            .is_some_and(|i| i == "selected" || i == "except")
    {
        cx.review("keeps only selected input fields: the script keeps all or none; check it");
    }
    let dots = n
        .param("options")
        .and_then(|o| o.get("dotNotation"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut body = String::new();
    if raw {
        let json = n.param("jsonOutput").cloned().unwrap_or(Value::Null);
        let js = match json.as_str() {
            Some(t) if t.starts_with('=') => {
                format!("({})", t[1..].replace("{{", "${").replace("}}", "}"))
            }
            Some(t) => t.to_owned(),
            None => "{}".to_owned(),
        };
        if json.as_str().is_some_and(|t| t.starts_with('=')) {
            cx.review("raw JSON output built from expressions: check the generated object");
        }
        body.push_str(&format!("  Object.assign(out, {js});\n"));
    } else {
        for (name, kind, value) in fields(n) {
            let path = if dots {
                name.split('.').map(str::to_owned).collect::<Vec<_>>()
            } else {
                vec![name.clone()]
            };
            let path_js = serde_json::to_string(&path).unwrap_or_else(|_| "[]".into());
            body.push_str(&format!(
                "  put(out, {path_js}, {});\n",
                typed_js(&kind, &value)
            ));
        }
    }
    if let Some(g) = unknown_globals(&body) {
        cx.review(format!(
            "an expression uses `{g}`, which scripts do not provide"
        ));
    }
    if crate::expr::reads_env(&body) {
        cx.review("an expression reads an environment variable ($env): Stockade has none");
    }
    let code = format!(
        "// Generated from the n8n Edit Fields node {name:?}: sets its fields on each item.\nconst put = (o, path, v) => {{\n  let t = o;\n  for (const k of path.slice(0, -1)) t = t[k] = (t[k] && typeof t[k] === \"object\") ? t[k] : {{}};\n  t[path[path.length - 1]] = v;\n}};\nreturn $input.all().map((item) => {{\n  const $json = item.json;\n  const out = {start};\n{body}  return {{ json: out }};\n}});\n",
        name = n.name,
        start = if keep { "{ ...$json }" } else { "{}" }
    );
    let mut with = vec![("code", Y::s(code.clone()))];
    match Cx::items_expr(&cx.input) {
        Some(i) => with.push(("input", Y::s(i))),
        None => cx.review("its input items are shaped differently in Stockade: check `input`"),
    }
    if let Some(map) = crate::nodes::code::nodes_map(cx, &code) {
        with.push(("nodes", map));
    }
    cx.out = Items::Many(format!("steps.{}.output.items", cx.id));
    Ok(vec![cx.step("script", with)])
}

pub fn merge(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let n = cx.node;
    let mode = n.str_param("mode").unwrap_or("append").to_owned();
    let combine_by = n
        .str_param("combineBy")
        .unwrap_or("combineByFields")
        .to_owned();
    let kind = match (mode.as_str(), combine_by.as_str()) {
        ("append", _) => "append",
        ("mergeByIndex" | "mergeByPosition", _) | ("combine", "combineByPosition") => "position",
        ("mergeByFields", _) | ("combine", "combineByFields") => "fields",
        ("chooseBranch" | "passThrough", _) => "choose",
        (m, c) => {
            return Err(format!(
                "Merge mode `{m}`{}",
                if m == "combine" {
                    format!(" by `{c}`")
                } else {
                    String::new()
                }
            ));
        }
    };
    let inputs: Vec<&(usize, String, Items)> = cx.preds.iter().collect();
    let name_of = |i: usize| inputs.iter().find(|p| p.0 == i).map(|p| p.1.clone());
    let (Some(a), b) = (name_of(0), name_of(1)) else {
        return Err("a Merge whose first input is not connected".into());
    };
    let b = b.unwrap_or_else(|| a.clone());
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let code = match kind {
        "append" => format!("return [...$({}).all(), ...$({}).all()];", q(&a), q(&b)),
        "position" => {
            if n.param("options")
                .and_then(|o| o.get("includeUnpaired"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                cx.review("includes unpaired items: the script stops at the shorter input");
            }
            format!(
                "const a = $({}).all(), b = $({}).all();\nconst n = Math.min(a.length, b.length);\nreturn Array.from({{ length: n }}, (_, i) => ({{ json: {{ ...a[i].json, ...b[i].json }} }}));",
                q(&a),
                q(&b)
            )
        }
        "fields" => {
            let join = n.str_param("joinMode").unwrap_or("keepMatches");
            if join != "keepMatches" {
                return Err(format!("Merge join mode `{join}`"));
            }
            let (f1, f2) = match_fields(n).ok_or("a Merge by fields without fields")?;
            format!(
                "const a = $({}).all(), b = $({}).all();\nconst out = [];\nfor (const x of a) for (const y of b) if (x.json[{}] == y.json[{}]) out.push({{ json: {{ ...x.json, ...y.json }} }});\nreturn out;",
                q(&a),
                q(&b),
                q(&f1),
                q(&f2)
            )
        }
        _ => {
            let pick = if n.str_param("output").unwrap_or("input1") == "input2"
                || n.str_param("chooseBranch") == Some("input2")
            {
                &b
            } else {
                &a
            };
            format!("return $({}).all();", q(pick))
        }
    };
    let code = format!(
        "// Generated from the n8n Merge node {:?} (mode {mode}).\n{code}\n",
        n.name
    );
    let mut with = vec![("code", Y::s(code.clone()))];
    if let Some(map) = crate::nodes::code::nodes_map(cx, &code) {
        with.push(("nodes", map));
    }
    cx.out = Items::Many(format!("steps.{}.output.items", cx.id));
    Ok(vec![cx.step("script", with)])
}

fn match_fields(n: &crate::model::Node) -> Option<(String, String)> {
    if let Some(s) = n.str_param("fieldsToMatchString") {
        let f = s.split(',').next()?.trim().to_owned();
        return Some((f.clone(), f));
    }
    let v = n
        .param("mergeByFields")
        .or_else(|| n.param("fieldsToMatch"))
        .and_then(|m| m.get("values"))
        .and_then(Value::as_array)?
        .first()?
        .clone();
    Some((
        v.get("field1")?.as_str()?.to_owned(),
        v.get("field2")?.as_str()?.to_owned(),
    ))
}
