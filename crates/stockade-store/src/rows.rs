//! Multi-row statements: the same insert or update for many rows of a commit.
//!
//! A [`RowStatement`] is one statement in two forms: `one`, the per-row SQL both backends
//! accept (positional `$1…$N`, one value per column), and `many`, the PostgreSQL form
//! that takes one array per column (`$1::int8[]`, `$2::text[]`, …, in `columns` order)
//! and writes every row in one statement (`… FROM UNNEST(…)`). A step
//! [`crate::Mutation::Row`] is one row of such a statement.
//!
//! How each backend runs them:
//! - SQLite (one writer thread, prepared statements cached) runs `one` for each row in
//!   the order of the steps: exactly what [`crate::Mutation::Sql`] steps would do.
//! - PostgreSQL takes the consecutive changes of a commit that are made of row steps
//!   only (a "run") and runs each statement once for all their rows, statements in an
//!   order consistent with the order of first use in every change (among the others,
//!   by `rank`, then by first use in the run). With `guard`, the
//!   guard statements go first, in one statement whose `many` returns the 1-based
//!   position of each row that applied (its `WITH ORDINALITY` column); the other steps
//!   and the audit rows of the changes whose guard applied nothing are skipped, as on
//!   SQLite. Two changes whose guard rows share a key (`key_columns`) never meet in
//!   one statement (the second goes into the next statement of that kind, in order).
//!
//! So a caller may use row steps where running a change's steps grouped by statement
//! gives what running them one after the other gives, and where changes with different
//! keys do not read each other's rows (orders of one batch: different orders, different
//! ledger keys). Stock moved by several changes stays exact: the `many` forms keep the
//! order of rows for one SKU (`ORDER BY sku, n`).
//!
//! Lock order on PostgreSQL: a statement with `one: None` only takes row locks, in a
//! fixed order, before the writes that need them (SQLite's single writer serialises
//! transactions, so it has nothing to do there). Every writer of `listings` and `skus`
//! on the hot path locks in (sku, connection) order, so pushers and ingest never
//! deadlock and wait at most for one short transaction.

use crate::sql::SqlValue;
use crate::{Result, StoreError};

/// The type of one column of a [`RowStatement`] (the array type of its `many` form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Int,
    Text,
    Bytes,
}

/// One statement, per row and for many rows (see the module docs).
#[derive(Debug)]
pub struct RowStatement {
    /// A short name for error messages (`orders.upsert`).
    pub name: &'static str,
    /// The per-row SQL for both backends; `None`: a PostgreSQL row lock only.
    pub one: Option<&'static str>,
    /// The PostgreSQL form over arrays, one per column.
    pub many: &'static str,
    pub columns: &'static [Column],
    /// As a guard: the first `key_columns` columns identify the row it writes; rows with
    /// the same key go into separate statements, in order.
    pub key_columns: usize,
    /// Among statements that no change puts in an order, the lower rank runs first.
    pub rank: u8,
}

/// A statement is itself (they are `static` items).
impl PartialEq for RowStatement {
    fn eq(&self, other: &Self) -> bool {
        self.same(other)
    }
}

impl RowStatement {
    pub(crate) fn same(&self, other: &RowStatement) -> bool {
        std::ptr::eq(self, other)
    }

