//! Named leases with fencing tokens, and the live processes (owned here: `leases`,
//! `processes`): who does a piece of background work when several processes share one
//! database.
//!
//! - **A lease** is a row named after what it guards (`connection:42`, …). Taking it
//!   ([`Store::acquire_lease`]) succeeds only when nobody holds it or its holder let it
//!   expire; every new holder gets the previous token plus one (the fencing token).
//!   Renewing ([`Store::renew_lease`]) works only while the token is current, so a
//!   holder learns it lost the lease; [`Store::release_lease`] hands it back at once.
//! - **The fence** ([`Grant::fence`]) is a step of a commit made on the lease's
//!   behalf: it touches the lease row only while the token is current and refuses the
//!   whole commit ([`crate::StoreError::Fenced`]) otherwise. A holder that was paused
//!   past its expiry (a stop-the-world pause, a frozen VM) and whose lease another
//!   process took in the meantime cannot commit over its successor. On PostgreSQL the
//!   step takes the row's lock, so a takeover and a fenced commit are ordered: one of
//!   them waits for the other. A holder whose lease expired but whom nobody replaced may
//!   still commit (nobody else did the work), as with jobs ([`crate::jobs`]).
//! - **Processes** register with their role and heartbeat ([`Store::heartbeat_process`]);
//!   [`Store::live_processes`] lists those whose heartbeat has not expired, so work can
//!   be shared fairly and taken over when one dies.
//!
//! Expiry is decided on the **database's clock** (`now` inside each statement), not the
//! caller's: every process compares against one clock, so a host whose clock is wrong
//! or jumps neither steals a lease early nor keeps one too long. Callers measure their
//! own remaining time with a monotonic clock from the moment they asked.
//!
//! Plain rows and statements only, no session advisory locks: this works behind
//! PgBouncer in transaction mode. Lease and process rows are bookkeeping written through
//! the unaudited path (see [`Store::write_unaudited`]); what is done under a lease is
//! committed and audited as usual.

use crate::sql::{Columns, Expect, FromRow};
use crate::{Mutation, Result, Store, StoreError, sql_params};

/// What a fenced commit's refusal names.
const FENCED: &str = "the lease (a newer holder took it)";

