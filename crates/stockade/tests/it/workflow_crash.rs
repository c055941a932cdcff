//! Crashes of a real `stockade serve` in the middle of workflows, on SQLite and
//! PostgreSQL, counted at a real HTTPS receiver on loopback (the sandbox's webhook
//! receiver checking a bearer token, trusted and allowed in the data directory's
//! `stockade.toml` as a user would; the token stored with `stockade credential set`):
//!
//! - `kill -9` while step 3 of 5 `http.request` steps is in flight: after a restart the
//!   execution finishes; steps 1, 2, 4 and 5 reached the receiver once each, step 3 twice
//!   with the same `Idempotency-Key` (`EXECUTION/step3`); the cut attempt reads
//!   `interrupted`; the audit chain verifies.
//! - per-second and five-second schedules over a `kill -9` with a quick restart and
//!   one with three seconds down fire each tick at most once (on PostgreSQL with a
//!   second server racing for every tick), and a `missed: run_once` schedule makes one
//!   catch-up run for the ticks of the downtime.
//! - two servers on one PostgreSQL database sharing 50 webhook-started executions run
//!   each one once (one request per idempotency key at the receiver).
//! - a worker frozen (`SIGSTOP`) in step 3 and thawed while a second server holds the
//!   execution cannot commit: the fencing token refuses its failure.
//!
//! `[workflows] lease` is short (3 s) so the restarted server resumes the execution the
//! killed one held within seconds. Each test says how it would fail without the
//! mechanism it checks (several were checked by breaking the mechanism by hand).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use serde_json::Value;
use stockade_sandbox::bots::{BotFault, Received, WebhookReceiver};
use stockade_sandbox::{Bots, BotsConfig};

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::server::Server;

const TOKEN: &str = "tok-Kill9-Resume-7c1e55aa90d3";
const HMAC_KEY: &str = "5b8e2f71c04d9a36e1f7b2c8d05a94e3";

/// The database a test runs on.
enum Backend {
    Sqlite,
    Postgres { schema: String },
}

