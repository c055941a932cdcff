//! The SKU catalog: on-hand quantities, per-channel listings with their safety buffer and
//! maximum displayed quantity, CSV import and export, and stock derived from the ledger.
//!
//! CSV columns: `sku`, `on_hand`, optionally `low_stock_threshold` (the SKU's own
//! threshold for the `stock.low` event; an empty cell keeps what it has), then per
//! connection `<name>:listing`, `<name>:buffer`, `<name>:max`. `reserved` and `available` (written by export) are ignored on import.
//! A listing identifier is, per marketplace:
//! - TikTok: `PRODUCT_ID:SKU_ID`, optionally `@WAREHOUSE_ID` (several joined by `|`);
//! - Amazon: the ASIN, optionally `:PRODUCT_TYPE` (default `PRODUCT`);
//! - eBay: the offer id (several joined by `|`), or `-` to look offers up by SKU.
//!
//! # The stock formula
//!
//! What a channel shows for a SKU is `max(0, min(available − buffer, max displayed))`,
//! with `available = on_hand − reserved` and no maximum read as 2,147,483,647. It is
//! written in three places, which must agree:
//! - [`target`] here, the Rust reading of it;
//! - `target_expr!` / `RETARGET` here: the SQL that recomputes a SKU's listings after a
//!   catalog change (`import`, `discover`, `rebuild`), when buffers or maximums move;
//! - the `skus_retarget` trigger in the store's migrations
//!   (`stockade-store/migrations/{sqlite,postgres}/0004_sync.sql`), which recomputes
//!   them whenever a ledger row (an order, a cancellation, an adjustment) changes
//!   available stock.
//!
//! The sync crate's `catalog_formula` test sets a grid of stock, buffers and maximums
//! (negative stock and no maximum included) on both databases and checks that what
//! `RETARGET` and the trigger store equals [`target`]: a change to one copy without the
//! others fails it. A migration that changes the trigger needs the other two changed
//! with it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use stockade_core::Actor;
use stockade_marketplaces::{ListingRef, Marketplace};
use stockade_store::{
    AuditDetails, AuditEntry, Change, Columns, Expect, FromColumn, FromRow, Mutation, SqlRow,
    Store, StoreError, sql_params,
};

use crate::connections::{self, Connection, ConnectionStatus};
use crate::{Result, SyncError, now_ms};

/// A listing's channel-side identifiers, stored as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warehouse_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offer_ids: Vec<String>,
}

impl ListingIds {
    /// Parse the CSV form for a marketplace.
    pub fn parse(m: Marketplace, text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let ok_part = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match m {
            Marketplace::TikTok => {
                let (ids, wh) = match text.split_once('@') {
                    Some((a, b)) => (a, Some(b)),
                    None => (text, None),
                };
                let (p, v) = ids
                    .split_once(':')
                    .ok_or("a TikTok listing is PRODUCT_ID:SKU_ID[@WAREHOUSE]")?;
                if !ok_part(p) || !ok_part(v) {
                    return Err("a TikTok listing is PRODUCT_ID:SKU_ID[@WAREHOUSE]".into());
                }
                let warehouse_ids: Vec<String> = match wh {
                    Some(w) => w.split('|').map(str::to_owned).collect(),
                    None => Vec::new(),
                };
                if warehouse_ids.iter().any(|w| !ok_part(w)) {
                    return Err("a warehouse id is letters and digits".into());
                }
                Ok(ListingIds {
                    product_id: Some(p.into()),
                    variant_id: Some(v.into()),
                    warehouse_ids,
                    ..ListingIds::default()
                })
            }
            Marketplace::Amazon => {
                let (asin, pt) = match text.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (text, None),
                };
                if !ok_part(asin) || pt.is_some_and(|p| !ok_part(p)) {
                    return Err("an Amazon listing is ASIN[:PRODUCT_TYPE]".into());
                }
                Ok(ListingIds {
                    product_id: Some(asin.into()),
                    product_type: pt.map(str::to_owned),
                    ..ListingIds::default()
                })
            }
            Marketplace::Ebay => {
                if text == "-" {
                    return Ok(ListingIds::default());
                }
                let offers: Vec<String> = text.split('|').map(str::to_owned).collect();
                if offers.iter().any(|o| !ok_part(o)) {
                    return Err("an eBay listing is OFFER_ID[|OFFER_ID…] or -".into());
                }
                Ok(ListingIds {
                    offer_ids: offers,
                    ..ListingIds::default()
                })
            }
        }
    }

    /// The CSV form (inverse of [`ListingIds::parse`]).
    pub fn format(&self, m: Marketplace) -> String {
        match m {
            Marketplace::TikTok => {
                let mut s = format!(
                    "{}:{}",
                    self.product_id.as_deref().unwrap_or(""),
                    self.variant_id.as_deref().unwrap_or("")
                );
                if !self.warehouse_ids.is_empty() {
                    s.push('@');
                    s.push_str(&self.warehouse_ids.join("|"));
                }
                s
            }
            Marketplace::Amazon => match &self.product_type {
                Some(pt) => format!("{}:{pt}", self.product_id.as_deref().unwrap_or("")),
                None => self.product_id.clone().unwrap_or_default(),
            },
            Marketplace::Ebay if self.offer_ids.is_empty() => "-".into(),
            Marketplace::Ebay => self.offer_ids.join("|"),
        }
    }

    pub fn to_ref(&self, sku: &str) -> ListingRef {
        ListingRef {
            sku: sku.to_owned(),
            product_id: self.product_id.clone(),
            variant_id: self.variant_id.clone(),
            warehouse_ids: self.warehouse_ids.clone(),
            product_type: self.product_type.clone(),
            offer_ids: self.offer_ids.clone(),
        }
    }
}

