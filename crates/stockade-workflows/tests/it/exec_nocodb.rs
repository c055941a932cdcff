//! The `nocodb.*` steps against the sandbox's NocoDB simulator on loopback HTTPS, on both
//! backends: 150 rows inserted in two batches of a `for_each`, a filtered and sorted list,
//! an update and a delete by `Id`, all paced by the rate limit; a 429 waited out for the
//! time NocoDB asks; a refused token, over 100 rows, an unknown table and an undeclared
//! host each failing clearly; the token in no output, journal, audit row or event.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_core::Environment;
use stockade_core::event::WorkflowFailure;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::NocoSim;
use stockade_workflows::exec::{Executor, RunOutcome};

use crate::exec_support::{Backend, Env, both, catalog, open_vault, put_credential};

both!(nocodb_steps_write_read_and_refuse);

const TOKEN: &str = "nc-Tok3n-5ecret-0a1b2c3d4e5f";
const BAD: &str = "nc-Wr0ng-5ecret-9z8y7x6w5v";

fn head(name: &str) -> String {
    format!(
        "name: {name}\ntrigger: manual\ninputs:\n  rows: {{ type: array, default: [] }}\n  batches: {{ type: array, default: [] }}\npermissions:\n  hosts: [127.0.0.1]\n  credentials: [noco, noco-bad]\nsteps:\n"
    )
}

pub(crate) fn mirror(url: &str, table: &str) -> String {
    let with = format!("url: \"{url}\", credential: noco, table: {table}");
    head("mirror")
        + &format!(
            r#"  - id: save
    uses: for_each
    with: {{ items: "{{{{ inputs.batches }}}}" }}
    steps:
      - id: insert
        uses: nocodb.insert
        with: {{ {with}, rows: "{{{{ item }}}}" }}
  - id: top
    uses: nocodb.list
    with: {{ {with}, where: "(qty,gt,140)", sort: [-qty], fields: [Id, sku, qty], limit: 5 }}
  - id: fix
    uses: nocodb.update
    with: {{ {with}, rows: "{{{{ [{{'Id': steps.top.output.rows[0].Id, 'status': 'checked'}}] }}}}" }}
  - id: drop
    uses: nocodb.delete
    with: {{ {with}, ids: "{{{{ steps.top.output.rows[1:] | map(attribute='Id') | list }}}}" }}
"#
        )
}

/// One step `kind` with `extra` parameters, against `url` with `credential`.
pub(crate) fn single(
    name: &str,
    kind: &str,
    url: &str,
    credential: &str,
    table: &str,
    extra: &str,
) -> String {
    head(name)
        + &format!(
            "  - id: one\n    uses: {kind}\n    with: {{ url: \"{url}\", credential: {credential}, table: {table}{extra} }}\n"
        )
}

pub(crate) async fn run(
    env: &Env,
    exec: &Executor,
    name: &str,
    inputs: Value,
) -> (String, RunOutcome) {
    let id = env.enqueue(name, inputs).await;
    let lease = env.claim("w1", 30_000).await.expect("a job");
    (id, exec.run_claimed(lease).await.expect("runs"))
}

