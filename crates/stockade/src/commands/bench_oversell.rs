//! The oversell window of `stockade bench sync`: per channel, how long a listing kept
//! showing a positive quantity after the SKU's true available stock reached zero, and how
//! stale every other change was when the channel showed it.
//!
//! Measured from the simulators' side: they record every change of a listing's displayed
//! quantity with its time (buyers' orders, the seller's calls), and they know when each
//! order was placed. The catalog gives each SKU's on-hand stock at the start; "true
//! available reached zero" is the instant the buyer's order that took the last unit was
//! placed, on whichever channel. The run places orders only (no cancellations or
//! restocks), so true available only falls.

use std::collections::HashMap;

use stockade_core::order::Marketplace;
use stockade_sandbox::{OrderSummary, QtyChange};

/// p50, p99 and max of a set of durations in milliseconds, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figures {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Figures {
    /// `None` for an empty set.
    pub fn of(mut values: Vec<f64>) -> Option<Figures> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values.get(i).copied().unwrap_or(0.0)
        };
        Some(Figures {
            n: values.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: values.last().copied().unwrap_or(0.0),
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"p50": self.p50, "p99": self.p99, "max": self.max})
    }
}

/// One unit sale: (placed at ms, sku, units).
type Sale = (i64, String, u32);

/// Per SKU, the instant its true available stock reached zero: the placement time of the
/// order that took the last unit. SKUs that never sold out are absent.
pub(crate) fn zero_instants(
    on_hand: &HashMap<String, i64>,
    sales: &[Sale],
) -> HashMap<String, i64> {
    let mut sorted: Vec<&Sale> = sales.iter().collect();
    sorted.sort_by_key(|s| s.0);
    let mut left: HashMap<&str, i64> = HashMap::new();
    let mut zeros = HashMap::new();
    for (at, sku, units) in sorted {
        let Some(start) = on_hand.get(sku) else {
            continue;
        };
        let l = left.entry(sku.as_str()).or_insert(*start);
        if *l <= 0 {
            continue;
        }
        *l -= i64::from(*units);
        if *l <= 0 {
            zeros.insert(sku.clone(), *at);
        }
    }
    zeros
}

/// The changes of each SKU's listing, in the order the channel applied them.
fn by_sku(history: &[QtyChange]) -> HashMap<&str, Vec<&QtyChange>> {
    let mut out: HashMap<&str, Vec<&QtyChange>> = HashMap::new();
    for c in history {
        out.entry(c.sku.as_str()).or_default().push(c);
    }
    out
}

/// For one channel's history: per SKU that sold out, the milliseconds its listing showed
/// a positive quantity between the zero instant and `end_ms` (a listing still positive at
/// `end_ms` counts up to it).
pub(crate) fn oversell_windows(
    zeros: &HashMap<String, i64>,
    history: &[QtyChange],
    end_ms: i64,
) -> Vec<f64> {
    let changes = by_sku(history);
    let mut out = Vec::new();
    for (sku, &zero_at) in zeros {
        let Some(list) = changes.get(sku.as_str()) else {
            continue;
        };
        // The quantity shown at the zero instant (changes at that same millisecond,
        // the last sale's own included, are applied), then every later interval.
        let mut shown = 0u32;
        let mut since = zero_at;
        let mut positive_ms = 0i64;
        let mut last_at = i64::MIN;
        for c in list {
            // Applied order is the truth; clocks of one simulator never go back.
            let at = c.at_ms.max(last_at);
            last_at = at;
            if at <= zero_at {
                shown = c.quantity;
                continue;
            }
            if shown > 0 {
                positive_ms += at.min(end_ms) - since;
            }
            if at >= end_ms {
                shown = 0;
                since = end_ms;
                break;
            }
            shown = c.quantity;
            since = at;
        }
        if shown > 0 && end_ms > since {
            positive_ms += end_ms - since;
        }
        out.push(positive_ms.max(0) as f64);
    }
    out
}

