//! Support for the executor's tests: fresh stores on both backends, a probe step
//! handler that counts its calls and can fail, hang or lose its lease on cue.

use serde_json::json;
use std::sync::{Arc, Mutex};
use stockade_core::{Actor, Environment};
use stockade_store::{AuditDetails, AuditEntry, Change, Lease, Store, StoreOptions, sql_params};
use stockade_testkit::Db;
use stockade_workflows::Workflow;
use stockade_workflows::exec::{
    Catalog, ErrorClass, ExecutionPayload, Executor, JOB_KIND, StepCtx, StepDone, StepError,
    StepFuture, StepHandler,
};
use stockade_workflows::expr::Evaluated;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declare a test that runs on both backends: `both!(name)` with `async fn name(Backend)`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::exec_support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::exec_support::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use both;

pub struct Env {
    pub db: Db,
    pub store: Store,
}

impl Env {
    pub async fn new(backend: Backend) -> Option<Env> {
        let db = match backend {
            Backend::Sqlite => Db::sqlite(),
            Backend::Postgres => Db::postgres()?,
        };
        let store = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .expect("init")
            .0;
        Some(Env { db, store })
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        self.db.cleanup().await;
    }

    /// Enqueue an execution of `workflow` with `inputs`; its job id.
    pub async fn enqueue(&self, workflow: &str, inputs: serde_json::Value) -> String {
        let job = ExecutionPayload::new(workflow, inputs, json!({})).job();
        self.store
            .enqueue(&Actor::System("test"), &job)
            .await
            .expect("enqueue")
            .id
    }

    pub async fn claim(&self, worker: &str, lease_ms: i64) -> Option<Lease> {
        self.store
            .claim(worker, &[JOB_KIND], lease_ms)
            .await
            .expect("claim")
    }

    pub async fn actions(&self, action: &'static str) -> i64 {
        self.store
            .count(
                "SELECT COUNT(*) FROM audit WHERE action = $1",
                sql_params![action],
            )
            .await
            .expect("count")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        self.store.count(sql, vec![]).await.expect("count")
    }
}

pub fn parse(yaml: &str) -> Workflow {
    Workflow::parse(yaml).expect("workflow parses")
}

pub fn catalog(workflows: &[&str]) -> Arc<Catalog> {
    let mut c = Catalog::new();
    for w in workflows {
        c = c.with(parse(w), 1);
    }
    Arc::new(c)
}

/// What the probe does on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Succeed,
    FailTransient,
    /// Never returns (the process dies mid-step).
    Hang,
    /// Succeeds after 600 ms.
    Slow,
    /// Stalls while its lease runs out (its heartbeats cannot reach the database) and a
    /// second worker takes the job, then succeeds.
    LoseLease,
}

/// A step handler that records `(idempotency key, attempt)` per call and acts by script
/// (the last act repeats). Its effect is an audit row `probe.effect`.
pub struct Probe {
    pub calls: Mutex<Vec<(String, i64)>>,
    script: Vec<Act>,
    store: Store,
}

impl Probe {
    pub fn new(store: &Store, script: &[Act]) -> Arc<Probe> {
        Arc::new(Probe {
            calls: Mutex::new(Vec::new()),
            script: script.to_vec(),
            store: store.clone(),
        })
    }

    pub fn calls(&self) -> Vec<(String, i64)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl StepHandler for Probe {
    fn run<'a>(&'a self, ctx: &'a StepCtx<'a>, _params: &'a Evaluated) -> StepFuture<'a> {
        Box::pin(async move {
            let n = {
                let mut calls = self.calls.lock().expect("lock");
                calls.push((ctx.idempotency_key.to_owned(), ctx.attempt));
                calls.len()
            };
            let act = self
                .script
                .get(n - 1)
                .or(self.script.last())
                .copied()
                .unwrap_or(Act::Succeed);
            match act {
                Act::Succeed => {}
                Act::FailTransient => {
                    return Err(StepError::new(ErrorClass::Transient, "upstream said 503"));
                }
                Act::Hang => std::future::pending::<()>().await,
                Act::Slow => tokio::time::sleep(std::time::Duration::from_millis(600)).await,
                Act::LoseLease => {
                    self.store
                        .tamper_for_tests(
                            "UPDATE jobs SET lease_expires_at_ms = 1 WHERE state = 'running'",
                        )
                        .await
                        .expect("expire the lease");
                    let reaped = self.store.reap_expired(100).await.expect("reap");
                    assert_eq!(reaped.requeued, 1);
                    let next = self
                        .store
                        .claim("worker-2", &[JOB_KIND], 60_000)
                        .await
                        .expect("claim");
                    assert!(next.is_some(), "the second worker takes the job");
                }
            }
            Ok(StepDone {
                output: json!({ "status": 200, "call": n }),
                changes: vec![Change::event(AuditEntry::new(
                    "probe.effect",
                    format!("probe:{}", ctx.step),
                    AuditDetails::new().int("call", n as i64),
                ))],
            })
        })
    }
}

pub fn executor(env: &Env, catalog: Arc<Catalog>, probe: Option<Arc<Probe>>) -> Executor {
    let e = Executor::new(env.store.clone(), catalog);
    match probe {
        Some(p) => e.with_handler("http.request", p),
        None => e,
    }
}

/// SKU `sku` in the catalog with `on_hand` (set by the import path: one ledger row).
pub async fn import_sku(env: &Env, sku: &str, on_hand: i64) {
    let sku = stockade_sync::catalog::MergeSku {
        sku: sku.into(),
        on_hand: Some(on_hand),
        low_stock_threshold: None,
        listings: vec![],
    };
    stockade_sync::catalog::merge(&env.store, &[sku], &Actor::System("test"), "catalog.import")
        .await
        .expect("import");
}

/// A fresh vault on `env`'s store (its master key in the database's directory).
pub async fn open_vault(env: &Env) -> Arc<stockade_vault::Vault> {
    use stockade_vault::{MasterKeySource, MasterKeys, Vault};
    let key_path = env.db.dir.join("master.key");
    let master = MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))
        .expect("master key");
    master.write_new_file(&key_path).expect("key file");
    let vault = Vault::bootstrap(env.store.clone(), master, &Actor::System("test"))
        .await
        .expect("vault");
    Arc::new(vault)
}

/// Store the credential `name` with `secret`, scoped to `workflows` and `hosts`.
pub async fn put_credential(
    vault: &stockade_vault::Vault,
    name: &str,
    secret: &str,
    workflows: &[&str],
    hosts: &[&str],
) {
    use stockade_vault::{CredentialScopes, KeyOwner, NewCredential};
    vault
        .put_credential(
            &NewCredential {
                name,
                kind: "secret",
                secret: &stockade_core::SecretString::from(secret.to_owned()),
                owner: &KeyOwner::system(),
                scopes: &CredentialScopes {
                    workflows: workflows.iter().map(|s| (*s).to_owned()).collect(),
                    hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
                },
                account: None,
            },
            &Actor::System("test"),
        )
        .await
        .expect("credential");
}
