//! The one error of building and running the application. `Config` is a refusal of the
//! settings (the binary exits 2); the lower crates' errors keep their own kinds; `Start`
//! is a runtime failure to start or run an engine. Messages carry no secrets: they are
//! built from the typed errors of the lower crates, which never include key material.

use stockade_access::AccessError;
use stockade_store::StoreError;
use stockade_vault::{MasterKeyError, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is refused (a usage error).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(transparent)]
    Access(#[from] AccessError),
    /// An engine or the server could not start or stopped with an error.
    #[error("{0}")]
    Start(String),
}

impl AppError {
    pub fn config(message: impl Into<String>) -> AppError {
        AppError::Config(message.into())
    }
}
