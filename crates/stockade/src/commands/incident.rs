//! `stockade incident …`: the incident kit from a shell. Every action is the library's
//! ([`stockade_incident::IncidentKit`]), as the CLI actor; the controls it writes
//! (isolation, lockdown) reach a running server within a second.

use std::sync::Arc;

use stockade_access::Access;
use stockade_incident::{
    IncidentError, IncidentKit, Isolate, NewIncident, Party, Release, RevokeTarget, Scope, Severity,
};

use super::{CLI_ACTOR, open_store, open_vault};
use crate::cli_incident::IncidentCommand;
use crate::exit::Failure;
use crate::settings::Settings;

impl From<IncidentError> for Failure {
    fn from(e: IncidentError) -> Self {
        match e {
            IncidentError::Refused(m) | IncidentError::NotFound(m) => Failure::usage(m),
            IncidentError::Store(e) => e.into(),
            IncidentError::Access(e) => e.into(),
            IncidentError::Vault(e) => e.into(),
            other => Failure::runtime(other.to_string()),
        }
    }
}

async fn kit(settings: &Settings) -> Result<IncidentKit, Failure> {
    let vault = Arc::new(open_vault(settings).await?);
    let access = Access::new(vault, settings.access.clone()).await?;
    Ok(IncidentKit::new(Arc::new(access)))
}

fn scope(v: &str) -> Scope {
    if v.eq_ignore_ascii_case("all") {
        Scope::All
    } else {
        Scope::One(v.to_owned())
    }
}

