//! Flow control: IF / Filter (v1 conditions and v2 filter format) → `if`, Switch (rules
//! and expression modes) → `switch`, Wait → `wait`, Split In Batches / Loop Over Items →
//! `for_each`, Execute Workflow → `workflow.call`, Respond to Webhook → the webhook's
//! `respond: result` and a final step output, Stop and Error → `fail`.
//!
//! A condition is written as a Stockade expression when every operand and operator
//! translates exactly; otherwise the same condition in JavaScript (operands verbatim)
//! is computed by a generated script and the node is marked for review.

use serde_json::Value;

use crate::convert::{Branch, Cx, Draft};
use crate::expr::{self, Items};
use crate::yaml::Y;

/// n8n operation names → (minijinja template, JavaScript template) over `{l}` / `{r}`.
const OPS: &[(&[&str], Option<&str>, &str)] = &[
    (
        &["equals", "equal", "isEqual"],
        Some("({l}) == ({r})"),
        "({l}) === ({r})",
    ),
    (
        &["notEquals", "notEqual", "isNotEqual"],
        Some("({l}) != ({r})"),
        "({l}) !== ({r})",
    ),
    (
        &["gt", "larger", "after"],
        Some("({l}) > ({r})"),
        "({l}) > ({r})",
    ),
    (
        &["gte", "largerEqual", "afterOrEquals"],
        Some("({l}) >= ({r})"),
        "({l}) >= ({r})",
    ),
    (
        &["lt", "smaller", "before"],
        Some("({l}) < ({r})"),
        "({l}) < ({r})",
    ),
    (
        &["lte", "smallerEqual", "beforeOrEquals"],
        Some("({l}) <= ({r})"),
        "({l}) <= ({r})",
    ),
    (&["contains"], Some("({r}) in ({l})"), "({l}).includes({r})"),
    (
        &["notContains"],
        Some("({r}) not in ({l})"),
        "!({l}).includes({r})",
    ),
    (
        &["startsWith"],
        Some("({l}) is startingwith({r})"),
        "String({l}).startsWith({r})",
    ),
    (
        &["notStartsWith"],
        Some("not (({l}) is startingwith({r}))"),
        "!String({l}).startsWith({r})",
    ),
    (
        &["endsWith"],
        Some("({l}) is endingwith({r})"),
        "String({l}).endsWith({r})",
    ),
    (
        &["notEndsWith"],
        Some("not (({l}) is endingwith({r}))"),
        "!String({l}).endsWith({r})",
    ),
    (&["exists"], Some("({l}) is defined"), "({l}) !== undefined"),
    (
        &["notExists"],
        Some("({l}) is not defined"),
        "({l}) === undefined",
    ),
    (
        &["empty", "isEmpty"],
        Some("(({l}) | length) == 0"),
        "(({l}) == null || ({l}).length === 0)",
    ),
    (
        &["notEmpty", "isNotEmpty"],
        Some("(({l}) | length) > 0"),
        "(({l}) != null && ({l}).length > 0)",
    ),
    (&["true"], Some("({l}) == true"), "({l}) === true"),
    (&["false"], Some("({l}) == false"), "({l}) === false"),
    (&["regex"], None, "new RegExp({r}).test({l})"),
    (&["notRegex"], None, "!new RegExp({r}).test({l})"),
];

/// One condition: operation, type, left and right operand.
struct Cond {
    op: String,
    kind: String,
    left: Value,
    right: Value,
}

fn typed(v: &Value, kind: &str) -> Value {
    match (kind, v) {
        ("number", Value::String(s)) if !s.starts_with('=') => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(v.clone(), |n| {
                if n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 1e15)
                {
                    Value::from(n.as_f64().unwrap_or(0.0) as i64)
                } else {
                    Value::Number(n)
                }
            }),
        _ => v.clone(),
    }
}

