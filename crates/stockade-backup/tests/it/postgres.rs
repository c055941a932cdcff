//! PostgreSQL: pg_dump-based backup, verify, drill in a scratch database, and a restore
//! over the existing schema that puts the keyring back.

use std::process::Command;

use stockade_backup::restore::{self, RestoreOptions};
use stockade_store::{Store, StoreOptions};
use stockade_testkit::Db;

use crate::*;

#[tokio::test]
async fn postgres_backup_verify_drill_and_restore() {
    let Some(db) = Db::postgres() else { return };
    if !stockade_testkit::require_tool("pg_dump", "postgresql-client", "PostgreSQL backups") {
        return;
    }
    let f = Fixture::new(db).await;
    for i in 0..30 {
        write_one(f.store(), i).await;
    }
    let (enc, dec, _) = x25519(&f.db.dir);
    let file = f.db.dir.join("pg.age");
    let r = backup(&f, &file, &enc).await.unwrap();
    assert_eq!(r.header.backend, stockade_backup::Backend::Postgres);
    assert_eq!(
        r.header.pg_schema.as_deref(),
        Some(f.db.pg.as_ref().unwrap().1.as_str())
    );
    stockade_backup::verify(&file, &dec, &f.db.dir)
        .await
        .unwrap();

    // The archive as SQL: credentials' ciphertexts are there, no wrapped data key is.
    let plain = decrypt_all(&file, &dec);
    let body = &plain[plain
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1..];
    let archive = f.db.dir.join("archive.pgdump");
    std::fs::write(&archive, body).unwrap();
    let sql = Command::new("pg_restore")
        .arg("-f")
        .arg("-")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(sql.status.success());
    let sql = String::from_utf8_lossy(&sql.stdout).into_owned();
    let cred = f.store().credentials().await.unwrap();
    assert!(
        sql.contains(&hex::encode(&cred[0].ciphertext)),
        "the search sees bytea values"
    );
    for k in f.wrapped_keys().await {
        assert!(
            !sql.contains(&hex::encode(&k)),
            "a wrapped key is in the dump"
        );
    }

    // Drill: a scratch database, created and dropped.
    let d = stockade_backup::drill(f.store(), &f.db.url, &ACTOR, &file, &dec, &f.db.dir)
        .await
        .unwrap();
    assert!(d.audit_rows > 30);
    assert!(d.counts.contains(&("credentials", 2)));

    // Restore over the live schema (with --force), keys from the live keyring.
    let keys_before = f.store().data_keys().await.unwrap();
    let Fixture {
        db,
        vault,
        key_path,
    } = f;
    vault.close().await;
    let staged = restore::stage(RestoreOptions {
        file: file.clone(),
        decryption: &dec,
        target: &db.url,
        target_env: None,
        into_env: false,
        force: true,
        keyring: None,
        data_dir: db.dir.clone(),
    })
    .await
    .unwrap();
    let (store, _) = Store::migrate(
        staged.url(),
        stockade_core::Environment::Dev,
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    let applied = staged.apply_keyring(&store, &ACTOR).await.unwrap();
    assert_eq!((applied.live, applied.missing), (3, 0));
    store.close().await;
    staged.commit().await.unwrap();
    let store = Store::open(
        &db.url,
        stockade_core::Environment::Dev,
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(store.data_keys().await.unwrap(), keys_before);
    let master =
        stockade_vault::MasterKeys::load_file(&key_path, stockade_core::Environment::Dev).unwrap();
    let vault = stockade_vault::Vault::open(store, master).await.unwrap();
    assert!(
        vault
            .store()
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    let f = Fixture {
        db,
        vault,
        key_path,
    };
    f.cleanup().await;
}