/// A dev data directory on `backend` (None: PostgreSQL not configured, skipped), with
/// `config` appended to its `stockade.toml`.
fn sandbox(pg: bool, config: &str) -> Option<(Sandbox, Backend)> {
    let (s, backend) = if pg {
        let (url, schema) = pg_schema_url()?;
        (
            Sandbox::new().with("STOCKADE_DATABASE_URL", &url),
            Backend::Postgres { schema },
        )
    } else {
        (Sandbox::new(), Backend::Sqlite)
    };
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let path = s.data().join("stockade.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push('\n');
    text.push_str(config);
    std::fs::write(&path, text).unwrap();
    Some((s, backend))
}

async fn cleanup(backend: Backend) {
    if let Backend::Postgres { schema } = backend {
        drop_schema(&schema).await;
    }
}

/// The receiver: the sandbox's bots server with one webhook per name taking `token` as
/// its bearer token, and the `[egress]` / `[workflows]` configuration that lets a server
/// reach it.
async fn receiver(
    s_dir: &std::path::Path,
    names: &[&str],
    token: &str,
    egress: &str,
) -> (Arc<Bots>, Vec<WebhookReceiver>, String) {
    let bots = Arc::new(Bots::start(BotsConfig::default()).await.unwrap());
    let hooks = names
        .iter()
        .map(|n| bots.add_bearer_webhook(n, token))
        .collect();
    let ca = s_dir.join("receiver-ca.pem");
    std::fs::write(&ca, &bots.ca_pem).unwrap();
    let authority = bots.base_url.trim_start_matches("https://").to_owned();
    let config = format!(
        "[egress]\nallowed_hosts = [\"{authority}\"]\nextra_root_certs = [\"{}\"]\n{egress}\n[workflows]\nlease = \"3s\"\n",
        ca.display()
    );
    (bots, hooks, config)
}

/// One `http.request` step posting `{"n": N}` to `hook` with the `credential` (the
/// receiver checks it as a bearer token).
fn post_step(id: &str, n: u32, hook: &WebhookReceiver, credential: &str) -> String {
    format!(
        "  - id: {id}\n    uses: http.request\n    with:\n      url: \"{}\"\n      method: POST\n      body: {{ n: {n} }}\n      credential: {credential}\n",
        hook.url
    )
}

/// `stockade credential set NAME --workflow WORKFLOW --host 127.0.0.1 --secret-stdin`.
fn credential(s: &Sandbox, name: &str, workflow: &str, host: bool, secret: &str) {
    let mut args = vec![
        "credential",
        "set",
        name,
        "--workflow",
        workflow,
        "--secret-stdin",
    ];
    if host {
        args.extend(["--host", "127.0.0.1"]);
    }
    s.run_with_stdin(&s.data(), &args, Some(&format!("{secret}\n")))
        .expect_code(0);
}

fn apply(s: &Sandbox, file: &str, text: &str) {
    let path = s.dir.join(file);
    std::fs::write(&path, text).unwrap();
    s.run(&["workflow", "apply", path.to_str().unwrap()])
        .expect_code(0);
}

fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Poll `check` every 100 ms until it gives a value or `limit` passes.
async fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state column of `workflow runs NAME` for execution `id`.
fn state_of(s: &Sandbox, name: &str, id: &str) -> Option<String> {
    let out = s.run(&["workflow", "runs", name]).expect_code(0).stdout();
    out.lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
}

/// Every audit row, exported.
fn audit_rows(s: &Sandbox) -> Vec<Value> {
    let out = s
        .run(&["audit", "export", "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 in the middle of a 5-step workflow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workflow_resumes_without_repeating_sqlite() {
    sigkill_mid_workflow(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_workflow_resumes_without_repeating_postgres() {
    sigkill_mid_workflow(true).await;
}

/// Can it fail? Without the journal's resume (a restarted run starting over), steps 1
/// and 2 would reach the receiver twice; with a key that changed per attempt or per
/// claim, step 3's two requests would carry different keys; without the lease expiring
/// and the reaper re-queueing the job, the execution would stay `running` and the wait
/// for `succeeded` times out; a step committed twice would show in the counts.
async fn sigkill_mid_workflow(pg: bool) {
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let dir = stockade_testkit::temp_dir("workflow-crash-ca");
    let (bots, hooks, config) = receiver(&dir, &names, TOKEN, "").await;
    let Some((s, backend)) = sandbox(pg, &config) else {
        return;
    };
    let mut wf = String::from(
        "name: supplier-sync\ntrigger: manual\npermissions:\n  hosts: [127.0.0.1]\n  credentials: [supplier-token]\nsteps:\n",
    );
    for (i, hook) in hooks.iter().enumerate() {
        let id = format!("step{}", i + 1);
        wf.push_str(&post_step(&id, i as u32 + 1, hook, "supplier-token"));
    }
    apply(&s, "supplier-sync.yaml", &wf);
    credential(&s, "supplier-token", "supplier-sync", true, TOKEN);

    // Step 3's first request is held open: the receiver never answers it.
    bots.set_fault("s3", BotFault::Hang);
    let started = Instant::now();
    let server = Server::start(&s);
    let id = s
        .run(&["workflow", "run", "supplier-sync"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    poll(Duration::from_secs(20), "step 3's request", || {
        bots.received().iter().any(|r| r.bot == "s3").then_some(())
    })
    .await;
    // Steps run in order and each commits before the next starts: steps 1 and 2 are
    // committed now, step 3 is in flight.
    let before: Vec<String> = bots.received().iter().map(|r| r.bot.clone()).collect();
    assert_eq!(before, ["s1", "s2", "s3"], "{before:?}");
    let log1 = server.log_text();
    drop(server); // SIGKILL
    bots.set_fault("s3", BotFault::None);
    assert_eq!(
        state_of(&s, "supplier-sync", &id).as_deref(),
        Some("running")
    );

    let server = Server::start(&s);
    let state = poll(Duration::from_secs(25), "the execution to finish", || {
        state_of(&s, "supplier-sync", &id).filter(|st| st != "running" && st != "queued")
    })
    .await;
    let shown = s
        .run(&["workflow", "show-run", &id])
        .expect_code(0)
        .stdout();
    assert_eq!(state, "succeeded", "{shown}\n{}", server.log_text());
    let log2 = server.log_text();
    drop(server);

    // At the receiver: one request per step, two for step 3 with one key.
    let got = bots.received();
    let mut per_bot: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in &got {
        per_bot.entry(r.bot.as_str()).or_default().push(r);
    }
    for (i, name) in names.iter().enumerate() {
        let hits = per_bot.get(name).cloned().unwrap_or_default();
        let want = if *name == "s3" { 2 } else { 1 };
        assert_eq!(hits.len(), want, "{name}: {got:#?}");
        let key = format!("{id}/step{}", i + 1);
        for r in &hits {
            assert_eq!(header(r, "idempotency-key"), Some(key.as_str()), "{r:?}");
            assert_eq!(
                header(r, "authorization"),
                Some(format!("Bearer {TOKEN}").as_str())
            );
        }
        assert!(hits.last().unwrap().accepted, "{name}: {hits:?}");
    }
    assert_eq!(
        per_bot["s3"][0].http_status, 0,
        "the first was never answered"
    );
    // The timeline: step 3 ran twice (the attempt the crash cut, then the one that
    // finished), every other step once.
    let step_rows = |step: &str| {
        shown
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(step))
            .count()
    };
    for (step, want) in [
        ("step1", 1),
        ("step2", 1),
        ("step3", 2),
        ("step4", 1),
        ("step5", 1),
    ] {
        assert_eq!(step_rows(step), want, "{step}:\n{shown}");
    }
    // The attempt the crash cut reads as interrupted, not as running forever.
    let step3: Vec<Vec<&str>> = shown
        .lines()
        .filter(|l| l.starts_with("step3 "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        (step3[0][2], step3[1][2]),
        ("interrupted", "succeeded"),
        "{shown}"
    );
    s.run(&["audit", "verify"]).expect_code(0);
    for text in [&log1, &log2] {
        assert!(!text.contains(TOKEN), "{text}");
    }
    eprintln!(
        "sigkill_mid_workflow ({}) took {:?}",
        if pg { "postgres" } else { "sqlite" },
        started.elapsed()
    );
    cleanup(backend).await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// 2. a schedule over a restart

const EVERY_SECOND: &str = "name: every-second\ntrigger: { schedule: { cron: \"* * * * * *\" } }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"tick {{ trigger.scheduled_at }}\" }\n";
const EVERY_FIVE: &str = "name: every-five\ntrigger: { schedule: { cron: \"*/5 * * * * *\" } }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"five {{ trigger.scheduled_at }}\" }\n";
const CATCH_UP: &str = "name: catch-up\ntrigger: { schedule: { cron: \"* * * * * *\", missed: run_once } }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"catch-up {{ trigger.scheduled_at }} {{ trigger.catch_up }} {{ trigger.missed }}\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_over_sigkill_fires_once_per_tick_sqlite() {
    schedule_over_sigkill(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_over_sigkill_fires_once_per_tick_postgres() {
    schedule_over_sigkill(true).await;
}

/// The notes of `workflow.note` rows starting with `prefix`, in audit order.
fn notes(rows: &[Value], prefix: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r["action"] == "workflow.note")
        .filter_map(|r| r["details"]["message"].as_str())
        .filter(|m| m.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Wait until `n` more `every-second` ticks are noted.
async fn ticks_after(s: &Sandbox, n: usize, what: &str) {
    let count = || notes(&audit_rows(s), "tick ").len();
    let before = count();
    poll(Duration::from_secs(15), what, || {
        (count() >= before + n).then_some(())
    })
    .await;
}

/// Can it fail? Once per tick rests on two layers, either of which alone keeps it: the
/// scheduler starts after the newest tick fired (read from the database, so a restart
/// knows it), and the store fires a tick only with its (workflow, tick) row, never at or
/// before the newest one, the row and the job in one guarded commit. With both broken
/// (a scheduler that ignores the fired ticks, a job enqueued whether or not its tick
/// row was written) this test fails on both backends: the `every-five` tick fired just
/// before the quick restart fires again, and on PostgreSQL the second server doubles
/// ticks. A catch-up run for each missed tick, or none, fails the catch-up count.
async fn schedule_over_sigkill(pg: bool) {
    let Some((s, backend)) = sandbox(pg, "[workflows]\nlease = \"3s\"\n") else {
        return;
    };
    let started = Instant::now();
    apply(&s, "every-second.yaml", EVERY_SECOND);
    apply(&s, "catch-up.yaml", CATCH_UP);
    apply(&s, "every-five.yaml", EVERY_FIVE);

    let first = Server::start(&s);
    // On PostgreSQL a second server races the first for every tick all along.
    let other = pg.then(|| Server::start(&s));
    ticks_after(&s, 3, "three ticks").await;
    // Killed and restarted at once, right after an `every-five` tick fired: the
    // restarted scheduler looks again well before the next one is due, so that tick is
    // still the newest due (and the per-second schedule's last tick often is too).
    poll(Duration::from_secs(10), "an every-five tick", || {
        (!notes(&audit_rows(&s), "five ").is_empty()).then_some(())
    })
    .await;
    drop(first); // SIGKILL
    let first = Server::start(&s);
    ticks_after(&s, 2, "ticks after a quick restart").await;
    // Killed again, everything down for three seconds (the other server too, so those
    // ticks are missed), then started again.
    drop(first); // SIGKILL
    let killed_at = stockade_core::time::now_ms();
    drop(other);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = Server::start(&s);
    let restarted_at = stockade_core::time::now_ms();
    let other = pg.then(|| Server::start(&s));
    ticks_after(&s, 3, "ticks after the restart").await;
    drop(other);
    drop(second);

    let rows = audit_rows(&s);
    let ticks = notes(&rows, "tick ");
    for prefix in ["tick ", "five "] {
        let mut seen = BTreeMap::new();
        for t in notes(&rows, prefix) {
            *seen.entry(t).or_insert(0) += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "ticks fired twice: {twice:?}");
    }
    assert!(ticks.len() >= 8, "{ticks:#?}");

    // run_once: exactly one catch-up standing for the ticks of the downtime, with the
    // schedule running normally before and after it.
    let catch = notes(&rows, "catch-up ");
    let after_restart: Vec<(&str, bool, u32)> = catch
        .iter()
        .filter_map(|m| {
            let f: Vec<&str> = m.split_whitespace().collect();
            Some((f[1], f[2].eq_ignore_ascii_case("true"), f[3].parse().ok()?))
        })
        .collect();
    let tick_ms = |rfc: &str| stockade_core::time::parse_rfc3339_ms(rfc).unwrap();
    let caught: Vec<_> = after_restart
        .iter()
        .filter(|(t, catch_up, _)| {
            *catch_up && tick_ms(t) > killed_at && tick_ms(t) <= restarted_at + 2_000
        })
        .collect();
    assert_eq!(caught.len(), 1, "one catch-up for the downtime: {catch:#?}");
    assert!(
        caught[0].2 >= 2,
        "it stands for the ticks of the downtime: {catch:#?}"
    );
    let mut seen = BTreeMap::new();
    for (t, _, _) in &after_restart {
        *seen.entry(*t).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{catch:#?}");
    s.run(&["audit", "verify"]).expect_code(0);
    eprintln!(
        "schedule_over_sigkill ({}) took {:?}",
        if pg { "postgres" } else { "sqlite" },
        started.elapsed()
    );
    cleanup(backend).await;
}

// ---------------------------------------------------------------------------------------
// 3. two servers on one PostgreSQL database

const RUNS: usize = 50;

fn sign(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, HMAC_KEY.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Samples the lease owners (`engine-PID-…`) of running executions every 10 ms, so the
/// test can tell that both servers took executions.
struct Owners {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<BTreeSet<String>>,
}

impl Owners {
    async fn stop(self) -> BTreeSet<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn sample_owners(s: &Sandbox) -> Owners {
    let url = s
        .env
        .iter()
        .find(|(k, _)| k == "STOCKADE_DATABASE_URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let task = tokio::spawn(async move {
        let url = stockade_store::DatabaseUrl::parse(&url).unwrap();
        let store =
            stockade_store::Store::open(&url, stockade_core::Environment::Dev, &Default::default())
                .await
                .unwrap();
        let mut pids = BTreeSet::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let rows = store
                .query(
                    "SELECT lease_owner FROM jobs WHERE lease_owner IS NOT NULL",
                    vec![],
                )
                .await
                .unwrap();
            for r in rows {
                let (owner,): (String,) = r.decode().unwrap();
                if let Some(pid) = owner.split('-').nth(1) {
                    pids.insert(pid.to_owned());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        store.close().await;
        pids
    });
    Owners { stop, task }
}

/// Can it fail? The request to the receiver is outside the database: if two workers
/// claimed one execution (a claim without `SKIP LOCKED` or a token), both would send
/// it and the key would be counted twice; a lost execution leaves a key uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_postgres_run_each_execution_once() {
    let dir = stockade_testkit::temp_dir("workflow-crash-ca");
    let (bots, hooks, config) = receiver(&dir, &["orders"], TOKEN, "").await;
    let Some((s, backend)) = sandbox(true, &config) else {
        return;
    };
    let started = Instant::now();
    let wf = format!(
        "name: order-hook\ntrigger:\n  webhook:\n    path: orders/new\n    auth: {{ hmac: order-hmac }}\n    respond: accepted\npermissions:\n  hosts: [127.0.0.1]\n  credentials: [order-hmac, order-token]\nsteps:\n{}  - id: note\n    uses: audit.note\n    with: {{ message: \"order {{{{ trigger.body.n }}}}\" }}\n",
        post_step("forward", 1, &hooks[0], "order-token")
    );
    apply(&s, "order-hook.yaml", &wf);
    credential(&s, "order-hmac", "order-hook", false, HMAC_KEY);
    credential(&s, "order-token", "order-hook", true, TOKEN);
    let servers = [Server::start(&s), Server::start(&s)];
    let pids = sample_owners(&s);
    for n in 0..RUNS {
        let body = format!("{{\"n\":{n}}}").into_bytes();
        let server = &servers[n % 2];
        let res = server
            .client
            .post(server.url("/hooks/workflows/orders/new"))
            .header("content-type", "application/json")
            .header("x-stockade-signature", sign(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    }
    let ids = poll(Duration::from_secs(60), "every execution to finish", || {
        let out = s
            .run(&["workflow", "runs", "order-hook", "--limit", "200"])
            .expect_code(0)
            .stdout();
        let rows: Vec<(String, String)> = out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.first()?.to_string(), f.get(2)?.to_string()))
            })
            .collect();
        (rows.len() == RUNS && rows.iter().all(|(_, st)| st == "succeeded"))
            .then(|| rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>())
    })
    .await;
    drop(servers);
    let pids = pids.stop().await;
    assert!(pids.len() >= 2, "both servers ran executions: {pids:?}");

    let mut keys = BTreeMap::new();
    for r in bots.received() {
        *keys
            .entry(header(&r, "idempotency-key").unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    for id in &ids {
        let key = format!("{id}/forward");
        assert_eq!(keys.get(&key), Some(&1), "{key}: {keys:#?}");
    }
    assert_eq!(keys.len(), RUNS, "{keys:#?}");
    // Each execution's audit.note committed once, under its own actor.
    let rows = audit_rows(&s);
    let mut per_actor = BTreeMap::new();
    for r in rows.iter().filter(|r| r["action"] == "workflow.note") {
        *per_actor
            .entry(r["actor"].as_str().unwrap_or("").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(per_actor.len(), RUNS, "{per_actor:#?}");
    assert!(per_actor.values().all(|n| *n == 1), "{per_actor:#?}");
    s.run(&["audit", "verify"]).expect_code(0);
    eprintln!(
        "two_servers_on_postgres took {:?}; lease owners seen from processes {pids:?}",
        started.elapsed()
    );
    cleanup(backend).await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// 4. a stopped worker cannot commit over its successor

fn signal(server: &Server, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Server A runs the five steps until step 3 hangs, then is frozen (`SIGSTOP`): it
/// stops heartbeating while it still believes it holds the execution. Server B, on the
/// same PostgreSQL database, resumes it once the lease ran out, and is itself held in
/// step 4. Then A is thawed (`SIGCONT`) while B holds the job: A's step 3 request times
/// out and A tries to record the failure and fail the execution — the fencing token
/// (B's claim moved it on) refuses that commit, which writes nothing, and A says another
/// worker holds the job. B then finishes: step 4 retried with the same key, step 5, and
/// the execution succeeds.
///
/// Can it fail? Without the token check at commit, A's commit would land while the job
/// is still running under B: step 3's first attempt would read `failed` and the
/// execution would end `failed` under B's feet; without the lease expiring while A is
/// alive, B would never take the job over (timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_cannot_commit_over_its_successor_postgres() {
    let names = ["s1", "s2", "s3", "s4", "s5"];
    let dir = stockade_testkit::temp_dir("workflow-crash-ca");
    // One attempt per request, 4 s each: thawed A gives up on step 3 at once.
    let egress = "request_timeout = \"4s\"\nmax_attempts = 1\n";
    let (bots, hooks, config) = receiver(&dir, &names, TOKEN, egress).await;
    let Some((s, backend)) = sandbox(true, &config) else {
        return;
    };
    let started = Instant::now();
    let mut wf = String::from(
        "name: supplier-sync\ntrigger: manual\npermissions:\n  hosts: [127.0.0.1]\n  credentials: [supplier-token]\nsteps:\n",
    );
    for (i, hook) in hooks.iter().enumerate() {
        let id = format!("step{}", i + 1);
        let mut step = post_step(&id, i as u32 + 1, hook, "supplier-token");
        if id == "step4" {
            step = step.replace(
                "    uses: http.request\n",
                "    uses: http.request\n    retry: { attempts: 2, initial: PT0.2S, on: always }\n",
            );
        }
        wf.push_str(&step);
    }
    apply(&s, "supplier-sync.yaml", &wf);
    credential(&s, "supplier-token", "supplier-sync", true, TOKEN);
    let hits = |bot: &str| bots.received().iter().filter(|r| r.bot == bot).count();

    bots.set_fault("s3", BotFault::Hang);
    let a = Server::start(&s);
    let id = s
        .run(&["workflow", "run", "supplier-sync"])
        .expect_code(0)
        .stdout()
        .trim()
        .to_owned();
    poll(Duration::from_secs(20), "A's step 3 request", || {
        (hits("s3") == 1).then_some(())
    })
    .await;
    signal(&a, "-STOP");
    bots.set_fault("s3", BotFault::None);
    bots.set_fault("s4", BotFault::Hang);
    let b = Server::start(&s);
    poll(Duration::from_secs(20), "B's step 4 request", || {
        (hits("s4") == 1).then_some(())
    })
    .await;
    assert_eq!(
        state_of(&s, "supplier-sync", &id).as_deref(),
        Some("running")
    );

    signal(&a, "-CONT");
    poll(Duration::from_secs(15), "A to find the job taken", || {
        a.log_text()
            .contains(&format!("workflow job {id}: another worker holds it now"))
            .then_some(())
    })
    .await;
    assert_eq!(
        state_of(&s, "supplier-sync", &id).as_deref(),
        Some("running")
    );
    bots.set_fault("s4", BotFault::None);
    let state = poll(Duration::from_secs(20), "B to finish the execution", || {
        state_of(&s, "supplier-sync", &id).filter(|st| st != "running" && st != "queued")
    })
    .await;
    let shown = s
        .run(&["workflow", "show-run", &id])
        .expect_code(0)
        .stdout();
    assert_eq!(state, "succeeded", "{shown}\n{}", b.log_text());
    let labels = |step: &str| -> Vec<String> {
        shown
            .lines()
            .filter(|l| l.starts_with(&format!("{step} ")))
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect()
    };
    // A's attempt reads interrupted (its failure was not recorded); B's succeeded.
    assert_eq!(labels("step3"), ["interrupted", "succeeded"], "{shown}");
    assert_eq!(labels("step4"), ["failed", "succeeded"], "{shown}");
    for (i, name) in names.iter().enumerate() {
        let want = if matches!(*name, "s3" | "s4") { 2 } else { 1 };
        assert_eq!(hits(name), want, "{name}: {:#?}", bots.received());
        let key = format!("{id}/step{}", i + 1);
        for r in bots.received().iter().filter(|r| r.bot == *name) {
            assert_eq!(header(r, "idempotency-key"), Some(key.as_str()));
        }
    }
    drop(a);
    drop(b);
    s.run(&["audit", "verify"]).expect_code(0);
    eprintln!("frozen worker (postgres) took {:?}", started.elapsed());
    cleanup(backend).await;
    let _ = std::fs::remove_dir_all(&dir);
}
