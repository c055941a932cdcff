//! The production transport (the egress gateway) and the connectors' constructors.

use std::sync::Arc;

use stockade_core::order::Marketplace;
use stockade_egress::{Caller, Gateway};

use crate::transport::{HttpRequest, HttpResponse, SendFuture, Transport};
use crate::{ErrorKind, MarketError};

/// The production transport: the egress gateway.
pub(crate) struct EgressTransport {
    pub gateway: stockade_egress::Gateway,
    pub egress: stockade_egress::Egress,
}

impl Transport for EgressTransport {
    fn send(&self, marketplace: Marketplace, request: HttpRequest) -> SendFuture<'_> {
        Box::pin(async move {
            let mut req = stockade_egress::Request::new(
                request.method,
                request.url,
                request.path_template,
                request.operation,
            );
            for (name, value) in request.headers {
                req = req.header(name, value);
            }
            for (name, value) in &request.secret_headers {
                req = req.secret_header(name, value);
            }
            if let Some((bytes, content_type)) = request.body {
                req = req.body(bytes, content_type);
            }
            if let Some(p) = request.partition {
                req = req.partition(p);
            }
            if let Some(i) = request.idempotent {
                req = req.idempotent(i);
            }
            // Every marketplace API answers JSON; an HTML page or a truncated document
            // on a 2xx is recorded as a malformed-answer anomaly by the gateway.
            req = req.expect_json(true);
            let resp = self
                .egress
                .send(req)
                .await
                .map_err(|e| egress_error(marketplace, &e))?;
            Ok(HttpResponse {
                status: resp.status.as_u16(),
                headers: resp.headers,
                body: resp.body,
            })
        })
    }

    fn take_daily(&self, quota: &'static str, key: &str, limit: u32) -> bool {
        self.gateway.take_daily(quota, key, limit)
    }

    fn round_calls(&self, wanted: usize) -> usize {
        self.gateway.round_calls(wanted)
    }

    fn seed_daily(&self, quota: &'static str, key: &str, used: u32) {
        self.gateway.seed_daily(quota, key, used);
    }
}

/// Map a gateway error onto the connector error kinds. Its message never holds query
/// strings or tokens.
pub(crate) fn egress_error(
    marketplace: Marketplace,
    e: &stockade_egress::EgressError,
) -> MarketError {
    use stockade_egress::EgressError as E;
    let kind = match e {
        E::Blocked { .. } | E::NotHttps | E::InvalidUrl => ErrorKind::Blocked,
        E::ResponseTooLarge { .. } | E::NotJson { .. } => ErrorKind::Malformed,
        _ => ErrorKind::Transport,
    };
    MarketError::new(marketplace, kind, e.to_string())
}

fn build(gateway: &Gateway, caller: Caller, hosts: &[String]) -> Arc<EgressTransport> {
    let refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let egress = gateway.client(caller, &refs);
    Arc::new(EgressTransport {
        gateway: gateway.clone(),
        egress,
    })
}

impl crate::TikTokConnector {
    /// A connector sending through `gateway` as `caller` (usually
    /// `Caller::Connection(name)`), allowed only the configuration's hosts. Defines the
    /// per-shop rate buckets.
    pub fn new(
        config: crate::TikTokConfig,
        credentials: crate::TikTokCredentials,
        gateway: &Gateway,
        caller: Caller,
    ) -> Self {
        for op in crate::tiktok::OPERATIONS {
            gateway.define_limit(op, config.rate.0, config.rate.1);
        }
        let transport = build(gateway, caller, &config.hosts());
        Self::with_transport(config, credentials, transport)
    }
}

impl crate::AmazonConnector {
    /// A connector sending through `gateway` as `caller`, allowed only the
    /// configuration's hosts (API, LWA, feed-document hosts). Defines the published
    /// per-operation rate buckets.
    pub fn new(
        config: crate::AmazonConfig,
        credentials: crate::AmazonCredentials,
        gateway: &Gateway,
        caller: Caller,
    ) -> Self {
        for (op, rate, burst) in crate::amazon::RATE_LIMITS {
            gateway.define_limit(op, rate, burst);
        }
        let transport = build(gateway, caller, &config.hosts());
        Self::with_transport(config, credentials, transport)
    }
}

impl crate::EbayConnector {
    /// A connector sending through `gateway` as `caller`, allowed only the
    /// configuration's hosts. Defines the per-operation rate buckets.
    pub fn new(
        config: crate::EbayConfig,
        credentials: crate::EbayCredentials,
        gateway: &Gateway,
        caller: Caller,
    ) -> Self {
        // eBay counts calls per application, across its APIs and sellers: every
        // connection of one app draws from one bucket (partitioned by the app's id).
        gateway.define_shared_limit(
            crate::ebay::APP_BUCKET,
            &crate::ebay::OPERATIONS,
            config.rate.0,
            config.rate.1,
        );
        let transport = build(gateway, caller, &config.hosts());
        Self::with_transport(config, credentials, transport)
    }
}
