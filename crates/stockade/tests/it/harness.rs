//! Run the real binary in a fresh data directory with a clean STOCKADE_* environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Sandbox {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

fn suffix() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = std::env::temp_dir().join(format!("stockade-cli-test-{}", suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Sandbox {
            dir,
            env: Vec::new(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Run `stockade ARGS` with `--data-dir` set to this sandbox's data directory.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.run_in(&self.data(), args)
    }

    pub fn run_in(&self, data: &Path, args: &[&str]) -> Outcome {
        self.run_with_stdin(data, args, None)
    }

    pub fn run_with_stdin(&self, data: &Path, args: &[&str], stdin: Option<&str>) -> Outcome {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
        for (k, _) in std::env::vars() {
            if k.starts_with("STOCKADE_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--data-dir")
            .arg(data)
            .args(args)
            .current_dir(&self.dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let output = match stdin {
            None => cmd.output().unwrap(),
            Some(text) => {
                use std::io::Write;
                cmd.stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                let mut child = cmd.spawn().unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
        };
        Outcome(output)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Outcome(pub Output);

impl Outcome {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

pub fn pg_url() -> Option<String> {
    std::env::var("STOCKADE_TEST_PG_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// A fresh PostgreSQL schema URL, or None (printing that the test was skipped).
pub fn pg_schema_url() -> Option<(String, String)> {
    let Some(url) = pg_url() else {
        assert!(
            !["CI", "STOCKADE_REQUIRE_ALL"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")),
            "CI / STOCKADE_REQUIRE_ALL forbid skipping PostgreSQL: set STOCKADE_TEST_PG_URL (./scripts/test does)"
        );
        eprintln!("skipped: PostgreSQL variant (set STOCKADE_TEST_PG_URL to run it)");
        return None;
    };
    let schema = format!("c_{}", suffix());
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}stockade_schema={schema}"), schema))
}

pub async fn drop_schema(schema: &str) {
    if let Some(url) = pg_url() {
        stockade_store::testing::drop_postgres_schema(&url, schema).await;
    }
}

/// Run SQL against a database the way an attacker with direct access would, through the
/// store's raw test hook (the database is opened as dev, outside the audited path).
pub async fn tamper(url: &str, sql: &str) {
    let url = stockade_store::DatabaseUrl::parse(url).unwrap();
    let store =
        stockade_store::Store::open(&url, stockade_core::Environment::Dev, &Default::default())
            .await
            .unwrap();
    store.tamper_for_tests(sql).await.unwrap();
    store.close().await;
}

/// Whether skipping is forbidden: `CI` or `STOCKADE_REQUIRE_ALL` set (not to 0/false), as
/// in CI and in `./scripts/test` once it has installed everything.
pub fn require_all() -> bool {
    ["CI", "STOCKADE_REQUIRE_ALL"].iter().any(|v| {
        std::env::var(v)
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    })
}

/// Whether the external `tool` is on the PATH. Without it this prints one SKIPPED line
/// (straight to stderr, so it shows even when test output is captured) and the caller
/// skips what needs the tool, except under [`require_all`], where it fails.
pub fn require_tool(tool: &str, package: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if found {
        return true;
    }
    assert!(
        !require_all(),
        "`{tool}` is not installed and CI / STOCKADE_REQUIRE_ALL forbid skipping {what}: install the Debian package `{package}` (./scripts/test does)"
    );
    skipped(&format!(
        "{what}: `{tool}` is not installed (Debian package `{package}`; ./scripts/test installs it)"
    ));
    false
}

/// One `SKIPPED: ...` line on stderr, not captured by the test harness.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

#[test]
fn a_missing_tool_skips_or_fails_under_ci() {
    let missing = || {
        require_tool(
            "stockade-no-such-tool",
            "none",
            "nothing (the harness checking itself; expected)",
        )
    };
    if require_all() {
        assert!(std::panic::catch_unwind(missing).is_err());
    } else {
        assert!(!missing());
    }
    assert!(require_tool("sh", "dash", "a shell"));
}
