//! Shared set-up: a fresh store and vault, audit rows appended in bulk, a gateway that
//! trusts a loopback test CA, and waiting for a condition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_core::{Actor, Environment, SecretString};
use stockade_egress::{EgressConfig, Gateway};
use stockade_mirror::{MirrorDeps, MirrorTelemetry};
use stockade_store::{AuditDetails, AuditEntry, Change, Store, StoreOptions};
use stockade_testkit::Db;
use stockade_vault::{
    CredentialScopes, KeyOwner, MasterKeySource, MasterKeys, NewCredential, Vault,
};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct Env {
    pub db: Db,
    pub store: Store,
    pub vault: Arc<Vault>,
}

impl Env {
    /// None: PostgreSQL asked for but not configured (skipped).
    pub async fn new(backend: Backend) -> Option<Env> {
        let db = match backend {
            Backend::Sqlite => Db::sqlite(),
            Backend::Postgres => Db::postgres()?,
        };
        let store = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .expect("init")
            .0;
        let key_path = db.dir.join("master.key");
        let master =
            MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))
                .expect("master key");
        master.write_new_file(&key_path).expect("key file");
        let vault = Vault::bootstrap(store.clone(), master, &Actor::System("test"))
            .await
            .expect("vault");
        Some(Env {
            db,
            store,
            vault: Arc::new(vault),
        })
    }

    pub async fn credential(&self, name: &str, secret: &str, host: &str) {
        self.vault
            .put_credential(
                &NewCredential {
                    name,
                    kind: "secret",
                    secret: &SecretString::from(secret.to_owned()),
                    owner: &KeyOwner::system(),
                    scopes: &CredentialScopes {
                        workflows: vec!["audit-mirror".into()],
                        hosts: vec![host.into()],
                    },
                    account: None,
                },
                &Actor::System("test"),
            )
            .await
            .expect("credential");
    }

    /// Append `n` audit rows (events) in commits of up to 500.
    pub async fn append(&self, n: usize) {
        let mut left = n;
        while left > 0 {
            let k = left.min(500);
            let changes = (0..k)
                .map(|i| {
                    Change::event(AuditEntry::new(
                        "test.row",
                        format!("row:{i}"),
                        AuditDetails::new()
                            .int("i", i as i64)
                            .str("note", "x\"y\\z ü"),
                    ))
                })
                .collect();
            self.store
                .commit(&Actor::System("test"), changes)
                .await
                .expect("commit");
            left -= k;
        }
    }

    pub async fn head(&self) -> i64 {
        self.store.audit_head().await.unwrap().map_or(0, |h| h.0)
    }

    pub fn deps(&self, gateway: &Gateway) -> MirrorDeps {
        MirrorDeps {
            store: self.store.clone(),
            vault: self.vault.clone(),
            gateway: gateway.clone(),
            telemetry: MirrorTelemetry::default(),
        }
    }

    pub async fn cleanup(self) {
        drop(self.vault);
        self.store.close().await;
        self.db.cleanup().await;
    }
}

/// A gateway allowing `authority` and trusting `ca_pem`, without its own retries of 429s
/// beyond one attempt when `single` (so the mirror's own handling is what is tested).
pub fn gateway(authority: &str, ca_pem: &str, store: Option<Store>, single: bool) -> Gateway {
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![authority.to_owned()];
    if !ca_pem.is_empty() {
        cfg.extra_root_pems = vec![ca_pem.to_owned()];
    }
    cfg.request_timeout = Duration::from_secs(30);
    cfg.connect_timeout = Duration::from_secs(2);
    if single {
        cfg.max_attempts = 1;
    }
    cfg.breaker_failures = 1000;
    Gateway::new(cfg, store).expect("gateway")
}

/// Wait up to `secs` for `check` to return true.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
