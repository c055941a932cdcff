//! `stockade bench console`: the console pages' server time on a large database, and the
//! live overview's cost per polling client.
//!
//! The rig is `bench workflow`'s: a fresh dev data directory made with this binary's own
//! commands (`init`, `sku import`, `apikey create`), the bulk data from
//! [`super::bench_console_seed`], then `stockade serve` as a child process. Every page in
//! [`PAGES`] is requested with an admin API key; the server time of a request is the
//! `Server-Timing: app;dur=` the server adds (`stockade_server::server_timing`), so the
//! network and this client are not counted. A page answering 404 (not built yet) is
//! skipped with a message: pages join the bench by being added to [`PAGES`], nowhere else.
//! The live overview's cost is the child's CPU (from `/proc/<pid>/stat`) while `--clients`
//! clients poll `/overview/live` every 5 s, minus the idle server's CPU over as long.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_core::SecretString;
use stockade_egress::{Egress, Request};

use super::bench::say;
use super::bench_console_seed::{self as seed, sku_name};
use super::bench_workflow::{
    Rig, client, path_str, percentile, process_cpu_seconds, start_server, write,
};
use super::live::temp_dir;
use crate::cli::BenchConsoleArgs;
use crate::exit::Failure;

/// Every console page the bench requests: a name and a path. Pages of other parts of the
/// console join here; until they exist they answer 404 and are skipped.
pub const PAGES: &[(&str, &str)] = &[
    ("overview", "/overview"),
    ("overview/live", "/overview/live"),
    ("inventory", "/inventory"),
    ("inventory low", "/inventory?filter=low"),
    ("inventory oversold", "/inventory?filter=oversold"),
    ("inventory drifting", "/inventory?filter=drifting"),
    ("inventory search", "/inventory?q=BENCH-42"),
    ("inventory last page", "/inventory?page=200"),
    ("inventory.csv", "/inventory.csv?filter=drifting"),
    ("api stock", "/api/v1/stock?limit=50"),
    ("api stock filter", "/api/v1/stock?filter=low&limit=50"),
    ("api stock sku", "/api/v1/stock/BENCH-42"),
    ("audit", "/audit"),
    ("audit filtered", "/audit?action=bench.seed"),
    ("orders", "/orders"),
    ("orders channel", "/orders?channel=2"),
    ("orders status", "/orders?status=placed"),
    ("orders channel+status", "/orders?channel=3&status=placed"),
    ("orders search id", "/orders?q=BO-424242"),
    ("orders search sku", "/orders?q=BENCH-42"),
    ("order", "/orders/424242"),
    ("api orders", "/api/v1/orders?limit=50"),
    ("executions", "/executions"),
    ("connections", "/connections"),
    ("workflows", "/workflows"),
    ("alerts", "/alerts"),
    ("security", "/security"),
    ("compliance", "/compliance"),
];

/// A CSV export: a download of the whole filter, measured but not held to a page's target.
fn is_download(path: &str) -> bool {
    path.split('?').next().is_some_and(|p| p.ends_with(".csv"))
}

/// How often a live client polls (the overview's htmx interval).
const POLL: Duration = Duration::from_secs(5);

/// One page's figures.
struct PageFigures {
    name: &'static str,
    path: &'static str,
    p50: f64,
    p99: f64,
    max: f64,
    requests: usize,
}

fn check_args(args: &BenchConsoleArgs) -> Result<(), Failure> {
    if !(1..=1_000_000).contains(&args.skus) {
        return Err(Failure::usage("--skus must be between 1 and 1000000"));
    }
    if args.orders > 100_000_000 {
        return Err(Failure::usage("--orders must be at most 100000000"));
    }
    if !(1..=100_000).contains(&args.requests) {
        return Err(Failure::usage("--requests must be between 1 and 100000"));
    }
    if !(1..=100_000).contains(&args.clients) {
        return Err(Failure::usage("--clients must be between 1 and 100000"));
    }
    if !(1..=3600).contains(&args.live_seconds) {
        return Err(Failure::usage("--live-seconds must be between 1 and 3600"));
    }
    Ok(())
}