/// A whole condition list as (exact Stockade expression | JavaScript and why not).
fn combine(
    cx: &Cx<'_>,
    conds: &[Cond],
    all: bool,
    ignore_case: bool,
) -> Result<String, (String, String)> {
    let mut jinja: Vec<String> = Vec::new();
    let mut js: Vec<String> = Vec::new();
    let mut why: Option<String> = None;
    for c in conds {
        let Some((_, jt, jst)) = OPS
            .iter()
            .find(|(names, _, _)| names.contains(&c.op.as_str()))
        else {
            why.get_or_insert(format!("operation `{}`", c.op));
            js.push("false /* unknown operation */".into());
            continue;
        };
        let (l, r) = (typed(&c.left, &c.kind), typed(&c.right, &c.kind));
        js.push(
            jst.replace("{l}", &expr::js_value(&l))
                .replace("{r}", &expr::js_value(&r)),
        );
        if c.kind == "dateTime" {
            why.get_or_insert("a date comparison (n8n compares as dates, Stockade as text)".into());
            continue;
        }
        let scope = cx.scope();
        let lo = expr::operand(&l, &scope);
        let needs_right = jst.contains("{r}");
        let ro = if needs_right {
            expr::operand(&r, &scope)
        } else {
            Ok(String::new())
        };
        match (jt, lo, ro) {
            (Some(t), Ok(mut lo), Ok(mut ro)) => {
                if ignore_case && c.kind == "string" {
                    lo = format!("({lo}) | lower");
                    ro = format!("({ro}) | lower");
                }
                jinja.push(t.replace("{l}", &lo).replace("{r}", &ro));
            }
            (None, _, _) => {
                why.get_or_insert(format!("operation `{}` (regular expressions differ)", c.op));
            }
            (_, Err(e), _) | (_, _, Err(e)) => {
                why.get_or_insert(e);
            }
        }
    }
    let (jop, jsop) = if all {
        (" and ", " && ")
    } else {
        (" or ", " || ")
    };
    let js = if js.is_empty() {
        "true".into()
    } else {
        js.join(jsop)
    };
    match why {
        None if !jinja.is_empty() => Ok(jinja.join(jop)),
        None => Err((js, "no condition".into())),
        Some(w) => Err((js, w)),
    }
}

/// The conditions of an IF node (either format), all/any, ignore-case.
fn if_conditions(n: &crate::model::Node, conditions: Option<&Value>) -> (Vec<Cond>, bool, bool) {
    let c = conditions.cloned().unwrap_or(Value::Null);
    if let Some(list) = c.get("conditions").and_then(Value::as_array) {
        let conds = list
            .iter()
            .map(|x| Cond {
                op: x
                    .pointer("/operator/operation")
                    .and_then(Value::as_str)
                    .unwrap_or("equals")
                    .to_owned(),
                kind: x
                    .pointer("/operator/type")
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .to_owned(),
                left: x.get("leftValue").cloned().unwrap_or(Value::Null),
                right: x.get("rightValue").cloned().unwrap_or(Value::Null),
            })
            .collect();
        let all = c.get("combinator").and_then(Value::as_str) != Some("or");
        let ignore = c.pointer("/options/caseSensitive").and_then(Value::as_bool) == Some(false)
            || n.param("options")
                .and_then(|o| o.get("ignoreCase"))
                .and_then(Value::as_bool)
                == Some(true);
        return (conds, all, ignore);
    }
    let mut conds = Vec::new();
    for kind in ["boolean", "number", "string", "dateTime"] {
        for x in c
            .get(kind)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            conds.push(Cond {
                op: x
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("equal")
                    .to_owned(),
                kind: kind.to_owned(),
                left: x.get("value1").cloned().unwrap_or(Value::Null),
                right: x.get("value2").cloned().unwrap_or(match kind {
                    "boolean" => Value::Bool(false),
                    "number" => Value::from(0),
                    _ => Value::String(String::new()),
                }),
            });
        }
    }
    let all = n.str_param("combineOperation") != Some("any");
    (conds, all, false)
}

fn condition_text(cx: &mut Cx<'_>, conds: &[Cond], all: bool, ignore: bool) -> String {
    match combine(cx, conds, all, ignore) {
        Ok(e) => e,
        Err((js, why)) => {
            match cx.computed("condition", &Value::String(format!("={{{{ {js} }}}}")), why) {
                Y::Str(s) => s,
                _ => "false".into(),
            }
        }
    }
}

