//! `stockade demo`: the live sync on a throw-away dev environment (see [`super::live`]).
//!
//! The screen is the summary only (the log goes to a file, see `main.rs`): redrawn in
//! place on a terminal, one plain line every few seconds otherwise. A demo admin with a
//! generated password and TOTP is made, and how to sign in to the dashboard is printed:
//! the environment is dev, thrown away at the end, so showing them is harmless.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use stockade_access::Role;
use stockade_core::{Actor, SecretString};
use stockade_sync::SyncOptions;

use super::demo_screen::Screen;
use super::live::{Rig, RigOptions};
use crate::cli::DemoArgs;
use crate::exit::Failure;

/// The demo admin's email address.
pub const ADMIN_EMAIL: &str = "admin@demo.example";

/// How long settling and the checks may take after Ctrl-C (clean-up has its own bound).
const STOP_BUDGET: Duration = Duration::from_millis(1200);

pub fn parse_duration(text: &str, flag: &str) -> Result<Duration, Failure> {
    match stockade_access::service::parse_duration(text) {
        Ok(Some(s)) => Ok(Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX))),
        _ => Err(Failure::usage(format!(
            "{flag} {text:?}: use a duration like 30s, 5m or 1h"
        ))),
    }
}

/// A strong password from a random source: four groups of five letters and digits
/// (no look-alikes) joined by dashes, with an upper-case letter and a digit.
fn strong_password() -> Result<String, Failure> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Failure::runtime("the system random number generator failed"))?;
    let mut chars: Vec<char> = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    chars[0] = chars[0].to_ascii_uppercase();
    if !chars[0].is_ascii_uppercase() {
        chars[0] = 'K';
    }
    if !chars[19].is_ascii_digit() {
        chars[19] = char::from(b'2' + bytes[19] % 8);
    }
    Ok(chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

/// The demo admin: a generated password and TOTP enrolled. Returns (password, secret).
async fn demo_admin(rig: &Rig) -> Result<(String, String), Failure> {
    let actor = Actor::System("demo");
    let password = strong_password()?;
    rig.access
        .add_user(
            ADMIN_EMAIL,
            Role::Admin,
            &SecretString::from(password.clone()),
            &actor,
        )
        .await?;
    let (_, secret) = rig
        .access
        .enroll_totp_unattended(ADMIN_EMAIL, &actor)
        .await?;
    Ok((password, secret.to_base32().to_string()))
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let duration = args
        .duration
        .as_deref()
        .map(|d| parse_duration(d, "--duration"))
        .transpose()?;
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        return Err(Failure::usage(
            "--rate must be between 0 and 100000 orders a second",
        ));
    }
    let log = args.log.clone().unwrap_or_default();
    println!(
        "Stockade demo: a throw-away dev environment with the TikTok Shop, Amazon and eBay simulators."
    );
    println!(
        "Log: {}  (the screen shows the summary only)",
        log.display()
    );
    println!("Starting…");
    let skus = args.skus.clamp(1, 10_000);
    let rig = start_rig(&args, skus).await?;
    let ca = rig.dir.join("ca.pem");
    std::fs::write(&ca, &rig.sb.ca_pem)
        .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", ca.display())))?;
    let (password, secret) = demo_admin(&rig).await?;
    tracing::info!(server = %rig.server, "demo started");
    let intro = intro(&rig, &args, &log, &ca, &password, &secret, skus);
    drop(password);
    let interrupted = show_live(&rig, &intro, duration, args.rate).await;
    let stop_started = Instant::now();
    settle_and_check(&rig, interrupted, stop_started).await?;
    // Whatever is left of the second and a half, at most 0.7 s: the server's graceful
    // shutdown waits on the simulators' keep-alive connections until it is cut short.
    let left = (STOP_BUDGET + Duration::from_millis(300))
        .saturating_sub(stop_started.elapsed())
        .min(Duration::from_millis(700));
    let keep = args.keep;
    let dir = rig.dir.clone();
    rig.finish_within(if interrupted {
        left
    } else {
        Duration::from_secs(30)
    })
    .await;
    if keep {
        println!("Data kept in {}.", dir.display());
    } else {
        println!("Cleaned up.");
    }
    println!("Log: {}", log.display());
    tracing::info!(
        stop_ms = stop_started.elapsed().as_millis() as u64,
        "demo stopped"
    );
    if interrupted {
        return Err(Failure::interrupted());
    }
    Ok(())
}

async fn start_rig(args: &DemoArgs, skus: usize) -> Result<Rig, Failure> {
    Rig::start(RigOptions {
        skus,
        on_hand: 200,
        buffer: 1,
        low_stock_every: 10,
        low_stock_units: None,
        realistic_limits: true,
        postgres: None,
        sync: SyncOptions {
            poll_interval: Some(Duration::from_secs(15)),
            poll_overlap: Duration::from_secs(10),
            reconcile_interval: Some(Duration::from_secs(10)),
            ..SyncOptions::default()
        },
        seed: 7,
        keep: args.keep,
    })
    .await
}