pub async fn console(args: BenchConsoleArgs) -> Result<(), Failure> {
    check_args(&args)?;
    let say = |s: String| say(args.json, s);
    let backend = if args.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    say(format!(
        "bench console: {} SKUs, {} orders on {backend}; {} requests per page; {} live clients for {}s",
        args.skus, args.orders, args.requests, args.clients, args.live_seconds
    ));
    let mut rig = new_rig(&args)?;
    let result = async {
        let seed_s = prepare(&mut rig, &args, &say).await?;
        measure(&rig, &args, seed_s, backend, &say).await
    }
    .await;
    rig.finish().await;
    result
}

fn new_rig(args: &BenchConsoleArgs) -> Result<Rig, Failure> {
    let dir = temp_dir("stockade-bench-console")?;
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
    Ok(Rig {
        data: dir.join("data"),
        dir,
        database_url,
        pg_schema,
        server: None,
        base: String::new(),
        api_key: String::new(),
    })
}

/// The data directory, the catalogue, the bulk data, the key and the server; the seconds
/// the bulk data took.
async fn prepare(
    rig: &mut Rig,
    args: &BenchConsoleArgs,
    say: &dyn Fn(String),
) -> Result<f64, Failure> {
    rig.run(&["init"])?;
    let mut csv = String::with_capacity(args.skus * 20);
    csv.push_str("sku,on_hand\n");
    for i in 0..args.skus {
        csv.push_str(&format!("{},{}\n", sku_name(i), i % 40));
    }
    let csv_path = rig.dir.join("catalog.csv");
    write(&csv_path, &csv)?;
    let t0 = Instant::now();
    rig.run(&["sku", "import", &path_str(&csv_path)?])?;
    say(format!(
        "catalogue: {} SKUs imported in {:.1}s",
        args.skus,
        t0.elapsed().as_secs_f64()
    ));
    let out = rig.run(&[
        "apikey",
        "create",
        "--name",
        "bench",
        "--role",
        "admin",
        "--expires",
        "1d",
    ])?;
    rig.api_key = out
        .split_whitespace()
        .find(|w| w.starts_with("stk_"))
        .ok_or_else(|| Failure::runtime("bench set-up: `apikey create` printed no key"))?
        .to_owned();
    let store = rig.open_store().await?;
    let t0 = Instant::now();
    let now = stockade_core::time::now_ms();
    let mut seeded = seed::seed(&store, args.skus, args.orders, now, say).await;
    if seeded.is_ok() && args.database_url.is_some() {
        seeded = seed::analyze(&store).await;
    }
    store.close().await;
    seeded?;
    let seed_s = t0.elapsed().as_secs_f64();
    say(format!(
        "bulk data: {} listings, {} orders and lines in {seed_s:.1}s",
        args.skus * 3,
        args.orders
    ));
    start_server(rig)?;
    Ok(seed_s)
}

