//! The NocoDB node → `nocodb.list|insert|update|delete`: the base URL from the caller
//! (`--nocodb-url`, since an export never holds the credential's URL) or a placeholder
//! host that fails lint until it is set; the API token as a named credential.

use serde_json::Value;

use crate::convert::{Cx, Draft};
use crate::expr::Items;
use crate::yaml::Y;

/// The placeholder base URL: its host is never declared, so lint fails until it is set.
pub const PLACEHOLDER_URL: &str = "https://nocodb-host.invalid";

fn table(n: &crate::model::Node) -> Option<String> {
    let t = n.param("table")?;
    t.as_str()
        .map(str::to_owned)
        .or_else(|| t.get("value").and_then(Value::as_str).map(str::to_owned))
}

pub fn nocodb(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let n = cx.node;
    let op = n.str_param("operation").unwrap_or("getAll").to_owned();
    let table = table(n).ok_or("a NocoDB node without a table")?;
    if n.param("version")
        .and_then(Value::as_u64)
        .is_some_and(|v| v < 3)
        || n.version < 2.0
    {
        cx.review("NocoDB API v1/v2 in n8n: Stockade's steps use table ids (API v2 data routes); check `table`");
    }
    let url = match &cx.env.nocodb_url {
        Some(u) => {
            if let Some((_, h)) = crate::nodes::http::literal_host(u) {
                cx.acc.hosts.insert(h);
            }
            u.clone()
        }
        None => {
            cx.review("the NocoDB base URL is in the n8n credential, not the export: replace the placeholder URL (or import with --nocodb-url) and declare its host");
            PLACEHOLDER_URL.to_owned()
        }
    };
    let (slot, cred_name) = n
        .credentials
        .first()
        .cloned()
        .unwrap_or(("nocoDbApiToken".into(), String::new()));
    let host = crate::nodes::http::literal_host(&url).map(|(_, h)| h);
    let cred = cx.credential(
        &cred_name,
        &slot,
        host.as_deref(),
        "the NocoDB API token (sent as xc-token)",
    );
    let mut with = vec![
        ("url", Y::s(url)),
        ("credential", Y::s(cred)),
        ("table", Y::s(table)),
    ];
    let (uses, out) = match op.as_str() {
        "getAll" | "get" => list(cx, &op, &mut with)?,
        "create" | "update" => rows(cx, &op, &mut with)?,
        "delete" => {
            let id = n.param("id").cloned().unwrap_or(Value::Null);
            let id = cx.value("id", &id);
            with.push(("ids", Y::Seq(vec![id])));
            ("nocodb.delete", Items::Unknown)
        }
        other => return Err(format!("NocoDB operation `{other}`")),
    };
    cx.out = out;
    Ok(vec![cx.step(uses, with)])
}

fn list(
    cx: &mut Cx<'_>,
    op: &str,
    with: &mut Vec<(&str, Y)>,
) -> Result<(&'static str, Items), String> {
    let n = cx.node;
    if op == "get" {
        let id = n.param("id").cloned().unwrap_or(Value::Null);
        let id = match crate::expr::value(&id, &cx.scope()) {
            Ok(Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(why) => return Err(format!("a NocoDB get whose row id is not exact: {why}")),
        };
        with.push(("where", Y::s(format!("(Id,eq,{id})"))));
        with.push(("limit", Y::Int(1)));
    } else {
        let opts = n.param("options").cloned().unwrap_or(Value::Null);
        for key in ["where", "fields"] {
            if let Some(v) = opts.get(key).filter(|v| !v.is_null()) {
                let y = cx.value(key, v);
                with.push((if key == "where" { "where" } else { "fields" }, y));
            }
        }
        if let Some(sort) = opts.pointer("/sort/property").and_then(Value::as_array) {
            let s: Vec<String> = sort
                .iter()
                .filter_map(|p| {
                    let f = p.get("field")?.as_str()?;
                    Some(
                        if p.get("direction").and_then(Value::as_str) == Some("desc") {
                            format!("-{f}")
                        } else {
                            f.to_owned()
                        },
                    )
                })
                .collect();
            if !s.is_empty() {
                with.push(("sort", Y::s(s.join(","))));
            }
        }
        if n.param("returnAll").and_then(Value::as_bool) == Some(true) {
            cx.review("returned all rows in n8n: nocodb.list returns one page (limit, offset); page through if needed");
        } else {
            with.push((
                "limit",
                Y::Int(n.param("limit").and_then(Value::as_i64).unwrap_or(50)),
            ));
        }
    }
    Ok((
        "nocodb.list",
        Items::Many(format!("steps.{}.output.rows", cx.id)),
    ))
}

fn rows(
    cx: &mut Cx<'_>,
    op: &str,
    with: &mut Vec<(&str, Y)>,
) -> Result<(&'static str, Items), String> {
    let n = cx.node;
    let uses = if op == "create" {
        "nocodb.insert"
    } else {
        "nocodb.update"
    };
    if n.str_param("dataToSend") == Some("autoMapInputData") {
        let list = crate::nodes::list_of(&cx.input)
            .ok_or("maps input items whose shape differs in Stockade")?;
        if n.str_param("inputsToIgnore")
            .is_some_and(|s| !s.trim().is_empty())
        {
            cx.review("ignored some input fields in n8n: all fields are sent now");
        }
        with.push(("rows", Y::s(format!("{{{{ {list} }}}}"))));
        cx.note("each input item becomes a row (sent in batches of at most 100)");
        return Ok((uses, Items::Unknown));
    }
    let fields = n
        .param("fieldsUi")
        .and_then(|f| f.get("fieldValues"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut row: Vec<(String, Y)> = Vec::new();
    if op == "update" {
        let id = n.param("id").cloned().unwrap_or(Value::Null);
        row.push(("Id".into(), cx.value("id", &id)));
    }
    for f in &fields {
        let Some(name) = f.get("fieldName").and_then(Value::as_str) else {
            continue;
        };
        if f.get("binaryData").and_then(Value::as_bool) == Some(true) {
            return Err("uploads binary data".into());
        }
        let v = f.get("fieldValue").cloned().unwrap_or(Value::Null);
        row.push((name.to_owned(), cx.value(&format!("fields.{name}"), &v)));
    }
    with.push(("rows", Y::Seq(vec![Y::Map(row)])));
    Ok((uses, Items::Unknown))
}
