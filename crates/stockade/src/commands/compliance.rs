//! `stockade compliance report|verify`: the compliance report gathered from the database,
//! the configuration, the running server and the host (`stockade_app::compliance`),
//! rendered as Markdown, JSON or HTML; `--sign` records the report's SHA-256 as an audit
//! row and `verify` checks a signed report against it.
//!
//! Invariants: read-only but for the one audit row of `--sign`; `--out` is written to a
//! temporary file beside it and renamed into place (an unwritable target is refused
//! before anything is signed); exit 1 when a reported clause fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stockade_access::Access;
use stockade_app::compliance::{Compliance, configured_tls};
use stockade_server::compliance::{Report, Verdict};
use stockade_server::compliance_render::{Format, render};
use stockade_server::i18n::Lang;
use stockade_store::{AuditDetails, AuditEntry, Change};

use super::compliance_sign::{attach, detach, sha256_hex};
use super::{CLI_ACTOR, open_store, open_vault};
use crate::cli_compliance::{ComplianceCommand, ReportArgs, ReportFormat, ReportLang};
use crate::exit::Failure;
use crate::settings::Settings;

/// The audit action of a signed report.
pub const SIGNED: &str = "compliance.report_signed";

pub async fn run(settings: &Settings, cmd: ComplianceCommand) -> Result<(), Failure> {
    match cmd {
        ComplianceCommand::Report(args) => report(settings, args).await,
        ComplianceCommand::Verify { file } => verify(settings, &file).await,
    }
}

fn format_of(f: ReportFormat) -> Format {
    match f {
        ReportFormat::Md => Format::Md,
        ReportFormat::Json => Format::Json,
        ReportFormat::Html => Format::Html,
    }
}

/// A file written beside its target and renamed into place.
struct Pending {
    tmp: PathBuf,
    target: PathBuf,
    file: std::fs::File,
}

impl Pending {
    fn create(target: &Path) -> Result<Pending, Failure> {
        let refuse = |e: std::io::Error| {
            Failure::usage(format!(
                "cannot write the report to {}: {e}; nothing was written (check --out)",
                target.display()
            ))
        };
        if target.is_dir() {
            return Err(refuse(std::io::Error::other("it is a directory")));
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(refuse)?;
        Ok(Pending {
            tmp,
            target: target.to_path_buf(),
            file,
        })
    }

    fn finish(mut self, text: &str) -> Result<(), Failure> {
        let result = self
            .file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_all())
            .and_then(|()| std::fs::rename(&self.tmp, &self.target));
        result.map_err(|e| {
            let _ = std::fs::remove_file(&self.tmp);
            Failure::runtime(format!(
                "cannot write the report to {}: {e}; nothing was written",
                self.target.display()
            ))
        })
    }

    fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

async fn gather(settings: &Settings) -> Result<Report, Failure> {
    let vault = Arc::new(open_vault(settings).await?);
    let access = Arc::new(Access::new(vault.clone(), settings.access.clone()).await?);
    let compliance = Compliance::new(settings, access.clone(), configured_tls(settings));
    let report = compliance
        .report()
        .await
        .map_err(|e| Failure::runtime(format!("cannot gather the compliance evidence: {e}")))?;
    drop(compliance);
    drop(access);
    if let Ok(v) = Arc::try_unwrap(vault) {
        v.close().await;
    }
    Ok(report)
}

async fn report(settings: &Settings, args: ReportArgs) -> Result<(), Failure> {
    // An unwritable target is refused before any evidence is gathered or signed.
    let pending = args.out.as_deref().map(Pending::create).transpose()?;
    let outcome = report_into(settings, &args).await;
    let (text, failing) = match outcome {
        Ok(t) => t,
        Err(e) => {
            if let Some(p) = pending {
                p.abandon();
            }
            return Err(e);
        }
    };
    match pending {
        Some(p) => p.finish(&text)?,
        None => {
            let mut out = std::io::stdout().lock();
            crate::output::check(
                out.write_all(text.as_bytes()).and_then(|()| out.flush()),
                "the report",
            )?;
        }
    }
    if failing.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "{} clause(s) fail: {}",
            failing.len(),
            failing.join(", ")
        )))
    }
}

