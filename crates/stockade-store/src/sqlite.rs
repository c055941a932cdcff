//! SQLite backend: one writer thread, a few readers.
//!
//! Invariants:
//! - Only the writer thread writes. It takes jobs from a channel, gathers what is queued
//!   (group commit) and runs them as one `BEGIN IMMEDIATE` transaction, each job inside
//!   its own savepoint, so one failing job rolls back alone and the others still commit.
//!   Callers are answered only after COMMIT returned, i.e. after the data is durable.
//! - The chain head is read inside each write transaction, never cached across
//!   transactions, so another process (a CLI command beside a running server) that
//!   appended rows in between is followed, not forked.
//! - `secure_delete` is on, so deleted rows (shredded keys, purged PII) are overwritten
//!   in the file rather than left in free pages.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use stockade_core::{Environment, time::now_ms};
use tokio::sync::oneshot;

use crate::audit::{AuditFields, ChainVerifier, GENESIS_HASH, Hash, chain_hash};
use crate::change::{Change, CommitReceipt, Mutation};
use crate::migrate::{self, Migration, SCHEMA_MIGRATIONS_DDL};
use crate::sql::{Expect, SqlRow, SqlValue};
use crate::{Anchor, MigrationReport, OpenMode, Result, StoreError, StoreOptions, VerifyReport};

/// Jobs gathered into one transaction at most.
const MAX_GROUP: usize = 512;

/// How long a group waits for more commits when the last one had company.
const LINGER: std::time::Duration = std::time::Duration::from_micros(300);

/// The writer's page cache, in KiB (SQLite's default is 2,000 KiB). Under ingest the
/// writer touches the tails of the orders, ledger and audit tables and their indexes; with
/// the default cache it read pages back from the file on every commit (measured: 11% of
/// the writer thread's time in `pread` at 1,900 orders/s). Pages are allocated as they
/// are used, so a small database costs no more; 32 MiB cut the reads further but added
/// its size to the peak RSS (over 100 MB at 1,000 orders/s), so the cache stays modest.
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// WAL pages after which a commit checkpoints (SQLite's default is 1,000, about 4 MiB).
/// A checkpoint writes each page once however often the WAL holds it, and the hot pages
/// (index tails, stock rows) are in every commit: a longer WAL writes fewer pages per
/// order (measured: 16% of the writer thread's time in checkpoints at the default).
const WAL_AUTOCHECKPOINT: u32 = 4_000;

/// Prepared statements kept per connection. rusqlite keeps 16 by default, fewer than
/// the distinct statements one execution or ingest runs, so each was parsed again on
/// nearly every use.
const STATEMENT_CACHE: usize = 256;

struct Job {
    actor: String,
    changes: Vec<Change>,
    reply: oneshot::Sender<Result<CommitReceipt>>,
}

enum Msg {
    Commit(Job),
    Raw(String, oneshot::Sender<Result<u64>>),
    Unaudited(&'static str, Vec<SqlValue>, oneshot::Sender<Result<u64>>),
    UnauditedRows(
        &'static str,
        Vec<SqlValue>,
        oneshot::Sender<Result<Vec<SqlRow>>>,
    ),
    Checkpoint(oneshot::Sender<Result<()>>),
}

pub(crate) struct SqliteStore {
    env: Environment,
    sender: mpsc::Sender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<crate::sqlite_readers::ReaderPool>,
}

fn describe(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| "constraint violated".into()))
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            StoreError::Database("the file is not a SQLite database (or it is corrupted)".into())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Database(format!("database task failed: {e}")))?
}

fn open_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    Ok(conn)
}

/// A pooled reader: read-only, `query_only`, a large statement cache, stable plans.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let c = open_read_only(path)?;
    c.execute_batch("PRAGMA query_only = ON;").map_err(db_err)?;
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    stable_plans(&c)?;
    Ok(c)
}

