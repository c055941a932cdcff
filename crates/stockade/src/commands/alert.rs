//! `stockade alert status|list|test|secret set|retry`.

use std::sync::Arc;

use stockade_alerts::{ChannelConfig, Outcome};
use stockade_core::time::format_rfc3339_ms;
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential};

use super::connection::read_credentials;
use super::{CLI_ACTOR, open_store, open_vault};
use crate::cli::{AlertCommand, AlertSecretCommand, CredentialsArgs};
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn run(settings: &Settings, cmd: AlertCommand) -> Result<(), Failure> {
    match cmd {
        AlertCommand::Status => status(settings).await,
        AlertCommand::List { limit } => list(settings, limit).await,
        AlertCommand::Test { channel } => test(settings, &channel).await,
        AlertCommand::Secret(AlertSecretCommand::Set {
            channel,
            credentials_file,
            credentials_stdin,
        }) => {
            set_secret(
                settings,
                &channel,
                &CredentialsArgs {
                    credentials_file,
                    credentials_stdin,
                },
            )
            .await
        }
        AlertCommand::Retry { channel } => retry(settings, &channel).await,
    }
}

fn channel<'a>(settings: &'a Settings, name: &str) -> Result<&'a ChannelConfig, Failure> {
    settings.alerts.channel(name).ok_or_else(|| {
        let known: Vec<&str> = settings
            .alerts
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        Failure::usage(format!(
            "no alert channel named {name:?} in the configuration ({}); channels are [[alerts.channel]] tables in stockade.toml",
            if known.is_empty() {
                "none is configured".to_owned()
            } else {
                format!("configured: {}", known.join(", "))
            }
        ))
    })
}

async fn status(settings: &Settings) -> Result<(), Failure> {
    let vault = open_vault(settings).await?;
    let statuses = stockade_alerts::channel_statuses(vault.store()).await?;
    let creds: Vec<String> = vault
        .list_credentials()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    if settings.alerts.channels.is_empty() {
        println!(
            "no alert channels configured: alerts are kept on the dashboard only (add [[alerts.channel]] to stockade.toml, see docs/alerts.md)"
        );
    }
    for c in &settings.alerts.channels {
        let s = statuses.iter().find(|s| s.name == c.name);
        let missing: Vec<&str> = c
            .kind
            .secret_fields()
            .iter()
            .copied()
            .filter(|f| !creds.contains(&c.credential_name(f)))
            .collect();
        println!(
            "{:<20} {:<13} {:<14} pending {:<5} held {:<5} sent {:<6} {}+ {}",
            c.name,
            c.kind.as_str(),
            s.map_or("not started", |s| s.status.as_str()),
            s.map_or(0, |s| s.pending),
            s.map_or(0, |s| s.held),
            s.map_or(0, |s| s.sent),
            c.min_severity,
            if missing.is_empty() {
                "secrets set".to_owned()
            } else {
                format!(
                    "MISSING SECRETS {} (stockade alert secret set {})",
                    missing.join(", "),
                    c.name
                )
            }
        );
        if let Some(s) = s {
            if let Some(e) = &s.last_error
                && s.status != "ok"
            {
                println!("    last error: {e}");
            }
            if let Some(t) = s.last_ok_ms {
                println!("    last delivered: {}", format_rfc3339_ms(t));
            }
        }
    }
    for s in statuses
        .iter()
        .filter(|s| settings.alerts.channel(&s.name).is_none())
    {
        println!(
            "{:<20} {:<13} no longer configured; pending {} held {} (not sent)",
            s.name, s.kind, s.pending, s.held
        );
    }
    Ok(())
}

/// Every alert, newest first, dated by when it happened (the event's time, UTC), with
/// where it went: each channel's delivery state, or "dashboard only" with no channel.
async fn list(settings: &Settings, limit: i64) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let rows = stockade_alerts::alert_history(&store, limit).await;
    store.close().await;
    let rows = rows.map_err(|e| Failure::runtime(format!("cannot read the alerts: {e}")))?;
    if rows.is_empty() {
        println!("no alerts yet");
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<7} {:<20} {:<24} what",
        "time (UTC)", "severity", "source", "kind", "delivery"
    );
    for r in rows {
        let a = &r.alert;
        println!(
            "{:<24} {:<8} {:<7} {:<20} {:<24} {}",
            format_rfc3339_ms(a.at_ms),
            a.severity,
            a.source,
            a.kind,
            r.delivery_summary(),
            a.title
        );
    }
    Ok(())
}

