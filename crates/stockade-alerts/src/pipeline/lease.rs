//! Each channel's sending lease: one process sends per channel, and a process that lost
//! the lease cannot commit over the one that took it. The router holds one the same way
//! (`alert_router`, see [`super::router`]).
//!
//! The lease is the store's lease row `alert_channel:<name>` (`stockade_store::lease`),
//! with a fencing token and its expiry on the database's clock. A keeper task per
//! channel takes it when free or expired and renews it every third of its length, also
//! while a message is in flight; another process takes it over a few seconds after the
//! holder dies. The sender acts only while the lease is held and before the local
//! deadline (the moment the lease was asked for, on a monotonic clock, plus its length
//! minus a tenth, never later than the database's expiry), and every commit it makes on
//! the channel's behalf (a delivery's outcome, holding alerts) carries the lease's fence
//! ([`stockade_store::Grant::fence`]): a sender paused past its lease (a long pause, a
//! frozen VM, SIGSTOP) whose lease another process took is refused whole, writes
//! nothing, and says so in one log line; its successor sends what is still pending.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use stockade_store::{Grant, Store};
use tokio::sync::watch;

use super::limiter::seed_limiter;
use super::{AlertsError, ChannelRuntime, Inner, Result, lock, ms};

/// How long a channel's lease lasts; it is renewed every third of it. A dead holder's
/// channel is taken over within about this long.
pub(super) const LEASE: Duration = Duration::from_secs(6);

/// The lease row guarding `channel`'s sending.
pub fn lease_name(channel: &str) -> String {
    format!("alert_channel:{channel}")
}

/// The lease row guarding routing (one router at a time).
pub const ROUTER_LEASE: &str = "alert_router";

/// A lease this process holds (a channel's, or the router's), if any.
#[derive(Default)]
pub(super) struct HeldLease {
    held: Mutex<Option<(Grant, Instant)>>,
}

impl HeldLease {
    /// The grant to act under, while held and before its local deadline.
    pub(super) fn current(&self) -> Option<Grant> {
        let held = lock(&self.held);
        held.as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(g, _)| g.clone())
    }

    /// Forget the grant (another process took the lease).
    pub(super) fn lost(&self, grant: &Grant) {
        let mut held = lock(&self.held);
        if held.as_ref().is_some_and(|(g, _)| g.token == grant.token) {
            *held = None;
        }
    }
}

fn deadline(asked: Instant) -> Instant {
    asked + LEASE - LEASE / 10
}

/// Take and keep `ch`'s lease until stopped ([`release`] gives it back).
pub(super) async fn keep_lease(inner: &Inner, ch: &ChannelRuntime, stop: watch::Receiver<bool>) {
    let name = ch.client.config.name.as_str();
    let what = format!("sending on channel {name}");
    keep(
        inner,
        &ch.lease,
        &lease_name(name),
        &what,
        stop,
        async || {
            seed_limiter(inner, ch).await;
            ch.wake.notify_one();
        },
    )
    .await;
}

/// Take and keep `lease` into `held` until stopped; `on_taken` runs each time it is taken.
pub(super) async fn keep<F: std::future::Future<Output = ()>>(
    inner: &Inner,
    held_lease: &HeldLease,
    lease: &str,
    what: &str,
    mut stop: watch::Receiver<bool>,
    on_taken: impl Fn() -> F,
) {
    while !*stop.borrow() {
        let held = lock(&held_lease.held).as_ref().map(|(g, _)| g.clone());
        let asked = Instant::now();
        match held {
            Some(grant) => match inner.store.renew_lease(&grant, ms(LEASE)).await {
                Ok(Some(_)) => {
                    if let Some(h) = lock(&held_lease.held).as_mut() {
                        h.1 = deadline(asked);
                    }
                }
                Ok(None) => {
                    tracing::warn!(
                        "alert lease lost: another process took over {what}; this process stops it"
                    );
                    held_lease.lost(&grant);
                }
                Err(e) => tracing::warn!("renewing the alert lease for {what}: {e}"),
            },
            None => match inner
                .store
                .acquire_lease(lease, &inner.holder, ms(LEASE))
                .await
            {
                Ok(Some(grant)) => {
                    *lock(&held_lease.held) = Some((grant, deadline(asked)));
                    on_taken().await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("taking the alert lease for {what}: {e}"),
            },
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE / 3) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The router's grant for a routing now ([`super::Alerts::route_now`]): the one this
/// process holds, or the lease taken now (the keeper renews it from then on); refused
/// while another process holds it.
pub(super) async fn take_router(inner: &Inner) -> Result<Grant> {
    if let Some(grant) = inner.router_lease.current() {
        return Ok(grant);
    }
    let asked = Instant::now();
    if let Some(grant) = inner
        .store
        .acquire_lease(ROUTER_LEASE, &inner.holder, ms(LEASE))
        .await?
    {
        *lock(&inner.router_lease.held) = Some((grant.clone(), deadline(asked)));
        return Ok(grant);
    }
    let row = inner.store.leases(ROUTER_LEASE).await?;
    let row = row.iter().find(|r| r.name == ROUTER_LEASE);
    match row {
        // This process's keeper took it meanwhile.
        Some(r) if r.holder.as_deref() == Some(inner.holder.as_str()) && r.held() => Ok(Grant {
            name: r.name.clone(),
            holder: inner.holder.clone(),
            token: r.token,
            expires_at_ms: r.expires_at_ms,
        }),
        r => Err(AlertsError::RouterBusy {
            retry_in_s: r.map_or(0, |r| (r.expires_at_ms - r.db_now_ms).max(0) / 1000 + 1),
        }),
    }
}

/// Give a lease back (at shutdown, once its user stopped or gave up: a delivery still in
/// flight would otherwise be refused by its own fence).
pub(super) async fn release(store: &Store, held_lease: &HeldLease) {
    let held = lock(&held_lease.held).take();
    if let Some((grant, _)) = held
        && let Err(e) = store.release_lease(&grant).await
    {
        tracing::warn!("releasing an alert lease: {e}");
    }
}

/// The one line a sender logs when its commit was refused because it lost the lease.
pub(super) fn log_fenced(channel: &str, what: &str) {
    tracing::warn!(
        channel,
        "alert channel lease lost while this process was {what} (it was paused or slow past its lease, and another process took the channel): nothing was recorded; the new holder sends what is still pending"
    );
}
