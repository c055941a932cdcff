//! `stockade bench sync`: order sync under load (see docs/benchmarks.md).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use stockade_core::order::Marketplace;
use stockade_sandbox::OrderTally;
use stockade_sync::{Metrics, Percentiles, Summary, SyncOptions, stats};

use super::bench_sandbox_process::{BenchRig, ChildRig};
use super::bench_workers::Workers;
use super::connection::sync_failure;
use super::demo::parse_duration;
use super::live::{Rig, RigOptions, cpu_seconds, peak_rss_mb};
use crate::cli::BenchSyncArgs;
use crate::exit::Failure;

/// The figures a run measured.
struct Report {
    placed: u64,
    offered_for: Duration,
    elapsed: Duration,
    cpu: f64,
    /// CPU seconds of the simulators' process (`--sandbox-process`).
    sandbox_cpu: Option<f64>,
    stored_total: u64,
    lost: u64,
    backlog: u64,
    duplicated: i64,
    oversold: i64,
    undelivered: u64,
    recovered_by_poll: u64,
    orders_per_s: f64,
    /// Arrival → last channel confirmed: p50, p99, max.
    lat: (f64, f64, f64),
    commit: Option<Percentiles>,
    s: Summary,
    staleness: serde_json::Map<String, serde_json::Value>,
    audit_rows: u64,
    audit_ok: bool,
    /// Processes on the database (this one and `--workers`).
    processes: u32,
}

pub async fn sync(args: BenchSyncArgs) -> Result<(), Failure> {
    // Ctrl-C drops the run: the simulators' child process is killed and its files
    // removed (it also gets the terminal's SIGINT itself).
    tokio::select! {
        r = sync_run(args) => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::interrupted()),
    }
}

