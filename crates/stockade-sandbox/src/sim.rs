//! One simulated marketplace: its state, limits, faults and event outbox.

use std::sync::{Arc, Mutex, MutexGuard};

use stockade_core::order::Marketplace;

use crate::deliver::Outbox;
use crate::faults::{Faults, KillRegistry};
use crate::ratelimit::Limiter;
use crate::rng::SplitMix64;
use crate::state::Market;

/// Settings a simulator reads while answering.
#[derive(Debug, Clone)]
pub(crate) struct SimConfig {
    pub access_ttl_ms: i64,
    pub refresh_ttl_ms: i64,
    pub skew_s: i64,
    pub tiktok_rate: (f64, u32),
    pub ebay_daily_quota: u64,
    pub ebay_burst: (f64, u32),
    pub revision_cap: u32,
    pub feed_step_ms: i64,
    pub us_share: f64,
    pub amazon_event_header: &'static str,
    pub amazon_event_secret: String,
    pub ebay_verification_token: String,
}

/// The eBay notification signing key.
pub(crate) struct EbayKey {
    pub kid: String,
    pub signing: p256::ecdsa::SigningKey,
    pub spki_der: Vec<u8>,
}

impl std::fmt::Debug for EbayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbayKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct Sim {
    pub marketplace: Marketplace,
    pub base_url: String,
    pub cfg: SimConfig,
    pub market: Mutex<Market>,
    pub limiter: Limiter,
    faults: Mutex<Faults>,
    fault_rng: Mutex<SplitMix64>,
    pub kill_registry: KillRegistry,
    pub outbox: Outbox,
    pub ebay_key: Option<EbayKey>,
    /// Requests in flight per operation (`/_sandbox/in-flight`).
    pub in_flight: crate::in_flight::InFlightLog,
}

impl Sim {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        marketplace: Marketplace,
        base_url: String,
        cfg: SimConfig,
        market: Market,
        limiter: Limiter,
        faults: Faults,
        seed: u64,
        outbox: Outbox,
        ebay_key: Option<EbayKey>,
    ) -> Arc<Sim> {
        Arc::new(Sim {
            marketplace,
            base_url,
            cfg,
            market: Mutex::new(market),
            limiter,
            faults: Mutex::new(faults),
            fault_rng: Mutex::new(SplitMix64::new(seed ^ 0xFA_017)),
            kill_registry: KillRegistry::default(),
            outbox,
            ebay_key,
            in_flight: crate::in_flight::InFlightLog::default(),
        })
    }

    /// The state, even if a previous holder panicked.
    pub fn lock(&self) -> MutexGuard<'_, Market> {
        self.market.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn set_faults(&self, f: Faults) {
        let mut g = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        *g = f;
    }

    pub fn fault_rng(&self) -> MutexGuard<'_, SplitMix64> {
        self.fault_rng.lock().unwrap_or_else(|e| e.into_inner())
    }
}