pub async fn run(settings: &Settings, cmd: IncidentCommand) -> Result<(), Failure> {
    let actor = CLI_ACTOR;
    match cmd {
        IncidentCommand::Open {
            title,
            severity,
            drill,
            detected_at,
        } => {
            let severity: Severity = severity.parse()?;
            let detected_at_ms = match detected_at {
                None => None,
                Some(t) => Some(stockade_core::time::parse_rfc3339_ms(&t).ok_or_else(|| {
                    Failure::usage(
                        "--detected-at must be an RFC 3339 time, e.g. 2026-03-01T08:30:00Z; nothing was opened",
                    )
                })?),
            };
            let kit = kit(settings).await?;
            let inc = kit
                .open(
                    &actor,
                    NewIncident {
                        title,
                        severity,
                        drill,
                        detected_at_ms,
                    },
                )
                .await?;
            let what = if inc.drill { "drill" } else { "incident" };
            println!("opened {what} #{} ({})", inc.id, inc.severity);
            let view = stockade_incident::show(kit.store(), inc.id).await?;
            for d in &view.deadlines {
                println!("  {}", d.line());
            }
            if inc.drill {
                println!(
                    "drill: nothing real will be revoked or locked; go through revoke, isolate, lockdown, release, close and report"
                );
            }
            Ok(())
        }
        IncidentCommand::Revoke {
            credential,
            connection,
            api_keys,
            sessions,
            incident,
        } => {
            let target = match (credential, connection, api_keys, sessions) {
                (Some(n), ..) => RevokeTarget::Credential(n),
                (_, Some(n), ..) => RevokeTarget::Connection(n),
                (_, _, Some(k), _) => RevokeTarget::ApiKeys(scope(&k)),
                (.., Some(s)) => RevokeTarget::Sessions(scope(&s)),
                _ => {
                    return Err(Failure::usage(
                        "say what to revoke: --credential, --connection, --api-keys or --sessions",
                    ));
                }
            };
            let out = kit(settings)
                .await?
                .revoke(&actor, incident, target)
                .await?;
            println!(
                "incident #{}: revoke {} — {} ({})",
                out.incident_id, out.target, out.summary, out.affected
            );
            Ok(())
        }
        IncidentCommand::Isolate {
            workflow,
            connection,
            incident,
        } => {
            let what = match (workflow, connection) {
                (Some(w), _) => Isolate::Workflow(w),
                (_, Some(c)) => Isolate::Connection(c),
                _ => {
                    return Err(Failure::usage(
                        "say what to isolate: --workflow or --connection",
                    ));
                }
            };
            let out = kit(settings).await?.isolate(&actor, incident, what).await?;
            println!(
                "incident #{}: {} — {}",
                out.incident_id, out.target, out.summary
            );
            if !out.drill {
                println!(
                    "a running server obeys within 1 s; lift it with `stockade incident release`"
                );
            }
            Ok(())
        }
        IncidentCommand::Release {
            workflow,
            connection,
            lockdown,
            incident,
        } => {
            let what = match (workflow, connection, lockdown) {
                (Some(w), ..) => Release::Workflow(w),
                (_, Some(c), _) => Release::Connection(c),
                (_, _, true) => Release::Lockdown,
                _ => {
                    return Err(Failure::usage(
                        "say what to release: --workflow, --connection or --lockdown",
                    ));
                }
            };
            let out = kit(settings).await?.release(&actor, incident, what).await?;
            println!("incident #{}: {}", out.incident_id, out.summary);
            Ok(())
        }
        IncidentCommand::Lockdown { incident } => {
            let out = kit(settings).await?.lockdown(&actor, incident).await?;
            println!("incident #{}: {}", out.incident_id, out.summary);
            if !out.drill {
                println!(
                    "a running server obeys within 1 s; lift it with `stockade incident release --lockdown`"
                );
            }
            Ok(())
        }
        IncidentCommand::Note { id, text } => {
            kit(settings).await?.note(&actor, id, &text).await?;
            println!("incident #{id}: note added");
            Ok(())
        }
        IncidentCommand::Notify { id, party, note } => {
            let party: Party = party.parse()?;
            let kit = kit(settings).await?;
            kit.notify(&actor, id, party, &note).await?;
            let view = stockade_incident::show(kit.store(), id).await?;
            if let Some(d) = view.deadlines.iter().find(|d| d.party == party) {
                println!("incident #{id}: {}", d.line());
            }
            Ok(())
        }
        IncidentCommand::Close { id, root_cause } => {
            let inc = kit(settings).await?.close(&actor, id, &root_cause).await?;
            println!("incident #{} closed", inc.id);
            Ok(())
        }
        IncidentCommand::List => {
            let store = open_store(settings).await?;
            let all = stockade_incident::list(&store).await?;
            if all.is_empty() {
                println!("no incidents or drills recorded");
            }
            for s in all {
                let i = &s.incident;
                println!(
                    "#{} {} {} {} opened {}{} — {}",
                    i.id,
                    if i.drill { "drill" } else { "incident" },
                    i.severity,
                    if i.is_open() { "open" } else { "closed" },
                    stockade_core::time::format_rfc3339_s(i.opened_at_ms),
                    i.closed_at_ms
                        .map(|c| format!(", closed {}", stockade_core::time::format_rfc3339_s(c)))
                        .unwrap_or_default(),
                    i.title
                );
                for d in &s.deadlines {
                    println!("    {}", d.line());
                }
            }
            Ok(())
        }
        IncidentCommand::Show { id } => {
            let store = open_store(settings).await?;
            let v = stockade_incident::show(&store, id).await?;
            let i = &v.incident;
            println!(
                "#{} {}: {}",
                i.id,
                if i.drill { "drill" } else { "incident" },
                i.title
            );
            println!("severity: {}", i.severity);
            println!("status: {}", if i.is_open() { "open" } else { "closed" });
            println!(
                "detected: {}",
                stockade_core::time::format_rfc3339_s(i.detected_at_ms)
            );
            if let Some(r) = &i.root_cause {
                println!("root cause: {r}");
            }
            println!("deadlines:");
            for d in &v.deadlines {
                println!("  {}", d.line());
            }
            println!("controls in force:");
            if v.controls.is_empty() {
                println!("  none");
            }
            for c in &v.controls {
                println!(
                    "  {}{}{}",
                    c.kind,
                    if c.name.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", c.name)
                    },
                    if c.drill {
                        " (drill, not enforced)"
                    } else {
                        ""
                    }
                );
            }
            println!("timeline:");
            for t in &v.timeline {
                println!(
                    "  {} {} {}{} — {}",
                    stockade_core::time::format_rfc3339_s(t.at_ms),
                    t.actor,
                    t.step,
                    if t.target.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", t.target)
                    },
                    t.detail
                );
            }
            Ok(())
        }
        IncidentCommand::Report { id, format } => {
            let kit = kit(settings).await?;
            let v = stockade_incident::show(kit.store(), id).await?;
            kit.record_report(&actor, id, &format).await?;
            if format == "json" {
                let text = serde_json::to_string_pretty(&stockade_incident::report::json(&v))
                    .map_err(|e| Failure::runtime(format!("cannot render the report: {e}")))?;
                println!("{text}");
            } else {
                let md = stockade_incident::report::markdown(&v, Some(settings.console.timezone));
                println!("{}", md.trim_end());
            }
            Ok(())
        }
    }
}
