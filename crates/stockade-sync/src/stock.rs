//! One SKU's stock for callers outside the catalog commands (the workflow steps
//! `stock.get` and `stock.adjust`): a typed read, and a ledger adjustment by a signed
//! delta built as a [`Change`] for the caller's own commit.
//!
//! # Invariants
//! - An adjustment is one `adjust` row in `stock_ledger` (the movement `sku import` writes
//!   when it sets on hand). The ledger's `stock_ledger_apply` trigger moves `skus.on_hand`
//!   and `skus_retarget` gives the SKU's listings their new targets (the stock formula of
//!   [`crate::catalog`]), so stock stays derivable from the ledger and pushes follow as
//!   for any other stock change (the pushers push listings whose `target_version` moved).
//! - The rule of today's manual path holds: on hand stays within 0 to 1,000,000,000
//!   (`sku import` refuses anything else). A refusal (an unknown SKU, a result below
//!   zero) is returned before anything is built; the statement re-checks both inside the
//!   commit, so a concurrent change cannot slip under it — then the commit fails whole.
//! - An adjustment may carry a unique key (`ukey`): the same key can never be ledgered
//!   twice (a workflow passes its step's idempotency key).
//! - The audit row (`stock.adjust`, subject `sku:SKU`) holds the delta, the new on hand
//!   and the caller's reason, and is committed with the ledger row.

use serde::Serialize;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, SqlValue, Store, sql_params,
};

use crate::catalog::target;
use crate::{Result, SyncError, now_ms};

/// The most on hand a SKU may have (the bound `sku import` enforces).
pub const MAX_ON_HAND: i64 = 1_000_000_000;
/// The longest reason kept in the audit row, in characters.
pub const REASON_MAX: usize = 200;

/// A SKU's stock and what each live channel is to show for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkuStock {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    /// The low-stock threshold that applies to this SKU (its own, else the global one).
    pub low_stock_threshold: i64,
    /// Whether the SKU has a threshold of its own (else the global one applies).
    pub low_stock_threshold_own: bool,
    /// One per listing on a connection that is not revoked, by connection name.
    pub channels: Vec<ChannelTarget>,
}

/// What one channel is to show for a SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelTarget {
    pub connection: String,
    pub buffer: i64,
    pub max_displayed: Option<i64>,
    /// The quantity the channel is to show (the stock formula).
    pub target: i64,
    /// The quantity the channel last confirmed, if any.
    pub acked: Option<i64>,
}

/// The SKU and its live channels in one read (a SKU without listings is one row whose
/// channel columns are NULL).
const SELECT_STOCK: &str = "SELECT s.on_hand, s.reserved, c.name, l.buffer, l.max_displayed, l.acked_qty
     FROM skus s
     LEFT JOIN listings l ON l.sku = s.sku
      AND EXISTS (SELECT 1 FROM connections x WHERE x.id = l.connection_id AND x.status <> 'revoked')
     LEFT JOIN connections c ON c.id = l.connection_id
     WHERE s.sku = $1 ORDER BY c.name";
/// A SKU's own low-stock threshold and the one that applies (as the `stock low` trigger
/// of migration 0014 reads it).
const THRESHOLD: &str = "SELECT s.low_stock_threshold, COALESCE(s.low_stock_threshold,
        (SELECT CAST(value AS BIGINT) FROM stockade_meta WHERE key = 'sync.low_stock_threshold'), 5)
     FROM skus s WHERE s.sku = $1";
const SET_THRESHOLD: &str = "UPDATE skus SET low_stock_threshold = $1 WHERE sku = $2";

/// The most a low-stock threshold may be (the on-hand bound).
pub const MAX_THRESHOLD: i64 = MAX_ON_HAND;

/// The change that sets `sku`'s own low-stock threshold (`None`: back to the global one),
/// audited `sku.threshold`. Refuses a threshold outside 0 to [`MAX_THRESHOLD`]; the
/// statement must find the SKU, else the commit fails whole.
pub fn threshold_change(sku: &str, threshold: Option<i64>) -> Result<Change> {
    if threshold.is_some_and(|t| !(0..=MAX_THRESHOLD).contains(&t)) {
        return Err(SyncError::Invalid(format!(
            "a low-stock threshold is a whole number from 0 to {MAX_THRESHOLD}"
        )));
    }
    let mut details = AuditDetails::new();
    details = match threshold {
        Some(t) => details.int("threshold", t),
        None => details.str("threshold", "global"),
    };
    Ok(Change::new(
        Mutation::Sql {
            statement: SET_THRESHOLD,
            params: sql_params![threshold, sku],
            expect: Expect::One("SKU in the catalog"),
        },
        AuditEntry::new("sku.threshold", format!("sku:{sku}"), details),
    ))
}