/// For one channel's history: for every pushed positive quantity (first time each value
/// was shown per SKU, pushed at or after `start_ms`), the milliseconds from the sale that
/// first brought the SKU's true available to that value or below, to the channel showing it.
pub(crate) fn change_staleness(
    on_hand: &HashMap<String, i64>,
    sales: &[Sale],
    history: &[QtyChange],
    start_ms: i64,
) -> Vec<f64> {
    // Per SKU, (true available after the sale, placed at) in placement order.
    let mut sorted: Vec<&Sale> = sales.iter().collect();
    sorted.sort_by_key(|s| s.0);
    let mut timeline: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    let mut left: HashMap<&str, i64> = HashMap::new();
    for (at, sku, units) in sorted {
        let Some(start) = on_hand.get(sku) else {
            continue;
        };
        let l = left.entry(sku.as_str()).or_insert(*start);
        *l -= i64::from(*units);
        timeline.entry(sku.as_str()).or_default().push((*l, *at));
    }
    let mut seen: std::collections::HashSet<(&str, u32)> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in history {
        if !c.source.is_push() || c.quantity == 0 || c.at_ms < start_ms {
            continue;
        }
        if !seen.insert((c.sku.as_str(), c.quantity)) {
            continue;
        }
        let Some(tl) = timeline.get(c.sku.as_str()) else {
            continue;
        };
        let value = i64::from(c.quantity);
        if let Some(&(_, became)) = tl.iter().find(|(avail, _)| *avail <= value)
            && became <= c.at_ms
        {
            out.push((c.at_ms - became) as f64);
        }
    }
    out
}

/// The figures of one run, per marketplace.
#[derive(Debug, Default)]
pub(crate) struct Oversell {
    pub window: Vec<(Marketplace, Option<Figures>)>,
    /// The windows on all channels of the SKUs whose last unit sold on each marketplace
    /// (how fast the server learns of a sale differs by marketplace).
    pub by_last_sale: Vec<(Marketplace, Option<Figures>)>,
    pub staleness: Vec<(Marketplace, Option<Figures>)>,
    pub sold_out: usize,
    pub dropped: u64,
}

