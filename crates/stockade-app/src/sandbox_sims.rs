//! What an application needs to know of the simulators to connect to them, whether they
//! run in this process ([`Simulators::of`]) or in another one (`stockade sandbox` started
//! by `bench sync --sandbox-process`, described in its ready file): their addresses,
//! test CA and the throw-away credentials they issued.

use stockade_core::SecretString;
use stockade_core::order::Marketplace;
use stockade_sandbox::{Endpoint, Sandbox};

/// The simulators' addresses, CA and test credentials.
#[derive(Debug)]
pub struct Simulators {
    /// PEM of the test CA that signed the simulators' certificate.
    pub ca_pem: String,
    /// One per marketplace.
    pub endpoints: Vec<Endpoint>,
    /// Amazon's event shared-secret header value.
    pub amazon_event_secret: SecretString,
    /// eBay's endpoint verification token.
    pub ebay_verification_token: SecretString,
}

impl Simulators {
    /// The simulators of a sandbox running in this process.
    pub fn of(sb: &Sandbox) -> Simulators {
        let copy = |v: &SecretString| SecretString::from(v.expose_secret().clone());
        Simulators {
            ca_pem: sb.ca_pem.clone(),
            endpoints: Marketplace::ALL
                .iter()
                .map(|m| sb.endpoint(*m).clone())
                .collect(),
            amazon_event_secret: copy(sb.amazon_event_secret()),
            ebay_verification_token: copy(sb.ebay_verification_token()),
        }
    }

    /// The simulator of `m`, if described.
    pub fn endpoint(&self, m: Marketplace) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.marketplace == m)
    }
}
