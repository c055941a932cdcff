//! `backup create`: snapshot, check, encrypt, write atomically, record.
//!
//! Invariants: the destination never exists half-written (temp + fsync + rename); an
//! existing file is never overwritten; the plaintext snapshot lives only in a scratch
//! directory beside the database, removed on every path; every run, failed or not, is a
//! `backups` row with its audit row (failures best effort: the store may be the problem).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use stockade_core::Actor;
use stockade_store::{DatabaseUrl, Store};

use crate::container::{self, Backend, Header};
use crate::crypt::Encryption;
use crate::postgres::PgTarget;
use crate::record::{self, NewRecord};
use crate::scratch::{Scratch, write_atomic};
use crate::sqlite::SnapshotInfo;
use crate::{BackupError, Result};

/// What a backup run needs.
#[derive(Debug)]
pub struct CreateOptions<'a> {
    pub database: &'a DatabaseUrl,
    pub to: PathBuf,
    pub encryption: &'a Encryption,
    /// Where plaintext scratch goes (the data directory).
    pub scratch_parent: PathBuf,
    /// `cli` or `schedule`.
    pub trigger: &'static str,
}

/// What a backup run wrote.
#[derive(Debug, Clone)]
pub struct CreateReport {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub payload_bytes: u64,
    pub payload_sha256: String,
    pub header: Header,
    pub elapsed: std::time::Duration,
}

/// Take a backup of the open store's database while it runs.
pub async fn create(store: &Store, actor: &Actor, opts: CreateOptions<'_>) -> Result<CreateReport> {
    let env = store.environment().as_str().to_owned();
    let started = Instant::now();
    let out = create_inner(&opts, &env).await;
    let rec = match &out {
        Ok(r) => NewRecord {
            operation: "create",
            trigger: opts.trigger,
            path: opts.to.display().to_string(),
            bytes: i64::try_from(r.file_bytes).ok(),
            sha256: Some(r.payload_sha256.clone()),
            env: env.clone(),
            kind: opts.encryption.kind().into(),
            error: None,
            counts: vec![(
                "payload_bytes",
                i64::try_from(r.payload_bytes).unwrap_or(i64::MAX),
            )],
        },
        Err(e) => NewRecord {
            operation: "create",
            trigger: opts.trigger,
            path: opts.to.display().to_string(),
            env: env.clone(),
            kind: opts.encryption.kind().into(),
            error: Some(e.to_string().chars().take(400).collect()),
            ..NewRecord::default()
        },
    };
    if let Err(e) = record::record(store, actor, rec).await {
        tracing::warn!("could not record the backup run: {e}");
    }
    out.map(|mut r| {
        r.elapsed = started.elapsed();
        r
    })
}

async fn create_inner(opts: &CreateOptions<'_>, env: &str) -> Result<CreateReport> {
    if opts.to.exists() {
        return Err(BackupError::Refused(format!(
            "{} already exists; a backup never overwrites a file: choose a new name or move the old file away",
            opts.to.display()
        )));
    }
    if let Some(parent) = opts.to.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(BackupError::Usage(format!(
            "the directory {} does not exist: create it first",
            parent.display()
        )));
    }
    let scratch = Scratch::new_in(&opts.scratch_parent, "backup")?;
    let (backend, payload, info, pg_schema) = match opts.database {
        DatabaseUrl::Sqlite(db) => {
            let payload = scratch.join("stockade.db");
            let (db, p) = (db.clone(), payload.clone());
            let info = tokio::task::spawn_blocking(move || crate::sqlite::snapshot(&db, &p))
                .await
                .map_err(|_| BackupError::Io("the snapshot task stopped".into()))??;
            (Backend::Sqlite, payload, info, None)
        }
        DatabaseUrl::Postgres { url, schema } => {
            let payload = scratch.join("stockade.pgdump");
            let target = PgTarget::new(url, schema.as_deref());
            let info = target.dump(&payload).await?;
            (
                Backend::Postgres,
                payload,
                info,
                Some(target.schema.clone()),
            )
        }
    };
    let SnapshotInfo {
        environment,
        schema_version,
        data_keys,
    } = info;
    if environment != env {
        return Err(BackupError::Refused(format!(
            "the database says environment {environment}, this process runs {env}: check --env"
        )));
    }
    let (payload_bytes, payload_sha256) = container::hash_file(&payload)?;
    let header = Header {
        format: container::FORMAT,
        kind: "data".into(),
        environment,
        created_at_ms: stockade_core::clock::now_ms(),
        backend,
        schema_version,
        stockade_version: env!("CARGO_PKG_VERSION").into(),
        pg_schema,
        data_keys,
        payload_bytes,
        payload_sha256: payload_sha256.clone(),
    };
    let file_bytes = encrypt_file(&opts.to, opts.encryption, &header, &payload).await?;
    drop(scratch);
    Ok(CreateReport {
        path: opts.to.clone(),
        file_bytes,
        payload_bytes,
        payload_sha256,
        header,
        elapsed: std::time::Duration::ZERO,
    })
}

/// Encrypt header + payload into `to` atomically; returns the file size.
pub(crate) async fn encrypt_file(
    to: &Path,
    encryption: &Encryption,
    header: &Header,
    payload: &Path,
) -> Result<u64> {
    let (to, header, payload) = (to.to_path_buf(), header.clone(), payload.to_path_buf());
    let enc = match encryption {
        Encryption::Recipients(r) => Encryption::Recipients(r.clone()),
        Encryption::Passphrase(p, n) => Encryption::Passphrase(p.clone(), *n),
    };
    tokio::task::spawn_blocking(move || {
        write_atomic(&to, |file| {
            let mut w = enc.wrap(BufWriter::with_capacity(1 << 20, &mut *file))?;
            container::write(&mut w, &header, &payload)?;
            let mut inner = w
                .finish()
                .map_err(crate::io_err("cannot finish the age stream"))?;
            inner
                .flush()
                .map_err(crate::io_err("cannot write the backup"))?;
            drop(inner);
            Ok(file.metadata().map(|m| m.len()).unwrap_or_default())
        })
    })
    .await
    .map_err(|_| BackupError::Io("the encryption task stopped".into()))?
}
