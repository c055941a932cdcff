//! PostgreSQL backend (sqlx, runtime queries).
//!
//! Invariants:
//! - The audit chain is extended only while holding `pg_advisory_xact_lock(AUDIT_LOCK)`,
//!   taken after the transaction's data mutations and held until COMMIT, so rows from
//!   many processes form one chain: each transaction reads the head only after the
//!   previous holder committed.
//! - Audit rows of a commit go in with one `INSERT … SELECT FROM UNNEST(…)` statement.
//! - Deadlocks and serialization failures roll back the whole transaction and retry it.
//! - A lost connection (a database restart) before COMMIT was sent rolls the whole
//!   transaction back too: it is retried once on a fresh connection. One lost during
//!   COMMIT may or may not have committed: it is never retried here, and the caller
//!   hears [`StoreError::Unavailable`] (ingest answers 503 and the delivery that comes
//!   again finds the order stored, or stores it). See `pg_health` for the log lines.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Row};
use stockade_core::{Environment, time::now_ms};

use crate::audit::{AuditFields, ChainVerifier, GENESIS_HASH, Hash, chain_hash};
use crate::change::{Change, CommitReceipt, Mutation};
use crate::migrate::{self, SCHEMA_MIGRATIONS_DDL};
use crate::sql::{Expect, SqlRow, SqlValue};
use crate::wake::{Hub, Topic, Wakeups};
use crate::{Anchor, MigrationReport, OpenMode, Result, StoreError, StoreOptions, VerifyReport};

/// Advisory lock ids ("stockade" chain / migrations).
const AUDIT_LOCK: i64 = 0x5354_4F43_4B01;
const MIGRATE_LOCK: i64 = 0x5354_4F43_4B02;
const MAX_ATTEMPTS: u32 = 5;
const VERIFY_PAGE: i64 = 20_000;

pub(crate) struct PgStore {
    pool: PgPool,
    /// Commits run on their own thread and pool (`postgres_writer`).
    writer: crate::postgres_writer::PgWriter,
    env: Environment,
    /// Commits this handle rolled back and ran again (a deadlock or serialization
    /// failure): a figure for tests and benchmarks of lock order.
    retries: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Whether the database was last reachable (logs when that changes).
    health: crate::pg_health::Reachability,
    /// The one listening session of this store (see `wake`).
    hub: tokio::sync::Mutex<Option<Hub>>,
}

pub(crate) fn pg_err(e: sqlx::Error) -> StoreError {
    if let Some(reason) = crate::pg_health::unavailable(&e) {
        return StoreError::Unavailable(reason);
    }
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // `message()` carries no row values (those are in DETAIL, which we drop).
            let msg = db.message().to_owned();
            match code.as_str() {
                "23505" | "23503" | "23514" => StoreError::Conflict(msg),
                "40P01" | "40001" => StoreError::Busy(msg),
                _ => StoreError::Database(format!("{msg} (SQLSTATE {code})")),
            }
        }
        _ => StoreError::Database(e.to_string()),
    }
}

async fn connect(
    url: &str,
    schema: Option<&str>,
    target: &str,
    max: u32,
    create_schema: bool,
) -> Result<PgPool> {
    let mut opts = PgConnectOptions::from_str(url).map_err(|_| {
        StoreError::BadUrl("the postgres URL could not be parsed (see docs/operations.md)".into())
    })?;
    if create_schema && let Some(s) = schema {
        // The schema must exist before a search_path pointing at it is any use.
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .map_err(|e| unreachable_err(target, &e))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{s}\""
        )))
        .execute(&admin)
        .await
        .map_err(pg_err)?;
        admin.close().await;
    }
    if let Some(s) = schema {
        opts = opts.options([("search_path", s)]);
    }
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A slow acquire is one line per request while the database is down (the store
        // says that once, `pg_health`): debug only.
        .acquire_slow_level(log::LevelFilter::Debug)
        .connect_with(opts)
        .await
        .map_err(|e| unreachable_err(target, &e))
}

