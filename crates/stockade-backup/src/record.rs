//! The `backups` table (migration 0018) and the audit row of every backup, keyring
//! export, restore and drill: one commit each, so the table and the chain agree.
//!
//! Rows and audit details hold times, sizes, hashes, counts and the file name; never
//! contents, keys or passphrases. Error text stored here is this crate's own messages.

use stockade_core::Actor;
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, Store, sql_params};
use stockade_store::{Columns, FromRow};

use crate::Result;

/// One run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: i64,
    pub created_at_ms: i64,
    /// `create`, `keyring`, `restore` or `drill`.
    pub operation: String,
    /// `cli` or `schedule`.
    pub trigger: String,
    pub path: String,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub env: String,
    /// `x25519` or `passphrase`.
    pub kind: String,
    /// `ok` or `failed`.
    pub status: String,
    pub error: Option<String>,
    /// JSON counts (drills and restores).
    pub details: Option<String>,
}

impl FromRow for BackupRecord {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(BackupRecord {
            id: c.get()?,
            created_at_ms: c.get()?,
            operation: c.get()?,
            trigger: c.get()?,
            path: c.get()?,
            bytes: c.get()?,
            sha256: c.get()?,
            env: c.get()?,
            kind: c.get()?,
            status: c.get()?,
            error: c.get()?,
            details: c.get()?,
        })
    }
}

const INSERT: &str = "INSERT INTO backups (created_at_ms, operation, trigger_kind, path, bytes, sha256, env, kind, status, error, details)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// What to record.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub operation: &'static str,
    pub trigger: &'static str,
    pub path: String,
    pub bytes: Option<i64>,
    pub sha256: Option<String>,
    pub env: String,
    pub kind: String,
    pub error: Option<String>,
    /// Counts for the audit row and the `details` column.
    pub counts: Vec<(&'static str, i64)>,
}

/// Write the row and its audit row in one commit.
pub async fn record(store: &Store, actor: &Actor, r: NewRecord) -> Result<()> {
    let now = stockade_core::clock::now_ms();
    let status = if r.error.is_some() { "failed" } else { "ok" };
    let file = std::path::Path::new(&r.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut audit = AuditDetails::new()
        .str("file", &file)
        .str("env", &r.env)
        .str("kind", &r.kind)
        .str("status", status)
        .str("trigger", r.trigger);
    if let Some(b) = r.bytes {
        audit = audit.int("bytes", b);
    }
    if let Some(h) = &r.sha256 {
        audit = audit.str("sha256", h);
    }
    let mut json = serde_json::Map::new();
    for (k, v) in &r.counts {
        audit = audit.int(k, *v);
        json.insert((*k).to_owned(), (*v).into());
    }
    let details = (!json.is_empty()).then(|| serde_json::Value::Object(json).to_string());
    let action = format!("backup.{}", r.operation);
    let m = Mutation::Sql {
        statement: INSERT,
        params: sql_params![
            now,
            r.operation,
            r.trigger,
            r.path.as_str(),
            r.bytes,
            r.sha256.clone(),
            r.env.as_str(),
            r.kind.as_str(),
            status,
            r.error.clone(),
            details
        ],
        expect: Expect::One("a new backups row"),
    };
    store
        .commit(
            actor,
            vec![Change::new(
                m,
                AuditEntry::new(&action, format!("backup:{file}"), audit),
            )],
        )
        .await?;
    Ok(())
}

/// The most recent runs, newest first.
pub async fn list(store: &Store, limit: i64) -> Result<Vec<BackupRecord>> {
    const Q: &str = "SELECT id, created_at_ms, operation, trigger_kind, path, bytes, sha256, env, kind, status, error, details
         FROM backups ORDER BY created_at_ms DESC, id DESC LIMIT $1";
    Ok(store.query_as(Q, sql_params![limit]).await?)
}

/// The newest successful run of `operation`.
pub async fn last_ok(store: &Store, operation: &str) -> Result<Option<BackupRecord>> {
    const Q: &str = "SELECT id, created_at_ms, operation, trigger_kind, path, bytes, sha256, env, kind, status, error, details
         FROM backups WHERE operation = $1 AND status = 'ok' ORDER BY created_at_ms DESC, id DESC LIMIT 1";
    Ok(store
        .query_as::<BackupRecord>(Q, sql_params![operation.to_owned()])
        .await?
        .into_iter()
        .next())
}
