//! Orders before the catalog, and the check that every open order line is reserved once.
//!
//! A marketplace sells what it lists, whether or not the SKU is in Stockade's catalog
//! yet. Such a line is stored like any other, marked unmatched (`unmatched_since_ms`,
//! set by the ingest statement) and raised as an `unmatched_sku` event by a trigger
//! (migration 0006). Importing the SKU ([`crate::catalog::import_csv`]) runs
//! `match_steps` in the same transaction: each unmatched line of a still-open order
//! (pending, placed, partially shipped) gets its one `reserve` ledger entry — with the
//! same unique key the ingest would have used, so it can never be reserved twice — and
//! the mark is cleared. Lines of orders that shipped or were cancelled before the SKU
//! was imported are not reserved: the imported on-hand count already reflects them.
//!
//! [`verify_lines`] recomputes, for every open order line, its reservations from the
//! ledger: exactly one `reserve` and a reserved total equal to its quantity.

use serde::Serialize;
use stockade_core::order::OrderStatus;
use stockade_store::{Columns, Expect, FromRow, Mutation, Store, sql_params};

use crate::Result;
use crate::ingest::rank;

/// The highest status rank of an open order (one whose lines hold a reservation).
fn open_rank() -> i64 {
    rank(OrderStatus::PartiallyShipped)
}

// $1 sku, $2 time, $3 highest open rank. The ukey is the ingest's: "<conn>/<order>/<line>/reserve".
const RESERVE_UNMATCHED: &str = "INSERT INTO stock_ledger (sku, connection_id, external_id, line_id, movement, on_hand_delta, reserved_delta, at_ms, ukey)
     SELECT l.sku, l.connection_id, l.external_id, l.line_id, 'reserve', 0, l.quantity, $2,
            CAST(l.connection_id AS TEXT) || '/' || l.external_id || '/' || l.line_id || '/reserve'
       FROM order_lines l
       JOIN orders o ON o.connection_id = l.connection_id AND o.external_id = l.external_id
       JOIN connections c ON c.id = l.connection_id
      WHERE l.sku = $1 AND l.unmatched_since_ms IS NOT NULL AND o.status_rank <= $3
        AND c.status <> 'revoked' AND EXISTS (SELECT 1 FROM skus s WHERE s.sku = $1)
     ON CONFLICT (ukey) DO NOTHING";
const CLEAR_UNMATCHED: &str = "UPDATE order_lines SET unmatched_since_ms = NULL
     WHERE sku = $1 AND unmatched_since_ms IS NOT NULL AND EXISTS (SELECT 1 FROM skus s WHERE s.sku = $1)";

/// The statements that match a SKU's waiting lines once it is in the catalog (run after
/// its on-hand quantity is set, in the import's transaction).
pub(crate) fn match_steps(sku: &str, now: i64) -> Vec<Mutation> {
    vec![
        Mutation::Sql {
            statement: RESERVE_UNMATCHED,
            params: sql_params![sku, now, open_rank()],
            expect: Expect::Any,
        },
        Mutation::Sql {
            statement: CLEAR_UNMATCHED,
            params: sql_params![sku],
            expect: Expect::Any,
        },
    ]
}

/// An order line whose SKU is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmatchedLine {
    pub connection: String,
    pub order: String,
    pub line: String,
    pub sku: String,
    pub quantity: i64,
    pub since_ms: i64,
    /// The order is still open: importing the SKU reserves this line.
    pub open: bool,
}

const SELECT_UNMATCHED: &str = "SELECT c.name, l.external_id, l.line_id, l.sku, l.quantity,
            COALESCE(l.unmatched_since_ms, 0), o.status_rank
       FROM order_lines l
       JOIN orders o ON o.connection_id = l.connection_id AND o.external_id = l.external_id
       JOIN connections c ON c.id = l.connection_id
      WHERE c.status <> 'revoked'
        AND (l.unmatched_since_ms IS NOT NULL OR NOT EXISTS (SELECT 1 FROM skus s WHERE s.sku = l.sku))
      ORDER BY l.sku, c.name, l.external_id, l.line_id";

impl FromRow for UnmatchedLine {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(UnmatchedLine {
            connection: c.get()?,
            order: c.get()?,
            line: c.get()?,
            sku: c.get()?,
            quantity: c.get()?,
            since_ms: c.get()?,
            open: c.get::<i64>()? <= open_rank(),
        })
    }
}