    /// Check a row's parameters against the columns (count and types; NULL fits any).
    pub(crate) fn check(&self, params: &[SqlValue]) -> Result<()> {
        if params.len() != self.columns.len() {
            return Err(StoreError::Database(format!(
                "{} takes {} values per row, not {}",
                self.name,
                self.columns.len(),
                params.len()
            )));
        }
        for (i, (p, c)) in params.iter().zip(self.columns).enumerate() {
            let fits = matches!(
                (p, c),
                (SqlValue::Int(_), Column::Int)
                    | (SqlValue::Text(_), Column::Text)
                    | (SqlValue::Bytes(_), Column::Bytes)
                    | (SqlValue::Int(None), _)
                    | (SqlValue::Text(None), _)
                    | (SqlValue::Bytes(None), _)
            );
            if !fits {
                return Err(StoreError::Database(format!(
                    "value {} of {} is not of its column's type",
                    i + 1,
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// The key of a guard row (see `key_columns`), as text.
    pub(crate) fn key(&self, params: &[SqlValue]) -> String {
        let mut k = String::new();
        for p in params.iter().take(self.key_columns) {
            match p {
                SqlValue::Int(Some(v)) => k.push_str(&format!("i{v};")),
                SqlValue::Text(Some(s)) => k.push_str(&format!("t{}:{s};", s.len())),
                SqlValue::Bytes(Some(b)) => k.push_str(&format!("b{b:?};")),
                _ => k.push_str("n;"),
            }
        }
        k
    }
}

/// The statements of a run in an order consistent with every change's order of first
/// use (`sequences`: each change's statements, first use only, in order). `None` when
/// two changes disagree (then the run goes change by change).
pub(crate) fn phase_order<'a>(
    sequences: &[Vec<&'a RowStatement>],
) -> Option<Vec<&'a RowStatement>> {
    // Nodes in order of first appearance over all changes (the tie-break).
    let mut nodes: Vec<&RowStatement> = Vec::new();
    for seq in sequences {
        for s in seq {
            if !nodes.iter().any(|n| n.same(s)) {
                nodes.push(s);
            }
        }
    }
    let idx = |s: &RowStatement| nodes.iter().position(|n| n.same(s)).unwrap_or(0);
    let n = nodes.len();
    let mut edges = vec![vec![false; n]; n];
    let mut indegree = vec![0usize; n];
    for seq in sequences {
        for w in seq.windows(2) {
            let (a, b) = (idx(w[0]), idx(w[1]));
            if a != b && !edges[a][b] {
                edges[a][b] = true;
                indegree[b] += 1;
            }
        }
    }
    let mut done = vec![false; n];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = (0..n)
            .filter(|&i| !done[i] && indegree[i] == 0)
            .min_by_key(|&i| (nodes[i].rank, i))?;
        done[next] = true;
        out.push(nodes[next]);
        for (j, e) in edges[next].iter().enumerate() {
            if *e {
                indegree[j] -= 1;
            }
        }
    }
    Some(out)
}

/// The distinct statements of `steps`, in order of first use.
pub(crate) fn first_uses<'a>(
    steps: impl Iterator<Item = &'a RowStatement>,
) -> Vec<&'a RowStatement> {
    let mut out: Vec<&RowStatement> = Vec::new();
    for s in steps {
        if !out.iter().any(|o| o.same(s)) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: RowStatement = RowStatement {
        name: "a",
        one: None,
        many: "a",
        columns: &[Column::Int],
        key_columns: 0,
        rank: 0,
    };
    static B: RowStatement = RowStatement {
        name: "b",
        one: None,
        many: "b",
        columns: &[Column::Text],
        key_columns: 0,
        rank: 1,
    };
    static C: RowStatement = RowStatement {
        name: "c",
        one: None,
        many: "c",
        columns: &[],
        key_columns: 0,
        rank: 0,
    };

    #[test]
    fn phases_follow_every_change() {
        let order = phase_order(&[vec![&A, &C], vec![&B, &C], vec![&A, &B]]).unwrap();
        let names: Vec<&str> = order.iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b", "c"]);
        // Unordered by the changes: by rank (C before B), whatever came first.
        let order = phase_order(&[vec![&B], vec![&C]]).unwrap();
        let names: Vec<&str> = order.iter().map(|s| s.name).collect();
        assert_eq!(names, ["c", "b"]);
        assert!(phase_order(&[vec![&A, &B], vec![&B, &A]]).is_none());
    }

    #[test]
    fn rows_are_checked_against_their_columns() {
        assert!(A.check(&[SqlValue::Int(Some(1))]).is_ok());
        assert!(A.check(&[SqlValue::Text(None)]).is_ok());
        assert!(A.check(&[SqlValue::Text(Some("x".into()))]).is_err());
        assert!(B.check(&[]).is_err());
    }
}