async fn test(settings: &Settings, name: &str) -> Result<(), Failure> {
    let cfg = channel(settings, name)?.clone();
    let vault = open_vault(settings).await?;
    let env = vault.environment();
    let gateway =
        stockade_egress::Gateway::new(settings.egress_config(env), Some(vault.store().clone()))
            .map_err(|e| Failure::usage(format!("[egress] configuration: {e}")))?;
    let outcome = stockade_alerts::test_channel(
        vault.store(),
        &vault,
        &gateway,
        &cfg,
        settings.alerts.dashboard_url.clone(),
        settings.alerts.language,
        &CLI_ACTOR,
    )
    .await
    .map_err(alerts_failure)?;
    let _ = gateway.flush().await;
    let platform = cfg.kind.platform();
    match outcome {
        Outcome::Delivered { detail } => {
            println!("delivered: {platform} accepted the signed test message ({detail})");
            Ok(())
        }
        Outcome::Config { detail } => Err(Failure::runtime(format!(
            "not delivered, configuration error: {detail}"
        ))),
        Outcome::RateLimited { detail, wait } => Err(Failure::runtime(format!(
            "not delivered, rate-limited: {detail}; try again in {} s",
            wait.as_secs().max(1)
        ))),
        Outcome::Transient { detail } => Err(Failure::runtime(format!(
            "not delivered: {detail}; check the network and the channel's url, then try again"
        ))),
    }
}

async fn set_secret(
    settings: &Settings,
    name: &str,
    creds: &CredentialsArgs,
) -> Result<(), Failure> {
    let cfg = channel(settings, name)?.clone();
    let fields = read_credentials(creds)?;
    let allowed = cfg.kind.secret_fields();
    for (f, _) in &fields {
        if !allowed.contains(&f.as_str()) {
            return Err(Failure::usage(format!(
                "a {} channel has no secret field {f:?}; its fields are {}",
                cfg.kind.as_str(),
                allowed.join(", ")
            )));
        }
    }
    if fields.is_empty() {
        return Err(Failure::usage(format!(
            "no fields given; a {} channel needs {}",
            cfg.kind.as_str(),
            allowed.join(", ")
        )));
    }
    if let Some((_, s)) = fields.iter().find(|(f, _)| f == "secret")
        && cfg.kind == stockade_alerts::ChannelKind::Dingtalk
        && !s.expose_secret().starts_with("SEC")
    {
        return Err(Failure::usage(
            "a DingTalk robot's signing secret starts with SEC (copy it from the robot's security settings, 加签)",
        ));
    }
    let vault = Arc::new(open_vault(settings).await?);
    let scopes = CredentialScopes {
        workflows: vec![],
        hosts: cfg.host().into_iter().collect(),
    };
    let owner = KeyOwner::system();
    let mut names = Vec::new();
    for (field, secret) in &fields {
        let cred = cfg.credential_name(field);
        vault
            .put_credential(
                &NewCredential {
                    name: &cred,
                    kind: &format!("alert_{field}"),
                    secret,
                    owner: &owner,
                    scopes: &scopes,
                    account: None,
                },
                &CLI_ACTOR,
            )
            .await?;
        names.push(field.as_str());
    }
    println!(
        "stored {} for alert channel {name} (encrypted; a running server uses them for the next message). Check with: stockade alert test --channel {name}",
        names.join(", ")
    );
    let missing: Vec<&&str> = allowed
        .iter()
        .filter(|f| !fields.iter().any(|(g, _)| g == *f))
        .collect();
    if !missing.is_empty() {
        let creds: Vec<String> = vault
            .list_credentials()
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let still: Vec<&str> = missing
            .iter()
            .filter(|f| !creds.contains(&cfg.credential_name(f)))
            .map(|f| **f)
            .collect();
        if !still.is_empty() {
            println!("still missing: {}", still.join(", "));
        }
    }
    Ok(())
}

async fn retry(settings: &Settings, name: &str) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    if settings.alerts.channel(name).is_none() {
        channel(settings, name)?;
    }
    let n = stockade_alerts::release_held(&store, name, "stockade alert retry")
        .await
        .map_err(alerts_failure)?;
    println!("released {n} held alert(s) of channel {name}: a running server sends them now");
    Ok(())
}

fn alerts_failure(e: stockade_alerts::AlertsError) -> Failure {
    match e {
        stockade_alerts::AlertsError::Store(s) => s.into(),
        other => Failure::usage(other.to_string()),
    }
}
