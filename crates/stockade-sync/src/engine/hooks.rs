//! Webhook deliveries: verified with the receiving connection's credentials, then acted on
//! only where those credentials are entitled to act. The engine is the server's
//! [`HookSink`]: a delivery runs route → verify → fetch → ingest → commit → answer, and
//! the [`HookAnswer`] or [`HookError`] goes back to the server unchanged.
//!
//! An event names the account it is about (TikTok `shop_id`, Amazon `SellerId`, eBay
//! `userId`). Marketplaces send an app's events for all of its sellers to the endpoint the
//! app registered, so an event arriving at connection A's URL may name connection B's
//! account. It acts on B only when B belongs to the same marketplace app as A (same TikTok
//! app key, Amazon or eBay client id) **and** B's own credentials verify the same delivery
//! (same app secret, same Amazon event key, a genuine eBay signature). Otherwise — a
//! delivery signed by one app naming another app's seller — nothing changes: the event is
//! ignored, logged with connection names only and recorded as a `foreign_event` for the
//! alert pipeline. (Before, a TikTok delivery verified with app A's secret could revoke
//! and purge any connection by naming its shop.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use stockade_core::event::{ConnectionRef, Event, ForeignEvent};
use stockade_core::order::Marketplace;
use stockade_marketplaces::{
    Connector, EventError, HookAnswer, HookError, HookFuture, HookSink, InboundEvent,
    InboundRequest,
};
use tokio::sync::oneshot;

use super::fetch::{FetchJob, SUMMARISED, WAITING, unavailable_reason};
use super::{IngestJob, Live, REVOKED, SyncEngine, WEBHOOK_ANSWER_WITHIN, record_event};
use crate::ingest::Source;
use crate::metrics::Metrics;

/// Where an event may act.
enum Target {
    /// The receiving connection, or another one of the same app.
    Entitled(Arc<Live>),
    /// No running connection has the account the event names.
    NoConnection,
    /// Connections with that account exist, but not of the verifying app.
    NotEntitled(Vec<String>),
}

fn kind_of(event: &InboundEvent) -> &'static str {
    match event {
        InboundEvent::OrderChanged { .. } => "order_changed",
        InboundEvent::Challenge { .. } => "challenge",
        InboundEvent::Revoked { .. } => "revoked",
        InboundEvent::AuthorizationExpiring { .. } => "authorization_expiring",
        InboundEvent::Ignored { .. } => "ignored",
    }
}

/// The server's webhook routes hand deliveries straight to the engine.
impl HookSink for SyncEngine {
    fn deliver(
        &self,
        marketplace: Marketplace,
        connection: String,
        request: InboundRequest,
    ) -> HookFuture {
        let sync = self.clone();
        Box::pin(async move { sync.handle_event(marketplace, &connection, request).await })
    }
}

