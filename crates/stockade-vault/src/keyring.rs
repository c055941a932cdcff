//! The keyring: data keys per owner, wrapped under the master key, cached unwrapped in
//! memory; master key rotation; crypto-shredding.
//!
//! Invariants:
//! - The master key is used only to wrap and unwrap data keys. Unwrapped data keys are
//!   cached (aws-lc cleanses them when the last reference drops) and evicted on shred.
//! - Every keyring change (new data key, rotation, shred) is a [`Store::commit`] with its
//!   audit row, in one transaction.
//! - `open` checks each master key version the database uses against its stored
//!   fingerprint, so a wrong or foreign key file is named before any decryption fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use stockade_core::{Actor, Environment, Pii};
use stockade_store::{AuditDetails, AuditEntry, Change, Mutation, Store, StoreError};
use zeroize::Zeroizing;

use crate::cipher::{self, DataKey, FieldContext};
use crate::master::{MasterKeys, random_key};
use crate::tag::{self, PiiTag};
use crate::{Result, VaultError};

/// Who a data key belongs to: `system`, or `connection:<id>` (one marketplace
/// authorization). Crypto-shredding works per owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyOwner(String);

impl KeyOwner {
    pub fn system() -> Self {
        KeyOwner("system".into())
    }

    pub fn connection(id: &str) -> Result<Self> {
        Self::parse(&format!("connection:{id}"))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let ok = text == "system"
            || text.strip_prefix("connection:").is_some_and(|id| {
                !id.is_empty()
                    && id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if ok {
            Ok(KeyOwner(text.to_owned()))
        } else {
            Err(VaultError::BadOwner(text.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `rotate_master_key` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub new_version: u32,
    pub rewrapped: usize,
    pub retired: Vec<u32>,
}

/// Master key versions and their use, for `stockade key status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// (version, data keys wrapped under it, retired, present in the key file)
    pub master_versions: Vec<(u32, usize, bool, bool)>,
    pub live_data_keys: usize,
    pub destroyed_data_keys: usize,
}

/// The vault for one environment.
pub struct Vault {
    env: Environment,
    store: Store,
    master: Arc<MasterKeys>,
    cache: Mutex<HashMap<i64, Arc<DataKey>>>,
    tag_key: hmac::Key,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("env", &self.env)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

fn to_i64(v: u32) -> i64 {
    i64::from(v)
}

fn to_u32(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| VaultError::Malformed("master key version out of range"))
}

/// UTF-8 text from decrypted bytes; on failure the bytes are wiped, not just dropped.
pub(crate) fn utf8_or_wipe(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let mut raw = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut raw);
        VaultError::Malformed("not UTF-8")
    })
}

fn new_key_id() -> Result<i64> {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| VaultError::Rng)?;
    // Positive, non-zero 63-bit ids; collisions are caught by the primary key.
    Ok((i64::from_be_bytes(b) & i64::MAX).max(1))
}

impl Vault {
    /// First use of a fresh database (`stockade init`): register the master key versions
    /// and create the system data key, audited.
    pub async fn bootstrap(store: Store, master: MasterKeys, actor: &Actor) -> Result<Vault> {
        if master.environment() != store.environment() {
            return Err(VaultError::MasterKey(
                crate::MasterKeyError::WrongEnvironment {
                    source_name: master.source().to_string(),
                    found: master.environment().to_string(),
                    expected: store.environment(),
                },
            ));
        }
        if store.master_keys().await?.is_empty() {
            let mut changes = Vec::new();
            for v in master.versions() {
                let fingerprint = master.fingerprint(v).unwrap_or_default();
                changes.push(Change::new(
                    Mutation::AddMasterKey {
                        version: to_i64(v),
                        fingerprint: fingerprint.clone(),
                    },
                    AuditEntry::new(
                        "key.master.add",
                        format!("master_key:v{v}"),
                        AuditDetails::new()
                            .int("version", to_i64(v))
                            .str("fingerprint", &fingerprint),
                    ),
                ));
            }
            store.commit(actor, changes).await?;
        }
        let mut vault = Self::open_inner(store, master).await?;
        vault.data_key_for(&KeyOwner::system(), actor).await?;
        vault.load_tag_key().await?;
        Ok(vault)
    }