fn unreachable_err(target: &str, e: &sqlx::Error) -> StoreError {
    let reason = match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "connection timed out".into(),
        other => other.to_string(),
    };
    StoreError::Unreachable {
        target: target.to_owned(),
        reason,
    }
}

async fn read_env(conn: &mut PgConnection) -> Result<Option<String>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('stockade_meta') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(pg_err)?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT value FROM stockade_meta WHERE key = 'environment'")
        .fetch_optional(&mut *conn)
        .await
        .map_err(pg_err)
}

async fn read_applied(conn: &mut PgConnection) -> Result<Vec<(i64, String)>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(pg_err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| Ok((r.try_get(0).map_err(pg_err)?, r.try_get(1).map_err(pg_err)?)))
        .collect()
}

pub(crate) async fn probe_environment(
    url: &str,
    schema: Option<&str>,
    target: &str,
) -> Result<Option<String>> {
    let pool = connect(url, schema, target, 1, false).await?;
    let mut conn = pool.acquire().await.map_err(pg_err)?;
    let env = read_env(&mut conn).await;
    drop(conn);
    pool.close().await;
    env
}

impl PgStore {
    /// `topic`'s wake-ups through this store's one listening session ([`Hub`]), started
    /// on first use (and tried again on the next use if it could not be).
    pub(crate) async fn wakeups(&self, topic: Topic) -> Result<Wakeups> {
        let mut hub = self.hub.lock().await;
        if hub.is_none() {
            *hub = Some(Hub::start(self.listen_all().await?));
        }
        Ok(hub
            .as_ref()
            .map_or(Wakeups { rx: None }, |h| h.wakeups(topic)))
    }

    /// A listener on every topic's channel over its own connection (not one of the
    /// pool's: it is held for as long as the process runs). LISTEN needs a session:
    /// behind PgBouncer in transaction mode it receives nothing, and the periodic read
    /// still holds.
    async fn listen_all(&self) -> Result<sqlx::postgres::PgListener> {
        let opts = (*self.pool.connect_options()).clone();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(pg_err)?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .map_err(pg_err)?;
        listener.listen_all(Hub::channels()).await.map_err(pg_err)?;
        Ok(listener)
    }

    /// Wake every process listening on `channel` (an empty payload: listeners re-read).
    pub(crate) async fn notify(&self, channel: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&self.pool)
            .await
            .map_err(pg_err)?;
        Ok(())
    }
}

impl PgStore {
    pub(crate) async fn open(
        url: &str,
        schema: Option<&str>,
        target: &str,
        env: Environment,
        options: &StoreOptions,
        mode: OpenMode,
    ) -> Result<(Self, MigrationReport)> {
        let pool = connect(
            url,
            schema,
            target,
            options.pg_max_connections.max(2),
            mode == OpenMode::Init,
        )
        .await?;
        let retries = std::sync::Arc::<std::sync::atomic::AtomicU64>::default();
        let writer = crate::postgres_writer::PgWriter::start(
            (*pool.connect_options()).clone(),
            options.pg_max_connections.max(2),
            env,
            retries.clone(),
        )?;
        let store = PgStore {
            pool,
            writer,
            env,
            retries,
            health: Default::default(),
            hub: tokio::sync::Mutex::new(None),
        };
        let report = store.check_and_migrate(target, mode).await;
        match report {
            Ok(r) => Ok((store, r)),
            Err(e) => {
                store.pool.close().await;
                Err(e)
            }
        }
    }

