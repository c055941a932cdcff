//! SQLite snapshots and the checks on them.
//!
//! The snapshot is `VACUUM INTO` from a read-only connection: one read transaction, so it
//! is consistent (committed WAL frames included) while the server's writer keeps
//! writing, and it never restarts (unlike a stepped backup under a busy writer). The copy
//! then has its wrapped data keys erased with `secure_delete` on and no journal, so the
//! key bytes are overwritten in the file, and must pass `PRAGMA integrity_check`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::container::KeySkeleton;
use crate::{BackupError, Result};

fn db_err(what: &str) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |e| BackupError::Io(format!("{what}: {e}"))
}

/// What the snapshot found in the database.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub environment: String,
    pub schema_version: i64,
    pub data_keys: Vec<KeySkeleton>,
}

/// Snapshot `db` into `dest` (which must not exist), strip the key material and check it.
pub fn snapshot(db: &Path, dest: &Path) -> Result<SnapshotInfo> {
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err("cannot open the database for the snapshot"))?;
    src.busy_timeout(Duration::from_secs(60))
        .map_err(db_err("cannot set a busy timeout"))?;
    let target = dest
        .to_str()
        .ok_or_else(|| BackupError::Usage("the backup directory path is not UTF-8".into()))?;
    src.execute("VACUUM INTO ?1", [target])
        .map_err(db_err("the snapshot (VACUUM INTO) failed"))?;
    drop(src);
    let info = read_info(dest)?;
    strip_keys(dest)?;
    integrity_check(dest)?;
    Ok(info)
}

/// Environment, schema version and data-key skeleton of a database file.
pub fn read_info(path: &Path) -> Result<SnapshotInfo> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(db_err("cannot open the snapshot"))?;
    let environment: String = c
        .query_row(
            "SELECT value FROM stockade_meta WHERE key = 'environment'",
            [],
            |r| r.get(0),
        )
        .map_err(|_| BackupError::BadFile("the database holds no Stockade environment".into()))?;
    let schema_version: i64 = c
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(db_err("cannot read the schema version"))?;
    let mut st = c
        .prepare("SELECT id, owner, master_version, created_at_ms, destroyed_at_ms FROM keyring_data_keys ORDER BY id")
        .map_err(db_err("cannot read the keyring"))?;
    let data_keys = st
        .query_map([], |r| {
            Ok(KeySkeleton {
                id: r.get(0)?,
                owner: r.get(1)?,
                master_version: r.get(2)?,
                created_at_ms: r.get(3)?,
                destroyed_at_ms: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(db_err("cannot read the keyring"))?;
    Ok(SnapshotInfo {
        environment,
        schema_version,
        data_keys,
    })
}

/// Overwrite every wrapped data key in the snapshot copy (never the live database).
fn strip_keys(path: &Path) -> Result<()> {
    let c = Connection::open(path).map_err(db_err("cannot open the snapshot"))?;
    c.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA secure_delete = ON;
         UPDATE keyring_data_keys SET wrapped = NULL;",
    )
    .map_err(db_err("cannot strip the keyring from the snapshot"))?;
    let left: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM keyring_data_keys WHERE wrapped IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .map_err(db_err("cannot check the snapshot"))?;
    if left != 0 {
        return Err(BackupError::Io(
            "the snapshot still holds wrapped keys".into(),
        ));
    }
    Ok(())
}

/// `PRAGMA integrity_check` must answer `ok`.
pub fn integrity_check(path: &Path) -> Result<()> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|_| BackupError::BadFile("the payload is not a SQLite database".into()))?;
    let rows: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))
                .and_then(|r| r.collect::<std::result::Result<Vec<_>, _>>())
        })
        .map_err(|_| {
            BackupError::BadFile("the payload is not a readable SQLite database".into())
        })?;
    if rows != ["ok"] {
        return Err(BackupError::BadFile(format!(
            "the database in the backup fails PRAGMA integrity_check ({} problems, first: {}); use another backup",
            rows.len(),
            rows.first()
                .map(|s| s.chars().take(120).collect::<String>())
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// Put the data-key skeleton rows back as they were: nothing to do on SQLite (the rows are
/// in the snapshot with `wrapped = NULL`). Rewrite the environment for `--into-env`.
pub fn set_environment(path: &Path, env: &str) -> Result<()> {
    let c = Connection::open(path).map_err(db_err("cannot open the restored database"))?;
    c.execute(
        "UPDATE stockade_meta SET value = ?1 WHERE key = 'environment'",
        [env],
    )
    .map_err(db_err(
        "cannot set the environment of the restored database",
    ))?;
    Ok(())
}
