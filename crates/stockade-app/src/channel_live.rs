//! The overview's live channel figures ([`stockade_server::channel_live::ChannelLive`])
//! from this process's sync engine (push lag samples per connection) and egress gateway
//! (the API host's token bucket and circuit breaker), and a listing discovery on them
//! (`stockade sku discover`'s code path).

use std::sync::Arc;

use stockade_egress::Gateway;
use stockade_server::channel_live::{ChannelLive, DiscoverFuture, PushLag, RateState};
use stockade_sync::Metrics;

pub struct AppChannels {
    pub metrics: Arc<Metrics>,
    pub gateway: Gateway,
    pub vault: Arc<stockade_vault::Vault>,
}

impl ChannelLive for AppChannels {
    fn push_lag(&self, connection: &str) -> Option<PushLag> {
        // Not `staleness_of`: a read must not add an entry.
        let samples = self
            .metrics
            .staleness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(connection)
            .cloned()?;
        samples.summary().map(|p| PushLag {
            p50_ms: p.p50_ms,
            p99_ms: p.p99_ms,
            count: p.count,
        })
    }

    fn rate_state(&self, api_host: &str) -> RateState {
        let s = self.gateway.host_state(api_host);
        RateState {
            tokens: s.tokens,
            burst: s.burst,
            breaker_open: s.breaker_open,
        }
    }

    fn discover<'a>(
        &'a self,
        connection: &'a str,
        opts: stockade_sync::discover::DiscoverOptions,
        actor: &'a stockade_core::Actor,
    ) -> DiscoverFuture<'a> {
        Box::pin(stockade_sync::discover::discover(
            &self.vault,
            &self.gateway,
            connection,
            opts,
            actor,
        ))
    }
}
