//! What a `stockade serve` process does (`--role`), and the one-process rule on SQLite.
//!
//! - `all` (the default): the HTTP interface (console, API, webhooks) and the background
//!   work (sync, workflow workers, triggers, alert senders, retention, backups, the
//!   audit mirror).
//! - `api`: the HTTP interface only. Webhooks are verified, fetched and stored here
//!   (ingest is idempotent from any process); no connection's pushes, polls or
//!   reconciliation, no workflow workers, alert senders, retention, backups or mirror.
//! - `worker`: the background work only; its listener answers `/healthz`, `/readyz` and
//!   `/metrics` (for the orchestrator and the scraper) and 404 for everything else.
//!
//! Several processes need PostgreSQL: on PostgreSQL each connection's own work is owned
//! by one `all`/`worker` process at a time through a lease (`stockade_sync::Ownership`).
//! On SQLite only one `serve` runs on a database ([`lock_single_serve`]), with role
//! `all`.

use std::fs::File;
use std::path::PathBuf;

use stockade_store::DatabaseUrl;

use crate::AppError;

/// A process's role (see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    All,
    Api,
    Worker,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, AppError> {
        match s {
            "all" => Ok(Role::All),
            "api" => Ok(Role::Api),
            "worker" => Ok(Role::Worker),
            _ => Err(AppError::config(
                "--role must be all, api or worker (see `stockade serve --help`)",
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    /// Serves the console, the API and webhooks.
    pub fn serves_http(self) -> bool {
        self != Role::Worker
    }

    /// Runs background work (sync ownership, workers, senders, schedules).
    pub fn runs_work(self) -> bool {
        self != Role::Api
    }
}

/// Refuse a role other than `all` on SQLite, and hold the database's serve lock there so
/// a second `stockade serve` on the same SQLite database is refused (the lock goes with
/// the process, also on SIGKILL). Returns the lock to keep for the process's life; none
/// on PostgreSQL, where any number of processes may run.
pub fn lock_single_serve(database: &DatabaseUrl, role: Role) -> Result<Option<File>, AppError> {
    let DatabaseUrl::Sqlite(path) = database else {
        return Ok(None);
    };
    if role != Role::All {
        return Err(AppError::config(format!(
            "--role {} needs PostgreSQL: on SQLite one `stockade serve` does everything (--role all); see docs/scale-out.md",
            role.as_str()
        )));
    }
    let mut lock_path = PathBuf::from(path.as_os_str());
    lock_path.as_mut_os_string().push(".serve-lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            AppError::Start(format!(
                "cannot open the serve lock {}: {e}",
                lock_path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::config(format!(
            "another `stockade serve` is already running on {} (it holds {}); on SQLite only one process serves a database. Stop it first, or move to PostgreSQL to run several (docs/scale-out.md)",
            database.describe(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(AppError::Start(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// A process id unique among those sharing the database: the role, the host's name
/// when known, the pid and random digits.
pub fn node_id(role: Role) -> String {
    use std::hash::{BuildHasher, Hasher};
    // Random per process (the standard library seeds it from the OS).
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        .to_be_bytes();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{}-{host}-{}-{}",
        role.as_str(),
        std::process::id(),
        hex::encode(&r[..4])
    )
}
