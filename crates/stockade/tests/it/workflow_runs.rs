//! `stockade workflow run|runs|show-run|cancel|rerun` against a real `stockade serve`: a manual run is
//! queued by the command line and executed by the server's engine (its audit row under
//! the workflow's actor), `--wait` reports the outcome, `runs` lists and filters, and
//! `show-run` prints the step timeline. Refusals write nothing. A run abandoned by a
//! stopped process is finished by `serve` without repeating its committed step. SQLite
//! and PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use stockade_core::{Actor, Environment};
use stockade_store::{DatabaseUrl, StepStatus, Store};
use stockade_workflows::engine::{Engine, EngineConfig, StoredDefinitions};
use stockade_workflows::exec::{Executor, StepCtx, StepDone, StepFuture, StepHandler};
use stockade_workflows::expr::Evaluated;
use stockade_workflows::runs;

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::server::Server;

const HELLO: &str = "name: hello\ntrigger: manual\ninputs:\n  who: { type: string, required: true }\nsteps:\n  - id: greet\n    uses: audit.note\n    with: { message: \"hello {{ inputs.who }}\" }\n  - id: done\n    uses: audit.note\n    with: { message: \"done\" }\n";
const BROKEN: &str = "name: broken\ntrigger: manual\nsteps:\n  - id: stop\n    uses: fail\n    with: { message: \"no stock feed today\" }\n";