pub(crate) fn failure(outcome: RunOutcome) -> WorkflowFailure {
    match outcome {
        RunOutcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

pub(crate) fn output(journal: &[stockade_store::StepRecord], step: &str) -> Value {
    let row = journal
        .iter()
        .rev()
        .find(|r| r.step_id == step)
        .expect(step);
    match &row.output {
        stockade_store::StepOutput::Json(v) => v.clone(),
        other => panic!("output {other:?}"),
    }
}
struct Fixture {
    env: Env,
    sim: NocoSim,
    exec: Executor,
    table: String,
}

async fn fixture(b: Backend) -> Option<Fixture> {
    let env = Env::new(b).await?;
    let vault = open_vault(&env).await;
    put_credential(&vault, "noco", TOKEN, &["*"], &["127.0.0.1"]).await;
    put_credential(&vault, "noco-bad", BAD, &["*"], &["127.0.0.1"]).await;
    let sim = NocoSim::start(TOKEN).await.expect("simulator");
    let table = sim.add_table("orders_mirror");
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![sim.base_url.trim_start_matches("https://").to_owned()];
    cfg.extra_root_pems = vec![sim.ca_pem.clone()];
    cfg.max_attempts = 1;
    cfg.request_timeout = Duration::from_secs(5);
    let gateway = Gateway::new(cfg, Some(env.store.clone())).expect("gateway");
    let url = sim.base_url.clone();
    let wfs = [
        mirror(&url, &table),
        single("lister", "nocodb.list", &url, "noco", &table, ", limit: 2"),
        single("badtoken", "nocodb.list", &url, "noco-bad", &table, ""),
        single(
            "toomany",
            "nocodb.insert",
            &url,
            "noco",
            &table,
            ", rows: \"{{ inputs.rows }}\"",
        ),
        single("notable", "nocodb.list", &url, "noco", "mNoSuchTbl", ""),
        single(
            "stray",
            "nocodb.list",
            "https://nocodb.example.com",
            "noco",
            &table,
            "",
        ),
    ];
    let refs: Vec<&str> = wfs.iter().map(String::as_str).collect();
    let exec = Executor::new(env.store.clone(), catalog(&refs)).with_services(gateway, vault);

    Some(Fixture {
        env,
        sim,
        exec,
        table,
    })
}

async fn nocodb_steps_write_read_and_refuse(b: Backend) {
    let Some(fx) = fixture(b).await else { return };
    writes_reads_and_paces(&fx).await;
    waits_out_429s(&fx).await;
    refuses_clearly(&fx).await;
    nothing_secret_persisted(&fx, b).await;
    fx.sim.shutdown().await;
    fx.env.cleanup().await;
}

async fn writes_reads_and_paces(fx: &Fixture) {
    let (env, sim, exec, table) = (&fx.env, &fx.sim, &fx.exec, &fx.table);
    // 150 rows in two batches, a filtered list, an update and a delete.
    let rows: Vec<Value> = (1..=150)
        .map(|i| json!({ "sku": format!("SKU-{i:03}"), "qty": i, "status": "new" }))
        .collect();
    let batches = json!([rows[..100], rows[100..]]);
    let (id, outcome) = run(env, exec, "mirror", json!({ "batches": batches })).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    let journal = env.store.journal(&id).await.unwrap();
    let top = output(&journal, "top");
    let qtys: Vec<i64> = top["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["qty"].as_i64().unwrap())
        .collect();
    assert_eq!(qtys, vec![150, 149, 148, 147, 146]);
    assert_eq!(
        top["rows"][0].as_object().unwrap().len(),
        3,
        "only the asked fields"
    );
    assert_eq!(top["page_info"]["totalRows"], json!(10));
    assert_eq!(output(&journal, "fix"), json!({ "count": 1 }));
    assert_eq!(output(&journal, "drop"), json!({ "count": 4 }));
    let stored = sim.rows(table);
    assert_eq!(stored.len(), 146);
    let top_row = stored.iter().find(|r| r["qty"] == json!(150)).unwrap();
    assert_eq!(top_row["status"], json!("checked"));
    let inserts: Vec<_> = journal
        .iter()
        .filter(|r| r.step_id.ends_with("/insert"))
        .collect();
    assert_eq!(inserts.len(), 2);
    let sent = sim.requests();
    assert_eq!(sent.len(), 5);
    assert_eq!(
        sent.iter().map(|r| r.rows).collect::<Vec<_>>(),
        vec![100, 50, 0, 1, 4]
    );
    assert!(sent.iter().all(|r| r.token_ok && r.status == 200));
    assert_eq!(sent[2].method, "GET");
    assert!(
        sent[2].query.contains("where=(qty,gt,140)"),
        "{}",
        sent[2].query
    );
    assert_eq!(
        sent[3].idempotency_key.as_deref(),
        Some(format!("{id}/fix").as_str())
    );
    // Paced: 4 requests/s per (host, credential), so five requests span at least 0.9 s.
    let span = sent[4].at.duration_since(sent[0].at);
    assert!(span >= Duration::from_millis(900), "{span:?}");
}

async fn waits_out_429s(fx: &Fixture) {
    let (env, sim, exec) = (&fx.env, &fx.sim, &fx.exec);
    // A 429 with Retry-After: 1 is waited out, and the list then succeeds.
    sim.throttle(1, Some(1));
    let before = sim.requests().len();
    let started = Instant::now();
    let (_, outcome) = run(env, exec, "lister", json!({})).await;
    assert_eq!(outcome, RunOutcome::Succeeded);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = sim.requests()[before..].iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
}

async fn refuses_clearly(fx: &Fixture) {
    let (env, sim, exec) = (&fx.env, &fx.sim, &fx.exec);
    // A refused token: a clear, permanent failure naming the credential, not the token.
    let f = failure(run(env, exec, "badtoken", json!({})).await.1);
    assert_eq!((f.class.as_str(), f.status), ("http", Some(401)));
    assert!(
        f.message
            .contains("the API token in credential noco-bad was refused"),
        "{}",
        f.message
    );
    assert_eq!(f.attempts, 1);

    // Over 100 rows: refused before anything is sent, pointing at for_each.
    let before = sim.requests().len();
    let many: Vec<Value> = (0..101).map(|i| json!({ "qty": i })).collect();
    let f = failure(run(env, exec, "toomany", json!({ "rows": many })).await.1);
    assert_eq!(f.class, "invalid");
    assert!(
        f.message.contains("for_each") && f.message.contains("101"),
        "{}",
        f.message
    );
    assert_eq!(sim.requests().len(), before);

    // An unknown table, and a host the workflow does not declare (nothing sent).
    let f = failure(run(env, exec, "notable", json!({})).await.1);
    assert_eq!((f.class.as_str(), f.status), ("http", Some(404)));
    assert!(f.message.contains("table was not found"), "{}", f.message);
    let before = sim.requests().len();
    let f = failure(run(env, exec, "stray", json!({})).await.1);
    assert_eq!(f.class, "permission");
    assert!(f.message.contains("permissions.hosts"), "{}", f.message);
    assert_eq!(sim.requests().len(), before);

    // A 429 asking for longer than the step may wait: a transient failure at once (the
    // step's retry policy decides), and every later request on that host and credential
    // waits too, so nothing more reaches NocoDB meanwhile.
    sim.throttle(1, Some(120));
    let before = sim.requests().len();
    let started = Instant::now();
    let f = failure(run(env, exec, "lister", json!({})).await.1);
    assert_eq!((f.class.as_str(), f.status), ("transient", Some(429)));
    assert!(f.message.contains("rate limit"), "{}", f.message);
    let f = failure(run(env, exec, "lister", json!({})).await.1);
    assert_eq!((f.class.as_str(), f.status), ("transient", Some(429)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sim.requests().len(), before + 1, "the pause is shared");
}

async fn nothing_secret_persisted(fx: &Fixture, b: Backend) {
    let env = &fx.env;
    // Neither token is anywhere in what was persisted.
    for sql in [
        "SELECT COALESCE(output, '') || COALESCE(error, '') FROM job_steps",
        "SELECT payload || COALESCE(last_error, '') FROM jobs",
        "SELECT action || details FROM audit",
        "SELECT detail FROM events",
    ] {
        let rows: Vec<(String,)> = env.store.query_as(sql, vec![]).await.unwrap();
        for (text,) in rows {
            assert!(
                !text.contains(TOKEN) && !text.contains(BAD),
                "{sql}: a token was persisted"
            );
        }
    }
    if b == Backend::Sqlite {
        let bytes = env.db.sqlite_bytes();
        for secret in [TOKEN, BAD] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }
}

/// The example in docs/workflows.md's NocoDB section lints clean as a workflow.
#[test]
fn the_docs_nocodb_example_lints_clean() {
    let docs = include_str!("../../../../docs/workflows.md");
    let section = &docs[docs.find("## NocoDB steps").expect("the section")..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let len = section[start..].find("```").unwrap();
    let example = format!(
        "name: orders-mirror\ntrigger: manual\ninputs:\n  batches: {{ type: array, required: true }}\n{}",
        &section[start..start + len]
    );
    let options = stockade_workflows::LintOptions::default();
    let linted = stockade_workflows::lint_document(&example, &options);
    assert!(linted.workflow.is_some(), "{:?}", linted.problems);
    assert_eq!(linted.problems, vec![]);
}
