//! Code, Function and Function Item nodes → `script`, the JavaScript kept verbatim;
//! `nodes:` maps each node the code reads (`$('X')`, `$node["X"]`, `$items("X")`) to
//! that step's items. What a sandbox without I/O cannot do (`require`, `fetch`, HTTP
//! helpers, `$env`) is reported for review (the script linter reports it too).

use crate::convert::Cx;
use crate::expr::Items;
use crate::yaml::Y;

/// What in a script needs a human, with why.
const RISKS: &[(&str, &str)] = &[
    ("require(", "uses `require`: scripts load no modules"),
    ("import(", "uses `import()`: scripts load no modules"),
    (
        "fetch(",
        "uses `fetch`: scripts have no network; move the call to an http.request step",
    ),
    (
        "helpers.httpRequest",
        "uses this.helpers.httpRequest: scripts have no network; use an http.request step",
    ),
    (
        "helpers.request",
        "uses this.helpers.request: scripts have no network; use an http.request step",
    ),
    (
        "$env",
        "reads $env: Stockade workflows have no environment variables; use a credential or a literal",
    ),
    (
        "process.env",
        "reads process.env: Stockade workflows have no environment variables",
    ),
    (
        "getWorkflowStaticData",
        "uses workflow static data: scripts keep no state between runs",
    ),
    ("$execution", "uses $execution: not provided to scripts"),
    (
        "$now",
        "uses $now: not provided to scripts (use `new Date()`)",
    ),
    (
        "DateTime.",
        "uses Luxon's DateTime: not provided to scripts",
    ),
    (
        "getBinaryData",
        "uses binary data: not carried by Stockade steps",
    ),
];

pub fn code(cx: &mut Cx<'_>) -> Result<Vec<crate::convert::Draft>, String> {
    let kind = cx.node.short_kind().to_owned();
    let language = cx.node.str_param("language").unwrap_or("javaScript");
    if kind == "code" && language != "javaScript" {
        return Err(format!(
            "a {language} Code node: Stockade scripts are JavaScript"
        ));
    }
    let key = if kind == "code" {
        "jsCode"
    } else {
        "functionCode"
    };
    let code = cx.node.str_param(key).unwrap_or("").to_owned();
    if code.trim().is_empty() {
        return Err("a Code node without code".into());
    }
    for (needle, why) in RISKS {
        if code.contains(needle) {
            cx.review(*why);
        }
    }
    if kind == "functionItem" {
        cx.review("a legacy Function Item node: its body reads `item`; check it runs as a script once per item ($json)");
    }
    if kind == "code" && cx.node.str_param("mode") == Some("runOnceForEachItem") {
        cx.note("runs once for each item (in a for_each when there are several)");
    }
    let mut with = vec![
        ("language", Y::s("javascript")),
        ("code", Y::s(code.clone())),
    ];
    match Cx::items_expr(&cx.input) {
        Some(input) => with.push(("input", Y::s(input))),
        None if !cx.preds.is_empty() => cx.review(
            "its input items come from a step whose output n8n shapes differently: check `input`",
        ),
        None => {}
    }
    if let Some(map) = nodes_map(cx, &code) {
        with.push(("nodes", map));
    }
    cx.out = Items::Many(format!("steps.{}.output.items", cx.id));
    Ok(vec![cx.step("script", with)])
}

/// `nodes:` for the node names `js` reads, each mapped to its items (reviewed when not
/// readable from here).
pub fn nodes_map(cx: &mut Cx<'_>, js: &str) -> Option<Y> {
    let mut entries: Vec<(String, Y)> = Vec::new();
    for name in crate::expr::referenced_nodes(js) {
        let items = (cx.visible)(&name);
        match items.as_ref().and_then(Cx::items_expr) {
            Some(e) => entries.push((name, Y::s(e))),
            None if cx.w.index(&name).is_none() => cx.review(format!("reads node {name:?}, which is not in the workflow")),
            None => cx.review(format!("reads node {name:?}, whose items are not readable here (another branch, later, or shaped differently)")),
        }
    }
    (!entries.is_empty()).then_some(Y::Map(entries))
}
