//! `backup drill`: restore a backup into a scratch place (a directory beside the data, or
//! a scratch PostgreSQL database), check it the way an auditor would — payload integrity,
//! the audit chain from genesis, row counts — throw the scratch copy away, and record the
//! result as a `backups` row with its audit row: evidence that restores work.
//!
//! The drill needs no keys: it never decrypts a field. It never touches the live data.

use std::path::Path;
use std::time::Instant;

use stockade_core::{Actor, Environment};
use stockade_store::{DatabaseUrl, Store, StoreOptions};

use crate::container::{Backend, Header};
use crate::crypt::Decryption;
use crate::postgres::PgTarget;
use crate::record::{self, NewRecord};
use crate::scratch::Scratch;
use crate::{BackupError, Result};

/// What a drill found.
#[derive(Debug, Clone)]
pub struct DrillReport {
    pub header: Header,
    pub audit_rows: i64,
    pub counts: Vec<(&'static str, i64)>,
    pub elapsed: std::time::Duration,
}

const COUNTS: [(&str, &str); 6] = [
    ("orders", "SELECT COUNT(*) FROM orders"),
    ("order_lines", "SELECT COUNT(*) FROM order_lines"),
    ("connections", "SELECT COUNT(*) FROM connections"),
    ("skus", "SELECT COUNT(*) FROM skus"),
    ("credentials", "SELECT COUNT(*) FROM credentials"),
    ("data_keys", "SELECT COUNT(*) FROM keyring_data_keys"),
];

/// Run a drill of `file` and record it in `live`.
pub async fn drill(
    live: &Store,
    live_url: &DatabaseUrl,
    actor: &Actor,
    file: &Path,
    dec: &Decryption,
    data_dir: &Path,
) -> Result<DrillReport> {
    let started = Instant::now();
    let out = drill_inner(live_url, file, dec, data_dir).await;
    let env = live.environment().as_str().to_owned();
    let rec = match &out {
        Ok(r) => {
            let mut counts = r.counts.clone();
            counts.push(("audit_rows", r.audit_rows));
            counts.push(("backup_created_at_ms", r.header.created_at_ms));
            counts.push(("elapsed_ms", started.elapsed().as_millis() as i64));
            NewRecord {
                operation: "drill",
                trigger: "cli",
                path: file.display().to_string(),
                bytes: std::fs::metadata(file)
                    .ok()
                    .and_then(|m| i64::try_from(m.len()).ok()),
                sha256: Some(r.header.payload_sha256.clone()),
                env: r.header.environment.clone(),
                kind: "-".into(),
                error: None,
                counts,
            }
        }
        Err(e) => NewRecord {
            operation: "drill",
            trigger: "cli",
            path: file.display().to_string(),
            env,
            kind: "-".into(),
            error: Some(e.to_string().chars().take(400).collect()),
            ..NewRecord::default()
        },
    };
    record::record(live, actor, rec).await?;
    out.map(|mut r| {
        r.elapsed = started.elapsed();
        r
    })
}

async fn drill_inner(
    live_url: &DatabaseUrl,
    file: &Path,
    dec: &Decryption,
    data_dir: &Path,
) -> Result<DrillReport> {
    let scratch = Scratch::new_in(data_dir, "drill")?;
    let (header, payload) = crate::verify::decrypt_to(file, dec, &scratch, "data").await?;
    crate::verify::check_payload(&header, &payload).await?;
    let env = Environment::parse(&header.environment)
        .map_err(|_| BackupError::BadFile("the backup names an unknown environment".into()))?;
    match (header.backend, live_url) {
        (Backend::Sqlite, _) => {
            let url = DatabaseUrl::Sqlite(payload.clone());
            check(&url, env, header).await
        }
        (Backend::Postgres, DatabaseUrl::Postgres { url, schema }) => {
            let admin = PgTarget::new(url, header.pg_schema.as_deref().or(schema.as_deref()));
            let mut b = [0u8; 4];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| BackupError::Io("no random numbers".into()))?;
            let name = format!("stockade_drill_{}", hex::encode(b));
            let target = admin.create_scratch_database(&name).await?;
            let out = match target.restore(&payload, &header.data_keys, env.as_str()).await {
                Ok(()) => check(&target.store_url(), env, header).await,
                Err(e) => Err(e),
            };
            if let Err(e) = admin.drop_database(&name).await {
                tracing::warn!("could not drop the drill database {name}: {e}");
            }
            out
        }
        (Backend::Postgres, DatabaseUrl::Sqlite(_)) => Err(BackupError::Usage(
            "this is a PostgreSQL backup: run the drill with --database-url pointing at a PostgreSQL server (a scratch database is created there and dropped)".into(),
        )),
    }
}

async fn check(url: &DatabaseUrl, env: Environment, header: Header) -> Result<DrillReport> {
    let opts = StoreOptions {
        sqlite_readers: 1,
        pg_max_connections: 2,
        ..StoreOptions::default()
    };
    let (store, _) = Store::migrate(url, env, &opts).await?;
    let out = async {
        let report = store.verify_audit(None).await?;
        if let Some(p) = report.problem {
            return Err(BackupError::BadFile(format!(
                "the audit chain in the backup is broken ({p:?}); the backup was altered before it was encrypted — use another backup"
            )));
        }
        let mut counts = Vec::new();
        for (name, q) in COUNTS {
            counts.push((name, store.count(q, vec![]).await?));
        }
        Ok(DrillReport {
            header,
            audit_rows: i64::try_from(report.rows_checked).unwrap_or(i64::MAX),
            counts,
            elapsed: std::time::Duration::ZERO,
        })
    }
    .await;
    store.close().await;
    out
}
