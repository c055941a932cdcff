//! The connection registry: which connections run in this process, with what status.
//!
//! `refresh` reconciles the running set with the `connections` table (added, paused,
//! resumed, edited, revoked — by this process or another); `revoke` stops a connection at
//! once and purges it. Revoked names are remembered (name → marketplace) so that
//! deliveries to them are answered 410 rather than 404.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use stockade_core::order::Marketplace;
use tokio::sync::{Notify, mpsc};

use super::fetch::fetch_loop;
use super::poller::poll_loop;
use super::pusher::push_loop;
use super::reconciler::reconcile_loop;
use super::{ACTIVE, ACTOR, Live, PAUSED, REVOKED, SyncEngine, stop};
use crate::connections::{self, Connection, ConnectionStatus};
use crate::{Result, purge};
use stockade_store::Topic;
use stockade_vault::Vault;

fn status_code(s: ConnectionStatus) -> u8 {
    match s {
        ConnectionStatus::Active => ACTIVE,
        ConnectionStatus::Paused => PAUSED,
        ConnectionStatus::Revoked => REVOKED,
    }
}

impl SyncEngine {
    pub(super) fn get_live(&self, name: &str) -> Option<Arc<Live>> {
        self.inner.live.read().ok()?.get(name).cloned()
    }

    pub(super) fn is_revoked(&self, name: &str, marketplace: Marketplace) -> bool {
        self.inner
            .revoked
            .read()
            .is_ok_and(|r| r.get(name) == Some(&marketplace))
    }

    pub(super) fn mark_revoked(&self, name: &str, marketplace: Marketplace) {
        if let Ok(mut r) = self.inner.revoked.write() {
            r.insert(name.to_owned(), marketplace);
        }
    }

    /// Pick up connections added, paused, resumed or revoked (by this process or another).
    pub async fn refresh(&self) -> Result<()> {
        let conns = connections::list(&self.inner.store).await?;
        let stamps = credential_stamps(&self.inner.vault).await;
        for c in conns {
            if c.status == ConnectionStatus::Revoked {
                self.mark_revoked(&c.name, c.marketplace);
            }
            let existing = self.get_live(&c.name);
            match (c.status, existing) {
                (ConnectionStatus::Revoked, Some(l)) => {
                    l.status.store(REVOKED, Ordering::Relaxed);
                    stop(&l);
                    if let Ok(mut m) = self.inner.live.write() {
                        m.remove(&c.name);
                    }
                }
                (ConnectionStatus::Revoked, None) => {
                    // A purge interrupted after its transaction: finish the key destruction.
                    if let Ok(owner) = c.key_owner()
                        && let Ok(ids) =
                            self.inner.vault.shred(&owner, "deauthorized", &ACTOR).await
                        && !ids.is_empty()
                    {
                        tracing::warn!(connection = %c.name, "finished an interrupted purge: data key destroyed");
                    }
                }
                (_, Some(l))
                    if l.settings != c.settings
                        || l.account != c.account
                        || stamps
                            .as_ref()
                            .is_some_and(|s| stamp(s, &c.name) != l.creds) =>
                {
                    // `connection edit`, or its credentials stored or revoked (here or in
                    // another process): rebuild the connector with the new URLs and
                    // credentials; the connection's data stays.
                    stop(&l);
                    if let Ok(mut m) = self.inner.live.write() {
                        m.remove(&c.name);
                    }
                    if let Err(e) = self.launch(&c).await {
                        tracing::error!(connection = %c.name, error = %e, "cannot restart the edited connection");
                        self.inner
                            .metrics
                            .error(format!("{}: cannot start: {e}", c.name));
                    }
                }
                (s, Some(l)) => {
                    let before = l.status.swap(status_code(s), Ordering::Relaxed);
                    if before != status_code(s) {
                        l.wake.notify_one();
                    }
                }
                (_, None) => {
                    if let Err(e) = self.launch(&c).await {
                        tracing::error!(connection = %c.name, error = %e, "cannot start the connection");
                        self.inner
                            .metrics
                            .error(format!("{}: cannot start: {e}", c.name));
                    }
                }
            }
        }
        // Which pushers an ingest batch wakes follows the listings (see `listed.rs`).
        if let Err(e) = self.inner.listed.reload(&self.inner.store).await {
            warn_unless_unreachable!(e, error = %e, "could not read the listings; every pusher is woken by every batch until the next refresh");
        }
        Ok(())
    }