/// One SKU's stock, as derived from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockRow {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    /// The SKU's own low-stock threshold, if it has one (else the global one applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock_threshold: Option<i64>,
}

/// A listing row as the CLI and API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingRow {
    pub connection: String,
    pub sku: String,
    pub listing: String,
    pub buffer: i64,
    pub max_displayed: Option<i64>,
    pub target_qty: i64,
    pub target_version: i64,
    pub pushed_version: i64,
    pub acked_qty: Option<i64>,
    pub channel_qty: Option<i64>,
    /// The listing's failing push streak (migration 0007): rounds, since when, last error.
    pub push: crate::PushHealth,
}

/// A listing's ids as a column: its stored JSON.
impl FromColumn for ListingIds {
    fn from_column(row: &SqlRow, i: usize) -> stockade_store::Result<Self> {
        serde_json::from_str(&String::from_column(row, i)?)
            .map_err(|_| StoreError::Corrupt("a listing's ids".into()))
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub skus: usize,
    pub listings: usize,
    /// Order lines that were waiting for one of these SKUs (unmatched) and are now
    /// matched; `reserved_lines` of them belong to open orders and were reserved.
    pub matched_lines: usize,
    pub reserved_lines: usize,
    /// The CSV was read as semicolon-separated.
    pub semicolons: bool,
    /// Things the operator should know that do not stop the import (SKUs that differ
    /// only in case).
    pub warnings: Vec<String>,
}

/// The target a channel shows for a SKU: max(0, min(available − buffer, max displayed)).
/// One of three copies of the formula; see [the module docs](self#the-stock-formula).
pub fn target(available: i64, buffer: i64, max_displayed: Option<i64>) -> i64 {
    (available - buffer)
        .min(max_displayed.unwrap_or(i64::from(i32::MAX)))
        .max(0)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One listing of a catalog entry.
#[derive(Debug, Clone)]
pub struct CatalogListing {
    pub connection: Connection,
    pub ids: ListingIds,
    pub buffer: i64,
    pub max: Option<i64>,
}

/// One SKU to write or merge into the catalog: from a CSV row (`sku import`) or from a
/// marketplace's listings (`sku discover`). `on_hand: None` leaves the stock of an
/// existing SKU alone (a new one starts at 0).
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub sku: String,
    pub on_hand: Option<i64>,
    /// The `low_stock_threshold` column, when the file has it and the cell is not empty.
    pub low_stock_threshold: Option<i64>,
    pub listings: Vec<CatalogListing>,
}

pub(crate) fn valid_sku(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_control)
}

