//! `stockade bench workflow`: workflow executions through the real server, measured from
//! outside.
//!
//! The rig is what a seller runs: a fresh dev data directory made with this binary's own
//! commands (`init`, `sku import`, `apikey create`, `workflow apply`), then `stockade
//! serve` as a child process. The load comes from this process over HTTPS keep-alive
//! (through the egress gateway, like every outbound request of the program):
//! `--concurrency` clients each post a webhook and wait for its answer (the workflow
//! answers with its result), so a latency is from the request to the finished, persisted
//! execution. The server's CPU is read from `/proc/<pid>/stat` of the child, so the load
//! generator's own work is not counted.
//!
//! The workflow: webhook (API key) → an expression computes the delta → `stock.adjust`
//! (a ledger row and an audit row) → `audit.note`. Afterwards every execution is checked
//! in the database: `lost` counts answered executions that did not succeed, `failed`
//! counts refused requests and failed executions, and the SKUs' on-hand must have moved by
//! exactly the units the successful executions added.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_core::{Environment, SecretString};
use stockade_egress::{Caller, Egress, EgressConfig, Gateway, Request};
use stockade_store::{DatabaseUrl, Store, StoreOptions, sql_params};

use super::bench::say;
use super::demo::parse_duration;
use super::live::temp_dir;
use crate::cli::BenchWorkflowArgs;
use crate::exit::Failure;

const WORKFLOW: &str = "bench-restock";
const PATH: &str = "bench-restock";

/// The `--script` variant's first step: the delta computed by JavaScript (an n8n-style
/// Code node body) instead of an expression.
const SCRIPT_STEP: &str = "  - id: compute
    uses: script
    with:
      input: \"{{ trigger.body }}\"
      code: |
        const b = $input.first().json;
        return [{ json: { delta: b.cartons * b.per_carton, ref: String(b.ref) } }];
";

/// The script the pool figure runs (the same body).
const POOL_SCRIPT: &str = "const b = $input.first().json;\nreturn [{ json: { delta: b.cartons * b.per_carton, ref: String(b.ref) } }];";

fn workflow_yaml(script: bool) -> String {
    let base = workflow_yaml_base();
    if !script {
        return base;
    }
    base.replace("steps:\n", &format!("steps:\n{SCRIPT_STEP}"))
        .replace(
            "delta: \"{{ trigger.body.cartons * trigger.body.per_carton }}\"",
            "delta: \"{{ steps.compute.output.items[0].delta }}\"",
        )
}

fn workflow_yaml_base() -> String {
    format!(
        "name: {WORKFLOW}
description: Benchmark - a supplier posts received units; adjust the SKU and note it.
trigger:
  webhook:
    path: {PATH}
    auth: api_key
    respond: result
on_error: builtin.alert
steps:
  - id: adjust
    uses: stock.adjust
    with:
      sku: \"{{{{ trigger.body.sku }}}}\"
      delta: \"{{{{ trigger.body.cartons * trigger.body.per_carton }}}}\"
      reason: \"received {{{{ trigger.body.ref }}}}\"
  - id: note
    uses: audit.note
    with:
      subject: \"sku {{{{ trigger.body.sku }}}}\"
      message: \"received {{{{ trigger.body.cartons * trigger.body.per_carton }}}} unit(s)\"
"
    )
}

/// The rig: a data directory and the server running on it.
pub(super) struct Rig {
    pub(super) dir: PathBuf,
    pub(super) data: PathBuf,
    pub(super) database_url: Option<String>,
    pub(super) pg_schema: Option<(String, String)>,
    pub(super) server: Option<Child>,
    pub(super) base: String,
    pub(super) api_key: String,
}

