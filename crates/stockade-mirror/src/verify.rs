//! `stockade audit mirror verify`: page through NocoDB's rows by `seq` (at most 1000 per
//! request) and compare each with the chain, naming the FIRST difference: a missing
//! `seq`, a duplicate, a row the chain does not have, or a cell that differs (with its
//! column).
//!
//! Invariants: read-only on both sides; rows the mirror has not copied yet (after
//! NocoDB's highest `seq`) are lag, not a difference; rows appended to the chain while
//! verify runs are read as they come.

use std::collections::VecDeque;

use serde_json::{Map, Value};
use stockade_store::{AuditRow, Store};

use crate::MirrorError;
use crate::columns::{first_difference, int_cell};
use crate::noco::{Noco, PAGE_MAX};

/// The first way NocoDB's rows differ from the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The chain's row `seq` is not in NocoDB (later rows are).
    Missing { seq: i64 },
    /// NocoDB holds row `seq` more than once.
    Duplicate { seq: i64 },
    /// NocoDB holds a row `seq` the chain does not have.
    Extra { seq: i64 },
    /// Row `seq`'s `column` differs from the chain.
    Cell { seq: i64, column: &'static str },
    /// A record after row `after` has no numeric `seq`.
    BadSeq { after: i64 },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing { seq } => write!(
                f,
                "row seq {seq} is missing from NocoDB (it was deleted there, or never copied)"
            ),
            Difference::Duplicate { seq } => write!(f, "row seq {seq} is in NocoDB more than once"),
            Difference::Extra { seq } => write!(
                f,
                "NocoDB holds a row seq {seq} that the audit chain does not have"
            ),
            Difference::Cell { seq, column } => write!(
                f,
                "row seq {seq} differs in column {column} (edited in NocoDB)"
            ),
            Difference::BadSeq { after } => {
                write!(f, "a NocoDB row after seq {after} has no numeric seq")
            }
        }
    }
}

/// What verify found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOutcome {
    pub rows_compared: u64,
    /// NocoDB's highest `seq` seen (0: empty).
    pub nocodb_max: i64,
    /// The chain's last row when verify ended.
    pub chain_head: i64,
    pub difference: Option<Difference>,
}

/// The chain, read forward in chunks.
struct Chain<'s> {
    store: &'s Store,
    buf: VecDeque<AuditRow>,
    after: i64,
}

impl Chain<'_> {
    /// Row `seq` (rows are asked for in increasing order), if the chain has it.
    async fn row(&mut self, seq: i64) -> Result<Option<AuditRow>, MirrorError> {
        while self.buf.front().is_some_and(|r| r.seq < seq) {
            self.buf.pop_front();
        }
        if self.buf.is_empty() && self.after < seq {
            let from = self.after.max(seq - 1);
            let rows = self.store.audit_rows(from, PAGE_MAX as u32).await?;
            if let Some(last) = rows.last() {
                self.after = last.seq;
            }
            self.buf.extend(rows);
        }
        Ok(self.buf.front().filter(|r| r.seq == seq).cloned())
    }
}

/// Compare the table `table` with the chain.
pub async fn verify(store: &Store, noco: &Noco, table: &str) -> Result<VerifyOutcome, MirrorError> {
    let mut chain = Chain {
        store,
        buf: VecDeque::new(),
        after: 0,
    };
    let mut out = VerifyOutcome {
        rows_compared: 0,
        nocodb_max: 0,
        chain_head: 0,
        difference: None,
    };
    let mut prev = 0i64;
    let mut offset = 0usize;
    loop {
        let page = noco.page(table, offset, PAGE_MAX).await?;
        offset += page.len();
        for rec in &page {
            if let Some(d) = compare(&mut chain, rec, prev).await? {
                out.difference = Some(d);
                out.nocodb_max = prev;
                out.chain_head = store.audit_head().await?.map_or(0, |h| h.0);
                return Ok(out);
            }
            prev = int_cell(rec.get("seq")).unwrap_or(prev);
            out.rows_compared += 1;
        }
        if page.len() < PAGE_MAX {
            break;
        }
    }
    out.nocodb_max = prev;
    out.chain_head = store.audit_head().await?.map_or(0, |h| h.0);
    Ok(out)
}

async fn compare(
    chain: &mut Chain<'_>,
    rec: &Map<String, Value>,
    prev: i64,
) -> Result<Option<Difference>, MirrorError> {
    let Some(seq) = int_cell(rec.get("seq")) else {
        return Ok(Some(Difference::BadSeq { after: prev }));
    };
    if seq <= prev {
        return Ok(Some(Difference::Duplicate { seq }));
    }
    if seq > prev + 1 && chain.row(prev + 1).await?.is_some() {
        return Ok(Some(Difference::Missing { seq: prev + 1 }));
    }
    let Some(row) = chain.row(seq).await? else {
        return Ok(Some(Difference::Extra { seq }));
    };
    Ok(first_difference(&row, rec).map(|column| Difference::Cell { seq, column }))
}