pub use crate::catalog_csv::parse_csv;

const INSERT_SKU: &str = "INSERT INTO skus (sku, on_hand, reserved, created_at_ms, updated_at_ms) VALUES ($1, 0, 0, $2, $2)
     ON CONFLICT (sku) DO NOTHING";
const ADJUST: &str =
    "INSERT INTO stock_ledger (sku, movement, on_hand_delta, reserved_delta, at_ms)
     SELECT sku, 'adjust', $1 - on_hand, 0, $2 FROM skus WHERE sku = $3 AND on_hand <> $1";
const UPSERT_LISTING: &str = "INSERT INTO listings (connection_id, sku, listing_id, listing_ref, buffer, max_displayed, target_qty, target_version, pushed_version)
     VALUES ($1, $2, $3, $4, $5, $6, -1, 1, 0)
     ON CONFLICT (connection_id, sku) DO UPDATE SET listing_id = excluded.listing_id,
       listing_ref = excluded.listing_ref, buffer = excluded.buffer, max_displayed = excluded.max_displayed";
/// A listing's target from its SKU's stock: max(0, min(available − buffer, max displayed))
/// (the same formula as [`target`] and the `skus_retarget` trigger; see
/// [the module docs](self#the-stock-formula)), in SQL both backends accept.
macro_rules! target_expr {
    () => {
        "CASE WHEN (SELECT s.on_hand - s.reserved FROM skus s WHERE s.sku = listings.sku) - listings.buffer < 0 THEN 0
              WHEN (SELECT s.on_hand - s.reserved FROM skus s WHERE s.sku = listings.sku) - listings.buffer
                   < COALESCE(listings.max_displayed, 2147483647)
              THEN (SELECT s.on_hand - s.reserved FROM skus s WHERE s.sku = listings.sku) - listings.buffer
              ELSE COALESCE(listings.max_displayed, 2147483647) END"
    };
}

/// Recompute a SKU's listing targets after a catalog change.
const RETARGET: &str = concat!(
    "UPDATE listings SET target_qty = ",
    target_expr!(),
    ", target_version = target_version + 1 WHERE sku = $1 AND target_qty <> ",
    target_expr!()
);

/// Import a catalog CSV: every row is checked first; then all of it is written in one
/// transaction (or nothing is). On-hand quantities are set through `adjust` ledger
/// entries, so stock stays derivable from the ledger.
pub async fn import_csv(store: &Store, text: &str, actor: &Actor) -> Result<ImportReport> {
    let conns = connections::list(store).await?;
    let parsed = crate::catalog_csv::plan(text, &conns)?;
    if parsed.entries.is_empty() {
        return Err(SyncError::Invalid(
            "the file has a header but no SKU rows".into(),
        ));
    }
    let existing: Vec<String> = stock(store).await?.into_iter().map(|s| s.sku).collect();
    let clashes = crate::catalog_csv::case_clashes_with(&parsed.entries, &existing);
    let skus: Vec<MergeSku> = parsed
        .entries
        .into_iter()
        .map(|p| MergeSku {
            sku: p.sku,
            on_hand: p.on_hand,
            low_stock_threshold: p.low_stock_threshold,
            listings: p
                .listings
                .into_iter()
                .map(|l| MergeListing {
                    connection: l.connection,
                    ids: l.ids,
                    limits: Some((l.buffer, l.max)),
                })
                .collect(),
        })
        .collect();
    let mut report = merge(store, &skus, actor, "catalog.import").await?;
    report.semicolons = parsed.semicolons;
    report.warnings = parsed.warnings;
    report.warnings.extend(clashes);
    Ok(report)
}

/// One SKU to write into the catalog (see [`merge`]).
#[derive(Debug, Clone)]
pub struct MergeSku {
    pub sku: String,
    /// The on-hand quantity to set (through an `adjust` ledger entry); `None` keeps an
    /// existing SKU's on hand (a new one starts at 0).
    pub on_hand: Option<i64>,
    /// The SKU's own low-stock threshold to set; `None` keeps what it has (a new SKU
    /// uses the global one). `sku threshold` clears one.
    pub low_stock_threshold: Option<i64>,
    pub listings: Vec<MergeListing>,
}