pub fn if_node(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let (conds, all, ignore) = if_conditions(cx.node, cx.node.param("conditions"));
    let condition = condition_text(cx, &conds, all, ignore);
    let mut d = cx.step("if", vec![("condition", Y::s(condition))]);
    d.owner = Some(cx.index);
    d.branches = if cx.node.short_kind() == "filter" {
        vec![Branch::Then(0)]
    } else {
        vec![Branch::Then(0), Branch::Else(1)]
    };
    if cx.node.short_kind() == "filter" {
        cx.note("a Filter: the steps after it run only when the item passes");
    }
    cx.out = cx.input.clone();
    Ok(vec![d])
}

pub fn switch(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let outputs = crate::graph::switch_outputs(cx.node);
    let mode = cx.node.str_param("mode").unwrap_or("rules").to_owned();
    let (value, fallback) = if mode == "expression" {
        let out = cx.node.param("output").cloned().unwrap_or(Value::Null);
        let v = match expr::operand(&out, &cx.scope()) {
            Ok(e) => format!("{{{{ ({e}) | string }}}}"),
            Err(why) => match cx.computed("output", &out, why) {
                Y::Str(s) => s.replace(" }}", " | string }}"),
                _ => String::new(),
            },
        };
        (v, None)
    } else {
        switch_rules(cx)?
    };
    let mut d = cx.step("switch", vec![("value", Y::s(value))]);
    d.owner = Some(cx.index);
    d.branches = (0..outputs)
        .filter(|o| Some(*o) != fallback)
        .map(|o| Branch::Case(o.to_string(), o))
        .collect();
    d.branches.push(Branch::Default(fallback));
    cx.note("cases are named by n8n's output numbers (0, 1, …)");
    cx.out = cx.input.clone();
    Ok(vec![d])
}

