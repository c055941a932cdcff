//! Exit codes and one-line error messages.
//!
//! 0 done · 1 runtime failure · 2 usage, configuration or environment error ·
//! 3 a verification found a problem · 130 stopped by Ctrl-C (the shell's 128 + SIGINT),
//! after a clean stop. Messages say what to do and carry no secrets:
//! they are built from the typed errors of the lower crates, which never include key
//! material, plaintext or database passwords.

use std::fmt;
use std::process::ExitCode;

use stockade_store::StoreError;
use stockade_vault::{MasterKeyError, VaultError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Runtime = 1,
    Usage = 2,
    Verification = 3,
    /// Stopped by Ctrl-C after cleaning up; nothing to print.
    Interrupted = 130,
}

/// A command's failure: its exit code and a one-line message.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Usage,
            message: message.into(),
        }
    }

    pub fn runtime(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Runtime,
            message: message.into(),
        }
    }

    pub fn verification(message: impl Into<String>) -> Self {
        Failure {
            kind: Kind::Verification,
            message: message.into(),
        }
    }

    /// Ctrl-C stopped a foreground command that then cleaned up: the shell convention
    /// (128 + SIGINT) tells a calling script it was interrupted, not completed.
    #[cfg(feature = "dev-tools")]
    pub fn interrupted() -> Self {
        Failure {
            kind: Kind::Interrupted,
            message: String::new(),
        }
    }

    pub fn from_master(e: MasterKeyError) -> Self {
        let kind = match e {
            MasterKeyError::Io { .. } => Kind::Runtime,
            _ => Kind::Usage,
        };
        Failure {
            kind,
            message: e.to_string(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind as u8)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, always.
        f.write_str(&self.message.replace('\n', " "))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::WrongEnvironment { .. }
            | StoreError::NotInitialised(_)
            | StoreError::AlreadyInitialised(..)
            | StoreError::SchemaTooNew { .. }
            | StoreError::PendingMigrations(_)
            | StoreError::MigrationChanged(_)
            | StoreError::BadUrl(_) => Kind::Usage,
            _ => Kind::Runtime,
        };
        Failure {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<VaultError> for Failure {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Store(s) => s.into(),
            VaultError::MasterKey(m) => Failure::from_master(m),
            VaultError::WrongMasterKey { .. }
            | VaultError::MasterKeyVersionMissing { .. }
            | VaultError::BadOwner(_)
            | VaultError::BadCredential(_) => Failure::usage(e.to_string()),
            VaultError::DecryptFailed
            | VaultError::Malformed(_)
            | VaultError::KeyDestroyed { .. }
            | VaultError::UnknownKey { .. } => Failure::verification(e.to_string()),
            VaultError::Rng => Failure::runtime(e.to_string()),
        }
    }
}

impl From<stockade_access::AccessError> for Failure {
    fn from(e: stockade_access::AccessError) -> Self {
        use stockade_access::AccessError as A;
        match e {
            A::Store(s) => s.into(),
            A::Vault(v) => v.into(),
            A::Hash(_) | A::Rng => Failure::runtime(e.to_string()),
            _ => Failure::usage(e.to_string()),
        }
    }
}

impl From<stockade_app::AppError> for Failure {
    fn from(e: stockade_app::AppError) -> Self {
        use stockade_app::AppError as A;
        match e {
            A::Config(m) => Failure::usage(m),
            A::Store(s) => s.into(),
            A::Vault(v) => v.into(),
            A::MasterKey(m) => Failure::from_master(m),
            A::Access(a) => a.into(),
            A::Start(m) => Failure::runtime(m),
        }
    }
}
