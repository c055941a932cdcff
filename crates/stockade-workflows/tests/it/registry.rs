//! The registry of reviewed versions on SQLite and PostgreSQL: apply is idempotent, prod
//! waits for a second person, self-approval is refused and writes nothing, a version
//! whose lint fails never runs, text comes back byte for byte, enable/disable, and every
//! change leaves an audit row under its actor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use stockade_core::{Actor, Environment};
use stockade_store::{Store, StoreOptions};
use stockade_testkit::Db;
use stockade_workflows::registry::{self, Applied, RegistryError, VersionState};

/// A manual workflow that lints clean everywhere; comments, trailing spaces and the
/// missing final newline must survive storage.
const V1: &str = "# reviewed by ops  \nname: nightly\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"first\" }";
const V2: &str = "name: nightly\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"second\" }\n";
/// An unknown step kind: lint fails.
const BAD: &str = "name: nightly\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: x\n    uses: shell.exec\n";

fn alice() -> Actor {
    Actor::User("usr_alice".into())
}
fn bob() -> Actor {
    Actor::User("usr_bob".into())
}

fn file(text: &str) -> Vec<(String, String)> {
    vec![("nightly.yaml".to_owned(), text.to_owned())]
}

async fn open(db: &Db, env: Environment) -> Store {
    Store::init(&db.url, env, &StoreOptions::default())
        .await
        .unwrap()
        .0
}

async fn applied(store: &Store, actor: &Actor, text: &str) -> Applied {
    let mut out = registry::apply(store, actor, &file(text)).await.unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0).applied
}

/// (actor, action, resource) of every workflow audit row, in order.
async fn audit(store: &Store) -> Vec<(String, String, String)> {
    store
        .audit_rows(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action.starts_with("workflow."))
        .map(|r| (r.actor, r.action, r.resource))
        .collect()
}

async fn on_both<F, Fut>(test: F)
where
    F: Fn(Db) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = Db::sqlite();
    test(Db {
        dir: db.dir.clone(),
        url: db.url.clone(),
        pg: None,
    })
    .await;
    db.cleanup().await;
    if let Some(db) = Db::postgres() {
        test(Db {
            dir: db.dir.clone(),
            url: db.url.clone(),
            pg: None,
        })
        .await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn dev_activates_at_once_and_applying_twice_stores_one_version() {
    on_both(|db| async move {
        let store = open(&db, Environment::Dev).await;
        let first = applied(&store, &alice(), V1).await;
        assert_eq!(
            first,
            Applied::Stored {
                version: 1,
                state: VersionState::Active
            }
        );
        let again = applied(&store, &bob(), V1).await;
        assert_eq!(
            again,
            Applied::Unchanged {
                version: 1,
                state: VersionState::Active
            }
        );
        let versions = registry::versions(&store, "nightly").await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].content_sha256, registry::content_sha256(V1));
        assert_eq!(versions[0].applied_by, "user:usr_alice");
        assert_eq!(
            registry::runnable(&store, "nightly").await.unwrap(),
            Some((1, V1.to_owned()))
        );
        // A second version supersedes the first; both texts come back byte for byte.
        let second = applied(&store, &alice(), V2).await;
        assert_eq!(
            second,
            Applied::Stored {
                version: 2,
                state: VersionState::Active
            }
        );
        let states: Vec<VersionState> = registry::versions(&store, "nightly")
            .await
            .unwrap()
            .iter()
            .map(|v| v.state)
            .collect();
        assert_eq!(states, [VersionState::Superseded, VersionState::Active]);
        assert_eq!(
            registry::content(&store, "nightly", Some(1)).await.unwrap(),
            (1, V1.to_owned())
        );
        assert_eq!(
            registry::content(&store, "nightly", None).await.unwrap(),
            (2, V2.to_owned())
        );
        // The unchanged apply wrote no audit row.
        let rows = audit(&store).await;
        assert_eq!(
            rows,
            [
                (
                    "user:usr_alice".into(),
                    "workflow.apply".into(),
                    "workflow:nightly".into()
                ),
                (
                    "user:usr_alice".into(),
                    "workflow.apply".into(),
                    "workflow:nightly".into()
                ),
            ]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn prod_waits_for_a_second_person_and_refuses_self_approval() {
    on_both(|db| async move {
        let store = open(&db, Environment::Prod).await;
        assert_eq!(
            applied(&store, &alice(), V1).await,
            Applied::Stored {
                version: 1,
                state: VersionState::Pending
            }
        );
        assert_eq!(registry::runnable(&store, "nightly").await.unwrap(), None);
        let before = store.audit_head().await.unwrap();
        let err = registry::approve(&store, &alice(), "nightly", 1)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::SelfApproval { .. }), "{err}");
        assert!(err.to_string().contains("four eyes"), "{err}");
        let err = registry::approve(&store, &Actor::System("cli"), "nightly", 1)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::NotAPerson(_)), "{err}");
        // Refusals wrote nothing: no audit row, the version still pending.
        assert_eq!(store.audit_head().await.unwrap(), before);
        let v = registry::version(&store, "nightly", 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v.state, v.approved_by), (VersionState::Pending, None));

        let approved = registry::approve(&store, &bob(), "nightly", 1)
            .await
            .unwrap();
        assert_eq!(approved.state, VersionState::Active);
        assert_eq!(approved.approved_by.as_deref(), Some("user:usr_bob"));
        assert_eq!(
            registry::runnable(&store, "nightly").await.unwrap(),
            Some((1, V1.to_owned()))
        );
        // An active version cannot be approved again.
        let err = registry::approve(&store, &bob(), "nightly", 1)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::NotPending { .. }), "{err}");

        // Version 2, pending: version 1 keeps running until it is approved.
        applied(&store, &bob(), V2).await;
        assert_eq!(
            registry::runnable(&store, "nightly").await.unwrap(),
            Some((1, V1.to_owned()))
        );
        registry::approve(&store, &alice(), "nightly", 2)
            .await
            .unwrap();
        let states: Vec<VersionState> = registry::versions(&store, "nightly")
            .await
            .unwrap()
            .iter()
            .map(|v| v.state)
            .collect();
        assert_eq!(states, [VersionState::Superseded, VersionState::Active]);
        let rows = audit(&store).await;
        let actions: Vec<(&str, &str)> = rows
            .iter()
            .map(|(a, b, _)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("user:usr_alice", "workflow.apply"),
                ("user:usr_bob", "workflow.approve"),
                ("user:usr_bob", "workflow.apply"),
                ("user:usr_alice", "workflow.approve"),
            ]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_version_whose_lint_fails_is_rejected_and_never_runs() {
    on_both(|db| async move {
        for env in [Environment::Dev, Environment::Prod] {
            let store = open(&db, env).await;
            let out = registry::apply(&store, &alice(), &file(BAD)).await.unwrap();
            assert!(!out[0].problems.is_empty());
            assert_eq!(
                out[0].applied,
                Applied::Stored {
                    version: 1,
                    state: VersionState::Rejected
                }
            );
            assert_eq!(registry::runnable(&store, "nightly").await.unwrap(), None);
            let err = registry::approve(&store, &bob(), "nightly", 1)
                .await
                .unwrap_err();
            assert!(matches!(err, RegistryError::NotPending { .. }), "{err}");
            let v = registry::version(&store, "nightly", 1)
                .await
                .unwrap()
                .unwrap();
            assert!(!v.lint_passed && v.lint_problems > 0);
            // A file that does not parse has no name: nothing is stored at all.
            let out = registry::apply(&store, &alice(), &file("name: [unclosed"))
                .await
                .unwrap();
            assert_eq!(out[0].applied, Applied::NotStored);
            // A file holding what looks like a secret is not stored either.
            let secret = V2.replace("second", "sk_live_4eC39HqLyjWDarjtT1zdp7dc");
            let out = registry::apply(&store, &alice(), &file(&secret))
                .await
                .unwrap();
            assert_eq!(out[0].applied, Applied::SecretRefused);
            if matches!(db.url, stockade_store::DatabaseUrl::Sqlite(_)) {
                store.checkpoint().await.unwrap();
                let bytes = db.sqlite_bytes();
                assert!(!bytes.windows(13).any(|w| w == b"sk_live_4eC39"));
            }
            assert_eq!(registry::workflows(&store).await.unwrap().len(), 1);
            assert_eq!(
                registry::versions(&store, "nightly").await.unwrap().len(),
                1
            );
            store.close().await;
            if env == Environment::Dev {
                drop_all(&db).await;
            }
        }
    })
    .await;
}

