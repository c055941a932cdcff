//! What the Orders page and `/api/v1/orders` read and the one thing they write: plain,
//! bounded SELECTs over `orders`, `order_lines`, `stock_ledger`, `connections` and
//! `audit`, and the audited reveal of one order's buyer fields.
//!
//! Invariants:
//! - Every list is bounded (a page, or a fixed limit); filters are parameters, never text
//!   spliced into SQL. The list is newest first by `(created_at_ms, id)` and paged by
//!   keyset on that pair (a row value comparison both backends use as an index range),
//!   so a page costs the same on the first page and the ten-thousandth.
//! - Search is an exact match (as typed, or upper-cased) on the order's number, its
//!   marketplace id or one of its SKUs: each an index lookup, never a scan.
//! - Buyer fields stay ciphertext here unless [`reveal`] is called; [`reveal`] decrypts in
//!   memory, redacts the buyer's own data from the reason, and commits exactly one
//!   audit row (actor, order reference, cleaned reason, which fields, outcome) before the
//!   caller may show anything. The audit row never holds a buyer value. A destroyed data
//!   key (purged seller) or data removed under retention is an outcome, not an error.

use stockade_store::{AuditDetails, AuditEntry, Change, SqlValue, Store, StoreError, sql_params};
use stockade_vault::{FieldContext, VaultError};
use zeroize::Zeroizing;

use crate::api_types::{bad_cursor, decode_cursor, encode_cursor};

type Result<T> = std::result::Result<T, StoreError>;

/// The statuses an order can have (stockade-core's lifecycle), in lifecycle order.
pub const STATUSES: [&str; 7] = [
    "pending",
    "placed",
    "partially_shipped",
    "shipped",
    "delivered",
    "cancelled",
    "returned",
];

/// The Orders list's filter.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    /// An order number, a marketplace order id or a SKU (exact; empty: any).
    pub q: String,
    /// A connection id (0: every channel).
    pub connection: i64,
    /// One of [`STATUSES`] (empty: any).
    pub status: String,
    /// Created at or after (UTC ms).
    pub from_ms: i64,
    /// Created before (UTC ms).
    pub to_ms: i64,
}

/// One order in the list.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: i64,
    pub connection: String,
    pub marketplace: String,
    pub external_id: String,
    pub status: String,
    pub created_at_ms: i64,
    pub oversold_units: i64,
    pub lines: i64,
}

// The list: $1 status, $2 from, $3 to, $4/$5 keyset (created, id) strictly before, $6
// limit; the variants add $7 connection and/or $8..$10 the search. Each filter has its
// own statement (no `$n = '' OR …` on an indexed column), so each can use its index.
macro_rules! order_list {
    ($status:literal, $extra:expr) => {
        concat!(
            "SELECT o.id, c.name, c.marketplace, o.external_id, o.status,
                o.created_at_ms, o.oversold_units,
                (SELECT COUNT(*) FROM order_lines l WHERE l.connection_id = o.connection_id AND l.external_id = o.external_id)
             FROM orders o JOIN connections c ON c.id = o.connection_id
             WHERE ",
            $status,
            " AND o.created_at_ms >= $2 AND o.created_at_ms < $3
               AND (o.created_at_ms, o.id) < ($4, $5)",
            $extra,
            " ORDER BY o.created_at_ms DESC, o.id DESC LIMIT $6"
        )
    };
}

macro_rules! search {
    ($conn:literal) => {
        concat!(
            $conn,
            " AND o.id IN (SELECT id FROM orders WHERE external_id IN ($8, $9)
        UNION SELECT x.id FROM order_lines l JOIN orders x
              ON x.connection_id = l.connection_id AND x.external_id = l.external_id
              WHERE l.sku IN ($8, $9)
        UNION SELECT id FROM orders WHERE id = $10)"
        )
    };
}

