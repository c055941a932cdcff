//! `stockade bench mirror`: audit rows appended at a target rate for a while, copied by
//! the audit mirror to a REAL NocoDB (the installed 0.301.3, started on loopback behind a
//! TLS terminator) or to the sandbox's simulator. Prints the lag from a row's commit to
//! its batch being confirmed by NocoDB (p50/p99/max), rows/s mirrored, whether the mirror
//! kept up, and with `--backlog N` the time to drain N rows written while the mirror was
//! stopped. Ends with `audit mirror verify` (every row once, in order).
//!
//! The arithmetic that bounds it: at most 100 rows per request and NocoDB's limit of
//! 5 requests/s per user make at most 500 rows/s; `--rps` raises the pace above NocoDB's
//! documented limit to measure what NocoDB itself sustains.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_core::{Actor, Environment, SecretString};
use stockade_egress::{EgressConfig, Gateway};
use stockade_mirror::{Mirror, MirrorConfig, MirrorDeps, MirrorTelemetry, Noco, NocoSinkConfig};
use stockade_sandbox::nocodb_real::{RealNoco, installed_nocodb};
use stockade_sandbox::{NocoSim, SIM_BASE_TITLE};
use stockade_store::{AuditDetails, AuditEntry, Change, DatabaseUrl, Store, StoreOptions};
use stockade_vault::{
    CredentialScopes, KeyOwner, MasterKeySource, MasterKeys, NewCredential, Vault,
};

use super::demo::parse_duration;
use super::live::temp_dir;
use crate::cli::BenchMirrorArgs;
use crate::exit::Failure;

const ACTOR: Actor = Actor::System("bench");
const SIM_TOKEN: &str = "bench-sim-token-0123456789abcdefghijklmn";

fn fail(what: &str) -> impl Fn(String) -> Failure + '_ {
    move |e| Failure::runtime(format!("{what}: {e}"))
}

/// The NocoDB the bench writes to.
enum Target {
    Real(Box<RealNoco>),
    Sim(NocoSim),
}

struct Rig {
    dir: std::path::PathBuf,
    store: Store,
    vault: Arc<Vault>,
    gateway: Gateway,
    cfg: NocoSinkConfig,
    target: Target,
}

async fn rig(args: &BenchMirrorArgs) -> Result<Rig, Failure> {
    let dir = temp_dir("stockade-bench-mirror")?;
    let url = DatabaseUrl::Sqlite(dir.join("stockade.db"));
    let store = Store::init(&url, Environment::Dev, &StoreOptions::default())
        .await?
        .0;
    let key = dir.join("master.key");
    let master = MasterKeys::generate(Environment::Dev, MasterKeySource::File(key.clone()))
        .map_err(|e| Failure::runtime(e.to_string()))?;
    master
        .write_new_file(&key)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    let vault = Arc::new(Vault::bootstrap(store.clone(), master, &ACTOR).await?);
    let real_dir = match &args.nocodb_dir {
        Some(d) => Some(d.clone()),
        None if !args.simulator => installed_nocodb(),
        None => None,
    };
    let (target, token, base, authority, ca) = match real_dir {
        Some(d) => {
            println!("starting the real NocoDB in {} …", d.display());
            let real = RealNoco::start(&d)
                .await
                .map_err(|e| fail("NocoDB")(e.to_string()))?;
            let (token, _) = real
                .set_up("audit")
                .await
                .map_err(|e| fail("NocoDB set-up")(e.to_string()))?;
            let (a, ca) = (real.authority(), real.proxy.ca_pem.clone());
            (
                Target::Real(Box::new(real)),
                token,
                "audit".to_owned(),
                a,
                ca,
            )
        }
        None => {
            println!("NocoDB simulator (no real NocoDB installed, or --simulator)");
            let sim = NocoSim::start(SIM_TOKEN)
                .await
                .map_err(|e| fail("simulator")(e.to_string()))?;
            let (a, ca) = (
                sim.base_url.trim_start_matches("https://").to_owned(),
                sim.ca_pem.clone(),
            );
            (
                Target::Sim(sim),
                SIM_TOKEN.to_owned(),
                SIM_BASE_TITLE.to_owned(),
                a,
                ca,
            )
        }
    };
    vault
        .put_credential(
            &NewCredential {
                name: "noco",
                kind: "secret",
                secret: &SecretString::from(token),
                owner: &KeyOwner::system(),
                scopes: &CredentialScopes {
                    workflows: vec!["audit-mirror".into()],
                    hosts: vec!["127.0.0.1".into()],
                },
                account: None,
            },
            &ACTOR,
        )
        .await?;
    let mut ecfg = EgressConfig::new(Environment::Dev);
    ecfg.allowed_hosts = vec![authority.clone()];
    ecfg.extra_root_pems = vec![ca];
    let gateway =
        Gateway::new(ecfg, Some(store.clone())).map_err(|e| fail("gateway")(e.to_string()))?;
    let base_url = format!("https://{authority}");
    let mut cfg = NocoSinkConfig::new(&base_url, &base, None, "noco", None, Some(args.batch))
        .map_err(Failure::usage)?;
    // Above NocoDB's documented 5/s only here, to measure what NocoDB itself sustains.
    cfg.requests_per_second = args.rps;
    Ok(Rig {
        dir,
        store,
        vault,
        gateway,
        cfg,
        target,
    })
}

