//! Incident controls every process obeys: an isolated workflow or connection, and the
//! instance's lockdown.
//!
//! The controls are rows of `incident_controls` (written by `stockade-incident`, from
//! the CLI or the console, in an audited commit). Each process reads them into a small
//! in-memory [`ControlSnapshot`] that the hot paths (the egress gateway, the webhook
//! handlers, the request gate, the workflow workers, the sync pushers and pollers) query
//! without touching the database: [`Controls`] is an `Arc`-swapped snapshot behind a
//! read lock, cloned in nanoseconds.
//!
//! The snapshot is refreshed from the database every [`REFRESH`] (500 ms) by a task
//! started on the first [`crate::Store::controls`] call of a process, so a control
//! written by another process (`stockade incident isolate` from a shell next to a
//! running `stockade serve`) takes effect there within a second. A process that writes
//! a control itself reloads at once ([`crate::Store::refresh_controls`]). Rows of a drill
//! (`drill = 1`) are read but never enforced. A read that fails keeps the last snapshot
//! (logged). On PostgreSQL the writer also sends `NOTIFY stockade_controls` and every
//! process LISTENs on its own connection, so a control reaches the others in
//! milliseconds; the periodic read stays the source of truth (a lost notification, a
//! reconnect, or PgBouncer in transaction mode, where LISTEN receives nothing).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::sql::{Columns, FromRow, SqlRow};

/// How often every process re-reads the controls.
pub const REFRESH: Duration = Duration::from_millis(500);

/// The controls in force, as one process last read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlSnapshot {
    /// The incident whose lockdown is in force, if any.
    pub lockdown: Option<i64>,
    /// Isolated workflows, by name.
    pub workflows: BTreeSet<String>,
    /// Isolated connections, by name.
    pub connections: BTreeSet<String>,
    /// Whether this snapshot was read from the database (not the empty start value).
    pub loaded: bool,
}

impl ControlSnapshot {
    /// Whether the instance is locked down.
    pub fn locked_down(&self) -> bool {
        self.lockdown.is_some()
    }

    pub fn workflow_isolated(&self, name: &str) -> bool {
        self.workflows.contains(name)
    }

    pub fn connection_isolated(&self, name: &str) -> bool {
        self.connections.contains(name)
    }
}

/// One control row as enforced (drill rows excluded by the query).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ControlRow {
    kind: String,
    name: String,
    incident_id: i64,
}

impl FromRow for ControlRow {
    fn from_row(c: &mut Columns<'_>) -> crate::Result<Self> {
        Ok(ControlRow {
            kind: c.get()?,
            name: c.get()?,
            incident_id: c.get()?,
        })
    }
}

pub(crate) const ENFORCED: &str =
    "SELECT kind, name, incident_id FROM incident_controls WHERE drill = 0 ORDER BY kind, name";

pub(crate) fn snapshot_of(rows: &[SqlRow]) -> crate::Result<ControlSnapshot> {
    let mut s = ControlSnapshot {
        loaded: true,
        ..ControlSnapshot::default()
    };
    for row in rows {
        let r: ControlRow = row.decode()?;
        match r.kind.as_str() {
            "lockdown" => s.lockdown = Some(r.incident_id),
            "workflow" => {
                s.workflows.insert(r.name);
            }
            "connection" => {
                s.connections.insert(r.name);
            }
            // A kind a newer version wrote: not enforced here.
            _ => {}
        }
    }
    Ok(s)
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    snapshot: RwLock<Arc<ControlSnapshot>>,
    started: AtomicBool,
    /// The periodic read's interval in ms; 0: [`REFRESH`].
    period_ms: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub(crate) fn set(&self, s: ControlSnapshot) {
        let mut w = self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *w = Arc::new(s);
    }

    fn period(&self) -> Duration {
        match self.period_ms.load(Ordering::Relaxed) {
            0 => REFRESH,
            ms => Duration::from_millis(ms),
        }
    }

    /// Whether the refresher must be started now (true once per process' store).
    pub(crate) fn claim_start(&self) -> bool {
        // A plain load first: the hot paths call this on every request.
        !self.started.load(Ordering::Acquire) && !self.started.swap(true, Ordering::AcqRel)
    }
}

/// A cheap handle on the controls a process enforces (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct Controls {
    pub(crate) shared: Arc<Shared>,
}

impl Controls {
    /// Controls that never read a database: nothing is isolated, no lockdown (a gateway
    /// built without a store, unit tests).
    pub fn none() -> Controls {
        Controls::default()
    }

    /// Read the controls every `period` instead of every [`REFRESH`] (from the next
    /// wait on): a longer one leaves other processes' changes to the PostgreSQL
    /// notification alone (SQLite has none).
    pub fn set_refresh(&self, period: Duration) {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        self.shared.period_ms.store(ms, Ordering::Relaxed);
    }

    /// The controls in force now (as last read).
    pub fn snapshot(&self) -> Arc<ControlSnapshot> {
        self.shared
            .snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn locked_down(&self) -> bool {
        self.snapshot().locked_down()
    }

    pub fn workflow_isolated(&self, name: &str) -> bool {
        self.snapshot().workflow_isolated(name)
    }

    pub fn connection_isolated(&self, name: &str) -> bool {
        self.snapshot().connection_isolated(name)
    }
}

/// The refresher: re-reads the controls every [`REFRESH`], and on PostgreSQL whenever
/// another process notifies a change, until the store is gone.
pub(crate) async fn follow(shared: Arc<Shared>, backend: Weak<crate::Backend>) {
    let mut warned = false;
    let mut wakeups = match backend.upgrade() {
        Some(b) => crate::wakeups(&b, crate::Topic::Controls).await,
        None => return,
    };
    loop {
        let Some(b) = backend.upgrade() else {
            return;
        };
        let read = crate::read_controls(&b).await;
        drop(b);
        match read {
            Ok(s) => {
                shared.set(s);
                warned = false;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        "could not read the incident controls (keeping the last ones): {e}"
                    );
                    warned = true;
                }
            }
        }
        wakeups.wait(shared.period()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::SqlValue;

    fn row(kind: &str, name: &str, incident: i64) -> SqlRow {
        SqlRow(vec![
            SqlValue::from(kind),
            SqlValue::from(name),
            SqlValue::from(incident),
        ])
    }

    #[test]
    fn rows_become_the_snapshot_the_hot_paths_query() {
        let s = snapshot_of(&[
            row("connection", "amazon-eu", 3),
            row("lockdown", "", 4),
            row("workflow", "nightly", 3),
            row("from-a-newer-version", "x", 5),
        ])
        .unwrap();
        assert!(s.loaded && s.locked_down() && s.lockdown == Some(4));
        assert!(s.connection_isolated("amazon-eu") && !s.connection_isolated("nightly"));
        assert!(s.workflow_isolated("nightly") && !s.workflow_isolated("amazon-eu"));
        let none = Controls::none();
        assert!(!none.locked_down() && !none.snapshot().loaded);
        none.shared.set(s);
        assert!(
            none.locked_down(),
            "a set snapshot is what every clone sees"
        );
    }
}
