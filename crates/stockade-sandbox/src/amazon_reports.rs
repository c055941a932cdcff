//! Amazon Reports API 2021-06-30 in the simulator, for the merchant-fulfilled returns
//! report `GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE`: createReport (202, `reportId`),
//! getReport (`IN_QUEUE` → `IN_PROGRESS` → `DONE`, or `CANCELLED` when the range holds
//! no returns), getReportDocument (a presigned URL this server serves, the document
//! gzip-compressed with `compressionAlgorithm: GZIP`), with the published usage plans.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::amazon::{URL_TTL_MS, auth, doc_url};
use crate::resp::{amz_err, amz_invalid, amz_ok};
use crate::sim::Sim;
use crate::state::{FeedDoc, Market};
use crate::util::{iso_s, parse_iso};

/// The report types the simulator generates.
pub(crate) const RETURNS_REPORT: &str = "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE";

/// The columns of the returns flat file, in Amazon's order.
pub(crate) const RETURN_COLUMNS: [&str; 32] = [
    "Order ID",
    "Order date",
    "Return request date",
    "Return request status",
    "Amazon RMA ID",
    "Merchant RMA ID",
    "Label type",
    "Label cost",
    "Currency code",
    "Return carrier",
    "Tracking ID",
    "Label to be paid by",
    "A-to-Z Claim",
    "Is prime",
    "ASIN",
    "Merchant SKU",
    "Item Name",
    "Return quantity",
    "Return Reason",
    "In policy",
    "Return type",
    "Resolution",
    "Invoice number",
    "Return delivery date",
    "Order Amount",
    "Order quantity",
    "SafeT Action reason",
    "SafeT claim id",
    "SafeT claim state",
    "SafeT claim creation time",
    "SafeT claim reimbursement amount",
    "Refunded Amount",
];

