//! The bridge from `stockade serve`'s webhook routes to the sync engine.

use std::sync::Arc;

use stockade_core::order::Marketplace;
use stockade_marketplaces::InboundRequest;
use stockade_server::{HookAnswer, HookError, HookFuture, HookSink};
use stockade_sync::{HookFailure, SyncEngine};

/// Deliveries to `/hooks/<marketplace>/<connection>` go to [`SyncEngine::handle_event`].
#[derive(Debug, Clone)]
pub struct SyncHooks(pub SyncEngine);

impl HookSink for SyncHooks {
    fn deliver(
        &self,
        marketplace: Marketplace,
        connection: String,
        request: InboundRequest,
    ) -> HookFuture {
        let sync = self.0.clone();
        Box::pin(async move {
            match sync.handle_event(marketplace, &connection, request).await {
                Ok(r) => Ok(HookAnswer {
                    status: r.status,
                    content_type: r.content_type,
                    body: r.body,
                }),
                Err(HookFailure::UnknownConnection) => Err(HookError::UnknownConnection),
                Err(HookFailure::Revoked) => Err(HookError::RevokedConnection),
                Err(HookFailure::Signature(kind)) => Err(HookError::Signature(kind)),
                Err(HookFailure::Malformed(m)) => Err(HookError::Malformed(m)),
                Err(HookFailure::TooLarge) => Err(HookError::TooLarge),
                Err(HookFailure::Unavailable(m)) => Err(HookError::Unavailable(m)),
            }
        })
    }
}

pub fn sink(sync: &SyncEngine) -> Arc<dyn HookSink> {
    Arc::new(SyncHooks(sync.clone()))
}
