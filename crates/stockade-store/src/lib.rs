//! Stockade's persistence: one [`Store`] over SQLite or PostgreSQL, one schema, one
//! behaviour.
//!
//! - SQLite goes through rusqlite on one dedicated writer thread that runs whole
//!   transactions (group commit), with a small pool of read connections.
//! - PostgreSQL goes through sqlx with multi-row statements on the hot paths; the audit
//!   chain is extended under a transaction-scoped advisory lock, so several processes
//!   still produce one chain.
//! - A database records the environment it belongs to and refuses to open under another;
//!   that check runs before anything is written.
//! - Every data modification goes through [`Store::commit`] with its audit entry (see
//!   [`change`]); [`Store::write_unaudited`] is the one other write path, for the
//!   bookkeeping its doc lists.
//! - Background work (workflow executions, backups, the NocoDB mirror) is durable jobs
//!   claimed under leases with fencing tokens, with a per-step journal ([`jobs`],
//!   [`journal`], [`schedule`]).
//! - Rows are read typed ([`FromRow`], [`Store::query_as`]); each table's rows are
//!   decoded once, in the module of the crate that owns the table (see [`sql`]).

pub mod audit;
mod audit_watch;
pub mod change;
// The database's clock for the shared clock (stockade_core::clock).
mod clock;
pub mod controls;
pub mod events;
pub mod jobs;
pub mod journal;
pub mod lease;
mod migrate;
mod pg_health;
// Revisions per listing per UTC day (eBay's cap), shared by a connection's owners.
mod postgres;
mod postgres_rows;
mod postgres_writer;
pub mod retention;
mod revisions;
// Webhook fetches handed to a connection's owner (scale-out).
pub mod fetch_requests;
pub mod rows;
pub mod schedule;
pub mod sql;
mod sqlite;
mod sqlite_readers;
pub mod wake;

use std::path::PathBuf;
use std::sync::Arc;

use stockade_core::{Actor, Environment};

pub use audit::{Anchor, AuditRow, ChainProblem, Hash, ProblemKind, VerifyReport};
pub use audit_watch::WatchedChain;
pub use change::{AuditDetails, AuditEntry, Change, CommitReceipt, Mutation};
pub use controls::{ControlSnapshot, Controls};
pub use events::{Batch, EventStream};
pub use fetch_requests::FetchRequest;
pub use jobs::{
    Admission, Backoff, Enqueued, JobRecord, JobState, Lease, NewJob, PruneReport, ReapReport,
};
pub use journal::{
    ResumePoint, StepOutcome, StepOutput, StepRecord, StepStarted, StepStatus, idempotency_key,
};
pub use lease::{Grant, LeaseRow, ProcessRow};
pub use migrate::{MIGRATIONS, Migration};
pub use rows::{Column, RowStatement};
pub use sql::{Columns, Expect, FromColumn, FromRow, SqlRow, SqlValue};
pub use wake::{Topic, Wakeups};