/// The statements, by (connection, search, status).
const LISTS: [[[&str; 2]; 2]; 2] = [
    [
        [order_list!("$1 = ''", ""), order_list!("o.status = $1", "")],
        [
            order_list!("$1 = ''", search!(" AND $7 = 0")),
            order_list!("o.status = $1", search!(" AND $7 = 0")),
        ],
    ],
    [
        [
            order_list!("$1 = ''", " AND o.connection_id = $7"),
            order_list!("o.status = $1", " AND o.connection_id = $7"),
        ],
        [
            order_list!("$1 = ''", search!(" AND o.connection_id = $7")),
            order_list!("o.status = $1", search!(" AND o.connection_id = $7")),
        ],
    ],
];

/// The list's cursor tag (the API's too: one cursor works on both).
pub const CURSOR: &str = "o1";

/// The keyset a cursor holds: created time and order number of the last row shown.
pub fn parse_cursor(cursor: &str) -> std::result::Result<(i64, i64), crate::error::AppError> {
    let key = decode_cursor(CURSOR, cursor)?;
    let (a, b) = key.split_once('.').ok_or_else(bad_cursor)?;
    match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(bad_cursor()),
    }
}

pub fn make_cursor(row: &OrderRow) -> String {
    encode_cursor(CURSOR, &format!("{}.{}", row.created_at_ms, row.id))
}

/// The statement of a filter (kept for the EXPLAIN checks in the tests).
pub fn list_statement(f: &OrderFilter) -> &'static str {
    LISTS[usize::from(f.connection != 0)][usize::from(!f.q.trim().is_empty())]
        [usize::from(!f.status.is_empty())]
}

/// The parameters of [`list_statement`].
pub fn list_params(f: &OrderFilter, before: (i64, i64), limit: i64) -> Vec<SqlValue> {
    let mut p = sql_params![
        f.status.as_str(),
        f.from_ms,
        f.to_ms,
        before.0,
        before.1,
        limit
    ];
    let q = f.q.trim();
    if f.connection != 0 || !q.is_empty() {
        p.push(SqlValue::from(f.connection));
    }
    if !q.is_empty() {
        p.push(SqlValue::from(q));
        p.push(SqlValue::from(q.to_uppercase().as_str()));
        p.push(SqlValue::from(q.parse::<i64>().unwrap_or(-1)));
    }
    p
}

/// Up to `limit` orders matching `f`, strictly before the keyset `before` (created, id),
/// newest first.
pub async fn order_page(
    store: &Store,
    f: &OrderFilter,
    before: (i64, i64),
    limit: i64,
) -> Result<Vec<OrderRow>> {
    type Row = (i64, String, String, String, String, (i64, i64, i64));
    let rows: Vec<Row> = store
        .query_as(list_statement(f), list_params(f, before, limit))
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, connection, marketplace, external_id, status, (created, oversold, lines))| {
                OrderRow {
                    id,
                    connection,
                    marketplace,
                    external_id,
                    status,
                    created_at_ms: created,
                    oversold_units: oversold,
                    lines,
                }
            },
        )
        .collect())
}

/// A channel the list can be filtered by: id, name, marketplace.
pub type ChannelChoice = (i64, String, String);

/// Every connection (revoked ones too: their orders are kept until purged), by name.
pub async fn channel_choices(store: &Store) -> Result<Vec<ChannelChoice>> {
    store
        .query_as(
            "SELECT id, name, marketplace FROM connections ORDER BY name LIMIT 500",
            vec![],
        )
        .await
}

/// One order with everything the detail page shows except the buyer's data.
#[derive(Debug, Clone)]
pub struct OrderDetail {
    pub row: OrderRow,
    pub connection_id: i64,
    pub connection_status: String,
    pub marketplace_status: String,
    pub updated_at_ms: i64,
    pub ingested_at_ms: i64,
    /// Removed under the retention policy (no ciphertext left).
    pub pii_deleted_at_ms: Option<i64>,
    /// Which buyer fields hold a ciphertext: name, email, phone, address.
    pub present: [bool; 4],
    /// The data key that sealed them was destroyed (a deauthorization purge, a shred):
    /// they can never be opened again.
    pub key_destroyed: bool,
    pub lines: Vec<(String, String, i64, bool)>,
    pub history: Vec<HistoryRow>,
    pub ledger: Vec<LedgerRow>,
}