async fn sync_run(args: BenchSyncArgs) -> Result<(), Failure> {
    let duration = parse_duration(&args.duration, "--duration")?;
    if !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
        return Err(Failure::usage(
            "--rate must be between 0 and 1000000 orders a second",
        ));
    }
    let say = |s: String| say(args.json, s);
    let sandbox_cpus = super::bench_pin::sandbox_cpus(&args)?;
    if let Some(list) = &args.server_cpus {
        let cpus = super::bench_pin::parse_cpus(list, "--server-cpus")?;
        super::bench_pin::pin_process(&cpus)?;
    }
    if args.process.workers > 0 && (args.database_url.is_none() || !args.process.sandbox_process) {
        return Err(Failure::usage(
            "--workers needs --database-url (several processes share one PostgreSQL database) and --sandbox-process",
        ));
    }
    let rig = start_rig(&args, sandbox_cpus).await?;
    let workers = match start_workers(&args, &rig).await {
        Ok(w) => w,
        Err(e) => {
            rig.finish().await;
            return Err(e);
        }
    };
    let server_cpu = || cpu_seconds() + workers.as_ref().map_or(0.0, Workers::cpu_seconds);
    say(format!(
        "bench sync: {} orders/s offered for {}s, {} SKUs × 3 channels, {}, rate limits {}",
        args.rate,
        duration.as_secs(),
        args.skus,
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if args.realistic_limits {
            "on"
        } else {
            "lifted"
        }
    ));
    if let Some(w) = &workers {
        say(format!(
            "{} worker process(es) on the same database (pids {}): the connections' own work is shared through their leases; server CPU counts every process",
            args.process.workers,
            w.pids()
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    say(match rig.sandbox_pid() {
        Some(pid) => format!(
            "simulators in their own process (pid {pid}); server CPU counts this process only"
        ),
        None => "simulators in this process; server CPU includes theirs".to_owned(),
    });
    // The first pushes open every listing; wait for them before offering orders.
    wait_settled(&rig, Duration::from_secs(60), Duration::from_millis(50)).await;
    let metrics = rig.sync().metrics();
    metrics.order_to_confirmed.clear();
    metrics.arrival_to_commit.clear();
    let (cpu0, sandbox_cpu0) = (server_cpu(), rig.sandbox_cpu_seconds());
    let (t0, start_ms) = (Instant::now(), stockade_core::time::now_ms());
    let (stream, placed) = rig.order_stream(args.rate);
    tokio::time::sleep(duration).await;
    stream.abort();
    let offered_for = t0.elapsed();
    // Drain: every delivery answered, every listing confirmed.
    rig.flush_deliveries().await?;
    let drain = Duration::from_secs(if args.realistic_limits { 120 } else { 30 });
    let drained_by = Instant::now() + drain;
    wait_settled(&rig, drain, Duration::from_millis(20)).await;
    // The end of the measurement, unless orders are still missing: the check below reads
    // every order back (over HTTP with --sandbox-process), work that is not the server's.
    let mut end = (
        t0.elapsed(),
        stockade_core::time::now_ms(),
        server_cpu(),
        rig.sandbox_cpu_seconds(),
    );
    // A delivery the simulator retries later (its first attempt timed out on a loaded
    // machine) is neither answered nor given up yet: wait for every order to be stored,
    // within the same bound (one still missing then is reported lost).
    while Instant::now() < drained_by && tally(&rig).await.is_ok_and(|t| t.lost + t.backlog > 0) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        end = (
            t0.elapsed(),
            stockade_core::time::now_ms(),
            server_cpu(),
            rig.sandbox_cpu_seconds(),
        );
    }
    let (elapsed, end_ms) = (end.0, end.1);
    let cpu = end.2 - cpu0;
    let sandbox_cpu = end.3.zip(sandbox_cpu0).map(|(b, a)| b - a);
    let placed = placed.load(std::sync::atomic::Ordering::Relaxed);
    let (undelivered, recovered_by_poll) = poll_after_run(&rig, &say).await?;
    let t = tally(&rig).await?;
    let (lost, backlog, stored_total) = (t.lost, t.backlog, t.stored);
    let lat = metrics.order_to_confirmed.summary();
    let verify = rig.store().verify_audit(None).await?;
    let r = Report {
        placed,
        offered_for,
        elapsed,
        cpu,
        sandbox_cpu,
        stored_total,
        lost,
        backlog,
        duplicated: stats::duplicates(rig.store()).await.unwrap_or(-1),
        oversold: stats::oversold_units(rig.store()).await.unwrap_or(-1),
        undelivered,
        recovered_by_poll,
        orders_per_s: stored_total as f64 / elapsed.as_secs_f64().max(0.001),
        lat: lat.map_or((0.0, 0.0, 0.0), |p| (p.p50_ms, p.p99_ms, p.max_ms)),
        commit: metrics.arrival_to_commit.summary(),
        s: rig.sync().summary(),
        staleness: staleness(&metrics),
        audit_rows: verify.rows_checked,
        audit_ok: verify.problem.is_none(),
        processes: 1 + args.process.workers,
    };
    let mut orders = Vec::new();
    let mut histories = Vec::new();
    for m in Marketplace::ALL {
        orders.extend(rig.orders(m).await?);
        let (h, dropped) = rig.quantity_history(m).await?;
        histories.push((m, h, dropped));
    }
    let oversell =
        super::bench_oversell::measure(orders, histories, rig.on_hand(), start_ms, end_ms);
    print_report(&r, &rig, &args, &say).await;
    oversell.lines().into_iter().for_each(&say);
    if args.json {
        let mut j = json_report(&r, &args, duration);
        oversell.add_to(&mut j);
        println!("{j}");
    }
    if let Some(w) = workers {
        w.stop().await;
    }
    rig.finish().await;
    Ok(())
}

/// `--workers N`: the extra processes on the bench's database.
async fn start_workers(args: &BenchSyncArgs, rig: &BenchRig) -> Result<Option<Workers>, Failure> {
    let n = args.process.workers;
    let BenchRig::Child(child) = rig else {
        return Ok(None);
    };
    let Some(url) = child.database_url().filter(|_| n > 0) else {
        return Ok(None);
    };
    let w = Workers::start(n, child.dir(), &url, args.realistic_limits, rig.store()).await?;
    Ok(Some(w))
}

/// The sync engine's options in every process of the bench.
pub(super) fn sync_options(realistic_limits: bool) -> SyncOptions {
    SyncOptions {
        // With the real limits, deliveries the marketplace gives up on (Amazon's
        // getOrder allows 0.5 a second) are found by the poller, as in production.
        poll_interval: realistic_limits.then(|| Duration::from_secs(5)),
        poll_overlap: Duration::from_secs(30),
        reconcile_interval: None,
        ..SyncOptions::default()
    }
}

async fn start_rig(
    args: &BenchSyncArgs,
    sandbox_cpus: Option<Vec<usize>>,
) -> Result<BenchRig, Failure> {
    let opts = RigOptions {
        skus: args.skus.clamp(1, 100_000),
        // Below TikTok's 99,999 display limit, so every sale changes every channel's quantity.
        on_hand: 90_000,
        buffer: 0,
        // With the real limits a tenth of the SKUs start with 3 units: they sell out.
        low_stock_every: if args.realistic_limits { 10 } else { 0 },
        low_stock_units: args.realistic_limits.then_some(3),
        realistic_limits: args.realistic_limits,
        postgres: args.database_url.clone(),
        sync: sync_options(args.realistic_limits),
        seed: 3,
        keep: false,
    };
    if args.process.sandbox_process {
        Ok(BenchRig::Child(ChildRig::start(opts, sandbox_cpus).await?))
    } else {
        Ok(BenchRig::InProcess(Rig::start(opts).await?))
    }
}

/// Waits until the engine has nothing left to push, or `budget` has passed.
async fn wait_settled(rig: &BenchRig, budget: Duration, step: Duration) {
    let deadline = Instant::now() + budget;
    while !rig.sync().settled().await.unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(step).await;
    }
}

