//! SQLite: online backup under concurrent writes, no key material inside, verify, drill,
//! keyring export, and the passphrase path.

use stockade_backup::keyring::KeyringExport;
use stockade_testkit::Db;

use crate::*;

#[tokio::test]
async fn an_online_backup_under_concurrent_writes_verifies_and_holds_no_keys() {
    let f = Fixture::new(Db::sqlite()).await;
    let store = f.store().clone();
    // A writer keeps committing (and creating data keys) while the backup runs.
    let writer = tokio::spawn(async move {
        for i in 0..400 {
            write_one(&store, i).await;
        }
    });
    for i in 0..50 {
        write_one(f.store(), 10_000 + i).await;
    }
    let (enc, dec, _) = x25519(&f.db.dir);
    let out = f.db.dir.join("b.age");
    let r = backup(&f, &out, &enc).await.unwrap();
    writer.await.unwrap();
    assert_eq!(r.header.environment, "dev");
    assert_eq!(r.header.backend, stockade_backup::Backend::Sqlite);
    assert!(r.header.schema_version >= 18);
    assert_eq!(r.header.data_keys.len(), 3, "system + two connections");

    // Verify: decrypts, hash and integrity.
    let v = stockade_backup::verify(&out, &dec, &f.db.dir)
        .await
        .unwrap();
    assert_eq!(v.header, r.header);

    // No wrapped data key anywhere in the decrypted backup.
    let plain = decrypt_all(&out, &dec);
    assert!(plain.starts_with(b"STOCKADE-BACKUP 1\n"));
    let keys = f.wrapped_keys().await;
    assert_eq!(keys.len(), 3);
    for k in &keys {
        assert!(
            !contains(&plain, k),
            "a wrapped data key is inside the backup"
        );
        assert!(
            !contains(&plain, &k[k.len() - 16..]),
            "part of a wrapped key is inside"
        );
    }
    // …while the live database does hold them (the search would find them).
    let live = std::fs::read(f.db.dir.join("stockade.db")).unwrap();
    let wal = std::fs::read(f.db.dir.join("stockade.db-wal")).unwrap_or_default();
    assert!(keys.iter().all(|k| contains(&live, k) || contains(&wal, k)));

    // Drill: a scratch restore, the audit chain from genesis, counts; recorded.
    let d = stockade_backup::drill(f.store(), &f.db.url, &ACTOR, &out, &dec, &f.db.dir)
        .await
        .unwrap();
    assert!(d.audit_rows > 50, "{}", d.audit_rows);
    assert!(d.counts.contains(&("credentials", 2)));
    let list = stockade_backup::list(f.store(), 10).await.unwrap();
    let ops: Vec<&str> = list.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(ops, ["drill", "create"]);
    assert!(list.iter().all(|r| r.status == "ok" && r.env == "dev"));
    // Audited, with counts and no key material.
    let rows = f.store().audit_rows(0, 100_000).await.unwrap();
    assert!(rows.iter().any(|r| r.action == "backup.create"));
    assert!(rows.iter().any(|r| r.action == "backup.drill"));
    no_scratch(&f.db.dir);
    f.cleanup().await;
}

#[tokio::test]
async fn passphrase_backups_and_the_keyring_export_round_trip() {
    let f = Fixture::new(Db::sqlite()).await;
    let (enc, dec, _) = passphrase(&f.db.dir, "correct horse battery staple");
    let out = f.db.dir.join("p.age");
    let r = backup(&f, &out, &enc).await.unwrap();
    stockade_backup::verify(&out, &dec, &f.db.dir)
        .await
        .unwrap();
    let (_, wrong, _) = passphrase(&f.db.dir, "wrong horse");
    let e = stockade_backup::verify(&out, &wrong, &f.db.dir)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    assert!(r.file_bytes > r.payload_bytes);

    // The keyring export: the wrapped keys are there (and only there), still wrapped.
    let k = f.db.dir.join("k.age");
    let rep = stockade_backup::keyring::export(f.store(), &ACTOR, &k, &enc, &f.db.dir)
        .await
        .unwrap();
    assert_eq!((rep.live_keys, rep.destroyed_keys), (3, 0));
    let back = KeyringExport::read(&k, &dec, &f.db.dir).await.unwrap();
    let keys = f.wrapped_keys().await;
    for key in &keys {
        assert!(
            back.data_keys
                .iter()
                .any(|w| w.wrapped_hex.as_deref() == Some(hex::encode(key).as_str()))
        );
    }
    // A keyring export is not a data backup, and the other way round.
    let e = stockade_backup::verify(&k, &dec, &f.db.dir)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("keyring export"), "{e}");
    let e = KeyringExport::read(&out, &dec, &f.db.dir)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("backup keyring"), "{e}");
    // The master key file never is in either.
    let master = std::fs::read_to_string(&f.key_path).unwrap();
    let secret = master
        .lines()
        .find_map(|l| l.strip_prefix("key 1 "))
        .unwrap()
        .trim_end_matches('=');
    assert!(secret.len() > 20);
    for file in [&out, &k] {
        assert!(!contains(&decrypt_all(file, &dec), secret.as_bytes()));
    }
    no_scratch(&f.db.dir);
    f.cleanup().await;
}

#[tokio::test]
async fn scheduled_runs_keep_the_newest_files_and_record_failures() {
    let f = Fixture::new(Db::sqlite()).await;
    let (enc, _, _) = x25519(&f.db.dir);
    let dir = f.db.dir.join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let s = stockade_backup::schedule::Schedule {
        every: std::time::Duration::from_secs(3600),
        keep: 2,
        dir: dir.clone(),
        encryption: enc,
    };
    for i in 0..3 {
        // Distinct names: one per second.
        std::fs::write(
            dir.join(stockade_backup::schedule::file_name("dev", 1_000 * i)),
            b"old",
        )
        .unwrap();
    }
    assert!(stockade_backup::schedule::run_once(f.store(), &f.db.url, &f.db.dir, &s).await);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("stockade-dev-2")),
        "the new one is kept: {names:?}"
    );

    // A failing run (its directory is gone): a failed row, an audit row, an alert event.
    let gone = stockade_backup::schedule::Schedule {
        dir: f.db.dir.join("nope/none"),
        ..s
    };
    assert!(!stockade_backup::schedule::run_once(f.store(), &f.db.url, &f.db.dir, &gone).await);
    let list = stockade_backup::list(f.store(), 10).await.unwrap();
    assert_eq!(list[0].status, "failed");
    assert!(list[0].error.as_deref().unwrap().contains("does not exist"));
    let n = f
        .store()
        .count(
            "SELECT COUNT(*) FROM events WHERE source = 'backup' AND kind = 'backup_failed'",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    no_scratch(&f.db.dir);
    f.cleanup().await;
}
