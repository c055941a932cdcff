//! Run the real binary in a fresh data directory with a clean STOCKADE_* environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Sandbox {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

pub use stockade_testkit::{pg_url, require_all, require_tool, skipped};

fn suffix() -> String {
    stockade_testkit::random_hex()
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

/// A fresh PostgreSQL schema URL, or None (printing that the test was skipped).
pub fn pg_schema_url() -> Option<(String, String)> {
    stockade_testkit::pg_schema_url("c")
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