/// A delivery the simulator gave up on (every attempt failed, e.g. on a loaded
/// machine) is what the poller is for; with polling off here, poll once, as a running
/// server would, outside the measured time. Stockade loses an order only if it is
/// still missing after that. Returns (deliveries given up on, orders the poll stored).
async fn poll_after_run(rig: &BenchRig, say: &dyn Fn(String)) -> Result<(u64, u64), Failure> {
    let undelivered = rig.deliveries_failed().await?;
    let mut recovered_by_poll = 0u64;
    if undelivered > 0 {
        let before = stored_orders(rig).await?;
        for m in Marketplace::ALL {
            if let Err(e) = rig.sync().poll_now(m.as_str()).await {
                say(format!("polling {m} after the run failed: {e}"));
            }
        }
        recovered_by_poll = stored_orders(rig).await?.saturating_sub(before);
    }
    Ok((undelivered, recovered_by_poll))
}

/// Lost, backlog and stored: every order the server acknowledged must be stored exactly
/// once; one never acknowledged (still queued, shed with 503, given up on) is backlog,
/// the marketplace still holds it.
async fn tally(rig: &BenchRig) -> Result<OrderTally, Failure> {
    let mut total = OrderTally::default();
    for m in Marketplace::ALL {
        let ids = stats::order_ids(rig.store(), m.as_str())
            .await
            .map_err(sync_failure)?;
        let stored: HashSet<String> = ids.into_iter().collect();
        let placed = rig.orders(m).await?;
        let acked = rig.acknowledged(m).await?;
        total.add(OrderTally::count(
            placed.iter().map(|o| o.order_id.as_str()),
            &stored,
            &acked,
        ));
    }
    Ok(total)
}