/// Milliseconds since the epoch on the database's clock, as SQL.
macro_rules! now_sqlite {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    };
}
macro_rules! now_pg {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

macro_rules! acquire_sql {
    ($now:expr) => {
        concat!(
            "INSERT INTO leases (name, holder, token, expires_at_ms, acquired_at_ms)
             VALUES ($1, $2, 1, ",
            $now,
            " + $3, ",
            $now,
            ")
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = leases.token + 1,
                 expires_at_ms = excluded.expires_at_ms, acquired_at_ms = excluded.acquired_at_ms
             WHERE leases.holder IS NULL OR leases.expires_at_ms < excluded.acquired_at_ms
             RETURNING token, expires_at_ms"
        )
    };
}
const ACQUIRE_SQLITE: &str = acquire_sql!(now_sqlite!());
const ACQUIRE_PG: &str = acquire_sql!(now_pg!());

macro_rules! renew_sql {
    ($now:expr) => {
        concat!(
            "UPDATE leases SET expires_at_ms = ",
            $now,
            " + $1 WHERE name = $2 AND holder = $3 AND token = $4 RETURNING expires_at_ms"
        )
    };
}
const RENEW_SQLITE: &str = renew_sql!(now_sqlite!());
const RENEW_PG: &str = renew_sql!(now_pg!());

const RELEASE: &str = "UPDATE leases SET holder = NULL, expires_at_ms = 0
     WHERE name = $1 AND holder = $2 AND token = $3";
const RELEASE_ALL: &str = "UPDATE leases SET holder = NULL, expires_at_ms = 0 WHERE holder = $1";

macro_rules! list_sql {
    ($now:expr) => {
        concat!(
            "SELECT name, holder, token, expires_at_ms, ",
            $now,
            " FROM leases ORDER BY name"
        )
    };
}
const LIST_SQLITE: &str = list_sql!(now_sqlite!());
const LIST_PG: &str = list_sql!(now_pg!());

macro_rules! heartbeat_sql {
    ($now:expr) => {
        concat!(
            "INSERT INTO processes (id, role, version, started_at_ms, heartbeat_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, ",
            $now,
            ", ",
            $now,
            ", ",
            $now,
            " + $4)
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, version = excluded.version,
                 heartbeat_at_ms = excluded.heartbeat_at_ms, expires_at_ms = excluded.expires_at_ms"
        )
    };
}
const HEARTBEAT_SQLITE: &str = heartbeat_sql!(now_sqlite!());
const HEARTBEAT_PG: &str = heartbeat_sql!(now_pg!());

macro_rules! live_sql {
    ($now:expr) => {
        concat!(
            "SELECT id, role, version, started_at_ms, heartbeat_at_ms FROM processes
             WHERE expires_at_ms >= ",
            $now,
            " ORDER BY id"
        )
    };
}
const LIVE_SQLITE: &str = live_sql!(now_sqlite!());
const LIVE_PG: &str = live_sql!(now_pg!());

const DEREGISTER: &str = "DELETE FROM processes WHERE id = $1";

/// Rows of processes gone for a day are removed when a process starts.
macro_rules! prune_sql {
    ($now:expr) => {
        concat!(
            "DELETE FROM processes WHERE expires_at_ms < ",
            $now,
            " - 86400000"
        )
    };
}
const PRUNE_SQLITE: &str = prune_sql!(now_sqlite!());
const PRUNE_PG: &str = prune_sql!(now_pg!());

/// A lease this process holds: its name, holder and fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub holder: String,
    /// The fencing token: larger than every earlier holder's.
    pub token: i64,
    /// When it expires, on the database's clock (ms since the epoch).
    pub expires_at_ms: i64,
}

impl Grant {
    /// The fencing check as a step of a commit: touches the lease row only while this
    /// grant's token is current and refuses the whole commit otherwise. Put it first in
    /// a [`Mutation::Many`] (not guarded) with the changes made under the lease.
    pub fn fence(&self) -> Mutation {
        Mutation::Sql {
            statement: "UPDATE leases SET token = token WHERE name = $1 AND holder = $2 AND token = $3",
            params: sql_params![self.name.as_str(), self.holder.as_str(), self.token],
            expect: Expect::Fence(FENCED),
        }
    }
}

/// A lease row as [`Store::leases`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub name: String,
    /// `None` when released.
    pub holder: Option<String>,
    pub token: i64,
    pub expires_at_ms: i64,
    /// The database's clock when it was read.
    pub db_now_ms: i64,
}

impl LeaseRow {
    /// Held by someone, and not expired when read.
    pub fn held(&self) -> bool {
        self.holder.is_some() && self.expires_at_ms >= self.db_now_ms
    }
}

impl FromRow for LeaseRow {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(LeaseRow {
            name: c.get()?,
            holder: c.get()?,
            token: c.get()?,
            expires_at_ms: c.get()?,
            db_now_ms: c.get()?,
        })
    }
}

/// A live process as [`Store::live_processes`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    pub version: String,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
}

impl FromRow for ProcessRow {
    fn from_row(c: &mut Columns<'_>) -> Result<Self> {
        Ok(ProcessRow {
            id: c.get()?,
            role: c.get()?,
            version: c.get()?,
            started_at_ms: c.get()?,
            heartbeat_at_ms: c.get()?,
        })
    }
}

fn check_name(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} (1 to 200 printable characters)"
        )));
    }
    Ok(())
}

