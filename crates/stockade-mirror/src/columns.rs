//! The NocoDB table's columns: one per audit field, how a row becomes a record, and how a
//! record read back is compared with the chain.
//!
//! Invariants: `seq` and `ts_ms` are `Number` (exact integers); `prev_hash` and `hash` are
//! lower-case hex; `details` is the canonical JSON exactly as hashed; `ts` is a readable
//! `DateTime` derived from `ts_ms` (to the second; compared through `ts_ms`).

use serde_json::{Map, Value, json};
use stockade_store::AuditRow;

/// (title, NocoDB `uidt`), in table order.
pub const COLUMNS: [(&str, &str); 10] = [
    ("seq", "Number"),
    ("ts_ms", "Number"),
    ("ts", "DateTime"),
    ("env", "SingleLineText"),
    ("actor", "SingleLineText"),
    ("action", "SingleLineText"),
    ("resource", "SingleLineText"),
    ("details", "LongText"),
    ("prev_hash", "SingleLineText"),
    ("hash", "SingleLineText"),
];

/// The columns `verify` compares (all but the derived `ts`).
pub const COMPARED: [&str; 9] = [
    "seq",
    "ts_ms",
    "env",
    "actor",
    "action",
    "resource",
    "details",
    "prev_hash",
    "hash",
];

/// `fields=` for reading records back.
pub fn fields() -> String {
    COMPARED.join(",")
}

/// `YYYY-MM-DD HH:MM:SS+00:00`, the form NocoDB stores and returns.
pub fn nocodb_time(ts_ms: i64) -> String {
    let text = stockade_core::time::format_rfc3339_ms(ts_ms);
    format!("{}+00:00", text.get(..19).unwrap_or("").replace('T', " "))
}

/// The record NocoDB receives for `row`.
pub fn record(row: &AuditRow) -> Value {
    json!({
        "seq": row.seq,
        "ts_ms": row.ts_ms,
        "ts": nocodb_time(row.ts_ms),
        "env": row.env,
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "details": row.details,
        "prev_hash": hex::encode(&row.prev_hash),
        "hash": hex::encode(&row.hash),
    })
}

/// One audit row as a JSON-lines object: every audit field, plus `ts` (RFC 3339).
pub fn json_line(row: &AuditRow) -> String {
    let v = json!({
        "seq": row.seq,
        "ts_ms": row.ts_ms,
        "ts": stockade_core::time::format_rfc3339_ms(row.ts_ms),
        "env": row.env,
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "details": row.details,
        "prev_hash": hex::encode(&row.prev_hash),
        "hash": hex::encode(&row.hash),
    });
    v.to_string()
}

/// A number cell as an integer (NocoDB may answer `5` or `"5"`).
pub fn int_cell(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The first compared column whose cell in `got` differs from `row`, if any.
pub fn first_difference(row: &AuditRow, got: &Map<String, Value>) -> Option<&'static str> {
    let want = record(row);
    for col in COMPARED {
        let same = match col {
            "seq" | "ts_ms" => int_cell(got.get(col)) == int_cell(want.get(col)),
            _ => {
                let text = |v: Option<&Value>| match v {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                text(got.get(col)) == text(want.get(col))
            }
        };
        if !same {
            return Some(col);
        }
    }
    None
}

/// What is wrong with an existing table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnProblem {
    Missing {
        title: &'static str,
        uidt: &'static str,
    },
    WrongType {
        title: &'static str,
        want: &'static str,
        has: String,
    },
}

impl std::fmt::Display for ColumnProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnProblem::Missing { title, uidt } => {
                write!(f, "column {title} ({uidt}) is missing")
            }
            ColumnProblem::WrongType { title, want, has } => {
                write!(f, "column {title} is {has}, not {want}")
            }
        }
    }
}

/// Compare a table's (title, uidt) columns with [`COLUMNS`]. Extra columns are fine.
pub fn check(have: &[(String, String)]) -> Vec<ColumnProblem> {
    let mut out = Vec::new();
    for (title, uidt) in COLUMNS {
        match have.iter().find(|(t, _)| t == title) {
            None => out.push(ColumnProblem::Missing { title, uidt }),
            Some((_, has)) if has != uidt => out.push(ColumnProblem::WrongType {
                title,
                want: uidt,
                has: has.chars().take(40).collect(),
            }),
            Some(_) => {}
        }
    }
    out
}

/// The columns of a table to create.
pub fn create_body(title: &str) -> Value {
    let columns: Vec<Value> = COLUMNS
        .iter()
        .map(|(t, u)| json!({ "column_name": t, "title": t, "uidt": u }))
        .collect();
    json!({ "table_name": title, "title": title, "columns": columns })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            seq: 7,
            ts_ms: 1_795_334_462_345,
            env: "dev".into(),
            actor: "system:cli".into(),
            action: "meta.set".into(),
            resource: String::new(),
            details: "{\"a\":1}".into(),
            prev_hash: vec![1; 32],
            hash: vec![2; 32],
        }
    }

    #[test]
    fn records_round_trip_and_differences_are_named() {
        let r = row();
        let rec = record(&r);
        assert_eq!(rec["ts"], json!("2026-11-22 08:01:02+00:00"));
        let mut got = rec.as_object().unwrap().clone();
        got.insert("resource".into(), Value::Null);
        got.insert("seq".into(), json!("7"));
        assert_eq!(first_difference(&r, &got), None);
        got.insert("details".into(), json!("{\"a\":2}"));
        assert_eq!(first_difference(&r, &got), Some("details"));
    }

    #[test]
    fn column_check_names_missing_and_mistyped() {
        let have = vec![
            ("seq".to_owned(), "Number".to_owned()),
            ("hash".to_owned(), "LongText".to_owned()),
        ];
        let p = check(&have);
        assert!(p.contains(&ColumnProblem::Missing {
            title: "ts_ms",
            uidt: "Number"
        }));
        assert!(
            p.iter()
                .any(|x| x.to_string() == "column hash is LongText, not SingleLineText")
        );
        assert_eq!(p.len(), 9);
    }
}
