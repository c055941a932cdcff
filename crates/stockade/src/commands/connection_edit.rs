//! `stockade connection edit` and `stockade connection test`.

use stockade_core::time::format_rfc3339_ms;
use stockade_marketplaces::{Connector, OrderCursor};
use stockade_sync::connection_edit::{self, ConnectionEdit};
use stockade_sync::connections;

use super::connection::{read_credentials, read_sandbox_ca, sync_failure};
use super::{CLI_ACTOR, open_vault};
use crate::cli::{ConnectionEditArgs, CredentialsArgs};
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn edit(settings: &Settings, args: ConnectionEditArgs) -> Result<(), Failure> {
    let env = settings.require_env()?;
    let sandbox_ca = match (&args.sandbox_ca, args.no_sandbox_ca) {
        (Some(path), _) => {
            if env != stockade_core::Environment::Dev {
                return Err(Failure::usage(format!(
                    "--sandbox-ca: a sandbox certificate authority is trusted only by a dev instance (this is {env}); nothing was changed"
                )));
            }
            Some(Some(read_sandbox_ca(path)?))
        }
        (None, true) => Some(None),
        (None, false) => None,
    };
    let secrets = if args.credentials_file.is_some() || args.credentials_stdin {
        read_credentials(&CredentialsArgs {
            credentials_file: args.credentials_file.clone(),
            credentials_stdin: args.credentials_stdin,
        })?
    } else {
        Vec::new()
    };
    let change = ConnectionEdit {
        account: args.account,
        api_url: args.api_url,
        auth_url: args.auth_url,
        shop_cipher: args.shop_cipher,
        marketplace_ids: (!args.marketplace_ids.is_empty()).then_some(args.marketplace_ids),
        document_hosts: (!args.document_hosts.is_empty()).then_some(args.document_hosts),
        endpoint_url: args.endpoint_url,
        sandbox_ca,
        secrets,
    };
    let vault = open_vault(settings).await?;
    let edited = connection_edit::edit(&vault, &args.name, change, &CLI_ACTOR).await;
    vault.close().await;
    let e = edited.map_err(sync_failure)?;
    let c = &e.connection;
    let mut what: Vec<String> = e.changed.iter().map(|s| s.replace('_', " ")).collect();
    if !e.credential_fields.is_empty() {
        what.push(format!("credentials ({})", e.credential_fields.join(", ")));
    }
    println!(
        "connection {} edited: {}; its orders, listings and webhook path are unchanged",
        c.name,
        what.join(", ")
    );
    println!("api url          {}", c.settings.api_url);
    if let Some(auth) = &c.settings.auth_url {
        println!("auth url         {auth}");
    }
    if let Some(note) = &e.note {
        println!("note: {note}");
    }
    println!("a running `stockade serve` rebuilds the connection within 2 seconds");
    Ok(())
}

/// Obtain a token and read one page of the last day's orders through the egress gateway,
/// exactly as the sync engine would.
pub async fn test(settings: &Settings, name: &str) -> Result<(), Failure> {
    let env = settings.require_env()?;
    let vault = open_vault(settings).await?;
    let result = run_test(settings, env, &vault, name).await;
    vault.close().await;
    let (marketplace, expires, orders, more) = result?;
    println!(
        "connection {name} ({marketplace}): access token obtained (valid until {})",
        format_rfc3339_ms(expires)
    );
    println!(
        "read {orders} order(s) changed in the last day{}",
        if more {
            " (first page; more exist)"
        } else {
            ""
        }
    );
    Ok(())
}

async fn run_test(
    settings: &Settings,
    env: stockade_core::Environment,
    vault: &stockade_vault::Vault,
    name: &str,
) -> Result<(String, i64, usize, bool), Failure> {
    let c = connections::get(vault.store(), name)
        .await
        .map_err(sync_failure)?;
    if c.status == connections::ConnectionStatus::Revoked {
        return Err(Failure::usage(format!(
            "connection {name:?} is revoked; nothing to test"
        )));
    }
    let mut cfg = settings.egress_config(env);
    cfg.max_attempts = 2;
    let gateway = stockade_egress::Gateway::new(cfg, Some(vault.store().clone()))
        .map_err(|e| Failure::usage(format!("[egress] configuration: {e}")))?;
    let outcome = async {
        let connector = connections::connector(&c, vault, &gateway, false)
            .await
            .map_err(sync_failure)?;
        let failed = |e: stockade_marketplaces::MarketError| {
            Failure::runtime(format!("connection {name}: {e}"))
        };
        let token = connector.refresh_token().await.map_err(failed)?;
        let page = connector
            .list_orders(&OrderCursor {
                since_ms: stockade_core::time::now_ms() - 24 * 3600 * 1000,
                page: None,
            })
            .await
            .map_err(failed)?;
        Ok::<_, Failure>((
            c.marketplace.as_str().to_owned(),
            token.expires_at_ms,
            page.orders.len(),
            page.next.is_some(),
        ))
    }
    .await;
    if let Err(e) = gateway.flush().await {
        tracing::warn!("the egress log could not be written: {e}");
    }
    outcome
}
