//! `stockade backup create|verify|restore|drill|keyring|list`: the operator's side of
//! stockade-backup. Restores open the staged database, put the keyring back, prove the
//! master key opens it, replay purge tombstones with the sync crate's purge, and only
//! then switch; any failure leaves the database as it was.

use std::path::{Path, PathBuf};

use stockade_backup::crypt::{Decryption, Encryption};
use stockade_backup::keyring::{self, KeyringExport};
use stockade_backup::record::{self, NewRecord};
use stockade_backup::restore::{self, RestoreOptions, Staged};
use stockade_backup::{BackupError, create::CreateOptions};
use stockade_core::Environment;
use stockade_store::Store;
use stockade_sync::connections::{self, ConnectionStatus};
use stockade_vault::Vault;

use super::{CLI_ACTOR, open_store};
use crate::cli_backup::{BackupCommand, DecryptArgs};
use crate::exit::Failure;
use crate::settings::Settings;

/// Exit codes: refusals and bad flags 2, a bad backup file 3, anything else 1.
pub fn fail(e: BackupError) -> Failure {
    match e {
        BackupError::Usage(m) | BackupError::Refused(m) => Failure::usage(m),
        BackupError::BadFile(m) => Failure::verification(m),
        BackupError::Io(m) => Failure::runtime(m),
        BackupError::Store(s) => s.into(),
        BackupError::Vault(v) => v.into(),
    }
}

fn decryption(d: &DecryptArgs) -> Result<Decryption, Failure> {
    Decryption::from_args(d.identity.as_deref(), d.passphrase_file.as_deref()).map_err(fail)
}

