//! `bench sync --sandbox-process`: the simulators in a child process (`stockade
//! sandbox`), the server's own CPU reported apart from theirs, the child gone afterwards;
//! `--sandbox-cpus` without it refused; `stockade sandbox --ready-file` describing the
//! simulators and stopping when the program that started it goes away.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::Sandbox;

/// Entries of `dir` (the runs' TMPDIR), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A short `bench sync --sandbox-process` run (plus `extra`), checked; returns the JSON.
fn run_with_a_child(extra: &[&str]) -> serde_json::Value {
    let s = Sandbox::new();
    let tmp = s.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let s = s.with("TMPDIR", tmp.to_str().unwrap());
    let out = s
        .run(
            &[
                "bench",
                "sync",
                "--sandbox-process",
                "--rate",
                "50",
                "--duration",
                "3s",
                "--skus",
                "20",
                "--sandbox-cpus",
                "0",
                "--json",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        )
        .expect_code(0);
    let (stdout, stderr) = (out.stdout(), out.stderr());
    assert_eq!(stdout.lines().count(), 1, "only the JSON line on stdout");
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    let placed = v["orders_placed"].as_u64().unwrap();
    assert!(placed >= 100, "50/s for 3 s: {last}");
    assert_eq!(v["orders_stored"].as_u64(), Some(placed), "{last}");
    assert_eq!(v["lost"], 0, "{last}");
    assert_eq!(v["backlog"], 0, "{last}");
    assert_eq!(v["duplicated"], 0, "{last}");
    assert_eq!(v["audit_ok"], true, "{last}");
    assert_eq!(v["simulators_in_process"], false, "{last}");
    assert_eq!(v["sandbox_cpus"], "0", "{last}");
    let server = v["server_cpu_ms_per_order"].as_f64().unwrap();
    let sims = v["sandbox_cpu_ms_per_order"].as_f64().unwrap();
    assert!(server > 0.0 && sims > 0.0, "{last}");
    for key in [
        "orders_per_s",
        "p99_ms",
        "peak_rss_mb",
        "oversell_window_ms",
        "change_staleness_ms",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {last}");
    }
    // Every placed order changed each channel's quantity: the histories were read back.
    let staleness = v["change_staleness_ms"].as_object().unwrap();
    assert_eq!(staleness.len(), 3, "{last}");
    // The human-readable lines say which CPU is which.
    assert!(
        stderr.contains("server CPU counts this process only"),
        "{stderr}"
    );
    assert!(stderr.contains("simulators' process CPU:"), "{stderr}");
    // The child is gone (reaped) and every file of the run removed.
    let pid: u32 = stderr
        .split("own process (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("the child's pid is printed");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the simulators' process {pid} outlived the bench"
    );
    // So are the worker processes (`--workers`).
    if let Some(pids) = stderr
        .split("on the same database (pids ")
        .nth(1)
        .and_then(|r| r.split(')').next())
    {
        for pid in pids.split(", ") {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "the worker process {pid} outlived the bench"
            );
        }
    }
    assert_eq!(entries(&tmp), Vec::<String>::new(), "files left behind");
    v
}

#[test]
fn bench_sync_with_the_simulators_in_a_child_process_counts_the_server_alone() {
    let v = run_with_a_child(&[]);
    assert_eq!(v["database"], "sqlite");
}

#[test]
fn bench_sync_with_the_simulators_in_a_child_process_on_postgres() {
    let Some(url) = stockade_testkit::pg_or_skip() else {
        return;
    };
    let v = run_with_a_child(&["--database-url", &url]);
    assert_eq!(v["database"], "postgres");
}

/// Three processes on one database: the bench's and two `worker` processes that take
/// their share of the connections' leases before the load starts; all gone afterwards.
#[test]
fn bench_sync_with_two_worker_processes_on_postgres() {
    let Some(url) = stockade_testkit::pg_or_skip() else {
        return;
    };
    let v = run_with_a_child(&["--database-url", &url, "--workers", "2"]);
    assert_eq!(v["processes"], 3, "{v}");
    assert!(
        v["p99_ms"].is_null(),
        "each process confirms its own connections: {v}"
    );
}

#[test]
fn sandbox_cpus_without_sandbox_process_is_refused_before_anything_starts() {
    let s = Sandbox::new();
    let tmp = s.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let s = s.with("TMPDIR", tmp.to_str().unwrap());
    let out = s
        .run(&[
            "bench",
            "sync",
            "--sandbox-cpus",
            "1",
            "--duration",
            "1s",
            "--json",
        ])
        .expect_code(2);
    assert_eq!(out.stdout(), "", "no report");
    let err = out.stderr();
    assert!(
        err.contains("--sandbox-cpus") && err.contains("add --sandbox-process"),
        "{err}"
    );
    assert_eq!(entries(&tmp), Vec::<String>::new(), "nothing written");
    assert!(!s.data().exists(), "no data directory");
    // A bad list is refused as clearly.
    let out = s
        .run(&[
            "bench",
            "sync",
            "--sandbox-process",
            "--sandbox-cpus",
            "x-1",
        ])
        .expect_code(2);
    assert!(
        out.stderr().contains("--sandbox-cpus \"x-1\""),
        "{}",
        out.stderr()
    );
    // Workers need a shared PostgreSQL database and the simulators in their process.
    let out = s
        .run(&["bench", "sync", "--sandbox-process", "--workers", "2"])
        .expect_code(2);
    assert!(
        out.stderr().contains("--workers needs --database-url"),
        "{}",
        out.stderr()
    );
    assert_eq!(entries(&tmp), Vec::<String>::new(), "nothing written");
}

#[test]
fn a_sandbox_started_with_a_ready_file_describes_itself_and_stops_when_its_stdin_closes() {
    use std::process::{Command, Stdio};
    let s = Sandbox::new();
    let ready = s.dir.join("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(["sandbox", "--lift-limits", "--skus", "3", "--ready-file"])
        .arg(&ready)
        .arg("--ca-file")
        .arg(s.dir.join("ca.pem"))
        .current_dir(&s.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "no ready file within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "the sandbox ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&ready).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "throw-away secrets, owner only");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    assert_eq!(v["pid"].as_u64(), Some(u64::from(child.id())));
    let sims = v["simulators"].as_array().unwrap();
    let names: Vec<&str> = sims
        .iter()
        .map(|s| s["marketplace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tiktok", "amazon", "ebay"]);
    for sim in sims {
        let addr: std::net::SocketAddr = sim["addr"].as_str().unwrap().parse().unwrap();
        assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr} listens");
        assert_eq!(sim["sellers"].as_array().unwrap().len(), 1);
    }
    assert!(v["ca_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    // The program that started it goes away: its stdin closes, it stops on its own.
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr: std::net::SocketAddr = sims[0]["addr"].as_str().unwrap().parse().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the simulators stopped listening"
    );
    assert!(
        !ready.exists(),
        "the ready file (test credentials) is removed"
    );
}
