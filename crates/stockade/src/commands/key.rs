//! `stockade key rotate|status|verify`.

use stockade_vault::FieldContext;

use super::{CLI_ACTOR, open_vault};
use crate::cli::KeyCommand;
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: KeyCommand) -> Result<(), Failure> {
    let mut vault = open_vault(settings).await?;
    match cmd {
        KeyCommand::Rotate => {
            let next = vault.master_keys().with_new_version()?;
            // The file gets the new version first: if we stop before the commit, the
            // database still uses the old one, which the file still holds.
            next.replace_file().map_err(Failure::from_master)?;
            let report = vault.rotate_master_key(next, &CLI_ACTOR).await?;
            let retired: Vec<String> = report.retired.iter().map(|v| format!("v{v}")).collect();
            println!(
                "master key rotated to v{}: {} data key(s) rewrapped, {} retired (kept in the key file until nothing needs them)",
                report.new_version,
                report.rewrapped,
                if retired.is_empty() {
                    "none".into()
                } else {
                    retired.join(", ")
                }
            );
        }
        KeyCommand::Status => {
            let status = vault.status().await?;
            println!(
                "environment {}; master key source: {}",
                vault.environment(),
                vault.master_keys().source()
            );
            println!(
                "{:<8} {:>10} {:>9} {:>12}",
                "version", "data keys", "retired", "in key file"
            );
            for (v, used, retired, present) in status.master_versions {
                println!(
                    "v{v:<7} {used:>10} {:>9} {:>12}",
                    if retired { "yes" } else { "no" },
                    if present { "yes" } else { "NO" }
                );
            }
            println!(
                "data keys: {} live, {} destroyed (crypto-shredded)",
                status.live_data_keys, status.destroyed_data_keys
            );
        }
        KeyCommand::Verify => {
            let (mut ok, mut shredded, mut bad) = (0, 0, Vec::new());
            for rec in vault.store().credentials().await? {
                match vault
                    .decrypt(
                        &FieldContext::new("credentials", "secret", &rec.name),
                        &rec.ciphertext,
                    )
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(stockade_vault::VaultError::KeyDestroyed { .. }) => shredded += 1,
                    Err(e) => bad.push(format!("credential {:?}: {e}", rec.name)),
                }
            }
            println!(
                "credentials: {ok} decrypt, {shredded} crypto-shredded, {} fail",
                bad.len()
            );
            if let Some(first) = bad.first() {
                return Err(Failure::verification(format!(
                    "{} encrypted value(s) fail to decrypt; first: {first}",
                    bad.len()
                )));
            }
        }
    }
    vault.close().await;
    Ok(())
}