/// Where plaintext scratch goes: the data directory when there is one.
fn scratch_parent(settings: &Settings) -> PathBuf {
    if settings.data_dir.is_dir() {
        settings.data_dir.clone()
    } else {
        std::env::temp_dir()
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

pub async fn run(settings: &Settings, cmd: BackupCommand) -> Result<(), Failure> {
    match cmd {
        BackupCommand::Create { to, encrypt } => {
            let enc =
                Encryption::from_args(&encrypt.recipients, encrypt.passphrase_file.as_deref())
                    .map_err(fail)?;
            let store = open_store(settings).await?;
            let opts = CreateOptions {
                database: &settings.database,
                to,
                encryption: &enc,
                scratch_parent: settings.data_dir.clone(),
                trigger: "cli",
            };
            let out = stockade_backup::create(&store, &CLI_ACTOR, opts).await;
            store.close().await;
            let r = out.map_err(fail)?;
            println!(
                "backup written: {} ({}, environment {}, {} schema v{}, {} encryption) in {:.1} s",
                r.path.display(),
                mb(r.file_bytes),
                r.header.environment,
                r.header.backend.as_str(),
                r.header.schema_version,
                enc.kind(),
                r.elapsed.as_secs_f64()
            );
            println!("payload sha256 {}", r.payload_sha256);
            Ok(())
        }
        BackupCommand::Verify { file, decrypt } => {
            let dec = decryption(&decrypt)?;
            let r = stockade_backup::verify(&file, &dec, &scratch_parent(settings))
                .await
                .map_err(fail)?;
            let h = &r.header;
            println!("backup OK: {}", file.display());
            println!("environment     {}", h.environment);
            println!(
                "created         {}",
                stockade_core::time::format_rfc3339_s(h.created_at_ms)
            );
            println!("backend         {}", h.backend.as_str());
            println!("schema version  {}", h.schema_version);
            println!("stockade        {}", h.stockade_version);
            println!(
                "payload         {} bytes, sha256 {} (matches)",
                h.payload_bytes, h.payload_sha256
            );
            println!(
                "integrity       {}",
                match h.backend {
                    stockade_backup::Backend::Sqlite => "PRAGMA integrity_check ok",
                    stockade_backup::Backend::Postgres => "pg_restore reads the archive",
                }
            );
            println!(
                "data keys       {} (none of their key material is in the file)",
                h.data_keys.len()
            );
            Ok(())
        }
        BackupCommand::Restore {
            file,
            decrypt,
            keyring,
            into_env,
            force,
        } => restore(settings, file, &decrypt, keyring, into_env, force).await,
        BackupCommand::Drill { file, decrypt } => {
            let dec = decryption(&decrypt)?;
            let store = open_store(settings).await?;
            let out = stockade_backup::drill(
                &store,
                &settings.database,
                &CLI_ACTOR,
                &file,
                &dec,
                &settings.data_dir,
            )
            .await;
            store.close().await;
            let r = out.map_err(fail)?;
            println!(
                "restore drill passed: {} (environment {}, taken {}) restored into a scratch copy in {:.1} s",
                file.display(),
                r.header.environment,
                stockade_core::time::format_rfc3339_s(r.header.created_at_ms),
                r.elapsed.as_secs_f64()
            );
            println!(
                "integrity ok; audit chain ok ({} rows from genesis)",
                r.audit_rows
            );
            let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("counts: {}", counts.join(", "));
            println!("recorded in the audit log (backup.drill)");
            Ok(())
        }
        BackupCommand::Keyring { to, encrypt } => {
            let enc =
                Encryption::from_args(&encrypt.recipients, encrypt.passphrase_file.as_deref())
                    .map_err(fail)?;
            let store = open_store(settings).await?;
            let out = keyring::export(&store, &CLI_ACTOR, &to, &enc, &settings.data_dir).await;
            store.close().await;
            let r = out.map_err(fail)?;
            println!(
                "keyring exported: {} ({} bytes): {} live data keys (wrapped by the master key), {} destroyed, {} purge tombstones",
                to.display(),
                r.file_bytes,
                r.live_keys,
                r.destroyed_keys,
                r.tombstones
            );
            println!("the master key file is NOT in this export: back it up separately");
            Ok(())
        }
        BackupCommand::List { limit } => {
            let store = open_store(settings).await?;
            let out = record::list(&store, limit.clamp(1, 10_000)).await;
            store.close().await;
            print_list(&out.map_err(fail)?);
            Ok(())
        }
    }
}

fn print_list(rows: &[stockade_backup::BackupRecord]) {
    if rows.is_empty() {
        println!("no backups recorded yet: run `stockade backup create` or set [backup] every");
        return;
    }
    println!(
        "{:<20} {:<8} {:<8} {:<6} {:>12} {:<10} {:<6} FILE",
        "TIME", "WHAT", "TRIGGER", "ENV", "BYTES", "KIND", "STATUS"
    );
    for r in rows {
        println!(
            "{:<20} {:<8} {:<8} {:<6} {:>12} {:<10} {:<6} {}{}",
            stockade_core::time::format_rfc3339_s(r.created_at_ms),
            r.operation,
            r.trigger,
            r.env,
            r.bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            r.kind,
            r.status,
            r.path,
            r.error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
    }
}

async fn restore(
    settings: &Settings,
    file: PathBuf,
    decrypt: &DecryptArgs,
    keyring_file: Option<PathBuf>,
    into_env: Option<String>,
    force: bool,
) -> Result<(), Failure> {
    let dec = decryption(decrypt)?;
    let into = into_env
        .as_deref()
        .map(Environment::parse)
        .transpose()
        .map_err(|e| Failure::usage(format!("--into-env: {e}")))?;
    let keyring = match &keyring_file {
        Some(p) => Some(
            KeyringExport::read(p, &dec, &scratch_parent(settings))
                .await
                .map_err(fail)?,
        ),
        None => None,
    };
    let staged = restore::stage(RestoreOptions {
        file: file.clone(),
        decryption: &dec,
        target: &settings.database,
        target_env: into.or(settings.env),
        into_env: into.is_some(),
        force,
        keyring,
        data_dir: settings.data_dir.clone(),
    })
    .await
    .map_err(fail)?;
    match finish(settings, &staged, &file).await {
        Ok(summary) => {
            let env = staged.environment();
            staged.commit().await.map_err(fail)?;
            move_head_mark(&settings.data_dir);
            record_head(settings, env).await;
            println!(
                "restored {} into {}",
                file.display(),
                settings.database.describe()
            );
            println!("{summary}");
            Ok(())
        }
        Err(e) => {
            staged.abort().await;
            Err(e)
        }
    }
}

/// Keyring back, master key proven, purges replayed, restore recorded: on the staged copy.
async fn finish(settings: &Settings, staged: &Staged, file: &Path) -> Result<String, Failure> {
    let env = staged.environment();
    let (store, _) = Store::migrate(staged.url(), env, &settings.store).await?;
    let applied = match staged.apply_keyring(&store, &CLI_ACTOR).await {
        Ok(a) => a,
        Err(e) => {
            store.close().await;
            return Err(fail(e));
        }
    };
    let same_env = staged.header().environment == env.as_str();
    // The vault takes the store over (one handle, so closing it checkpoints and closes
    // the staged database before the switch).
    let (vault, store, replayed) = if same_env {
        let master = match settings.load_master_key(env) {
            Ok(m) => m,
            Err(e) => {
                store.close().await;
                return Err(Failure::usage(format!(
                    "{e} — the master key file is never inside a backup: put this environment's key file in place (see docs/operations.md, Backups and restore)"
                )));
            }
        };
        let vault = Vault::open(store, master).await?;
        let n = match replay(&vault, staged).await {
            Ok(n) => n,
            Err(e) => {
                vault.close().await;
                return Err(e);
            }
        };
        (Some(vault), None, n)
    } else {
        (None, Some(store), 0)
    };
    let counts = vec![
        ("keys_live", applied.live),
        ("keys_destroyed", applied.destroyed),
        ("keys_missing", applied.missing),
        ("purges_replayed", replayed),
        ("backup_created_at_ms", staged.header().created_at_ms),
    ];
    let target = match (&vault, &store) {
        (Some(v), _) => v.store(),
        (None, Some(s)) => s,
        (None, None) => return Err(Failure::runtime("no staged store")),
    };
    let recorded = record::record(
        target,
        &CLI_ACTOR,
        NewRecord {
            operation: "restore",
            trigger: "cli",
            path: file.display().to_string(),
            sha256: Some(staged.header().payload_sha256.clone()),
            env: env.as_str().into(),
            kind: "-".into(),
            counts,
            ..NewRecord::default()
        },
    )
    .await;
    if let Some(v) = vault {
        v.close().await;
    }
    if let Some(s) = store {
        s.close().await;
    }
    recorded.map_err(fail)?;
    let mut s = format!(
        "data keys: {} live, {} destroyed (kept destroyed); purges replayed: {replayed}",
        applied.live, applied.destroyed
    );
    if applied.missing > 0 {
        s.push_str(&format!(
            "\nWARNING: {} data key(s) of the backup are not in the keyring: their values cannot be decrypted (give a newer --keyring export)",
            applied.missing
        ));
    }
    Ok(s)
}

/// Purge again every connection the keyring source says was purged but the backup still
/// holds (the existing purge: rows deleted, keys destroyed, receipt and audit row).
async fn replay(vault: &Vault, staged: &Staged) -> Result<i64, Failure> {
    let mut n = 0;
    for t in staged.tombstones() {
        let store = vault.store();
        let Ok(conn) = connections::get(store, &t.connection).await else {
            continue; // added after the backup: nothing of it was restored
        };
        if conn.status == ConnectionStatus::Revoked {
            continue;
        }
        stockade_sync::purge::purge(vault, &t.connection, "replayed after restore", &CLI_ACTOR)
            .await
            .map_err(|e| {
                Failure::runtime(format!("replaying the purge of {}: {e}", t.connection))
            })?;
        n += 1;
    }
    Ok(n)
}

/// The old head mark names rows the restored chain does not have: keep it as evidence.
fn move_head_mark(data_dir: &Path) {
    let mark = data_dir.join(stockade_vault::HEAD_FILE);
    if mark.exists() {
        let aside = data_dir.join(format!(
            "{}.before-restore-{}",
            stockade_vault::HEAD_FILE,
            stockade_core::time::now_ms()
        ));
        if let Err(e) = std::fs::rename(&mark, &aside) {
            tracing::warn!("could not move the audit head mark aside: {e}");
        }
    }
}

async fn record_head(settings: &Settings, env: Environment) {
    let Ok(store) = Store::open(&settings.database, env, &settings.store).await else {
        return;
    };
    let Ok(master) = settings.load_master_key(env) else {
        store.close().await;
        return;
    };
    if let Ok(vault) = Vault::open(store, master).await {
        if let Err(e) = vault
            .record_audit_head(&super::audit_head_path(settings))
            .await
        {
            tracing::warn!("could not record the audit head mark: {e}");
        }
        vault.close().await;
    }
}
