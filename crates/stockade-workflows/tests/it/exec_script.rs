//! `script` steps in running workflows on both backends: an n8n Code node body run
//! unchanged over earlier data (`$input.all()`, `$('Node')` through `nodes`), `{{` in the
//! code reaching the script untouched, errors and limits failing the step with the
//! author's line, limits above the maxima refused, and buyer data carried forward from a
//! script's input to its output (sealed in the journal, refused at a sink without
//! `allow_pii`).

use serde_json::{Value, json};
use stockade_core::{Actor, Environment};
use stockade_egress::{EgressConfig, Gateway};
use stockade_store::StepOutput;
use stockade_workflows::exec::{ExecutionPayload, Executor, RunOutcome};

use crate::exec_support::{Backend, Env, both, catalog, open_vault};

both!(
    an_n8n_code_node_runs_unchanged,
    script_errors_and_limits_fail_the_step,
    buyer_data_stays_marked_through_a_script,
);

const SUMS: &str = r#"
name: sums
trigger: manual
steps:
  - id: sum
    uses: script
    with:
      input: "{{ trigger.orders }}"
      nodes:
        "Fetch Orders": "{{ trigger.orders }}"
      code: |
        // Sum order totals per channel (an n8n Code node, copied unchanged).
        const totals = {};
        for (const item of $input.all()) {
          const ch = item.json.channel;
          totals[ch] = (totals[ch] || 0) + item.json.total;
        }
        const fetched = $('Fetch Orders').all().length;
        console.log(`summed ${fetched} orders`, 'call +65 9123 4567');
        const template = "{{ not an expression }}";
        return Object.keys(totals).map(channel => ({ json: { channel, total: totals[channel], fetched, template } }));
  - id: per_item
    uses: script
    with:
      mode: each_item
      input: "{{ steps.sum.output.items }}"
      code: "return { json: { channel: $json.channel.toUpperCase(), cents: Math.round($json.total * 100) } };"
  - id: note
    uses: audit.note
    with: { message: "{{ steps.per_item.output.items[0].channel }} {{ steps.per_item.output.items[0].cents }}" }
"#;

async fn run_with(env: &Env, exec: &Executor, name: &str, trigger: Value) -> (String, RunOutcome) {
    let p = ExecutionPayload::new(name, json!({}), trigger);
    let id = env
        .store
        .enqueue(&Actor::System("test"), &p.job())
        .await
        .expect("enqueue")
        .id;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    (id, exec.run_claimed(lease).await.expect("runs"))
}

async fn output(env: &Env, id: &str, step: &str) -> StepOutput {
    let journal = env.store.journal(id).await.expect("journal");
    journal
        .into_iter()
        .find(|r| r.step_id == step)
        .map(|r| r.output)
        .expect("the step's row")
}

async fn an_n8n_code_node_runs_unchanged(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = Executor::new(env.store.clone(), catalog(&[SUMS]));
    let orders = json!([
        { "channel": "shopee", "total": 12.5 },
        { "channel": "lazada", "total": 4 },
        { "channel": "shopee", "total": 7.25 }
    ]);
    let (id, outcome) = run_with(&env, &exec, "sums", json!({ "orders": orders })).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    let StepOutput::Json(sum) = output(&env, &id, "sum").await else {
        panic!("a plain output")
    };
    let template = "{{ not an expression }}";
    assert_eq!(
        sum["items"],
        json!([
            { "channel": "shopee", "total": 19.75, "fetched": 3, "template": template },
            { "channel": "lazada", "total": 4, "fetched": 3, "template": template }
        ])
    );
    let logs = sum["logs"].as_array().cloned().unwrap_or_default();
    assert_eq!(logs.len(), 1);
    let line = logs[0].as_str().unwrap_or_default();
    assert!(line.starts_with("summed 3 orders"), "{line}");
    assert!(
        !line.contains("9123 4567"),
        "console lines are scrubbed: {line}"
    );
    let StepOutput::Json(each) = output(&env, &id, "per_item").await else {
        panic!("a plain output")
    };
    assert_eq!(
        each["items"],
        json!([{ "channel": "SHOPEE", "cents": 1975 }, { "channel": "LAZADA", "cents": 400 }])
    );
    let notes: Vec<(String,)> = env
        .store
        .query_as(
            "SELECT details FROM audit WHERE action = 'workflow.note'",
            vec![],
        )
        .await
        .unwrap();
    assert!(notes[0].0.contains("SHOPEE 1975"), "{}", notes[0].0);
    env.cleanup().await;
}

