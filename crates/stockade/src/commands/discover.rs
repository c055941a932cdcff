//! `stockade sku discover --connection NAME`: the connection's listings read from its
//! marketplace and merged into the catalog (audited as `system:cli`).

use stockade_sync::discover::{self, DiscoverOptions, DiscoverReport};

use super::connection::sync_failure;
use super::{CLI_ACTOR, open_vault};
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn run(
    settings: &Settings,
    connection: &str,
    take_quantity: bool,
    dry_run: bool,
) -> Result<(), Failure> {
    let env = settings.require_env()?;
    let vault = open_vault(settings).await?;
    // The one outbound client of this command, logging to the environment's database
    // like the server's.
    let gateway = match stockade_egress::Gateway::new(
        settings.egress_config(env),
        Some(vault.store().clone()),
    ) {
        Ok(g) => g,
        Err(e) => {
            vault.close().await;
            return Err(Failure::usage(format!("[egress] configuration: {e}")));
        }
    };
    let opts = DiscoverOptions {
        take_quantity,
        dry_run,
    };
    let result = discover::discover(&vault, &gateway, connection, opts, &CLI_ACTOR).await;
    if let Err(e) = gateway.flush().await {
        tracing::warn!("could not write the egress log: {e}");
    }
    vault.close().await;
    let report = result.map_err(sync_failure)?;
    print_report(&report, take_quantity);
    Ok(())
}

fn print_report(r: &DiscoverReport, take_quantity: bool) {
    let verb = if r.dry_run { "would be " } else { "" };
    for n in &r.new_skus {
        let shown = match (n.marketplace_qty, n.open_units) {
            (None, _) => String::new(),
            (Some(q), 0) => format!(" ({} shows {q})", r.marketplace),
            (Some(q), open) => format!(
                " ({} shows {q}, + {open} sold in open orders, still on the shelf)",
                r.marketplace
            ),
        };
        println!(
            "new sku      {:<24} {:<32} on hand {}{shown}",
            n.sku, n.listing, n.on_hand
        );
    }
    for l in &r.new_listings {
        println!("new listing  {:<24} {}", l.sku, l.listing);
    }
    for l in &r.changed {
        println!(
            "changed      {:<24} {} (ids updated; pushed again)",
            l.sku, l.listing
        );
    }
    for l in &r.gone {
        println!(
            "gone         {:<24} {} (not on {} any more; kept in the catalog)",
            l.sku, l.listing, r.marketplace
        );
    }
    for (sku, why) in &r.skipped {
        println!("skipped      {sku:<24} {why}");
    }
    for (sku, other) in &r.case_conflicts {
        println!(
            "warning: {} SKU {sku:?} differs only in letter case from catalog SKU {other:?}; orders name {sku:?}, so it {verb}added as its own SKU",
            r.marketplace
        );
    }
    println!(
        "{}: {} listing(s) found on {}: {} new SKU(s), {} new listing(s), {} changed, {} unchanged, {} gone{}",
        r.connection,
        r.found,
        r.marketplace,
        r.new_skus.len(),
        r.new_listings.len(),
        r.changed.len(),
        r.unchanged,
        r.gone.len(),
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", r.skipped.len())
        }
    );
    if r.matched_lines > 0 {
        println!(
            "{} order line(s) that arrived before their SKU {}matched; {} of them belong to open orders and {}reserved",
            r.matched_lines,
            if r.dry_run { "would be " } else { "are now " },
            r.reserved_lines,
            if r.dry_run { "would be " } else { "were " }
        );
    }
    if !r.new_skus.is_empty() && !take_quantity {
        println!(
            "new SKUs start with 0 on hand: set the real counts with `stockade sku import` (or run discover with --take-quantity to take {}'s quantities)",
            r.marketplace
        );
    }
    if r.dry_run {
        println!("dry run: nothing was written");
    } else if !(r.new_skus.is_empty() && r.new_listings.is_empty() && r.changed.is_empty()) {
        println!(
            "the catalog was updated in one audited transaction (catalog.discover); a running server pushes the new targets"
        );
    }
}
