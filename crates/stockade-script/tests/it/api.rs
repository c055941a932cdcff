//! The n8n Code node's data API and the shapes a script may return.

use serde_json::json;
use stockade_script::{Job, Mode, Pool};

use crate::{each, items, job, run};

#[test]
fn an_n8n_code_node_body_runs_unchanged() {
    // A typical "sum per channel" Code node, as exported from n8n.
    let code = r#"
const totals = {};
for (const item of $input.all()) {
  const channel = item.json.channel;
  totals[channel] = (totals[channel] || 0) + item.json.total;
}
return Object.keys(totals).map(channel => ({ json: { channel, total: totals[channel] } }));
"#;
    let input = json!([
        { "channel": "shopee", "total": 10.5 },
        { "channel": "lazada", "total": 3 },
        { "channel": "shopee", "total": 4.5 }
    ]);
    assert_eq!(
        items(code, input),
        vec![
            json!({"channel": "shopee", "total": 15}),
            json!({"channel": "lazada", "total": 3})
        ]
    );
}

#[test]
fn input_accessors_and_legacy_items() {
    let input = json!([{ "n": 1 }, { "n": 2 }, { "n": 3 }]);
    let code = "return { first: $input.first().json.n, last: $input.last().json.n, \
                item: $input.item.json.n, j: $json.n, count: items.length, \
                legacy: $items().length };";
    assert_eq!(
        items(code, input),
        vec![json!({"first": 1, "last": 3, "item": 1, "j": 1, "count": 3, "legacy": 3})]
    );
}

#[test]
fn an_object_input_is_one_item_and_null_is_none() {
    assert_eq!(
        items("return {n: $input.all().length}", json!({"a": 1})),
        vec![json!({"n": 1})]
    );
    assert_eq!(
        items("return {n: $input.all().length}", json!(null)),
        vec![json!({"n": 0})]
    );
}

#[test]
fn earlier_nodes_through_dollar_node_and_items() {
    let mut nodes = serde_json::Map::new();
    nodes.insert("Fetch Orders".into(), json!([{ "id": "a" }, { "id": "b" }]));
    nodes.insert("Config".into(), json!({ "threshold": 5 }));
    let code = r#"
return {
  all: $('Fetch Orders').all().map(i => i.json.id),
  first: $('Fetch Orders').first().json.id,
  last: $('Fetch Orders').last().json.id,
  item: $('Fetch Orders').item.json.id,
  legacy: $node["Config"].json.threshold,
  list: $items("Fetch Orders").length,
};"#;
    let out = Pool::new(1)
        .run(&Job {
            nodes,
            ..job(code, json!([]))
        })
        .map_err(|e| e.to_string());
    assert_eq!(
        out.map(|o| o.items),
        Ok(vec![
            json!({"all": ["a", "b"], "first": "a", "last": "b", "item": "a", "legacy": 5, "list": 2})
        ])
    );
}

#[test]
fn an_unknown_node_is_an_error_naming_it() {
    let err = crate::fails("return $('Nope').all();");
    assert!(err.message.contains("no node \"Nope\""), "{err}");
}

#[test]
fn return_shapes() {
    let input = json!([{ "a": 1 }]);
    assert_eq!(
        items("return [{json: {x: 1}}, {json: {x: 2}}]", input.clone()),
        vec![json!({"x": 1}), json!({"x": 2})]
    );
    assert_eq!(
        items("return [{x: 1}, {x: 2}]", input.clone()),
        vec![json!({"x": 1}), json!({"x": 2})]
    );
    assert_eq!(items("return {x: 1}", input.clone()), vec![json!({"x": 1})]);
    assert_eq!(
        items("return {json: {x: 1}}", input.clone()),
        vec![json!({"x": 1})]
    );
    assert_eq!(
        items("return []", input.clone()),
        Vec::<serde_json::Value>::new()
    );
    for bad in [
        "return 5",
        "return [1]",
        "return {json: 3}",
        "",
        "return null",
    ] {
        let err = crate::fails(bad);
        assert_eq!(
            err.kind,
            stockade_script::ScriptErrorKind::Thrown,
            "{bad}: {err}"
        );
    }
}

#[test]
fn await_works_because_promises_settle_at_once() {
    let code =
        "const v = await Promise.resolve(2); const w = await (async () => v * 3)(); return {w};";
    assert_eq!(items(code, json!([])), vec![json!({"w": 6})]);
    let err = crate::fails("await new Promise(() => {}); return {};");
    assert!(err.message.contains("never settles"), "{err}");
}

#[test]
fn each_item_mode_runs_the_body_per_item() {
    let input = json!([{ "qty": 2 }, { "qty": 5 }]);
    let out = each(
        "return { json: { double: $json.qty * 2, same: $input.item.json.qty } };",
        input.clone(),
    );
    assert_eq!(
        out.map(|o| o.items).map_err(|e| e.to_string()),
        Ok(vec![
            json!({"double": 4, "same": 2}),
            json!({"double": 10, "same": 5})
        ])
    );
    let plain = each("return { i: $itemIndex };", input.clone())
        .map(|o| o.items)
        .map_err(|e| e.to_string());
    assert_eq!(plain, Ok(vec![json!({"i": 0}), json!({"i": 1})]));
    let err = each("return [$json];", input)
        .err()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(err.contains("each_item"), "{err}");
    assert_eq!(Mode::parse("each_item"), Some(Mode::EachItem));
    assert_eq!(Mode::parse("x"), None);
}

#[test]
fn console_lines_are_captured_and_bounded() {
    let out = run(
        "console.log('hello', {a: 1}, 3); console.warn('careful'); console.error('bad'); return {};",
        json!([]),
    )
    .map_err(|e| e.to_string());
    assert_eq!(
        out.map(|o| o.logs),
        Ok(vec![
            "hello {\"a\":1} 3".to_owned(),
            "warn: careful".to_owned(),
            "error: bad".to_owned()
        ])
    );
    let out = run(
        "for (let i = 0; i < 1000; i++) console.log('x'.repeat(5000)); return {};",
        json!([]),
    )
    .map_err(|e| e.to_string());
    let logs = out.map(|o| o.logs).unwrap_or_default();
    assert_eq!(logs.len(), 101);
    assert!(logs[0].chars().count() <= 1001);
    assert_eq!(logs[100], "(900 more console lines dropped)");
}

#[test]
fn a_script_may_shadow_the_api_names() {
    let code =
        "const items = $input.all().map(i => i.json.a); let $json = 3; return {items, $json};";
    assert_eq!(
        items(code, json!([{ "a": 7 }])),
        vec![json!({"items": [7], "$json": 3})]
    );
}