/// One listing of a [`MergeSku`] on a connection.
#[derive(Debug, Clone)]
pub struct MergeListing {
    pub connection: Connection,
    pub ids: ListingIds,
    /// `(buffer, max displayed)` to set; `None` keeps an existing listing's (a new one
    /// gets buffer 0 and no maximum).
    pub limits: Option<(i64, Option<i64>)>,
}

/// A listing whose ids changed: its target is pushed again (to the new ids).
const UPSERT_LISTING_IDS: &str = "INSERT INTO listings (connection_id, sku, listing_id, listing_ref, buffer, max_displayed, target_qty, target_version, pushed_version)
     VALUES ($1, $2, $3, $4, 0, NULL, -1, 1, 0)
     ON CONFLICT (connection_id, sku) DO UPDATE SET listing_id = excluded.listing_id,
       listing_ref = excluded.listing_ref,
       target_version = CASE WHEN listings.listing_ref = excluded.listing_ref
                             THEN listings.target_version ELSE listings.target_version + 1 END";

/// Write SKUs and their listings into the catalog in one audited transaction (one audit
/// row per SKU, `action`), the path both `sku import` and `sku discover` take: SKUs are
/// created or their on hand set, order lines that arrived before a SKU are matched (and
/// their open ones reserved), listings are added or updated, and every touched SKU's
/// listing targets follow its stock.
pub async fn merge(
    store: &Store,
    skus: &[MergeSku],
    actor: &Actor,
    action: &'static str,
) -> Result<ImportReport> {
    let now = now_ms();
    let mut report = ImportReport::default();
    let mut changes = Vec::with_capacity(skus.len());
    for p in skus {
        if !valid_sku(&p.sku) {
            return Err(SyncError::Invalid(format!(
                "SKU {:?} is empty, longer than 100 characters or has control characters",
                p.sku
            )));
        }
        let mut steps = vec![Mutation::Sql {
            statement: INSERT_SKU,
            params: sql_params![p.sku.as_str(), now],
            expect: Expect::Any,
        }];
        if let Some(on_hand) = p.on_hand {
            steps.push(Mutation::Sql {
                statement: ADJUST,
                params: sql_params![on_hand, now, p.sku.as_str()],
                expect: Expect::Any,
            });
        }
        if let Some(t) = p.low_stock_threshold {
            steps.push(Mutation::Sql {
                statement: "UPDATE skus SET low_stock_threshold = $1 WHERE sku = $2",
                params: sql_params![t, p.sku.as_str()],
                expect: Expect::Any,
            });
        }
        // Orders that arrived before the SKU: reserve their open lines now.
        steps.extend(crate::unmatched::match_steps(&p.sku, now));
        for l in &p.listings {
            let ids = serde_json::to_string(&l.ids)
                .map_err(|_| SyncError::Invalid("listing ids".into()))?;
            let listing_id = l.ids.format(l.connection.marketplace);
            steps.push(match l.limits {
                Some((buffer, max)) => Mutation::Sql {
                    statement: UPSERT_LISTING,
                    params: sql_params![
                        l.connection.id,
                        p.sku.as_str(),
                        listing_id,
                        ids,
                        buffer,
                        max
                    ],
                    expect: Expect::One("listing"),
                },
                None => Mutation::Sql {
                    statement: UPSERT_LISTING_IDS,
                    params: sql_params![l.connection.id, p.sku.as_str(), listing_id, ids],
                    expect: Expect::One("listing"),
                },
            });
        }
        steps.push(Mutation::Sql {
            statement: RETARGET,
            params: sql_params![p.sku.as_str()],
            expect: Expect::Any,
        });
        report.skus += 1;
        report.listings += p.listings.len();
        let mut details = AuditDetails::new().int("listings", p.listings.len() as i64);
        if let Some(on_hand) = p.on_hand {
            details = details.int("on_hand", on_hand);
        }
        if let Some(t) = p.low_stock_threshold {
            details = details.int("low_stock_threshold", t);
        }
        let names: Vec<&str> = p
            .listings
            .iter()
            .map(|l| l.connection.name.as_str())
            .collect();
        if action != "catalog.import" {
            details = details.list("connections", &names);
        }
        changes.push(Change::new(
            Mutation::Many {
                steps,
                guard: false,
            },
            AuditEntry::new(action, format!("sku:{}", p.sku), details),
        ));
    }
    if changes.is_empty() {
        return Ok(report);
    }
    let waiting = crate::unmatched::unmatched_lines(store).await?;
    for l in waiting
        .iter()
        .filter(|l| skus.iter().any(|p| p.sku == l.sku))
    {
        report.matched_lines += 1;
        report.reserved_lines += usize::from(l.open);
    }
    store.commit(actor, changes).await?;
    Ok(report)
}

