//! Vault integration tests against a real store: key hierarchy, rotation, wrong keys,
//! crypto-shredding, credentials and PII tags. SQLite always; PostgreSQL too when
//! STOCKADE_TEST_PG_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use stockade_core::{Actor, Environment, Pii, SecretString};
use stockade_store::{DatabaseUrl, Store, StoreOptions};
use stockade_testkit::Db;
use stockade_vault::{
    CredentialScopes, FieldContext, KeyOwner, MasterKeyError, MasterKeySource, MasterKeys,
    NewCredential, Vault, VaultError,
};

const ACTOR: Actor = Actor::System("test");

/// A fresh database (from the shared test support) and the master key file beside it.
struct Env {
    db: Db,
    key_path: PathBuf,
}

impl std::ops::Deref for Env {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

impl Env {
    fn new(db: Db) -> Env {
        Env {
            key_path: db.dir.join("master.key"),
            db,
        }
    }

    fn sqlite() -> Env {
        Env::new(Db::sqlite())
    }

    fn postgres() -> Option<Env> {
        Db::postgres().map(Env::new)
    }

    async fn init(&self, env: Environment) -> Vault {
        let master =
            MasterKeys::generate(env, MasterKeySource::File(self.key_path.clone())).unwrap();
        master.write_new_file(&self.key_path).unwrap();
        let (store, _) = Store::init(&self.url, env, &StoreOptions::default())
            .await
            .unwrap();
        Vault::bootstrap(store, master, &ACTOR).await.unwrap()
    }

    async fn reopen(&self, env: Environment) -> Result<Vault, VaultError> {
        let store = Store::open(&self.url, env, &StoreOptions::default()).await?;
        let master = MasterKeys::load_file(&self.key_path, env)?;
        Vault::open(store, master).await
    }