/// One GET: its status and the server time it reported (ms).
async fn get(http: &Egress, url: &str, auth: &SecretString) -> Result<(u16, Option<f64>), Failure> {
    let req =
        Request::get(url, "/bench/console", "benchConsole").secret_header("authorization", auth);
    let resp = http
        .send(req)
        .await
        .map_err(|e| Failure::runtime(format!("request failed: {e}")))?;
    let timing = resp
        .headers
        .get(stockade_server::server_timing::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(stockade_server::server_timing::parse);
    Ok((resp.status.as_u16(), timing))
}

/// Request one page `n` times (after 3 warm-up requests); `None` when it answers 404.
async fn page(
    http: &Egress,
    base: &str,
    auth: &SecretString,
    (name, path): (&'static str, &'static str),
    n: usize,
) -> Result<Option<PageFigures>, Failure> {
    let url = format!("{base}{path}");
    for _ in 0..3 {
        match get(http, &url, auth).await? {
            (404, _) => return Ok(None),
            (200, Some(_)) => {}
            (status, _) => {
                return Err(Failure::runtime(format!(
                    "{path} answered {status} (or without Server-Timing)"
                )));
            }
        }
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        match get(http, &url, auth).await? {
            (200, Some(t)) => ms.push(t),
            (status, _) => return Err(Failure::runtime(format!("{path} answered {status}"))),
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(Some(PageFigures {
        name,
        path,
        p50: percentile(&ms, 0.50),
        p99: percentile(&ms, 0.99),
        max: ms.last().copied().unwrap_or(0.0),
        requests: n,
    }))
}

/// The live overview: `clients` clients each polling every 5 s (spread evenly over the
/// interval) for `secs`; the requests answered.
async fn live_load(
    http: &Egress,
    base: &str,
    auth: &SecretString,
    clients: usize,
    secs: u64,
) -> u64 {
    let url = Arc::new(format!("{base}/overview/live"));
    let auth = Arc::new(auth.clone());
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let (http, url, auth, done) = (http.clone(), url.clone(), auth.clone(), done.clone());
        let offset = POLL.mul_f64(i as f64 / clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut next = Instant::now() + offset;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                if let Ok((200, _)) = get(&http, &url, &auth).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                next += POLL;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // The window is `secs` long whatever the last poll's time.
    tokio::time::sleep_until(end.into()).await;
    done.load(Ordering::Relaxed)
}

async fn measure(
    rig: &Rig,
    args: &BenchConsoleArgs,
    seed_s: f64,
    backend: &str,
    say: &dyn Fn(String),
) -> Result<(), Failure> {
    let http = client(rig)?;
    let auth = SecretString::from(format!("Bearer {}", rig.api_key));
    let mut pages = Vec::new();
    let mut skipped = Vec::new();
    for &p in PAGES {
        match page(&http, &rig.base, &auth, p, args.requests).await? {
            Some(f) => {
                say(format!(
                    "{:<22} server time p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests)",
                    f.name, f.p50, f.p99, f.max, f.requests
                ));
                pages.push(f);
            }
            None => {
                say(format!(
                    "{:<22} skipped: {} answers 404 (not built yet)",
                    p.0, p.1
                ));
                skipped.push(p.0);
            }
        }
    }
    let pid = rig
        .server_pid()
        .ok_or_else(|| Failure::runtime("the server is not running"))?;
    // The idle server's own CPU (sync engine, job workers), over up to 10 s.
    let idle_s = args.live_seconds.min(10);
    let (c0, t0) = (process_cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(idle_s)).await;
    let idle_rate = (process_cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64();
    let (c0, t0) = (process_cpu_seconds(pid), Instant::now());
    let polls = live_load(&http, &rig.base, &auth, args.clients, args.live_seconds).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (process_cpu_seconds(pid) - c0 - idle_rate * elapsed).max(0.0);
    let per_client = cpu * 1000.0 / (args.clients as f64 * elapsed);
    let per_poll = cpu * 1000.0 / polls.max(1) as f64;
    say(format!(
        "live overview: {} clients polling every 5 s for {elapsed:.0}s, {polls} polls: server CPU {per_client:.3} ms per client per second ({per_poll:.2} ms per poll; idle server {:.2} ms/s subtracted; CPU is read in 10 ms ticks)",
        args.clients,
        idle_rate * 1000.0
    ));
    // Downloads (the CSV exports: the whole filter, not a page) are measured and shown,
    // but the 50 ms target is for pages.
    let worst = pages
        .iter()
        .filter(|p| !is_download(p.path))
        .map(|p| p.p99)
        .fold(0.0, f64::max);
    say(format!(
        "targets: every page p99 < 50 ms (CSV downloads not counted): {} (worst {worst:.2} ms); live < 1 ms per client per second: {}",
        if worst < 50.0 { "met" } else { "NOT met" },
        if per_client < 1.0 { "met" } else { "NOT met" }
    ));
    if args.json {
        let j = json!({
            "bench": "console",
            "backend": backend,
            "skus": args.skus,
            "orders": args.orders,
            "seed_s": seed_s,
            "pages": pages.iter().map(|p| json!({
                "page": p.name, "path": p.path, "requests": p.requests,
                "p50_ms": p.p50, "p99_ms": p.p99, "max_ms": p.max,
                "download": is_download(p.path),
            })).collect::<Vec<Value>>(),
            "skipped": skipped,
            "live": {
                "clients": args.clients,
                "seconds": elapsed,
                "polls": polls,
                "cpu_ms_per_client_per_s": per_client,
                "cpu_ms_per_poll": per_poll,
                "idle_cpu_ms_per_s": idle_rate * 1000.0,
            },
            "worst_p99_ms": worst,
        });
        println!("{j}");
    }
    Ok(())
}
