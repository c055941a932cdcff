//! Stockade backups: consistent online snapshots, encrypted in the standard `age` format
//! so the `age` command-line tool can decrypt them without Stockade.
//!
//! A backup file is one age stream (x25519 recipients or one scrypt passphrase) whose
//! plaintext is a small container ([`container`]): a magic line, one JSON header line
//! (format version, environment, time, backend, schema version, Stockade version, payload
//! length and SHA-256), then the payload: a SQLite snapshot taken with `VACUUM INTO`
//! ([`sqlite`]) or a `pg_dump -Fc` archive of Stockade's schema ([`postgres`]).
//!
//! Invariants:
//! - Key material is never inside a data backup: the wrapped data keys are erased from the
//!   snapshot copy (SQLite) or their table's data is excluded (PostgreSQL). The keyring has
//!   its own export ([`keyring`]); the master key file is never read here at all.
//! - Plaintext exists only in a `0700` scratch directory ([`scratch`]) that is removed on
//!   success, on error and on drop.
//! - Files appear whole or not at all: temp file, fsync, rename.
//! - A refusal writes nothing. Errors name the fix and never carry key material, rows or
//!   passphrases.

pub mod container;
pub mod create;
pub mod crypt;
pub mod drill;
pub mod keyring;
pub mod postgres;
pub mod record;
pub mod restore;
pub mod schedule;
pub mod scratch;
pub mod sqlite;
pub mod verify;

pub use container::{Backend, Header, KeySkeleton};
pub use create::{CreateReport, create};
pub use crypt::{Decryption, Encryption};
pub use drill::{DrillReport, drill};
pub use record::{BackupRecord, list};
pub use restore::{RestoreOptions, Staged, Tombstone};
pub use verify::{VerifyReport, verify};

/// Errors from backups. Each names what to do; none carries key material or row data.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Bad input from the operator (flags, files): exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The backup file is not usable (not age, wrong key, truncated, tampered).
    #[error("{0}")]
    BadFile(String),
    /// A refusal that protects data (environment, existing target, running server).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] stockade_store::StoreError),
    #[error(transparent)]
    Vault(#[from] stockade_vault::VaultError),
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// An I/O error with what was being done (paths are the operator's own, never data).
pub(crate) fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BackupError {
    move |e| BackupError::Io(format!("{what}: {e}"))
}