impl Rig {
    fn command(&self) -> Result<Command, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::runtime(format!("cannot find this program's path: {e}")))?;
        let mut cmd = Command::new(exe);
        for (k, _) in std::env::vars() {
            if k.starts_with("STOCKADE_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("STOCKADE_ENV", "dev")
            .env("STOCKADE_DATA_DIR", &self.data)
            .env("STOCKADE_LOG", "warn")
            .current_dir(&self.dir);
        if let Some(url) = &self.database_url {
            cmd.env("STOCKADE_DATABASE_URL", url);
        }
        Ok(cmd)
    }

    /// Run `stockade ARGS` to the end; its standard output.
    pub(super) fn run(&self, args: &[&str]) -> Result<String, Failure> {
        let out = self
            .command()?
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Failure::runtime(format!("cannot run stockade {}: {e}", args[0])))?;
        if !out.status.success() {
            return Err(Failure::runtime(format!(
                "bench set-up: `stockade {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(super) fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    pub(super) async fn open_store(&self) -> Result<Store, Failure> {
        let url = match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data.join("stockade.db").display()),
        };
        let url = DatabaseUrl::parse(&url)?;
        Ok(Store::open(&url, Environment::Dev, &StoreOptions::default()).await?)
    }

    /// Stop the server (SIGTERM, then SIGKILL after 20 s) and remove the rig.
    pub(super) async fn finish(mut self) {
        if let Some(mut child) = self.server.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        if let Some((base, schema)) = &self.pg_schema {
            stockade_store::testing::drop_postgres_schema(base, schema).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_rig(args: &BenchWorkflowArgs) -> Result<Rig, Failure> {
    let dir = temp_dir("stockade-bench-workflow")?;
    let pg_schema = match &args.database_url {
        None => None,
        Some(base) => {
            let mut b = [0u8; 6];
            aws_lc_rs::rand::fill(&mut b)
                .map_err(|_| Failure::runtime("the system random number generator failed"))?;
            Some((base.clone(), format!("stockade_bench_{}", hex::encode(b))))
        }
    };
    let database_url = pg_schema.as_ref().map(|(base, schema)| {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}stockade_schema={schema}")
    });
    let mut rig = Rig {
        data: dir.join("data"),
        dir,
        database_url,
        pg_schema,
        server: None,
        base: String::new(),
        api_key: String::new(),
    };
    rig.run(&["init"])?;
    if let Some(workers) = args.workers {
        // After what `init` wrote (the environment line).
        let toml = rig.data.join("stockade.toml");
        let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
        text.push_str(&format!("\n[workflows]\nworkers = {workers}\n"));
        write(&toml, &text)?;
    }
    let mut csv = String::from("sku,on_hand\n");
    for i in 0..args.skus {
        csv.push_str(&format!("BENCH-{i:04},0\n"));
    }
    let csv_path = rig.dir.join("catalog.csv");
    write(&csv_path, &csv)?;
    rig.run(&["sku", "import", &path_str(&csv_path)?])?;
    let wf_path = rig.dir.join("bench-restock.yaml");
    write(&wf_path, &workflow_yaml(args.script))?;
    rig.run(&["workflow", "apply", &path_str(&wf_path)?])?;
    let out = rig.run(&[
        "apikey",
        "create",
        "--name",
        "bench",
        "--role",
        "operator",
        "--expires",
        "1d",
    ])?;
    rig.api_key = out
        .split_whitespace()
        .find(|w| w.starts_with("stk_"))
        .ok_or_else(|| Failure::runtime("bench set-up: `apikey create` printed no key"))?
        .to_owned();
    start_server(&mut rig)?;
    Ok(rig)
}

pub(super) fn start_server(rig: &mut Rig) -> Result<(), Failure> {
    let mut child = rig
        .command()?
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Failure::runtime(format!("cannot start stockade serve: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure::runtime("stockade serve has no output"))?;
    rig.server = Some(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    rig.base = url.trim().trim_end_matches('/').to_owned();
                    break;
                }
            }
            _ => {
                return Err(Failure::runtime(
                    "stockade serve stopped before it listened",
                ));
            }
        }
    }
    // Keep reading (and dropping) its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(())
}

pub(super) fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, text)
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))
}

pub(super) fn path_str(path: &Path) -> Result<String, Failure> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::runtime("the temporary directory's path is not UTF-8"))
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
pub(super) fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    /// Execution id → units it added, for every request answered 200 or 202.
    answered: BTreeMap<String, i64>,
    refused: u64,
    still_running: u64,
}

/// The load generator's HTTPS client: the egress gateway (all outbound HTTP goes through
/// it), allowed to reach only the server's loopback address, trusting its dev CA, with
/// no retries and no rate limit of its own (the server is what is measured).
pub(super) fn client(rig: &Rig) -> Result<Egress, Failure> {
    let ca = std::fs::read_to_string(rig.data.join("tls/dev-ca.pem"))
        .map_err(|e| Failure::runtime(format!("cannot read the server's dev CA: {e}")))?;
    let host = rig.base.trim_start_matches("https://").to_owned();
    let mut config = EgressConfig::new(Environment::Dev);
    config.allowed_hosts = vec![host.clone()];
    config.extra_root_pems = vec![ca];
    config.max_attempts = 1;
    config.host_rate = (1_000_000.0, 1_000_000);
    config.breaker_failures = u32::MAX;
    let gateway = Gateway::new(config, None)
        .map_err(|e| Failure::runtime(format!("cannot build the HTTPS client: {e}")))?;
    Ok(gateway.client(Caller::System("bench"), &[host.as_str()]))
}

