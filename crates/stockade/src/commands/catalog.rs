//! `stockade sku import|export|list` (`sku discover` is in `discover`) and `stockade stock verify|rebuild`: the catalog
//! and the stock derived from the ledger (audited as `system:cli`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use stockade_sync::SyncError;
use stockade_sync::catalog::{self, ListingRow, StockMismatch};
use stockade_sync::unmatched::{self, LineProblem, UnmatchedLine};

use super::connection::sync_failure;
use super::{CLI_ACTOR, open_store};
use crate::cli::{SkuCommand, StockCommand};
use crate::exit::Failure;
use crate::settings::Settings;

fn read_csv(path: &Path) -> Result<String, Failure> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(format!("cannot read the CSV from stdin: {e}")))?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| {
                Failure::usage(format!(
                    "cannot read {}: {e} (a UTF-8 CSV file is expected)",
                    path.display()
                ))
            })?;
    }
    Ok(text)
}

pub async fn sku(settings: &Settings, cmd: SkuCommand) -> Result<(), Failure> {
    match cmd {
        SkuCommand::Import { file } => sku_import(settings, &file).await,
        SkuCommand::Discover {
            connection,
            take_quantity,
            dry_run,
        } => super::discover::run(settings, &connection, take_quantity, dry_run).await,
        SkuCommand::Export { output } => sku_export(settings, output.as_deref()).await,
        SkuCommand::List => sku_list(settings).await,
        SkuCommand::Threshold { sku, units, clear } => {
            sku_threshold(settings, &sku, if clear { None } else { units }).await
        }
    }
}

/// `stockade sku threshold SKU UNITS|--clear`.
async fn sku_threshold(settings: &Settings, sku: &str, units: Option<i64>) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let set =
        stockade_sync::stock::set_thresholds(&store, &[(sku.to_owned(), units)], &CLI_ACTOR).await;
    store.close().await;
    set.map_err(|e| match e {
        SyncError::Invalid(msg) => Failure::usage(msg),
        e => sync_failure(e),
    })?;
    match units {
        Some(n) => println!("{sku}: low stock at {n} unit(s) available or fewer"),
        None => println!("{sku}: the global low-stock threshold applies again"),
    }
    Ok(())
}

/// `stockade sku import FILE`.
async fn sku_import(settings: &Settings, file: &Path) -> Result<(), Failure> {
    let text = read_csv(file)?;
    let store = open_store(settings).await?;
    let imported = catalog::import_csv(&store, &text, &CLI_ACTOR).await;
    store.close().await;
    let report = imported.map_err(|e| match e {
        SyncError::Invalid(msg) => {
            Failure::usage(format!("{}: {msg}; nothing was imported", file.display()))
        }
        e => sync_failure(e),
    })?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "imported {} SKU(s) and {} listing(s) from {}{}; listing targets follow the new stock (a running server pushes them)",
        report.skus,
        report.listings,
        file.display(),
        if report.semicolons {
            " (read as semicolon-separated)"
        } else {
            ""
        }
    );
    if report.matched_lines > 0 {
        println!(
            "{} order line(s) that arrived before their SKU are now matched; {} of open orders were reserved",
            report.matched_lines, report.reserved_lines
        );
    }
    Ok(())
}

/// `stockade sku export [--output FILE]`.
async fn sku_export(settings: &Settings, output: Option<&Path>) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let exported = catalog::export_csv(&store).await;
    store.close().await;
    let csv = exported.map_err(sync_failure)?;
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            crate::output::check(
                out.write_all(csv.as_bytes()).and_then(|()| out.flush()),
                "the CSV",
            )?;
        }
        Some(path) => {
            std::fs::write(path, csv.as_bytes())
                .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
            eprintln!(
                "wrote {} SKU(s) to {}",
                csv.lines().count().saturating_sub(1),
                path.display()
            );
        }
    }
    Ok(())
}

/// `stockade sku list`.
async fn sku_list(settings: &Settings) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let read = async {
        Ok::<_, SyncError>((
            catalog::stock(&store).await?,
            catalog::listings(&store).await?,
            unmatched::unmatched_lines(&store).await?,
        ))
    }
    .await;
    store.close().await;
    let (stock, listings, waiting) = read.map_err(sync_failure)?;
    // Per SKU, each channel as "connection target/confirmed", FAILING when pushes fail.
    let mut by_sku: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for l in &listings {
        let target = if l.target_qty < 0 {
            "-".to_owned()
        } else {
            l.target_qty.to_string()
        };
        let acked = l.acked_qty.map_or_else(|| "-".into(), |a| a.to_string());
        let failing = if l.push.failing() { " FAILING" } else { "" };
        let cell = format!("{} {target}/{acked}{failing}", l.connection);
        by_sku.entry(l.sku.as_str()).or_default().push(cell);
    }
    println!(
        "{:<24} {:>9} {:>9} {:>9}  channels (target/confirmed)",
        "sku", "on_hand", "reserved", "available"
    );
    for s in &stock {
        let channels = by_sku.get(s.sku.as_str()).map(|c| c.join(", "));
        let channels = channels.unwrap_or_default();
        let line = format!(
            "{:<24} {:>9} {:>9} {:>9}  {}",
            s.sku, s.on_hand, s.reserved, s.available, channels
        );
        println!("{}", line.trim_end());
    }
    print_failing(&listings);
    if stock.is_empty() && waiting.is_empty() {
        eprintln!(
            "no SKUs yet; read them from a marketplace with `stockade sku discover --connection NAME`, or import a catalog with `stockade sku import FILE.csv`"
        );
    }
    print_unmatched(&waiting);
    Ok(())
}