    /// Derive the PII tag key from the system data key; the vault is unusable without it.
    async fn load_tag_key(&mut self) -> Result<()> {
        let system = self
            .live_record(&KeyOwner::system())
            .await?
            .ok_or_else(|| {
                VaultError::Store(StoreError::NotInitialised(format!(
                    "{} (no system data key)",
                    self.store.describe()
                )))
            })?;
        let raw = self.unwrap_record(&system)?;
        self.tag_key = tag::derive_tag_key(&raw);
        Ok(())
    }

    /// Open the vault of an initialised database, checking the master key against it.
    pub async fn open(store: Store, master: MasterKeys) -> Result<Vault> {
        let mut vault = Self::open_inner(store, master).await?;
        vault.load_tag_key().await?;
        Ok(vault)
    }

    async fn open_inner(store: Store, master: MasterKeys) -> Result<Vault> {
        if master.environment() != store.environment() {
            return Err(VaultError::MasterKey(
                crate::MasterKeyError::WrongEnvironment {
                    source_name: master.source().to_string(),
                    found: master.environment().to_string(),
                    expected: store.environment(),
                },
            ));
        }
        let recorded = store.master_keys().await?;
        if recorded.is_empty() {
            return Err(VaultError::Store(StoreError::NotInitialised(format!(
                "{} (no keyring)",
                store.describe()
            ))));
        }
        let in_use: Vec<i64> = store
            .data_keys()
            .await?
            .iter()
            .filter_map(|k| k.master_version)
            .collect();
        for rec in &recorded {
            let v = to_u32(rec.version)?;
            match master.fingerprint(v) {
                Some(fp) if fp != rec.fingerprint => {
                    return Err(VaultError::WrongMasterKey { version: v });
                }
                None if in_use.contains(&rec.version) => {
                    return Err(VaultError::MasterKeyVersionMissing { version: v });
                }
                _ => {}
            }
        }
        let registered: Vec<u32> = recorded
            .iter()
            .filter_map(|r| u32::try_from(r.version).ok())
            .collect();
        if !registered.iter().any(|v| master.key(*v).is_some()) {
            // None of the file's versions was ever registered here: another database's key.
            return Err(VaultError::WrongMasterKey {
                version: master.active_version(),
            });
        }
        // A version in the file that the database never registered comes from a rotation
        // that stopped between writing the file and committing; it was never used.
        let unregistered: Vec<u32> = master
            .versions()
            .into_iter()
            .filter(|v| !registered.contains(v))
            .collect();
        if !unregistered.is_empty() {
            tracing::warn!(
                ?unregistered,
                "ignoring master key versions this database never registered (an interrupted rotation)"
            );
        }
        let master = master.retain_versions(&registered);
        Ok(Vault {
            env: store.environment(),
            store,
            master: Arc::new(master),
            cache: Mutex::new(HashMap::new()),
            // Never used as is: `open` and `bootstrap` replace it before returning.
            tag_key: hmac::Key::new(hmac::HMAC_SHA256, &[0u8; 32]),
        })
    }

    pub fn environment(&self) -> Environment {
        self.env
    }

    /// Drop cached keys and close the store (checkpointing SQLite's WAL).
    pub async fn close(self) {
        let Vault { store, cache, .. } = self;
        drop(cache);
        store.close().await;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn master_keys(&self) -> &MasterKeys {
        &self.master
    }

    async fn live_record(&self, owner: &KeyOwner) -> Result<Option<stockade_store::DataKeyRecord>> {
        Ok(self
            .store
            .data_keys()
            .await?
            .into_iter()
            .find(|k| k.owner == owner.as_str() && k.destroyed_at_ms.is_none()))
    }

    fn unwrap_record(&self, rec: &stockade_store::DataKeyRecord) -> Result<Zeroizing<[u8; 32]>> {
        let Some(wrapped) = &rec.wrapped else {
            return Err(VaultError::KeyDestroyed { key_id: rec.id });
        };
        let version = cipher::wrapped_master_version(wrapped)?;
        let master = self
            .master
            .key(version)
            .ok_or(VaultError::MasterKeyVersionMissing { version })?;
        cipher::unwrap_data_key(master, self.env.as_str(), &rec.owner, rec.id, wrapped)
            .map_err(|_| VaultError::WrongMasterKey { version })
    }

    fn cache_insert(&self, key: DataKey) -> Arc<DataKey> {
        let key = Arc::new(key);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key.id(), Arc::clone(&key));
        }
        key
    }

    fn cached(&self, id: i64) -> Option<Arc<DataKey>> {
        self.cache.lock().ok().and_then(|c| c.get(&id).cloned())
    }