async fn append(store: &Store, n: usize) -> Result<(), Failure> {
    let changes = (0..n)
        .map(|i| {
            Change::event(AuditEntry::new(
                "bench.row",
                format!("bench:{i}"),
                AuditDetails::new()
                    .int("i", i as i64)
                    .str("note", "a typical audit detail of moderate length"),
            ))
        })
        .collect();
    store.commit(&ACTOR, changes).await?;
    Ok(())
}

async fn acked(store: &Store) -> i64 {
    stockade_mirror::state::get(store, stockade_mirror::SINK_NOCODB)
        .await
        .ok()
        .flatten()
        .map_or(0, |s| s.acked_seq)
}

async fn head(store: &Store) -> i64 {
    store.audit_head().await.ok().flatten().map_or(0, |h| h.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// Write at `rate` rows/s for `duration` while the mirror runs; per-row lag (s) from
/// commit to confirmation, measured until caught up (or `limit`).
async fn steady(
    rig: &Rig,
    rate: f64,
    duration: Duration,
    limit: Duration,
) -> Result<(Vec<f64>, f64, bool), Failure> {
    let tick = Duration::from_millis(20);
    let per_tick = rate * tick.as_secs_f64();
    let started = Instant::now();
    let first = head(&rig.store).await + 1;
    let mut written: VecDeque<(i64, Instant)> = VecDeque::new();
    let mut lags = Vec::new();
    let (mut owed, mut next) = (0.0f64, Instant::now());
    let mut seen = acked(&rig.store).await;
    loop {
        let now = Instant::now();
        let writing = now.duration_since(started) < duration;
        if writing && now >= next {
            owed += per_tick;
            let n = owed.floor() as usize;
            if n > 0 {
                owed -= n as f64;
                append(&rig.store, n).await?;
                written.push_back((head(&rig.store).await, Instant::now()));
            }
            next += tick;
        }
        let a = acked(&rig.store).await;
        if a > seen {
            let t = Instant::now();
            let mut prev = seen.max(first - 1);
            while let Some(&(upto, at)) = written.front() {
                let top = upto.min(a);
                if top > prev {
                    lags.extend(std::iter::repeat_n(
                        t.duration_since(at).as_secs_f64(),
                        (top - prev) as usize,
                    ));
                    prev = top;
                }
                if upto <= a {
                    written.pop_front();
                } else {
                    break;
                }
            }
            seen = a;
        }
        if !writing && written.is_empty() {
            break;
        }
        if started.elapsed() > duration + limit {
            return Ok((lags, started.elapsed().as_secs_f64(), false));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((lags, started.elapsed().as_secs_f64(), true))
}

pub async fn mirror(args: BenchMirrorArgs) -> Result<(), Failure> {
    let duration = parse_duration(&args.duration, "--duration")?;
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(args.rps) || !(1..=100).contains(&args.batch) || !positive(args.rate) {
        return Err(Failure::usage(
            "--rps and --rate must be above 0, --batch from 1 to 100",
        ));
    }
    let rig = rig(&args).await?;
    let noco = Noco::connect(&rig.gateway, &rig.vault, &rig.cfg)
        .await
        .map_err(|e| fail("NocoDB")(e.to_string()))?;
    stockade_mirror::init(&noco)
        .await
        .map_err(|e| fail("init")(e.to_string()))?;
    let deps = MirrorDeps {
        store: rig.store.clone(),
        vault: rig.vault.clone(),
        gateway: rig.gateway.clone(),
        telemetry: MirrorTelemetry::default(),
    };
    let mcfg = MirrorConfig {
        nocodb: Some(rig.cfg.clone()),
        ..MirrorConfig::default()
    };
    println!(
        "pace {} requests/s × {} rows per request (ceiling {:.0} rows/s)",
        rig.cfg.requests_per_second,
        rig.cfg.batch,
        rig.cfg.requests_per_second * rig.cfg.batch as f64
    );
    if args.backlog > 0 {
        let mut left = args.backlog;
        while left > 0 {
            let n = left.min(1000);
            append(&rig.store, n).await?;
            left -= n;
        }
        let m = Mirror::start(deps.clone(), &mcfg);
        let t = Instant::now();
        let target = head(&rig.store).await;
        while acked(&rig.store).await < target {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "backlog: {} rows written with the mirror stopped drained in {secs:.1} s ({:.0} rows/s)",
            args.backlog,
            args.backlog as f64 / secs
        );
        m.stop(Duration::from_secs(5)).await;
    }
    let m = Mirror::start(deps, &mcfg);
    let (mut lags, secs, caught) = steady(
        &rig,
        args.rate,
        duration,
        Duration::from_secs(args.catch_up_limit_s),
    )
    .await?;
    m.stop(Duration::from_secs(5)).await;
    lags.sort_by(f64::total_cmp);
    let rows = lags.len();
    println!(
        "steady: {:.0} rows/s offered for {} s; {rows} rows mirrored in {secs:.1} s ({:.0} rows/s){}",
        args.rate,
        duration.as_secs(),
        rows as f64 / secs,
        if caught {
            ""
        } else {
            " — NOT caught up within the limit"
        }
    );
    println!(
        "lag commit→NocoDB: p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0.0)
    );
    let table = noco
        .open_table()
        .await
        .map_err(|e| fail("NocoDB")(e.to_string()))?;
    let t = Instant::now();
    let v = stockade_mirror::verify::verify(&rig.store, &noco, &table)
        .await
        .map_err(|e| fail("verify")(e.to_string()))?;
    println!(
        "verify: {} rows compared in {:.1} s, {}",
        v.rows_compared,
        t.elapsed().as_secs_f64(),
        v.difference.as_ref().map_or_else(
            || "every row once, in order".to_owned(),
            ToString::to_string
        )
    );
    let Rig {
        dir,
        store,
        vault,
        target,
        ..
    } = rig;
    drop(vault);
    store.close().await;
    match target {
        Target::Sim(s) => s.shutdown().await,
        Target::Real(r) => drop(r),
    }
    let _ = std::fs::remove_dir_all(dir);
    if v.difference.is_some() {
        return Err(Failure::verification("NocoDB differs from the audit chain"));
    }
    Ok(())
}