async fn load(
    rig: &Rig,
    http: Egress,
    concurrency: usize,
    duration: Duration,
    skus: usize,
) -> Tally {
    let url = Arc::new(format!("{}/hooks/workflows/{PATH}", rig.base));
    let auth = Arc::new(SecretString::from(format!("Bearer {}", rig.api_key)));
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (http, url, auth, next) = (http.clone(), url.clone(), auth.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let (cartons, per_carton) = (1 + (n % 3) as i64, 2_i64);
                let body = json!({
                    "sku": format!("BENCH-{:04}", n as usize % skus.max(1)),
                    "cartons": cartons,
                    "per_carton": per_carton,
                    "ref": format!("ASN-{n}"),
                });
                let t0 = Instant::now();
                let req = Request::post(url.as_str(), "/hooks/workflows/{path}", "benchWebhook")
                    .secret_header("authorization", &auth)
                    .json(&body);
                let Ok(resp) = http.send(req).await else {
                    t.refused += 1;
                    continue;
                };
                let status = resp.status.as_u16();
                let answer: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                let id = answer["execution"].as_str().map(str::to_owned);
                match (status, id) {
                    (200 | 202, Some(id)) => {
                        if status == 200 {
                            t.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            t.still_running += 1;
                        }
                        t.answered.insert(id, cartons * per_carton);
                    }
                    _ => t.refused += 1,
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    for task in tasks {
        if let Ok(t) = task.await {
            all.latencies_ms.extend(t.latencies_ms);
            all.answered.extend(t.answered);
            all.refused += t.refused;
            all.still_running += t.still_running;
        }
    }
    all
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// What the database says about the executions the clients saw answered.
struct Checked {
    succeeded: u64,
    failed: u64,
    lost: u64,
    on_hand_ok: bool,
}

/// Units on hand across the bench's SKUs, from the ledger.
async fn ledger_units(store: &Store) -> Result<i64, Failure> {
    Ok(store
        .count(
            "SELECT CAST(COALESCE(SUM(on_hand_delta), 0) AS BIGINT) FROM stock_ledger WHERE sku LIKE $1",
            sql_params!["BENCH-%"],
        )
        .await?)
}

/// `before`: the ledger's units when the measured run started.
async fn check(rig: &Rig, tally: &Tally, before: i64) -> Result<Checked, Failure> {
    let store = rig.open_store().await?;
    // Executions answered 202 may still be running: give them a bound to end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut succeeded, mut failed, mut lost);
    loop {
        (succeeded, failed, lost) = (0, 0, 0);
        let mut running = 0;
        for id in tally.answered.keys() {
            match store.job(id).await?.map(|j| j.state) {
                Some(stockade_store::JobState::Succeeded) => succeeded += 1,
                Some(stockade_store::JobState::Failed) => failed += 1,
                Some(_) => running += 1,
                None => lost += 1,
            }
        }
        if running == 0 || Instant::now() > deadline {
            lost += running;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Units added by the executions that succeeded must be exactly what the ledger holds.
    let mut expected = 0i64;
    for (id, units) in &tally.answered {
        if let Some(job) = store.job(id).await?
            && job.state == stockade_store::JobState::Succeeded
        {
            expected += units;
        }
    }
    let added = ledger_units(&store).await? - before;
    store.close().await;
    Ok(Checked {
        succeeded,
        failed,
        lost,
        on_hand_ok: added == expected,
    })
}

pub async fn workflow(args: BenchWorkflowArgs) -> Result<(), Failure> {
    let duration = parse_duration(&args.duration, "--duration")?;
    if !(1..=4096).contains(&args.concurrency) {
        return Err(Failure::usage("--concurrency must be between 1 and 4096"));
    }
    if !(1..=100_000).contains(&args.skus) {
        return Err(Failure::usage("--skus must be between 1 and 100000"));
    }
    let say = |s: String| say(args.json, s);
    say(format!(
        "bench workflow: webhook → {} → stock.adjust → audit.note, {} clients for {}s, {}",
        if args.script {
            "script (JavaScript)"
        } else {
            "expression"
        },
        args.concurrency,
        duration.as_secs(),
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    ));
    if args.script {
        pool_figure(&say);
    }
    let rig = start_rig(&args).await?;
    let result = measure(&rig, &args, duration, &say).await;
    rig.finish().await;
    result
}

async fn measure(
    rig: &Rig,
    args: &BenchWorkflowArgs,
    duration: Duration,
    say: &dyn Fn(String),
) -> Result<(), Failure> {
    let http = client(rig)?;
    // Warm up: connections open, statements prepared, the workflow cached.
    let warm = load(
        rig,
        http.clone(),
        args.concurrency.min(8),
        Duration::from_millis(500),
        args.skus,
    )
    .await;
    // Its executions end before the measured run starts (their units are not counted).
    check(rig, &warm, 0).await?;
    let before = {
        let store = rig.open_store().await?;
        let units = ledger_units(&store).await?;
        store.close().await;
        units
    };
    let pid = rig
        .server_pid()
        .ok_or_else(|| Failure::runtime("the server is not running"))?;
    let cpu0 = process_cpu_seconds(pid);
    let t0 = Instant::now();
    let mut tally = load(rig, http, args.concurrency, duration, args.skus).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds(pid) - cpu0;
    let checked = check(rig, &tally, before).await?;
    tally.latencies_ms.sort_by(f64::total_cmp);
    let done = checked.succeeded.max(1) as f64;
    let per_s = checked.succeeded as f64 / elapsed;
    let (p50, p99) = (
        percentile(&tally.latencies_ms, 0.50),
        percentile(&tally.latencies_ms, 0.99),
    );
    let cpu_ms = cpu * 1000.0 / done;
    let failed = checked.failed + tally.refused;
    say(format!(
        "executions {} in {elapsed:.1}s = {per_s:.0}/s · latency p50 {p50:.1} ms p99 {p99:.1} ms · server CPU {cpu_ms:.2} ms/execution ({cpu:.1} s)",
        checked.succeeded
    ));
    say(format!(
        "failed {failed} (refused {}, failed executions {}) · lost {} · answered after the result bound {} · ledger {}",
        tally.refused,
        checked.failed,
        checked.lost,
        tally.still_running,
        if checked.on_hand_ok {
            "matches every successful execution"
        } else {
            "DOES NOT match the executions"
        }
    ));
    if args.json {
        let j = json!({
            "bench": if args.script { "workflow-script" } else { "workflow" },
            "backend": if args.database_url.is_some() { "postgres" } else { "sqlite" },
            "concurrency": args.concurrency,
            "duration_s": elapsed,
            "executions": checked.succeeded,
            "executions_per_s": per_s,
            "p50_ms": p50,
            "p99_ms": p99,
            "cpu_ms_per_execution": cpu_ms,
            "failed": failed,
            "lost": checked.lost,
            "ledger_ok": checked.on_hand_ok,
        });
        println!("{j}");
    }
    if checked.lost > 0 || !checked.on_hand_ok {
        return Err(Failure::runtime(
            "executions were lost or the ledger does not match them",
        ));
    }
    Ok(())
}

/// The script engine pool on its own, in this process: CPU per pooled run of the bench's
/// script (a fresh context, the data API, the run, the JSON out), single-threaded.
fn pool_figure(say: &dyn Fn(String)) {
    let pool = stockade_script::Pool::new(1);
    let job = stockade_script::Job {
        code: POOL_SCRIPT.to_owned(),
        input: json!({ "sku": "BENCH-0001", "cartons": 3, "per_carton": 2, "ref": "ASN-1" }),
        ..stockade_script::Job::default()
    };
    for _ in 0..50 {
        let _ = pool.run(&job);
    }
    let runs = 1_000u32;
    let pid = std::process::id();
    let (cpu0, t0) = (process_cpu_seconds(pid), Instant::now());
    let ok = (0..runs).filter(|_| pool.run(&job).is_ok()).count();
    let cpu = process_cpu_seconds(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let stats = pool.stats();
    say(format!(
        "script pool: {ok}/{runs} runs · {:.3} ms CPU/run · {:.3} ms wall/run · runtimes created {} (reused {})",
        cpu * 1000.0 / f64::from(runs),
        wall * 1000.0 / f64::from(runs),
        stats.created,
        stats.reused
    ));
}
