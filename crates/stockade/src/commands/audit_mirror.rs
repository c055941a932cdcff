//! `stockade audit mirror init|status|verify`: set the NocoDB table up, show each sink's
//! lag and last error (from the database only), compare NocoDB with the chain.
//!
//! Exit codes: 0 done / in step; 2 not configured or bad settings; 1 NocoDB unreachable
//! or refusing; 3 (verification) a column to fix or a difference found.

use stockade_core::time::format_rfc3339_ms;
use stockade_mirror::{InitOutcome, Noco, NocoSinkConfig, SinkStatus};

use super::{open_store, open_vault};
use crate::cli::AuditMirrorCommand;
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: AuditMirrorCommand) -> Result<(), Failure> {
    match cmd {
        AuditMirrorCommand::Init => init(settings).await,
        AuditMirrorCommand::Status => status(settings).await,
        AuditMirrorCommand::Verify => verify(settings).await,
    }
}

fn nocodb(settings: &Settings) -> Result<&NocoSinkConfig, Failure> {
    settings.audit_mirror.nocodb.as_ref().ok_or_else(|| {
        Failure::usage(
            "no [audit.mirror.nocodb] in the configuration: add base_url, base and token (the name of a stored credential) to stockade.toml (docs/operations.md, \"Audit mirror to NocoDB\")",
        )
    })
}

fn noco_failure(e: stockade_mirror::NocoError) -> Failure {
    use stockade_mirror::NocoError as E;
    match e {
        E::NoCredential(_) | E::CredentialScope { .. } | E::UnknownBase(_) | E::Local(_) => {
            Failure::usage(e.to_string())
        }
        E::Columns(_) | E::UnknownTable { .. } => Failure::verification(e.to_string()),
        _ => Failure::runtime(e.to_string()),
    }
}

/// Connect with the stored token through an egress gateway of these settings.
async fn connect(settings: &Settings) -> Result<(stockade_vault::Vault, Noco), Failure> {
    let cfg = nocodb(settings)?.clone();
    let vault = open_vault(settings).await?;
    let gateway = stockade_egress::Gateway::new(
        settings.egress_config(vault.environment()),
        Some(vault.store().clone()),
    )
    .map_err(|e| Failure::usage(format!("[egress] configuration: {e}")))?;
    let noco = Noco::connect(&gateway, &vault, &cfg)
        .await
        .map_err(noco_failure)?;
    Ok((vault, noco))
}

async fn init(settings: &Settings) -> Result<(), Failure> {
    let (vault, noco) = connect(settings).await?;
    let outcome = stockade_mirror::init(&noco).await;
    vault.close().await;
    let table = &noco.config().table;
    match outcome.map_err(noco_failure)? {
        InitOutcome::Created(id) => {
            println!(
                "created NocoDB table {table} ({id}) with one column per audit field; the server copies the audit log into it"
            );
            Ok(())
        }
        InitOutcome::Ready(id) => {
            println!("NocoDB table {table} ({id}) has every audit column; nothing to do");
            Ok(())
        }
        InitOutcome::Problems(id, problems) => {
            for p in &problems {
                println!("  {p}");
            }
            Err(Failure::verification(format!(
                "NocoDB table {table} ({id}) does not match the audit fields ({} problem(s) above); nothing was changed: add or fix those columns in NocoDB (type as shown), or set audit.mirror.nocodb.table to a new title and run `stockade audit mirror init` again",
                problems.len()
            )))
        }
    }
}

fn show(s: &SinkStatus) {
    let st = &s.state;
    let when = |ms: Option<i64>| ms.map_or_else(|| "never".to_owned(), format_rfc3339_ms);
    println!(
        "{}: copied up to row {} of {} — lag {} rows, {} s; last copy {}",
        st.sink,
        st.acked_seq,
        s.head_seq,
        s.lag_rows,
        s.lag_seconds,
        when(st.acked_at_ms)
    );
    if let Some(since) = st.failing_since_ms {
        println!(
            "  FAILING since {} ({} attempt(s))",
            format_rfc3339_ms(since),
            st.failures
        );
    }
    if let Some(err) = &st.last_error {
        println!("  last error ({}): {err}", when(st.last_error_at_ms));
    }
    if let (Some(h), Some(until)) = (&st.holder, st.lease_until_ms)
        && until > stockade_core::time::now_ms()
    {
        println!("  held by process {h}");
    }
}

async fn status(settings: &Settings) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let sinks = stockade_mirror::status(&store).await;
    store.close().await;
    let sinks = sinks?;
    let cfg = &settings.audit_mirror;
    if !cfg.is_configured() {
        println!("no audit mirror is configured ([audit.mirror.nocodb], [audit.mirror.file])");
    }
    if sinks.is_empty() && cfg.is_configured() {
        println!("the audit mirror is configured but has not run yet: start `stockade serve`");
    }
    for s in &sinks {
        show(s);
    }
    Ok(())
}

async fn verify(settings: &Settings) -> Result<(), Failure> {
    let (vault, noco) = connect(settings).await?;
    let table = match noco.open_table().await {
        Ok(t) => t,
        Err(e) => {
            vault.close().await;
            return Err(noco_failure(e));
        }
    };
    let started = std::time::Instant::now();
    let outcome = stockade_mirror::verify::verify(vault.store(), &noco, &table).await;
    vault.close().await;
    let outcome = outcome.map_err(|e| Failure::runtime(e.to_string()))?;
    if let Some(d) = outcome.difference {
        return Err(Failure::verification(format!(
            "NocoDB differs from the audit chain: {d} ({} rows before it match). The mirror does not rewrite NocoDB: restore the row there by hand from `stockade audit export --after SEQ` or keep this report as the record",
            outcome.rows_compared
        )));
    }
    let behind = outcome.chain_head - outcome.nocodb_max;
    println!(
        "NocoDB matches the audit chain: {} rows compared in {:.1} s, up to row {}{}",
        outcome.rows_compared,
        started.elapsed().as_secs_f64(),
        outcome.nocodb_max,
        if behind > 0 {
            format!(" ({behind} newer rows not copied yet)")
        } else {
            String::new()
        }
    );
    Ok(())
}
