//! Stockade's vault: the key hierarchy, field encryption, PII tags, the credential store
//! and crypto-shredding.
//!
//! Key hierarchy:
//! - A **master key** per environment (256-bit, versioned) lives only in a `0600` file or
//!   an environment variable, never in the config file or the database. The database
//!   keeps only each version's fingerprint, so a wrong key is named as such.
//! - A **data key** per data owner (`system`, and later one per marketplace connection),
//!   stored wrapped under a master key version in the keyring tables.
//! - **Fields** are encrypted under their owner's data key with AES-256-GCM, bound by
//!   associated data to environment, table, column and row id ([`cipher`]).
//!
//! Destroying an owner's data key (crypto-shredding) makes every copy of its ciphertexts
//! unreadable, in the database and in any backup of it, because the keyring is never
//! part of a data backup.

pub mod audit_head;
pub mod cipher;
pub mod credentials;
pub mod keyring;
pub mod master;
pub mod tag;

pub use audit_head::{HEAD_FILE, HeadCheck, HeadMark};
pub use cipher::FieldContext;
pub use credentials::{CredentialInfo, CredentialScopes, NewCredential};
pub use keyring::{KeyOwner, Vault};
pub use master::{MasterKeyError, MasterKeySource, MasterKeys};
pub use tag::PiiTag;

/// Errors from the vault. None of them carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The data key this ciphertext names was destroyed (crypto-shredded): the data is
    /// gone for good, by design.
    #[error(
        "data key {key_id} was destroyed (crypto-shredded); this value can never be decrypted again"
    )]
    KeyDestroyed { key_id: i64 },
    #[error("data key {key_id} is not in this keyring (wrong database or environment?)")]
    UnknownKey { key_id: i64 },
    /// The bytes are not a Stockade ciphertext of a known format.
    #[error("not a valid Stockade ciphertext ({0})")]
    Malformed(&'static str),
    /// Authentication failed: the ciphertext was altered, or it belongs to another row,
    /// column or environment.
    #[error(
        "decryption failed: the value was altered or does not belong to this row, column or environment"
    )]
    DecryptFailed,
    #[error(
        "the master key file does not match this database (version {version} has a different fingerprint): use the key file created by `stockade init` for this environment"
    )]
    WrongMasterKey { version: u32 },
    #[error(
        "the master key file lacks version {version}, which this database still uses: restore that version to the key file"
    )]
    MasterKeyVersionMissing { version: u32 },
    #[error(
        "invalid key owner {0:?}: use `system` or `connection:<id>` (letters, digits, - and _)"
    )]
    BadOwner(String),
    #[error("invalid credential: {0}")]
    BadCredential(String),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(transparent)]
    Store(#[from] stockade_store::StoreError),
    #[error("the system random number generator failed")]
    Rng,
}

pub type Result<T, E = VaultError> = std::result::Result<T, E>;