    /// The owner's live data key, created (and audited) on first use.
    pub async fn data_key_for(&self, owner: &KeyOwner, actor: &Actor) -> Result<Arc<DataKey>> {
        for _ in 0..2 {
            if let Some(rec) = self.live_record(owner).await? {
                if let Some(k) = self.cached(rec.id) {
                    return Ok(k);
                }
                let raw = self.unwrap_record(&rec)?;
                return Ok(self.cache_insert(DataKey::new(rec.id, self.env.as_str(), &raw)?));
            }
            let id = new_key_id()?;
            let raw = random_key()?;
            let version = self.master.active_version();
            let master = self
                .master
                .key(version)
                .ok_or(VaultError::MasterKeyVersionMissing { version })?;
            let wrapped = cipher::wrap_data_key(
                master,
                version,
                self.env.as_str(),
                owner.as_str(),
                id,
                &raw,
            )?;
            let change = Change::new(
                Mutation::AddDataKey {
                    id,
                    owner: owner.as_str().to_owned(),
                    master_version: to_i64(version),
                    wrapped,
                },
                AuditEntry::new(
                    "key.data.create",
                    format!("data_key:{id}"),
                    AuditDetails::new()
                        .str("owner", owner.as_str())
                        .int("master_version", to_i64(version)),
                ),
            );
            match self.store.commit(actor, vec![change]).await {
                Ok(_) => return Ok(self.cache_insert(DataKey::new(id, self.env.as_str(), &raw)?)),
                // Another task created this owner's key first: use that one.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(VaultError::Store(StoreError::Conflict(format!(
            "could not create a data key for {}",
            owner.as_str()
        ))))
    }

    /// Encrypt a field under the owner's data key.
    pub async fn encrypt(
        &self,
        owner: &KeyOwner,
        ctx: &FieldContext<'_>,
        plaintext: &[u8],
        actor: &Actor,
    ) -> Result<Vec<u8>> {
        self.data_key_for(owner, actor)
            .await?
            .seal_field(ctx, plaintext)
    }

    /// Encrypt a PII string.
    pub async fn encrypt_pii(
        &self,
        owner: &KeyOwner,
        ctx: &FieldContext<'_>,
        value: &Pii<String>,
        actor: &Actor,
    ) -> Result<Vec<u8>> {
        self.encrypt(owner, ctx, value.expose_pii().as_bytes(), actor)
            .await
    }

    /// Decrypt a field. A destroyed key gives [`VaultError::KeyDestroyed`]; an altered or
    /// misplaced ciphertext gives [`VaultError::DecryptFailed`].
    pub async fn decrypt(
        &self,
        ctx: &FieldContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key_id = cipher::field_key_id(ciphertext)?;
        if let Some(k) = self.cached(key_id) {
            return k.open_field(ctx, ciphertext);
        }
        let rec = self
            .store
            .data_key(key_id)
            .await?
            .ok_or(VaultError::UnknownKey { key_id })?;
        let raw = self.unwrap_record(&rec)?;
        self.cache_insert(DataKey::new(rec.id, self.env.as_str(), &raw)?)
            .open_field(ctx, ciphertext)
    }

    /// Decrypt a PII string.
    pub async fn decrypt_pii(
        &self,
        ctx: &FieldContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Pii<String>> {
        let bytes = self.decrypt(ctx, ciphertext).await?;
        Ok(Pii::new(utf8_or_wipe(bytes.to_vec())?))
    }

    /// The keyed tag of a PII value, for audit rows.
    pub fn pii_tag(&self, value: &Pii<String>) -> PiiTag {
        tag::tag_pii(&self.tag_key, value)
    }

    /// The tag of a raw value an auditor wants to look up (`stockade audit hash-value`).
    pub fn tag_bytes(&self, value: &[u8]) -> PiiTag {
        tag::hmac_tag(&self.tag_key, value)
    }

    /// Add a master key version (already written to the key file by the caller) and
    /// rewrap every live data key under it, in one audited transaction. Data is not
    /// re-encrypted: only the data keys' wrapping changes.
    pub async fn rotate_master_key(
        &mut self,
        new_master: MasterKeys,
        actor: &Actor,
    ) -> Result<RotationReport> {
        let new_version = new_master.active_version();
        if new_version <= self.master.active_version() {
            return Err(VaultError::Malformed(
                "the new master key version must be higher than the active one",
            ));
        }
        let new_key = new_master
            .key(new_version)
            .ok_or(VaultError::MasterKeyVersionMissing {
                version: new_version,
            })?;
        let fingerprint = new_master.fingerprint(new_version).unwrap_or_default();
        let mut changes = vec![Change::new(
            Mutation::AddMasterKey {
                version: to_i64(new_version),
                fingerprint: fingerprint.clone(),
            },
            AuditEntry::new(
                "key.master.add",
                format!("master_key:v{new_version}"),
                AuditDetails::new()
                    .int("version", to_i64(new_version))
                    .str("fingerprint", &fingerprint),
            ),
        )];
        let keys = self.store.data_keys().await?;
        let mut rewrapped = 0;
        for rec in keys.iter().filter(|k| k.destroyed_at_ms.is_none()) {
            let raw = self.unwrap_record(rec)?;
            let from = rec.master_version.unwrap_or_default();
            let wrapped = cipher::wrap_data_key(
                new_key,
                new_version,
                self.env.as_str(),
                &rec.owner,
                rec.id,
                &raw,
            )?;
            changes.push(Change::new(
                Mutation::RewrapDataKey {
                    id: rec.id,
                    from_version: from,
                    to_version: to_i64(new_version),
                    wrapped,
                },
                AuditEntry::new(
                    "key.data.rewrap",
                    format!("data_key:{}", rec.id),
                    AuditDetails::new()
                        .int("from_version", from)
                        .int("to_version", to_i64(new_version)),
                ),
            ));
            rewrapped += 1;
        }
        let retired: Vec<u32> = self
            .store
            .master_keys()
            .await?
            .iter()
            .filter(|m| m.retired_at_ms.is_none())
            .filter_map(|m| u32::try_from(m.version).ok())
            .collect();
        for v in &retired {
            changes.push(Change::new(
                Mutation::RetireMasterKey {
                    version: to_i64(*v),
                },
                AuditEntry::new(
                    "key.master.retire",
                    format!("master_key:v{v}"),
                    AuditDetails::new().int("version", to_i64(*v)),
                ),
            ));
        }
        changes.push(Change::event(AuditEntry::new(
            "key.rotate",
            format!("master_key:v{new_version}"),
            AuditDetails::new()
                .int("new_version", to_i64(new_version))
                .int("rewrapped", i64::try_from(rewrapped).unwrap_or(i64::MAX)),
        )));
        self.store.commit(actor, changes).await?;
        self.master = Arc::new(new_master);
        Ok(RotationReport {
            new_version,
            rewrapped,
            retired,
        })
    }

    /// Crypto-shred: destroy the owner's data key(s). Every ciphertext under them becomes
    /// permanently unreadable. Returns the destroyed key ids.
    pub async fn shred(&self, owner: &KeyOwner, reason: &str, actor: &Actor) -> Result<Vec<i64>> {
        let ids: Vec<i64> = self
            .store
            .data_keys()
            .await?
            .into_iter()
            .filter(|k| k.owner == owner.as_str() && k.destroyed_at_ms.is_none())
            .map(|k| k.id)
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        let changes = ids
            .iter()
            .map(|id| {
                Change::new(
                    Mutation::DestroyDataKey { id: *id },
                    AuditEntry::new(
                        "key.data.destroy",
                        format!("data_key:{id}"),
                        AuditDetails::new()
                            .str("owner", owner.as_str())
                            .str("reason", reason),
                    ),
                )
            })
            .collect();
        self.store.commit(actor, changes).await?;
        if let Ok(mut cache) = self.cache.lock() {
            for id in &ids {
                cache.remove(id);
            }
        }
        self.store.checkpoint().await?;
        Ok(ids)
    }

    /// Master key versions and data keys, for operators.
    pub async fn status(&self) -> Result<KeyStatus> {
        let keys = self.store.data_keys().await?;
        let master_versions = self
            .store
            .master_keys()
            .await?
            .iter()
            .filter_map(|m| {
                let v = u32::try_from(m.version).ok()?;
                let used = keys
                    .iter()
                    .filter(|k| k.master_version == Some(m.version))
                    .count();
                Some((
                    v,
                    used,
                    m.retired_at_ms.is_some(),
                    self.master.key(v).is_some(),
                ))
            })
            .collect();
        Ok(KeyStatus {
            master_versions,
            live_data_keys: keys.iter().filter(|k| k.destroyed_at_ms.is_none()).count(),
            destroyed_data_keys: keys.iter().filter(|k| k.destroyed_at_ms.is_some()).count(),
        })
    }
}