fn check_length(length_ms: i64) -> Result<()> {
    if !(100..=86_400_000).contains(&length_ms) {
        return Err(StoreError::Invalid(
            "lease length (100 ms to one day)".into(),
        ));
    }
    Ok(())
}

impl Store {
    fn pick(&self, sqlite: &'static str, pg: &'static str) -> &'static str {
        if self.is_postgres() { pg } else { sqlite }
    }

    /// Take lease `name` for `holder` for `length_ms` (database clock) when nobody holds
    /// it or its holder let it expire. `None`: someone else holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        length_ms: i64,
    ) -> Result<Option<Grant>> {
        check_name("lease name", name)?;
        check_name("lease holder", holder)?;
        check_length(length_ms)?;
        let rows = self
            .write_unaudited_rows(
                self.pick(ACQUIRE_SQLITE, ACQUIRE_PG),
                sql_params![name, holder, length_ms],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let (token, expires_at_ms): (i64, i64) = row.decode()?;
        Ok(Some(Grant {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token,
            expires_at_ms,
        }))
    }

    /// Extend a held lease by `length_ms` from now (database clock), only while its token
    /// is current. Returns the new expiry, or `None` when another holder took it (stop
    /// the work it guards).
    pub async fn renew_lease(&self, grant: &Grant, length_ms: i64) -> Result<Option<i64>> {
        check_length(length_ms)?;
        let rows = self
            .write_unaudited_rows(
                self.pick(RENEW_SQLITE, RENEW_PG),
                sql_params![
                    length_ms,
                    grant.name.as_str(),
                    grant.holder.as_str(),
                    grant.token
                ],
            )
            .await?;
        rows.first().map(|r| r.decode::<i64>()).transpose()
    }

    /// Give a lease back at once (another process may take it). False when it was no
    /// longer this grant's.
    pub async fn release_lease(&self, grant: &Grant) -> Result<bool> {
        let n = self
            .write_unaudited(
                RELEASE,
                sql_params![grant.name.as_str(), grant.holder.as_str(), grant.token],
            )
            .await?;
        Ok(n == 1)
    }

    /// The lease rows whose name starts with `prefix`, with the database's clock (the
    /// table holds a row per connection and a few more: it is read whole).
    pub async fn leases(&self, prefix: &str) -> Result<Vec<LeaseRow>> {
        let mut rows: Vec<LeaseRow> = self
            .query_as(self.pick(LIST_SQLITE, LIST_PG), vec![])
            .await?;
        rows.retain(|r| r.name.starts_with(prefix));
        Ok(rows)
    }

    /// Register this process (or renew its heartbeat) with its role, alive for
    /// `ttl_ms` more (database clock).
    pub async fn heartbeat_process(&self, id: &str, role: &str, ttl_ms: i64) -> Result<()> {
        check_name("process id", id)?;
        check_name("process role", role)?;
        check_length(ttl_ms)?;
        self.write_unaudited(
            self.pick(HEARTBEAT_SQLITE, HEARTBEAT_PG),
            sql_params![id, role, env!("CARGO_PKG_VERSION"), ttl_ms],
        )
        .await?;
        Ok(())
    }

    /// Forget processes gone for more than a day.
    pub async fn prune_processes(&self) -> Result<u64> {
        self.write_unaudited(self.pick(PRUNE_SQLITE, PRUNE_PG), vec![])
            .await
    }

    /// The processes whose heartbeat has not expired, by id.
    pub async fn live_processes(&self) -> Result<Vec<ProcessRow>> {
        self.query_as(self.pick(LIVE_SQLITE, LIVE_PG), vec![]).await
    }

    /// A process stopping: remove its row and release every lease it holds, so the
    /// others take its work at once rather than after the leases expire.
    pub async fn deregister_process(&self, id: &str) -> Result<()> {
        self.write_unaudited(RELEASE_ALL, sql_params![id]).await?;
        self.write_unaudited(DEREGISTER, sql_params![id]).await?;
        Ok(())
    }
}
