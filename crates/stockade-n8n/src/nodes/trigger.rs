//! Trigger nodes: Webhook, Schedule Trigger (each `rule.interval` form → cron, the
//! workflow's `settings.timezone` kept), the legacy Cron and Interval nodes, Manual
//! Trigger / Start, Error Trigger (→ `workflow.failed`) and Execute Workflow Trigger
//! (→ manual with `inputs.items`).

use serde_json::Value;

use crate::convert::Cx;
use crate::expr::Items;
use crate::yaml::Y;

/// Whether a node starts executions.
pub fn is_trigger(n: &crate::model::Node) -> bool {
    let k = n.short_kind();
    k.ends_with("Trigger") || matches!(k, "webhook" | "cron" | "interval" | "start")
}

/// Set the workflow's trigger from this node.
pub fn convert(cx: &mut Cx<'_>) -> Result<(), String> {
    let trigger = match cx.node.short_kind() {
        "webhook" => webhook(cx)?,
        "scheduleTrigger" => {
            let cron = schedule(cx)?;
            scheduled(cx, cron)
        }
        "cron" => {
            let cron = legacy_cron(cx)?;
            scheduled(cx, cron)
        }
        "interval" => {
            let n = cx.node.param("interval").and_then(Value::as_u64).unwrap_or(1).max(1);
            let cron = match cx.node.str_param("unit").unwrap_or("seconds") {
                "minutes" => format!("*/{n} * * * *"),
                "hours" => format!("0 */{n} * * *"),
                _ => format!("*/{n} * * * * *"),
            };
            scheduled(cx, cron)
        }
        "manualTrigger" | "start" => {
            // n8n starts a manual run with one empty item.
            cx.out = Items::Single("{}".into());
            Y::s("manual")
        }
        "errorTrigger" => {
            cx.acc.events.insert("workflow.failed".into());
            cx.review("an error workflow: it now starts on every `workflow.failed` (and as on_error of the workflows naming it); n8n's $json.execution / $json.workflow fields are trigger.event here");
            cx.out = Items::Unknown;
            Y::map(vec![("event", Y::map(vec![("kind", Y::s("workflow.failed"))]))])
        }
        "executeWorkflowTrigger" => {
            cx.acc.inputs = Some(Y::map(vec![(
                "items",
                Y::map(vec![
                    ("type", Y::s("array")),
                    ("default", Y::Seq(Vec::new())),
                    ("description", Y::s("the items the calling workflow passed")),
                ]),
            )]));
            cx.out = Items::Many("inputs.items".into());
            cx.note("started by Execute Workflow: a manual workflow taking `inputs.items`");
            Y::s("manual")
        }
        _ => return Err("a trigger with no Stockade equivalent (marketplace events are `trigger: event`; polling is a schedule)".into()),
    };
    cx.acc.trigger = Some(trigger);
    Ok(())
}

fn scheduled(cx: &mut Cx<'_>, cron: String) -> Y {
    // n8n starts with one item (the tick's date fields); the trigger stands for it, and
    // a field Stockade's schedule trigger lacks is a lint error where it is read.
    cx.out = Items::Single("trigger".into());
    let mut s = vec![("cron", Y::s(cron))];
    match &cx.w.timezone {
        Some(tz) => s.push(("tz", Y::s(tz))),
        None => cx.note("n8n used the instance's time zone (GENERIC_TIMEZONE); Stockade reads the pattern in UTC unless `tz` is set"),
    }
    Y::map(vec![("schedule", Y::map(s))])
}

fn webhook(cx: &mut Cx<'_>) -> Result<Y, String> {
    let raw = cx.node.str_param("path").unwrap_or("");
    let mut path = crate::slug(raw.trim_matches('/'), '-').replace("--", "-");
    if path.is_empty()
        || !stockade_workflows::lint::valid_webhook_path(&path)
        || looks_like_uuid(raw)
    {
        path = cx.wf_name.to_owned();
    }
    if path != raw {
        // n8n's own path is not repeated: a random one was the webhook's only protection.
        cx.note(format!(
            "served at /hooks/workflows/{path}, not n8n's /webhook/ path: point the sender there"
        ));
    }
    let method = cx.node.str_param("httpMethod").unwrap_or("GET");
    if method != "POST" {
        cx.review(format!(
            "n8n listened for {method}; Stockade webhooks take POST with a JSON body"
        ));
    }
    let auth = cx.node.str_param("authentication").unwrap_or("none");
    cx.review(format!(
        "n8n authentication `{auth}`: the sender must now send a Stockade API key (`Authorization: Bearer …`), or sign with HMAC (`auth: {{hmac: CREDENTIAL}}`)"
    ));
    match cx.node.str_param("responseMode").unwrap_or("onReceived") {
        "lastNode" => {
            cx.acc.respond_result = true;
            cx.note("responds with the result: Stockade answers {execution, status, output} with the last step's output, within 10 s");
        }
        "responseNode" => cx.acc.respond_result = true,
        _ => {}
    }
    cx.out = Items::Webhook;
    Ok(Y::map(vec![(
        "webhook",
        Y::map(vec![("path", Y::s(path)), ("auth", Y::s("api_key"))]),
    )]))
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}

