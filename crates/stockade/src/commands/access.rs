//! `stockade user|apikey|ban`: access control from the command line (audited as
//! `system:cli`).

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use stockade_access::{Access, Role};
use stockade_core::{SecretString, time::format_rfc3339_ms};

use super::{CLI_ACTOR, open_vault};
use crate::cli::{ApikeyCommand, BanCommand, PasswordArgs, UserCommand};
use crate::exit::Failure;
use crate::settings::Settings;

async fn open_access(settings: &Settings) -> Result<Access, Failure> {
    let vault = open_vault(settings).await?;
    Ok(Access::new(Arc::new(vault), settings.access.clone()).await?)
}

fn read_password(args: &PasswordArgs) -> Result<SecretString, Failure> {
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::runtime(format!("cannot read the password from stdin: {e}")))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        zeroize::Zeroize::zeroize(&mut line);
        return Ok(SecretString::from(pw));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(
            "no terminal to prompt for the password: pipe it in with --password-stdin",
        ));
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| Failure::runtime(format!("cannot read the password: {e}")))?;
    let second = rpassword::prompt_password("Repeat password: ")
        .map_err(|e| Failure::runtime(format!("cannot read the password: {e}")))?;
    let same = first == second;
    let first = SecretString::from(first);
    drop(SecretString::from(second));
    if !same {
        return Err(Failure::usage(
            "the two passwords differ; nothing was changed",
        ));
    }
    Ok(first)
}

fn role(text: &str) -> Result<Role, Failure> {
    text.parse::<Role>()
        .map_err(|e| Failure::usage(e.to_string()))
}

pub async fn user(settings: &Settings, cmd: UserCommand) -> Result<(), Failure> {
    // Read the password before opening anything, so a prompt is not left waiting on a lock.
    let password = match &cmd {
        UserCommand::Add { password, .. } | UserCommand::SetPassword { password, .. } => {
            Some(read_password(password)?)
        }
        _ => None,
    };
    let access = open_access(settings).await?;
    match cmd {
        UserCommand::Add { email, role: r, .. } => {
            let r = role(&r)?;
            let pw = password.ok_or_else(|| Failure::usage("a password is required"))?;
            let u = access.add_user(&email, r, &pw, &CLI_ACTOR).await?;
            println!(
                "user {} added as {} ({}); TOTP enrollment happens at first sign-in",
                u.email, u.role, u.id
            );
        }
        UserCommand::List => {
            println!(
                "{:<20} {:<32} {:<9} {:<5} {:<9} created",
                "id", "email", "role", "mfa", "state"
            );
            for u in access.users().await? {
                println!(
                    "{:<20} {:<32} {:<9} {:<5} {:<9} {}",
                    u.id,
                    u.email,
                    u.role,
                    if u.mfa_enrolled { "yes" } else { "no" },
                    if u.disabled { "disabled" } else { "active" },
                    format_rfc3339_ms(u.created_at_ms)
                );
            }
        }
        UserCommand::Disable { email } => {
            let u = access.set_disabled(&email, true, &CLI_ACTOR).await?;
            println!("user {} disabled; their sessions are ended", u.email);
        }
        UserCommand::Enable { email } => {
            let u = access.set_disabled(&email, false, &CLI_ACTOR).await?;
            println!("user {} enabled", u.email);
        }
        UserCommand::SetRole { email, role: r } => {
            let u = access.set_role(&email, role(&r)?, &CLI_ACTOR).await?;
            println!("user {} is now {}", u.email, u.role);
        }
        UserCommand::ResetMfa { email } => {
            let u = access.reset_mfa(&email, &CLI_ACTOR).await?;
            println!(
                "TOTP and recovery codes removed for {}; they enroll again at next sign-in",
                u.email
            );
        }
        UserCommand::SetPassword { email, .. } => {
            let pw = password.ok_or_else(|| Failure::usage("a password is required"))?;
            access.set_password(&email, &pw, &CLI_ACTOR).await?;
            println!("password changed; the user's sessions are ended");
        }
    }
    Ok(())
}