/// Errors from the store. Messages never include bound values, URLs with passwords or
/// key material; they name the database by a redacted description.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "this database belongs to environment \"{database}\", not \"{requested}\"; nothing was written. Point --database-url/--data-dir at the {requested} database, or run with --env {database}"
    )]
    WrongEnvironment {
        database: String,
        requested: Environment,
    },
    #[error("no Stockade database at {0}: run `stockade init --env <prod|staging|dev>` first")]
    NotInitialised(String),
    #[error("{0} is already initialised for environment {1}; nothing was changed")]
    AlreadyInitialised(String, String),
    #[error(
        "the database schema is version {database}, newer than this stockade supports ({supported}); upgrade stockade before opening it"
    )]
    SchemaTooNew { database: i64, supported: i64 },
    #[error("{0} migration(s) are pending: run `stockade migrate` first")]
    PendingMigrations(usize),
    #[error(
        "migration {0} differs from the one applied to this database; restore the original migration files"
    )]
    MigrationChanged(i64),
    #[error(
        "cannot reach the database at {target}: {reason}. Check that it is running and the URL is right"
    )]
    Unreachable { target: String, reason: String },
    #[error("invalid database URL: {0}")]
    BadUrl(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// A commit on behalf of a job whose lease this worker no longer holds (its fencing
    /// token is stale: the lease expired and the job was re-queued or claimed again).
    /// Nothing of the commit was written.
    #[error("refused: {0} is no longer held by this worker; nothing was written")]
    Fenced(String),
    /// A value the caller passed that the store refuses (names the field, never the value).
    #[error("invalid {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(String),
    /// A stored value this version cannot read (names the column, never the value).
    #[error("stored data is not what this version expects: {0}")]
    Corrupt(String),
    #[error("the database was busy (deadlock or serialization failure): {0}; try again")]
    Busy(String),
    #[error("the database writer has stopped; restart stockade")]
    WriterGone,
    /// The connection to PostgreSQL was lost or refused (a restart, a network cut): try
    /// again later; the pool reconnects by itself (see `pg_health`).
    #[error("the database is unreachable: {0}; try again once it is back")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the database could not be reached (nothing about the request itself):
    /// callers answer "try again later" and loops wait a round without logging, the
    /// store having said so once.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where the database lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, optionally confined to one schema.
    Postgres { url: String, schema: Option<String> },
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DatabaseUrl {
    /// Parse `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    /// `postgres` URLs may carry `stockade_schema=NAME` to confine Stockade to one schema.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::BadUrl(
                    "sqlite URLs need a file path, e.g. sqlite://stockade-data/stockade.db".into(),
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let (base, schema) = split_schema_param(text);
            if let Some(s) = &schema
                && !valid_identifier(s)
            {
                return Err(StoreError::BadUrl(
                    "stockade_schema must be a plain identifier (letters, digits, _)".into(),
                ));
            }
            return Ok(DatabaseUrl::Postgres { url: base, schema });
        }
        Err(StoreError::BadUrl(
            "use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB".into(),
        ))
    }

    /// A description safe to print: the file path, or host/port/database without the
    /// user name or password.
    pub fn describe(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres { url, schema } => {
                let after_scheme = url.split_once("://").map_or("", |(_, r)| r);
                let host_part = after_scheme
                    .rsplit_once('@')
                    .map_or(after_scheme, |(_, h)| h);
                let host_part = host_part.split('?').next().unwrap_or_default();
                match schema {
                    Some(s) => format!("postgres://{host_part} (schema {s})"),
                    None => format!("postgres://{host_part}"),
                }
            }
        }
    }
}

fn split_schema_param(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("stockade_schema=") {
            Some(v) => {
                schema = Some(v.to_owned());
                false
            }
            None => !kv.is_empty(),
        })
        .collect();
    let base = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (base, schema)
}

pub(crate) fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Tuning that a deployment may change.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite `synchronous`: `FULL` (default; every commit is fsynced) or `NORMAL`.
    pub sqlite_synchronous_full: bool,
    /// SQLite read connections kept open.
    pub sqlite_readers: usize,
    /// PostgreSQL pool size per process.
    pub pg_max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_synchronous_full: true,
            sqlite_readers: 4,
            pg_max_connections: 8,
        }
    }
}

/// A master key version as the keyring records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRecord {
    pub version: i64,
    pub fingerprint: String,
    pub created_at_ms: i64,
    pub retired_at_ms: Option<i64>,
}

impl FromRow for MasterKeyRecord {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(MasterKeyRecord {
            version: c.get()?,
            fingerprint: c.get()?,
            created_at_ms: c.get()?,
            retired_at_ms: c.get()?,
        })
    }
}

/// A data key as the keyring records it. `wrapped` is `None` once destroyed.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    pub id: i64,
    pub owner: String,
    pub master_version: Option<i64>,
    pub wrapped: Option<Vec<u8>>,
    pub created_at_ms: i64,
    pub destroyed_at_ms: Option<i64>,
}

impl std::fmt::Debug for DataKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("master_version", &self.master_version)
            .field("destroyed", &self.destroyed_at_ms.is_some())
            .finish_non_exhaustive()
    }
}

impl FromRow for DataKeyRecord {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(DataKeyRecord {
            id: c.get()?,
            owner: c.get()?,
            master_version: c.get()?,
            wrapped: c.get()?,
            created_at_ms: c.get()?,
            destroyed_at_ms: c.get()?,
        })
    }
}

