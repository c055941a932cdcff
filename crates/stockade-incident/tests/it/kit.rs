//! A fresh environment per test: store, vault, access (cheap password hashing) and the
//! incident kit, on SQLite or PostgreSQL.

use std::sync::Arc;

use stockade_access::password::HashParams;
use stockade_access::{Access, AccessConfig};
use stockade_core::{Actor, Environment};
use stockade_incident::IncidentKit;
use stockade_store::{Store, StoreOptions};
use stockade_testkit::Db;
use stockade_vault::{MasterKeySource, MasterKeys, Vault};

pub const ADMIN: Actor = Actor::System("cli");

pub struct Env {
    pub db: Db,
    pub access: Arc<Access>,
    pub kit: IncidentKit,
}

impl Env {
    /// `None` when the PostgreSQL variant is skipped.
    pub async fn new(pg: bool) -> Option<Env> {
        let db = if pg { Db::postgres()? } else { Db::sqlite() };
        let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap();
        let master = MasterKeys::generate(Environment::Dev, MasterKeySource::EnvVar).unwrap();
        let vault = Vault::bootstrap(store, master, &Actor::System("test"))
            .await
            .unwrap();
        let config = AccessConfig {
            hash_params: HashParams {
                m_kib: 64,
                t: 1,
                p: 1,
            },
            ..AccessConfig::default()
        };
        let access = Arc::new(Access::new(Arc::new(vault), config).await.unwrap());
        let kit = IncidentKit::new(access.clone());
        Some(Env { db, access, kit })
    }

    pub fn store(&self) -> &Store {
        self.access.store()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.store().count(sql, vec![]).await.unwrap()
    }

    /// The audit actions written so far, in order.
    pub async fn actions(&self) -> Vec<String> {
        self.store()
            .query_as(
                "SELECT action FROM audit WHERE action LIKE 'incident.%' ORDER BY seq",
                vec![],
            )
            .await
            .unwrap()
    }

    /// An active connection row (the sync engine is not running here).
    pub async fn connection(&self, id: i64, name: &str) {
        self.store()
            .tamper_for_tests(&format!(
                "INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status,
                   created_at_ms, updated_at_ms, revoked_at_ms)
                 VALUES ({id}, '{name}', 'amazon', 'sandbox', 'a{id}',
                         '{{\"api_url\":\"https://127.0.0.1:9\"}}', 'active', 0, 0, NULL)"
            ))
            .await
            .unwrap();
    }

    pub async fn finish(self) {
        let Env { db, access, kit } = self;
        drop(kit);
        let store = access.store().clone();
        drop(access);
        store.close().await;
        db.cleanup().await;
    }
}
