//! `backup restore`: refusals first, then a staged restore that becomes the database in
//! one step, with the keyring put back from the live database or a keyring export and the
//! purge tombstones replayed by the caller before the switch.
//!
//! Order: [`stage`] (decrypt, check, refuse; SQLite: a staged file in a scratch directory
//! of the data directory; PostgreSQL: the existing schema renamed aside, the archive
//! restored in its place) → [`Staged::apply_keyring`] on the staged store → the caller
//! replays purges with the existing purge code → [`Staged::commit`] (SQLite: rename over
//! the database; PostgreSQL: drop the old schema) or [`Staged::abort`] (everything as it
//! was). A refusal writes nothing.

use std::path::{Path, PathBuf};

use stockade_core::{Actor, Environment};
use stockade_store::{
    AuditDetails, AuditEntry, Change, DatabaseUrl, Expect, Mutation, Store, sql_params,
};

use crate::container::{Backend, Header};
use crate::crypt::Decryption;
use crate::keyring::KeyringExport;
pub use crate::keyring::Tombstone;
use crate::postgres::PgTarget;
use crate::scratch::Scratch;
use crate::{BackupError, Result};

/// The file the running server keeps in its data directory.
pub const PID_FILE: &str = "serve.pid";

/// The process id of a `stockade serve` running on this data directory, if any.
pub fn server_pid(data_dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(data_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let arg0 = cmdline.split(|b| *b == 0).next()?;
    String::from_utf8_lossy(arg0)
        .contains("stockade")
        .then_some(pid)
}

/// What a restore needs.
#[derive(Debug)]
pub struct RestoreOptions<'a> {
    pub file: PathBuf,
    pub decryption: &'a Decryption,
    pub target: &'a DatabaseUrl,
    /// The environment the restored database will have (None: the backup's own).
    pub target_env: Option<Environment>,
    /// `--into-env` was given (another environment is accepted).
    pub into_env: bool,
    pub force: bool,
    /// From `--keyring FILE`; else the keyring of the database being replaced.
    pub keyring: Option<KeyringExport>,
    pub data_dir: PathBuf,
}

enum Place {
    Sqlite {
        _scratch: Scratch,
        staged: PathBuf,
        dest: PathBuf,
    },
    Postgres {
        target: PgTarget,
        aside: Option<String>,
    },
}

/// A restore ready to become the database.
pub struct Staged {
    place: Place,
    url: DatabaseUrl,
    header: Header,
    keyring: KeyringExport,
    env: Environment,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Counts of putting the keyring back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyringApplied {
    pub live: i64,
    pub destroyed: i64,
    pub added: i64,
    /// Keys in the backup the keyring does not know (their data stays unreadable).
    pub missing: i64,
}

/// Decrypt, check and refuse; then stage the restore.
pub async fn stage(opts: RestoreOptions<'_>) -> Result<Staged> {
    if let Some(pid) = server_pid(&opts.data_dir) {
        return Err(BackupError::Refused(format!(
            "`stockade serve` (process {pid}) is running on {}: stop it first, then restore (nothing was written)",
            opts.data_dir.display()
        )));
    }
    // Nothing is created before the refusals: a fresh data directory's scratch goes in
    // its parent (same file system, so the final rename is still atomic).
    let scratch_parent = if opts.data_dir.is_dir() {
        opts.data_dir.clone()
    } else {
        opts.data_dir
            .parent()
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                BackupError::Usage(format!(
                    "the parent of the data directory {} does not exist: create it first",
                    opts.data_dir.display()
                ))
            })?
    };
    let scratch = Scratch::new_in(&scratch_parent, "restore")?;
    let (header, payload) =
        crate::verify::decrypt_to(&opts.file, opts.decryption, &scratch, "data").await?;
    crate::verify::check_payload(&header, &payload).await?;
    let target_env = match opts.target_env {
        Some(e) => e,
        None => Environment::parse(&header.environment)
            .map_err(|_| BackupError::BadFile("the backup names an unknown environment".into()))?,
    };
    let env = target_env.as_str();
    if header.environment != env && !opts.into_env {
        return Err(BackupError::Refused(format!(
            "{} is a backup of environment {}, not {env}: restore it with --env {} or, to restore it into {env} on purpose, add --into-env {env} (nothing was written)",
            opts.file.display(),
            header.environment,
            header.environment
        )));
    }
    let exists = target_exists(opts.target).await?;
    if exists && !opts.force {
        return Err(BackupError::Refused(format!(
            "{} already holds a database: add --force to replace it with the backup (nothing was written)",
            opts.target.describe()
        )));
    }
    let keyring = match opts.keyring {
        Some(k) => k,
        None if exists => current_keyring(opts.target).await?,
        None => {
            return Err(BackupError::Refused(
                "there is no database here to take the data keys from: give --keyring FILE (written by `stockade backup keyring`) (nothing was written)".into(),
            ));
        }
    };
    if keyring.environment != header.environment {
        return Err(BackupError::Refused(format!(
            "the keyring is of environment {}, the backup of {}: give the keyring export of the same environment",
            keyring.environment, header.environment
        )));
    }
    if opts.into_env && header.environment != env && !keyring.tombstones.is_empty() {
        return Err(BackupError::Refused(format!(
            "purges must be replayed, which needs the vault of environment {}: restore into {} and not across environments (nothing was written)",
            header.environment, header.environment
        )));
    }
    let place = match (header.backend, opts.target) {
        (Backend::Sqlite, DatabaseUrl::Sqlite(dest)) => {
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(crate::io_err(format!("cannot create {}", dir.display())))?;
            }
            let staged = scratch.join("stockade.db");
            std::fs::rename(&payload, &staged)
                .map_err(crate::io_err("cannot stage the restore"))?;
            if header.environment != env {
                crate::sqlite::set_environment(&staged, env)?;
            }
            Place::Sqlite {
                _scratch: scratch,
                staged,
                dest: dest.clone(),
            }
        }
        (Backend::Postgres, DatabaseUrl::Postgres { url, schema }) => {
            let target = PgTarget::new(url, schema.as_deref());
            stage_pg(target, &header, &payload, env, exists).await?
        }
        (b, _) => {
            return Err(BackupError::Refused(format!(
                "this is a {} backup; the configured database is {}: restore it into a {} database",
                b.as_str(),
                opts.target.describe(),
                b.as_str()
            )));
        }
    };
    let url = match &place {
        Place::Sqlite { staged, .. } => DatabaseUrl::Sqlite(staged.clone()),
        Place::Postgres { target, .. } => target.store_url(),
    };
    Ok(Staged {
        place,
        url,
        header,
        keyring,
        env: target_env,
    })
}

