//! The demo's live summary: per channel orders, throughput, lag, redeliveries, low
//! stock and errors, the error list by kind (its counts are the ones in the table), and a
//! one-line form for a screen that is not a terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use stockade_core::order::Marketplace;

use stockade_sync::{Percentiles, SamplesCursor, stats};

use super::live::Rig;

/// Available stock at or below this is "low" (a tenth of the demo's 200 on hand).
pub const LOW_STOCK: i64 = 20;
/// Error kinds listed on the screen.
const KINDS_SHOWN: usize = 6;

/// What one redraw shows: the full screen and the plain one-line form.
pub struct Frame {
    pub screen: String,
    pub line: String,
}

#[derive(Default)]
struct Channel {
    lag_since: SamplesCursor,
    lag: Option<Percentiles>,
}

/// Orders come in bursts (batches, redeliveries): rates are over this window.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// State kept between redraws (rates and the latest lag figures).
pub struct Screen {
    channels: BTreeMap<&'static str, Channel>,
    lag_since: SamplesCursor,
    lag: Option<Percentiles>,
    /// Orders stored per channel at recent redraws, oldest first.
    history: std::collections::VecDeque<(Instant, BTreeMap<String, i64>)>,
    last: Instant,
    placed: u64,
}

fn ms(p: Option<&Percentiles>) -> String {
    p.map_or_else(
        || "—".to_owned(),
        |p| format!("{:.0} / {:.0}", p.p50_ms, p.p99_ms),
    )
}

impl Screen {
    pub fn new() -> Screen {
        Screen {
            channels: Marketplace::ALL
                .iter()
                .map(|m| (m.as_str(), Channel::default()))
                .collect(),
            lag_since: SamplesCursor::default(),
            lag: None,
            history: std::collections::VecDeque::new(),
            last: Instant::now(),
            placed: 0,
        }
    }

    pub async fn frame(&mut self, rig: &Rig, placed: u64, started: Instant) -> Frame {
        let store = rig.store();
        let metrics = rig.sync.metrics();
        let secs = self.last.elapsed().as_secs_f64().max(0.001);
        self.last = Instant::now();
        let placed_rate = (placed.saturating_sub(self.placed)) as f64 / secs;
        self.placed = placed;

        let orders = stats::orders_by_connection(store).await.unwrap_or_default();
        let low_listings = stats::low_listings_by_connection(store, LOW_STOCK)
            .await
            .unwrap_or_default();
        let (errors, kinds, dropped) = metrics.error_counts();
        let now = Instant::now();
        while self
            .history
            .get(1)
            .is_some_and(|(t, _)| now.duration_since(*t) >= RATE_WINDOW)
        {
            self.history.pop_front();
        }
        let (then, before) = self
            .history
            .front()
            .map_or((started, BTreeMap::new()), |(t, b)| (*t, b.clone()));
        let window = now.duration_since(then).as_secs_f64().max(0.001);
        self.history.push_back((now, orders.clone()));

        let mut table = String::from(
            "Channel    Orders  Orders/s  Lag p50 / p99 ms  Redelivered  Low listings  Errors\n",
        );
        let mut line_lag = Vec::new();
        let (mut all_orders, mut all_rate) = (0i64, 0.0f64);
        for m in Marketplace::ALL {
            let name = m.as_str();
            let Some(c) = self.channels.get_mut(name) else {
                continue;
            };
            if let Some(p) = metrics.staleness_of(name).take_recent(&mut c.lag_since) {
                c.lag = Some(p);
            }
            let n = orders.get(name).copied().unwrap_or(0);
            let rate = (n - before.get(name).copied().unwrap_or(0)).max(0) as f64 / window;
            all_orders += n;
            all_rate += rate;
            let _ = writeln!(
                table,
                "{name:<8} {n:>8}  {rate:>8.1}  {:>16}  {:>11}  {:>12}  {:>6}",
                ms(c.lag.as_ref()),
                rig.deliveries_deferred(m),
                low_listings.get(name).copied().unwrap_or(0),
                errors.get(name).copied().unwrap_or(0),
            );
            line_lag.push(format!(
                "{name} {}",
                c.lag
                    .map_or("—".to_owned(), |p| format!("{:.0}ms", p.p99_ms))
            ));
        }
        if let Some(p) = metrics.order_to_confirmed.take_recent(&mut self.lag_since) {
            self.lag = Some(p);
        }
        let error_total: u64 = errors.values().sum();
        let _ = writeln!(
            table,
            "{:<8} {all_orders:>8}  {all_rate:>8.1}  {:>16}  {:>11}  {:>12}  {:>6}",
            "all",
            ms(self.lag.as_ref()),
            Marketplace::ALL
                .iter()
                .map(|m| rig.deliveries_deferred(*m))
                .sum::<u64>(),
            low_listings.values().sum::<i64>(),
            error_total,
        );

        let (low, out, lowest) = low_stock(rig).await;
        let s = rig.sync.summary();
        let oversold = stats::oversold_units(store).await.unwrap_or(0);
        let elapsed = started.elapsed().as_secs();
        let mut screen = format!(
            "Running {elapsed}s   buyers placed {placed} orders ({placed_rate:.1}/s)\n\n{table}\n\
             Lag: from an order's arrival to the channel's confirmation of the new quantity (\"all\": every channel; — none yet).\n\
             Redelivered: deliveries answered 503 because the marketplace's API was busy; it sends them again.\n\n\
             Pushes    {} quantity updates in {} calls ({} coalesced), {} failed; drift repaired {}; oversold units {oversold}\n\
             Stock     {low} SKUs low (≤ {LOW_STOCK} available), {out} sold out{}\n\n",
            s.pushes_confirmed,
            s.push_calls,
            s.pushes_coalesced,
            s.push_failures,
            s.drift_repaired,
            if lowest.is_empty() {
                String::new()
            } else {
                format!("; lowest: {lowest}")
            },
        );
        let _ = writeln!(
            screen,
            "Errors    {error_total}{}",
            if error_total == 0 {
                String::new()
            } else {
                " (by kind below, newest first; every one is in the log)".to_owned()
            }
        );
        for k in kinds.iter().take(KINDS_SHOWN) {
            let text: String = k.line.chars().take(110).collect();
            let _ = writeln!(screen, "  {:>5}×  {text}", k.count);
        }
        let hidden: u64 = kinds.iter().skip(KINDS_SHOWN).map(|k| k.count).sum::<u64>() + dropped;
        if hidden > 0 {
            let _ = writeln!(screen, "  {hidden:>5}×  (older kinds, not shown)");
        }
        let line = format!(
            "[{elapsed:>4}s] orders {all_orders} stored of {placed} placed ({all_rate:.1}/s) · lag p99 {} · pushes {} · low stock {low} SKUs, {out} sold out · errors {error_total}",
            line_lag.join(", "),
            s.pushes_confirmed,
        );
        Frame { screen, line }
    }
}

/// SKUs with little left: (low, sold out, the lowest few as "SKU n, …").
async fn low_stock(rig: &Rig) -> (i64, i64, String) {
    let s = stats::low_stock(rig.store(), LOW_STOCK)
        .await
        .unwrap_or_default();
    let lowest: Vec<String> = s
        .lowest
        .iter()
        .map(|(sku, n)| format!("{sku} {n}"))
        .collect();
    (s.low, s.sold_out, lowest.join(", "))
}