impl OrderDetail {
    /// The stable reference of the order in the audit log.
    pub fn resource(&self) -> String {
        format!("order:{}/{}", self.row.connection, self.row.external_id)
    }
    pub fn any_buyer(&self) -> bool {
        self.present.iter().any(|p| *p)
    }
    /// The buyer's data is gone for good (retention removed it, or its key was destroyed).
    pub fn purged(&self) -> bool {
        self.pii_deleted_at_ms.is_some() || self.key_destroyed
    }
    /// Retention removed the buyer's data (no ciphertext left in the order).
    pub fn removed_by_retention(&self) -> bool {
        self.pii_deleted_at_ms.is_some()
    }
}

/// One audit row about the order: time, actor, action, status (ingests) or empty.
pub type HistoryRow = (i64, String, String, String);

/// One stock movement the order caused: time, SKU, movement, on-hand and reserved deltas.
pub type LedgerRow = (i64, String, String, i64, i64);

const DETAIL: &str = "SELECT o.id, c.name, c.marketplace, o.external_id, o.status,
        o.created_at_ms, o.oversold_units, o.connection_id, c.status, o.marketplace_status,
        o.updated_at_ms, o.ingested_at_ms, o.pii_deleted_at_ms,
        CASE WHEN o.buyer_name IS NULL THEN 0 ELSE 1 END, CASE WHEN o.buyer_email IS NULL THEN 0 ELSE 1 END,
        CASE WHEN o.buyer_phone IS NULL THEN 0 ELSE 1 END, CASE WHEN o.buyer_address IS NULL THEN 0 ELSE 1 END
     FROM orders o JOIN connections c ON c.id = o.connection_id WHERE o.id = $1";
pub const LINES: &str =
    "SELECT line_id, sku, quantity, CASE WHEN unmatched_since_ms IS NULL THEN 0 ELSE 1 END
     FROM order_lines WHERE connection_id = $1 AND external_id = $2 ORDER BY line_id LIMIT 500";
// The ledger rows of the order, found through its lines' SKUs (the `stock_ledger_sku`
// index) and kept only if they name this order.
pub const LEDGER: &str =
    "SELECT at_ms, sku, movement, on_hand_delta, reserved_delta FROM stock_ledger
     WHERE sku IN (SELECT sku FROM order_lines WHERE connection_id = $1 AND external_id = $2)
       AND connection_id = $1 AND external_id = $2
     ORDER BY id LIMIT 500";
pub const HISTORY: &str = "SELECT ts_ms, actor, action, details FROM audit
     WHERE resource = $1 AND action IN ('order.ingest', 'order.reveal_buyer')
     ORDER BY seq LIMIT 200";

const ANY_CIPHERTEXT: &str = "SELECT COALESCE(buyer_name, buyer_email, buyer_phone, buyer_address)
     FROM orders WHERE id = $1";

/// Whether the data key named by the order's first buyer ciphertext is destroyed or
/// unknown (nothing is decrypted).
async fn key_gone(store: &Store, id: i64) -> Result<bool> {
    let ct: Option<Option<Vec<u8>>> = store.query_one_as(ANY_CIPHERTEXT, sql_params![id]).await?;
    let Some(Some(ct)) = ct else { return Ok(false) };
    let Ok(key_id) = stockade_vault::cipher::field_key_id(&ct) else {
        return Ok(true);
    };
    Ok(store
        .data_key(key_id)
        .await?
        .is_none_or(|k| k.destroyed_at_ms.is_some()))
}