async fn stage_pg(
    target: PgTarget,
    header: &Header,
    payload: &Path,
    env: &str,
    exists: bool,
) -> Result<Place> {
    if header.pg_schema.as_deref() != Some(target.schema.as_str()) {
        return Err(BackupError::Refused(format!(
            "this backup holds PostgreSQL schema {}, the configured database uses schema {}: restore with stockade_schema={} in the database URL",
            header.pg_schema.as_deref().unwrap_or("?"),
            target.schema,
            header.pg_schema.as_deref().unwrap_or("?")
        )));
    }
    let aside = if exists {
        let mut b = [0u8; 4];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| BackupError::Io("no random numbers".into()))?;
        let name = format!("{}_pre_restore_{}", target.schema, hex::encode(b));
        target.rename_schema(&name).await?;
        Some(name)
    } else {
        None
    };
    if let Err(e) = target.restore(payload, &header.data_keys, env).await {
        let _ = target.drop_schema(&target.schema).await;
        if let Some(a) = &aside {
            let back = PgTarget {
                url: target.url.clone(),
                schema: a.clone(),
            };
            let _ = back.rename_schema(&target.schema).await;
        }
        return Err(e);
    }
    Ok(Place::Postgres { target, aside })
}

async fn target_exists(target: &DatabaseUrl) -> Result<bool> {
    match target {
        DatabaseUrl::Sqlite(p) => Ok(p.exists()),
        DatabaseUrl::Postgres { url, schema } => {
            PgTarget::new(url, schema.as_deref()).initialised().await
        }
    }
}

async fn current_keyring(target: &DatabaseUrl) -> Result<KeyringExport> {
    let env = stockade_store::probe_environment(target)
        .await?
        .and_then(|e| Environment::parse(&e).ok())
        .ok_or_else(|| {
            BackupError::Refused(
                "the database here has no readable keyring: give --keyring FILE (written by `stockade backup keyring`)".into(),
            )
        })?;
    let store = stockade_store::Store::open(target, env, &Default::default()).await.map_err(|e| {
        BackupError::Refused(format!(
            "cannot read the keyring of the database here ({e}): give --keyring FILE (written by `stockade backup keyring`)"
        ))
    })?;
    let k = KeyringExport::from_store(&store).await;
    store.close().await;
    k
}

const SET_LIVE: &str = "UPDATE keyring_data_keys SET wrapped = $1, master_version = $2 WHERE id = $3 AND destroyed_at_ms IS NULL";
const SET_DESTROYED: &str =
    "UPDATE keyring_data_keys SET wrapped = NULL, destroyed_at_ms = $1 WHERE id = $2";
const ADD_KEY: &str = "INSERT INTO keyring_data_keys (id, owner, master_version, wrapped, created_at_ms, destroyed_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
const ADD_MASTER: &str =
    "INSERT INTO keyring_master (version, fingerprint, created_at_ms, retired_at_ms)
     VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING";