impl SyncEngine {
    /// Handle one delivery to `/hooks/<marketplace>/<connection>`: verify it first, then
    /// act; an order change is answered once the order is durably stored.
    pub async fn handle_event(
        &self,
        marketplace: Marketplace,
        connection: &str,
        request: InboundRequest,
    ) -> std::result::Result<HookAnswer, HookError> {
        let arrival = Instant::now();
        // Shed before any work when too many deliveries are pending (see `shed.rs`).
        let Some(_slot) = self
            .inner
            .admission
            .admit(self.inner.opts.max_pending_deliveries, &self.inner.metrics)
        else {
            return Err(HookError::Overloaded);
        };
        let Some(live) = self
            .get_live(connection)
            .filter(|l| l.marketplace == marketplace)
        else {
            Metrics::inc(&self.inner.metrics.webhooks_rejected, 1);
            if self.is_revoked(connection, marketplace) {
                return Err(HookError::RevokedConnection);
            }
            return Err(HookError::UnknownConnection);
        };
        let event = match live.connector.verify_event(&request).await {
            Ok(e) => e,
            Err(e) => {
                Metrics::inc(&self.inner.metrics.webhooks_rejected, 1);
                return Err(event_failure(&e));
            }
        };
        let named = match &event {
            InboundEvent::OrderChanged { account, .. } => account.clone(),
            InboundEvent::Revoked { account, .. }
            | InboundEvent::AuthorizationExpiring { account, .. } => Some(account.clone()),
            InboundEvent::Challenge { .. } | InboundEvent::Ignored { .. } => None,
        };
        let target = match self.event_target(&live, named.as_deref(), &request).await {
            Target::Entitled(t) => t,
            Target::NoConnection => {
                tracing::info!(connection = %live.name, event = kind_of(&event), "an event for an account with no connection here; ignored");
                return Ok(HookAnswer::ok());
            }
            Target::NotEntitled(names) => {
                self.refuse_foreign(&live, kind_of(&event), &names).await;
                return Ok(HookAnswer::ok());
            }
        };
        match event {
            InboundEvent::Challenge { response_body } => {
                Ok(HookAnswer::json(response_body.into_bytes()))
            }
            InboundEvent::OrderChanged {
                external_id,
                summary,
                ..
            } => {
                if target.status() == REVOKED {
                    return Ok(HookAnswer::ok());
                }
                let deadline = tokio::time::Instant::now() + WEBHOOK_ANSWER_WITHIN;
                // Another process owns the connection: its fetcher spends the
                // connection's rate budget (see `handoff`).
                if super::handoff::hands_off(&self.inner, &target) {
                    return super::handoff::deliver(
                        self,
                        target,
                        external_id,
                        summary,
                        arrival,
                        deadline,
                    )
                    .await;
                }
                self.order_changed(target, external_id, summary, arrival, deadline)
                    .await
            }
            InboundEvent::Revoked { .. } => {
                if let Err(e) = self
                    .revoke(&target.name, "deauthorized by the marketplace")
                    .await
                {
                    tracing::error!(connection = %target.name, error = %e, "purge after a revocation failed");
                    return Err(HookError::Unavailable(
                        "the purge could not complete".into(),
                    ));
                }
                Ok(HookAnswer::ok())
            }
            InboundEvent::AuthorizationExpiring { .. } => {
                let connection = target.name.clone();
                let event = Event::AuthorizationExpiring(ConnectionRef { connection });
                let _ = record_event(&self.inner, event).await;
                Ok(HookAnswer::ok())
            }
            InboundEvent::Ignored { .. } => Ok(HookAnswer::ok()),
        }
    }