/// Set the low-stock thresholds of SKUs (`None`: the global one) in one audited commit;
/// an unknown SKU refuses all of them.
pub async fn set_thresholds(
    store: &Store,
    thresholds: &[(String, Option<i64>)],
    actor: &stockade_core::Actor,
) -> Result<()> {
    let mut changes = Vec::with_capacity(thresholds.len());
    for (sku, t) in thresholds {
        if store
            .count(
                "SELECT COUNT(*) FROM skus WHERE sku = $1",
                sql_params![sku.as_str()],
            )
            .await?
            == 0
        {
            return Err(SyncError::Invalid(format!(
                "no SKU {sku:?} in the catalog; nothing was changed"
            )));
        }
        changes.push(threshold_change(sku, *t)?);
    }
    if !changes.is_empty() {
        store.commit(actor, changes).await?;
    }
    Ok(())
}

/// One `adjust` ledger row, only while the SKU exists and the result stays in bounds.
const ADJUST_BY: &str =
    "INSERT INTO stock_ledger (sku, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT sku, 'adjust', $1, 0, $2, $3 FROM skus
      WHERE sku = $4 AND on_hand + $1 >= 0 AND on_hand + $1 <= $5";

/// The stock of `sku`, or `None` when the catalog has no such SKU.
pub async fn sku_stock(store: &Store, sku: &str) -> Result<Option<SkuStock>> {
    type Row = (
        i64,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = store
        .query_by_key_as(SELECT_STOCK, sql_params![sku])
        .await?;
    let Some(&(on_hand, reserved, ..)) = rows.first() else {
        return Ok(None);
    };
    let available = on_hand - reserved;
    let (own, effective): (Option<i64>, i64) = store
        .query_one_as(THRESHOLD, sql_params![sku])
        .await?
        .unwrap_or((None, crate::LOW_STOCK_THRESHOLD));
    let channels = rows
        .into_iter()
        .filter_map(|(_, _, connection, buffer, max_displayed, acked)| {
            let (connection, buffer) = (connection?, buffer?);
            Some(ChannelTarget {
                connection,
                buffer,
                max_displayed,
                target: target(available, buffer, max_displayed),
                acked,
            })
        })
        .collect();
    Ok(Some(SkuStock {
        sku: sku.to_owned(),
        on_hand,
        reserved,
        available,
        low_stock_threshold: effective,
        low_stock_threshold_own: own.is_some(),
        channels,
    }))
}

/// An adjustment of one SKU's on hand.
#[derive(Debug, Clone)]
pub struct Adjustment<'a> {
    pub sku: &'a str,
    /// Units to add (negative: remove). Zero writes only the audit row.
    pub delta: i64,
    /// Why, for the audit row (cut at [`REASON_MAX`] characters).
    pub reason: &'a str,
    /// A key that makes the ledger row unique (a workflow step's idempotency key).
    pub ukey: Option<&'a str>,
}

/// Build the change that adjusts `a.sku` by `a.delta`, for the caller's commit, and the
/// stock it leaves (as of this read; concurrent orders may move `reserved`). Refuses an
/// unknown SKU, an empty reason and a result outside 0 to [`MAX_ON_HAND`]; a refusal
/// builds nothing.
pub async fn adjust_change(store: &Store, a: &Adjustment<'_>) -> Result<(Change, SkuStock)> {
    let reason: String = a.reason.trim().chars().take(REASON_MAX).collect();
    if reason.is_empty() {
        return Err(SyncError::Invalid(
            "a stock adjustment needs a reason".into(),
        ));
    }
    let Some(mut stock) = sku_stock(store, a.sku).await? else {
        return Err(SyncError::Invalid(format!(
            "no SKU {:?} in the catalog; nothing was adjusted",
            a.sku
        )));
    };
    let on_hand = stock.on_hand.checked_add(a.delta).unwrap_or(i64::MIN);
    if on_hand < 0 {
        return Err(SyncError::Invalid(format!(
            "adjusting SKU {:?} by {} would leave {} on hand, below zero (on hand is {}); nothing was adjusted",
            a.sku, a.delta, on_hand, stock.on_hand
        )));
    }
    if on_hand > MAX_ON_HAND {
        return Err(SyncError::Invalid(format!(
            "adjusting SKU {:?} by {} would leave more than {MAX_ON_HAND} on hand; nothing was adjusted",
            a.sku, a.delta
        )));
    }
    let mut steps = Vec::with_capacity(1);
    if a.delta != 0 {
        let ukey = SqlValue::Text(a.ukey.map(str::to_owned));
        steps.push(Mutation::Sql {
            statement: ADJUST_BY,
            params: vec![
                SqlValue::from(a.delta),
                SqlValue::from(now_ms()),
                ukey,
                SqlValue::from(a.sku),
                SqlValue::from(MAX_ON_HAND),
            ],
            expect: Expect::One("SKU with stock for the adjustment"),
        });
    }
    let details = AuditDetails::new()
        .int("delta", a.delta)
        .int("on_hand_was", stock.on_hand)
        .int("on_hand", on_hand)
        .str("reason", &reason);
    let change = Change::new(
        Mutation::Many {
            steps,
            guard: false,
        },
        AuditEntry::new("stock.adjust", format!("sku:{}", a.sku), details),
    );
    stock.on_hand = on_hand;
    stock.available = on_hand - stock.reserved;
    for c in &mut stock.channels {
        c.target = target(stock.available, c.buffer, c.max_displayed);
    }
    Ok((change, stock))
}