/// A connection to look at a database before deciding to use it (environment, schema).
/// Opened read-write but `query_only`, never created: when it closes as the last
/// connection, SQLite removes the `-wal` and `-shm` files opening it made, so a refused
/// open leaves the directory as it found it (a read-only connection leaves them behind).
/// Falls back to read-only where the file cannot be opened for writing.
fn open_probe(path: &Path) -> Result<Connection> {
    match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => {
            conn.pragma_update(None, "query_only", true)
                .map_err(db_err)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(db_err)?;
            Ok(conn)
        }
        Err(_) => open_read_only(path),
    }
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(db_err)
}

fn read_env(conn: &Connection) -> Result<Option<String>> {
    if !table_exists(conn, "stockade_meta")? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT value FROM stockade_meta WHERE key = 'environment'",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

fn read_applied(conn: &Connection) -> Result<Vec<(i64, String)>> {
    if !table_exists(conn, "schema_migrations")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
}

fn is_nonempty_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false)
}

pub(crate) async fn probe_environment(path: PathBuf) -> Result<Option<String>> {
    blocking(move || {
        if !is_nonempty_file(&path) {
            return Err(StoreError::NotInitialised(describe(&path)));
        }
        read_env(&open_probe(&path)?)
    })
    .await
}

/// The query planner stability guarantee: a statement's plan does not depend on the
/// values bound to it. Without it, a statement whose parameter is compared with a
/// partial index's condition (or a LIKE pattern) is compiled again whenever its bound
/// values change — on nearly every execution of a cached statement (measured: 15% of
/// the server's CPU under workflow load went to re-preparing). No statement here relies
/// on a bound value to pick an index: each names its partial index's condition in its
/// own text.
fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(|_| ())
    .map_err(db_err)
}

fn configure_writer(conn: &Connection, options: &StoreOptions) -> Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    stable_plans(conn)?;
    let sync = if options.sqlite_synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    // Only on a new database (no tables yet): pages freed by deletes can then be handed
    // back with `PRAGMA incremental_vacuum` (see `jobs::prune`). An existing database
    // keeps its mode (changing it needs a VACUUM) and is not written to here.
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(db_err)?;
    if tables == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
            .map_err(db_err)?;
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(format!(
            "could not switch to WAL mode (got {mode})"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;
         PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT};"
    ))
    .map_err(db_err)
}

impl SqliteStore {
    pub(crate) async fn open(
        path: PathBuf,
        env: Environment,
        options: &StoreOptions,
        mode: OpenMode,
    ) -> Result<(Self, MigrationReport)> {
        let options = options.clone();
        blocking(move || Self::open_blocking(path, env, options, mode)).await
    }

