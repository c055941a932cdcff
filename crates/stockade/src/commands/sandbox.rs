//! `stockade sandbox`: the marketplace simulators, standalone.

use stockade_core::Environment;
use stockade_core::order::Marketplace;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::{Faults, Sandbox, SandboxConfig};

use crate::cli::SandboxArgs;
use crate::exit::Failure;

fn marketplace(name: &str) -> Result<Marketplace, Failure> {
    match name {
        "tiktok" => Ok(Marketplace::TikTok),
        "amazon" => Ok(Marketplace::Amazon),
        "ebay" => Ok(Marketplace::Ebay),
        other => Err(Failure::usage(format!(
            "unknown marketplace {other:?}: use tiktok, amazon or ebay"
        ))),
    }
}

/// `M:NAME=VALUE` onto the faults of M.
fn apply_fault(config: &mut SandboxConfig, spec: &str) -> Result<(), Failure> {
    let bad = || {
        Failure::usage(format!(
            "--fault {spec:?}: use MARKETPLACE:NAME=VALUE, e.g. amazon:throttle_rate=0.2 (names: latency_ms, error_rate, throttle_rate, timeout_rate, malformed_rate, drop_rate)"
        ))
    };
    let (m, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (name, value) = rest.split_once('=').ok_or_else(bad)?;
    let f: &mut Faults = config.faults.get_mut(marketplace(m)?);
    let rate = |v: &str| -> Result<f64, Failure> {
        v.parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(bad)
    };
    match name {
        "latency_ms" => f.latency_ms = value.parse().map_err(|_| bad())?,
        "error_rate" => f.error_rate = rate(value)?,
        "throttle_rate" => f.throttle_rate = rate(value)?,
        "timeout_rate" => f.timeout_rate = rate(value)?,
        "malformed_rate" => f.malformed_rate = rate(value)?,
        "drop_rate" => f.drop_rate = rate(value)?,
        _ => return Err(bad()),
    }
    Ok(())
}

pub async fn run(args: SandboxArgs) -> Result<(), Failure> {
    let mut config = SandboxConfig {
        seed: args.seed,
        sellers: args.sellers.clamp(1, 100),
        skus: args.skus.clamp(1, 100_000),
        initial_quantity: args.quantity,
        rate_limits: !args.no_rate_limits,
        ..SandboxConfig::default()
    };
    for spec in &args.faults {
        apply_fault(&mut config, spec)?;
    }
    let mut hosts = Vec::new();
    for spec in &args.webhooks {
        let (m, url) = spec.split_once('=').ok_or_else(|| {
            Failure::usage(format!(
                "--webhook {spec:?}: use MARKETPLACE=URL, e.g. tiktok=https://127.0.0.1:8443/hooks/tiktok/shop1"
            ))
        })?;
        let authority = url
            .strip_prefix("https://")
            .and_then(|rest| rest.split('/').next())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                Failure::usage(format!(
                    "--webhook {m}: the URL must start with https:// (deliveries use TLS 1.2+)"
                ))
            })?;
        hosts.push(authority.to_ascii_lowercase());
        *config.webhooks.get_mut(marketplace(m)?) = Some(url.to_owned());
    }
    if !hosts.is_empty() {
        // Deliveries leave through the egress gateway like any outbound request, allowed
        // only to the hosts named on the command line.
        let mut egress = EgressConfig::new(Environment::Dev);
        egress.allowed_hosts = hosts;
        if let Some(path) = &args.webhook_ca {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("--webhook-ca: cannot read {}: {e}", path.display()))
            })?;
            egress.extra_root_pems.push(pem);
        }
        let gateway = Gateway::new(egress, None).map_err(|e| Failure::usage(e.to_string()))?;
        config.gateway = Some(gateway);
    }
    let sandbox = Sandbox::start(config)
        .await
        .map_err(|e| Failure::runtime(format!("cannot start the sandbox: {e}")))?;
    std::fs::write(&args.ca_file, &sandbox.ca_pem).map_err(|e| {
        Failure::runtime(format!(
            "cannot write the test CA to {}: {e}",
            args.ca_file.display()
        ))
    })?;
    if args.orders > 0 {
        for m in [Marketplace::TikTok, Marketplace::Amazon, Marketplace::Ebay] {
            sandbox.generate_orders(m, args.orders);
        }
    }
    println!("{}", sandbox.describe());
    println!(
        "test CA written to {}; Ctrl-C stops the sandbox",
        args.ca_file.display()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Failure::runtime(format!("cannot wait for Ctrl-C: {e}")))?;
    sandbox.shutdown().await;
    Ok(())
}
