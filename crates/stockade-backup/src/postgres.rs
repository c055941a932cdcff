//! PostgreSQL: `pg_dump -Fc` of Stockade's schema, `pg_restore` back, scratch databases
//! for drills, and the schema swap that makes a restore all-or-nothing.
//!
//! Invariants:
//! - The password reaches pg_dump/pg_restore through `PGPASSWORD`, never argv; errors
//!   show pg_dump's own message with the URL described without credentials.
//! - The keyring table's data is excluded from the dump; its skeleton (ids, owners,
//!   versions) travels in the header and is inserted between the `data` and `post-data`
//!   sections, so the foreign keys hold and no key material was ever in the file.
//! - A restore moves the existing schema aside first and puts it back on any failure.

use std::path::Path;
use std::process::Stdio;

use sqlx::{Connection, PgConnection, Row};

use crate::container::KeySkeleton;
use crate::sqlite::SnapshotInfo;
use crate::{BackupError, Result};

/// A PostgreSQL target: connection URL (may hold a password) and Stockade's schema.
#[derive(Clone)]
pub struct PgTarget {
    pub url: String,
    pub schema: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn pg_err(what: &str) -> impl FnOnce(sqlx::Error) -> BackupError + '_ {
    move |e| {
        let msg = match &e {
            sqlx::Error::Database(d) => d.message().to_owned(),
            other => other.to_string(),
        };
        BackupError::Io(format!("{what}: {msg}"))
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl PgTarget {
    pub fn new(url: &str, schema: Option<&str>) -> PgTarget {
        PgTarget {
            url: url.to_owned(),
            schema: schema.unwrap_or("public").to_owned(),
        }
    }

    /// The same server, another database (scratch databases for drills).
    pub fn with_database(&self, db: &str) -> Result<PgTarget> {
        let mut u = url::Url::parse(&self.url)
            .map_err(|_| BackupError::Usage("the PostgreSQL URL cannot be parsed".into()))?;
        u.set_path(&format!("/{db}"));
        Ok(PgTarget {
            url: u.to_string(),
            schema: self.schema.clone(),
        })
    }

    /// The database name (no credentials) for `pg_restore --dbname`.
    fn database_name(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .map(|u| percent_decode(u.path().trim_start_matches('/')))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "postgres".into())
    }

    /// PG* variables for the client tools.
    fn env(&self) -> Result<Vec<(&'static str, String)>> {
        let u = url::Url::parse(&self.url)
            .map_err(|_| BackupError::Usage("the PostgreSQL URL cannot be parsed".into()))?;
        let dec = percent_decode;
        let mut v = vec![("PGHOST", u.host_str().unwrap_or("localhost").to_owned())];
        v.push(("PGPORT", u.port().unwrap_or(5432).to_string()));
        if !u.username().is_empty() {
            v.push(("PGUSER", dec(u.username())));
        }
        if let Some(p) = u.password() {
            v.push(("PGPASSWORD", dec(p)));
        }
        let db = u.path().trim_start_matches('/');
        v.push((
            "PGDATABASE",
            if db.is_empty() {
                "postgres".into()
            } else {
                dec(db)
            },
        ));
        for (k, val) in u.query_pairs() {
            if k == "sslmode" {
                v.push(("PGSSLMODE", val.into_owned()));
            }
        }
        Ok(v)
    }

    async fn connect(&self) -> Result<PgConnection> {
        let mut u = url::Url::parse(&self.url)
            .map_err(|_| BackupError::Usage("the PostgreSQL URL cannot be parsed".into()))?;
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "stockade_schema")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.set_query(None);
        if !kept.is_empty() {
            u.query_pairs_mut().extend_pairs(kept);
        }
        PgConnection::connect(u.as_str())
            .await
            .map_err(pg_err("cannot connect to PostgreSQL"))
    }