fn write(s: &Sandbox, name: &str, text: &str) -> String {
    let path = s.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The actors of the audit rows with `action`.
fn actors(s: &Sandbox, action: &str) -> Vec<String> {
    let out = s
        .run(&["audit", "export", "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["action"] == action)
        .map(|v| v["actor"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn runs_through_serve(s: &Sandbox) {
    let hello = write(s, "hello.yaml", HELLO);
    let broken = write(s, "broken.yaml", BROKEN);
    s.run(&["workflow", "apply", &hello, &broken])
        .expect_code(0);
    let input = write(s, "in.json", r#"{ "who": "ops" }"#);

    // Refusals: unknown workflow, undeclared or missing input. Nothing is queued.
    let out = s.run(&["workflow", "run", "nope"]).expect_code(2);
    assert!(out.stderr().contains("cannot run"), "{}", out.stderr());
    let out = s.run(&["workflow", "run", "hello"]).expect_code(2);
    assert!(
        out.stderr().contains("\"who\" is required"),
        "{}",
        out.stderr()
    );
    let bad = write(s, "bad.json", r#"{ "who": "ops", "x": 1 }"#);
    s.run(&["workflow", "run", "hello", "--input", &bad])
        .expect_code(2);
    let listed = s.run(&["workflow", "runs"]).expect_code(0).stdout();
    assert_eq!(listed.lines().count(), 1, "only the header: {listed}");

    // Queued without a server: it waits in the queue.
    let out = s
        .run(&["workflow", "run", "hello", "--input", &input])
        .expect_code(0);
    let queued = out.stdout().trim().to_owned();
    assert!(out.stderr().contains("hello@1"), "{}", out.stderr());
    let listed = s
        .run(&["workflow", "runs", "--status", "queued"])
        .expect_code(0)
        .stdout();
    assert!(listed.contains(&queued), "{listed}");

    // The server's engine runs it, and a run started with --wait.
    let server = Server::start(s);
    let out = s
        .run(&["workflow", "run", "hello", "--input", &input, "--wait"])
        .expect_code(0);
    let lines: Vec<_> = out.stdout().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let waited = lines[0].clone();
    assert_eq!(lines[1], "succeeded");
    let out = s
        .run(&["workflow", "run", "broken", "--wait"])
        .expect_code(1);
    assert!(out.stdout().contains("failed"), "{}", out.stdout());
    assert!(
        out.stderr().contains("no stock feed today"),
        "{}",
        out.stderr()
    );
    let failed = out.stdout().lines().next().unwrap().to_owned();
    // The first one ran too (the server polls the queue).
    let mut done = false;
    for _ in 0..100 {
        let listed = s
            .run(&["workflow", "runs", "hello", "--status", "succeeded"])
            .expect_code(0)
            .stdout();
        if listed.contains(&queued) && listed.contains(&waited) {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(done, "the queued run did not finish");
    drop(server);

    let notes = actors(s, "workflow.note");
    assert_eq!(notes.len(), 4, "{notes:?}");
    assert!(notes.contains(&format!("workflow:hello@1/{queued}")));
    assert!(notes.contains(&format!("workflow:hello@1/{waited}")));

    let listed = s
        .run(&["workflow", "runs", "--status", "failed"])
        .expect_code(0)
        .stdout();
    assert!(
        listed.contains(&failed) && listed.contains("broken@1"),
        "{listed}"
    );
    assert!(!listed.contains(&waited), "{listed}");
    let listed = s
        .run(&["workflow", "runs", "hello"])
        .expect_code(0)
        .stdout();
    assert!(!listed.contains(&failed), "{listed}");

    let shown = s
        .run(&["workflow", "show-run", &waited])
        .expect_code(0)
        .stdout();
    assert!(
        shown.contains("hello@1") && shown.contains("succeeded"),
        "{shown}"
    );
    let greet = shown.lines().position(|l| l.starts_with("greet ")).unwrap();
    let done = shown.lines().position(|l| l.starts_with("done ")).unwrap();
    assert!(greet < done, "{shown}");
    let shown = s
        .run(&["workflow", "show-run", &failed])
        .expect_code(0)
        .stdout();
    let stop = shown.lines().find(|l| l.starts_with("stop ")).unwrap();
    assert!(
        stop.contains("failed") && stop.contains("no stock feed today"),
        "{shown}"
    );
    s.run(&["workflow", "show-run", "job_nope"]).expect_code(2);
    s.run(&["workflow", "runs", "--status", "odd"])
        .expect_code(2);
    s.run(&["audit", "verify"]).expect_code(0);
}

#[test]
fn serve_runs_what_the_command_line_queues() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    runs_through_serve(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_what_the_command_line_queues_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let s = tokio::task::spawn_blocking(move || {
        runs_through_serve(&s);
        s
    })
    .await
    .unwrap();
    drop(s);
    drop_schema(&schema).await;
}

/// `audit.note` in a process that stops in the middle: the first call succeeds (no
/// effect), the second never returns.
struct DiesOnSecond(AtomicUsize);

impl StepHandler for DiesOnSecond {
    fn run<'a>(&'a self, _ctx: &'a StepCtx<'a>, _params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            if self.0.fetch_add(1, Ordering::SeqCst) > 0 {
                std::future::pending::<()>().await;
            }
            Ok(StepDone {
                output: json!({ "noted": false }),
                changes: vec![],
            })
        })
    }
}

/// Another process runs `hello` and stops inside its second step; its execution id.
async fn abandon_a_run(url: DatabaseUrl) -> String {
    let store = Store::open(&url, Environment::Dev, &Default::default())
        .await
        .unwrap();
    let handler = Arc::new(DiesOnSecond(AtomicUsize::new(0)));
    let defs = Arc::new(StoredDefinitions::new(store.clone()));
    let exec = Executor::new(store.clone(), defs.clone())
        .lease_ms(1_000)
        .with_handler("audit.note", handler.clone());
    let config = EngineConfig {
        workers: 1,
        lease_ms: 1_000,
        poll: Duration::from_millis(50),
        reap_every: Duration::from_secs(60),
        ..EngineConfig::default()
    };
    let engine = Engine::start_with(store.clone(), defs, Arc::new(exec), config);
    let started = runs::enqueue_manual(
        &store,
        &Actor::System("test"),
        "hello",
        json!({ "who": "ops" }),
    )
    .await
    .unwrap();
    for _ in 0..200 {
        if handler.0.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        handler.0.load(Ordering::SeqCst),
        2,
        "the second step is in flight"
    );
    engine.stop(Duration::ZERO).await;
    store.close().await;
    started.execution
}

fn resumed_by_serve(s: &Sandbox, url: DatabaseUrl) {
    let hello = write(s, "hello.yaml", HELLO);
    s.run(&["workflow", "apply", &hello]).expect_code(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt.block_on(abandon_a_run(url.clone()));
    let listed = s
        .run(&["workflow", "runs", "--status", "running"])
        .expect_code(0)
        .stdout();
    assert!(listed.contains(&id), "{listed}");

    let server = Server::start(s);
    let mut shown = String::new();
    for _ in 0..150 {
        shown = s
            .run(&["workflow", "show-run", &id])
            .expect_code(0)
            .stdout();
        if shown.contains("state     succeeded") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(server);
    assert!(shown.contains("state     succeeded"), "{shown}");
    let journal = rt.block_on(async {
        let store = Store::open(&url, Environment::Dev, &Default::default())
            .await
            .unwrap();
        let j = store.journal(&id).await.unwrap();
        store.close().await;
        j
    });
    let greet: Vec<_> = journal.iter().filter(|r| r.step_id == "greet").collect();
    assert_eq!(greet.len(), 1, "the committed step ran once: {journal:?}");
    let done: Vec<_> = journal.iter().filter(|r| r.step_id == "done").collect();
    assert_eq!(done.len(), 2, "the step in flight ran again: {journal:?}");
    assert_eq!(done[1].status, StepStatus::Succeeded);
    // Only the resumed step's effect is in the audit log, under the workflow's actor.
    assert_eq!(
        actors(s, "workflow.note"),
        [format!("workflow:hello@1/{id}")]
    );
}

#[test]
fn serve_resumes_a_run_another_process_abandoned() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let url = DatabaseUrl::Sqlite(s.data().join("stockade.db"));
    resumed_by_serve(&s, url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_resumes_a_run_another_process_abandoned_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let db = DatabaseUrl::parse(&url).unwrap();
    let s = tokio::task::spawn_blocking(move || {
        resumed_by_serve(&s, db);
        s
    })
    .await
    .unwrap();
    drop(s);
    drop_schema(&schema).await;
}

/// `cancel` and `rerun` from the command line: a queued run is cancelled (once), a
/// finished one is refused; a rerun from an unknown step writes nothing; a rerun queues
/// a new execution of the same version.
fn cancel_and_rerun(s: &Sandbox) {
    let hello = write(s, "hello.yaml", HELLO);
    s.run(&["workflow", "apply", &hello]).expect_code(0);
    let input = write(s, "in.json", r#"{ "who": "ops" }"#);
    let help = s
        .run(&["workflow", "cancel", "--help"])
        .expect_code(0)
        .stdout();
    assert!(help.contains("stops at its next step"), "{help}");
    let help = s
        .run(&["workflow", "rerun", "--help"])
        .expect_code(0)
        .stdout();
    assert!(help.contains("--from-step"), "{help}");

    let id = s
        .run(&["workflow", "run", "hello", "--input", &input])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    let out = s.run(&["workflow", "cancel", &id]).expect_code(0);
    assert_eq!(out.stdout().trim(), "cancelled");
    assert!(out.stderr().contains("it was queued"), "{}", out.stderr());
    let out = s.run(&["workflow", "cancel", &id]).expect_code(2);
    assert!(
        out.stderr().contains("cancelled already"),
        "{}",
        out.stderr()
    );
    s.run(&["workflow", "cancel", "job_nope"]).expect_code(2);
    let listed = s
        .run(&["workflow", "runs", "--status", "cancelled"])
        .expect_code(0)
        .stdout();
    assert!(listed.contains(&id), "{listed}");

    let before = s.run(&["workflow", "runs"]).expect_code(0).stdout();
    let out = s
        .run(&["workflow", "rerun", &id, "--from-step", "nope"])
        .expect_code(2);
    assert!(
        out.stderr().contains("not a top-level step"),
        "{}",
        out.stderr()
    );
    assert_eq!(s.run(&["workflow", "runs"]).expect_code(0).stdout(), before);
    let out = s
        .run(&["workflow", "rerun", &id, "--from-step", "done"])
        .expect_code(0);
    let again = out.stdout().trim().to_owned();
    assert!(again.starts_with("job_") && again != id, "{again}");
    assert!(
        out.stderr().contains(&format!("rerun of {id}")),
        "{}",
        out.stderr()
    );
    let listed = s
        .run(&["workflow", "runs", "hello", "--status", "queued"])
        .expect_code(0)
        .stdout();
    assert!(
        listed.contains(&again) && listed.contains("hello@1"),
        "{listed}"
    );
    assert_eq!(actors(s, "workflow.rerun").len(), 1);
    s.run(&["audit", "verify"]).expect_code(0);
}

#[test]
fn cancel_and_rerun_from_the_command_line() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    cancel_and_rerun(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_rerun_from_the_command_line_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let s = tokio::task::spawn_blocking(move || {
        cancel_and_rerun(&s);
        s
    })
    .await
    .unwrap();
    drop(s);
    drop_schema(&schema).await;
}