/// An encrypted credential row.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub name: String,
    pub kind: String,
    pub key_id: i64,
    pub ciphertext: Vec<u8>,
    pub scopes: String,
    pub account_tag: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key_id", &self.key_id)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl FromRow for CredentialRecord {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(CredentialRecord {
            name: c.get()?,
            kind: c.get()?,
            key_id: c.get()?,
            ciphertext: c.get()?,
            scopes: c.get()?,
            account_tag: c.get()?,
            created_at_ms: c.get()?,
            updated_at_ms: c.get()?,
        })
    }
}

/// What `init` or `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub schema_version: i64,
}

enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Job ends kept for a lagging [`Store::finished_jobs`] receiver.
pub const FINISHED_BACKLOG: usize = 4096;

/// The store. Cheap to clone; all clones share one writer (SQLite) or pool (PostgreSQL).
#[derive(Clone)]
pub struct Store {
    env: Environment,
    url: Arc<DatabaseUrl>,
    backend: Arc<Backend>,
    writes: Arc<tokio::sync::watch::Sender<u64>>,
    finished: Arc<tokio::sync::broadcast::Sender<Arc<str>>>,
    audit_watch: Arc<audit_watch::AuditWatch>,
    /// Incident controls (isolation, lockdown) as this process last read them.
    controls: Controls,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("env", &self.env)
            .field("url", &self.url.describe())
            .finish()
    }
}

/// How `open` treats the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Create a new database (it must not be initialised yet) and apply all migrations.
    Init,
    /// Open an existing database and apply pending migrations.
    Migrate,
    /// Open an existing database whose schema is current.
    Open,
}

impl Store {
    /// Create and migrate a new database for `env`. Writes the first audit rows.
    pub async fn init(
        url: &DatabaseUrl,
        env: Environment,
        options: &StoreOptions,
    ) -> Result<(Store, MigrationReport)> {
        Self::open_with(url, env, options, OpenMode::Init).await
    }

    /// Open an existing database and apply its pending migrations, audited.
    pub async fn migrate(
        url: &DatabaseUrl,
        env: Environment,
        options: &StoreOptions,
    ) -> Result<(Store, MigrationReport)> {
        Self::open_with(url, env, options, OpenMode::Migrate).await
    }

    /// Open an existing, current database for `env`.
    pub async fn open(
        url: &DatabaseUrl,
        env: Environment,
        options: &StoreOptions,
    ) -> Result<Store> {
        Ok(Self::open_with(url, env, options, OpenMode::Open).await?.0)
    }

    async fn open_with(
        url: &DatabaseUrl,
        env: Environment,
        options: &StoreOptions,
        mode: OpenMode,
    ) -> Result<(Store, MigrationReport)> {
        let (backend, report) = match url {
            DatabaseUrl::Sqlite(path) => {
                let (s, r) = sqlite::SqliteStore::open(path.clone(), env, options, mode).await?;
                (Backend::Sqlite(s), r)
            }
            DatabaseUrl::Postgres { url: u, schema } => {
                let (s, r) = postgres::PgStore::open(
                    u,
                    schema.as_deref(),
                    &url.describe(),
                    env,
                    options,
                    mode,
                )
                .await?;
                (Backend::Postgres(s), r)
            }
        };
        let store = Store {
            env,
            url: Arc::new(url.clone()),
            backend: Arc::new(backend),
            writes: Arc::new(tokio::sync::watch::Sender::new(0)),
            finished: Arc::new(tokio::sync::broadcast::Sender::new(FINISHED_BACKLOG)),
            audit_watch: Arc::default(),
            controls: Controls::default(),
        };
        // PostgreSQL: the shared clock knows the database's from the start (a process
        // that runs keeps it fresh; see `clock`).
        if store.is_postgres()
            && let Err(e) = store.sync_clock().await
        {
            tracing::debug!("could not read the database's clock: {e}");
        }
        Ok((store, report))
    }

    pub fn environment(&self) -> Environment {
        self.env
    }

