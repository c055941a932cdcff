//! Amazon returns through the Reports API 2021-06-30 (the Orders API has no return
//! state: a returned order stays `SHIPPED`). `GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE`
//! lists merchant-fulfilled returns by return request date as a tab-separated flat file.
//!
//! The flow: `createReport` (`POST /reports/2021-06-30/reports`) → `getReport`
//! (`GET /reports/2021-06-30/reports/{reportId}`) until `processingStatus` is `DONE`,
//! `CANCELLED` (no data in the range) or `FATAL` → `getReportDocument`
//! (`GET /reports/2021-06-30/documents/{reportDocumentId}`) → download the presigned URL,
//! gunzip it when `compressionAlgorithm` is `GZIP`. Parsing is pure, no I/O.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;
use stockade_core::order::{Marketplace, Order, OrderStatus};

use crate::{MarketError, de};

const AMZ: Marketplace = Marketplace::Amazon;

/// The merchant-fulfilled returns report, by return request date.
pub const RETURNS_REPORT_TYPE: &str = "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE";

/// The largest report document accepted (after decompression).
pub const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

/// Columns of the returns report that Stockade reads (the report has more: label,
/// carrier, amounts, SafeT claims, …). Matched case-insensitively.
pub mod columns {
    pub const ORDER_ID: &str = "Order ID";
    pub const REQUEST_DATE: &str = "Return request date";
    pub const STATUS: &str = "Return request status";
    pub const AMAZON_RMA_ID: &str = "Amazon RMA ID";
    pub const MERCHANT_SKU: &str = "Merchant SKU";
    pub const QUANTITY: &str = "Return quantity";
    pub const DELIVERY_DATE: &str = "Return delivery date";
}

/// `createReport` answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedReport {
    #[serde(deserialize_with = "de::string")]
    pub report_id: String,
}

/// `getReport` answer (the fields read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    #[serde(default, deserialize_with = "de::string")]
    pub processing_status: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub report_document_id: Option<String>,
}

/// `getReportDocument` answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReportDocument {
    #[serde(deserialize_with = "de::string")]
    pub url: String,
    #[serde(default, deserialize_with = "de::opt_string")]
    pub compression_algorithm: Option<String>,
}

/// One row of the returns report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRow {
    pub order_id: String,
    pub sku: String,
    pub quantity: u32,
    pub status: String,
    pub rma_id: String,
    pub request_date: String,
    /// When the returned package reached the seller; empty until it does.
    pub delivery_date: String,
}

impl ReturnRow {
    /// Whether the goods are back on the seller's shelf: Amazon approved (or completed or
    /// closed) the return request and the returned package was delivered to the seller
    /// (`Return delivery date` is set). Pending, rejected or still travelling returns,
    /// and refunds without a return, restock nothing.
    pub fn restocks(&self) -> bool {
        let status = self.status.trim().to_ascii_lowercase();
        matches!(status.as_str(), "approved" | "completed" | "closed")
            && !self.delivery_date.trim().is_empty()
            && self.quantity > 0
    }

    /// What makes a return row the same return when a report repeats it.
    fn key(&self) -> (&str, &str, &str) {
        let id = if self.rma_id.trim().is_empty() {
            self.request_date.as_str()
        } else {
            self.rma_id.as_str()
        };
        (self.order_id.as_str(), self.sku.as_str(), id)
    }
}

/// The document's bytes: as downloaded, or gunzipped when Amazon says `GZIP`.
pub fn decode_document(body: &[u8], compression: Option<&str>) -> Result<Vec<u8>, MarketError> {
    match compression.map(str::trim).filter(|c| !c.is_empty()) {
        None => Ok(body.to_vec()),
        Some(c) if c.eq_ignore_ascii_case("GZIP") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_REPORT_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|_| {
                    MarketError::malformed(AMZ, "the report document is not valid gzip")
                })?;
            if out.len() as u64 > MAX_REPORT_BYTES {
                return Err(MarketError::malformed(
                    AMZ,
                    "the report document is larger than 64 MiB",
                ));
            }
            Ok(out)
        }
        Some(_) => Err(MarketError::malformed(
            AMZ,
            "the report document uses an unknown compression algorithm",
        )),
    }
}

