//! Reading a catalog CSV into [`CatalogEntry`]s (then merged by [`crate::catalog::merge`]):
//! a UTF-8 byte-order mark is skipped, a header separated by `;` (a spreadsheet's export
//! in many locales) is detected, and SKUs that differ only in case are reported.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{CatalogEntry, CatalogListing, ListingIds, valid_sku};
use crate::connections::{Connection, ConnectionStatus};
use crate::{Result, SyncError};

/// A minimal RFC 4180 reader: quoted fields, doubled quotes, CRLF or LF.
pub fn parse_csv(text: &str) -> std::result::Result<Vec<Vec<String>>, String> {
    parse_csv_with(text, ',')
}

/// [`parse_csv`] with another field delimiter.
pub fn parse_csv_with(
    text: &str,
    delimiter: char,
) -> std::result::Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            c if c == delimiter => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                line += 1;
                row.push(std::mem::take(&mut field));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push(std::mem::take(&mut row));
                } else {
                    row.clear();
                }
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("an unterminated quoted field before line {line}"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

/// The field delimiter of a CSV, from its header line: `;` when the header has
/// semicolons and no commas (outside quotes), else `,`.
fn detect_delimiter(text: &str) -> char {
    let header = text.lines().next().unwrap_or("");
    let (mut commas, mut semicolons, mut quoted) = (0, 0, false);
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => commas += 1,
            ';' if !quoted => semicolons += 1,
            _ => {}
        }
    }
    if semicolons > 0 && commas == 0 {
        ';'
    } else {
        ','
    }
}

/// A parsed catalog file.
#[derive(Debug)]
pub struct Parsed {
    pub entries: Vec<CatalogEntry>,
    /// The file was read as semicolon-separated.
    pub semicolons: bool,
    /// SKUs of the file that differ only in case.
    pub warnings: Vec<String>,
}

/// Warnings for entries whose SKU differs only in case from an existing SKU.
pub fn case_clashes_with(entries: &[CatalogEntry], existing: &[String]) -> Vec<String> {
    let mut by_lower: HashMap<String, &str> = HashMap::new();
    for s in existing {
        by_lower.insert(s.to_lowercase(), s);
    }
    let mut out = Vec::new();
    for e in entries {
        if let Some(other) = by_lower.get(&e.sku.to_lowercase())
            && *other != e.sku
        {
            out.push(case_warning(
                &e.sku,
                &format!("{other:?} already in the catalog"),
            ));
        }
    }
    out
}

fn case_warning(sku: &str, other: &str) -> String {
    format!(
        "SKU {sku:?} differs only in case from {other}; Stockade keeps them as two SKUs with separate stock, but a marketplace or spreadsheet may treat them as one: rename one if they are the same product"
    )
}

/// Check every row of a catalog CSV against the connections, without writing anything.
pub fn plan(text: &str, conns: &[Connection]) -> Result<Parsed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let delimiter = detect_delimiter(text);
    let bad = |line: usize, msg: String| SyncError::Invalid(format!("line {line}: {msg}"));
    let rows = parse_csv_with(text, delimiter).map_err(SyncError::Invalid)?;
    let mut rows = rows.into_iter();
    let header = rows.next().ok_or_else(|| {
        SyncError::Invalid(
            "the file is empty; the first line names the columns (sku,on_hand,…)".into(),
        )
    })?;
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let other_separator = || {
        let first = header.first().map(String::as_str).unwrap_or("");
        ['\t', '|']
            .into_iter()
            .chain((delimiter == ',').then_some(';'))
            .find(|c| first.contains(*c))
            .map(|c| {
                format!(
                    " (the header looks separated by {:?}: columns must be separated by commas, or by semicolons only)",
                    c
                )
            })
            .unwrap_or_default()
    };
    let sku_col =
        col("sku").ok_or_else(|| bad(1, format!("no `sku` column{}", other_separator())))?;
    let on_hand_col = col("on_hand")
        .ok_or_else(|| bad(1, format!("no `on_hand` column{}", other_separator())))?;
    let threshold_col = col("low_stock_threshold");
    let chans = channel_columns(&header, conns)?;
    let mut seen = HashMap::new();
    let mut lower: HashMap<String, (usize, String)> = HashMap::new();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        let line = n + 2;
        let get = |i: usize| row.get(i).map(|s| s.trim()).unwrap_or("");
        let sku = get(sku_col).to_owned();
        if !valid_sku(&sku) {
            return Err(bad(
                line,
                "the SKU is empty, longer than 100 characters or has control characters".into(),
            ));
        }
        if let Some((first, other)) = lower.get(&sku.to_lowercase())
            && *other != sku
        {
            warnings.push(case_warning(&sku, &format!("{other:?} on line {first}")));
        }
        lower
            .entry(sku.to_lowercase())
            .or_insert((line, sku.clone()));
        if let Some(first) = seen.insert(sku.clone(), line) {
            return Err(bad(
                line,
                format!("SKU {sku:?} also appears on line {first}"),
            ));
        }
        let on_hand: i64 = get(on_hand_col)
            .parse()
            .ok()
            .filter(|v| (0..=1_000_000_000).contains(v))
            .ok_or_else(|| {
                bad(
                    line,
                    "on_hand must be a whole number from 0 to 1000000000".into(),
                )
            })?;
        let mut listings = Vec::new();
        for (conn, lc, bc, mc) in &chans {
            let text = get(*lc);
            if text.is_empty() {
                continue;
            }
            let ids = ListingIds::parse(conn.marketplace, text)
                .map_err(|e| bad(line, format!("{}:listing: {e}", conn.name)))?;
            let num = |c: &Option<usize>, what: &str| -> Result<Option<i64>> {
                match c.map(&get).filter(|s| !s.is_empty()) {
                    None => Ok(None),
                    Some(s) => s
                        .parse::<i64>()
                        .ok()
                        .filter(|v| (0..=1_000_000_000).contains(v))
                        .map(Some)
                        .ok_or_else(|| {
                            bad(
                                line,
                                format!("{}:{what} must be a whole number ≥ 0", conn.name),
                            )
                        }),
                }
            };
            listings.push(CatalogListing {
                connection: conn.clone(),
                ids,
                buffer: num(bc, "buffer")?.unwrap_or(0),
                max: num(mc, "max")?,
            });
        }
        let low_stock_threshold = match threshold_col.map(&get).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.parse::<i64>()
                    .ok()
                    .filter(|v| (0..=1_000_000_000).contains(v))
                    .ok_or_else(|| {
                        bad(
                            line,
                            "low_stock_threshold must be a whole number from 0 to 1000000000"
                                .into(),
                        )
                    })?,
            ),
        };
        out.push(CatalogEntry {
            sku,
            on_hand: Some(on_hand),
            low_stock_threshold,
            listings,
        });
    }
    Ok(Parsed {
        entries: out,
        semicolons: delimiter == ';',
        warnings,
    })
}

