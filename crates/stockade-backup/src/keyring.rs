//! The keyring export (`backup keyring`): the wrapped data keys, the master key versions'
//! fingerprints and the purge tombstones, in its own separately encrypted file.
//!
//! The data keys stay wrapped under the master key, which is never read here: restoring
//! needs this export (or the live database's keyring) AND the master key file, which the
//! operator backs up on their own. Destroyed keys are exported as tombstones (no key), so
//! a restore keeps them destroyed.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stockade_core::Actor;
use stockade_store::{Store, sql_params};

use crate::container::{self, Backend, Header};
use crate::crypt::{Decryption, Encryption};
use crate::record::{self, NewRecord};
use crate::scratch::{Scratch, create_private};
use crate::{BackupError, Result};

/// A master key version as the keyring records it (a fingerprint, never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterVersion {
    pub version: i64,
    pub fingerprint: String,
    pub created_at_ms: i64,
    pub retired_at_ms: Option<i64>,
}

/// A data key, wrapped under a master key version (hex), or a tombstone.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub id: i64,
    pub owner: String,
    pub master_version: Option<i64>,
    pub wrapped_hex: Option<String>,
    pub created_at_ms: i64,
    pub destroyed_at_ms: Option<i64>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("destroyed", &self.destroyed_at_ms.is_some())
            .finish_non_exhaustive()
    }
}

/// A purge that must stay done: the connection's rows go and its keys stay destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub connection: String,
    pub marketplace: String,
    pub at_ms: i64,
}

/// The keyring as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringExport {
    pub environment: String,
    pub exported_at_ms: i64,
    pub master_versions: Vec<MasterVersion>,
    pub data_keys: Vec<WrappedKey>,
    pub tombstones: Vec<Tombstone>,
}

impl KeyringExport {
    /// The keyring and tombstones of a database.
    pub async fn from_store(store: &Store) -> Result<KeyringExport> {
        let master_versions = store
            .master_keys()
            .await?
            .into_iter()
            .map(|m| MasterVersion {
                version: m.version,
                fingerprint: m.fingerprint,
                created_at_ms: m.created_at_ms,
                retired_at_ms: m.retired_at_ms,
            })
            .collect();
        let data_keys = store
            .data_keys()
            .await?
            .into_iter()
            .map(|k| WrappedKey {
                id: k.id,
                owner: k.owner,
                master_version: k.master_version,
                wrapped_hex: k.wrapped.as_deref().map(hex::encode),
                created_at_ms: k.created_at_ms,
                destroyed_at_ms: k.destroyed_at_ms,
            })
            .collect();
        let rows: Vec<(String, String, i64)> = store
            .query_as(
                "SELECT connection_name, marketplace, at_ms FROM purge_receipts ORDER BY id",
                sql_params![],
            )
            .await?;
        let tombstones = rows
            .into_iter()
            .map(|(connection, marketplace, at_ms)| Tombstone {
                connection,
                marketplace,
                at_ms,
            })
            .collect();
        Ok(KeyringExport {
            environment: store.environment().as_str().into(),
            exported_at_ms: stockade_core::time::now_ms(),
            master_versions,
            data_keys,
            tombstones,
        })
    }

    /// Read an export file.
    pub async fn read(
        file: &Path,
        dec: &Decryption,
        scratch_parent: &Path,
    ) -> Result<KeyringExport> {
        let scratch = Scratch::new_in(scratch_parent, "keyring")?;
        let (_, payload) = crate::verify::decrypt_to(file, dec, &scratch, "keyring").await?;
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(&payload).map_err(crate::io_err("cannot read the keyring export"))?,
        );
        serde_json::from_slice(&bytes).map_err(|_| {
            BackupError::BadFile(format!(
                "{} is not a readable keyring export: use a file `stockade backup keyring` wrote",
                file.display()
            ))
        })
    }
}

/// What `backup keyring` wrote.
#[derive(Debug, Clone)]
pub struct KeyringReport {
    pub file_bytes: u64,
    pub live_keys: usize,
    pub destroyed_keys: usize,
    pub tombstones: usize,
}

/// `backup keyring --to FILE`: export, encrypt, write atomically, record.
pub async fn export(
    store: &Store,
    actor: &Actor,
    to: &Path,
    encryption: &Encryption,
    scratch_parent: &Path,
) -> Result<KeyringReport> {
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} already exists; choose a new name or move the old file away",
            to.display()
        )));
    }
    let export = KeyringExport::from_store(store).await?;
    let scratch = Scratch::new_in(scratch_parent, "keyring")?;
    let payload = scratch.join("keyring.json");
    {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&export)
                .map_err(|e| BackupError::Io(format!("cannot encode the keyring: {e}")))?,
        );
        let mut f = create_private(&payload)?;
        f.write_all(&json)
            .map_err(crate::io_err("cannot write the keyring"))?;
    }
    let (payload_bytes, payload_sha256) = container::hash_file(&payload)?;
    let header = Header {
        format: container::FORMAT,
        kind: "keyring".into(),
        environment: export.environment.clone(),
        created_at_ms: export.exported_at_ms,
        backend: if store.describe().starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        },
        schema_version: stockade_store::MIGRATIONS.last().map_or(0, |m| m.version),
        stockade_version: env!("CARGO_PKG_VERSION").into(),
        pg_schema: None,
        data_keys: Vec::new(),
        payload_bytes,
        payload_sha256: payload_sha256.clone(),
    };
    let file_bytes = crate::create::encrypt_file(to, encryption, &header, &payload).await?;
    let live = export
        .data_keys
        .iter()
        .filter(|k| k.destroyed_at_ms.is_none())
        .count();
    let report = KeyringReport {
        file_bytes,
        live_keys: live,
        destroyed_keys: export.data_keys.len() - live,
        tombstones: export.tombstones.len(),
    };
    record::record(
        store,
        actor,
        NewRecord {
            operation: "keyring",
            trigger: "cli",
            path: to.display().to_string(),
            bytes: i64::try_from(file_bytes).ok(),
            sha256: Some(payload_sha256),
            env: export.environment.clone(),
            kind: encryption.kind().into(),
            error: None,
            counts: vec![
                ("live_keys", report.live_keys as i64),
                ("destroyed_keys", report.destroyed_keys as i64),
                ("tombstones", report.tombstones as i64),
            ],
        },
    )
    .await?;
    Ok(report)
}
