//! `stockade audit verify|export|hash-value`.

use std::io::{Read, Write};

use stockade_core::time::format_rfc3339_ms;
use stockade_store::{Anchor, AuditRow, Hash};
use stockade_vault::HeadCheck;

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
            if let Some(problem) = report.problem {
                return Err(Failure::verification(format!(
                    "audit chain broken: {problem} ({} rows before it verified)",
                    report.rows_checked
                )));
            }
            // An initialised database always has audit rows (its migrations are audited).
            if report.rows_checked == 0 {
                return Err(Failure::verification(
                    "audit chain broken: the audit log is empty, but an initialised database always has audit rows (its migrations): every row was deleted",
                ));
            }
            let head_note = check_head(settings, report.head).await?;
            println!(
                "audit chain intact: {} rows checked in {:.3} s{head_note}, head {}",
                report.rows_checked,
                started.elapsed().as_secs_f64(),
                format_head(report.head)
            );
            Ok(())
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
                    crate::output::check(writeln!(out, "{}", export_line(row)), "the export")?;
                }
            }
            crate::output::check(out.flush(), "the export")?;
            store.close().await;
            Ok(())
        }
        AuditCommand::Mirror(cmd) => super::audit_mirror::run(settings, cmd).await,
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

/// Check the chain's head against the head mark kept in the data directory (it needs
/// the master key to authenticate the mark). Returns a note for the success line, or
/// the verification failure.
async fn check_head(settings: &Settings, head: Option<(i64, Hash)>) -> Result<String, Failure> {
    let path = super::audit_head_path(settings);
    let vault = match open_vault(settings).await {
        Ok(v) => v,
        Err(e) => {
            return Ok(format!(
                ", head mark not checked (the master key is needed: {e})"
            ));
        }
    };
    let check = vault.check_audit_head(&path, head).await;
    vault.close().await;
    match check {
        HeadCheck::Reached(mark) => Ok(format!(
            ", reaches the recorded head mark (row {})",
            mark.seq
        )),
        HeadCheck::NoMark => Ok(format!(", no head mark recorded yet in {}", path.display())),
        HeadCheck::Behind { mark, head } => Err(Failure::verification(format!(
            "audit chain truncated: {} recorded row {} as written, but the chain ends at {}: rows were deleted from the end",
            path.display(),
            mark.seq,
            head.map_or_else(|| "nothing".to_owned(), |h| format!("row {h}"))
        ))),
        HeadCheck::Rewritten(mark) => Err(Failure::verification(format!(
            "audit chain rewritten: row {} does not have the hash recorded in {}",
            mark.seq,
            path.display()
        ))),
        HeadCheck::Invalid(reason) => Err(Failure::verification(format!(
            "audit head mark refused: {reason}"
        ))),
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
