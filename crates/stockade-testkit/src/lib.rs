//! Test support written once for every crate's integration tests (a dev-dependency
//! only): random names, the skip rules for optional tools and PostgreSQL, a fresh
//! database per test, and with the `app` feature [`TestApp`], the whole application on
//! 127.0.0.1:0 wired to the marketplace simulators.
//!
//! Skip rules: a test whose tool or database is missing prints one `SKIPPED:` line and
//! passes, except when `CI` or `STOCKADE_REQUIRE_ALL` is set (as `./scripts/test` does
//! once it has installed everything), where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "app")]
mod app;

use std::path::PathBuf;

#[cfg(feature = "app")]
pub use app::TestApp;
use stockade_store::DatabaseUrl;

/// 16 random hex digits, for directory, schema and account names.
pub fn random_hex() -> String {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Whether skipping is forbidden: `CI` or `STOCKADE_REQUIRE_ALL` set (not to 0/false).
pub fn require_all() -> bool {
    ["CI", "STOCKADE_REQUIRE_ALL"].iter().any(|v| {
        std::env::var(v)
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    })
}

/// One `SKIPPED: ...` line on stderr, not captured by the test harness.
pub fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Whether the external `tool` is on the PATH. Without it this prints one SKIPPED line
/// and the caller skips what needs the tool, except under [`require_all`], where it fails.
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

/// `STOCKADE_TEST_PG_URL`, if set.
pub fn pg_url() -> Option<String> {
    std::env::var("STOCKADE_TEST_PG_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// `STOCKADE_TEST_PG_URL`, or None after saying the PostgreSQL variant is skipped
/// (a failure under [`require_all`]).
pub fn pg_or_skip() -> Option<String> {
    let url = pg_url();
    if url.is_none() {
        assert!(
            !require_all(),
            "CI / STOCKADE_REQUIRE_ALL forbid skipping PostgreSQL: set STOCKADE_TEST_PG_URL (./scripts/test does)"
        );
        eprintln!("skipped: PostgreSQL variant (set STOCKADE_TEST_PG_URL to run it)");
    }
    url
}

/// A fresh PostgreSQL schema `PREFIX_RANDOM` as (URL naming it, schema), or None (skipped).
pub fn pg_schema_url(prefix: &str) -> Option<(String, String)> {
    let url = pg_or_skip()?;
    let schema = format!("{prefix}_{}", random_hex());
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((format!("{url}{sep}stockade_schema={schema}"), schema))
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", random_hex()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh database for one test: a SQLite file in its own directory, or a PostgreSQL
/// schema with a random name (the directory then holds the master key and such).
#[derive(Debug)]
pub struct Db {
    pub dir: PathBuf,
    pub url: DatabaseUrl,
    /// (server URL, schema) of a PostgreSQL database.
    pub pg: Option<(String, String)>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = temp_dir("stockade-test");
        Db {
            url: DatabaseUrl::Sqlite(dir.join("stockade.db")),
            dir,
            pg: None,
        }
    }

    /// None (skipped) without `STOCKADE_TEST_PG_URL`.
    pub fn postgres() -> Option<Db> {
        let url = pg_or_skip()?;
        let schema = format!("s_{}", random_hex());
        Some(Db {
            url: DatabaseUrl::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
            },
            dir: temp_dir("stockade-test"),
            pg: Some((url, schema)),
        })
    }

    /// The SQLite file and its write-ahead log as bytes (to look for plaintext).
    pub fn sqlite_bytes(&self) -> Vec<u8> {
        let path = self.dir.join("stockade.db");
        let mut all = std::fs::read(&path).unwrap_or_default();
        all.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
        all
    }

    /// Remove the directory and drop the schema.
    pub async fn cleanup(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((url, schema)) = &self.pg {
            stockade_store::testing::drop_postgres_schema(url, schema).await;
        }
    }
}
