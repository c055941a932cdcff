//! Setup shared by the end-to-end runs under load: `stockade sandbox` delivering signed
//! webhooks to a server's hook routes, the data directory configured to reach the
//! simulators (egress, polling every few seconds), the three connections and the
//! catalog; eBay's endpoint validation; and the checks at the end (the ledger sums
//! right, every channel converges).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Sandbox;
use crate::sync::{
    Admin, BUFFER, MARKETS, ON_HAND, Proc, SandboxInfo, add_connections, catalog_csv, read_until,
    spawn,
};

/// The running simulators and how to reach them.
pub(crate) struct Markets {
    pub(crate) info: SandboxInfo,
    pub(crate) admin: Admin,
    pub(crate) hook_base: String,
    /// Killed on drop.
    _sandbox: Proc,
}

impl Markets {
    /// Start the simulators (`skus` SKUs, seed `seed`) delivering to `hook_base` (the
    /// server's development CA must exist: start `serve` once first), append the egress
    /// and `[sync]` sections plus `extra_config` to `stockade.toml`, add the connections
    /// and import the catalog.
    pub(crate) async fn start(
        sb: &Sandbox,
        seed: u64,
        skus: usize,
        hook_base: &str,
        extra_config: &str,
    ) -> Markets {
        let (sandbox, info, admin) = spawn_markets(sb, seed, skus, hook_base);
        write_config(sb, &info, &[], &[], extra_config);
        connect_and_import(sb, &info, &admin, hook_base).await;
        Markets {
            info,
            admin,
            hook_base: hook_base.to_owned(),
            _sandbox: sandbox,
        }
    }

    pub(crate) fn base(&self, name: &str) -> String {
        self.info.m(name).base.clone()
    }

    /// [`validate_ebay`] against these simulators.
    pub(crate) async fn validate_ebay(&self, logs: &dyn Fn() -> String) {
        validate_ebay(&self.admin, &self.info, &self.hook_base, logs).await;
    }

    /// [`wait_converged`] on these simulators' listings.
    pub(crate) async fn wait_converged(
        &self,
        stock: &BTreeMap<String, (i64, i64, i64)>,
        within: Duration,
        logs: &dyn Fn() -> String,
    ) {
        wait_converged(&self.admin, &self.info, stock, within, logs).await;
    }
}