    async fn cleanup(self) {
        self.db.cleanup().await;
    }
}

fn db_bytes(path: &std::path::Path) -> Vec<u8> {
    let mut all = std::fs::read(path).unwrap_or_default();
    all.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const CTX: FieldContext<'static> = FieldContext {
    table: "orders",
    column: "buyer_email",
    row_id: "o-1",
};

async fn full_key_lifecycle(env_dir: Env) {
    let vault = env_dir.init(Environment::Dev).await;
    let seller = KeyOwner::connection("tiktok-1").unwrap();
    let email = Pii::new("buyer.jane@example.com".to_owned());
    let ct = vault
        .encrypt_pii(&seller, &CTX, &email, &ACTOR)
        .await
        .unwrap();
    let sys_ct = vault
        .encrypt(&KeyOwner::system(), &CTX, b"system value", &ACTOR)
        .await
        .unwrap();
    assert_eq!(
        vault.decrypt_pii(&CTX, &ct).await.unwrap().expose_pii(),
        "buyer.jane@example.com"
    );
    let tag_before = vault.pii_tag(&email);
    drop(vault);

    // A fresh process: reopen with the key file.
    let mut vault = env_dir.reopen(Environment::Dev).await.unwrap();
    assert_eq!(
        &*vault.decrypt(&CTX, &ct).await.unwrap(),
        b"buyer.jane@example.com"
    );
    assert_eq!(
        vault.pii_tag(&email),
        tag_before,
        "tags are stable per installation"
    );

    // Rotation: rewraps data keys, leaves ciphertexts alone.
    let next = vault.master_keys().with_new_version().unwrap();
    next.replace_file().unwrap();
    let report = vault.rotate_master_key(next, &ACTOR).await.unwrap();
    assert_eq!(report.new_version, 2);
    assert_eq!(report.rewrapped, 2);
    assert_eq!(report.retired, vec![1]);
    assert!(
        vault
            .store()
            .data_keys()
            .await
            .unwrap()
            .iter()
            .all(|k| k.master_version == Some(2))
    );
    drop(vault);
    let vault = env_dir.reopen(Environment::Dev).await.unwrap();
    assert_eq!(
        &*vault.decrypt(&CTX, &ct).await.unwrap(),
        b"buyer.jane@example.com"
    );
    assert_eq!(
        &*vault.decrypt(&CTX, &sys_ct).await.unwrap(),
        b"system value"
    );
    assert_eq!(
        vault.pii_tag(&email),
        tag_before,
        "rotation keeps tags stable"
    );
    let actions: Vec<String> = vault
        .store()
        .audit_rows(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for a in [
        "key.master.add",
        "key.data.rewrap",
        "key.master.retire",
        "key.rotate",
        "key.data.create",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "missing audit action {a}: {actions:?}"
        );
    }

    // The old version is no longer needed: a key file without it still opens.
    let pruned = vault.master_keys().without_versions(&[1]);
    pruned.replace_file().unwrap();
    drop(vault);
    let vault = env_dir.reopen(Environment::Dev).await.unwrap();
    assert_eq!(
        &*vault.decrypt(&CTX, &ct).await.unwrap(),
        b"buyer.jane@example.com"
    );

    // Crypto-shredding: the seller's key is destroyed; the system's is not.
    let destroyed = vault
        .shred(&seller, "seller revoked authorization", &ACTOR)
        .await
        .unwrap();
    assert_eq!(destroyed.len(), 1);
    assert!(matches!(
        vault.decrypt(&CTX, &ct).await,
        Err(VaultError::KeyDestroyed { .. })
    ));
    drop(vault);
    let vault = env_dir.reopen(Environment::Dev).await.unwrap();
    assert!(
        matches!(vault.decrypt(&CTX, &ct).await, Err(VaultError::KeyDestroyed { key_id }) if key_id == destroyed[0]),
        "a fresh process cannot decrypt it either"
    );
    assert_eq!(
        &*vault.decrypt(&CTX, &sys_ct).await.unwrap(),
        b"system value"
    );
    assert_eq!(
        vault.store().verify_audit(None).await.unwrap().problem,
        None
    );
    vault.store().clone().close().await;
    env_dir.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_on_sqlite() {
    full_key_lifecycle(Env::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_on_postgres() {
    if let Some(e) = Env::postgres() {
        full_key_lifecycle(e).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredded_key_bytes_are_gone_from_the_database_file_and_wal() {
    let e = Env::sqlite();
    let vault = e.init(Environment::Dev).await;
    let seller = KeyOwner::connection("ebay-9").unwrap();
    vault.encrypt(&seller, &CTX, b"x", &ACTOR).await.unwrap();
    let rec = vault
        .store()
        .data_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.owner == "connection:ebay-9")
        .unwrap();
    let wrapped = rec.wrapped.clone().unwrap();
    let path = match &e.url {
        DatabaseUrl::Sqlite(p) => p.clone(),
        DatabaseUrl::Postgres { .. } => unreachable!(),
    };
    assert!(
        contains(&db_bytes(&path), &wrapped[20..40]),
        "the wrapped key is stored before shredding"
    );
    vault.shred(&seller, "test", &ACTOR).await.unwrap();
    assert!(
        !contains(&db_bytes(&path), &wrapped[20..40]),
        "the wrapped key bytes must not survive shredding"
    );
    vault.store().clone().close().await;
    e.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_foreign_master_keys_are_named() {
    let e = Env::sqlite();
    let vault = e.init(Environment::Dev).await;
    vault.store().clone().close().await;
    drop(vault);
    let store = || async {
        Store::open(&e.url, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap()
    };

    // Another key of the right environment.
    let other = MasterKeys::generate(Environment::Dev, MasterKeySource::EnvVar).unwrap();
    assert!(matches!(
        Vault::open(store().await, other).await,
        Err(VaultError::WrongMasterKey { version: 1 })
    ));

    // The right key file, but claimed for another environment.
    assert!(matches!(
        MasterKeys::load_file(&e.key_path, Environment::Prod),
        Err(MasterKeyError::WrongEnvironment { .. })
    ));

    // A key file without the version in use.
    let keys = MasterKeys::load_file(&e.key_path, Environment::Dev).unwrap();
    let v2 = keys.with_new_version().unwrap().without_versions(&[1]);
    assert!(matches!(
        Vault::open(store().await, v2).await,
        Err(VaultError::MasterKeyVersionMissing { version: 1 })
    ));

    // A key file readable by others is refused, and left as it is.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&e.key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = MasterKeys::load_file(&e.key_path, Environment::Dev).unwrap_err();
    assert!(
        matches!(err, MasterKeyError::TooOpen { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"));
    assert_eq!(
        std::fs::metadata(&e.key_path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    e.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotation_leaves_a_usable_vault() {
    let e = Env::sqlite();
    let vault = e.init(Environment::Dev).await;
    let ct = vault
        .encrypt(&KeyOwner::system(), &CTX, b"kept", &ACTOR)
        .await
        .unwrap();
    // The key file gained v2, but the process stopped before the database commit.
    vault
        .master_keys()
        .with_new_version()
        .unwrap()
        .replace_file()
        .unwrap();
    vault.store().clone().close().await;
    drop(vault);
    let mut vault = e.reopen(Environment::Dev).await.unwrap();
    assert_eq!(
        vault.master_keys().active_version(),
        1,
        "the unregistered version is ignored"
    );
    assert_eq!(&*vault.decrypt(&CTX, &ct).await.unwrap(), b"kept");
    let next = vault.master_keys().with_new_version().unwrap();
    next.replace_file().unwrap();
    assert_eq!(
        vault
            .rotate_master_key(next, &ACTOR)
            .await
            .unwrap()
            .new_version,
        2
    );
    vault.store().clone().close().await;
    e.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_encrypted_scoped_and_never_listed_in_clear() {
    let e = Env::sqlite();
    let vault = e.init(Environment::Dev).await;
    let owner = KeyOwner::connection("amazon-eu").unwrap();
    let secret = SecretString::from("Atzr|IwEBIA-very-secret-refresh-token".to_owned());
    let account = Pii::new("seller.owner@example.com".to_owned());
    let scopes = CredentialScopes {
        workflows: vec!["stock-sync".into()],
        hosts: vec!["sellingpartnerapi-eu.amazon.com".into()],
    };
    vault
        .put_credential(
            &NewCredential {
                name: "amazon-eu/lwa",
                kind: "lwa_refresh_token",
                secret: &secret,
                owner: &owner,
                scopes: &scopes,
                account: Some(&account),
            },
            &ACTOR,
        )
        .await
        .unwrap();

    let listed = vault.list_credentials().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scopes, scopes);
    assert_eq!(
        listed[0].account_tag.as_deref(),
        Some(vault.pii_tag(&account).as_str())
    );
    let shown = format!(
        "{listed:?} {:?}",
        vault.store().credentials().await.unwrap()
    );
    assert!(
        !shown.contains("Atzr") && !shown.contains("seller.owner"),
        "{shown}"
    );
    assert_eq!(
        vault
            .reveal_credential("amazon-eu/lwa")
            .await
            .unwrap()
            .expose_secret(),
        secret.expose_secret()
    );

    // The audit row names the credential and tags the account; neither value appears.
    let rows = vault.store().audit_rows(0, 1000).await.unwrap();
    let put = rows.iter().find(|r| r.action == "credential.put").unwrap();
    assert!(put.details.contains("hmac-sha256:"), "{}", put.details);
    let all_rows = format!("{rows:?}");
    assert!(!all_rows.contains("Atzr") && !all_rows.contains("seller.owner"));

    // Nor anywhere in the database file.
    let path = e.dir.join("stockade.db");
    let bytes = db_bytes(&path);
    assert!(!contains(&bytes, b"very-secret-refresh") && !contains(&bytes, b"seller.owner@"));

    // A ciphertext moved to another credential's row does not decrypt there.
    vault
        .put_credential(
            &NewCredential {
                name: "other",
                kind: "x",
                secret: &SecretString::from("y".to_owned()),
                owner: &owner,
                scopes: &scopes,
                account: None,
            },
            &ACTOR,
        )
        .await
        .unwrap();
    vault
        .store()
        .tamper_for_tests("UPDATE credentials SET ciphertext = (SELECT ciphertext FROM credentials WHERE name = 'amazon-eu/lwa') WHERE name = 'other'")
        .await
        .unwrap();
    assert!(matches!(
        vault.reveal_credential("other").await,
        Err(VaultError::DecryptFailed)
    ));

    vault
        .delete_credential("amazon-eu/lwa", &ACTOR)
        .await
        .unwrap();
    assert!(vault.reveal_credential("amazon-eu/lwa").await.is_err());
    assert!(
        vault
            .put_credential(
                &NewCredential {
                    name: "bad name!",
                    kind: "x",
                    secret: &secret,
                    owner: &owner,
                    scopes: &scopes,
                    account: None
                },
                &ACTOR
            )
            .await
            .is_err()
    );
    vault.store().clone().close().await;
    e.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_use_creates_one_key_per_owner() {
    let e = Env::sqlite();
    let vault = std::sync::Arc::new(e.init(Environment::Dev).await);
    let owner = KeyOwner::connection("race").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (vault, owner) = (vault.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            vault.data_key_for(&owner, &ACTOR).await.unwrap().id()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let live = vault
        .store()
        .data_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.owner == "connection:race")
        .count();
    assert_eq!(live, 1);
    vault.store().clone().close().await;
    e.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_owners_are_validated() {
    assert!(KeyOwner::parse("system").is_ok());
    assert!(KeyOwner::connection("ebay-uk_2").is_ok());
    for bad in [
        "",
        "connection:",
        "connection:a b",
        "user:1",
        "connection:../x",
    ] {
        assert!(KeyOwner::parse(bad).is_err(), "{bad}");
    }
}