/// A buyer's return of some units of one order line.
#[derive(Debug, Clone)]
pub(crate) struct AmzReturn {
    pub order: usize,
    pub listing: usize,
    pub quantity: u32,
    pub rma_id: String,
    pub requested_ms: i64,
    /// `Approved`, `Pending`, `Rejected`, `Closed`, …
    pub status: String,
    /// When the package reached the seller.
    pub delivered_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct AmzReport {
    pub id: String,
    pub seller: usize,
    pub report_type: String,
    pub marketplace_ids: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub created_ms: i64,
    pub status: &'static str,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub doc: Option<String>,
}

/// Record a return of `quantity` units of `sku` (all units of every line when `sku` is
/// None) on order `o_idx`.
pub(crate) fn record_return(
    m: &mut Market,
    o_idx: usize,
    sku: Option<&str>,
    quantity: Option<u32>,
    status: &str,
    delivered: bool,
    at: i64,
) -> Result<usize, String> {
    let order = m.orders.get(o_idx).ok_or("no such order")?.clone();
    let mut added = 0;
    for line in &order.lines {
        let Some(l) = m.listings.get(line.listing) else {
            continue;
        };
        if sku.is_some_and(|s| s != l.sku) {
            continue;
        }
        let rma_id = format!("D{}RMA", m.rng.chars(8, crate::state::ALNUM));
        m.returns.push(AmzReturn {
            order: o_idx,
            listing: line.listing,
            quantity: quantity.unwrap_or(line.quantity).min(line.quantity),
            rma_id,
            requested_ms: at,
            status: status.to_owned(),
            delivered_ms: delivered.then_some(at),
        });
        added += 1;
        if quantity.is_some() {
            break;
        }
    }
    if added == 0 {
        return Err("the order has no line with that SKU".into());
    }
    Ok(added)
}

/// The returned packages of order `o_idx` still on their way reach the seller at `at`
/// (their request date stays); returns how many.
pub(crate) fn returns_arrive(m: &mut Market, o_idx: usize, at: i64) -> usize {
    let mut n = 0;
    for r in m
        .returns
        .iter_mut()
        .filter(|r| r.order == o_idx && r.delivered_ms.is_none())
    {
        r.delivered_ms = Some(at);
        n += 1;
    }
    n
}

/// `12-Jul-2025`, the report's date format.
fn report_date(ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = iso_s(ms);
    let (y, rest) = iso.split_once('-').unwrap_or(("1970", "01-01"));
    let (mo, rest) = rest.split_once('-').unwrap_or(("01", "01"));
    let d = rest.get(..2).unwrap_or("01");
    let month = mo
        .parse::<usize>()
        .ok()
        .and_then(|i| MONTHS.get(i.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    format!("{d}-{month}-{y}")
}

/// The flat file of the seller's returns requested in `[from, to]`; None when empty.
fn returns_document(m: &Market, r: &AmzReport) -> Option<Vec<u8>> {
    let mut out = RETURN_COLUMNS.join("\t");
    out.push('\n');
    let mut rows = 0;
    for ret in &m.returns {
        let (Some(o), Some(l)) = (m.orders.get(ret.order), m.listings.get(ret.listing)) else {
            continue;
        };
        if o.seller != r.seller || ret.requested_ms < r.from_ms || ret.requested_ms > r.to_ms {
            continue;
        }
        let ordered: u32 = o
            .lines
            .iter()
            .filter(|x| x.listing == ret.listing)
            .map(|x| x.quantity)
            .sum();
        let cents = u64::from(l.price_cents) * u64::from(ret.quantity);
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let refunded = if ret.status == "Approved" || ret.status == "Closed" {
            amount.clone()
        } else {
            String::new()
        };
        let fields: [String; 32] = [
            o.id.clone(),
            report_date(o.created_ms),
            report_date(ret.requested_ms),
            ret.status.clone(),
            ret.rma_id.clone(),
            String::new(),
            "AmazonPrePaidLabel".into(),
            "4.14".into(),
            "USD".into(),
            "USPS".into(),
            format!("9202{}", ret.requested_ms),
            "Seller".into(),
            "N".into(),
            "N".into(),
            l.asin.clone(),
            l.sku.clone(),
            l.title.clone(),
            ret.quantity.to_string(),
            "AMZ-PG-BAD-DESC".into(),
            "Y".into(),
            "C-Returns".into(),
            "StandardRefund".into(),
            String::new(),
            ret.delivered_ms.map(report_date).unwrap_or_default(),
            amount,
            ordered.to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            refunded,
        ];
        out.push_str(&fields.join("\t"));
        out.push('\n');
        rows += 1;
    }
    (rows > 0).then(|| out.into_bytes())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if enc.write_all(bytes).is_err() {
        return Vec::new();
    }
    enc.finish().unwrap_or_default()
}

/// `POST /reports/2021-06-30/reports`.
pub(crate) async fn create_report(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "createReport"));
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return amz_invalid("The request body is not valid JSON.");
    };
    let Some(report_type) = v.get("reportType").and_then(Value::as_str) else {
        return amz_invalid("reportType is required");
    };
    if report_type != RETURNS_REPORT {
        return amz_invalid(&format!("Invalid reportType {report_type}"));
    }
    let ids: Vec<String> = v
        .get("marketplaceIds")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return amz_invalid("marketplaceIds is required");
    }
    let now = stockade_core::time::now_ms();
    let time = |k: &str, default: i64| -> Result<i64, Response> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(default),
            Some(t) => t
                .as_str()
                .and_then(parse_iso)
                .ok_or_else(|| amz_invalid(&format!("{k} is not an ISO 8601 date-time"))),
        }
    };
    let to = or_return!(time("dataEndTime", now));
    let from = or_return!(time("dataStartTime", to - 30 * 86_400_000));
    if from > to {
        return amz_invalid("dataStartTime must be before dataEndTime");
    }
    let id = format!("{}", 50_000_000_000_u64 + m.rng.below(9_999_999_999));
    m.reports.push(AmzReport {
        id: id.clone(),
        seller,
        report_type: report_type.to_owned(),
        marketplace_ids: ids,
        from_ms: from,
        to_ms: to,
        created_ms: now,
        status: "IN_QUEUE",
        started_ms: None,
        ended_ms: None,
        doc: None,
    });
    amz_ok(StatusCode::ACCEPTED, &json!({"reportId": id}))
}