    fn open_blocking(
        path: PathBuf,
        env: Environment,
        options: StoreOptions,
        mode: OpenMode,
    ) -> Result<(Self, MigrationReport)> {
        // 1. Look before writing anything: environment, initialisation, schema version.
        let mut pending: Vec<Migration> = migrate::MIGRATIONS.to_vec();
        if is_nonempty_file(&path) {
            let ro = open_probe(&path)?;
            match read_env(&ro)? {
                Some(db_env) if db_env != env.as_str() => {
                    return Err(StoreError::WrongEnvironment {
                        database: db_env,
                        requested: env,
                    });
                }
                Some(db_env) if mode == OpenMode::Init => {
                    return Err(StoreError::AlreadyInitialised(describe(&path), db_env));
                }
                Some(_) => {}
                None if mode != OpenMode::Init => {
                    return Err(StoreError::NotInitialised(describe(&path)));
                }
                None => {}
            }
            pending = migrate::pending(&read_applied(&ro)?, |m| m.sqlite)?;
            if mode == OpenMode::Open && !pending.is_empty() {
                return Err(StoreError::PendingMigrations(pending.len()));
            }
        } else if mode != OpenMode::Init {
            return Err(StoreError::NotInitialised(describe(&path)));
        } else {
            // Create the file owner-only before SQLite opens it; WAL and SHM files inherit the mode.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    StoreError::Database(format!("cannot create {}: {e}", describe(&path)))
                })?;
        }

        // 2. Open the one writer connection and apply what is pending, each migration audited.
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err)?;
        configure_writer(&conn, &options)?;
        let mut applied = Vec::new();
        let mut buf = Vec::new();
        for m in &pending {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            tx.execute_batch(SCHEMA_MIGRATIONS_DDL).map_err(db_err)?;
            tx.execute_batch(m.sqlite).map_err(db_err)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![m.version, m.name, migrate::checksum(m.sqlite), now_ms()],
            )
            .map_err(db_err)?;
            let changes = migrate::migration_changes(m, env);
            let head = read_head(&tx)?;
            apply_changes(
                &tx,
                env.as_str(),
                "system:migrate",
                &changes,
                head,
                &mut buf,
            )?;
            tx.commit().map_err(db_err)?;
            applied.push(m.version);
        }
        // Retention: an existing database is switched to incremental auto-vacuum by
        // `stockade migrate`, once (see `retention`).
        if mode == OpenMode::Migrate {
            crate::retention::convert_auto_vacuum(&conn)?;
        }

        let (sender, receiver) = mpsc::channel();
        let env_name = env.as_str();
        let writer = std::thread::Builder::new()
            .name("stockade-sqlite-writer".into())
            .spawn(move || run_writer(conn, env_name, receiver))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        let store = SqliteStore {
            env,
            sender,
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(crate::sqlite_readers::ReaderPool::new(
                path,
                options.sqlite_readers,
            )),
        };
        Ok((
            store,
            MigrationReport {
                applied,
                schema_version: migrate::latest_version(),
            },
        ))
    }

    pub(crate) async fn commit(
        &self,
        actor: String,
        changes: Vec<Change>,
    ) -> Result<CommitReceipt> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Msg::Commit(Job {
                actor,
                changes,
                reply,
            }))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn execute_raw(&self, sql: String) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Msg::Raw(sql, reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn write_unaudited(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Msg::Unaudited(statement, params, reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// An unaudited write that returns rows (`UPDATE … RETURNING`), on the writer.
    pub(crate) async fn write_unaudited_rows(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<SqlRow>> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Msg::UnauditedRows(statement, params, reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    pub(crate) async fn query(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<SqlRow>> {
        self.read(move |c| query_rows(c, statement, &params)).await
    }

    /// Run a short read on the calling thread with a pooled reader connection, without
    /// waiting for a lock: `None` when no connection is pooled or the database is busy
    /// (the caller reads through the blocking pool instead).
    pub(crate) fn query_inline(
        &self,
        statement: &'static str,
        params: &[SqlValue],
    ) -> Option<Result<Vec<SqlRow>>> {
        let conn = self.readers.take_idle()?;
        // No busy waiting on this thread: a lock held elsewhere is the blocking pool's.
        if conn.busy_timeout(std::time::Duration::ZERO).is_err() {
            drop(conn);
            self.readers.discard();
            return None;
        }
        let out = query_rows(&conn, statement, params);
        if conn.busy_timeout(std::time::Duration::from_secs(5)).is_ok() {
            self.readers.give_back(conn);
        } else {
            drop(conn);
            self.readers.discard();
        }
        match out {
            Err(StoreError::Busy(_)) => None,
            Err(StoreError::Database(m)) if m.contains("locked") || m.contains("busy") => None,
            other => Some(other),
        }
    }

    /// Fold the WAL back into the main file and truncate it, so erased pages do not
    /// linger in the WAL (used after crypto-shredding and purges).
    pub(crate) async fn checkpoint(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.sender
            .send(Msg::Checkpoint(reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = Arc::clone(&self.readers);
        blocking(move || {
            let conn = readers.take()?;
            let out = f(&conn);
            readers.give_back(conn);
            out
        })
        .await
    }

    /// Reader connections opened since the start (at most `sqlite_readers` stay open).
    pub(crate) fn readers_opened(&self) -> u64 {
        self.readers.opened()
    }

    pub(crate) async fn verify_audit(&self, anchor: Option<Anchor>) -> Result<VerifyReport> {
        let verifier = ChainVerifier::new(self.env.as_str(), anchor);
        self.walk_audit(verifier).await
    }

    /// Walk the rows after `verifier`'s starting point, in order.
    pub(crate) async fn walk_audit(&self, mut verifier: ChainVerifier) -> Result<VerifyReport> {
        self.read(move |c| {
            let mut stmt = c
                .prepare("SELECT seq, ts_ms, env, actor, action, resource, details, prev_hash, hash FROM audit WHERE seq > ?1 ORDER BY seq")
                .map_err(db_err)?;
            let mut rows = stmt.query([verifier.after_seq()]).map_err(db_err)?;
            let mut problem = None;
            while let Some(r) = rows.next().map_err(db_err)? {
                // Borrow every column in place: no allocation per row.
                let seq: i64 = r.get(0).map_err(db_err)?;
                let text = |i: usize| r.get_ref(i).ok().and_then(|v| v.as_str().ok());
                let blob = |i: usize| r.get_ref(i).ok().and_then(|v| v.as_blob().ok());
                let (Some(env_v), Some(actor), Some(action), Some(resource), Some(details), Some(prev), Some(hash)) =
                    (text(2), text(3), text(4), text(5), text(6), blob(7), blob(8))
                else {
                    problem = Some(crate::ChainProblem { seq, kind: crate::ProblemKind::Malformed });
                    break;
                };
                let fields = AuditFields {
                    seq,
                    ts_ms: r.get(1).map_err(db_err)?,
                    env: env_v,
                    actor,
                    action,
                    resource,
                    details,
                };
                if let Err(p) = verifier.check(&fields, prev, hash) {
                    problem = Some(p);
                    break;
                }
            }
            Ok(verifier.finish(problem))
        })
        .await
    }

    pub(crate) async fn close(self) {
        let SqliteStore {
            sender,
            writer,
            readers,
            ..
        } = self;
        // Readers first, so the writer is the last connection: closing it checkpoints
        // the WAL into the database file and removes it.
        readers.clear();
        drop(sender);
        let handle = writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn read_head(conn: &Connection) -> Result<(i64, Hash)> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(db_err)?;
    match row {
        None => Ok((0, GENESIS_HASH)),
        Some((seq, hash)) => {
            let hash: Hash = hash.try_into().map_err(|_| {
                StoreError::Database(format!(
                    "audit row {seq} has a malformed hash; run `stockade audit verify`"
                ))
            })?;
            Ok((seq, hash))
        }
    }
}

fn expect_one(affected: usize, what: impl FnOnce() -> StoreError) -> Result<()> {
    if affected == 1 { Ok(()) } else { Err(what()) }
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{Null, ToSqlOutput};
        Ok(match self {
            SqlValue::Int(Some(v)) => ToSqlOutput::from(*v),
            SqlValue::Text(Some(v)) => ToSqlOutput::from(v.as_str()),
            SqlValue::Bytes(Some(v)) => ToSqlOutput::from(v.as_slice()),
            SqlValue::Int(None) | SqlValue::Text(None) | SqlValue::Bytes(None) => {
                ToSqlOutput::from(Null)
            }
        })
    }
}

/// Shared statements number their parameters `$1, $2, …`. SQLite treats `$N` as a
/// named parameter numbered by first appearance, so `SET a = $2 WHERE b = $1` would
/// swap them; `?N` binds exactly parameter N. Statements are static text, so each is
/// rewritten once per thread and the result kept (keyed by the text's address).
fn sqlite_sql(statement: &'static str) -> &'static str {
    if !statement.contains('$') {
        return statement;
    }
    thread_local! {
        static REWRITTEN: std::cell::RefCell<std::collections::HashMap<(usize, usize), &'static str>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    let key = (statement.as_ptr() as usize, statement.len());
    REWRITTEN.with(|cache| {
        if let Some(done) = cache.borrow().get(&key) {
            return *done;
        }
        let mut out = String::with_capacity(statement.len());
        let mut chars = statement.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                out.push('?');
            } else {
                out.push(c);
            }
        }
        // Bounded by the program's distinct statements, like the statements themselves.
        let done: &'static str = Box::leak(out.into_boxed_str());
        cache.borrow_mut().insert(key, done);
        done
    })
}

fn query_rows(
    conn: &Connection,
    statement: &'static str,
    params: &[SqlValue],
) -> Result<Vec<SqlRow>> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare_cached(sqlite_sql(statement)).map_err(db_err)?;
    let n = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(match row.get_ref(i).map_err(db_err)? {
                ValueRef::Null => SqlValue::Int(None),
                ValueRef::Integer(v) => SqlValue::Int(Some(v)),
                ValueRef::Real(v) => SqlValue::Int(Some(v as i64)),
                ValueRef::Text(t) => {
                    SqlValue::Text(Some(String::from_utf8(t.to_vec()).map_err(|_| {
                        StoreError::Database(format!("column {i} is not UTF-8"))
                    })?))
                }
                ValueRef::Blob(b) => SqlValue::Bytes(Some(b.to_vec())),
            });
        }
        out.push(SqlRow(values));
    }
    Ok(out)
}

fn execute_statement(
    conn: &Connection,
    statement: &'static str,
    params: &[SqlValue],
) -> Result<u64> {
    conn.prepare_cached(sqlite_sql(statement))
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(params.iter())))
        .map(|n| n as u64)
        .map_err(db_err)
}

/// Apply one change's mutation. `Ok(false)`: a guarded change found nothing to do.
fn apply_mutation(conn: &Connection, mutation: &Mutation, now: i64) -> Result<bool> {
    if let Mutation::Many { steps, guard } = mutation {
        let mut rest = steps.iter();
        if *guard {
            match rest.next() {
                Some(Mutation::Sql {
                    statement, params, ..
                }) => {
                    if execute_statement(conn, statement, params)? == 0 {
                        return Ok(false);
                    }
                }
                Some(Mutation::Row { statement, params }) => {
                    statement.check(params)?;
                    let Some(one) = statement.one else {
                        return Err(StoreError::Database(format!(
                            "{} only locks rows and cannot guard a change",
                            statement.name
                        )));
                    };
                    if execute_statement(conn, one, params)? == 0 {
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
        for step in rest {
            apply_one(conn, step, now)?;
        }
        return Ok(true);
    }
    apply_one(conn, mutation, now).map(|()| true)
}

fn apply_one(conn: &Connection, mutation: &Mutation, now: i64) -> Result<()> {
    match mutation {
        Mutation::None => Ok(()),
        Mutation::Many { .. } => Err(StoreError::Database(
            "changes with several statements cannot be nested".into(),
        )),
        // One row at a time, prepared once (a lock-only statement: nothing to do with
        // one writer).
        Mutation::Row { statement, params } => {
            statement.check(params)?;
            match statement.one {
                Some(one) => execute_statement(conn, one, params).map(|_| ()),
                None => Ok(()),
            }
        }
        Mutation::Sql { statement, params, expect } => {
            let n = execute_statement(conn, statement, params)?;
            match expect {
                Expect::Any => Ok(()),
                Expect::One(what) => {
                    expect_one(n as usize, || StoreError::NotFound((*what).to_owned()))
                }
                Expect::Fence(what) => {
                    expect_one(n as usize, || StoreError::Fenced((*what).to_owned()))
                }
            }
        }
        Mutation::SetMeta { key, value } => conn
            .prepare_cached(
                "INSERT INTO stockade_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![key, value]))
            .map(|_| ())
            .map_err(db_err),
        Mutation::AddMasterKey { version, fingerprint } => conn
            .prepare_cached("INSERT INTO keyring_master (version, fingerprint, created_at_ms) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![version, fingerprint, now]))
            .map(|_| ())
            .map_err(db_err),
        Mutation::RetireMasterKey { version } => {
            let n = conn
                .prepare_cached("UPDATE keyring_master SET retired_at_ms = ?2 WHERE version = ?1 AND retired_at_ms IS NULL")
                .and_then(|mut s| s.execute(params![version, now]))
                .map_err(db_err)?;
            expect_one(n, || StoreError::NotFound(format!("active master key version {version}")))
        }
        Mutation::AddDataKey { id, owner, master_version, wrapped } => conn
            .prepare_cached(
                "INSERT INTO keyring_data_keys (id, owner, master_version, wrapped, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, owner, master_version, wrapped, now]))
            .map(|_| ())
            .map_err(db_err),
        Mutation::RewrapDataKey { id, from_version, to_version, wrapped } => {
            let n = conn
                .prepare_cached(
                    "UPDATE keyring_data_keys SET master_version = ?3, wrapped = ?4
                     WHERE id = ?1 AND master_version = ?2 AND destroyed_at_ms IS NULL",
                )
                .and_then(|mut s| s.execute(params![id, from_version, to_version, wrapped]))
                .map_err(db_err)?;
            expect_one(n, || StoreError::Conflict(format!("data key {id} is no longer wrapped under master key v{from_version}")))
        }
        Mutation::DestroyDataKey { id } => {
            let n = conn
                .prepare_cached(
                    "UPDATE keyring_data_keys SET wrapped = NULL, master_version = NULL, destroyed_at_ms = ?2
                     WHERE id = ?1 AND destroyed_at_ms IS NULL",
                )
                .and_then(|mut s| s.execute(params![id, now]))
                .map_err(db_err)?;
            expect_one(n, || StoreError::NotFound(format!("live data key {id}")))
        }
        Mutation::PutCredential { name, kind, key_id, ciphertext, scopes, account_tag } => conn
            .prepare_cached(
                "INSERT INTO credentials (name, kind, key_id, ciphertext, scopes, account_tag, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, key_id = excluded.key_id,
                   ciphertext = excluded.ciphertext, scopes = excluded.scopes,
                   account_tag = excluded.account_tag, updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut s| s.execute(params![name, kind, key_id, ciphertext, scopes, account_tag, now]))
            .map(|_| ())
            .map_err(db_err),
        Mutation::DeleteCredential { name } => {
            let n = conn
                .prepare_cached("DELETE FROM credentials WHERE name = ?1")
                .and_then(|mut s| s.execute(params![name]))
                .map_err(db_err)?;
            expect_one(n, || StoreError::NotFound(format!("credential {name:?}")))
        }
    }
}

/// Apply changes and append their audit rows after `head`. Returns the new head.
fn apply_changes(
    conn: &Connection,
    env: &str,
    actor: &str,
    changes: &[Change],
    head: (i64, Hash),
    buf: &mut Vec<u8>,
) -> Result<((i64, Hash), CommitReceipt)> {
    let now = now_ms();
    let (mut seq, mut prev) = head;
    let first_seq = seq + 1;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO audit (seq, ts_ms, env, actor, action, resource, details, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(db_err)?;
    for change in changes {
        if !apply_mutation(conn, &change.mutation, now)? {
            continue;
        }
        seq += 1;
        let details = change.audit.details.to_canonical_json();
        let actor = change.audit.actor.as_deref().unwrap_or(actor);
        let fields = AuditFields {
            seq,
            ts_ms: now,
            env,
            actor,
            action: &change.audit.action,
            resource: &change.audit.resource,
            details: &details,
        };
        let hash = chain_hash(&prev, &fields, buf);
        insert
            .execute(params![
                seq,
                now,
                env,
                actor,
                change.audit.action,
                change.audit.resource,
                details,
                &prev[..],
                &hash[..]
            ])
            .map_err(db_err)?;
        prev = hash;
    }
    Ok((
        (seq, prev),
        CommitReceipt {
            first_seq,
            last_seq: seq,
        },
    ))
}

fn copy_err(e: &StoreError) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Run a cached statement that takes no parameters (savepoints).
fn exec_cached(conn: &Connection, sql: &'static str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(db_err)
}

/// What one pass over a group decided: every job's result, or (without savepoints) the
/// first failure, after which the pass was rolled back whole.
enum Pass {
    Done(Vec<Result<CommitReceipt>>),
    Failed(usize, StoreError),
}

/// One transaction over `jobs`, in order. With `savepoints`, each job in its own, so a
/// failing one rolls back alone; without, the first failure rolls the transaction back.
fn group_pass(
    conn: &mut Connection,
    env: &str,
    jobs: &[Job],
    buf: &mut Vec<u8>,
    savepoints: bool,
) -> Result<Pass> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let mut head = read_head(&tx)?;
    let mut results = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        if savepoints {
            // Prepared once, not parsed per job.
            exec_cached(&tx, "SAVEPOINT job")?;
        }
        match apply_changes(&tx, env, &job.actor, &job.changes, head, buf) {
            Ok((new_head, receipt)) => {
                if savepoints {
                    exec_cached(&tx, "RELEASE job")?;
                }
                head = new_head;
                results.push(Ok(receipt));
            }
            Err(e) if savepoints => {
                // Rolled back alone; the others go on.
                exec_cached(&tx, "ROLLBACK TO job")?;
                exec_cached(&tx, "RELEASE job")?;
                results.push(Err(e));
            }
            // Dropping the transaction rolls it back.
            Err(e) => return Ok(Pass::Failed(i, e)),
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(Pass::Done(results))
}

/// Commit a group. Savepoints cost a copy of every page a job touches, so the group is
/// first tried without them; only when a job fails is it run again with one per job (the
/// same jobs in the same order, so each gets the result it would have had), unless it was
/// alone.
fn run_group(conn: &mut Connection, env: &str, jobs: Vec<Job>, buf: &mut Vec<u8>) {
    let outcome = match group_pass(conn, env, &jobs, buf, false) {
        Ok(Pass::Failed(0, e)) if jobs.len() == 1 => Ok(vec![Err(e)]),
        Ok(Pass::Failed(..)) => match group_pass(conn, env, &jobs, buf, true) {
            Ok(Pass::Done(results)) => Ok(results),
            Ok(Pass::Failed(_, e)) | Err(e) => Err(e),
        },
        Ok(Pass::Done(results)) => Ok(results),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(results) => {
            for (job, result) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, jobs = jobs.len(), "sqlite write transaction failed; nothing in it was written");
            for job in jobs {
                let _ = job.reply.send(Err(copy_err(&e)));
            }
        }
    }
}

fn run_writer(mut conn: Connection, env: &'static str, receiver: mpsc::Receiver<Msg>) {
    let mut last_group = 0;
    let mut buf = Vec::with_capacity(512);
    let mut next = receiver.recv().ok();
    while let Some(msg) = next.take() {
        match msg {
            Msg::Raw(sql, reply) => {
                let r = conn
                    .execute_batch(&sql)
                    .map(|_| conn.changes())
                    .map_err(db_err);
                let _ = reply.send(r);
            }
            Msg::Unaudited(statement, params, reply) => {
                let _ = reply.send(execute_statement(&conn, statement, &params));
            }
            Msg::UnauditedRows(statement, params, reply) => {
                let _ = reply.send(query_rows(&conn, statement, &params));
            }
            Msg::Checkpoint(reply) => {
                let r = conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .map_err(db_err);
                let _ = reply.send(r);
            }
            Msg::Commit(first) => {
                // Group commit: take whatever else is already queued. Under load (the
                // last group had company) wait a moment for the commits on their way:
                // every group costs a WAL write of each page it touched and an fsync.
                let mut jobs = vec![first];
                let linger = (last_group > 1).then(|| std::time::Instant::now() + LINGER);
                while jobs.len() < MAX_GROUP {
                    let got = match linger {
                        Some(until) => receiver
                            .recv_timeout(
                                until.saturating_duration_since(std::time::Instant::now()),
                            )
                            .ok(),
                        None => receiver.try_recv().ok(),
                    };
                    match got {
                        Some(Msg::Commit(job)) => jobs.push(job),
                        Some(other) => {
                            next = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                last_group = jobs.len();
                run_group(&mut conn, env, jobs, &mut buf);
            }
        }
        if next.is_none() {
            next = receiver.recv().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer runs with the page cache and checkpoint interval chosen above, not
    /// SQLite's defaults (2,000 KiB, 1,000 pages), and with every commit synced.
    #[test]
    fn the_writer_uses_its_cache_and_checkpoint_interval() {
        let dir = std::env::temp_dir().join(format!("stockade-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.db");
        let conn = Connection::open(&path).unwrap();
        configure_writer(&conn, &StoreOptions::default()).unwrap();
        let pragma = |name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(pragma("cache_size"), -i64::from(WRITER_CACHE_KIB));
        assert_eq!(pragma("wal_autocheckpoint"), i64::from(WAL_AUTOCHECKPOINT));
        assert_eq!(pragma("synchronous"), 2, "FULL");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
