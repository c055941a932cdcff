//! `stockade bench sync`: order sync under load (see docs/benchmarks.md).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use stockade_core::order::Marketplace;
use stockade_sync::{SyncOptions, stats};

use super::connection::sync_failure;
use super::demo::parse_duration;
use super::live::{Rig, RigOptions, cpu_seconds, peak_rss_mb};
use crate::cli::BenchSyncArgs;
use crate::exit::Failure;

pub async fn sync(args: BenchSyncArgs) -> Result<(), Failure> {
    let duration = parse_duration(&args.duration, "--duration")?;
    if !(args.rate > 0.0 && args.rate <= 1_000_000.0) {
        return Err(Failure::usage(
            "--rate must be between 0 and 1000000 orders a second",
        ));
    }
    let say = |s: String| {
        if args.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    let rig = Rig::start(RigOptions {
        skus: args.skus.clamp(1, 100_000),
        // Below TikTok's 99,999 display limit, so every sale changes every channel's quantity.
        on_hand: 90_000,
        buffer: 0,
        low_stock_every: 0,
        realistic_limits: args.realistic_limits,
        postgres: args.database_url.clone(),
        sync: SyncOptions {
            // With the real limits, deliveries the marketplace gives up on (Amazon's
            // getOrder allows 0.5 a second) are found by the poller, as in production.
            poll_interval: args.realistic_limits.then(|| Duration::from_secs(5)),
            poll_overlap: Duration::from_secs(30),
            reconcile_interval: None,
            ..SyncOptions::default()
        },
        seed: 3,
        keep: false,
    })
    .await?;
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
    // The first pushes open every listing; wait for them before offering orders.
    let warm = Instant::now() + Duration::from_secs(60);
    while !rig.sync.settled().await.unwrap_or(false) && Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = rig.sync.metrics();
    metrics.order_to_confirmed.clear();
    metrics.arrival_to_commit.clear();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let (stream, placed) = rig.order_stream(args.rate, false);
    tokio::time::sleep(duration).await;
    stream.abort();
    let offered_for = t0.elapsed();
    // Drain: every delivery answered, every listing confirmed.
    rig.sb.flush_deliveries().await;
    let drain_deadline =
        Instant::now() + Duration::from_secs(if args.realistic_limits { 120 } else { 30 });
    while !rig.sync.settled().await.unwrap_or(false) && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let placed = placed.load(std::sync::atomic::Ordering::Relaxed);
    // A delivery the simulator gave up on (every attempt failed, e.g. on a loaded
    // machine) is what the poller is for; with polling off here, poll once, as a running
    // server would, outside the measured time. Stockade loses an order only if it is
    // still missing after that.
    let undelivered = rig.sb.delivery_stats().failed;
    let mut recovered_by_poll = 0u64;
    if undelivered > 0 {
        let before = stored_orders(&rig).await?;
        for m in Marketplace::ALL {
            if let Err(e) = rig.sync.poll_now(m.as_str()).await {
                say(format!("polling {m} after the run failed: {e}"));
            }
        }
        recovered_by_poll = stored_orders(&rig).await?.saturating_sub(before);
    }

    // Lost and duplicated: every simulator order must be stored exactly once.
    let mut lost = 0u64;
    let mut stored_total = 0u64;
    for m in Marketplace::ALL {
        let ids = stats::order_ids(rig.store(), m.as_str())
            .await
            .map_err(sync_failure)?;
        stored_total += ids.len() as u64;
        let stored: HashSet<String> = ids.into_iter().collect();
        for o in rig.sb.orders(m) {
            if !stored.contains(&o.order_id) {
                lost += 1;
            }
        }
    }
    let duplicated = stats::duplicates(rig.store()).await.unwrap_or(-1);
    let oversold = stats::oversold_units(rig.store()).await.unwrap_or(-1);
    let s = rig.sync.summary();
    let lat = metrics.order_to_confirmed.summary();
    let commit = metrics.arrival_to_commit.summary();
    let orders_per_s = stored_total as f64 / elapsed.as_secs_f64().max(0.001);
    let (p50, p99, max) = lat.map_or((0.0, 0.0, 0.0), |p| (p.p50_ms, p.p99_ms, p.max_ms));
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
    let verify = rig.store().verify_audit(None).await?;
    say(format!(
        "orders placed by buyers:     {placed} in {:.1}s",
        offered_for.as_secs_f64()
    ));
    say(format!(
        "orders stored:               {stored_total} (lost {lost}, duplicated {duplicated})"
    ));
    if undelivered > 0 {
        say(format!(
            "deliveries given up on:      {undelivered} (the poll after the run stored {recovered_by_poll} order(s))"
        ));
    }
    say(format!(
        "orders ingested per second:  {orders_per_s:.0} (until the last channel confirmed, {:.1}s)",
        elapsed.as_secs_f64()
    ));
    say(format!(
        "arrival → last channel confirmed: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    ));
    if let Some(c) = commit {
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
    say(format!("oversold units: {oversold}"));
    for (name, n) in stats::unconfirmed_by_connection(rig.store())
        .await
        .unwrap_or_default()
    {
        say(format!("unconfirmed listings on {name}: {n}"));
    }
    for e in metrics.recent_errors(5) {
        say(format!("recent error: {e}"));
    }
    if args.realistic_limits {
        for (name, v) in &staleness {
            say(format!("staleness {name}: {v}"));
        }
    }
    say(format!(
        "CPU: {cpu:.1} s ({:.2} cores); peak RSS {:.0} MiB (simulators included)",
        cpu / elapsed.as_secs_f64().max(0.001),
        peak_rss_mb()
    ));
    say(format!(
        "audit chain: {} rows, {}",
        verify.rows_checked,
        if verify.problem.is_none() {
            "verified"
        } else {
            "BROKEN"
        }
    ));
    if args.json {
        let obj = serde_json::json!({
            "rate_offered": args.rate,
            "duration_s": duration.as_secs_f64(),
            "database": if args.database_url.is_some() { "postgres" } else { "sqlite" },
            "realistic_limits": args.realistic_limits,
            "orders_placed": placed,
            "orders_stored": stored_total,
            "orders_per_s": orders_per_s,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max,
            "commit_p99_ms": commit.map_or(0.0, |c| c.p99_ms),
            "lost": lost,
            "undelivered": undelivered,
            "recovered_by_poll": recovered_by_poll,
            "duplicated": duplicated,
            "oversold": oversold,
            "pushes_confirmed": s.pushes_confirmed,
            "push_calls": s.push_calls,
            "pushes_coalesced": s.pushes_coalesced,
            "cpu_cores": cpu / elapsed.as_secs_f64().max(0.001),
            "peak_rss_mb": peak_rss_mb(),
            "staleness": staleness,
            "audit_ok": verify.problem.is_none(),
        });
        println!("{obj}");
    }
    rig.finish().await;
    Ok(())
}

/// `stockade bench alerts` (see `bench_alerts.rs`).
pub async fn alerts(args: crate::cli::BenchAlertsArgs) -> Result<(), Failure> {
    super::bench_alerts::run(args).await
}

/// Orders stored, all connections.
async fn stored_orders(rig: &Rig) -> Result<u64, Failure> {
    let n = stats::orders_stored(rig.store())
        .await
        .map_err(sync_failure)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