    async fn run_tool(&self, tool: &str, args: &[String]) -> Result<()> {
        let mut cmd = tokio::process::Command::new(tool);
        cmd.args(args)
            .env_remove("PGPASSFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in self.env()? {
            cmd.env(k, v);
        }
        let out = cmd.output().await.map_err(|e| {
            BackupError::Usage(format!(
                "cannot run {tool}: {e}; install the PostgreSQL client tools (Debian package postgresql-client, the server's major version or newer)"
            ))
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first: String = err.lines().take(3).collect::<Vec<_>>().join(" / ");
            return Err(BackupError::Io(format!(
                "{tool} failed: {}",
                first.chars().take(400).collect::<String>()
            )));
        }
        Ok(())
    }

    /// `pg_dump -Fc` of the schema without the keyring's key material, into `dest`.
    pub async fn dump(&self, dest: &Path) -> Result<SnapshotInfo> {
        let s = &self.schema;
        self.run_tool(
            "pg_dump",
            &[
                "--format=custom".into(),
                "--no-owner".into(),
                "--no-privileges".into(),
                format!("--schema={s}"),
                format!("--exclude-table-data={s}.keyring_data_keys"),
                format!("--file={}", dest.display()),
            ],
        )
        .await?;
        // Read after the dump: every key a dumped row references is in this list.
        self.info().await
    }

    /// Environment, schema version and key skeleton of the schema.
    pub async fn info(&self) -> Result<SnapshotInfo> {
        let mut c = self.connect().await?;
        let s = quote(&self.schema);
        let environment: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT value FROM {s}.stockade_meta WHERE key = 'environment'"
        )))
        .fetch_one(&mut c)
        .await
        .map_err(pg_err("cannot read the environment"))?;
        let schema_version: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM {s}.schema_migrations"
        )))
        .fetch_one(&mut c)
        .await
        .map_err(pg_err("cannot read the schema version"))?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, owner, master_version, created_at_ms, destroyed_at_ms FROM {s}.keyring_data_keys ORDER BY id"
        )))
        .fetch_all(&mut c)
        .await
        .map_err(pg_err("cannot read the keyring"))?;
        let data_keys = rows
            .iter()
            .map(|r| KeySkeleton {
                id: r.get(0),
                owner: r.get(1),
                master_version: r.get(2),
                created_at_ms: r.get(3),
                destroyed_at_ms: r.get(4),
            })
            .collect();
        let _ = c.close().await;
        Ok(SnapshotInfo {
            environment,
            schema_version,
            data_keys,
        })
    }

    /// Whether the schema holds a Stockade database.
    pub async fn initialised(&self) -> Result<bool> {
        let mut c = self.connect().await?;
        let found: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'stockade_meta')",
        )
        .bind(&self.schema)
        .fetch_one(&mut c)
        .await
        .map_err(pg_err("cannot look at the schema"))?;
        let _ = c.close().await;
        Ok(found)
    }

    /// `pg_restore` the archive into this database (the schema must not exist), putting
    /// the keyring skeleton rows in before the constraints.
    pub async fn restore(&self, archive: &Path, keys: &[KeySkeleton], env: &str) -> Result<()> {
        let base = |sections: &[&str]| {
            let mut v: Vec<String> = sections.iter().map(|s| format!("--section={s}")).collect();
            v.extend([
                format!("--dbname={}", self.database_name()),
                "--single-transaction".into(),
                "--exit-on-error".into(),
                "--no-owner".into(),
                "--no-privileges".into(),
                archive.display().to_string(),
            ]);
            v
        };
        self.run_tool("pg_restore", &base(&["pre-data", "data"]))
            .await?;
        let mut c = self.connect().await?;
        let s = quote(&self.schema);
        let mut tx = c
            .begin()
            .await
            .map_err(pg_err("cannot start a transaction"))?;
        for k in keys {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {s}.keyring_data_keys (id, owner, master_version, wrapped, created_at_ms, destroyed_at_ms) VALUES ($1, $2, $3, NULL, $4, $5)"
            )))
            .bind(k.id)
            .bind(&k.owner)
            .bind(k.master_version)
            .bind(k.created_at_ms)
            .bind(k.destroyed_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(pg_err("cannot put the keyring skeleton back"))?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {s}.stockade_meta SET value = $1 WHERE key = 'environment'"
        )))
        .bind(env)
        .execute(&mut *tx)
        .await
        .map_err(pg_err("cannot set the environment"))?;
        tx.commit()
            .await
            .map_err(pg_err("cannot commit the keyring skeleton"))?;
        let _ = c.close().await;
        self.run_tool("pg_restore", &base(&["post-data"])).await
    }

    /// Rename the schema (for the swap of a restore).
    pub async fn rename_schema(&self, to: &str) -> Result<()> {
        let mut c = self.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER SCHEMA {} RENAME TO {}",
            quote(&self.schema),
            quote(to)
        )))
        .execute(&mut c)
        .await
        .map_err(pg_err("cannot rename the schema"))?;
        let _ = c.close().await;
        Ok(())
    }

    pub async fn drop_schema(&self, name: &str) -> Result<()> {
        let mut c = self.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote(name)
        )))
        .execute(&mut c)
        .await
        .map_err(pg_err("cannot drop the schema"))?;
        let _ = c.close().await;
        Ok(())
    }

    /// A new empty database on the same server, for a drill.
    pub async fn create_scratch_database(&self, name: &str) -> Result<PgTarget> {
        let mut c = self.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            quote(name)
        )))
        .execute(&mut c)
        .await
        .map_err(|e| {
            pg_err("cannot create a scratch database for the drill (the role needs CREATEDB)")(e)
        })?;
        let _ = c.close().await;
        self.with_database(name)
    }

    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let mut c = self.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(name)
        )))
        .execute(&mut c)
        .await
        .map_err(pg_err("cannot drop the scratch database"))?;
        let _ = c.close().await;
        Ok(())
    }

    /// The URL Stockade's store opens for this target.
    pub fn store_url(&self) -> stockade_store::DatabaseUrl {
        stockade_store::DatabaseUrl::Postgres {
            url: self.url.clone(),
            schema: Some(self.schema.clone()),
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