/// SKUs that orders named but the catalog lacks (flagged on `sku list`).
fn print_unmatched(waiting: &[UnmatchedLine]) {
    let groups = unmatched::by_sku(waiting);
    if groups.is_empty() {
        return;
    }
    println!();
    println!(
        "UNMATCHED: {} SKU(s) sold on a channel but not in the catalog (nothing reserved for them yet):",
        groups.len()
    );
    println!(
        "{:<24} {:>9} {:>12}  connections",
        "sku", "lines", "open units"
    );
    for g in &groups {
        println!(
            "{:<24} {:>9} {:>12}  {}",
            g.sku,
            g.lines,
            g.open_units,
            g.connections.join(", ")
        );
    }
    println!(
        "add them with `stockade sku discover --connection NAME` or `stockade sku import FILE.csv`: their open orders are reserved at once"
    );
}

fn print_mismatches(bad: &[StockMismatch]) {
    println!(
        "{:<24} {:>14} {:>14} {:>14} {:>14}",
        "sku", "on_hand stored", "on_hand ledger", "reserved stored", "reserved ledger"
    );
    for m in bad {
        println!(
            "{:<24} {:>14} {:>14} {:>14} {:>14}",
            m.sku, m.stored.0, m.ledger.0, m.stored.1, m.ledger.1
        );
    }
}

pub async fn stock(settings: &Settings, cmd: StockCommand) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let result = match cmd {
        StockCommand::Verify => catalog::verify_stock(&store).await,
        StockCommand::Rebuild => catalog::rebuild_stock(&store, &CLI_ACTOR).await,
    };
    let lines = match cmd {
        StockCommand::Verify => {
            async {
                Ok::<_, SyncError>((
                    unmatched::verify_lines(&store).await?,
                    unmatched::unmatched_lines(&store).await?,
                ))
            }
            .await
        }
        StockCommand::Rebuild => Ok((Vec::new(), Vec::new())),
    };
    let skus = catalog::stock(&store).await.map(|s| s.len());
    store.close().await;
    let bad = result.map_err(sync_failure)?;
    let (line_problems, waiting) = lines.map_err(sync_failure)?;
    let skus = skus.map_err(sync_failure)?;
    match cmd {
        StockCommand::Verify => verify_report(skus, &bad, &line_problems, &waiting),
        StockCommand::Rebuild if bad.is_empty() => {
            println!("nothing to rebuild: stock matches the ledger ({skus} SKU(s))");
            Ok(())
        }
        StockCommand::Rebuild => {
            print_mismatches(&bad);
            println!(
                "{} SKU(s) rebuilt from the ledger (audited as stock.rebuild); their listings were retargeted",
                bad.len()
            );
            Ok(())
        }
    }
}

/// `stock verify`: stock against the ledger, every open order line reserved exactly once,
/// and no open order line waiting for a SKU the catalog lacks.
fn verify_report(
    skus: usize,
    bad: &[StockMismatch],
    lines: &[LineProblem],
    waiting: &[UnmatchedLine],
) -> Result<(), Failure> {
    let mut problems = Vec::new();
    if bad.is_empty() {
        println!("stock matches the ledger: {skus} SKU(s) checked");
    } else {
        print_mismatches(bad);
        problems.push(format!(
            "{} of {skus} SKU(s) differ from the stock ledger (`stockade stock rebuild` sets them back to the ledger)",
            bad.len()
        ));
    }
    if lines.is_empty() && waiting.iter().any(|l| l.open) {
        println!("every open order line of a catalog SKU is reserved exactly once");
    } else if lines.is_empty() {
        println!("every open order line is reserved exactly once");
    } else {
        println!();
        println!(
            "{:<16} {:<24} {:<20} {:<20} {:>8} {:>9} {:>13}",
            "connection", "order", "line", "sku", "quantity", "reserved", "reservations"
        );
        for p in lines {
            println!(
                "{:<16} {:<24} {:<20} {:<20} {:>8} {:>9} {:>13}",
                p.connection, p.order, p.line, p.sku, p.quantity, p.reserved, p.reservations
            );
        }
        problems.push(format!(
            "{} open order line(s) are not reserved exactly once",
            lines.len()
        ));
    }
    let open: Vec<&UnmatchedLine> = waiting.iter().filter(|l| l.open).collect();
    if !waiting.is_empty() {
        println!();
        println!(
            "{:<16} {:<24} {:<20} {:<20} {:>8}  order",
            "connection", "order", "line", "unmatched sku", "quantity"
        );
        for l in waiting {
            println!(
                "{:<16} {:<24} {:<20} {:<20} {:>8}  {}",
                l.connection,
                l.order,
                l.line,
                l.sku,
                l.quantity,
                if l.open { "open" } else { "closed" }
            );
        }
    }
    if !open.is_empty() {
        problems.push(format!(
            "{} open order line(s) name a SKU that is not in the catalog, so nothing is reserved for them (`stockade sku discover` or `stockade sku import` reserves them)",
            open.len()
        ));
    } else if !waiting.is_empty() {
        println!(
            "{} line(s) of closed orders name SKUs not in the catalog (no stock is held for closed orders)",
            waiting.len()
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::verification(problems.join("; ")))
    }
}

/// Listings whose pushes fail: since when and the last error, one line each.
fn print_failing(listings: &[ListingRow]) {
    let failing: Vec<&ListingRow> = listings.iter().filter(|l| l.push.failing()).collect();
    if failing.is_empty() {
        return;
    }
    println!();
    println!("failing pushes ({}):", failing.len());
    for l in failing {
        println!(
            "  {} on {}: failing since {} ({} failed round(s)): {}",
            l.sku,
            l.connection,
            l.push
                .failing_since_ms
                .map_or_else(|| "-".into(), stockade_core::time::format_rfc3339_ms),
            l.push.failures,
            l.push.last_error.as_deref().unwrap_or("-")
        );
    }
}
