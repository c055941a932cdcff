//! `stockade sandbox`: the marketplace simulators, standalone.

use stockade_core::Environment;
use stockade_core::order::Marketplace;
use stockade_egress::{EgressConfig, Gateway};
use stockade_sandbox::{Faults, Sandbox, SandboxConfig};

use super::sandbox_creds;
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
    // Refuse a credentials directory holding other files before anything starts.
    let creds_dir =
        match &args.credentials_dir {
            Some(dir) => {
                sandbox_creds::prepare_dir(dir)?;
                Some(std::fs::canonicalize(dir).map_err(|e| {
                    Failure::runtime(format!("cannot resolve {}: {e}", dir.display()))
                })?)
            }
            None => None,
        };
    let mut config = SandboxConfig {
        seed: args.seed,
        sellers: args.sellers.clamp(1, 100),
        skus: args.skus.clamp(1, 100_000),
        initial_quantity: args.quantity,
        rate_limits: !args.no_rate_limits && !args.bench.lift_limits,
        ..SandboxConfig::default()
    };
    let lift_deliveries = args.bench.lift_limits || args.bench.lift_delivery_limits;
    if lift_deliveries {
        super::sandbox_lift::lift_deliveries(&mut config);
    }
    for spec in &args.faults {
        apply_fault(&mut config, spec)?;
    }
    let mut hosts = Vec::new();
    // Where eBay's notification endpoint will be (its validation challenge hashes it).
    let mut ebay_hook = "https://127.0.0.1:8443/hooks/ebay/ebay".to_owned();
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
        if m == "ebay" {
            ebay_hook = url.to_owned();
        }
        *config.webhooks.get_mut(marketplace(m)?) = Some(url.to_owned());
    }
    if !hosts.is_empty() {
        // Deliveries leave through the egress gateway like any outbound request, allowed
        // only to the hosts named on the command line.
        let mut egress = EgressConfig::new(Environment::Dev);
        egress.allowed_hosts = hosts;
        if lift_deliveries {
            super::sandbox_lift::lift_delivery_egress(&mut egress);
        }
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
    // Stop the simulators on any failure below (their ports stay bound otherwise until exit).
    let ready = announce(&sandbox, &args, creds_dir.as_deref(), &ebay_hook).and_then(|()| {
        match &args.bench.ready_file {
            Some(path) => super::sandbox_ready::write(&sandbox, path),
            None => Ok(()),
        }
    });
    if let Err(e) = ready {
        sandbox.shutdown().await;
        return Err(e);
    }
    let stopped = super::sandbox_lift::until_stopped(args.bench.ready_file.is_some()).await;
    sandbox.shutdown().await;
    // Its credentials are no use once the simulators are gone.
    if let Some(path) = &args.bench.ready_file {
        let _ = std::fs::remove_file(path);
    }
    stopped
}

/// Write the CA (and the credentials files), generate the start orders, print the URLs
/// and the next steps.
fn announce(
    sandbox: &Sandbox,
    args: &SandboxArgs,
    creds_dir: Option<&std::path::Path>,
    ebay_hook: &str,
) -> Result<(), Failure> {
    let commands = match creds_dir {
        Some(dir) => {
            let serve = ebay_hook
                .split("/hooks/")
                .next()
                .unwrap_or("https://127.0.0.1:8443");
            Some(sandbox_creds::write_credentials(sandbox, dir, serve)?)
        }
        None => None,
    };
    let ca_file = match (&args.ca_file, creds_dir) {
        (Some(path), _) => {
            std::fs::write(path, &sandbox.ca_pem).map_err(|e| {
                Failure::runtime(format!(
                    "cannot write the test CA to {}: {e}",
                    path.display()
                ))
            })?;
            path.clone()
        }
        (None, Some(dir)) => dir.join(sandbox_creds::CA_FILE),
        (None, None) => {
            let path = std::path::PathBuf::from(sandbox_creds::CA_FILE);
            std::fs::write(&path, &sandbox.ca_pem).map_err(|e| {
                Failure::runtime(format!(
                    "cannot write the test CA to {}: {e}",
                    path.display()
                ))
            })?;
            path
        }
    };
    if args.orders > 0 {
        for m in [Marketplace::TikTok, Marketplace::Amazon, Marketplace::Ebay] {
            sandbox.generate_orders(m, args.orders);
        }
    }
    println!("{}", sandbox.describe());
    if let (Some(dir), Some(commands)) = (creds_dir, commands) {
        println!(
            "credentials written to {} (tiktok.json, amazon.json, ebay.json: mode 0600; {}: the test CA)",
            dir.display(),
            sandbox_creds::CA_FILE
        );
        println!(
            "connect a dev instance to this sandbox with these commands (pointed at its data directory: --data-dir DIR or STOCKADE_DATA_DIR=DIR); no other set-up needed:"
        );
        for c in &commands.add {
            println!("  {c}");
        }
        println!("connections added to an earlier run of this sandbox move to this one with:");
        for c in &commands.edit {
            println!("  {c}");
        }
        println!(
            "eBay's --endpoint-url is {} (where `stockade serve` answers by default); change it with `stockade connection edit ebay --endpoint-url URL`",
            ebay_hook
        );
        println!(
            "then: `stockade connection test NAME`, `stockade serve`, and the catalog from these listings: `stockade sku discover --connection tiktok --take-quantity`, then `--connection amazon` and `--connection ebay` (see docs/sync.md)"
        );
    }
    println!(
        "test CA written to {}; Ctrl-C stops the sandbox",
        ca_file.display()
    );
    Ok(())
}
