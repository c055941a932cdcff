//! Ownership of each connection's background work when several processes share one
//! PostgreSQL database.
//!
//! Every process keeps every connection *live* (its connector and data key), so a
//! webhook can be verified, fetched and ingested by whichever process receives it —
//! ingest is idempotent and safe from any process. What a connection does on its own
//! — the pusher, the poller (and its returns), the reconciler, and so the connector's
//! rate buckets and quotas that those calls spend — runs only in the one worker process
//! that holds the lease `connection:<id>` (`stockade_store::lease`). A connection this
//! process does not own reads as paused to those loops ([`Live::status`]).
//!
//! The loop here, every third of the lease:
//! - renews this process's heartbeat row (`processes`, with its role);
//! - renews every lease it holds; one another process took is dropped at once, with a
//!   warning, and its work stops;
//! - counts the live worker processes and holds at most ⌈connections ÷ workers⌉
//!   leases: extras are released (a new worker gets its share within a round or two),
//!   and free or expired leases are taken up to the share;
//! - on shutdown releases everything ([`SyncEngine::shutdown`]), so the others take over
//!   at once; after a SIGKILL they do once the lease expires (a few seconds).
//!
//! Work is allowed only until the local deadline: the moment the lease was asked for
//! (a monotonic clock) plus its length minus a tenth, which is never later than the
//! database's expiry. A process paused past that stops acting without asking the
//! database; and the pusher's confirmed-quantity commit carries the lease's fence, so
//! a commit that raced a takeover is refused whole.
//!
//! Without [`Ownership`] (SQLite: one process) every connection is owned, as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use stockade_store::{Grant, Mutation, StoreError, Topic};

use super::{Inner, Live, SyncEngine};

/// Who this process is and whether it takes connections (`SyncOptions::ownership`).
#[derive(Debug, Clone)]
pub struct Ownership {
    /// This process's id (unique among the processes sharing the database).
    pub node: String,
    /// Its role as recorded in `processes` (`all`, `api`, `worker`).
    pub role: String,
    /// Whether it takes connection leases (`all` and `worker`); `api` never does.
    pub takes_work: bool,
    /// The lease length; renewed every third of it.
    pub lease: Duration,
}

impl Ownership {
    /// Defaults: a 6 s lease (a dead owner's connections are taken within ~6–8 s).
    pub fn new(node: impl Into<String>, role: impl Into<String>, takes_work: bool) -> Self {
        Ownership {
            node: node.into(),
            role: role.into(),
            takes_work,
            lease: Duration::from_secs(6),
        }
    }
}

/// A held lease and until when (monotonic) this process may act on it.
#[derive(Debug, Clone)]
struct Slot {
    grant: Grant,
    until: Instant,
    name: String,
}

/// The connections this process owns, shared by the engine and every `Live`.
#[derive(Debug, Default)]
pub(super) struct Owned {
    /// Off (no [`Ownership`]): every connection is this process's.
    enabled: bool,
    slots: RwLock<HashMap<i64, Slot>>,
}

impl Owned {
    pub(super) fn new(enabled: bool) -> Owned {
        Owned {
            enabled,
            slots: RwLock::new(HashMap::new()),
        }
    }

    /// Whether this process may do connection `id`'s own work now.
    pub(super) fn may_act(&self, id: i64) -> bool {
        if !self.enabled {
            return true;
        }
        self.slots
            .read()
            .is_ok_and(|s| s.get(&id).is_some_and(|s| Instant::now() < s.until))
    }

    /// The fence for a commit made as connection `id`'s owner (none when ownership is
    /// off). Without the lease (lost meanwhile) it is a fence that always refuses.
    pub(super) fn fence(&self, id: i64) -> Option<Mutation> {
        if !self.enabled {
            return None;
        }
        let held = self
            .slots
            .read()
            .ok()
            .and_then(|s| s.get(&id).map(|s| s.grant.clone()));
        Some(
            held.unwrap_or_else(|| Grant {
                name: lease_name(id),
                holder: String::new(),
                token: -1,
                expires_at_ms: 0,
            })
            .fence(),
        )
    }

    /// Whether ownership is on (several processes share the database).
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The lease held now for connection `id` (none when not held, or ownership is off).
    pub(super) fn grant(&self, id: i64) -> Option<Grant> {
        self.slots
            .read()
            .ok()
            .and_then(|s| s.get(&id).map(|s| s.grant.clone()))
    }