pub async fn apikey(settings: &Settings, cmd: ApikeyCommand) -> Result<(), Failure> {
    let access = open_access(settings).await?;
    match cmd {
        ApikeyCommand::Create {
            name,
            role: r,
            expires,
        } => {
            let expires_in = stockade_access::service::parse_duration(&expires)?;
            let (info, token) = access
                .create_api_key(&name, role(&r)?, expires_in, &CLI_ACTOR)
                .await?;
            eprintln!(
                "API key {} ({}, {}) created, expires {}. It is shown once, now:",
                info.name,
                info.role,
                info.id,
                info.expires_at_ms
                    .map_or_else(|| "never".into(), format_rfc3339_ms)
            );
            println!("{}", token.expose_secret());
        }
        ApikeyCommand::List => {
            println!(
                "{:<17} {:<20} {:<9} {:<8} {:<25} {:<25} state",
                "id", "name", "role", "env", "expires", "last used"
            );
            for k in access.api_keys().await? {
                let now = stockade_core::time::now_ms();
                let state = if k.revoked_at_ms.is_some() {
                    "revoked"
                } else if k.expires_at_ms.is_some_and(|e| now >= e) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<17} {:<20} {:<9} {:<8} {:<25} {:<25} {}",
                    k.id,
                    k.name,
                    k.role,
                    k.env,
                    k.expires_at_ms
                        .map_or_else(|| "never".into(), format_rfc3339_ms),
                    k.last_used_at_ms
                        .map_or_else(|| "never".into(), format_rfc3339_ms),
                    state
                );
            }
        }
        ApikeyCommand::Revoke { key } => {
            let k = access.revoke_api_key(&key, &CLI_ACTOR).await?;
            println!(
                "API key {} ({}) revoked; it fails from its next request",
                k.name, k.id
            );
        }
    }
    Ok(())
}

pub async fn ban(settings: &Settings, cmd: BanCommand) -> Result<(), Failure> {
    let access = open_access(settings).await?;
    let parse_ip = |t: &str| {
        t.trim()
            .parse::<std::net::IpAddr>()
            .map_err(|_| Failure::usage(format!("{t:?} is not an IPv4 or IPv6 address")))
    };
    match cmd {
        BanCommand::List { all } => {
            println!(
                "{:<40} {:<25} {:<25} {:>5} {:<8} state",
                "address", "since", "until", "count", "reason"
            );
            let now_s = stockade_core::time::now_ms() / 1000;
            for b in access.bans(all).await? {
                println!(
                    "{:<40} {:<25} {:<25} {:>5} {:<8} {}",
                    b.ip,
                    format_rfc3339_ms(b.since_s * 1000),
                    b.until_s
                        .map_or_else(|| "permanent".into(), |u| format_rfc3339_ms(u * 1000)),
                    b.count,
                    if b.recidive { "recidive" } else { &b.reason },
                    if b.lifted_at_s.is_some() {
                        "lifted"
                    } else if b.active_at(now_s) {
                        "active"
                    } else {
                        "expired"
                    }
                );
            }
        }
        BanCommand::Add { ip, duration } => {
            let ip = parse_ip(&ip)?;
            let d = stockade_access::service::parse_duration(&duration)?;
            let b = access.add_ban(ip, d, &CLI_ACTOR).await?;
            println!(
                "{} banned until {} (running servers pick it up within seconds)",
                b.ip,
                b.until_s
                    .map_or_else(|| "lifted by hand".into(), |u| format_rfc3339_ms(u * 1000))
            );
        }
        BanCommand::Remove { ip } => {
            let ip = parse_ip(&ip)?;
            access.remove_ban(ip, &CLI_ACTOR).await?;
            println!("bans on {ip} lifted (running servers pick it up within seconds)");
        }
    }
    Ok(())
}
