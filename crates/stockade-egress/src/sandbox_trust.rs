//! Dev only: a caller (one marketplace connection) that trusts a local sandbox.
//!
//! `stockade sandbox` serves the simulators on loopback with certificates from its own
//! test CA. A dev connection that names that CA gets its own HTTPS client trusting it,
//! and may reach loopback hosts its connector names without an `[egress]
//! allowed_hosts` entry. Nothing else changes: the caller's own host list still
//! applies, and any other environment refuses the trust outright.

use std::net::IpAddr;

use stockade_core::Environment;

use crate::{Caller, EgressError, Gateway, build_client, lock};

/// A loopback host as it appears in a URL: `localhost`, 127.0.0.0/8 or `[::1]`.
pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Gateway {
    /// Trust `ca_pem` (a sandbox's test CA) for `caller`'s requests, and let it reach
    /// loopback hosts on its own list without an allowlist entry. Dev only: any other
    /// environment gets [`EgressError::SandboxTrustRefused`]. Replaces an earlier trust.
    pub fn trust_sandbox(&self, caller: &Caller, ca_pem: &str) -> Result<(), EgressError> {
        let environment = self.0.config.environment;
        if environment != Environment::Dev {
            return Err(EgressError::SandboxTrustRefused { environment });
        }
        let client = build_client(&self.0.config, &[ca_pem])?;
        lock(&self.0.sandbox).insert(caller.to_string(), client);
        Ok(())
    }

    /// Stop trusting a sandbox for `caller` (its connection no longer names one).
    pub fn forget_sandbox(&self, caller: &Caller) {
        lock(&self.0.sandbox).remove(&caller.to_string());
    }

    /// The sandbox-trusting client of a caller, if it has one.
    pub(crate) fn sandbox_client(&self, caller: &str) -> Option<reqwest::Client> {
        lock(&self.0.sandbox).get(caller).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EgressConfig, Request};

    /// A self-signed CA certificate (PEM) made for the test.
    fn test_ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.8.9.10"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("LOCALHOST"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("api.amazon.com"));
        assert!(!is_loopback("127.0.0.1.example.com"));
    }

    /// Prod and staging never trust a sandbox CA, whatever the caller asks.
    #[test]
    fn only_dev_trusts_a_sandbox() {
        for env in [Environment::Prod, Environment::Staging] {
            let Ok(g) = Gateway::new(EgressConfig::new(env), None) else {
                panic!("gateway")
            };
            let err = g.trust_sandbox(&Caller::Connection("tiktok".into()), &test_ca());
            assert!(
                matches!(err, Err(EgressError::SandboxTrustRefused { environment }) if environment == env),
                "{env}: {err:?}"
            );
            assert!(g.sandbox_client("connection:tiktok").is_none());
        }
        let Ok(g) = Gateway::new(EgressConfig::new(Environment::Dev), None) else {
            panic!("gateway")
        };
        assert!(
            g.trust_sandbox(&Caller::Connection("tiktok".into()), "not a pem")
                .is_err()
        );
        assert!(
            g.trust_sandbox(&Caller::Connection("tiktok".into()), &test_ca())
                .is_ok()
        );
        assert!(g.sandbox_client("connection:tiktok").is_some());
        g.forget_sandbox(&Caller::Connection("tiktok".into()));
        assert!(g.sandbox_client("connection:tiktok").is_none());
    }

    /// With the trust, a loopback host on the caller's list passes the policy (the
    /// request is then attempted: nothing listens on port 9, so it fails to connect);
    /// without it, or for another host, the request is blocked before any connection.
    #[tokio::test]
    async fn trust_opens_loopback_hosts_only() {
        let mut cfg = EgressConfig::new(Environment::Dev);
        cfg.max_attempts = 1;
        cfg.connect_timeout = std::time::Duration::from_secs(2);
        let Ok(g) = Gateway::new(cfg, None) else {
            panic!("gateway")
        };
        let caller = Caller::Connection("amazon".into());
        let e = g.client(caller.clone(), &["127.0.0.1:9", "api.amazon.com"]);
        let get = |url: &str| Request::get(url, "/", "test").idempotent(false);
        let before = e.send(get("https://127.0.0.1:9/")).await;
        assert!(
            matches!(before, Err(EgressError::Blocked { .. })),
            "{before:?}"
        );
        assert!(g.trust_sandbox(&caller, &test_ca()).is_ok());
        let after = e.send(get("https://127.0.0.1:9/")).await;
        assert!(matches!(after, Err(EgressError::Connect(_))), "{after:?}");
        let live = e.send(get("https://api.amazon.com/auth/o2/token")).await;
        assert!(matches!(live, Err(EgressError::Blocked { .. })), "{live:?}");
        // Another caller is unaffected.
        let other = g.client(Caller::Connection("ebay".into()), &["127.0.0.1:9"]);
        let r = other.send(get("https://127.0.0.1:9/")).await;
        assert!(matches!(r, Err(EgressError::Blocked { .. })), "{r:?}");
    }
}
