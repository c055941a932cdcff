//! The `stockade backup …` command tree (clap types only; the work is in
//! `commands/backup.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Who can decrypt a new file: age public keys, or one passphrase from a file.
#[derive(Debug, Args, Clone)]
pub struct EncryptArgs {
    /// An age x25519 public key (age1…, from `age-keygen`); repeat for several.
    #[arg(long = "recipient", value_name = "AGE_PUBKEY")]
    pub recipients: Vec<String>,
    /// A file holding the passphrase on its first line (scrypt; never on the command line).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// What decrypts a file: an age identity file, or the passphrase file.
#[derive(Debug, Args, Clone)]
pub struct DecryptArgs {
    /// The age identity file (AGE-SECRET-KEY-1…, as `age-keygen -o` writes it).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// A file holding the passphrase on its first line.
    #[arg(long = "passphrase-file", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted, consistent snapshot of the database while the server runs
    /// (no key material inside: the keyring has its own export).
    #[command(
        after_long_help = "SQLite: VACUUM INTO from a read connection; PostgreSQL: pg_dump -Fc of Stockade's schema.\nThe file is in the standard age format: `age -d -i KEYFILE FILE | tail -n +3` yields the\ndatabase (or pg_dump archive) without Stockade.\n\nExamples:\n  age-keygen -o backup-key.txt\n  stockade backup create --to /backups/stockade-prod.age --recipient age1…\n  stockade backup create --to stockade.age --passphrase-file passphrase.txt"
    )]
    Create {
        /// The backup file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        encrypt: EncryptArgs,
    },
    /// Decrypt a backup, check its hash and (SQLite) integrity, and name its environment,
    /// time, backend and schema version. Writes nothing. Exit 3 if the file is bad.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        decrypt: DecryptArgs,
    },
    /// Restore a backup into this data directory / database, atomically. Refuses another
    /// environment (unless --into-env), an existing database (unless --force) and a
    /// running server. Data keys come from the database being replaced or --keyring; purges
    /// recorded there are replayed, so purged sellers stay purged.
    #[command(
        after_long_help = "The master key file of the environment (DATA_DIR/master.key, or STOCKADE_MASTER_KEY_FILE)\nmust be in place: it is never inside a backup.\n\nExamples:\n  stockade --env prod backup restore stockade-prod.age --identity backup-key.txt --force\n  stockade --env prod --data-dir /srv/new backup restore stockade-prod.age \\\n      --identity backup-key.txt --keyring keyring-prod.age"
    )]
    Restore {
        file: PathBuf,
        #[command(flatten)]
        decrypt: DecryptArgs,
        /// A keyring export (`backup keyring`) to take the data keys and purge tombstones
        /// from (decrypted with the same --identity/--passphrase-file).
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
        /// Restore a backup of another environment into this one, on purpose.
        #[arg(long = "into-env", value_name = "ENV")]
        into_env: Option<String>,
        /// Replace the existing database.
        #[arg(long)]
        force: bool,
    },
    /// Restore drill: restore into a scratch place, check integrity, the audit chain and
    /// counts, throw the copy away, and record the result in the audit log.
    Drill {
        file: PathBuf,
        #[command(flatten)]
        decrypt: DecryptArgs,
    },
    /// Export the wrapped data keys and purge tombstones to their own encrypted file (the
    /// keys stay wrapped by the master key, which you back up separately).
    Keyring {
        /// The export file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        encrypt: EncryptArgs,
    },
    /// Backups, keyring exports, restores and drills this instance ran.
    List {
        /// How many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

impl BackupCommand {
    /// Commands that need no existing database here.
    pub fn offline(&self) -> bool {
        matches!(
            self,
            BackupCommand::Verify { .. } | BackupCommand::Restore { .. }
        )
    }
}

/// `stockade bench backup`.
#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchBackupArgs {
    /// Orders in the database (one line each).
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: usize,
    /// Reuse the data directory of an earlier run (seeded once) instead of a fresh one.
    #[arg(long, value_name = "DIR")]
    pub reuse: Option<PathBuf>,
    /// Seconds of ingest measured without, then with, a concurrent backup.
    #[arg(long, default_value_t = 10)]
    pub ingest_seconds: u64,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}
