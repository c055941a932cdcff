//! A clock jump: two `stockade serve` processes on one PostgreSQL, the second under
//! libfaketime (`LD_PRELOAD`, the offset read again from a file on every call, the
//! monotonic clock left alone, as an NTP step leaves it). Orders flow and a workflow
//! fires every second; mid-run the second process's wall clock is stepped an hour
//! forward, later back. Checked:
//! - libfaketime did move the binary's clock: the process says so, in one line per jump
//!   (`jumped forward by 3600 s`, then `back`), and the other process says nothing;
//! - no schedule tick fired for a future time, every second of the hour-ahead stretch
//!   still fired its own tick (none taken early from the others), and each tick's
//!   execution ran its steps once, its request reached the receiver once, its alert
//!   the bot once (`scale_out_once`);
//! - no execution was taken from the process running it (each lasts 1.5 s, so the
//!   stepped process's reaper always finds some running elsewhere);
//! - the stepped process kept working: it ran executions while an hour ahead and still
//!   holds its connection;
//! - every order is stored exactly once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use stockade_core::time::now_ms;

use crate::harness::{drop_schema, pg_schema_url, require_all, skipped};
use crate::scale_out::{pid_of, rows};
use crate::scale_out_rig::{Rig, orders_stored_once, start_node, start_node_env};
use crate::sync::{MARKETS, Proc, drain, place, sandbox_orders};

/// What a line about the clock starts with (`stockade_core::clock::ClockNote`).
const CLOCK_LINE: &str = "clock: this host's wall clock";

/// libfaketime's preload library: `STOCKADE_TEST_LIBFAKETIME`, else where Debian's
/// `faketime` package puts it (`/usr/lib/<arch>/faketime/`). Missing: skipped, or a
/// failure under CI / STOCKADE_REQUIRE_ALL.
fn libfaketime() -> Option<PathBuf> {
    let found = match std::env::var_os("STOCKADE_TEST_LIBFAKETIME") {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => {
            let mut dirs = vec![
                PathBuf::from("/usr/lib/faketime"),
                PathBuf::from("/usr/local/lib/faketime"),
            ];
            if let Ok(entries) = std::fs::read_dir("/usr/lib") {
                dirs.extend(entries.flatten().map(|e| e.path().join("faketime")));
            }
            dirs.into_iter()
                .map(|d| d.join("libfaketime.so.1"))
                .find(|p| p.is_file())
        }
    };
    if found.is_none() {
        assert!(
            !require_all(),
            "libfaketime is not installed and CI / STOCKADE_REQUIRE_ALL forbid skipping the clock-jump test: install the Debian package `faketime` (./scripts/test does), or set STOCKADE_TEST_LIBFAKETIME"
        );
        skipped(
            "the clock-jump test: libfaketime is not installed (Debian package `faketime`; ./scripts/test installs it)",
        );
    }
    found
}

/// The lines about the clock in a process's log.
fn clock_lines(proc: &Proc) -> Vec<String> {
    std::fs::read_to_string(proc.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(CLOCK_LINE))
        .map(str::to_owned)
        .collect()
}

