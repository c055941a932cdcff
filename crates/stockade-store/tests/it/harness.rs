//! Fresh databases per test, on either backend.

use std::path::PathBuf;

use stockade_core::{Actor, Environment};
use stockade_store::{AuditDetails, AuditEntry, Change, DatabaseUrl, Store, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A test database location; the directory or schema is removed by `cleanup`.
pub struct TestDb {
    pub url: DatabaseUrl,
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
}

use stockade_testkit::random_hex as random_suffix;

impl TestDb {
    /// A new, empty location; `None` (with a message) when PostgreSQL is not configured.
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("stockade-store-test-{}", random_suffix()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(TestDb {
                    url: DatabaseUrl::Sqlite(dir.join("stockade.db")),
                    dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let url = stockade_testkit::pg_or_skip()?;
                let schema = format!("t_{}", random_suffix());
                Some(TestDb {
                    url: DatabaseUrl::Postgres {
                        url: url.clone(),
                        schema: Some(schema.clone()),
                    },
                    dir: None,
                    pg: Some((url, schema)),
                })
            }
        }
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.url {
            DatabaseUrl::Sqlite(p) => Some(p.clone()),
            DatabaseUrl::Postgres { .. } => None,
        }
    }

    pub async fn init(&self, env: Environment) -> Store {
        Store::init(&self.url, env, &StoreOptions::default())
            .await
            .expect("init")
            .0
    }

    pub async fn open(&self, env: Environment) -> Store {
        Store::open(&self.url, env, &StoreOptions::default())
            .await
            .expect("open")
    }

    pub async fn cleanup(self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((url, schema)) = &self.pg {
            stockade_store::testing::drop_postgres_schema(url, schema).await;
        }
    }
}

pub const TEST_ACTOR: Actor = Actor::System("test");

/// An audit-only change, for filling the chain.
pub fn event(n: usize) -> Change {
    Change::event(AuditEntry::new(
        "test.event",
        format!("thing:{n}"),
        AuditDetails::new().int("n", n as i64),
    ))
}

/// Declare a test that runs on both backends: `both!(name)` with `async fn name(Backend)`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::harness::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use both;