/// Measure a finished run from the orders placed (all marketplaces) and each
/// marketplace's quantity history (with how many changes were not kept): `on_hand` at
/// the start, orders offered from `start_ms`, the measurement ending at `end_ms`.
pub(crate) fn measure(
    orders: Vec<OrderSummary>,
    histories: Vec<(Marketplace, Vec<QtyChange>, u64)>,
    on_hand: &HashMap<String, i64>,
    start_ms: i64,
    end_ms: i64,
) -> Oversell {
    let tagged: Vec<(Marketplace, Sale)> = orders
        .into_iter()
        .flat_map(|o| {
            let (at, m) = (o.created_ms, o.marketplace);
            o.lines.into_iter().map(move |(sku, q)| (m, (at, sku, q)))
        })
        .collect();
    let sales: Vec<Sale> = tagged.iter().map(|(_, s)| s.clone()).collect();
    let zeros = zero_instants(on_hand, &sales);
    let sold_on = |m: Marketplace| -> HashMap<String, i64> {
        zeros
            .iter()
            .filter(|(sku, at)| {
                tagged
                    .iter()
                    .any(|(x, s)| *x == m && s.0 == **at && &s.1 == *sku)
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let by_seller: Vec<(Marketplace, HashMap<String, i64>)> =
        Marketplace::ALL.iter().map(|m| (*m, sold_on(*m))).collect();
    let mut by_last: Vec<(Marketplace, Vec<f64>)> = Vec::new();
    let mut out = Oversell {
        sold_out: zeros.len(),
        ..Oversell::default()
    };
    for (m, history, dropped) in histories {
        out.dropped += dropped;
        out.window
            .push((m, Figures::of(oversell_windows(&zeros, &history, end_ms))));
        for (seller_m, z) in &by_seller {
            let w = oversell_windows(z, &history, end_ms);
            match by_last.iter_mut().find(|(x, _)| x == seller_m) {
                Some((_, v)) => v.extend(w),
                None => by_last.push((*seller_m, w)),
            }
        }
        out.staleness.push((
            m,
            Figures::of(change_staleness(on_hand, &sales, &history, start_ms)),
        ));
    }
    out.by_last_sale = by_last
        .into_iter()
        .map(|(m, v)| (m, Figures::of(v)))
        .collect();
    out
}

impl Oversell {
    /// The human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "SKUs sold out during the run: {} (true available reached zero)",
            self.sold_out
        )];
        let fmt = |f: &Option<Figures>| match f {
            Some(f) => format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n={})",
                f.p50, f.p99, f.max, f.n
            ),
            None => "no samples".to_owned(),
        };
        for (m, f) in &self.window {
            out.push(format!("oversell window {m}: {}", fmt(f)));
        }
        for (m, f) in &self.by_last_sale {
            out.push(format!(
                "oversell window, all channels, last unit sold on {m}: {}",
                fmt(f)
            ));
        }
        for (m, f) in &self.staleness {
            out.push(format!("change shown on {m} after the sale: {}", fmt(f)));
        }
        if self.dropped > 0 {
            out.push(format!(
                "quantity changes not recorded (history full): {}",
                self.dropped
            ));
        }
        out
    }

    /// Add `oversell_window_ms` and `change_staleness_ms` (`{channel: {p50, p99, max}}`)
    /// and `sold_out_skus` to the JSON report.
    pub fn add_to(&self, report: &mut serde_json::Value) {
        let map = |v: &[(Marketplace, Option<Figures>)]| {
            let mut o = serde_json::Map::new();
            for (m, f) in v {
                if let Some(f) = f {
                    o.insert(m.as_str().to_owned(), f.json());
                }
            }
            serde_json::Value::Object(o)
        };
        if let Some(obj) = report.as_object_mut() {
            obj.insert("oversell_window_ms".into(), map(&self.window));
            obj.insert("change_staleness_ms".into(), map(&self.staleness));
            obj.insert(
                "oversell_window_by_last_sale_ms".into(),
                map(&self.by_last_sale),
            );
            obj.insert("sold_out_skus".into(), self.sold_out.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockade_sandbox::QtySource;

    fn change(sku: &str, at_ms: i64, quantity: u32, source: QtySource) -> QtyChange {
        QtyChange {
            marketplace: Marketplace::Amazon,
            seller_id: "S".into(),
            sku: sku.into(),
            at_ms,
            quantity,
            source,
        }
    }

    #[test]
    fn a_listing_shown_positive_300ms_after_true_zero_is_a_300ms_window() {
        let on_hand: HashMap<String, i64> = [("A".to_owned(), 3), ("B".to_owned(), 50)].into();
        // Two units sold on TikTok at 1000, the last one on eBay at 2000.
        let sales = vec![
            (1_000, "A".to_owned(), 2),
            (2_000, "A".to_owned(), 1),
            (1_500, "B".to_owned(), 1),
        ];
        let zeros = zero_instants(&on_hand, &sales);
        assert_eq!(zeros.get("A"), Some(&2_000));
        assert!(!zeros.contains_key("B"), "B never sold out");
        // Amazon showed 3, then the push of 1 at 1200, then the zero at 2300.
        let history = vec![
            change("A", 0, 3, QtySource::Bulk),
            change("A", 1_200, 1, QtySource::PerListing),
            change("A", 2_300, 0, QtySource::PerListing),
        ];
        assert_eq!(oversell_windows(&zeros, &history, 10_000), vec![300.0]);
        // A listing already at zero when the stock ran out has no window.
        let shown_zero = vec![
            change("A", 0, 3, QtySource::Bulk),
            change("A", 1_900, 0, QtySource::Buyer),
        ];
        assert_eq!(oversell_windows(&zeros, &shown_zero, 10_000), vec![0.0]);
        // A stale feed bringing the quantity back counts too; one never closed counts
        // until the end of the measurement.
        let regressed = vec![
            change("A", 0, 3, QtySource::Bulk),
            change("A", 2_100, 0, QtySource::PerListing),
            change("A", 2_500, 1, QtySource::Bulk),
            change("A", 2_700, 0, QtySource::PerListing),
        ];
        assert_eq!(oversell_windows(&zeros, &regressed, 10_000), vec![300.0]);
        let open = vec![change("A", 0, 3, QtySource::Bulk)];
        assert_eq!(oversell_windows(&zeros, &open, 2_500), vec![500.0]);
    }

    #[test]
    fn staleness_runs_from_the_sale_to_the_channel_showing_it() {
        let on_hand: HashMap<String, i64> = [("A".to_owned(), 10)].into();
        let sales = vec![(1_000, "A".to_owned(), 2), (3_000, "A".to_owned(), 1)];
        let history = vec![
            change("A", 0, 10, QtySource::Bulk),
            change("A", 1_250, 8, QtySource::PerListing),
            change("A", 1_400, 8, QtySource::Bulk),
            change("A", 3_040, 7, QtySource::Bulk),
            change("A", 3_050, 6, QtySource::Buyer),
        ];
        let mut got = change_staleness(&on_hand, &sales, &history, 500);
        got.sort_by(f64::total_cmp);
        assert_eq!(got, vec![40.0, 250.0]);
        let f = Figures::of(got).unwrap();
        assert_eq!((f.n, f.p50, f.p99, f.max), (2, 40.0, 250.0, 250.0));
        assert!(Figures::of(Vec::new()).is_none());
    }
}