const BROKEN: &str = r#"
name: broken
trigger: manual
steps:
  - id: t
    uses: script
    with:
      input: "{{ trigger.items }}"
      code: |
        const first = $input.first().json;
        if (first.kind === "throw") {
          throw new Error("no price for " + first.sku);
        }
        if (first.kind === "loop") {
          while (true) {}
        }
        return [{ json: first }];
      limits: { time_ms: 200, memory_mb: 8 }
"#;

const GREEDY: &str = r#"
name: greedy
trigger: manual
steps:
  - id: t
    uses: script
    with:
      code: "return {};"
      limits: { time_ms: 600000 }
"#;

async fn script_errors_and_limits_fail_the_step(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let exec = Executor::new(env.store.clone(), catalog(&[BROKEN, GREEDY]));
    let trigger = |kind: &str| json!({ "items": [{ "kind": kind, "sku": "MUG-1" }] });
    let (_, thrown) = run_with(&env, &exec, "broken", trigger("throw")).await;
    let RunOutcome::Failed(f) = thrown else {
        panic!("fails: {thrown:?}")
    };
    assert_eq!(f.class, "fail");
    assert_eq!(
        f.message,
        "fail: script: the script threw Error: no price for MUG-1 (script line 3)"
    );
    let (_, looped) = run_with(&env, &exec, "broken", trigger("loop")).await;
    let RunOutcome::Failed(f) = looped else {
        panic!("fails: {looped:?}")
    };
    assert!(f.message.contains("time limit (200 ms)"), "{}", f.message);
    let (id, fine) = run_with(&env, &exec, "broken", trigger("ok")).await;
    assert_eq!(fine, RunOutcome::Succeeded);
    let StepOutput::Json(v) = output(&env, &id, "t").await else {
        panic!("plain")
    };
    assert_eq!(v["items"], json!([{ "kind": "ok", "sku": "MUG-1" }]));
    // Above the configured maximum: the step fails before anything runs.
    let (_, greedy) = run_with(&env, &exec, "greedy", json!({})).await;
    let RunOutcome::Failed(f) = greedy else {
        panic!("refused: {greedy:?}")
    };
    assert_eq!(f.class, "invalid");
    assert!(
        f.message.contains("above the configured maximum 30000"),
        "{}",
        f.message
    );
    env.cleanup().await;
}

const PASS_ON: &str = r#"
name: pass_on
trigger: manual
steps:
  - id: shape
    uses: script
    with:
      input: "{{ trigger }}"
      code: "return [{ json: { who: $json.buyer, order: $json.order } }];"
  - id: page
    uses: alert.send
    with: { message: "order for {{ steps.shape.output.items[0].who }}", severity: info }
"#;

const BUYER: &str = "Zebulon Quixote-Buyer";

async fn buyer_data_stays_marked_through_a_script(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let vault = open_vault(&env).await;
    let actor = Actor::System("test");
    let trigger = json!({ "order": "ORD-9", "buyer": BUYER });
    let sealed = stockade_workflows::exec::seal_trigger(&vault, &trigger, &actor)
        .await
        .expect("sealed");
    let gateway = Gateway::new(EgressConfig::new(Environment::Dev), None).expect("gateway");
    let exec = Executor::new(env.store.clone(), catalog(&[PASS_ON])).with_services(gateway, vault);
    let (id, outcome) = run_with(&env, &exec, "pass_on", sealed).await;
    let RunOutcome::Failed(f) = outcome else {
        panic!("refused: {outcome:?}")
    };
    assert_eq!(
        (f.class.as_str(), f.step.as_str()),
        ("permission", "page"),
        "{f:?}"
    );
    // The script's output holds the buyer: sealed in the journal, never plain.
    assert!(matches!(
        output(&env, &id, "shape").await,
        StepOutput::Sealed(_)
    ));
    for sql in [
        "SELECT output FROM job_steps",
        "SELECT payload FROM jobs",
        "SELECT details FROM audit",
    ] {
        let rows: Vec<(Option<String>,)> = env.store.query_as(sql, vec![]).await.unwrap();
        for (text,) in rows {
            assert!(
                !text.unwrap_or_default().contains("Zebulon"),
                "{sql}: buyer stored plain"
            );
        }
    }
    env.cleanup().await;
}