const SELECT_LISTINGS: &str =
    "SELECT c.name, l.sku, l.listing_id, l.buffer, l.max_displayed, l.target_qty, l.target_version,
            l.pushed_version, l.acked_qty, l.channel_qty, l.push_failures, l.push_failing_since_ms,
            l.push_last_error
     FROM listings l JOIN connections c ON c.id = l.connection_id
     WHERE c.status <> 'revoked' ORDER BY l.sku, c.name";
const SELECT_STOCK: &str =
    "SELECT sku, on_hand, reserved, low_stock_threshold FROM skus ORDER BY sku";

impl FromRow for StockRow {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        let (sku, on_hand, reserved, low_stock_threshold): (String, i64, i64, Option<i64>) =
            FromRow::from_row(c)?;
        Ok(StockRow {
            sku,
            on_hand,
            reserved,
            available: on_hand - reserved,
            low_stock_threshold,
        })
    }
}

impl FromRow for ListingRow {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(ListingRow {
            connection: c.get()?,
            sku: c.get()?,
            listing: c.get()?,
            buffer: c.get()?,
            max_displayed: c.get()?,
            target_qty: c.get()?,
            target_version: c.get()?,
            pushed_version: c.get()?,
            acked_qty: c.get()?,
            channel_qty: c.get()?,
            push: crate::PushHealth {
                failures: c.get()?,
                failing_since_ms: c.get()?,
                last_error: c.get()?,
                last_error_at_ms: None,
            },
        })
    }
}

/// Stock of every SKU.
pub async fn stock(store: &Store) -> Result<Vec<StockRow>> {
    Ok(store.query_as(SELECT_STOCK, vec![]).await?)
}

/// Every listing of a live (not revoked) connection.
pub async fn listings(store: &Store) -> Result<Vec<ListingRow>> {
    Ok(store.query_as(SELECT_LISTINGS, vec![]).await?)
}