/// eBay delivers only to a validated endpoint: ask for a challenge now that a server
/// answers at `hook_base`, and wait for it to pass.
pub(crate) async fn validate_ebay(
    admin: &Admin,
    info: &SandboxInfo,
    hook_base: &str,
    logs: &dyn Fn() -> String,
) {
    let ebay = &info.m("ebay").base;
    admin
        .send(
            reqwest::Method::PUT,
            format!("{ebay}/_sandbox/webhook"),
            json!({"url": format!("{hook_base}/ebay/ebay")}),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d = admin.get(format!("{ebay}/_sandbox/deliveries")).await;
        let last = d
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|d| d["kind"] == "challenge")
            .cloned();
        if last.as_ref().is_some_and(|d| d["ok"] == true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the eBay challenge was not answered: {last:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait until every listing on every channel shows available − buffer, `stock` being
/// `sku list`'s (on hand, reserved, available).
pub(crate) async fn wait_converged(
    admin: &Admin,
    info: &SandboxInfo,
    stock: &BTreeMap<String, (i64, i64, i64)>,
    within: Duration,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + within;
    loop {
        let mut wrong = Vec::new();
        for name in MARKETS {
            for l in admin
                .get(format!("{}/_sandbox/listings", info.m(name).base))
                .await
                .as_array()
                .unwrap()
            {
                let sku = l["sku"].as_str().unwrap();
                let want = (stock[sku].2 - BUFFER).max(0);
                if l["quantity"].as_i64() != Some(want) {
                    wrong.push(format!("{name} {sku}: {} (want {want})", l["quantity"]));
                }
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "channels did not converge: {wrong:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Reserved per SKU is what the orders hold, in `sku list` and in the ledger (`ledger`:
/// sku → sum of reserved deltas); on hand untouched.
pub(crate) fn check_stock(
    stock: &BTreeMap<String, (i64, i64, i64)>,
    reserved_expected: &BTreeMap<String, i64>,
    ledger: &BTreeMap<String, i64>,
) {
    let skus: HashSet<&String> = stock.keys().collect();
    assert!(
        reserved_expected.keys().all(|s| skus.contains(s)),
        "orders for SKUs the catalog lacks: {reserved_expected:?}"
    );
    for (sku, (on_hand, reserved, available)) in stock {
        let want = reserved_expected.get(sku).copied().unwrap_or(0);
        assert_eq!(*reserved, want, "{sku}: reserved");
        assert_eq!(
            (*on_hand, *available),
            (ON_HAND, on_hand - reserved),
            "{sku}"
        );
        assert_eq!(ledger.get(sku).copied().unwrap_or(0), want, "{sku}: ledger");
    }
}

/// `stockade sandbox` (seed `seed`, `skus` SKUs, no rate limits) delivering signed
/// webhooks to `hook_base`, trusting the server's development CA; its process, its
/// addresses and a client for its admin routes.
pub(crate) fn spawn_markets(
    sb: &Sandbox,
    seed: u64,
    skus: usize,
    hook_base: &str,
) -> (Proc, SandboxInfo, Admin) {
    let server_ca = sb.data().join("tls/dev-ca.pem");
    let sandbox_ca = sb.dir.join("sandbox-ca.pem");
    let mut args: Vec<String> = vec![
        "sandbox".into(),
        "--seed".into(),
        seed.to_string(),
        "--skus".into(),
        skus.to_string(),
        "--quantity".into(),
        "100000".into(),
        "--no-rate-limits".into(),
    ];
    for name in MARKETS {
        args.push("--webhook".into());
        args.push(format!("{name}={hook_base}/{name}/{name}"));
    }
    args.extend([
        "--webhook-ca".into(),
        server_ca.display().to_string(),
        "--ca-file".into(),
        sandbox_ca.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (sandbox, rx) = spawn(sb, &args, &sb.dir.join("sandbox.log"));
    let lines = read_until(&rx, Duration::from_secs(30), |l| {
        l.contains("Ctrl-C stops the sandbox")
    })
    .unwrap_or_else(|| panic!("the sandbox did not start:\n{}", sandbox.log_tail()));
    let info = SandboxInfo::parse(&lines);
    let admin = Admin::new(&sandbox_ca, &server_ca);
    (sandbox, info, admin)
}

/// Append to `stockade.toml`: egress to the simulators (and `extra_hosts`) trusting their
/// CA (and `extra_certs`), a 3 s poll and a 5 s reconciliation, then `extra_config`.
pub(crate) fn write_config(
    sb: &Sandbox,
    info: &SandboxInfo,
    extra_hosts: &[String],
    extra_certs: &[String],
    extra_config: &str,
) {
    let sandbox_ca = sb.dir.join("sandbox-ca.pem").display().to_string();
    let hosts: Vec<String> = MARKETS
        .iter()
        .map(|m| info.m(m).base.trim_start_matches("https://").to_owned())
        .chain(extra_hosts.iter().cloned())
        .map(|h| format!("{h:?}"))
        .collect();
    let certs: Vec<String> = std::iter::once(&sandbox_ca)
        .chain(extra_certs)
        .map(|c| format!("{c:?}"))
        .collect();
    let config = sb.data().join("stockade.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[egress]\nallowed_hosts = [{}]\nextra_root_certs = [{}]\n\n[sync]\npoll_interval = \"3s\"\npoll_overlap = \"1s\"\nreconcile_interval = \"5s\"\n{extra_config}",
        hosts.join(", "),
        certs.join(", "),
    ));
    std::fs::write(&config, text).unwrap();
}

/// The three connections (webhooks to `hook_base`) and a catalog of the simulators'
/// listings.
pub(crate) async fn connect_and_import(
    sb: &Sandbox,
    info: &SandboxInfo,
    admin: &Admin,
    hook_base: &str,
) {
    add_connections(sb, info, hook_base);
    let mut listings = BTreeMap::new();
    for name in MARKETS {
        let l = admin
            .get(format!("{}/_sandbox/listings", info.m(name).base))
            .await;
        listings.insert(name.to_owned(), l.as_array().unwrap().clone());
    }
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, catalog_csv(&listings)).unwrap();
    sb.run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
}