/// Start over in the same location (the SQLite file, or the PostgreSQL schema).
async fn drop_all(db: &Db) {
    match &db.url {
        stockade_store::DatabaseUrl::Sqlite(p) => {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
            }
        }
        stockade_store::DatabaseUrl::Postgres { url, schema } => {
            if let Some(s) = schema {
                stockade_store::testing::drop_postgres_schema(url, s).await;
            }
        }
    }
}

#[tokio::test]
async fn disable_and_enable_are_audited_and_stop_it_running() {
    on_both(|db| async move {
        let store = open(&db, Environment::Staging).await;
        applied(&store, &alice(), V1).await;
        let key = Actor::ApiKey("key_ops".into());
        assert!(
            registry::set_enabled(&store, &key, "nightly", false)
                .await
                .unwrap()
        );
        assert!(
            !registry::set_enabled(&store, &key, "nightly", false)
                .await
                .unwrap()
        );
        assert_eq!(registry::runnable(&store, "nightly").await.unwrap(), None);
        assert!(
            registry::set_enabled(&store, &alice(), "nightly", true)
                .await
                .unwrap()
        );
        assert!(
            registry::runnable(&store, "nightly")
                .await
                .unwrap()
                .is_some()
        );
        let err = registry::set_enabled(&store, &alice(), "nope", true)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::UnknownWorkflow(_)), "{err}");
        let rows = audit(&store).await;
        let actions: Vec<(&str, &str)> = rows
            .iter()
            .map(|(a, b, _)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("user:usr_alice", "workflow.apply"),
                ("apikey:key_ops", "workflow.disable"),
                ("user:usr_alice", "workflow.enable"),
            ]
        );
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_never_share_a_version_number_or_two_actives() {
    on_both(|db| async move {
        let store = open(&db, Environment::Dev).await;
        let racer = |actor: Actor, text: &'static str| {
            let store = store.clone();
            tokio::spawn(async move { registry::apply(&store, &actor, &file(text)).await })
        };
        let (a, b) = (racer(alice(), V1), racer(bob(), V2));
        let results = [a.await.unwrap(), b.await.unwrap()];
        let stored = results.iter().filter(|r| r.is_ok()).count();
        assert!(stored >= 1);
        let versions = registry::versions(&store, "nightly").await.unwrap();
        // Every apply that returned Ok has its own version; a losing racer stored nothing.
        assert_eq!(versions.len(), stored);
        let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
        assert_eq!(numbers, (1..=stored as i64).collect::<Vec<_>>());
        let active = versions
            .iter()
            .filter(|v| v.state == VersionState::Active)
            .count();
        assert_eq!(active, 1);
        let wf = registry::workflow(&store, "nightly")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(wf.active_version, Some(stored as i64));
        assert_eq!(audit(&store).await.len(), stored);
        store.close().await;
    })
    .await;
}