    /// Commits this handle rolled back and ran again after a deadlock or a
    /// serialization failure (PostgreSQL; always 0 on SQLite, whose one writer never
    /// deadlocks).
    pub fn commit_retries(&self) -> u64 {
        match &*self.backend {
            Backend::Postgres(p) => p.commit_retries(),
            _ => 0,
        }
    }

    /// Whether the database was last seen reachable: false from an operation failing
    /// because it could not reach PostgreSQL until one started after that succeeds
    /// (always true on SQLite, a file).
    pub fn database_reachable(&self) -> bool {
        match &*self.backend {
            Backend::Postgres(p) => p.health().reachable(),
            _ => true,
        }
    }

    /// Operations of this handle that failed because the database was unreachable
    /// ([`StoreError::Unavailable`]; always 0 on SQLite).
    pub fn unavailable_operations(&self) -> u64 {
        match &*self.backend {
            Backend::Postgres(p) => p.health().failed_operations(),
            _ => 0,
        }
    }

    /// A printable description of the database (no credentials).
    pub fn describe(&self) -> String {
        self.url.describe()
    }

    /// Apply `changes` and write one audit row per change, all in one transaction.
    /// Either everything is written, or nothing is.
    pub async fn commit(&self, actor: &Actor, changes: Vec<Change>) -> Result<CommitReceipt> {
        if changes.is_empty() {
            return Err(StoreError::Conflict(
                "a commit needs at least one change".into(),
            ));
        }
        let actor = actor.to_string();
        let receipt = match &*self.backend {
            Backend::Sqlite(s) => s.commit(actor, changes).await,
            Backend::Postgres(p) => p.commit(&actor, changes).await,
        }?;
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
        Ok(receipt)
    }

