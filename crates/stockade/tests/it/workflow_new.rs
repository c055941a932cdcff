//! `stockade workflow new`: copies an example built into the binary (from any
//! directory), prints what to fill in and the next commands, lists the examples, and
//! never overwrites a file — a refusal writes nothing. No database is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "stockade-wfnew-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn stockade(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn an_example_is_copied_with_what_to_fill_in_and_lints() {
    let dir = scratch("copy");
    let out = stockade(
        &dir.0,
        &["workflow", "new", "--from-example", "daily-sales-summary"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let written = std::fs::read_to_string(dir.0.join("daily-sales-summary.yaml")).unwrap();
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/workflows/daily-sales-summary.yaml"),
    )
    .unwrap();
    assert_eq!(
        written,
        shipped.replace(
            "$schema=../../docs/workflow.schema.json",
            "$schema=workflow.schema.json"
        )
    );
    for must in [
        "connections: tiktok-sg, amazon-sg, ebay-us",
        "alert channel ops-dingtalk",
        "stockade workflow lint daily-sales-summary.yaml",
        "stockade workflow apply daily-sales-summary.yaml",
    ] {
        assert!(stdout.contains(must), "{must}: {stdout}");
    }
    let lint = stockade(
        &dir.0,
        &[
            "--env",
            "prod",
            "workflow",
            "lint",
            "daily-sales-summary.yaml",
        ],
    );
    assert!(
        lint.status.success(),
        "{}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );

    // --out, and credentials and hosts to fill in.
    let out = stockade(
        &dir.0,
        &[
            "workflow",
            "new",
            "--from-example",
            "nocodb-order-mirror",
            "--out",
            "mirror.yaml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("credential nocodb-token: store it with `stockade credential set nocodb-token --workflow nocodb-order-mirror"), "{stdout}");
    assert!(stdout.contains("hosts: nocodb.example.com"), "{stdout}");
    assert!(dir.0.join("mirror.yaml").is_file());
}

#[test]
fn a_refusal_writes_nothing() {
    let dir = scratch("refuse");
    std::fs::write(dir.0.join("mine.yaml"), "my own work\n").unwrap();
    let out = stockade(
        &dir.0,
        &[
            "workflow",
            "new",
            "--from-example",
            "error-escalation",
            "--out",
            "mine.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("mine.yaml exists; nothing was written"));
    assert_eq!(
        std::fs::read_to_string(dir.0.join("mine.yaml")).unwrap(),
        "my own work\n"
    );

    let out = stockade(
        &dir.0,
        &["workflow", "new", "--from-example", "no-such-thing"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no example named \"no-such-thing\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("hourly-order-pull"),
        "the examples are listed: {stderr}"
    );
    let out = stockade(
        &dir.0,
        &[
            "workflow",
            "new",
            "--from-example",
            "hourly-order-pull",
            "--out",
            "no/such/dir.yaml",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(files(&dir.0), vec!["mine.yaml"], "nothing else was written");
}

#[test]
fn the_examples_are_listed_and_the_help_shows_examples() {
    let dir = scratch("list");
    let out = stockade(&dir.0, &["workflow", "new", "--list"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for name in [
        "hourly-order-pull",
        "low-stock-feishu",
        "daily-sales-summary",
        "nightly-reconciliation",
        "error-escalation",
        "token-expiry-reminder",
        "nocodb-order-mirror",
    ] {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    assert!(
        stdout.contains("Page DingTalk (critical) after 3 failed executions"),
        "{stdout}"
    );
    let help = stockade(&dir.0, &["workflow", "new", "--help"]);
    let help = text(&help.stdout);
    assert!(
        help.contains("stockade workflow new --from-example daily-sales-summary"),
        "{help}"
    );
    assert!(files(&dir.0).is_empty());
}

/// `workflow apply` warns about an `alert.send` channel the configuration lacks (the
/// step would fail when it runs) and stays quiet about a configured one; it still applies.
#[test]
fn apply_warns_about_an_alert_channel_that_is_not_configured() {
    let sb = crate::server::init(
        "dev",
        "[[alerts.channel]]\nname = \"ops-dingtalk\"\nkind = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send\"\n",
    );
    let out = sb
        .run(&["workflow", "new", "--from-example", "token-expiry-reminder"])
        .expect_code(0);
    assert!(
        out.stdout().contains("alert channel team-feishu"),
        "{}",
        out.stdout()
    );
    let file = sb
        .dir
        .join("token-expiry-reminder.yaml")
        .display()
        .to_string();
    let out = sb.run(&["workflow", "apply", &file]).expect_code(0);
    let err = out.stderr();
    assert!(
        err.contains("step remind: alert channel \"team-feishu\" is not configured (configured: ops-dingtalk)"),
        "{err}"
    );
    assert!(err.contains("applied and active"), "{err}");
    sb.run(&["workflow", "new", "--from-example", "error-escalation"])
        .expect_code(0);
    let file = sb.dir.join("error-escalation.yaml").display().to_string();
    let out = sb.run(&["workflow", "apply", &file]).expect_code(0);
    assert!(!out.stderr().contains("warning"), "{}", out.stderr());
}
