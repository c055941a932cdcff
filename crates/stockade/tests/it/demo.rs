//! `stockade demo` as a user sees it, in a pseudo-terminal (util-linux `script`): the
//! screen is the live summary redrawn in place with no log lines, the log goes to the
//! printed file, the printed dashboard sign-in works over HTTPS with an `oathtool` code,
//! and Ctrl-C (typed into the terminal) stops it within 2 seconds.
//!
//! Regression: the demo's screen scrolled away under the warning log, and
//! Ctrl-C waited up to 10 s for pushes to settle.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::require_tool;
use crate::server::{oathtool, set_cookie};

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The value after `label` on the line that starts with it, up to the next space.
fn field<'a>(screen: &'a str, label: &str, after: &str) -> &'a str {
    let line = screen
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{screen}"));
    let rest = &line[line
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} in {line:?}"))
        + after.len()..];
    rest.split_whitespace().next().unwrap()
}

/// A line of the log format (`2026-01-01T00:00:00.000000Z  WARN ...`).
fn is_log_line(line: &str) -> bool {
    let l = line.trim_start_matches(|c: char| c.is_control() || c == '[');
    let stamped = l.len() > 20 && l.as_bytes()[4] == b'-' && l[..20].contains('T');
    stamped
        || [" WARN ", " INFO ", " ERROR ", " DEBUG "]
            .iter()
            .any(|p| l.contains(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_screen_is_the_summary_its_sign_in_works_and_ctrl_c_stops_it_in_2s() {
    if !require_tool("script", "bsdutils", "the demo in a pseudo-terminal")
        || !require_tool("oathtool", "oathtool", "the demo's dashboard sign-in")
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("stockade-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("screen.txt");
    let log = dir.join("demo.log");
    let command = format!(
        "'{}' demo --duration 120s --skus 60 --rate 10 --log '{}'",
        env!("CARGO_BIN_EXE_stockade"),
        log.display()
    );
    let mut cmd = Command::new("script");
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["-qfec", &command])
        .arg(&capture)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The first frames: cursor home + clear, then the summary.
    let started = Instant::now();
    let frame = loop {
        let screen = read(&capture);
        if let Some(last) = screen.rsplit("\x1b[H\x1b[2J").next()
            && screen.contains("\x1b[H\x1b[2J")
            && last.contains("Running 3s")
        {
            break last.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no summary on the screen:\n{screen}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the demo ended:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for what in [
        "Channel",
        "tiktok",
        "amazon",
        "ebay",
        "Orders/s",
        "Lag p50",
        "Low listings",
        "Stock ",
        "Errors ",
    ] {
        assert!(frame.contains(what), "{what:?} not on the screen:\n{frame}");
    }

    // The printed sign-in works: password and a TOTP code from oathtool, over HTTPS with
    // the printed CA.
    let url = field(&frame, "Dashboard", "Dashboard")
        .trim_end_matches("/login")
        .to_owned();
    let ca = field(&frame, "Dashboard", "test CA: ")
        .trim_end_matches(')')
        .to_owned();
    let email = field(&frame, "Sign in", "Sign in");
    let password = field(&frame, "Sign in", "password ");
    let secret = field(&frame, "TOTP", "secret ");
    assert!(
        frame.contains(&format!("oathtool --totp -b {secret}")),
        "{frame}"
    );
    let client = crate::server::client(Path::new(&ca));
    let res = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password, "totp": oathtool(secret, 0)}))
        .send()
        .await
        .unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (session, _) = set_cookie(&headers, "__Host-stockade").expect("a session cookie");
    let res = client
        .get(format!("{url}/api/v1/whoami"))
        .header("cookie", format!("__Host-stockade={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let who = res.text().await.unwrap();
    assert!(who.contains(email) && who.contains("admin"), "{who}");

    // Ctrl-C, typed into the terminal.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let pressed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if pressed.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("Ctrl-C did not stop the demo:\n{}", read(&capture));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = pressed.elapsed();
    eprintln!("demo stopped {took:?} after Ctrl-C");
    let screen = read(&capture);
    // Stopped by Ctrl-C after a clean stop: the shell's 130 (128 + SIGINT).
    assert_eq!(status.code(), Some(130), "{screen}");
    assert!(screen.contains("Cleaned up."), "{screen}");
    assert!(
        took <= Duration::from_secs(2),
        "Ctrl-C took {took:?}:\n{screen}"
    );
    assert!(screen.contains("Stopping (Ctrl-C)"), "{screen}");

    // No log line ever reached the screen; they are all in the printed log file.
    let logs: Vec<&str> = screen.lines().filter(|l| is_log_line(l)).collect();
    assert!(logs.is_empty(), "log lines on the screen: {logs:#?}");
    assert!(
        screen.contains(&format!("Log: {}", log.display())),
        "{screen}"
    );
    let text = read(&log);
    assert!(
        text.contains(" INFO ") && text.contains("demo started"),
        "{text}"
    );
    assert!(text.contains("demo stopped"), "{text}");

    // The error count in the table is the sum of the kinds listed below it.
    let last = screen.rsplit("\x1b[H\x1b[2J").next().unwrap();
    let all_row = last
        .lines()
        .find(|l| l.starts_with("all "))
        .unwrap_or_else(|| panic!("{last}"));
    let total: u64 = all_row.split_whitespace().last().unwrap().parse().unwrap();
    let listed: u64 = last
        .lines()
        .filter_map(|l| l.trim_start().split_once("×  "))
        .map(|(n, _)| n.trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, listed, "{last}");
    let header: u64 = field(last, "Errors ", "Errors").parse().unwrap();
    assert_eq!(header, total, "{last}");
    let _ = std::fs::remove_dir_all(&dir);
}