/// Per connection, the staleness percentiles as JSON.
fn staleness(metrics: &Metrics) -> serde_json::Map<String, serde_json::Value> {
    let mut staleness = serde_json::Map::new();
    if let Ok(m) = metrics.staleness.lock() {
        for (name, samples) in m.iter() {
            if let Some(p) = samples.summary() {
                staleness.insert(
                    name.clone(),
                    serde_json::json!({"p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "max_ms": p.max_ms}),
                );
            }
        }
    }
    staleness
}

async fn print_report(r: &Report, rig: &BenchRig, args: &BenchSyncArgs, say: &dyn Fn(String)) {
    let (placed, lost, duplicated) = (r.placed, r.lost, r.duplicated);
    let (stored_total, undelivered) = (r.stored_total, r.undelivered);
    let (orders_per_s, (p50, p99, max), s) = (r.orders_per_s, r.lat, &r.s);
    say(format!(
        "orders placed by buyers:     {placed} in {:.1}s",
        r.offered_for.as_secs_f64()
    ));
    say(format!(
        "orders stored:               {stored_total} (lost {lost}, duplicated {duplicated}, backlog {})",
        r.backlog
    ));
    if undelivered > 0 {
        say(format!(
            "deliveries given up on:      {undelivered} (the poll after the run stored {} order(s))",
            r.recovered_by_poll
        ));
    }
    say(format!(
        "orders ingested per second:  {orders_per_s:.0} (until the last channel confirmed, {:.1}s)",
        r.elapsed.as_secs_f64()
    ));
    if r.processes > 1 {
        say(format!(
            "arrival → last channel confirmed: each process confirms the connections it owns; see change staleness below ({} processes)",
            r.processes
        ));
    } else {
        say(format!(
            "arrival → last channel confirmed: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
        ));
    }
    if let Some(c) = r.commit {
        say(format!(
            "arrival → durably stored (webhook answered): p50 {:.1} ms, p99 {:.1} ms",
            c.p50_ms, c.p99_ms
        ));
    }
    say(format!(
        "ingest batches: {} (mean {:.1} orders each)",
        s.batches,
        s.changes_applied as f64 / s.batches.max(1) as f64
    ));
    say(format!(
        "pushes: {} listing updates in {} calls, {} coalesced, {} failed rounds",
        s.pushes_confirmed, s.push_calls, s.pushes_coalesced, s.push_failures
    ));
    say(format!("oversold units: {}", r.oversold));
    for (name, n) in stats::unconfirmed_by_connection(rig.store())
        .await
        .unwrap_or_default()
    {
        say(format!("unconfirmed listings on {name}: {n}"));
    }
    for e in rig.sync().metrics().recent_errors(5) {
        say(format!("recent error: {e}"));
    }
    if args.realistic_limits {
        for (name, v) in &r.staleness {
            say(format!("staleness {name}: {v}"));
        }
    }
    let whose = if r.sandbox_cpu.is_some() {
        "the server alone"
    } else {
        "simulators included"
    };
    say(format!(
        "CPU: {:.1} s ({:.2} cores, {:.3} ms per order stored); peak RSS {:.0} MiB ({whose})",
        r.cpu,
        r.cpu / r.elapsed.as_secs_f64().max(0.001),
        cpu_ms_per_order(r),
        peak_rss_mb()
    ));
    if let Some(c) = r.sandbox_cpu {
        say(format!(
            "simulators' process CPU: {c:.1} s ({:.3} ms per order stored; not in the figure above)",
            sandbox_cpu_ms_per_order(r).unwrap_or(0.0)
        ));
    }
    say(format!(
        "audit chain: {} rows, {}",
        r.audit_rows,
        if r.audit_ok { "verified" } else { "BROKEN" }
    ));
}

fn json_report(r: &Report, args: &BenchSyncArgs, duration: Duration) -> serde_json::Value {
    serde_json::json!({
        "rate_offered": args.rate,
        "duration_s": duration.as_secs_f64(),
        "database": if args.database_url.is_some() { "postgres" } else { "sqlite" },
        "realistic_limits": args.realistic_limits,
        "orders_placed": r.placed,
        "orders_stored": r.stored_total,
        "orders_per_s": r.orders_per_s,
        "p50_ms": (r.processes == 1).then_some(r.lat.0),
        "p99_ms": (r.processes == 1).then_some(r.lat.1),
        "max_ms": (r.processes == 1).then_some(r.lat.2),
        "processes": r.processes,
        "commit_p99_ms": r.commit.map_or(0.0, |c| c.p99_ms),
        "lost": r.lost,
        "backlog": r.backlog,
        "server_cpu_ms_per_order": cpu_ms_per_order(r),
        "simulators_in_process": r.sandbox_cpu.is_none(),
        "server_cpus": args.server_cpus,
        "sandbox_cpus": args.process.sandbox_cpus,
        "sandbox_cpu_ms_per_order": sandbox_cpu_ms_per_order(r),
        "undelivered": r.undelivered,
        "recovered_by_poll": r.recovered_by_poll,
        "duplicated": r.duplicated,
        "oversold": r.oversold,
        "pushes_confirmed": r.s.pushes_confirmed,
        "push_calls": r.s.push_calls,
        "pushes_coalesced": r.s.pushes_coalesced,
        "cpu_cores": r.cpu / r.elapsed.as_secs_f64().max(0.001),
        "peak_rss_mb": peak_rss_mb(),
        "staleness": r.staleness,
        "audit_ok": r.audit_ok,
    })
}

/// CPU milliseconds per order stored (this process: with the simulators in it, their
/// share is included).
fn cpu_ms_per_order(r: &Report) -> f64 {
    r.cpu * 1000.0 / (r.stored_total.max(1) as f64)
}

/// The simulators' process's CPU milliseconds per order stored (`--sandbox-process`).
fn sandbox_cpu_ms_per_order(r: &Report) -> Option<f64> {
    r.sandbox_cpu
        .map(|c| c * 1000.0 / (r.stored_total.max(1) as f64))
}

/// A report line: to standard output, or to standard error when that carries the JSON.
pub(super) fn say(json: bool, line: String) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// `stockade bench alerts` (see `bench_alerts.rs`).
pub async fn alerts(args: crate::cli::BenchAlertsArgs) -> Result<(), Failure> {
    super::bench_alerts::run(args).await
}

/// Orders stored, all connections.
async fn stored_orders(rig: &BenchRig) -> Result<u64, Failure> {
    let n = stats::orders_stored(rig.store())
        .await
        .map_err(sync_failure)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