    pub(super) async fn refresh_loop(&self) {
        let mut stop_rx = self.inner.shutdown.subscribe();
        // Another process's change wakes this one at once (PostgreSQL); the timer is the
        // source of truth (see `stockade_store::wake`).
        let mut conns = self.inner.store.wakeups(Topic::Connections).await;
        let mut creds = self.inner.store.wakeups(Topic::Credentials).await;
        let every = self.inner.opts.refresh_interval;
        loop {
            tokio::select! {
                () = conns.wait(every) => {}
                () = creds.wait(every) => {}
                _ = stop_rx.changed() => return,
            }
            if let Err(e) = self.refresh().await {
                warn_unless_unreachable!(e, error = %e, "could not refresh connections");
            }
        }
    }

    async fn launch(&self, c: &Connection) -> Result<()> {
        let inner = &self.inner;
        let connector = connections::connector_with(
            c,
            &inner.vault,
            &inner.gateway,
            inner.opts.lift_rate_limits,
            inner.opts.ebay_daily_revisions,
        )
        .await?;
        let key = inner.vault.data_key_for(&c.key_owner()?, &ACTOR).await?;
        let creds = credential_stamps(&inner.vault)
            .await
            .map(|s| stamp(&s, &c.name))
            .unwrap_or_default();
        let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let live = Arc::new(Live {
            id: c.id,
            name: c.name.clone(),
            marketplace: c.marketplace,
            account: c.account.clone(),
            settings: c.settings.clone(),
            app: connector.app_id().to_owned(),
            status: AtomicU8::new(status_code(c.status)),
            connector,
            key,
            fetch_tx,
            notice_tx,
            wake: Notify::new(),
            woken: std::sync::atomic::AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            owned: inner.owned.clone(),
            creds,
        });
        let mut tasks = vec![
            tokio::spawn(fetch_loop(inner.clone(), live.clone(), fetch_rx)),
            tokio::spawn(push_loop(inner.clone(), live.clone(), notice_rx)),
        ];
        if let Some(every) = inner.opts.poll_interval {
            tasks.push(tokio::spawn(poll_loop(inner.clone(), live.clone(), every)));
        }
        if let Some(every) = inner.opts.reconcile_interval {
            tasks.push(tokio::spawn(reconcile_loop(
                inner.clone(),
                live.clone(),
                every,
            )));
        }
        if let Ok(mut t) = live.tasks.lock() {
            t.extend(tasks);
        }
        if let Ok(mut m) = inner.live.write() {
            m.insert(c.name.clone(), live);
        }
        tracing::info!(connection = %c.name, marketplace = %c.marketplace, "sync started");
        Ok(())
    }

    /// Stop a connection at once and purge it (see [`purge`]).
    pub async fn revoke(&self, name: &str, reason: &str) -> Result<purge::PurgeReceipt> {
        if let Some(l) = self.get_live(name) {
            self.mark_revoked(name, l.marketplace);
            l.status.store(REVOKED, Ordering::Relaxed);
            stop(&l);
            if let Ok(mut m) = self.inner.live.write() {
                m.remove(name);
            }
        }
        purge::purge(&self.inner.vault, name, reason, &ACTOR).await
    }
}

/// Per connection: how many credentials it has and when the newest was stored (its
/// credentials are `connection/<name>/<field>`). None when they cannot be read (the
/// comparison is then skipped this round).
async fn credential_stamps(vault: &Vault) -> Option<Vec<(String, i64)>> {
    match vault.list_credentials().await {
        Ok(list) => Some(
            list.into_iter()
                .map(|c| (c.name, c.updated_at_ms))
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the credentials' dates");
            None
        }
    }
}

fn stamp(all: &[(String, i64)], connection: &str) -> (usize, i64) {
    let prefix = format!("connection/{connection}/");
    all.iter()
        .filter(|(n, _)| n.starts_with(&prefix))
        .fold((0, 0), |(n, t), (_, at)| (n + 1, t.max(*at)))
}