    async fn check_and_migrate(&self, target: &str, mode: OpenMode) -> Result<MigrationReport> {
        let mut applied_now = Vec::new();
        loop {
            // Each pass: lock, look (environment, versions), apply at most one migration.
            let mut tx = self.pool.begin().await.map_err(pg_err)?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATE_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            let db_env = read_env(&mut tx).await?;
            match (&db_env, mode) {
                (Some(e), _) if e != self.env.as_str() => {
                    return Err(StoreError::WrongEnvironment {
                        database: e.clone(),
                        requested: self.env,
                    });
                }
                (Some(e), OpenMode::Init) if applied_now.is_empty() => {
                    return Err(StoreError::AlreadyInitialised(target.to_owned(), e.clone()));
                }
                (None, OpenMode::Open | OpenMode::Migrate) => {
                    return Err(StoreError::NotInitialised(target.to_owned()));
                }
                _ => {}
            }
            let pending = migrate::pending(&read_applied(&mut tx).await?, |m| m.postgres)?;
            let Some(m) = pending.first() else {
                tx.commit().await.map_err(pg_err)?;
                return Ok(MigrationReport {
                    applied: applied_now,
                    schema_version: migrate::latest_version(),
                });
            };
            if mode == OpenMode::Open {
                return Err(StoreError::PendingMigrations(pending.len()));
            }
            sqlx::raw_sql(SCHEMA_MIGRATIONS_DDL)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            sqlx::raw_sql(m.postgres)
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(migrate::checksum(m.postgres))
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(pg_err)?;
            let changes = migrate::migration_changes(m, self.env);
            for c in &changes {
                apply_mutation(&mut tx, &c.mutation, now_ms()).await?;
            }
            let all: Vec<&Change> = changes.iter().collect();
            append_audit(&mut tx, self.env.as_str(), "system:migrate", &all).await?;
            tx.commit().await.map_err(pg_err)?;
            applied_now.push(m.version);
        }
    }

    /// Whether the database was last seen reachable, and the operations failed because it
    /// was not (`pg_health`).
    pub(crate) fn health(&self) -> &crate::pg_health::Reachability {
        &self.health
    }

