//! `stockade bench console` at a small size (200 SKUs, 2,000 orders): it builds its data
//! directory, starts the server, measures every console page that exists from the
//! server's `Server-Timing` header, skips the ones that answer 404, measures the live
//! overview's CPU per client, and prints one JSON object last; on SQLite and (when
//! STOCKADE_TEST_PG_URL is set) PostgreSQL.

use crate::harness::Sandbox;

fn run_small(extra: &[&str]) -> serde_json::Value {
    let s = Sandbox::new();
    let mut args = vec![
        "bench",
        "console",
        "--skus",
        "200",
        "--orders",
        "2000",
        "--requests",
        "5",
        "--clients",
        "4",
        "--live-seconds",
        "2",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = s.run(&args).expect_code(0).stdout();
    let last = out.lines().last().expect("output");
    assert_eq!(out.lines().filter(|l| l.starts_with('{')).count(), 1);
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(v["bench"], "console", "{last}");
    assert_eq!(v["orders"], 2000, "{last}");
    let pages = v["pages"].as_array().expect("pages");
    let names: Vec<&str> = pages.iter().filter_map(|p| p["page"].as_str()).collect();
    for page in [
        "overview",
        "overview/live",
        "inventory",
        "inventory drifting",
        "audit",
    ] {
        assert!(names.contains(&page), "{page} not measured: {last}");
    }
    for p in pages {
        let (p50, p99) = (p["p50_ms"].as_f64().unwrap(), p["p99_ms"].as_f64().unwrap());
        // Server time came from the header: positive, and p99 is not below p50.
        assert!(p50 > 0.0 && p99 >= p50, "{p}");
        assert_eq!(p["requests"], 5, "{p}");
    }
    // Every page of the list is either measured or skipped with its name.
    let skipped = v["skipped"].as_array().expect("skipped").len();
    assert!(pages.len() + skipped >= 14, "{last}");
    assert!(v["live"]["polls"].as_u64().unwrap() >= 1, "{last}");
    assert!(v["live"].get("cpu_ms_per_client_per_s").is_some(), "{last}");
    v
}

#[test]
fn bench_console_measures_every_page_on_sqlite() {
    let v = run_small(&[]);
    assert_eq!(v["backend"], "sqlite");
}

#[test]
fn bench_console_measures_every_page_on_postgres() {
    let Ok(url) = std::env::var("STOCKADE_TEST_PG_URL") else {
        return;
    };
    let v = run_small(&["--database-url", &url]);
    assert_eq!(v["backend"], "postgres");
}