/// Every unmatched order line of a live connection.
pub async fn unmatched_lines(store: &Store) -> Result<Vec<UnmatchedLine>> {
    Ok(store.query_as(SELECT_UNMATCHED, vec![]).await?)
}

/// Unmatched lines per SKU, for `sku list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmatchedSku {
    pub sku: String,
    pub lines: usize,
    pub open_units: i64,
    pub connections: Vec<String>,
}

/// Group unmatched lines by SKU (input in SKU order, as [`unmatched_lines`] gives it).
pub fn by_sku(lines: &[UnmatchedLine]) -> Vec<UnmatchedSku> {
    let mut out: Vec<UnmatchedSku> = Vec::new();
    for l in lines {
        if out.last().is_none_or(|u| u.sku != l.sku) {
            out.push(UnmatchedSku {
                sku: l.sku.clone(),
                lines: 0,
                open_units: 0,
                connections: Vec::new(),
            });
        }
        if let Some(u) = out.last_mut() {
            u.lines += 1;
            if l.open {
                u.open_units += l.quantity;
            }
            if !u.connections.contains(&l.connection) {
                u.connections.push(l.connection.clone());
            }
        }
    }
    out
}

/// An open order line whose reservations in the ledger are not exactly one of its
/// quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineProblem {
    pub connection: String,
    pub order: String,
    pub line: String,
    pub sku: String,
    pub quantity: i64,
    /// Net units reserved for it by the ledger.
    pub reserved: i64,
    /// `reserve` entries for it in the ledger.
    pub reservations: i64,
}

const OPEN_LINE_RESERVATIONS: &str = "SELECT c.name, l.external_id, l.line_id, l.sku, l.quantity,
            CAST(COALESCE(g.reserved, 0) AS BIGINT), CAST(COALESCE(g.reservations, 0) AS BIGINT)
       FROM order_lines l
       JOIN orders o ON o.connection_id = l.connection_id AND o.external_id = l.external_id
       JOIN connections c ON c.id = l.connection_id
       LEFT JOIN (SELECT connection_id, external_id, line_id, SUM(reserved_delta) AS reserved,
                         SUM(CASE WHEN movement = 'reserve' THEN 1 ELSE 0 END) AS reservations
                    FROM stock_ledger WHERE external_id IS NOT NULL
                   GROUP BY connection_id, external_id, line_id) g
         ON g.connection_id = l.connection_id AND g.external_id = l.external_id AND g.line_id = l.line_id
      WHERE c.status <> 'revoked' AND o.status_rank <= $1 AND l.unmatched_since_ms IS NULL
        AND EXISTS (SELECT 1 FROM skus s WHERE s.sku = l.sku)
      ORDER BY c.name, l.external_id, l.line_id";

impl FromRow for LineProblem {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(LineProblem {
            connection: c.get()?,
            order: c.get()?,
            line: c.get()?,
            sku: c.get()?,
            quantity: c.get()?,
            reserved: c.get()?,
            reservations: c.get()?,
        })
    }
}

/// Every open order line (of a SKU in the catalog) not reserved exactly once.
pub async fn verify_lines(store: &Store) -> Result<Vec<LineProblem>> {
    let lines: Vec<LineProblem> = store
        .query_as(OPEN_LINE_RESERVATIONS, sql_params![open_rank()])
        .await?;
    Ok(lines
        .into_iter()
        .filter(|l| l.reserved != l.quantity || l.reservations != 1)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, conn: &str, q: i64, open: bool) -> UnmatchedLine {
        UnmatchedLine {
            connection: conn.into(),
            order: "o".into(),
            line: "l".into(),
            sku: sku.into(),
            quantity: q,
            since_ms: 1,
            open,
        }
    }

    #[test]
    fn grouped_by_sku_counting_open_units() {
        let g = by_sku(&[
            line("A", "tiktok", 2, true),
            line("A", "ebay", 1, false),
            line("A", "tiktok", 3, true),
            line("B", "ebay", 1, true),
        ]);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].lines, g[0].open_units), (3, 5));
        assert_eq!(g[0].connections, ["tiktok", "ebay"]);
        assert_eq!((g[1].sku.as_str(), g[1].open_units), ("B", 1));
    }
}