fn num(v: &Value, key: &str, default: u64) -> u64 {
    v.get(key)
        .and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(default)
}

/// Schedule Trigger: the first `rule.interval` entry as a cron pattern.
fn schedule(cx: &mut Cx<'_>) -> Result<String, String> {
    let intervals = cx
        .node
        .param("rule")
        .and_then(|r| r.get("interval"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![Value::Object(Default::default())]);
    if intervals.len() > 1 {
        cx.review(format!("{} schedule rules: only the first is kept (one cron per workflow; copy the workflow for the others)", intervals.len()));
    }
    let i = intervals.first().cloned().unwrap_or(Value::Null);
    let field = i.get("field").and_then(Value::as_str).unwrap_or("days");
    let minute = num(&i, "triggerAtMinute", 0);
    let hour = num(&i, "triggerAtHour", 0);
    let cron = match field {
        "seconds" => format!("*/{} * * * * *", num(&i, "secondsInterval", 30)),
        "minutes" => format!("*/{} * * * *", num(&i, "minutesInterval", 5)),
        "hours" => format!("{minute} */{} * * *", num(&i, "hoursInterval", 1)),
        "days" => match num(&i, "daysInterval", 1) {
            1 => format!("{minute} {hour} * * *"),
            n => format!("{minute} {hour} */{n} * *"),
        },
        "weeks" => {
            if num(&i, "weeksInterval", 1) > 1 {
                cx.review("every N weeks has no cron form: it now runs every week");
            }
            let days = i
                .get("triggerAtDay")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(Value::as_u64)
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "0".into());
            format!("{minute} {hour} * * {days}")
        }
        "months" => format!(
            "{minute} {hour} {} */{} *",
            num(&i, "triggerAtDayOfMonth", 1),
            num(&i, "monthsInterval", 1)
        ),
        "cronExpression" => i
            .get("expression")
            .and_then(Value::as_str)
            .ok_or("a cron rule without an expression")?
            .trim()
            .to_owned(),
        other => return Err(format!("schedule rule `{other}`")),
    };
    Ok(cron)
}

/// The legacy Cron node's first `triggerTimes.item`.
fn legacy_cron(cx: &mut Cx<'_>) -> Result<String, String> {
    let items = cx
        .node
        .param("triggerTimes")
        .and_then(|t| t.get("item"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.len() > 1 {
        cx.review("several trigger times: only the first is kept");
    }
    let i = items.first().cloned().unwrap_or(Value::Null);
    let (h, m) = (num(&i, "hour", 14), num(&i, "minute", 0));
    Ok(
        match i.get("mode").and_then(Value::as_str).unwrap_or("everyDay") {
            "everyMinute" => "* * * * *".into(),
            "everyHour" => format!("{m} * * * *"),
            "everyDay" => format!("{m} {h} * * *"),
            "everyWeek" => format!("{m} {h} * * {}", num(&i, "weekday", 1)),
            "everyMonth" => format!("{m} {h} {} * *", num(&i, "dayOfMonth", 1)),
            "everyX" => match i.get("unit").and_then(Value::as_str).unwrap_or("hours") {
                "minutes" => format!("*/{} * * * *", num(&i, "value", 2)),
                _ => format!("0 */{} * * *", num(&i, "value", 2)),
            },
            "custom" => i
                .get("cronExpression")
                .and_then(Value::as_str)
                .ok_or("a custom cron without an expression")?
                .trim()
                .to_owned(),
            other => return Err(format!("cron mode `{other}`")),
        },
    )
}