/// The document (signed with --sign) and the failing clause ids.
async fn report_into(
    settings: &Settings,
    args: &ReportArgs,
) -> Result<(String, Vec<&'static str>), Failure> {
    let mut report = gather(settings).await?;
    if !args.only.is_empty() {
        let ids: Vec<&str> = report.checks.iter().map(|c| c.id).collect();
        if let Some(bad) = args.only.iter().find(|o| !ids.contains(&o.as_str())) {
            return Err(Failure::usage(format!(
                "--only {bad:?} is not a clause id; the clause ids are: {}",
                ids.join(", ")
            )));
        }
        report
            .checks
            .retain(|c| args.only.iter().any(|o| o == c.id));
    }
    let lang = match args.lang {
        ReportLang::En => Lang::En,
        ReportLang::Zh => Lang::Zh,
    };
    let format = format_of(args.format);
    let body = render(&report, format, lang);
    let failing: Vec<&'static str> = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.id)
        .collect();
    if !args.sign {
        return Ok((body, failing));
    }
    let hash = sha256_hex(body.as_bytes());
    let [pass, fail, na, cannot] = report.summary();
    let n = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
    let details = AuditDetails::new()
        .str("sha256", &hash)
        .str("format", format.code())
        .str("lang", lang.code())
        .int("clauses", n(report.checks.len()))
        .int("pass", n(pass))
        .int("fail", n(fail))
        .int("not_applicable", n(na))
        .int("cannot_check", n(cannot));
    let store = open_store(settings).await?;
    let receipt = store
        .commit(
            &CLI_ACTOR,
            vec![Change::event(AuditEntry::new(
                SIGNED,
                format!("compliance_report:{}", &hash[..16]),
                details,
            ))],
        )
        .await?;
    store.close().await;
    eprintln!(
        "signed: audit row #{} holds the report's SHA-256 {hash}",
        receipt.last_seq
    );
    Ok((attach(&body, args.format, receipt.last_seq, &hash), failing))
}

/// No report comes near this; a larger file is refused before it is read into memory.
const MAX_REPORT_BYTES: u64 = 64 * 1024 * 1024;

async fn verify(settings: &Settings, file: &Path) -> Result<(), Failure> {
    let len = std::fs::metadata(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?
        .len();
    if len > MAX_REPORT_BYTES {
        return Err(Failure::usage(format!(
            "{} is {len} bytes, larger than any compliance report (at most {MAX_REPORT_BYTES}): not a signed report",
            file.display()
        )));
    }
    let text = std::fs::read(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    let not_report = || {
        Failure::usage(format!(
            "{} is not a signed Stockade compliance report: it has no signature trailer as `stockade compliance report --sign` writes it",
            file.display()
        ))
    };
    let text = String::from_utf8(text).map_err(|_| not_report())?;
    let signed = detach(&text).ok_or_else(not_report)?;
    let actual = sha256_hex(signed.body.as_bytes());
    let store = open_store(settings).await?;
    let mut problems = Vec::new();
    if actual != signed.hash {
        problems.push(format!(
            "the report was changed after it was signed: its body's SHA-256 is {actual}, the signature says {}",
            signed.hash
        ));
    }
    let row = store
        .audit_rows(signed.seq - 1, 1)
        .await?
        .into_iter()
        .find(|r| r.seq == signed.seq);
    let mut when = String::new();
    match &row {
        None => problems.push(format!(
            "audit row #{} does not exist in this {} database",
            signed.seq,
            store.environment().as_str()
        )),
        Some(r) if r.action != SIGNED => problems.push(format!(
            "audit row #{} is a {} row, not {SIGNED}",
            r.seq, r.action
        )),
        Some(r) => {
            let recorded = serde_json::from_str::<serde_json::Value>(&r.details)
                .ok()
                .and_then(|v| v["sha256"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if recorded != signed.hash {
                problems.push(format!(
                    "audit row #{} records SHA-256 {recorded}, the signature says {}",
                    r.seq, signed.hash
                ));
            }
            when = stockade_core::time::format_rfc3339_ms(r.ts_ms);
        }
    }
    let chain = store.verify_audit(None).await?;
    if let Some(p) = chain.problem {
        problems.push(format!("the audit chain does not verify: {p}"));
    }
    store.close().await;
    if !problems.is_empty() {
        return Err(Failure::runtime(format!(
            "{} does not verify: {}",
            file.display(),
            problems.join("; ")
        )));
    }
    println!(
        "verified: {} ({}) has SHA-256 {actual}, recorded by audit row #{} ({SIGNED}, {when}); the audit chain verifies",
        file.display(),
        format_of(signed.format).code(),
        signed.seq
    );
    Ok(())
}
