//! `stockade demo`: the live sync on a throw-away dev environment (see [`super::live`]).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use stockade_sync::SyncOptions;

use super::live::{Rig, RigOptions};
use crate::cli::DemoArgs;
use crate::exit::Failure;

pub fn parse_duration(text: &str, flag: &str) -> Result<Duration, Failure> {
    match stockade_access::service::parse_duration(text) {
        Ok(Some(s)) => Ok(Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX))),
        _ => Err(Failure::usage(format!(
            "{flag} {text:?}: use a duration like 30s, 5m or 1h"
        ))),
    }
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let duration = args
        .duration
        .as_deref()
        .map(|d| parse_duration(d, "--duration"))
        .transpose()?;
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        return Err(Failure::usage(
            "--rate must be between 0 and 100000 orders a second",
        ));
    }
    println!(
        "Starting a throw-away dev environment with the TikTok Shop, Amazon and eBay simulators…"
    );
    let rig = Rig::start(RigOptions {
        skus: args.skus.clamp(1, 10_000),
        on_hand: 200,
        buffer: 1,
        realistic_limits: true,
        postgres: None,
        sync: SyncOptions {
            poll_interval: Some(Duration::from_secs(15)),
            poll_overlap: Duration::from_secs(10),
            reconcile_interval: Some(Duration::from_secs(10)),
            ..SyncOptions::default()
        },
        seed: 7,
        keep: args.keep,
    })
    .await?;
    println!(
        "Server: https://{} (webhooks at /hooks/<marketplace>/<connection>; test CA from the simulators)",
        rig.server
    );
    println!(
        "Data:   {}{}",
        rig.dir.display(),
        if args.keep {
            " (kept)"
        } else {
            " (deleted at the end)"
        }
    );
    println!(
        "Catalog: {} SKUs × 3 channels, 200 on hand, buffer 1. Orders: {}/s. Ctrl-C stops.\n",
        args.skus, args.rate
    );
    let (stream, placed) = rig.order_stream(args.rate, true);
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let metrics = rig.sync.metrics();
    let mut since = 0usize;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut ctrl_c => break,
        }
        let lag = metrics.order_to_confirmed.take_recent(&mut since);
        let text = summary(
            &rig,
            placed.load(std::sync::atomic::Ordering::Relaxed),
            started,
            lag,
        )
        .await;
        if tty {
            print!("\x1b[2J\x1b[H{text}");
        } else {
            println!("{text}");
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    stream.abort();
    println!("\nStopping: letting the last pushes settle…");
    let deadline = Instant::now() + Duration::from_secs(10);
    rig.sb.flush_deliveries().await;
    while Instant::now() < deadline && !rig.sync.settled().await.unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let verify = rig.store().verify_audit(None).await?;
    println!(
        "Audit chain: {} rows, {}",
        verify.rows_checked,
        if verify.problem.is_none() {
            "verified"
        } else {
            "BROKEN"
        }
    );
    let mismatches = stockade_sync::catalog::verify_stock(rig.store())
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    println!(
        "Stock rebuilt from the ledger: {}",
        if mismatches.is_empty() {
            "matches".to_owned()
        } else {
            format!("{} SKUs differ", mismatches.len())
        }
    );
    rig.finish().await;
    println!("Cleaned up.");
    Ok(())
}

async fn summary(
    rig: &Rig,
    placed: u64,
    started: Instant,
    lag: Option<stockade_sync::Percentiles>,
) -> String {
    let store = rig.store();
    let mut per_channel = String::new();
    if let Ok(rows) = store
        .query(
            "SELECT c.name, COUNT(o.id) FROM connections c LEFT JOIN orders o ON o.connection_id = c.id GROUP BY c.name ORDER BY c.name",
            vec![],
        )
        .await
    {
        for r in rows {
            per_channel.push_str(&format!(
                "  {:<8} {:>8}\n",
                r.text(0).unwrap_or_default(),
                r.int(1).unwrap_or(0)
            ));
        }
    }
    let oversold = store
        .query_one(
            "SELECT CAST(COALESCE(SUM(oversold_units), 0) AS BIGINT) FROM orders",
            vec![],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.int(0).ok())
        .unwrap_or(0);
    let s = rig.sync.summary();
    let lag = match lag {
        Some(p) => format!(
            "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms ({} orders)",
            p.p50_ms, p.p99_ms, p.max_ms, p.count
        ),
        None => "no confirmations in this interval".into(),
    };
    let errors = rig.sync.metrics().recent_errors(3);
    let mut out = format!(
        "Stockade demo — https://{}   running {:>4}s\n\nBuyer orders placed: {placed}\nOrders in, per channel:\n{per_channel}Order changes stored: {}  (duplicates/replays ignored: {})\nPushes out: {} listing updates in {} calls ({} coalesced)   failures: {}\nArrival → last channel confirmed: {lag}\nDrift repaired: {}   Oversold units: {oversold}   Error events: {}\nLast errors:\n",
        rig.server,
        started.elapsed().as_secs(),
        s.changes_applied,
        s.unchanged,
        s.pushes_confirmed,
        s.push_calls,
        s.pushes_coalesced,
        s.push_failures,
        s.drift_repaired,
        s.error_events,
    );
    if errors.is_empty() {
        out.push_str("  none\n");
    }
    for e in errors {
        out.push_str(&format!("  {}\n", e.chars().take(160).collect::<String>()));
    }
    out
}