/// One order by its number, `None` if there is none.
pub async fn order_detail(store: &Store, id: i64) -> Result<Option<OrderDetail>> {
    type Flags = (i64, i64, i64, i64);
    type Tail = (i64, i64, Option<i64>, Flags);
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        (i64, i64, i64, String, String, Tail),
    );
    let Some((id, connection, marketplace, external_id, status, rest)) =
        store.query_one_as::<Row>(DETAIL, sql_params![id]).await?
    else {
        return Ok(None);
    };
    let (created, oversold, cid, cstatus, mstatus, (updated, ingested, deleted, flags)) = rest;
    let lines: Vec<(String, String, i64, i64)> = store
        .query_as(LINES, sql_params![cid, external_id.as_str()])
        .await?;
    let ledger: Vec<LedgerRow> = store
        .query_as(LEDGER, sql_params![cid, external_id.as_str()])
        .await?;
    let present = [flags.0 == 1, flags.1 == 1, flags.2 == 1, flags.3 == 1];
    let key_destroyed = present.iter().any(|p| *p) && key_gone(store, id).await?;
    let resource = format!("order:{connection}/{external_id}");
    let audit: Vec<(i64, String, String, String)> = store
        .query_as(HISTORY, sql_params![resource.as_str()])
        .await?;
    let history = audit
        .into_iter()
        .map(|(ts, actor, action, details)| {
            let v: serde_json::Value = serde_json::from_str(&details).unwrap_or_default();
            let status = v
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_owned();
            (ts, actor, action, status)
        })
        .collect();
    Ok(Some(OrderDetail {
        row: OrderRow {
            id,
            connection,
            marketplace,
            external_id,
            status,
            created_at_ms: created,
            oversold_units: oversold,
            lines: lines.len() as i64,
        },
        connection_id: cid,
        connection_status: cstatus,
        marketplace_status: mstatus,
        updated_at_ms: updated,
        ingested_at_ms: ingested,
        pii_deleted_at_ms: deleted,
        present,
        key_destroyed,
        lines: lines
            .into_iter()
            .map(|(l, s, q, u)| (l, s, q, u == 1))
            .collect(),
        history,
        ledger,
    }))
}

/// The longest reason a reveal keeps (characters, after cleaning).
pub const REASON_MAX: usize = 200;
/// The shortest reason a reveal accepts.
pub const REASON_MIN: usize = 4;

/// Why a reason was refused (an i18n key each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonProblem {
    Missing,
    TooLong,
    LooksLikePii,
}

impl ReasonProblem {
    pub fn key(self) -> &'static str {
        match self {
            ReasonProblem::Missing => "ord.reason_missing",
            ReasonProblem::TooLong => "ord.reason_long",
            ReasonProblem::LooksLikePii => "ord.reason_pii",
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            ReasonProblem::Missing => "reason_required",
            ReasonProblem::TooLong => "reason_too_long",
            ReasonProblem::LooksLikePii => "reason_looks_like_personal_data",
        }
    }
}

/// The reason as the audit row keeps it: control characters removed, runs of white
/// space made one space, trimmed; refused when empty or short, longer than
/// [`REASON_MAX`], or shaped like personal data (an email address, a phone number).
pub fn clean_reason(raw: &str) -> std::result::Result<String, ReasonProblem> {
    use stockade_core::free_text::{self, FreeTextProblem};
    free_text::clean(raw, REASON_MIN, REASON_MAX).map_err(|p| match p {
        FreeTextProblem::TooShort { .. } => ReasonProblem::Missing,
        FreeTextProblem::TooLong { .. } => ReasonProblem::TooLong,
        FreeTextProblem::LooksLikePii => ReasonProblem::LooksLikePii,
    })
}

/// One revealed buyer field: its name (`name`, `email`, `phone`, `address`) and value.
pub type Revealed = Vec<(&'static str, Zeroizing<String>)>;

/// What a reveal found.
#[derive(Debug)]
pub enum RevealOutcome {
    /// The fields, for this one answer.
    Shown(Revealed),
    /// The seller's data key was destroyed (deauthorization purge, shred) or the data was
    /// removed under the retention policy: nothing can be shown, ever.
    Purged,
    /// Retention removed the buyer fields from the order (no ciphertext left).
    Removed,
    /// A ciphertext does not open with its live key: altered, or sealed for another
    /// order (run `stockade key verify`). Nothing is shown.
    Unreadable,
    /// The order has no buyer fields.
    Nothing,
}

impl RevealOutcome {
    fn code(&self) -> &'static str {
        match self {
            RevealOutcome::Shown(_) => "revealed",
            RevealOutcome::Purged => "purged",
            RevealOutcome::Removed => "removed",
            RevealOutcome::Unreadable => "unreadable",
            RevealOutcome::Nothing => "none",
        }
    }
}