/// The catalog as CSV, in the import format (plus read-only `reserved` and `available`).
pub async fn export_csv(store: &Store) -> Result<String> {
    let conns: Vec<Connection> = connections::list(store)
        .await?
        .into_iter()
        .filter(|c| c.status != ConnectionStatus::Revoked)
        .collect();
    let stock = stock(store).await?;
    let listings = listings(store).await?;
    let mut by_sku: HashMap<(&str, &str), &ListingRow> = HashMap::new();
    for l in &listings {
        by_sku.insert((l.sku.as_str(), l.connection.as_str()), l);
    }
    let mut out = String::from("sku,on_hand,reserved,available,low_stock_threshold");
    for c in &conns {
        out.push_str(&format!(",{0}:listing,{0}:buffer,{0}:max", c.name));
    }
    out.push('\n');
    for s in &stock {
        out.push_str(&format!(
            "{},{},{},{},{}",
            csv_field(&s.sku),
            s.on_hand,
            s.reserved,
            s.available,
            s.low_stock_threshold
                .map(|t| t.to_string())
                .unwrap_or_default()
        ));
        for c in &conns {
            match by_sku.get(&(s.sku.as_str(), c.name.as_str())) {
                Some(l) => out.push_str(&format!(
                    ",{},{},{}",
                    csv_field(&l.listing),
                    l.buffer,
                    l.max_displayed.map(|m| m.to_string()).unwrap_or_default()
                )),
                None => out.push_str(",,,"),
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// A SKU whose stored stock differs from the sum of its ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockMismatch {
    pub sku: String,
    pub stored: (i64, i64),
    pub ledger: (i64, i64),
}

const LEDGER_SUMS: &str = "SELECT s.sku, s.on_hand, s.reserved,
            CAST(COALESCE((SELECT SUM(l.on_hand_delta) FROM stock_ledger l WHERE l.sku = s.sku), 0) AS BIGINT),
            CAST(COALESCE((SELECT SUM(l.reserved_delta) FROM stock_ledger l WHERE l.sku = s.sku), 0) AS BIGINT)
     FROM skus s ORDER BY s.sku";

/// Recompute every SKU's stock from the ledger and list the ones that differ.
pub async fn verify_stock(store: &Store) -> Result<Vec<StockMismatch>> {
    let rows: Vec<(String, i64, i64, i64, i64)> = store.query_as(LEDGER_SUMS, vec![]).await?;
    Ok(rows
        .into_iter()
        .map(
            |(sku, on_hand, reserved, l_on_hand, l_reserved)| StockMismatch {
                sku,
                stored: (on_hand, reserved),
                ledger: (l_on_hand, l_reserved),
            },
        )
        .filter(|m| m.stored != m.ledger)
        .collect())
}

const REBUILD: &str = "UPDATE skus SET
       on_hand = COALESCE((SELECT SUM(l.on_hand_delta) FROM stock_ledger l WHERE l.sku = skus.sku), 0),
       reserved = COALESCE((SELECT SUM(l.reserved_delta) FROM stock_ledger l WHERE l.sku = skus.sku), 0),
       updated_at_ms = $1
     WHERE sku = $2";

/// Rebuild the stock of the SKUs that differ from their ledger (audited, one row each).
pub async fn rebuild_stock(store: &Store, actor: &Actor) -> Result<Vec<StockMismatch>> {
    let bad = verify_stock(store).await?;
    if bad.is_empty() {
        return Ok(bad);
    }
    let now = now_ms();
    let changes = bad
        .iter()
        .map(|m| {
            Change::new(
                Mutation::Many {
                    steps: vec![
                        Mutation::Sql {
                            statement: REBUILD,
                            params: sql_params![now, m.sku.as_str()],
                            expect: Expect::One("sku"),
                        },
                        Mutation::Sql {
                            statement: RETARGET,
                            params: sql_params![m.sku.as_str()],
                            expect: Expect::Any,
                        },
                    ],
                    guard: false,
                },
                AuditEntry::new(
                    "stock.rebuild",
                    format!("sku:{}", m.sku),
                    AuditDetails::new()
                        .int("on_hand_was", m.stored.0)
                        .int("reserved_was", m.stored.1)
                        .int("on_hand", m.ledger.0)
                        .int("reserved", m.ledger.1),
                ),
            )
        })
        .collect();
    store.commit(actor, changes).await?;
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target(10, 2, None), 8);
        assert_eq!(target(10, 2, Some(5)), 5);
        assert_eq!(target(1, 2, None), 0);
        assert_eq!(target(-3, 0, None), 0);
    }

    #[test]
    fn listing_ids_round_trip() {
        for (m, s) in [
            (Marketplace::TikTok, "1729:3301"),
            (Marketplace::TikTok, "1729:3301@W1|W2"),
            (Marketplace::Amazon, "B0ABCDEF12"),
            (Marketplace::Amazon, "B0ABCDEF12:SHOES"),
            (Marketplace::Ebay, "5551234"),
            (Marketplace::Ebay, "1|2"),
            (Marketplace::Ebay, "-"),
        ] {
            let ids = ListingIds::parse(m, s).unwrap();
            assert_eq!(ids.format(m), s);
        }
        assert!(ListingIds::parse(Marketplace::TikTok, "1729").is_err());
        assert!(ListingIds::parse(Marketplace::Amazon, "a b").is_err());
    }

    #[test]
    fn csv_reader() {
        let rows = parse_csv("sku,on_hand\r\n\"A,1\",3\n\"say \"\"hi\"\"\",4\n\n").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], vec!["A,1", "3"]);
        assert_eq!(rows[2], vec!["say \"hi\"", "4"]);
        assert!(parse_csv("a,\"b").is_err());
        assert_eq!(csv_field("A,1"), "\"A,1\"");
    }
}