/// Parse the tab-separated returns report. A missing column, a short row or a
/// quantity that is not a number is an error naming the column and row.
pub fn parse_returns_report(bytes: &[u8]) -> Result<Vec<ReturnRow>, MarketError> {
    // Flat files are UTF-8 in most marketplaces (some use Windows-1252 for item names,
    // which Stockade does not read); ids and SKUs are ASCII either way.
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Err(MarketError::malformed(AMZ, "the returns report is empty"));
    };
    let names: Vec<String> = header
        .split('\t')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| -> Result<usize, MarketError> {
        let lower = name.to_ascii_lowercase();
        names.iter().position(|n| *n == lower).ok_or_else(|| {
            MarketError::malformed(AMZ, format!("the returns report has no \"{name}\" column"))
        })
    };
    let order = col(columns::ORDER_ID)?;
    let sku = col(columns::MERCHANT_SKU)?;
    let quantity = col(columns::QUANTITY)?;
    let status = col(columns::STATUS)?;
    let rma = col(columns::AMAZON_RMA_ID)?;
    let requested = col(columns::REQUEST_DATE)?;
    let delivered = col(columns::DELIVERY_DATE)?;
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let row = i + 2;
        let fields: Vec<&str> = line.split('\t').collect();
        let get = |idx: usize, name: &str| -> Result<String, MarketError> {
            fields.get(idx).map(|f| f.trim().to_owned()).ok_or_else(|| {
                MarketError::malformed(
                    AMZ,
                    format!("row {row} of the returns report has no \"{name}\" field"),
                )
            })
        };
        let q = get(quantity, columns::QUANTITY)?;
        let q: u32 = q.parse().map_err(|_| {
            MarketError::malformed(
                AMZ,
                format!(
                    "row {row} of the returns report has a \"Return quantity\" that is not a count"
                ),
            )
        })?;
        let r = ReturnRow {
            order_id: get(order, columns::ORDER_ID)?,
            sku: get(sku, columns::MERCHANT_SKU)?,
            quantity: q,
            status: get(status, columns::STATUS)?,
            rma_id: get(rma, columns::AMAZON_RMA_ID)?,
            request_date: get(requested, columns::REQUEST_DATE)?,
            // Trailing empty columns may be cut off.
            delivery_date: fields
                .get(delivered)
                .map(|f| f.trim().to_owned())
                .unwrap_or_default(),
        };
        if r.order_id.is_empty() || r.sku.is_empty() {
            return Err(MarketError::malformed(
                AMZ,
                format!("row {row} of the returns report has no order id or SKU"),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

/// Per order, per SKU: the units that came back, each return counted once however often
/// the report repeats it.
pub fn returned_units(rows: &[ReturnRow]) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut by_key: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.restocks()) {
        let q = by_key.entry(r.key()).or_default();
        *q = (*q).max(r.quantity);
    }
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for ((order, sku, _), q) in by_key {
        let units = out
            .entry(order.to_owned())
            .or_default()
            .entry(sku.to_owned())
            .or_default();
        *units = units.saturating_add(q);
    }
    out
}

/// The returned version of an order: only the lines whose SKU came back, each with the
/// returned units (spread over the order's lines of that SKU, never more than shipped).
pub fn returned_order(mut order: Order, units: &BTreeMap<String, u32>) -> Option<Order> {
    let mut left: BTreeMap<&str, u32> = units.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut lines = Vec::new();
    for mut line in std::mem::take(&mut order.lines) {
        let Some(rest) = left.get_mut(line.sku.as_str()) else {
            continue;
        };
        let q = line.quantity.min(*rest);
        *rest -= q;
        if q > 0 {
            line.quantity = q;
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return None;
    }
    order.lines = lines;
    order.status = OrderStatus::Returned;
    order.marketplace_status = "RETURNED".into();
    Some(order)
}

impl super::AmazonConnector {
    /// `createReport` for the returns requested between `from_ms` and `to_ms`.
    pub(crate) async fn create_returns_report(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<String, MarketError> {
        use stockade_core::time::format_rfc3339_ms;
        let body = serde_json::to_vec(&serde_json::json!({
            "reportType": RETURNS_REPORT_TYPE,
            "marketplaceIds": self.config.marketplace_ids,
            "dataStartTime": format_rfc3339_ms(from_ms),
            "dataEndTime": format_rfc3339_ms(to_ms),
        }))
        .map_err(|_| MarketError::malformed(AMZ, "could not encode the report request"))?;
        let resp = self
            .call(|t| {
                self.api_request(
                    http::Method::POST,
                    "/reports/2021-06-30/reports",
                    &[],
                    "/reports/2021-06-30/reports",
                    "amazon.createReport",
                    t,
                )
                .json_bytes(body.clone())
            })
            .await?;
        let created: CreatedReport = super::wire::parse_ok(resp.status, &resp.body)?;
        if created.report_id.is_empty() {
            return Err(MarketError::malformed(
                AMZ,
                "createReport returned no reportId",
            ));
        }
        Ok(created.report_id)
    }

    /// Follow a returns report: a few `getReport` calls; once done, its document.
    pub(crate) async fn follow_returns_report(
        &self,
        report_id: &str,
    ) -> Result<crate::ReturnsReport, MarketError> {
        let path = format!(
            "/reports/2021-06-30/reports/{}",
            crate::util::percent_encode(report_id)
        );
        let mut report: Option<Report> = None;
        for attempt in 0..self.config.report_poll_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.config.report_poll_interval).await;
            }
            let resp = self
                .call(|t| {
                    self.api_request(
                        http::Method::GET,
                        &path,
                        &[],
                        "/reports/2021-06-30/reports/{reportId}",
                        "amazon.getReport",
                        t,
                    )
                })
                .await?;
            let r: Report = super::wire::parse_ok(resp.status, &resp.body)?;
            if matches!(r.processing_status.as_str(), "DONE" | "CANCELLED" | "FATAL") {
                report = Some(r);
                break;
            }
        }
        let Some(report) = report else {
            return Ok(crate::ReturnsReport::Pending);
        };
        match report.processing_status.as_str() {
            // Amazon cancels a report on its own when the range holds no data.
            "CANCELLED" => return Ok(crate::ReturnsReport::Done(Vec::new())),
            "DONE" => {}
            other => return Ok(crate::ReturnsReport::Failed(other.to_owned())),
        }
        let Some(doc_id) = report.report_document_id.filter(|d| !d.is_empty()) else {
            return Err(MarketError::malformed(
                AMZ,
                "the report is DONE without a reportDocumentId",
            ));
        };
        let doc_path = format!(
            "/reports/2021-06-30/documents/{}",
            crate::util::percent_encode(&doc_id)
        );
        let resp = self
            .call(|t| {
                self.api_request(
                    http::Method::GET,
                    &doc_path,
                    &[],
                    "/reports/2021-06-30/documents/{reportDocumentId}",
                    "amazon.getReportDocument",
                    t,
                )
            })
            .await?;
        let doc: ReportDocument = super::wire::parse_ok(resp.status, &resp.body)?;
        let download = crate::transport::HttpRequest::new(
            http::Method::GET,
            doc.url,
            "/{presigned-report-document}",
            "amazon.downloadReportDocument",
        )
        .partition(self.rate_partition())
        .idempotent(true);
        let resp = self.transport.send(AMZ, download).await?;
        if !resp.is_success() {
            return Err(MarketError::new(
                AMZ,
                crate::ErrorKind::Server,
                "the report document download failed",
            )
            .with_status(resp.status));
        }
        let bytes = decode_document(&resp.body, doc.compression_algorithm.as_deref())?;
        let rows = parse_returns_report(&bytes)?;
        let units = returned_units(&rows);
        if units.is_empty() {
            return Ok(crate::ReturnsReport::Done(Vec::new()));
        }
        let ids: Vec<String> = units.keys().cloned().collect();
        let orders = crate::Connector::get_orders(self, &ids).await?;
        Ok(crate::ReturnsReport::Done(
            orders
                .into_iter()
                .filter_map(|o| {
                    let u = units.get(&o.external_id)?;
                    returned_order(o, u)
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_documents_are_decoded_and_bounded() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"Order ID\n").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decode_document(&gz, Some("GZIP")).unwrap(), b"Order ID\n");
        assert!(decode_document(b"not gzip", Some("GZIP")).is_err());
        assert!(decode_document(b"x", Some("ZSTD")).is_err());
        assert_eq!(decode_document(b"x", None).unwrap(), b"x");
    }
}