    fn held(&self) -> Vec<(i64, Slot)> {
        self.slots
            .read()
            .map(|s| s.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }

    fn drop_slot(&self, id: i64) -> Option<Slot> {
        self.slots.write().ok()?.remove(&id)
    }
}

/// A fenced commit was refused, or a renewal found another holder: stop the work.
pub(super) fn lost(inner: &Inner, live: &Live, err: &StoreError) -> bool {
    if !matches!(err, StoreError::Fenced(_)) {
        return false;
    }
    if inner.owned.drop_slot(live.id).is_some() {
        tracing::warn!(connection = %live.name, "lease for connection {} lost to a newer holder; stopping its work", live.name);
    }
    true
}

fn lease_name(id: i64) -> String {
    format!("connection:{id}")
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The local deadline of a lease asked for at `asked`: a tenth short of its length.
fn deadline(asked: Instant, lease: Duration) -> Instant {
    asked + lease - lease / 10
}

impl SyncEngine {
    /// The connections (by name) whose own work this process does now.
    pub fn owned_connections(&self) -> Vec<String> {
        let ids: HashSet<i64> = self
            .inner
            .owned
            .held()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut names: Vec<String> = self
            .inner
            .live
            .read()
            .map(|m| {
                m.values()
                    .filter(|l| !self.inner.owned.enabled || ids.contains(&l.id))
                    .map(|l| l.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Release every lease and remove this process's row (at shutdown).
    pub(super) async fn release_ownership(&self) {
        let Some(o) = &self.inner.opts.ownership else {
            return;
        };
        if let Ok(mut s) = self.inner.owned.slots.write() {
            s.clear();
        }
        if let Err(e) = self.inner.store.deregister_process(&o.node).await {
            tracing::warn!(
                "could not release this process's leases ({e}); the others take over when they expire"
            );
        }
    }
}

/// The ownership loop (see the module), until shutdown.
pub(super) async fn owner_loop(inner: Arc<Inner>, o: Ownership) {
    let mut stop = inner.shutdown.subscribe();
    let every = (o.lease / 3).max(Duration::from_millis(50));
    let _ = inner.store.prune_processes().await;
    // Another process's connection change or shutdown (it released its leases) shortens
    // the wait; the round on the timer is what counts.
    let mut wake = inner.store.wakeups(Topic::Connections).await;
    loop {
        if *stop.borrow() {
            return;
        }
        match round(&inner, &o).await {
            // The store says once that the database is away; the leases' local
            // deadlines stop the work meanwhile, and a later round renews or re-takes.
            Err(e) if e.is_unavailable() => {
                tracing::debug!("connection ownership: {e}; trying again in {every:?}");
            }
            Err(e) => tracing::warn!("connection ownership: {e}; trying again in {every:?}"),
            Ok(()) => {}
        }
        super::app_shares::apply(&inner);
        tokio::select! {
            () = wake.wait(every) => {}
            _ = stop.changed() => return,
        }
    }
}

pub(super) async fn round(inner: &Inner, o: &Ownership) -> stockade_store::Result<()> {
    let store = &inner.store;
    let ttl = ms(o.lease).max(100);
    store.heartbeat_process(&o.node, &o.role, ttl).await?;
    if !o.takes_work {
        return Ok(());
    }
    // The connections that exist here (revoked ones are gone from the live map).
    let live: HashMap<i64, String> = inner
        .live
        .read()
        .map(|m| m.values().map(|l| (l.id, l.name.clone())).collect())
        .unwrap_or_default();
    // Renew what is held; drop what is lost or no longer a connection.
    for (id, slot) in inner.owned.held() {
        if !live.contains_key(&id) {
            inner.owned.drop_slot(id);
            let _ = store.release_lease(&slot.grant).await;
            continue;
        }
        let asked = Instant::now();
        match store.renew_lease(&slot.grant, ttl).await {
            Ok(Some(_)) => {
                if let Ok(mut s) = inner.owned.slots.write()
                    && let Some(s) = s.get_mut(&id)
                {
                    s.until = deadline(asked, o.lease);
                }
            }
            Ok(None) => {
                if inner.owned.drop_slot(id).is_some() {
                    tracing::warn!(connection = %slot.name, "lease for connection {} lost to a newer holder; stopping its work", slot.name);
                }
            }
            // The database is unreachable: the work stops by itself at the local
            // deadline; the next round tries again.
            Err(e) => return Err(e),
        }
    }
    let workers = store
        .live_processes()
        .await?
        .iter()
        .filter(|p| p.role != "api")
        .count()
        .max(1);
    let share = live.len().div_ceil(workers);
    let mut held: Vec<i64> = inner.owned.held().into_iter().map(|(k, _)| k).collect();
    held.sort_unstable();
    // More than the share (a worker joined): hand the extras back.
    while held.len() > share {
        let Some(id) = held.pop() else { break };
        if let Some(slot) = inner.owned.drop_slot(id) {
            let _ = store.release_lease(&slot.grant).await;
            tracing::info!(connection = %slot.name, token = slot.grant.token, "released connection {} to share the work with another process", slot.name);
        }
    }
    if held.len() >= share {
        return Ok(());
    }
    // Fewer: take free or expired leases up to the share.
    let taken: HashSet<String> = store
        .leases("connection:")
        .await?
        .into_iter()
        .filter(|r| r.held())
        .map(|r| r.name)
        .collect();
    let mut free: Vec<(i64, String)> = live
        .into_iter()
        .filter(|(id, _)| !held.contains(id) && !taken.contains(&lease_name(*id)))
        .collect();
    free.sort_unstable();
    for (id, name) in free {
        if held.len() >= share {
            break;
        }
        let asked = Instant::now();
        if let Some(grant) = store.acquire_lease(&lease_name(id), &o.node, ttl).await? {
            tracing::info!(connection = %name, token = grant.token, "this process now runs connection {name}'s pushes, polls and reconciliation");
            if let Ok(mut s) = inner.owned.slots.write() {
                s.insert(
                    id,
                    Slot {
                        grant,
                        until: deadline(asked, o.lease),
                        name,
                    },
                );
            }
            held.push(id);
            // Its pusher looks at once rather than at its next tick.
            if let Some(l) = inner
                .live
                .read()
                .ok()
                .and_then(|m| m.values().find(|l| l.id == id).cloned())
            {
                l.wake.notify_one();
            }
        }
    }
    Ok(())
}