    /// Bumped after every successful commit or unaudited write made through this store (any
    /// clone): lets in-process consumers (the alert router) wake at once instead of
    /// polling. Writes by other processes are not seen here.
    pub fn writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writes.subscribe()
    }

    /// The ids of jobs this process ended (succeeded, failed, cancelled), as their
    /// committers announce them ([`Store::announce_finished`]): a caller waiting for one
    /// job wakes on its end instead of re-reading it on every write. Jobs ended by other
    /// processes are not announced here, and a receiver that lags loses ids
    /// ([`FINISHED_BACKLOG`]): a waiter also re-reads its job now and then.
    pub fn finished_jobs(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.finished.subscribe()
    }

    /// Announce that job `id` ended, after the commit that ended it.
    pub fn announce_finished(&self, id: &str) {
        // No receiver is the common case (nobody waits): not an error.
        let _ = self.finished.send(Arc::from(id));
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        let q = "SELECT value FROM stockade_meta WHERE key = $1";
        self.query_one_as(q, sql_params![key]).await
    }

    pub async fn master_keys(&self) -> Result<Vec<MasterKeyRecord>> {
        let q = "SELECT version, fingerprint, created_at_ms, retired_at_ms FROM keyring_master ORDER BY version";
        self.query_as(q, vec![]).await
    }

    /// All data keys, destroyed ones included (as tombstones).
    pub async fn data_keys(&self) -> Result<Vec<DataKeyRecord>> {
        let q = "SELECT id, owner, master_version, wrapped, created_at_ms, destroyed_at_ms
                 FROM keyring_data_keys ORDER BY created_at_ms, id";
        self.query_as(q, vec![]).await
    }

    pub async fn data_key(&self, id: i64) -> Result<Option<DataKeyRecord>> {
        Ok(self.data_keys().await?.into_iter().find(|k| k.id == id))
    }

    pub async fn credential(&self, name: &str) -> Result<Option<CredentialRecord>> {
        Ok(self
            .credentials()
            .await?
            .into_iter()
            .find(|c| c.name == name))
    }

    pub async fn credentials(&self) -> Result<Vec<CredentialRecord>> {
        let q = "SELECT name, kind, key_id, ciphertext, scopes, account_tag, created_at_ms, updated_at_ms
                 FROM credentials ORDER BY name";
        self.query_as(q, vec![]).await
    }

    /// Up to `limit` audit rows with `seq > after`, in order.
    pub async fn audit_rows(&self, after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        let q = "SELECT seq, ts_ms, env, actor, action, resource, details, prev_hash, hash
                 FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2";
        self.query_as(q, sql_params![after, i64::from(limit)]).await
    }

    /// Up to `limit` audit rows with `seq < before`, newest first, only those of this
    /// `actor`, `action` and `resource` (each exact; `""`: any). The API's audit pages.
    pub async fn audit_rows_before(
        &self,
        before: i64,
        (actor, action, resource): (&str, &str, &str),
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        let q = "SELECT seq, ts_ms, env, actor, action, resource, details, prev_hash, hash
                 FROM audit WHERE seq < $1 AND ($2 = '' OR actor = $2)
                  AND ($3 = '' OR action = $3) AND ($4 = '' OR resource = $4)
                 ORDER BY seq DESC LIMIT $5";
        let params = sql_params![before, actor, action, resource, i64::from(limit)];
        self.query_as(q, params).await
    }

    /// The chain's last row, `(seq, hash)`, if any (one indexed read).
    pub async fn audit_head(&self) -> Result<Option<(i64, Hash)>> {
        self.query_one_as(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            vec![],
        )
        .await
    }

    /// The hash column of audit row `seq` as stored (a tampered row may hold any bytes).
    pub async fn audit_hash(&self, seq: i64) -> Result<Option<Vec<u8>>> {
        self.query_one_as("SELECT hash FROM audit WHERE seq = $1", sql_params![seq])
            .await
    }

    /// Walk the whole chain; see [`audit`] for what is checked.
    pub async fn verify_audit(&self, anchor: Option<Anchor>) -> Result<VerifyReport> {
        match &*self.backend {
            Backend::Sqlite(s) => s.verify_audit(anchor).await,
            Backend::Postgres(p) => p.verify_audit(anchor).await,
        }
    }

    /// Walk the chain from row `seq` (whose hash `hash` was verified earlier) to the end;
    /// `None` walks it from the first row. See [`audit`] for what is checked.
    pub async fn verify_audit_after(&self, from: Option<(i64, Hash)>) -> Result<VerifyReport> {
        let env = self.env.as_str();
        let verifier = match from {
            Some((seq, hash)) => audit::ChainVerifier::resume(env, seq, hash),
            None => audit::ChainVerifier::new(env, None),
        };
        match &*self.backend {
            Backend::Sqlite(s) => s.walk_audit(verifier).await,
            Backend::Postgres(p) => p.walk_audit(verifier).await,
        }
    }

    /// The chain's state for a page that shows it on every view: rows appended since the
    /// last check are verified at once; the whole chain is walked on the first call of
    /// this process and again, in the background, once the last whole walk is older than
    /// [`audit_watch::FULL_EVERY_MS`]. See [`WatchedChain`].
    pub async fn watched_audit(&self) -> Result<WatchedChain> {
        audit_watch::check(self, &self.audit_watch).await
    }

    /// SQLite: reader connections opened since the start (the pool keeps at most
    /// `sqlite_readers` open, each with its prepared statements). None on PostgreSQL.
    pub fn sqlite_readers_opened(&self) -> Option<u64> {
        match &*self.backend {
            Backend::Sqlite(s) => Some(s.readers_opened()),
            Backend::Postgres(_) => None,
        }
    }

    /// Run a read-only statement (see [`sql`]) and return its rows.
    pub async fn query(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<SqlRow>> {
        match &*self.backend {
            Backend::Sqlite(s) => s.query(statement, params).await,
            Backend::Postgres(p) => p.query(statement, params).await,
        }
    }

    /// A read of a few rows by key (a primary or unique key, an indexed column), answered
    /// on the calling thread where the backend allows it: SQLite runs it on a pooled
    /// reader connection at once, without the hand-over to a blocking thread (for such a
    /// read, that hand-over costs more than the read), and never waits there: a database
    /// busy at that moment sends the read to the blocking pool like [`Store::query`].
    /// PostgreSQL reads as [`Store::query`]. Only for statements that touch a handful of
    /// rows through an index: anything else belongs on [`Store::query`].
    pub async fn query_by_key(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<SqlRow>> {
        match &*self.backend {
            Backend::Sqlite(s) => match s.query_inline(statement, &params) {
                Some(rows) => rows,
                None => s.query(statement, params).await,
            },
            Backend::Postgres(p) => p.query(statement, params).await,
        }
    }

    /// [`Store::query_by_key`], every row decoded as `T`.
    pub async fn query_by_key_as<T: FromRow>(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<T>> {
        self.query_by_key(statement, params)
            .await?
            .iter()
            .map(SqlRow::decode)
            .collect()
    }

    /// The first row of a read-only statement, if any.
    pub async fn query_one(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Option<SqlRow>> {
        Ok(self.query(statement, params).await?.into_iter().next())
    }

    /// Run a read-only statement and decode every row as `T` (see [`FromRow`]).
    pub async fn query_as<T: FromRow>(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<T>> {
        self.query(statement, params)
            .await?
            .iter()
            .map(SqlRow::decode)
            .collect()
    }

    /// The first row of a read-only statement decoded as `T`, if any.
    pub async fn query_one_as<T: FromRow>(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Option<T>> {
        self.query_one(statement, params)
            .await?
            .map(|r| r.decode())
            .transpose()
    }

    /// The one integer an aggregate statement returns (`SELECT COUNT(*) …`), 0 when it
    /// returns no row.
    pub async fn count(&self, statement: &'static str, params: Vec<SqlValue>) -> Result<i64> {
        Ok(self.query_one_as(statement, params).await?.unwrap_or(0))
    }

    /// The unaudited bookkeeping path: one statement, outside the audit chain. Every data
    /// modification (orders, stock, listings' buffers and maximums, credentials,
    /// connections, workflows, users, keys, bans, purges) goes through [`Store::commit`]
    /// with its audit row; this path is only for rows that record how the system is
    /// running rather than what anyone decided, written too often (or by the log itself)
    /// to audit without burying the chain in noise. What goes through it today, all of
    /// it:
    ///
    /// - **Last use** (`stockade-access`): a session's `last_seen_ms` and an API key's
    ///   `last_used_at_ms`, at most once a minute per session or key. They change on use;
    ///   the sign-in and the key's creation are audited.
    /// - **Push health** (`stockade-sync` `health`): the failing-streak columns
    ///   (`push_failures`, `push_failing_since_ms`, `push_last_error`, …) of a connection
    ///   and of its waiting listings, and their clearing. Never a quantity, target or
    ///   version: those move only in audited commits.
    /// - **Egress request log** (`stockade-egress` `log`): batched `egress_log` rows and
    ///   the retention prune of `egress_log` and `events`. A record of traffic, not a
    ///   change of data. (The anomaly events themselves are appended in audited commits,
    ///   like every event: see [`events`].)
    /// - **Alert delivery state** (`stockade-alerts`): registering a configured channel
    ///   in `alert_channels` (insert if missing) and the prune of
    ///   delivered `alert_outbox` rows (each delivery has its own audit row).
    /// - **Event cursors** ([`events`]): registering a subscriber in `event_cursors` and a
    ///   subscriber's own acknowledgement ([`EventStream::ack`]); the alert router moves
    ///   its cursor inside its audited routing commit instead.
    /// - **Job leases** ([`jobs`], [`journal`], [`schedule`]): claiming a job (owner,
    ///   expiry, fencing token), heartbeats, the reaper's re-queue of expired leases,
    ///   releasing a lease for a durable wait, a journal step's start marker, and the
    ///   retention prune of finished jobs (their journal goes with them), of old
    ///   schedule ticks and of idle concurrency keys, and SQLite's incremental vacuum
    ///   after it. Which process holds a job until when is not a decision about
    ///   data; every outcome (enqueue, step commit, complete, fail, retry, schedule fire)
    ///   is an audited commit.
    ///
    /// - **Audit mirror state** (`stockade-mirror`): each sink's `audit_mirror_state` row:
    ///   how far it copied the chain (`acked_seq`), its last error and failure count, and
    ///   its lease. A copy of the chain's progress, not a change of data.
    ///
    /// - **Named leases and processes** ([`lease`]): taking, renewing and releasing a
    ///   lease (holder, fencing token, expiry), a process's heartbeat row and its removal
    ///   at shutdown. Which process owns a connection's work is not a decision about data;
    ///   the pushes made under it are audited commits, fenced by the lease's token.
    ///
    /// - **Listing revisions** (`revisions`): the count of a marketplace's revisions of
    ///   a listing today (eBay's daily cap), raised before each push goes out, fenced by
    ///   the connection's lease, and its daily prune. A counter, like push health.
    /// - **Fetch requests** (`fetch_requests`): an order id a process that does not own
    ///   the connection hands to the owner's fetcher, and its removal once fetched. A
    ///   notification in transit, like an event cursor; the stored order is audited.
    ///
    /// A new caller belongs here only if what it writes is of the same kind (a use
    /// timestamp, a health or delivery counter, a log row, a lease, a retention prune);
    /// anything a user, an API client or an automated task decides goes through
    /// [`Store::commit`].
    pub async fn write_unaudited(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<u64> {
        let n = match &*self.backend {
            Backend::Sqlite(s) => s.write_unaudited(statement, params).await,
            Backend::Postgres(p) => p.execute(statement, params).await,
        }?;
        self.writes.send_modify(|c| *c = c.wrapping_add(1));
        Ok(n)
    }

    /// [`Store::write_unaudited`] for a statement that returns rows (`… RETURNING`): the
    /// job claim and a journal step's start, lease bookkeeping listed there.
    pub(crate) async fn write_unaudited_rows(
        &self,
        statement: &'static str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<SqlRow>> {
        let rows = match &*self.backend {
            Backend::Sqlite(s) => s.write_unaudited_rows(statement, params).await,
            // One statement on the pool runs in its own transaction.
            Backend::Postgres(p) => p.query(statement, params).await,
        }?;
        self.writes.send_modify(|c| *c = c.wrapping_add(1));
        Ok(rows)
    }

    /// Whether this store is on PostgreSQL (for the few statements whose text differs:
    /// `FOR UPDATE SKIP LOCKED`, JSON array functions, row locks taken in order).
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.backend, Backend::Postgres(_))
    }

    /// After crypto-shredding or a purge: make sure erased bytes do not linger in the
    /// SQLite write-ahead log. PostgreSQL needs nothing here.
    pub async fn checkpoint(&self) -> Result<()> {
        match &*self.backend {
            Backend::Sqlite(s) => s.checkpoint().await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// Table and column names, sorted, for the test that the two backends' schemas agree.
    pub async fn schema_columns(&self) -> Result<Vec<(String, String)>> {
        let q = match &*self.backend {
            Backend::Sqlite(_) => {
                "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
            }
            Backend::Postgres(_) => {
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() ORDER BY 1, 2"
            }
        };
        self.query_as(q, vec![]).await
    }

    /// Run raw SQL outside the audited path. Only for tests that simulate an attacker
    /// with direct database access (tampering with the audit chain).
    #[doc(hidden)]
    pub async fn tamper_for_tests(&self, sql: &str) -> Result<u64> {
        match &*self.backend {
            Backend::Sqlite(s) => s.execute_raw(sql.to_owned()).await,
            Backend::Postgres(p) => p.execute_raw(sql).await,
        }
    }

    /// The incident controls this process enforces (isolated workflows and connections,
    /// lockdown), refreshed from the database every [`controls::REFRESH`] by a task
    /// started on the first call (inside a Tokio runtime). See [`controls`].
    pub fn controls(&self) -> Controls {
        if self.controls.shared.claim_start() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(controls::follow(
                        self.controls.shared.clone(),
                        Arc::downgrade(&self.backend),
                    ));
                }
                Err(_) => tracing::warn!("incident controls are not refreshed outside a runtime"),
            }
        }
        self.controls.clone()
    }

    /// After this process changed the incident controls: read them now, and on
    /// PostgreSQL wake every other process (`NOTIFY`) so they read them too. A failed
    /// notification is logged; the others still read within [`controls::REFRESH`].
    pub async fn controls_changed(&self) -> Result<Arc<ControlSnapshot>> {
        self.wake(Topic::Controls).await;
        self.refresh_controls().await
    }

    /// Wake the other processes waiting on `topic` ([`Wakeups::wait`]): PostgreSQL
    /// `NOTIFY`; nothing on SQLite. A failure is logged (the others re-read within their
    /// period anyway).
    pub async fn wake(&self, topic: Topic) {
        if let Backend::Postgres(p) = &*self.backend
            && let Err(e) = p.notify(topic.channel()).await
        {
            tracing::warn!("could not wake the other processes ({topic:?}): {e}");
        }
    }

    /// Wait for `topic`'s wake-ups from other processes (a `LISTEN` on a connection of
    /// its own on PostgreSQL; on SQLite, or when it cannot listen, a plain sleep).
    pub async fn wakeups(&self, topic: Topic) -> Wakeups {
        wakeups(&self.backend, topic).await
    }

    /// Read the controls from the database now (after this process wrote one, or at
    /// start, before serving) and return them.
    pub async fn refresh_controls(&self) -> Result<Arc<ControlSnapshot>> {
        let s = read_controls(&self.backend).await?;
        let c = self.controls();
        c.shared.set(s);
        Ok(c.snapshot())
    }

    /// Wait for the writer to finish and close connections.
    pub async fn close(self) {
        if let Ok(backend) = Arc::try_unwrap(self.backend) {
            match backend {
                Backend::Sqlite(s) => s.close().await,
                Backend::Postgres(p) => p.close().await,
            }
        }
    }
}

/// `topic`'s wake-ups over `backend` (see [`wake`]).
pub(crate) async fn wakeups(backend: &Backend, topic: Topic) -> Wakeups {
    match backend {
        Backend::Postgres(p) => match p.wakeups(topic).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "no LISTEN for {topic:?} ({e}): other processes' changes arrive at the next periodic read"
                );
                Wakeups { rx: None }
            }
        },
        Backend::Sqlite(_) => Wakeups { rx: None },
    }
}