const FIELDS: [(&str, &str); 4] = [
    ("name", "buyer_name"),
    ("email", "buyer_email"),
    ("phone", "buyer_phone"),
    ("address", "buyer_address"),
];

const CIPHERTEXTS: &str = "SELECT buyer_name, buyer_email, buyer_phone, buyer_address
     FROM orders WHERE id = $1";

/// The address as one readable line (its JSON fields in order, the empty ones left out).
fn address_line(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    [
        "name",
        "line1",
        "line2",
        "city",
        "region",
        "postal_code",
        "country_code",
    ]
    .iter()
    .filter_map(|k| v.get(*k).and_then(|x| x.as_str()))
    .filter(|s| !s.trim().is_empty())
    .collect::<Vec<_>>()
    .join(", ")
}

/// Decrypt one order's buyer fields in memory (nothing written).
async fn open_fields(
    vault: &stockade_vault::Vault,
    store: &Store,
    order: &OrderDetail,
) -> std::result::Result<RevealOutcome, crate::error::AppError> {
    if order.pii_deleted_at_ms.is_some() {
        return Ok(RevealOutcome::Removed);
    }
    type Cts = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let Some((a, b, c, d)) = store
        .query_one_as::<Cts>(CIPHERTEXTS, sql_params![order.row.id])
        .await?
    else {
        return Ok(RevealOutcome::Nothing);
    };
    let row = stockade_sync::ingest::buyer_row_id(order.connection_id, &order.row.external_id);
    let mut shown = Vec::new();
    for ((label, column), ct) in FIELDS.into_iter().zip([a, b, c, d]) {
        let Some(ct) = ct else { continue };
        let plain = match vault
            .decrypt(&FieldContext::new("orders", column, &row), &ct)
            .await
        {
            Ok(p) => p,
            Err(VaultError::Store(e)) => return Err(e.into()),
            // A destroyed or unknown key: the data is gone for good. Anything else: the
            // ciphertext was altered. Never a 500, never the cause on the page.
            Err(VaultError::KeyDestroyed { .. } | VaultError::UnknownKey { .. }) => {
                return Ok(RevealOutcome::Purged);
            }
            Err(e) => {
                tracing::error!(order = order.row.id, "buyer fields do not open: {e}");
                return Ok(RevealOutcome::Unreadable);
            }
        };
        let text = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
        let text = if label == "address" {
            Zeroizing::new(address_line(&text))
        } else {
            text
        };
        shown.push((label, text));
    }
    Ok(if shown.is_empty() {
        RevealOutcome::Nothing
    } else {
        RevealOutcome::Shown(shown)
    })
}