/// Rules mode: a chain `"0" if c0 else "1" if c1 else "none"` and the fallback output.
fn switch_rules(cx: &mut Cx<'_>) -> Result<(String, Option<usize>), String> {
    let mut rules: Vec<(Vec<Cond>, bool, bool, usize)> = Vec::new();
    let mut fallback = None;
    if cx.node.version >= 3.0 {
        let list = cx
            .node
            .param("rules")
            .and_then(|r| r.get("values"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, r) in list.iter().enumerate() {
            let (conds, all, ignore) = if_conditions(cx.node, r.get("conditions"));
            rules.push((conds, all, ignore, i));
        }
        match cx
            .node
            .param("options")
            .and_then(|o| o.get("fallbackOutput"))
        {
            Some(Value::String(s)) if s == "extra" => fallback = Some(list.len()),
            Some(Value::Number(n)) => fallback = n.as_u64().map(|n| n as usize),
            _ => {}
        }
        if cx
            .node
            .param("options")
            .and_then(|o| o.get("allMatchingOutputs"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            cx.review("sent items to all matching outputs: a switch takes the first match only");
        }
    } else {
        let kind = cx.node.str_param("dataType").unwrap_or("number").to_owned();
        let left = cx.node.param("value1").cloned().unwrap_or(Value::Null);
        let list = cx
            .node
            .param("rules")
            .and_then(|r| r.get("rules"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in &list {
            let cond = Cond {
                op: r
                    .get("operation")
                    .and_then(Value::as_str)
                    .unwrap_or("equal")
                    .to_owned(),
                kind: kind.clone(),
                left: left.clone(),
                right: r.get("value2").cloned().unwrap_or(Value::Null),
            };
            let out = r.get("output").and_then(Value::as_u64).unwrap_or(0) as usize;
            rules.push((vec![cond], true, false, out));
        }
        fallback = cx
            .node
            .param("fallbackOutput")
            .and_then(Value::as_i64)
            .filter(|f| *f >= 0)
            .map(|f| f as usize);
    }
    if rules.is_empty() {
        return Err("a Switch without rules".into());
    }
    let mut jinja = Vec::new();
    let mut js = Vec::new();
    let mut why = None;
    for (conds, all, ignore, out) in &rules {
        match combine(cx, conds, *all, *ignore) {
            Ok(e) => jinja.push(format!("\"{out}\" if ({e}) else ")),
            Err((_, w)) => {
                why.get_or_insert(w);
            }
        }
        js.push((out, js_of(conds, *all)));
    }
    let none = fallback.map_or("none".to_owned(), |f| f.to_string());
    let value = match why {
        None => format!("{{{{ {}\"{none}\" }}}}", jinja.concat()),
        Some(w) => {
            let chain: String = js
                .iter()
                .map(|(o, j)| format!("({j}) ? \"{o}\" : "))
                .collect();
            match cx.computed(
                "value",
                &Value::String(format!("={{{{ {chain}\"{none}\" }}}}")),
                w,
            ) {
                Y::Str(s) => s,
                _ => String::new(),
            }
        }
    };
    Ok((value, fallback))
}

fn js_of(conds: &[Cond], all: bool) -> String {
    let parts: Vec<String> = conds
        .iter()
        .map(|c| {
            let t = OPS
                .iter()
                .find(|(n, _, _)| n.contains(&c.op.as_str()))
                .map_or("false", |o| o.2);
            t.replace("{l}", &expr::js_value(&typed(&c.left, &c.kind)))
                .replace("{r}", &expr::js_value(&typed(&c.right, &c.kind)))
        })
        .collect();
    parts.join(if all { " && " } else { " || " })
}

pub fn wait(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let resume = cx
        .node
        .str_param("resume")
        .unwrap_or("timeInterval")
        .to_owned();
    cx.out = cx.input.clone();
    match resume.as_str() {
        "timeInterval" => {
            let amount = cx
                .node
                .param("amount")
                .and_then(Value::as_f64)
                .unwrap_or(1.0)
                .max(0.0);
            let unit = cx.node.str_param("unit").unwrap_or("hours");
            let secs = match unit {
                "seconds" => amount,
                "minutes" => amount * 60.0,
                "days" => amount * 86_400.0,
                _ => amount * 3_600.0,
            };
            let ms = (secs * 1000.0).round() as u64;
            Ok(vec![cx.step(
                "wait",
                vec![("duration", Y::s(crate::nodes::iso_ms(ms.max(1))))],
            )])
        }
        "specificTime" => {
            let until = cx.node.param("dateTime").cloned().unwrap_or(Value::Null);
            let v = cx.value("until", &until);
            Ok(vec![cx.step("wait", vec![("until", v)])])
        }
        other => Err(format!(
            "waiting for `{other}` (a webhook call or a form) has no Stockade equivalent yet"
        )),
    }
}

pub fn loop_node(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let Some(list) = crate::nodes::list_of(&cx.input) else {
        return Err("loops over items whose shape differs in Stockade".into());
    };
    let size = cx
        .node
        .param("batchSize")
        .and_then(Value::as_u64)
        .unwrap_or(if cx.node.version >= 3.0 { 1 } else { 10 });
    if size != 1 {
        cx.review(format!(
            "n8n took batches of {size} items; the for_each takes one item at a time"
        ));
    }
    if cx.node.version < 3.0 {
        cx.review("a Split In Batches v1/v2 loop: its body is output 0 and its end was an IF on noItemsLeft; check the loop");
    }
    let mut d = cx.step(
        "for_each",
        vec![
            ("items", Y::s(format!("{{{{ {list} }}}}"))),
            ("max_items", Y::Int(1000)),
        ],
    );
    d.owner = Some(cx.index);
    let body = match crate::graph::branch_outputs(cx.node) {
        crate::graph::Branching::Loop { body, .. } => body,
        _ => 1,
    };
    d.branches = vec![Branch::Body(body)];
    cx.out = cx.input.clone();
    Ok(vec![d])
}

pub fn call(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    if cx.node.str_param("source").is_some_and(|s| s != "database") {
        return Err("runs a workflow given as a parameter or a file, not a stored one".into());
    }
    let p = cx.node.param("workflowId").cloned().unwrap_or(Value::Null);
    let id = p.as_str().map(str::to_owned).or_else(|| {
        p.get("value").and_then(|v| {
            v.as_str()
                .map(str::to_owned)
                .or_else(|| v.as_i64().map(|i| i.to_string()))
        })
    });
    let id = id
        .map(|i| i.trim_start_matches('=').to_owned())
        .unwrap_or_default();
    let target = match cx.env.by_id.get(&id) {
        Some(n) => n.clone(),
        None => {
            let cached = p
                .get("cachedResultName")
                .and_then(Value::as_str)
                .map(|n| crate::slug(n, '-'));
            cx.review(format!(
                "calls n8n workflow {id}, not in this export: import it too and check the name"
            ));
            cached
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| format!("n8n-workflow-{}", crate::slug(&id, '-')))
        }
    };
    let mut with = vec![("workflow", Y::s(target))];
    if cx.env.subworkflows.contains(&id) {
        match crate::nodes::list_of(&cx.input) {
            Some(l) => with.push((
                "inputs",
                Y::map(vec![("items", Y::s(format!("{{{{ {l} }}}}")))]),
            )),
            None => cx.review(
                "the items passed to the sub-workflow are shaped differently: check `inputs.items`",
            ),
        }
    }
    if cx
        .node
        .param("options")
        .and_then(|o| o.get("waitForSubWorkflow"))
        .and_then(Value::as_bool)
        == Some(false)
    {
        cx.review("n8n did not wait for the sub-workflow; workflow.call does");
    }
    cx.out = Items::Unknown;
    Ok(vec![cx.step("workflow.call", with)])
}

pub fn respond(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let with_kind = cx
        .node
        .str_param("respondWith")
        .unwrap_or("firstIncomingItem")
        .to_owned();
    cx.acc.respond_result = true;
    cx.review("Respond to Webhook: the webhook now answers 200 {execution, status, output} where output is this step's {items: [...], logs}, within 10 s; n8n's response code and headers options are not sent");
    let (code, input) = match with_kind.as_str() {
        "firstIncomingItem" => (
            "return [$input.first()];",
            Cx::items_expr(&cx.input).map(Y::s),
        ),
        "allIncomingItems" => ("return $input.all();", Cx::items_expr(&cx.input).map(Y::s)),
        "json" => {
            let body = cx
                .node
                .param("responseBody")
                .cloned()
                .unwrap_or(Value::Null);
            let parsed = match &body {
                Value::String(s) => serde_json::from_str::<Value>(s.trim_start_matches('='))
                    .ok()
                    .map(mark)
                    .unwrap_or(body.clone()),
                other => other.clone(),
            };
            (
                // n8n parses a body given as JSON text (`{{ JSON.stringify(…) }}`).
                "return $input.all().map((i) => ({ json: typeof i.json === 'string' ? JSON.parse(i.json) : i.json }));",
                Some(cx.value("responseBody", &parsed)),
            )
        }
        "text" => {
            let body = cx
                .node
                .param("responseBody")
                .cloned()
                .unwrap_or(Value::Null);
            let t = cx.value("responseBody", &body);
            ("return $input.all();", Some(Y::map(vec![("text", t)])))
        }
        "noData" => {
            cx.out = cx.input.clone();
            cx.note("responds with no data: the answer carries the last step's output");
            return Ok(Vec::new());
        }
        other => return Err(format!("responds with `{other}`")),
    };
    let mut with = vec![(
        "code",
        Y::s(format!(
            "// Respond to Webhook {:?}: the body of the answer.\n{code}",
            cx.node.name
        )),
    )];
    if let Some(i) = input {
        with.push(("input", i));
    }
    cx.out = Items::Many(format!("steps.{}.output.items", cx.id));
    Ok(vec![cx.step("script", with)])
}

fn mark(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains("{{") => Value::String(format!("={s}")),
        Value::Array(a) => Value::Array(a.into_iter().map(mark).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, mark(v))).collect()),
        other => other,
    }
}

pub fn stop(cx: &mut Cx<'_>) -> Result<Vec<Draft>, String> {
    let message = match cx.node.param("errorMessage") {
        Some(m) => cx.value("message", &m.clone()),
        None => {
            cx.review("stops with an error object: the message is a fixed text now");
            Y::s(format!("{} stopped the workflow", cx.node.name))
        }
    };
    cx.out = Items::Unknown;
    Ok(vec![cx.step("fail", vec![("message", message)])])
}