    /// Commits rolled back and retried so far (see `retries`).
    pub(crate) fn commit_retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) async fn commit(&self, actor: &str, changes: Vec<Change>) -> Result<CommitReceipt> {
        let started = std::time::Instant::now();
        let r = self.watch(self.writer.commit(actor, changes)).await;
        self.seen(started, r)
    }

    /// Run `op`; if it is still waiting after `PROBE_AFTER`, probe the server meanwhile
    /// (`pg_health`: the pool waits through a short outage without an error).
    async fn watch<F: std::future::Future>(&self, op: F) -> F::Output {
        let mut op = std::pin::pin!(op);
        tokio::select! {
            biased;
            out = &mut op => return out,
            () = tokio::time::sleep(crate::pg_health::PROBE_AFTER) => {}
        }
        let opts = self.pool.connect_options();
        // The probe is dropped if the operation finishes first (it proved nothing).
        tokio::select! {
            out = &mut op => out,
            () = self.health.probe(&opts) => op.await,
        }
    }

    /// `result` of an operation started at `started`, noted for the log (`pg_health`).
    fn seen<T>(&self, started: std::time::Instant, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.health.succeeded(started),
            Err(StoreError::Unavailable(r)) => self.health.failed(r),
            Err(_) => {}
        }
        result
    }

    pub(crate) async fn execute_raw(&self, sql: &str) -> Result<u64> {
        let started = std::time::Instant::now();
        let r = self
            .watch(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&self.pool))
            .await
            .map(|r| r.rows_affected())
            .map_err(pg_err);
        self.seen(started, r)
    }

    pub(crate) async fn query(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<SqlRow>> {
        let started = std::time::Instant::now();
        let rows = self
            .watch(bind_all(sqlx::query(statement), params).fetch_all(&self.pool))
            .await
            .map_err(pg_err);
        self.seen(started, rows)?.iter().map(decode_row).collect()
    }

    pub(crate) async fn execute(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<u64> {
        let started = std::time::Instant::now();
        let r = self
            .watch(bind_all(sqlx::query(statement), params).execute(&self.pool))
            .await
            .map(|r| r.rows_affected())
            .map_err(pg_err);
        self.seen(started, r)
    }

    pub(crate) async fn verify_audit(&self, anchor: Option<Anchor>) -> Result<VerifyReport> {
        let verifier = ChainVerifier::new(self.env.as_str(), anchor);
        self.walk_audit(verifier).await
    }

    /// Walk the rows after `verifier`'s starting point, in order, a page at a time.
    pub(crate) async fn walk_audit(&self, mut verifier: ChainVerifier) -> Result<VerifyReport> {
        let mut after = verifier.after_seq();
        loop {
            let rows = sqlx::query(
                "SELECT seq, ts_ms, env, actor, action, resource, details, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(VERIFY_PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_err)?;
            if rows.is_empty() {
                return Ok(verifier.finish(None));
            }
            for r in &rows {
                let seq: i64 = r.try_get(0).map_err(pg_err)?;
                let fields = (|| -> std::result::Result<_, sqlx::Error> {
                    Ok((
                        AuditFields {
                            seq,
                            ts_ms: r.try_get(1)?,
                            env: r.try_get(2)?,
                            actor: r.try_get(3)?,
                            action: r.try_get(4)?,
                            resource: r.try_get(5)?,
                            details: r.try_get(6)?,
                        },
                        r.try_get::<&[u8], _>(7)?,
                        r.try_get::<&[u8], _>(8)?,
                    ))
                })();
                let Ok((fields, prev, hash)) = fields else {
                    let problem = crate::ChainProblem {
                        seq,
                        kind: crate::ProblemKind::Malformed,
                    };
                    return Ok(verifier.finish(Some(problem)));
                };
                if let Err(p) = verifier.check(&fields, prev, hash) {
                    return Ok(verifier.finish(Some(p)));
                }
                after = seq;
            }
        }
    }

    pub(crate) async fn close(self) {
        drop(self.hub.lock().await.take());
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// How a commit attempt failed: before COMMIT was sent (rolled back, whatever the
/// error), or by losing the connection during COMMIT (the outcome unknown).
enum Failed {
    Before(StoreError),
    AtCommit(String),
}

fn expect_one(affected: u64, what: impl FnOnce() -> StoreError) -> Result<()> {
    if affected == 1 { Ok(()) } else { Err(what()) }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_all(mut q: PgQuery<'_>, params: Vec<SqlValue>) -> PgQuery<'_> {
    for p in params {
        q = match p {
            SqlValue::Int(v) => q.bind(v),
            SqlValue::Text(v) => q.bind(v),
            SqlValue::Bytes(v) => q.bind(v),
        };
    }
    q
}

fn decode_row(row: &sqlx::postgres::PgRow) -> Result<SqlRow> {
    use sqlx::{Column, TypeInfo};
    let mut values = Vec::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match col.type_info().name() {
            "INT8" => SqlValue::Int(row.try_get::<Option<i64>, _>(i).map_err(pg_err)?),
            "INT4" => SqlValue::Int(
                row.try_get::<Option<i32>, _>(i)
                    .map_err(pg_err)?
                    .map(i64::from),
            ),
            "INT2" => SqlValue::Int(
                row.try_get::<Option<i16>, _>(i)
                    .map_err(pg_err)?
                    .map(i64::from),
            ),
            "BOOL" => SqlValue::Int(
                row.try_get::<Option<bool>, _>(i)
                    .map_err(pg_err)?
                    .map(i64::from),
            ),
            "TEXT" | "VARCHAR" | "NAME" => {
                SqlValue::Text(row.try_get::<Option<String>, _>(i).map_err(pg_err)?)
            }
            "BYTEA" => SqlValue::Bytes(row.try_get::<Option<Vec<u8>>, _>(i).map_err(pg_err)?),
            other => {
                return Err(StoreError::Database(format!(
                    "column {i} has type {other}, which the shared SQL layer does not read"
                )));
            }
        };
        values.push(v);
    }
    Ok(SqlRow(values))
}

/// Apply one change's mutation. `Ok(false)`: a guarded change found nothing to do.
async fn apply_mutation(conn: &mut PgConnection, mutation: &Mutation, now: i64) -> Result<bool> {
    if let Mutation::Many { steps, guard } = mutation {
        let mut rest = steps.iter();
        if *guard {
            match rest.next() {
                Some(Mutation::Sql {
                    statement, params, ..
                }) => {
                    let n = bind_all(sqlx::query(*statement), params.clone())
                        .execute(&mut *conn)
                        .await
                        .map_err(pg_err)?
                        .rows_affected();
                    if n == 0 {
                        return Ok(false);
                    }
                }
                Some(m @ Mutation::Row { .. }) => {
                    let one = std::slice::from_ref(m);
                    let change = Change::new(
                        Mutation::Many {
                            steps: one.to_vec(),
                            guard: true,
                        },
                        crate::AuditEntry::new("", "", crate::AuditDetails::new()),
                    );
                    let done = crate::postgres_rows::apply_run(&mut *conn, &[change]).await?;
                    if done.first() != Some(&true) {
                        return Ok(false);
                    }
                }
                _ => {
                    return Err(StoreError::Database(
                        "a guarded change must start with a SQL statement".into(),
                    ));
                }
            }
        }
        // Consecutive row steps run as one statement per table, like a run of row-only
        // changes: a fenced push confirmation (a fence step, then its listing rows)
        // locks its listings in the statement's order, not one by one in the order the
        // push happened to list them (which deadlocked with ingest and reconciliation).
        let rest: Vec<&Mutation> = rest.collect();
        let mut k = 0;
        while k < rest.len() {
            let rows = rest[k..]
                .iter()
                .take_while(|m| matches!(m, Mutation::Row { .. }))
                .count();
            if rows == 0 {
                apply_one(&mut *conn, rest[k], now).await?;
                k += 1;
                continue;
            }
            let change = Change::new(
                Mutation::Many {
                    steps: rest[k..k + rows].iter().map(|m| (*m).clone()).collect(),
                    guard: false,
                },
                crate::AuditEntry::new("", "", crate::AuditDetails::new()),
            );
            crate::postgres_rows::apply_run(&mut *conn, &[change]).await?;
            k += rows;
        }
        return Ok(true);
    }
    apply_one(conn, mutation, now).await.map(|()| true)
}

async fn apply_one(conn: &mut PgConnection, mutation: &Mutation, now: i64) -> Result<()> {
    match mutation {
        Mutation::None => Ok(()),
        Mutation::Many { .. } => Err(StoreError::Database(
            "changes with several statements cannot be nested".into(),
        )),
        Mutation::Row { .. } => {
            let change = Change::new(
                mutation.clone(),
                crate::AuditEntry::new("", "", crate::AuditDetails::new()),
            );
            crate::postgres_rows::apply_run(conn, &[change]).await.map(|_| ())
        }
        Mutation::Sql { statement, params, expect } => {
            let n = bind_all(sqlx::query(*statement), params.clone())
                .execute(conn)
                .await
                .map_err(pg_err)?
                .rows_affected();
            match expect {
                Expect::Any => Ok(()),
                Expect::One(what) => expect_one(n, || StoreError::NotFound((*what).to_owned())),
                Expect::Fence(what) => expect_one(n, || StoreError::Fenced((*what).to_owned())),
            }
        }
        Mutation::SetMeta { key, value } => sqlx::query(
            "INSERT INTO stockade_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(pg_err),
        Mutation::AddMasterKey { version, fingerprint } => {
            sqlx::query("INSERT INTO keyring_master (version, fingerprint, created_at_ms) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(fingerprint)
                .bind(now)
                .execute(conn)
                .await
                .map(|_| ())
                .map_err(pg_err)
        }
        Mutation::RetireMasterKey { version } => {
            let n = sqlx::query("UPDATE keyring_master SET retired_at_ms = $2 WHERE version = $1 AND retired_at_ms IS NULL")
                .bind(version)
                .bind(now)
                .execute(conn)
                .await
                .map_err(pg_err)?
                .rows_affected();
            expect_one(n, || StoreError::NotFound(format!("active master key version {version}")))
        }
        Mutation::AddDataKey { id, owner, master_version, wrapped } => sqlx::query(
            "INSERT INTO keyring_data_keys (id, owner, master_version, wrapped, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(owner)
        .bind(master_version)
        .bind(wrapped)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(pg_err),
        Mutation::RewrapDataKey { id, from_version, to_version, wrapped } => {
            let n = sqlx::query(
                "UPDATE keyring_data_keys SET master_version = $3, wrapped = $4
                 WHERE id = $1 AND master_version = $2 AND destroyed_at_ms IS NULL",
            )
            .bind(id)
            .bind(from_version)
            .bind(to_version)
            .bind(wrapped)
            .execute(conn)
            .await
            .map_err(pg_err)?
            .rows_affected();
            expect_one(n, || StoreError::Conflict(format!("data key {id} is no longer wrapped under master key v{from_version}")))
        }
        Mutation::DestroyDataKey { id } => {
            let n = sqlx::query(
                "UPDATE keyring_data_keys SET wrapped = NULL, master_version = NULL, destroyed_at_ms = $2
                 WHERE id = $1 AND destroyed_at_ms IS NULL",
            )
            .bind(id)
            .bind(now)
            .execute(conn)
            .await
            .map_err(pg_err)?
            .rows_affected();
            expect_one(n, || StoreError::NotFound(format!("live data key {id}")))
        }
        Mutation::PutCredential { name, kind, key_id, ciphertext, scopes, account_tag } => sqlx::query(
            "INSERT INTO credentials (name, kind, key_id, ciphertext, scopes, account_tag, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, key_id = excluded.key_id,
               ciphertext = excluded.ciphertext, scopes = excluded.scopes,
               account_tag = excluded.account_tag, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(name)
        .bind(kind)
        .bind(key_id)
        .bind(ciphertext)
        .bind(scopes)
        .bind(account_tag)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(pg_err),
        Mutation::DeleteCredential { name } => {
            let n = sqlx::query("DELETE FROM credentials WHERE name = $1")
                .bind(name)
                .execute(conn)
                .await
                .map_err(pg_err)?
                .rows_affected();
            expect_one(n, || StoreError::NotFound(format!("credential {name:?}")))
        }
    }
}

/// Append one audit row per change under the chain lock, in one statement.
async fn append_audit(
    conn: &mut PgConnection,
    env: &str,
    actor: &str,
    changes: &[&Change],
) -> Result<CommitReceipt> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(pg_err)?;
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(pg_err)?;
    let (mut seq, mut prev): (i64, Hash) = match head {
        None => (0, GENESIS_HASH),
        Some((s, h)) => (
            s,
            h.try_into().map_err(|_| {
                StoreError::Database(format!(
                    "audit row {s} has a malformed hash; run `stockade audit verify`"
                ))
            })?,
        ),
    };
    let first_seq = seq + 1;
    let now = now_ms();
    let n = changes.len();
    let (mut seqs, mut actions, mut resources, mut details) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut prevs, mut hashes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut actors: Vec<&str> = Vec::with_capacity(n);
    let mut buf = Vec::with_capacity(512);
    for c in changes {
        seq += 1;
        let d = c.audit.details.to_canonical_json();
        let who = c.audit.actor.as_deref().unwrap_or(actor);
        let fields = AuditFields {
            seq,
            ts_ms: now,
            env,
            actor: who,
            action: &c.audit.action,
            resource: &c.audit.resource,
            details: &d,
        };
        let hash = chain_hash(&prev, &fields, &mut buf);
        seqs.push(seq);
        actors.push(who);
        actions.push(c.audit.action.as_str());
        resources.push(c.audit.resource.as_str());
        details.push(d);
        prevs.push(prev.to_vec());
        hashes.push(hash.to_vec());
        prev = hash;
    }
    sqlx::query(
        "INSERT INTO audit (seq, ts_ms, env, actor, action, resource, details, prev_hash, hash)
         SELECT s, $2, $3, w, a, r, d, p, h
         FROM UNNEST($1::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::bytea[]) AS t(s, w, a, r, d, p, h)",
    )
    .bind(&seqs)
    .bind(now)
    .bind(env)
    .bind(&actors)
    .bind(&actions)
    .bind(&resources)
    .bind(&details)
    .bind(&prevs)
    .bind(&hashes)
    .execute(&mut *conn)
    .await
    .map_err(pg_err)?;
    Ok(CommitReceipt {
        first_seq,
        last_seq: seq,
    })
}

/// One commit, run again (up to `MAX_ATTEMPTS`) when the database rolled it back for a
/// deadlock or serialization failure, or once when its connection was lost before COMMIT
/// (see the module); `retries` counts the re-runs.
pub(crate) async fn commit_with_retries(
    pool: &PgPool,
    env: Environment,
    retries: &std::sync::atomic::AtomicU64,
    actor: &str,
    changes: &[Change],
) -> Result<CommitReceipt> {
    let mut attempt = 0;
    let mut lost = 0;
    loop {
        attempt += 1;
        match try_commit(pool, env, actor, changes).await {
            Ok(receipt) => return Ok(receipt),
            Err(Failed::Before(StoreError::Busy(msg))) if attempt < MAX_ATTEMPTS => {
                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(attempt, reason = %msg, "retrying a postgres commit");
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
            }
            // Rolled back with its connection: nothing was written. Once more on a fresh
            // one (a restarted server is often back by then).
            Err(Failed::Before(StoreError::Unavailable(msg)))
                if lost == 0 && attempt < MAX_ATTEMPTS =>
            {
                lost += 1;
                retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(attempt, reason = %msg, "connection lost before COMMIT; retrying the commit");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Failed::Before(e)) => return Err(e),
            Err(Failed::AtCommit(r)) => {
                return Err(StoreError::Unavailable(format!(
                    "{r}; the connection was lost during COMMIT, so whether it was written is unknown"
                )));
            }
        }
    }
}

async fn try_commit(
    pool: &PgPool,
    env: Environment,
    actor: &str,
    changes: &[Change],
) -> std::result::Result<CommitReceipt, Failed> {
    let (tx, receipt) = commit_body(pool, env, actor, changes)
        .await
        .map_err(Failed::Before)?;
    tx.commit().await.map_err(|e| match pg_err(e) {
        StoreError::Unavailable(r) => Failed::AtCommit(r),
        other => Failed::Before(other),
    })?;
    Ok(receipt)
}

/// Everything of a commit but the COMMIT.
async fn commit_body(
    pool: &PgPool,
    env: Environment,
    actor: &str,
    changes: &[Change],
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, CommitReceipt)> {
    let mut tx = pool.begin().await.map_err(pg_err)?;
    let now = now_ms();
    let mut applied = Vec::with_capacity(changes.len());
    let mut i = 0;
    while i < changes.len() {
        // Consecutive changes of row steps: one statement per table (`rows`).
        let run = changes[i..]
            .iter()
            .take_while(|c| crate::postgres_rows::row_steps(&c.mutation).is_some())
            .count();
        if run > 0 {
            let run = &changes[i..i + run];
            let done = crate::postgres_rows::apply_run(&mut tx, run).await?;
            applied.extend(run.iter().zip(done).filter(|(_, a)| *a).map(|(c, _)| c));
            i += run.len();
            continue;
        }
        let c = &changes[i];
        if apply_mutation(&mut tx, &c.mutation, now).await? {
            applied.push(c);
        }
        i += 1;
    }
    let receipt = append_audit(&mut tx, env.as_str(), actor, &applied).await?;
    Ok((tx, receipt))
}
