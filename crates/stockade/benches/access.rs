//! Access benchmarks: the cost of a sign-in (one argon2id verification at the configured
//! parameters), API-key authentication (parse, one indexed read, constant-time compare),
//! and the ban check every request passes. Prints figures; asserts nothing about time.
//!
//!   cargo bench -p stockade --bench access

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use stockade_access::password::{HashParams, hash_password, verify_password};
use stockade_access::{Access, AccessConfig, Role};
use stockade_core::{Actor, Environment};
use stockade_store::{DatabaseUrl, Store, StoreOptions};
use stockade_vault::{MasterKeySource, MasterKeys, Vault};

const ACTOR: Actor = Actor::System("bench");

fn quick() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn bench_argon2() {
    let params = HashParams::default();
    let phc = hash_password("Tidal-Orchard-Lantern-42", params).unwrap();
    let rounds = if quick() { 2 } else { 20 };
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        assert!(verify_password(black_box("Tidal-Orchard-Lantern-42"), &phc).unwrap());
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "sign-in password check, argon2id m={} KiB t={} p={}: median {:.1} ms, best {:.1} ms ({} runs, one core)",
        params.m_kib,
        params.t,
        params.p,
        times[times.len() / 2],
        times[0],
        rounds
    );
}

async fn bench_service(label: &str, url: DatabaseUrl, ban_check: bool) {
    let (store, _) = Store::init(&url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    let master = MasterKeys::generate(Environment::Dev, MasterKeySource::EnvVar).unwrap();
    let vault = Vault::bootstrap(store, master, &ACTOR).await.unwrap();
    let access = Arc::new(
        Access::new(Arc::new(vault), AccessConfig::default())
            .await
            .unwrap(),
    );
    let (_, token) = access
        .create_api_key("bench", Role::Viewer, None, &ACTOR)
        .await
        .unwrap();
    let token = token.expose_secret().clone();

    let n = if quick() { 200 } else { 20_000 };
    for _ in 0..n / 10 {
        access.authenticate_api_key(&token).await.unwrap().unwrap();
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..n {
            black_box(
                access
                    .authenticate_api_key(black_box(&token))
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    println!(
        "API key authentication on {label} (indexed read, hash compare, role): {best:.1} µs per request (best of 5 × {n})"
    );
    if !ban_check {
        return;
    }

    // The ban check, with 10,000 other addresses under watch and 1,000 banned.
    for i in 0..10_000u32 {
        let ip = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
        if i < 1_000 {
            access.add_ban(ip, Some(3600), &ACTOR).await.unwrap();
        }
    }
    let probe: IpAddr = "203.0.113.9".parse().unwrap();
    let banned: IpAddr = "10.0.0.5".parse().unwrap();
    assert!(
        access
            .banned(banned, stockade_access::Jail::Interactive)
            .is_some()
    );
    let m = if quick() { 10_000 } else { 5_000_000 };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..m {
            black_box(access.banned(
                black_box(if i % 2 == 0 { probe } else { banned }),
                stockade_access::Jail::Interactive,
            ));
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(m));
    }
    println!("ban check per request (1,000 active bans): {best:.0} ns (best of 5 × {m})");
}

fn main() {
    bench_argon2();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("stockade-bench-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    rt.block_on(bench_service(
        "SQLite",
        DatabaseUrl::Sqlite(dir.join("stockade.db")),
        true,
    ));
    let _ = std::fs::remove_dir_all(&dir);
    match std::env::var("STOCKADE_TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(base) => {
            let schema = format!("bench_access_{}", std::process::id());
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = DatabaseUrl::parse(&format!("{base}{sep}stockade_schema={schema}")).unwrap();
            rt.block_on(async {
                bench_service("PostgreSQL", url, false).await;
                stockade_store::testing::drop_postgres_schema(&base, &schema).await;
            });
        }
        None => println!("PostgreSQL: skipped (set STOCKADE_TEST_PG_URL)"),
    }
}
