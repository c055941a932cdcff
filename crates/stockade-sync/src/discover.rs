//! `sku discover`: read a connection's listings from its marketplace and merge them into
//! the catalog, so a seller never writes listing ids by hand.
//!
//! The marketplace call is the connector's [`Connector::discover_listings`] (through the
//! egress gateway and its rate buckets). The plan compares what the marketplace has with
//! the catalog: SKUs it lists that the catalog lacks are created (on hand 0, or the
//! marketplace's quantity when asked to take it), listings the connection lacks are
//! added, listings whose ids changed are updated (and pushed again), and listings the
//! catalog holds that the marketplace no longer has are reported as gone — never deleted.
//! Everything is written through [`catalog::merge`], the path of `sku import`: one
//! audited transaction, and order lines that arrived before their SKU are reserved.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use stockade_core::Actor;
use stockade_egress::Gateway;
use stockade_marketplaces::{Connector, DiscoveredListing, Marketplace};
use stockade_store::{Store, sql_params};
use stockade_vault::Vault;

use crate::catalog::{self, ListingIds, MergeListing, MergeSku, valid_sku};
use crate::connections::{self, Connection, ConnectionStatus};
use crate::{Result, SyncError};

/// What `sku discover` does with quantities and whether it writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscoverOptions {
    /// New SKUs take the marketplace's quantity, plus the units of this connection's open
    /// orders waiting for them (the marketplace already took those off), as their on hand
    /// (else 0).
    pub take_quantity: bool,
    /// Plan only: report what would change, write nothing.
    pub dry_run: bool,
}

/// A SKU the catalog did not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewSku {
    pub sku: String,
    pub listing: String,
    pub on_hand: i64,
    /// The marketplace's quantity, when it gave one.
    pub marketplace_qty: Option<u32>,
    /// With `take_quantity`: units of this connection's open orders that arrived before
    /// the SKU. The marketplace took them off its quantity when they sold, but they are
    /// still on the shelf, so they are added to the on hand (and reserved).
    pub open_units: i64,
}

/// A listing, by SKU and listing id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundListing {
    pub sku: String,
    pub listing: String,
}

/// What a discovery found and did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiscoverReport {
    pub connection: String,
    pub marketplace: String,
    pub dry_run: bool,
    /// Listings the marketplace reported.
    pub found: usize,
    pub new_skus: Vec<NewSku>,
    /// Listings added to SKUs already in the catalog.
    pub new_listings: Vec<FoundListing>,
    /// Listings whose ids changed (the new ids shown).
    pub changed: Vec<FoundListing>,
    pub unchanged: usize,
    /// Listings in the catalog the marketplace no longer has (left as they are).
    pub gone: Vec<FoundListing>,
    /// Listings left out, with why (an id or SKU Stockade cannot store).
    pub skipped: Vec<(String, String)>,
    /// Marketplace SKUs that differ only in letter case from a catalog SKU (orders
    /// name the marketplace's spelling, so it is added as its own SKU).
    pub case_conflicts: Vec<(String, String)>,
    /// Order lines that waited for one of the new SKUs and are (would be) matched;
    /// `reserved_lines` of them belong to open orders.
    pub matched_lines: usize,
    pub reserved_lines: usize,
}

const SELECT_CONN_LISTINGS: &str =
    "SELECT sku, listing_id, listing_ref FROM listings WHERE connection_id = $1 ORDER BY sku";
const SELECT_SKUS: &str = "SELECT sku FROM skus";

/// Read the connection's listings from its marketplace and merge them into the catalog.
pub async fn discover(
    vault: &Vault,
    gateway: &Gateway,
    name: &str,
    opts: DiscoverOptions,
    actor: &Actor,
) -> Result<DiscoverReport> {
    let store = vault.store();
    let conn = connections::get(store, name).await?;
    if conn.status == ConnectionStatus::Revoked {
        return Err(SyncError::Revoked(conn.name));
    }
    let connector = connections::connector(&conn, vault, gateway, false).await?;
    let found = connector.discover_listings().await?;
    apply(store, &conn, found, opts, actor).await
}