/// The enforced incident controls, read from the database.
pub(crate) async fn read_controls(backend: &Backend) -> Result<ControlSnapshot> {
    let rows = match backend {
        Backend::Sqlite(s) => s.query(controls::ENFORCED, vec![]).await,
        Backend::Postgres(p) => p.query(controls::ENFORCED, vec![]).await,
    }?;
    controls::snapshot_of(&rows)
}

/// The environment recorded in a database, read without writing anything.
/// `Ok(None)` when the database exists but was never initialised.
pub async fn probe_environment(url: &DatabaseUrl) -> Result<Option<String>> {
    match url {
        DatabaseUrl::Sqlite(path) => sqlite::probe_environment(path.clone()).await,
        DatabaseUrl::Postgres { url: u, schema } => {
            postgres::probe_environment(u, schema.as_deref(), &url.describe()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_print_passwords() {
        let pg = DatabaseUrl::parse(
            "postgres://stockade:hunter2@db.internal:5432/stock?sslmode=require&stockade_schema=t1",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pg,
            DatabaseUrl::Postgres {
                url: "postgres://stockade:hunter2@db.internal:5432/stock?sslmode=require".into(),
                schema: Some("t1".into())
            }
        );
        let shown = format!("{} {pg:?}", pg.describe());
        assert!(
            !shown.contains("hunter2") && !shown.contains("stockade:"),
            "{shown}"
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/x.db").ok(),
            Some(DatabaseUrl::Sqlite(PathBuf::from("data/x.db")))
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("postgres://h/db?stockade_schema=a;drop").is_err());
    }
}

/// Helpers for the test suites of this and higher crates.
#[doc(hidden)]
pub mod testing {
    /// How many sessions named `application_name` are listening (their last statement a
    /// `LISTEN`), as PostgreSQL reports them.
    pub async fn listening_sessions(url: &str, application_name: &str) -> i64 {
        let Ok(pool) = sqlx::PgPool::connect(url).await else {
            return -1;
        };
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(application_name)
        .fetch_one(&pool)
        .await
        .unwrap_or(-1);
        pool.close().await;
        n
    }

    /// Drop a per-test PostgreSQL schema (best effort).
    pub async fn drop_postgres_schema(url: &str, schema: &str) {
        if !crate::valid_identifier(schema) {
            return;
        }
        if let Ok(pool) = sqlx::PgPool::connect(url).await {
            let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            pool.close().await;
        }
    }
}
