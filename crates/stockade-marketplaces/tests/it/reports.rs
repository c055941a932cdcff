//! Amazon's returns report (`GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE`): parsing the
//! flat file, which rows restock, and the Reports API flow against the simulator.

use std::time::Duration;

use stockade_core::time::now_ms;
use stockade_marketplaces::amazon::reports::{
    decode_document, parse_returns_report, returned_order, returned_units,
};
use stockade_marketplaces::{Connector, ErrorKind, OrderStatus, ReturnsReport};
use stockade_sandbox::{Marketplace, OrderAction};

use crate::contract::{Harness, config};

/// The report's header, as Amazon sends it.
const HEADER: &str = "Order ID\tOrder date\tReturn request date\tReturn request status\tAmazon RMA ID\tMerchant RMA ID\tLabel type\tLabel cost\tCurrency code\tReturn carrier\tTracking ID\tLabel to be paid by\tA-to-Z Claim\tIs prime\tASIN\tMerchant SKU\tItem Name\tReturn quantity\tReturn Reason\tIn policy\tReturn type\tResolution\tInvoice number\tReturn delivery date\tOrder Amount\tOrder quantity\tSafeT Action reason\tSafeT claim id\tSafeT claim state\tSafeT claim creation time\tSafeT claim reimbursement amount\tRefunded Amount";

fn row(order: &str, status: &str, rma: &str, sku: &str, qty: &str, delivered: &str) -> String {
    format!(
        "{order}\t10-Jul-2025\t14-Jul-2025\t{status}\t{rma}\t\tAmazonPrePaidLabel\t4.14\tUSD\tUSPS\t9202090339598363834190\tSeller\tN\tN\tB0DFN2HN9N\t{sku}\tA necklace\t{qty}\tAMZ-PG-WJ-TOO-SMALL\tY\tC-Returns\tStandardRefund\t\t{delivered}\t21.38\t2\t\t\t\t\t\t21.38"
    )
}

fn report(rows: &[String]) -> Vec<u8> {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.into_bytes()
}

#[test]
fn received_approved_returns_restock_and_repeats_count_once() {
    let bytes = report(&[
        row("113-1", "Approved", "RMA1", "SKU-1", "1", "16-Jul-2025"),
        // The same return again (overlapping reports): counted once.
        row("113-1", "Approved", "RMA1", "SKU-1", "1", "16-Jul-2025"),
        // A second return of the same SKU on the same order: added.
        row("113-1", "Closed", "RMA2", "SKU-1", "1", "18-Jul-2025"),
        // Approved but not received yet; pending; rejected: nothing.
        row("113-2", "Approved", "RMA3", "SKU-2", "1", ""),
        row("113-3", "Pending", "RMA4", "SKU-3", "1", "16-Jul-2025"),
        row("113-4", "Rejected", "RMA5", "SKU-4", "1", "16-Jul-2025"),
    ]);
    let rows = parse_returns_report(&bytes).unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].order_id, "113-1");
    assert_eq!(rows[0].rma_id, "RMA1");
    assert_eq!(rows[0].quantity, 1);
    let units = returned_units(&rows);
    assert_eq!(units.len(), 1, "{units:?}");
    assert_eq!(units["113-1"]["SKU-1"], 2);

    // Never more than the order shipped; other SKUs' lines are left out.
    let order = stockade_marketplaces::Order {
        external_id: "113-1".into(),
        status: OrderStatus::Shipped,
        lines: vec![
            stockade_marketplaces::OrderLine {
                line_id: "i1".into(),
                sku: "SKU-1".into(),
                quantity: 1,
                listing_id: None,
            },
            stockade_marketplaces::OrderLine {
                line_id: "i2".into(),
                sku: "SKU-9".into(),
                quantity: 3,
                listing_id: None,
            },
        ],
        marketplace: Marketplace::Amazon,
        marketplace_status: "SHIPPED".into(),
        created_at_ms: 0,
        updated_at_ms: 0,
        buyer: Default::default(),
    };
    let returned = returned_order(order, &units["113-1"]).unwrap();
    assert_eq!(returned.status, OrderStatus::Returned);
    assert_eq!(returned.lines.len(), 1);
    assert_eq!(
        (returned.lines[0].sku.as_str(), returned.lines[0].quantity),
        ("SKU-1", 1)
    );
}