/// Plan the merge of `found` (the connection's listings on its marketplace) and, unless
/// dry, write it.
pub async fn apply(
    store: &Store,
    conn: &Connection,
    found: Vec<DiscoveredListing>,
    opts: DiscoverOptions,
    actor: &Actor,
) -> Result<DiscoverReport> {
    let m = conn.marketplace;
    let mut report = DiscoverReport {
        connection: conn.name.clone(),
        marketplace: m.to_string(),
        dry_run: opts.dry_run,
        found: found.len(),
        ..DiscoverReport::default()
    };
    let existing: HashMap<String, (String, ListingIds)> = store
        .query_as::<(String, String, ListingIds)>(SELECT_CONN_LISTINGS, sql_params![conn.id])
        .await?
        .into_iter()
        .map(|(sku, id, ids)| (sku, (id, ids)))
        .collect();
    let skus: HashSet<String> = store
        .query_as(SELECT_SKUS, vec![])
        .await?
        .into_iter()
        .collect();
    let by_lower: HashMap<String, &String> = skus.iter().map(|s| (s.to_lowercase(), s)).collect();
    let open_units = if opts.take_quantity {
        open_units(store, conn).await?
    } else {
        HashMap::new()
    };

    let mut merge: Vec<MergeSku> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for d in found {
        let sku = d.listing.sku.trim().to_owned();
        let ids = ListingIds {
            product_id: d.listing.product_id.clone(),
            variant_id: d.listing.variant_id.clone(),
            warehouse_ids: d.listing.warehouse_ids.clone(),
            product_type: d.listing.product_type.clone(),
            offer_ids: d.listing.offer_ids.clone(),
        };
        let listing = ids.format(m);
        if !valid_sku(&sku) {
            report.skipped.push((
                sku.chars().take(100).collect(),
                "the SKU is empty, longer than 100 characters or has control characters".into(),
            ));
            continue;
        }
        if let Err(why) = storable(m, &ids, &listing) {
            report.skipped.push((sku, why));
            continue;
        }
        if !seen.insert(sku.clone()) {
            continue;
        }
        let listing_row = || FoundListing {
            sku: sku.clone(),
            listing: listing.clone(),
        };
        let on_hand = if skus.contains(&sku) {
            None
        } else {
            if let Some(other) = by_lower.get(&sku.to_lowercase()) {
                report.case_conflicts.push((sku.clone(), (*other).clone()));
            }
            let open = open_units.get(&sku).copied().unwrap_or(0);
            let on_hand = if opts.take_quantity {
                i64::from(d.quantity.unwrap_or(0)).saturating_add(open)
            } else {
                0
            };
            report.new_skus.push(NewSku {
                sku: sku.clone(),
                listing: listing.clone(),
                on_hand,
                marketplace_qty: d.quantity,
                open_units: open,
            });
            Some(on_hand)
        };
        match existing.get(&sku) {
            Some((_, old)) if *old == ids => {
                report.unchanged += 1;
                continue;
            }
            Some(_) => report.changed.push(listing_row()),
            None if on_hand.is_none() => report.new_listings.push(listing_row()),
            None => {}
        }
        merge.push(MergeSku {
            sku,
            on_hand,
            low_stock_threshold: None,
            listings: vec![MergeListing {
                connection: conn.clone(),
                ids,
                limits: None,
            }],
        });
    }
    report.gone = gone(&existing, &seen);
    if opts.dry_run {
        count_matches(store, &mut report).await?;
        return Ok(report);
    }
    let done = catalog::merge(store, &merge, actor, "catalog.discover").await?;
    report.matched_lines = done.matched_lines;
    report.reserved_lines = done.reserved_lines;
    Ok(report)
}

/// Units of this connection's open unmatched order lines, by SKU. A marketplace's
/// quantity is what it still offers: units its open orders sold are already off it, but
/// not yet off the shelf. Taken as on hand alone, they would be counted twice once those
/// orders are reserved.
async fn open_units(store: &Store, conn: &Connection) -> Result<HashMap<String, i64>> {
    let mut open_units: HashMap<String, i64> = HashMap::new();
    for l in crate::unmatched::unmatched_lines(store).await? {
        if l.open && l.connection == conn.name {
            *open_units.entry(l.sku).or_default() += l.quantity;
        }
    }
    Ok(open_units)
}

/// Listings stored for the connection that the marketplace no longer shows, by SKU.
fn gone(
    existing: &HashMap<String, (String, ListingIds)>,
    seen: &HashSet<String>,
) -> Vec<FoundListing> {
    let gone: BTreeMap<&String, &String> = existing
        .iter()
        .filter(|(sku, _)| !seen.contains(*sku))
        .map(|(sku, (listing, _))| (sku, listing))
        .collect();
    gone.into_iter()
        .map(|(sku, listing)| FoundListing {
            sku: sku.clone(),
            listing: listing.clone(),
        })
        .collect()
}

/// A dry run's figures: the unmatched order lines the new SKUs would match (and reserve).
async fn count_matches(store: &Store, report: &mut DiscoverReport) -> Result<()> {
    let new: HashSet<&str> = report.new_skus.iter().map(|n| n.sku.as_str()).collect();
    for l in crate::unmatched::unmatched_lines(store)
        .await?
        .iter()
        .filter(|l| new.contains(l.sku.as_str()))
    {
        report.matched_lines += 1;
        report.reserved_lines += usize::from(l.open);
    }
    Ok(())
}

/// Whether ids can be stored and exported: the listing id must read back as the same ids
/// (the catalog CSV's form), and a push needs its marketplace's ids.
fn storable(m: Marketplace, ids: &ListingIds, listing: &str) -> std::result::Result<(), String> {
    let needed = match m {
        Marketplace::TikTok => ids.product_id.is_some() && ids.variant_id.is_some(),
        Marketplace::Amazon => ids.product_id.is_some(),
        Marketplace::Ebay => !ids.offer_ids.is_empty(),
    };
    if !needed {
        return Err("the marketplace gave no listing id".into());
    }
    match ListingIds::parse(m, listing) {
        Ok(back) if back == *ids => Ok(()),
        _ => Err(format!(
            "listing id {:?} has characters Stockade does not store",
            listing.chars().take(64).collect::<String>()
        )),
    }
}
