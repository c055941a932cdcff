//! `stockade retention run [--dry-run]` and `stockade retention show`: the retention
//! rules in force (`[retention]`), what a run removes, and the last run.
//!
//! Invariants: `--dry-run` only counts (nothing written, not even an audit row); a run
//! holds the retention lease, so one started while the server's scheduled run is going
//! is refused with exit 1 and writes nothing; output holds kinds, rules, cutoffs and
//! counts, never row contents.

use stockade_core::time::format_rfc3339_ms;
use stockade_retention::{Report, Rules, RunError, show_period};

use super::open_store;
use crate::cli::RetentionCommand;
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: RetentionCommand) -> Result<(), Failure> {
    let rules = settings.retention;
    let store = open_store(settings).await?;
    let result = match cmd {
        RetentionCommand::Run { dry_run } => {
            let report = if dry_run {
                stockade_retention::dry_run(&store, &rules).await
            } else {
                stockade_retention::run(&store, &rules).await
            };
            match report {
                Ok(r) => {
                    print_report(&r);
                    Ok(())
                }
                Err(RunError::Busy) => Err(Failure::runtime(RunError::Busy.to_string())),
                Err(RunError::Store(e)) => Err(e.into()),
            }
        }
        RetentionCommand::Show => show(&store, &rules).await,
    };
    store.close().await;
    result
}

fn print_report(r: &Report) {
    let head = if r.dry_run {
        "retention dry run: nothing removed; ROWS is what a run now would remove"
    } else {
        "retention run: ROWS is what was removed"
    };
    println!("{head}");
    println!("{:<22} {:<26} {:>8}  RULE", "KIND", "CUTOFF (UTC)", "ROWS");
    for k in &r.kinds {
        println!(
            "{:<22} {:<26} {:>8}  {}",
            k.kind,
            format_rfc3339_ms(k.cutoff_ms),
            k.rows,
            k.rule
        );
    }
    println!(
        "{:<22} {:<26} {:>8}  kept (never deleted)",
        "audit", "-", "-"
    );
    let verb = if r.dry_run { "would go" } else { "removed" };
    println!(
        "total: {} rows {verb}{}",
        r.total(),
        if r.dry_run {
            String::new()
        } else {
            format!(
                " in {} batches, {} ms{}",
                r.batches,
                r.finished_at_ms - r.started_at_ms,
                if r.reclaimed {
                    "; freed space handed back"
                } else {
                    ""
                }
            )
        }
    );
}

async fn show(store: &stockade_store::Store, rules: &Rules) -> Result<(), Failure> {
    println!(
        "retention rules: a run every {}, {} rows per transaction",
        show_period(rules.every_s),
        rules.batch
    );
    println!("{:<22} RULE", "KIND");
    for p in rules.plan(stockade_core::time::now_ms()) {
        println!("{:<22} {}", p.kind, p.rule);
    }
    println!("{:<22} kept (never deleted)", "audit");
    match store.last_retention_run().await? {
        None => println!("last run: none yet"),
        Some(run) => {
            let counts: Vec<String> = run.counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            println!(
                "last run: {} to {}, {} rows removed ({})",
                format_rfc3339_ms(run.started_at_ms),
                format_rfc3339_ms(run.finished_at_ms),
                run.removed,
                counts.join(", ")
            );
        }
    }
    Ok(())
}