const RETIRE_MASTER: &str =
    "UPDATE keyring_master SET retired_at_ms = $1 WHERE version = $2 AND retired_at_ms IS NULL";

impl Staged {
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn environment(&self) -> Environment {
        self.env
    }

    /// Purges recorded in the keyring source (the newest state): the caller replays them.
    pub fn tombstones(&self) -> &[Tombstone] {
        &self.keyring.tombstones
    }

    /// Put the wrapped data keys (and destroyed-key tombstones) back into the staged
    /// database, one audited commit.
    pub async fn apply_keyring(&self, store: &Store, actor: &Actor) -> Result<KeyringApplied> {
        let mut steps = Vec::new();
        let sql = |statement: &'static str, params| Mutation::Sql {
            statement,
            params,
            expect: Expect::Any,
        };
        for m in &self.keyring.master_versions {
            steps.push(sql(
                ADD_MASTER,
                sql_params![
                    m.version,
                    m.fingerprint.as_str(),
                    m.created_at_ms,
                    m.retired_at_ms
                ],
            ));
            if let Some(r) = m.retired_at_ms {
                steps.push(sql(RETIRE_MASTER, sql_params![r, m.version]));
            }
        }
        let mut n = KeyringApplied::default();
        let known: Vec<i64> = self.header.data_keys.iter().map(|k| k.id).collect();
        for k in &self.keyring.data_keys {
            let wrapped = match &k.wrapped_hex {
                Some(h) => Some(hex::decode(h).map_err(|_| {
                    BackupError::BadFile(
                        "the keyring export holds a malformed key; use another export".into(),
                    )
                })?),
                None => None,
            };
            if !known.contains(&k.id) {
                n.added += 1;
            }
            steps.push(sql(
                ADD_KEY,
                sql_params![
                    k.id,
                    k.owner.as_str(),
                    k.master_version,
                    wrapped.clone(),
                    k.created_at_ms,
                    k.destroyed_at_ms
                ],
            ));
            match (k.destroyed_at_ms, wrapped) {
                (Some(at), _) => {
                    n.destroyed += 1;
                    steps.push(sql(SET_DESTROYED, sql_params![at, k.id]));
                }
                (None, Some(w)) => {
                    n.live += 1;
                    steps.push(sql(SET_LIVE, sql_params![w, k.master_version, k.id]));
                }
                (None, None) => {}
            }
        }
        n.missing = self
            .header
            .data_keys
            .iter()
            .filter(|s| {
                s.destroyed_at_ms.is_none() && !self.keyring.data_keys.iter().any(|k| k.id == s.id)
            })
            .count() as i64;
        let audit = AuditEntry::new(
            "backup.restore.keyring",
            "keyring",
            AuditDetails::new()
                .int("live", n.live)
                .int("destroyed", n.destroyed)
                .int("added", n.added)
                .int("missing", n.missing),
        );
        store
            .commit(
                actor,
                vec![Change::new(
                    Mutation::Many {
                        steps,
                        guard: false,
                    },
                    audit,
                )],
            )
            .await?;
        Ok(n)
    }

    /// Make the staged restore the database.
    pub async fn commit(self) -> Result<()> {
        match self.place {
            Place::Sqlite {
                _scratch,
                staged,
                dest,
            } => {
                let s = staged.clone();
                tokio::task::spawn_blocking(move || checkpoint(&s))
                    .await
                    .map_err(|_| BackupError::Io("the checkpoint stopped".into()))??;
                for ext in ["db-wal", "db-shm"] {
                    let _ = std::fs::remove_file(dest.with_extension(ext));
                }
                std::fs::rename(&staged, &dest).map_err(crate::io_err(format!(
                    "cannot move the restored database to {}",
                    dest.display()
                )))?;
                if let Some(dir) = dest.parent()
                    && let Ok(d) = std::fs::File::open(dir)
                {
                    let _ = d.sync_all();
                }
                drop(_scratch);
                Ok(())
            }
            Place::Postgres { target, aside } => {
                if let Some(a) = aside {
                    target.drop_schema(&a).await?;
                }
                Ok(())
            }
        }
    }

    /// Undo the staging: the database is as it was.
    pub async fn abort(self) {
        if let Place::Postgres { target, aside } = self.place {
            let _ = target.drop_schema(&target.schema).await;
            if let Some(a) = aside {
                let back = PgTarget {
                    url: target.url.clone(),
                    schema: a,
                };
                if let Err(e) = back.rename_schema(&target.schema).await {
                    tracing::error!("could not put the previous schema back: {e}");
                }
            }
        }
    }
}

fn checkpoint(path: &Path) -> Result<()> {
    let c = rusqlite::Connection::open(path)
        .map_err(|e| BackupError::Io(format!("cannot open the staged database: {e}")))?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| BackupError::Io(format!("cannot checkpoint the staged database: {e}")))?;
    Ok(())
}