    /// Fetch the announced order with this process's connector (and store the
    /// notification's summary first if the fetch waits), answering once it is stored,
    /// or 503 by `deadline`.
    pub(super) async fn order_changed(
        &self,
        target: Arc<Live>,
        external_id: String,
        summary: Option<Box<stockade_core::order::Order>>,
        arrival: Instant,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<HookAnswer, HookError> {
        let state = Arc::new(AtomicU8::new(WAITING));
        let (tx, mut rx) = oneshot::channel();
        let job = FetchJob {
            id: external_id,
            arrival,
            reply: tx,
            state: state.clone(),
        };
        if target.fetch_tx.send(job).is_err() {
            return Err(HookError::Unavailable("sync is stopping".into()));
        }
        // A marketplace waits only so long for an answer (and its rate limits may
        // hold the fetch back): past this, answer 503 so it delivers again. The
        // fetch goes on and stores the order anyway; a second delivery is a no-op.
        // When the notification summarises the order and the marketplace has not
        // answered the fetch yet (its rate limit holds it), the summary is stored
        // first (stock moves now); the fetch fills it in later. A fetched order
        // waiting for its commit gains nothing from a second commit: wait on.
        let answer = match summary.zip(self.inner.opts.summary_after) {
            Some((order, after)) => match tokio::time::timeout(after, &mut rx).await {
                Ok(done) => Ok(done),
                Err(_)
                    if state
                        .compare_exchange(WAITING, SUMMARISED, Ordering::AcqRel, Ordering::Acquire)
                        .is_err() =>
                {
                    tokio::time::timeout_at(deadline, rx).await
                }
                Err(_) => {
                    let (stx, srx) = oneshot::channel();
                    let job = IngestJob {
                        live: target.clone(),
                        order: *order,
                        source: Source::Notification,
                        arrival,
                        replies: vec![stx],
                        timed: true,
                    };
                    if self.inner.ingest_tx.send(job).await.is_err() {
                        return Err(HookError::Unavailable("sync is stopping".into()));
                    }
                    Metrics::inc(&self.inner.metrics.summaries_stored, 1);
                    self.inner.metrics.telemetry.summaries_stored.inc();
                    tokio::time::timeout_at(deadline, srx).await
                }
            },
            None => tokio::time::timeout_at(deadline, rx).await,
        };
        match answer {
            Ok(Ok(Ok(_))) => {
                Metrics::inc(&self.inner.metrics.webhooks_accepted, 1);
                self.inner.metrics.telemetry.ingested(&target.labels(), 1);
                Ok(HookAnswer::ok())
            }
            Ok(Ok(Err(e))) => Err(HookError::Unavailable(unavailable_reason(&e))),
            Ok(Err(_)) => Err(HookError::Unavailable("sync is stopping".into())),
            Err(_) => Err(HookError::Unavailable(
                "the order could not be fetched in time".into(),
            )),
        }
    }

    /// The connection an event may act on (see the module docs).
    async fn event_target(
        &self,
        live: &Arc<Live>,
        account: Option<&str>,
        request: &InboundRequest,
    ) -> Target {
        let Some(account) = account.filter(|a| !a.is_empty() && *a != live.account) else {
            return Target::Entitled(live.clone());
        };
        let candidates: Vec<Arc<Live>> = match self.inner.live.read() {
            Ok(m) => m
                .values()
                .filter(|l| {
                    l.marketplace == live.marketplace && l.account == account && l.id != live.id
                })
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        if candidates.is_empty() {
            return Target::NoConnection;
        }
        for c in &candidates {
            if c.app == live.app && c.connector.verify_event(request).await.is_ok() {
                return Target::Entitled(c.clone());
            }
        }
        Target::NotEntitled(candidates.iter().map(|c| c.name.clone()).collect())
    }

    /// An authentic delivery naming a connection of another app: change nothing, log it
    /// (connection names only) and raise it for the alert pipeline.
    async fn refuse_foreign(&self, live: &Live, kind: &'static str, named: &[String]) {
        Metrics::inc(&self.inner.metrics.webhooks_rejected, 1);
        tracing::warn!(
            connection = %live.name,
            named = %named.join(","),
            event = kind,
            "a delivery verified with this connection's app names a connection of another app; ignored"
        );
        let event = Event::ForeignEvent(ForeignEvent {
            connection: live.name.clone(),
            event: Some(kind.to_owned()),
            named_connections: named.to_vec(),
        });
        if let Err(e) = record_event(&self.inner, event).await {
            tracing::warn!(connection = %live.name, error = %e, "could not record a foreign_event");
        }
    }
}

pub(super) fn event_failure(e: &EventError) -> HookError {
    match e {
        EventError::TooLarge { .. } => HookError::TooLarge,
        EventError::MissingSignature(_) => HookError::Signature("missing_signature"),
        EventError::BadSignature => HookError::Signature("bad_signature"),
        EventError::SignatureFormat(_) => HookError::Signature("bad_signature_format"),
        EventError::StaleTimestamp { .. } => HookError::Signature("stale_timestamp"),
        EventError::KeyUnavailable(_) => {
            HookError::Unavailable("the marketplace's signing key could not be fetched".into())
        }
        other => HookError::Malformed(other.to_string()),
    }
}