/// A connection's columns: (connection, listing column, buffer column, max column).
type ChannelColumns = (Connection, usize, Option<usize>, Option<usize>);

/// The per-connection columns of the header (`CONNECTION:listing`, `:buffer`, `:max`),
/// each connection checked against `conns`.
fn channel_columns(header: &[String], conns: &[Connection]) -> Result<Vec<ChannelColumns>> {
    let bad = |line: usize, msg: String| SyncError::Invalid(format!("line {line}: {msg}"));
    // (connection, listing col, buffer col, max col)
    let mut channels: BTreeMap<String, [Option<usize>; 3]> = BTreeMap::new();
    for (i, h) in header.iter().enumerate() {
        let h = h.trim();
        if matches!(
            h,
            "sku" | "on_hand" | "reserved" | "available" | "low_stock_threshold"
        ) {
            continue;
        }
        let Some((name, what)) = h.rsplit_once(':') else {
            return Err(bad(
                1,
                format!(
                    "unknown column {h:?} (expected CONNECTION:listing, CONNECTION:buffer or CONNECTION:max)"
                ),
            ));
        };
        let slot = match what {
            "listing" => 0,
            "buffer" => 1,
            "max" => 2,
            _ => return Err(bad(1, format!("unknown column {h:?}"))),
        };
        let entry = channels.entry(name.to_owned()).or_default();
        if entry[slot].is_some() {
            return Err(bad(1, format!("column {h:?} appears twice")));
        }
        entry[slot] = Some(i);
    }
    let mut chans = Vec::new();
    for (name, cols) in channels {
        let conn = conns.iter().find(|c| c.name == name).ok_or_else(|| {
            bad(
                1,
                format!("no connection named {name:?} (see `stockade connection list`)"),
            )
        })?;
        if conn.status == ConnectionStatus::Revoked {
            return Err(bad(1, format!("connection {name:?} was revoked")));
        }
        let listing = cols[0].ok_or_else(|| {
            bad(
                1,
                format!("{name}:buffer or {name}:max without {name}:listing"),
            )
        })?;
        chans.push((conn.clone(), listing, cols[1], cols[2]));
    }
    Ok(chans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(detect_delimiter("sku;on_hand\nA;1\n"), ';');
        assert_eq!(detect_delimiter("sku,on_hand\n"), ',');
        assert_eq!(detect_delimiter("\"a;b\",on_hand\n"), ',');
        assert_eq!(detect_delimiter("sku\n"), ',');
        let rows = parse_csv_with("sku;on_hand\r\n\"A;1\";3\n", ';').unwrap();
        assert_eq!(rows[1], vec!["A;1", "3"]);
    }

    /// A BOM and semicolons are read; a SKU differing only in case is a warning.
    #[test]
    fn bom_semicolons_and_case() {
        let p = plan("\u{feff}sku;on_hand\nAB-1;3\nab-1;4\n", &[]).unwrap();
        assert!(p.semicolons);
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].sku, "AB-1");
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("\"ab-1\"") && p.warnings[0].contains("line 2"));
        let e = plan("sku\ton_hand\nA\t1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("'\\t'") && e.contains("no `sku` column"), "{e}");
    }
}