/// The reason with every word that holds a piece of the buyer's data (a part of at least
/// 4 bytes of a revealed value, case-insensitive) replaced by `[redacted]`. Redacted, not
/// refused: a refusal would tell, unaudited, whether a guess matches the buyer.
fn redact(reason: &str, fields: &Revealed) -> String {
    let tokens: Vec<String> = fields
        .iter()
        .flat_map(|(_, v)| {
            v.split([' ', ','])
                .map(|t| t.trim().to_lowercase())
                .filter(|t| t.len() >= 4)
                .collect::<Vec<_>>()
        })
        .collect();
    reason
        .split(' ')
        .map(|w| {
            let lower = w.to_lowercase();
            if tokens.iter().any(|t| lower.contains(t.as_str())) {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a reveal did not happen (nothing was written).
#[derive(Debug)]
pub enum RevealRefusal {
    Reason(ReasonProblem),
    Failed(crate::error::AppError),
}

impl From<crate::error::AppError> for RevealRefusal {
    fn from(e: crate::error::AppError) -> Self {
        RevealRefusal::Failed(e)
    }
}

/// Reveal one order's buyer fields for `actor` with `raw_reason`: the reason is cleaned
/// and checked, the buyer's own values redacted from it, then exactly one audit row
/// `order.reveal_buyer` is committed; only then are the fields handed back. A refusal
/// writes nothing. Answers the outcome and the audit row's sequence number.
pub async fn reveal(
    vault: &stockade_vault::Vault,
    store: &Store,
    actor: &stockade_core::Actor,
    order: &OrderDetail,
    raw_reason: &str,
) -> std::result::Result<(RevealOutcome, i64), RevealRefusal> {
    let reason = clean_reason(raw_reason).map_err(RevealRefusal::Reason)?;
    let outcome = open_fields(vault, store, order).await?;
    let reason = match &outcome {
        RevealOutcome::Shown(fields) => redact(&reason, fields),
        _ => reason,
    };
    let names: Vec<&str> = match &outcome {
        RevealOutcome::Shown(f) => f.iter().map(|(n, _)| *n).collect(),
        _ => Vec::new(),
    };
    let entry = AuditEntry::new(
        "order.reveal_buyer",
        order.resource(),
        AuditDetails::new()
            .str("reason", &reason)
            .list("fields", &names)
            .str("outcome", outcome.code())
            .int("order_id", order.row.id),
    );
    let receipt = store
        .commit(actor, vec![Change::event(entry)])
        .await
        .map_err(crate::error::AppError::from)?;
    Ok((outcome, receipt.last_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cleaned_bounded_and_never_personal_data() {
        assert_eq!(
            clean_reason("  ticket\u{0007} CS-4412:\n\tcourier   asks ").unwrap(),
            "ticket CS-4412: courier asks"
        );
        assert_eq!(clean_reason("   "), Err(ReasonProblem::Missing));
        assert_eq!(clean_reason("ok"), Err(ReasonProblem::Missing));
        assert_eq!(clean_reason(&"x".repeat(201)), Err(ReasonProblem::TooLong));
        assert_eq!(clean_reason(&"x".repeat(5000)), Err(ReasonProblem::TooLong));
        assert!(clean_reason(&"x".repeat(200)).is_ok());
        assert_eq!(
            clean_reason("call back jane.doe@mail.example"),
            Err(ReasonProblem::LooksLikePii)
        );
        assert_eq!(
            clean_reason("phone +65 9123 4567 89"),
            Err(ReasonProblem::LooksLikePii)
        );
        assert!(clean_reason("refund for order 20261207").is_ok());
        assert_eq!(clean_reason("a\u{202E}bcdef\u{200B}").unwrap(), "abcdef");
        // Chinese reasons count characters, not bytes.
        assert!(clean_reason("客服工单：快递无法投递，需要核对地址").is_ok());
    }

    #[test]
    fn the_buyers_own_data_is_redacted_from_the_reason() {
        let fields: Revealed = vec![
            ("name", Zeroizing::new("Zhang Wei-Lin".to_owned())),
            (
                "address",
                Zeroizing::new("88 Orchard Road, 林美华大厦".to_owned()),
            ),
        ];
        assert_eq!(
            redact("call zhang wei-lin back at orchard, ticket 42", &fields),
            "call [redacted] [redacted] back at [redacted] ticket 42"
        );
        assert_eq!(redact("送到林美华大厦门口", &fields), "[redacted]");
        assert_eq!(redact("ticket CS-1001", &fields), "ticket CS-1001");
    }

    #[test]
    fn the_address_reads_as_one_line() {
        let json = r#"{"name":null,"line1":"1 Main St","line2":null,"city":"Singapore","region":"","postal_code":"018956","country_code":"SG"}"#;
        assert_eq!(address_line(json), "1 Main St, Singapore, 018956, SG");
    }

    #[test]
    fn each_filter_has_its_statement_and_parameters() {
        let mut f = OrderFilter::default();
        assert_eq!(list_params(&f, (1, 2), 50).len(), 6);
        f.connection = 3;
        assert!(list_statement(&f).contains("o.connection_id = $7"));
        assert!(list_statement(&f).contains("$1 = ''"));
        assert_eq!(list_params(&f, (1, 2), 50).len(), 7);
        f.q = " mug-1 ".into();
        assert!(list_statement(&f).contains("l.sku IN ($8, $9)"));
        f.status = "shipped".into();
        assert!(list_statement(&f).contains("o.status = $1"));
        assert_eq!(list_params(&f, (1, 2), 50).len(), 10);
        f.connection = 0;
        assert!(list_statement(&f).contains("$7 = 0"));
    }
}