/// Move a report one step along IN_QUEUE → IN_PROGRESS → DONE / CANCELLED.
fn step(m: &mut Market, i: usize, now: i64) {
    let Some(r) = m.reports.get(i).cloned() else {
        return;
    };
    match r.status {
        "IN_QUEUE" => {
            if let Some(r) = m.reports.get_mut(i) {
                r.status = "IN_PROGRESS";
                r.started_ms = Some(now);
            }
        }
        "IN_PROGRESS" => {
            let doc = returns_document(m, &r).map(|tsv| {
                let id = format!("amzn1.spdoc.1.4.na.{}", m.rng.uuid());
                let key = m.rng.chars(64, b"0123456789abcdef");
                m.docs.insert(
                    id.clone(),
                    FeedDoc {
                        seller: r.seller,
                        content_type: "text/tab-separated-values".into(),
                        url_key: key,
                        url_expires_ms: now + URL_TTL_MS,
                        content: Some(gzip(&tsv)),
                    },
                );
                id
            });
            if let Some(r) = m.reports.get_mut(i) {
                r.status = if doc.is_some() { "DONE" } else { "CANCELLED" };
                r.ended_ms = Some(now);
                r.doc = doc;
            }
        }
        _ => {}
    }
}

/// `GET /reports/2021-06-30/reports/{reportId}`: each call shows the report's state and
/// moves it a step on, so a report is done by the third look.
pub(crate) async fn get_report(
    State(sim): State<Arc<Sim>>,
    Path(report_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "getReport"));
    let Some(i) = m
        .reports
        .iter()
        .position(|r| r.id == report_id && r.seller == seller)
    else {
        return amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The report was not found.",
            "",
        );
    };
    let Some(r) = m.reports.get(i).cloned() else {
        return amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The report was not found.",
            "",
        );
    };
    step(&mut m, i, stockade_core::time::now_ms());
    let mut out = json!({
        "reportId": r.id, "reportType": r.report_type, "marketplaceIds": r.marketplace_ids,
        "dataStartTime": iso_s(r.from_ms), "dataEndTime": iso_s(r.to_ms),
        "createdTime": iso_s(r.created_ms), "processingStatus": r.status,
    });
    if let Some(obj) = out.as_object_mut() {
        if let Some(t) = r.started_ms {
            obj.insert("processingStartTime".into(), Value::String(iso_s(t)));
        }
        if let Some(t) = r.ended_ms {
            obj.insert("processingEndTime".into(), Value::String(iso_s(t)));
        }
        if let Some(d) = &r.doc {
            obj.insert("reportDocumentId".into(), Value::String(d.clone()));
        }
    }
    amz_ok(StatusCode::OK, &out)
}

/// `GET /reports/2021-06-30/documents/{reportDocumentId}`: a fresh presigned URL (5
/// minutes) and `compressionAlgorithm: GZIP`.
pub(crate) async fn get_report_document(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut m = sim.lock();
    let seller = or_return!(auth(&sim, &m, &headers, "getReportDocument"));
    let key = m.rng.chars(64, b"0123456789abcdef");
    let is_report = m.reports.iter().any(|r| r.doc.as_deref() == Some(&id));
    let Some(doc) = m
        .docs
        .get_mut(&id)
        .filter(|d| d.seller == seller && is_report)
    else {
        return amz_err(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The report document was not found.",
            "",
        );
    };
    doc.url_key = key.clone();
    doc.url_expires_ms = stockade_core::time::now_ms() + URL_TTL_MS;
    amz_ok(
        StatusCode::OK,
        &json!({"reportDocumentId": id, "url": doc_url(&sim, &id, &key), "compressionAlgorithm": "GZIP"}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_dates_read_like_amazons() {
        assert_eq!(report_date(0), "01-Jan-1970");
        assert_eq!(report_date(1_752_300_000_000), "12-Jul-2025");
    }
}
