//! `stockade audit verify|export|hash-value`.

use std::io::{Read, Write};

use stockade_core::time::format_rfc3339_ms;
use stockade_store::{Anchor, AuditRow, Hash};

use super::{open_store, open_vault};
use crate::cli::{AuditCommand, ExportFormat};
use crate::exit::Failure;
use crate::settings::Settings;

/// `SEQ:HEX`, the form `--anchor` takes back.
pub fn format_head(head: Option<(i64, Hash)>) -> String {
    match head {
        Some((seq, hash)) => format!("{seq}:{}", hex::encode(hash)),
        None => "(empty)".into(),
    }
}

pub async fn run(settings: &Settings, cmd: AuditCommand) -> Result<(), Failure> {
    match cmd {
        AuditCommand::Verify(args) => {
            let anchor = args
                .anchor
                .as_deref()
                .map(|a| {
                    Anchor::parse(a).ok_or_else(|| {
                        Failure::usage("--anchor takes SEQ:HASH as printed by `audit verify`")
                    })
                })
                .transpose()?;
            let store = open_store(settings).await?;
            let started = std::time::Instant::now();
            let report = store.verify_audit(anchor).await?;
            store.close().await;
            match report.problem {
                None => {
                    println!(
                        "audit chain intact: {} rows checked in {:.3} s, head {}",
                        report.rows_checked,
                        started.elapsed().as_secs_f64(),
                        format_head(report.head)
                    );
                    Ok(())
                }
                Some(problem) => Err(Failure::verification(format!(
                    "audit chain broken: {problem} ({} rows before it verified)",
                    report.rows_checked
                ))),
            }
        }
        AuditCommand::Export(args) => {
            let ExportFormat::Jsonl = args.format;
            let store = open_store(settings).await?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut after = args.after;
            loop {
                let rows = store.audit_rows(after, 2000).await?;
                let Some(last) = rows.last() else { break };
                after = last.seq;
                for row in &rows {
                    writeln!(out, "{}", export_line(row))
                        .map_err(|e| Failure::runtime(format!("cannot write the export: {e}")))?;
                }
            }
            out.flush()
                .map_err(|e| Failure::runtime(format!("cannot write the export: {e}")))?;
            store.close().await;
            Ok(())
        }
        AuditCommand::HashValue => {
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| Failure::runtime(format!("cannot read standard input: {e}")))?;
            let value = value.trim_end_matches(['\n', '\r']);
            let vault = open_vault(settings).await?;
            println!("{}", vault.tag_bytes(value.as_bytes()));
            vault.close().await;
            Ok(())
        }
    }
}

fn export_line(row: &AuditRow) -> String {
    let details: serde_json::Value = serde_json::from_str(&row.details)
        .unwrap_or(serde_json::Value::String(row.details.clone()));
    serde_json::json!({
        "seq": row.seq,
        "ts": format_rfc3339_ms(row.ts_ms),
        "ts_ms": row.ts_ms,
        "env": row.env,
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "details": details,
        "prev_hash": hex::encode(&row.prev_hash),
        "hash": hex::encode(&row.hash),
    })
    .to_string()
}