/// Wait (10 s) for a clock line containing `what`.
async fn wait_for_line(proc: &Proc, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !clock_lines(proc).iter().any(|l| l.contains(what)) {
        assert!(
            Instant::now() < deadline,
            "no clock line saying {what:?} (did libfaketime take effect?):\n{}",
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Place two orders on every marketplace every half second for `for_`.
async fn orders_for(rig: &Rig, for_: Duration) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        for name in MARKETS {
            place(&rig.admin, &rig.base(name), 2).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_an_hour_and_back_runs_nothing_twice_or_early() {
    let Some(lib) = libfaketime() else {
        return;
    };
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let started = Instant::now();
    let rig = Rig::start(&url, 2).await;
    // Executions last 1.5 s, so one is always running in a process while the other
    // reaps expired job leases.
    rig.once.slow_requests(Duration::from_millis(1500));
    let offset = rig.sb.dir.join("faketime.rc");
    std::fs::write(&offset, "+0\n").unwrap();
    let (lib, offset_path) = (lib.display().to_string(), offset.display().to_string());
    let fake = [
        ("LD_PRELOAD", lib.as_str()),
        ("FAKETIME_TIMESTAMP_FILE", offset_path.as_str()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let a = start_node(&rig.sb, rig.ports[0], "a", "all");
    let b = start_node_env(&rig.sb, rig.ports[1], "b", "all", &fake);
    let logs = || format!("{}\n----\n{}", a.log_tail(), b.log_tail());

    // b owns a connection of its own (its pusher and poller run there).
    let b_connections = || async {
        let held: Vec<(String, Option<String>)> = rows(
            &url,
            "SELECT name, holder FROM leases WHERE holder IS NOT NULL AND name LIKE 'connection:%'",
        )
        .await;
        held.iter()
            .filter(|(_, h)| h.as_deref().map(pid_of) == Some(b.pid()))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while b_connections().await == 0 {
        assert!(
            Instant::now() < deadline,
            "b took no connection\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("two processes share the work by {:?}", started.elapsed());

    orders_for(&rig, Duration::from_secs(3)).await;
    assert!(clock_lines(&b).is_empty(), "{:?}", clock_lines(&b));

    // An hour forward: b says so at once, in one line.
    std::fs::write(&offset, "+1h\n").unwrap();
    let ahead_from = now_ms();
    wait_for_line(&b, "jumped forward by 3600 s").await;
    eprintln!("b saw its clock jump forward by {:?}", started.elapsed());
    orders_for(&rig, Duration::from_secs(8)).await;
    let ahead_until = now_ms();
    // What an operator's monitoring sees: b's skew from the database's clock, an hour.
    let skew = |port: u16| {
        let admin = &rig.admin;
        async move {
            let text = admin
                .get_text(format!("https://127.0.0.1:{port}/metrics"))
                .await;
            text.lines()
                .find_map(|l| l.strip_prefix("stockade_clock_skew_seconds "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no stockade_clock_skew_seconds in:\n{text}"))
        }
    };
    let (skew_a, skew_b) = (skew(rig.ports[0]).await, skew(rig.ports[1]).await);
    eprintln!("clock skew on /metrics: a {skew_a} s, b {skew_b} s");
    assert!(
        (3590.0..3610.0).contains(&skew_b) && skew_a.abs() < 5.0,
        "clock skew a {skew_a} s, b {skew_b} s"
    );

    // And back.
    std::fs::write(&offset, "+0\n").unwrap();
    wait_for_line(&b, "jumped back by 3600 s").await;
    eprintln!("b saw its clock jump back by {:?}", started.elapsed());
    orders_for(&rig, Duration::from_secs(3)).await;

    // Every order stored exactly once.
    drain(&rig.admin, &rig.info).await;
    let (orders, _) = sandbox_orders(&rig.admin, &rig.info).await;
    orders_stored_once(&url, &orders, &logs).await;
    eprintln!(
        "{} orders stored once by {:?}",
        orders.len(),
        started.elapsed()
    );

    // No tick for a future time, and the hour ahead took no tick from anyone: each
    // second of it fired its own.
    let checked_until = now_ms();
    let ticks: Vec<i64> = rows(
        &url,
        "SELECT tick_ms FROM schedule_ticks WHERE schedule = 'workflow:scale-tick' ORDER BY tick_ms",
    )
    .await;
    let newest = ticks.last().copied().unwrap_or(0);
    assert!(
        newest <= checked_until + 1000,
        "a tick fired {} s ahead of time: {newest}\n{}",
        (newest - checked_until) / 1000,
        logs()
    );
    let window = (ahead_from + 2000, ahead_until);
    let in_window = ticks
        .iter()
        .filter(|t| (window.0..=window.1).contains(*t))
        .count() as i64;
    let seconds = (window.1 - window.0) / 1000;
    assert!(
        in_window >= seconds - 1,
        "{in_window} ticks fired in the {seconds} s while b was an hour ahead\n{}",
        logs()
    );

    // Each tick's steps ran once, each request and alert arrived once (no process was
    // killed: no repeat is allowed), in both processes.
    rig.once.check(&url, checked_until, &[], &logs).await;

    // b kept working while an hour ahead: it ran executions then, and still holds its
    // connection.
    let by_b_ahead = rig
        .once
        .requests_from(b.pid())
        .into_iter()
        .filter(|t| (window.0..=window.1).contains(t))
        .count();
    assert!(
        by_b_ahead > 0,
        "b ran no execution while an hour ahead\n{}",
        logs()
    );
    assert!(
        b_connections().await > 0,
        "b lost its connection\n{}",
        logs()
    );

    // One line per jump in b's log, none in a's.
    let lines = clock_lines(&b);
    assert!(
        (2..=4).contains(&lines.len()),
        "clock lines in b's log: {lines:#?}"
    );
    assert!(clock_lines(&a).is_empty(), "{:?}", clock_lines(&a));
    eprintln!(
        "b ran {by_b_ahead} executions an hour ahead; its clock lines:\n{}",
        lines.join("\n")
    );
    eprintln!("done in {:?}", started.elapsed());
    drop((a, b));
    drop(rig);
    drop_schema(&schema).await;
}