/// Buyers place orders while the summary is shown, until `duration` has passed or
/// Ctrl-C; then the order stream stops. Returns whether Ctrl-C ended it.
async fn show_live(rig: &Rig, intro: &str, duration: Option<Duration>, rate: f64) -> bool {
    let tty = std::io::stdout().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    if !tty {
        println!("{intro}");
    }
    let (stream, placed) = rig.order_stream(rate, true);
    let started = Instant::now();
    let mut screen = Screen::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        let next = duration.map_or(every, |d| every.min(d.saturating_sub(started.elapsed())));
        tokio::select! {
            _ = tokio::time::sleep(next) => {}
            _ = &mut ctrl_c => { interrupted = true; break; }
        }
        let frame = screen
            .frame(
                rig,
                placed.load(std::sync::atomic::Ordering::Relaxed),
                started,
            )
            .await;
        let mut out = std::io::stdout().lock();
        let _ = if tty {
            // Cursor home, clear the screen, then the whole picture.
            write!(out, "\x1b[H\x1b[2J{intro}\n{}", frame.screen)
        } else {
            writeln!(out, "{}", frame.line)
        };
        let _ = out.flush();
        drop(out);
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    stream.abort();
    interrupted
}

/// Lets the last pushes settle, then verifies the audit chain and the stock; after
/// Ctrl-C both within [`STOP_BUDGET`] (counted from `stop_started`), else skipped.
async fn settle_and_check(
    rig: &Rig,
    interrupted: bool,
    stop_started: Instant,
) -> Result<(), Failure> {
    // After Ctrl-C, stop promptly: a short settle, then bounded clean-up. At the end of
    // --duration, let the last pushes settle for longer so the checks see a quiet system.
    let settle = if interrupted {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(10)
    };
    println!(
        "\n{}",
        if interrupted {
            "Stopping (Ctrl-C)…"
        } else {
            "Stopping: letting the last pushes settle…"
        }
    );
    let settle_until = Instant::now() + settle;
    let _ = tokio::time::timeout(settle, rig.sb.flush_deliveries()).await;
    while Instant::now() < settle_until && !rig.sync.settled().await.unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = rig.sync.settled().await.unwrap_or(false);
    let checks = async {
        let verify = rig.store().verify_audit(None).await;
        let stock = stockade_sync::catalog::verify_stock(rig.store()).await;
        (verify, stock)
    };
    let checks_within = if interrupted {
        STOP_BUDGET.saturating_sub(stop_started.elapsed())
    } else {
        Duration::from_secs(30)
    };
    let Ok((verify, stock)) = tokio::time::timeout(checks_within, checks).await else {
        println!(
            "Checks skipped: stopping takes priority (see `stockade audit verify` with --keep)."
        );
        return Ok(());
    };
    let verify = verify?;
    println!(
        "Audit chain: {} rows, {}",
        verify.rows_checked,
        if verify.problem.is_none() {
            "verified"
        } else {
            "BROKEN"
        }
    );
    let mismatches = stock.map_err(|e| Failure::runtime(e.to_string()))?;
    println!(
        "Stock rebuilt from the ledger: {}{}",
        if mismatches.is_empty() {
            "matches".to_owned()
        } else {
            format!("{} SKUs differ", mismatches.len())
        },
        if settled {
            ""
        } else {
            " (pushes were still in flight)"
        }
    );
    Ok(())
}

/// The lines at the top of the screen: where things are and how to sign in.
fn intro(
    rig: &Rig,
    args: &DemoArgs,
    log: &Path,
    ca: &Path,
    password: &str,
    secret: &str,
    skus: usize,
) -> String {
    format!(
        "Stockade demo (dev, throw-away{})   Ctrl-C stops\n\
         \n\
         Dashboard  https://{server}/login  (TLS from the simulators' test CA: {ca})\n\
         Sign in    {ADMIN_EMAIL}  password {password}\n\
         TOTP       secret {secret}  — a code: oathtool --totp -b {secret}\n\
         Log        {log}\n\
         Data       {data}\n\
         Catalog    {skus} SKUs × 3 channels, 200 on hand (every 10th: 10), buffer 1; buyers place {rate} orders/s\n",
        if args.keep {
            ", kept with --keep"
        } else {
            ", deleted at the end"
        },
        server = rig.server,
        ca = ca.display(),
        log = log.display(),
        data = rig.dir.display(),
        rate = args.rate,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn demo_passwords_pass_the_policy_and_differ() {
        let policy = stockade_access::password::PasswordPolicy::default();
        let a = strong_password().unwrap();
        let b = strong_password().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 23, "{a}");
        policy.check(&a, ADMIN_EMAIL).unwrap();
    }
}
