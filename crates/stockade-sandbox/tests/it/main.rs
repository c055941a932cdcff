#![allow(clippy::unwrap_used, clippy::expect_used)]

mod amazon;
mod bots;
mod ebay;
mod faults;
mod generator;
mod tiktok;
mod webhooks;
// `/_sandbox/acknowledged` and `/_sandbox/quantity-history`.
mod bench_reads;

use std::time::Duration;

use stockade_sandbox::{Sandbox, SandboxConfig};

/// A client that trusts the sandbox CA.
pub fn client(sb: &Sandbox) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sb.ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn start(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.unwrap()
}

pub fn now_s() -> i64 {
    stockade_core::time::now_ms() / 1000
}
// `/_sandbox/in-flight`.
mod in_flight;
