//! `stockade sandbox --ready-file PATH`: once the simulators listen, their URLs, the
//! throw-away test credentials they issued and their CA, as JSON (mode 0600, written
//! atomically), for the program that started the sandbox and waits for the file
//! (`bench sync --sandbox-process`); and reading it back.

use std::path::Path;

use serde::{Deserialize, Serialize};
use stockade_app::sandbox::Simulators;
use stockade_core::SecretString;
use stockade_core::order::Marketplace;
use stockade_sandbox::{AppCredentials, Endpoint, Sandbox, SellerCredentials};

use crate::exit::Failure;

#[derive(Serialize, Deserialize)]
struct ReadyFile {
    pid: u32,
    ca_pem: String,
    amazon_event_secret: String,
    ebay_verification_token: String,
    simulators: Vec<Sim>,
}

#[derive(Serialize, Deserialize)]
struct Sim {
    marketplace: Marketplace,
    base_url: String,
    addr: std::net::SocketAddr,
    client_id: String,
    client_secret: String,
    application_id: String,
    sellers: Vec<Seller>,
}

#[derive(Serialize, Deserialize)]
struct Seller {
    seller_id: String,
    name: String,
    refresh_token: String,
    shop_cipher: String,
    marketplace_id: String,
    user_id: String,
}

/// Write the ready file for `sandbox`.
pub fn write(sandbox: &Sandbox, path: &Path) -> Result<(), Failure> {
    let simulators = Marketplace::ALL
        .iter()
        .map(|m| {
            let e = sandbox.endpoint(*m);
            Sim {
                marketplace: *m,
                base_url: e.base_url.clone(),
                addr: e.addr,
                client_id: e.app.client_id.clone(),
                client_secret: e.app.client_secret.expose_secret().clone(),
                application_id: e.app.application_id.clone(),
                sellers: e
                    .sellers
                    .iter()
                    .map(|s| Seller {
                        seller_id: s.seller_id.clone(),
                        name: s.name.clone(),
                        refresh_token: s.refresh_token.expose_secret().clone(),
                        shop_cipher: s.shop_cipher.clone(),
                        marketplace_id: s.marketplace_id.clone(),
                        user_id: s.user_id.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    let file = ReadyFile {
        pid: std::process::id(),
        ca_pem: sandbox.ca_pem.clone(),
        amazon_event_secret: sandbox.amazon_event_secret().expose_secret().clone(),
        ebay_verification_token: sandbox.ebay_verification_token().expose_secret().clone(),
        simulators,
    };
    let bytes = serde_json::to_vec(&file)
        .map_err(|e| Failure::runtime(format!("cannot encode the ready file: {e}")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Failure::usage(format!("--ready-file {}: not a file name", path.display()))
    })?;
    super::sandbox_creds::write_atomic(dir, name, &bytes, 0o600)?;
    Ok(())
}

/// The simulators a ready file describes, and the sandbox's process id; `None` while the
/// file is not there yet.
pub fn read(path: &Path) -> Result<Option<(Simulators, u32)>, Failure> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::runtime(format!(
                "cannot read the sandbox's ready file {}: {e}",
                path.display()
            )));
        }
    };
    let f: ReadyFile = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::runtime(format!(
            "the sandbox's ready file {} is not valid: {e}",
            path.display()
        ))
    })?;
    let endpoints = f
        .simulators
        .into_iter()
        .map(|s| Endpoint {
            marketplace: s.marketplace,
            base_url: s.base_url,
            addr: s.addr,
            app: AppCredentials {
                client_id: s.client_id,
                client_secret: SecretString::from(s.client_secret),
                application_id: s.application_id,
            },
            sellers: s
                .sellers
                .into_iter()
                .map(|x| SellerCredentials {
                    seller_id: x.seller_id,
                    name: x.name,
                    refresh_token: SecretString::from(x.refresh_token),
                    shop_cipher: x.shop_cipher,
                    marketplace_id: x.marketplace_id,
                    user_id: x.user_id,
                })
                .collect(),
        })
        .collect();
    let sims = Simulators {
        ca_pem: f.ca_pem,
        endpoints,
        amazon_event_secret: SecretString::from(f.amazon_event_secret),
        ebay_verification_token: SecretString::from(f.ebay_verification_token),
    };
    Ok(Some((sims, f.pid)))
}