#[test]
fn a_malformed_report_is_a_clear_error_not_a_panic() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty"),
        (b"\n\n".to_vec(), "empty"),
        (
            HEADER.replace("Merchant SKU", "SKU").into_bytes(),
            "\"Merchant SKU\" column",
        ),
        (
            format!("{HEADER}\n113-1\t10-Jul-2025\n").into_bytes(),
            "row 2",
        ),
        (
            report(&[row("113-1", "Approved", "RMA1", "SKU-1", "two", "x")]),
            "\"Return quantity\"",
        ),
        (
            report(&[row("113-1", "Approved", "RMA1", "SKU-1", "-1", "x")]),
            "\"Return quantity\"",
        ),
        (
            report(&[row("", "Approved", "RMA1", "SKU-1", "1", "x")]),
            "no order id",
        ),
        (b"{\"not\": \"a report\"}".to_vec(), "\"Order ID\" column"),
        (vec![0xff, 0xfe, 0x00, 0x9f, b'\t', b'\n', 0xc3], "column"),
    ];
    for (bytes, want) in cases {
        let err = parse_returns_report(&bytes).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Malformed, "{want}");
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want}"
        );
    }
    // A document that claims GZIP but is not, or an unknown compression.
    assert_eq!(
        decode_document(b"plain text", Some("GZIP"))
            .unwrap_err()
            .kind,
        ErrorKind::Malformed
    );
    assert!(decode_document(b"x", Some("BROTLI")).is_err());
}

/// createReport → getReport (IN_QUEUE, IN_PROGRESS, DONE) → getReportDocument → the
/// gzipped flat file → returned orders, against the simulator.
#[tokio::test]
async fn amazon_returns_report_round_trip() {
    let h = Harness::start(config(), &[]).await;
    let (mut cfg, creds) = h.amazon_parts();
    cfg.report_poll_attempts = 1;
    cfg.report_poll_interval = Duration::from_millis(1);
    let amz = h.amazon_with(cfg, creds);
    let start = now_ms();

    // An empty range: Amazon cancels the report, which means no returns.
    let id = amz.request_returns_report(0, 1000).await.unwrap();
    let mut done = None;
    for _ in 0..4 {
        match amz.check_returns_report(&id).await.unwrap() {
            ReturnsReport::Pending => continue,
            other => {
                done = Some(other);
                break;
            }
        }
    }
    assert!(
        matches!(done, Some(ReturnsReport::Done(ref v)) if v.is_empty()),
        "{done:?}"
    );

    let ids = h.sb.generate_orders(Marketplace::Amazon, 2);
    for id in &ids {
        for a in [OrderAction::Ship, OrderAction::Deliver] {
            h.sb.advance_order(Marketplace::Amazon, id, a).unwrap();
        }
    }
    h.sb.advance_order(Marketplace::Amazon, &ids[0], OrderAction::Return)
        .unwrap();
    let lines =
        h.sb.orders(Marketplace::Amazon)
            .into_iter()
            .find(|o| o.order_id == ids[1])
            .unwrap()
            .lines;
    h.sb.amazon_return(&ids[1], &lines[0].0, 1, "Pending", false)
        .unwrap();

    let id = amz
        .request_returns_report(start - 60_000, now_ms() + 5_000)
        .await
        .unwrap();
    // Each look moves the simulated report on: queued, in progress, done.
    assert!(matches!(
        amz.check_returns_report(&id).await.unwrap(),
        ReturnsReport::Pending
    ));
    assert!(matches!(
        amz.check_returns_report(&id).await.unwrap(),
        ReturnsReport::Pending
    ));
    let ReturnsReport::Done(orders) = amz.check_returns_report(&id).await.unwrap() else {
        panic!("the report should be done");
    };
    assert_eq!(
        orders.len(),
        1,
        "only the received, approved return restocks"
    );
    assert_eq!(orders[0].external_id, ids[0]);
    assert_eq!(orders[0].status, OrderStatus::Returned);
    let shipped = amz.get_order(&ids[0]).await.unwrap();
    let q = |o: &stockade_marketplaces::Order| -> u32 { o.lines.iter().map(|l| l.quantity).sum() };
    assert_eq!(q(&orders[0]), q(&shipped), "every unit came back");

    // An unknown report is not found.
    let err = amz.check_returns_report("123").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    h.finish().await;
}
