//! Opening, environments, migrations and atomic commits.

use stockade_core::Environment;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, Store, StoreError, StoreOptions,
    probe_environment, sql_params,
};

use crate::harness::{Backend, TEST_ACTOR, TestDb, both, event};

both!(
    init_records_environment_and_writes_first_audit_rows,
    wrong_environment_is_refused_before_anything_is_written,
    init_twice_is_refused,
    uninitialised_database_is_named,
    newer_schema_is_refused,
    edited_migration_is_refused,
    commit_is_all_or_nothing,
    migrate_on_a_current_schema_changes_nothing,
    shared_sql_binds_by_number_types_nulls_and_rolls_back,
);

async fn init_records_environment_and_writes_first_audit_rows(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Staging).await;
    assert_eq!(
        store.meta("environment").await.unwrap().as_deref(),
        Some("staging")
    );
    assert_eq!(
        probe_environment(&db.url).await.unwrap().as_deref(),
        Some("staging")
    );
    let rows = store.audit_rows(0, 100).await.unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert!(
        actions.contains(&"instance.init") && actions.contains(&"schema.migrate"),
        "{actions:?}"
    );
    assert!(rows.iter().all(|r| r.env == "staging"));
    let report = store.verify_audit(None).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.rows_checked as usize, rows.len());
    store.close().await;
    db.cleanup().await;
}

async fn wrong_environment_is_refused_before_anything_is_written(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let rows_before = store.audit_rows(0, 1000).await.unwrap().len();
    store.close().await;
    let bytes_before = db.sqlite_path().map(|p| std::fs::read(p).unwrap());

    for env in [Environment::Prod, Environment::Staging] {
        let err = Store::open(&db.url, env, &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::WrongEnvironment { database, requested } if database == "dev" && *requested == env),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was written"));
        let err = Store::migrate(&db.url, env, &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WrongEnvironment { .. }), "{err}");
        let err = Store::init(&db.url, env, &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WrongEnvironment { .. }), "{err}");
    }

    if let Some(path) = db.sqlite_path() {
        assert_eq!(
            Some(std::fs::read(&path).unwrap()),
            bytes_before,
            "the database file changed"
        );
        assert!(
            !path.with_extension("db-wal").exists()
                || std::fs::metadata(path.with_extension("db-wal"))
                    .unwrap()
                    .len()
                    == 0
        );
    }
    let store = db.open(Environment::Dev).await;
    assert_eq!(store.audit_rows(0, 1000).await.unwrap().len(), rows_before);
    store.close().await;
    db.cleanup().await;
}

async fn init_twice_is_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    db.init(Environment::Dev).await.close().await;
    let err = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyInitialised(..)), "{err}");
    db.cleanup().await;
}

async fn uninitialised_database_is_named(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    if backend == Backend::Postgres {
        // The schema must exist for the search path to point at it; create it empty.
        let (s, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap();
        s.tamper_for_tests("DROP TABLE audit, credentials, keyring_data_keys, keyring_master, stockade_meta, schema_migrations")
            .await
            .unwrap();
        s.close().await;
    }
    let err = Store::open(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotInitialised(_)), "{err}");
    assert!(err.to_string().contains("stockade init"));
    db.cleanup().await;
}

async fn newer_schema_is_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    store
        .tamper_for_tests("INSERT INTO schema_migrations (version, name, checksum, applied_at_ms) VALUES (999, 'future', 'x', 0)")
        .await
        .unwrap();
    store.close().await;
    for result in [
        Store::open(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .map(|_| ()),
        Store::migrate(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { database: 999, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade stockade"));
    }
    db.cleanup().await;
}

async fn edited_migration_is_refused(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    store
        .tamper_for_tests("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        .await
        .unwrap();
    store.close().await;
    let err = Store::open(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::MigrationChanged(1)), "{err}");
    db.cleanup().await;
}

async fn commit_is_all_or_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let before = store.audit_rows(0, 1000).await.unwrap().len();
    let set = Change::new(
        Mutation::SetMeta {
            key: "probe".into(),
            value: "1".into(),
        },
        AuditEntry::new("meta.set", "meta:probe", AuditDetails::new()),
    );
    let failing = Change::new(
        Mutation::DeleteCredential {
            name: "does-not-exist".into(),
        },
        AuditEntry::new(
            "credential.delete",
            "credential:does-not-exist",
            AuditDetails::new(),
        ),
    );
    let err = store
        .commit(&TEST_ACTOR, vec![set.clone(), event(1), failing])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(
        store.meta("probe").await.unwrap(),
        None,
        "the first mutation must be rolled back"
    );
    assert_eq!(
        store.audit_rows(0, 1000).await.unwrap().len(),
        before,
        "no audit row may survive"
    );

    let receipt = store
        .commit(&TEST_ACTOR, vec![set, event(2)])
        .await
        .unwrap();
    assert_eq!(receipt.last_seq - receipt.first_seq, 1);
    assert_eq!(store.meta("probe").await.unwrap().as_deref(), Some("1"));
    assert_eq!(store.verify_audit(None).await.unwrap().problem, None);
    assert!(
        store.commit(&TEST_ACTOR, vec![]).await.is_err(),
        "an empty commit is refused"
    );
    store.close().await;
    db.cleanup().await;
}

async fn migrate_on_a_current_schema_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    db.init(Environment::Dev).await.close().await;
    let (store, report) = Store::migrate(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(
        report.schema_version,
        stockade_store::MIGRATIONS.last().unwrap().version
    );
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_agree() {
    if stockade_testkit::pg_or_skip().is_none() {
        return;
    }
    let lite = TestDb::new(Backend::Sqlite).unwrap();
    let pg = TestDb::new(Backend::Postgres).unwrap();
    let a = lite.init(Environment::Dev).await;
    let b = pg.init(Environment::Dev).await;
    let (ca, cb) = (
        a.schema_columns().await.unwrap(),
        b.schema_columns().await.unwrap(),
    );
    assert!(ca.len() > 20, "{ca:?}");
    assert_eq!(ca, cb);
    a.close().await;
    b.close().await;
    lite.cleanup().await;
    pg.cleanup().await;
}

#[tokio::test]
async fn unreachable_postgres_is_named_without_the_password() {
    let url =
        stockade_store::DatabaseUrl::parse("postgres://stockade:s3cret-pw@127.0.0.1:1/stockade")
            .unwrap();
    let err = Store::open(&url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("s3cret-pw"),
        "{text}"
    );
}

/// The shared SQL layer: `$N` binds parameter N on both backends even when numbers appear
/// out of order; typed NULLs; `Expect::One` failing rolls the whole commit back.
async fn shared_sql_binds_by_number_types_nulls_and_rolls_back(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let store = db.init(Environment::Dev).await;
    let insert = |id: &str, ip: &str, until: Option<i64>| {
        Change::new(
            Mutation::Sql {
                statement: "INSERT INTO bans (id, ip, since_s, until_s, ban_count, recidive, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                params: sql_params![id, ip, 100i64, until, 1i64, false, "manual"],
                expect: Expect::One("ban insert"),
            },
            AuditEntry::new("ban.add", format!("ban:{id}"), AuditDetails::new()),
        )
    };
    store
        .commit(
            &TEST_ACTOR,
            vec![
                insert("b1", "192.0.2.1", None),
                insert("b2", "192.0.2.2", Some(500)),
            ],
        )
        .await
        .unwrap();
    // Parameters out of textual order.
    let lift = Change::new(
        Mutation::Sql {
            statement: "UPDATE bans SET lifted_at_s = $2 WHERE id = $1",
            params: sql_params!["b2", 777i64],
            expect: Expect::One("ban"),
        },
        AuditEntry::new("ban.remove", "ban:b2", AuditDetails::new()),
    );
    store.commit(&TEST_ACTOR, vec![lift]).await.unwrap();
    let rows = store
        .query("SELECT id, until_s, lifted_at_s, recidive, reason FROM bans WHERE since_s = $1 ORDER BY id", sql_params![100i64])
        .await
        .unwrap();
    type Ban = (String, Option<i64>, Option<i64>, bool, String);
    let bans: Vec<Ban> = rows.iter().map(|r| r.decode().unwrap()).collect();
    assert_eq!(bans.len(), 2);
    assert_eq!((bans[0].0.as_str(), bans[0].1), ("b1", None));
    assert_eq!(
        (bans[1].1, bans[1].2, bans[1].3),
        (Some(500), Some(777), false)
    );
    type Wrong = (String, String, Option<i64>, bool, String);
    assert!(
        rows[1].decode::<Wrong>().is_err(),
        "an integer column is not text"
    );
    assert!(
        rows[1].decode::<(String, Option<i64>)>().is_err(),
        "every column is read"
    );
    // One statement that touches no row: nothing of the commit stays.
    let before = store.audit_rows(0, 1000).await.unwrap().len();
    let missing = Change::new(
        Mutation::Sql {
            statement: "UPDATE bans SET lifted_at_s = $2 WHERE id = $1",
            params: sql_params!["nope", 1i64],
            expect: Expect::One("ban nope"),
        },
        AuditEntry::new("ban.remove", "ban:nope", AuditDetails::new()),
    );
    let err = store
        .commit(&TEST_ACTOR, vec![insert("b3", "192.0.2.3", None), missing])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(ref w) if w == "ban nope"),
        "{err}"
    );
    assert!(
        store
            .query_one("SELECT id FROM bans WHERE id = $1", sql_params!["b3"])
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.audit_rows(0, 1000).await.unwrap().len(), before);
    // A duplicate key is a conflict, not a crash.
    let err = store
        .commit(&TEST_ACTOR, vec![insert("b1", "192.0.2.9", None)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    // Bookkeeping touches are not audited.
    let n = store
        .write_unaudited(
            "UPDATE bans SET until_s = $2 WHERE id = $1",
            sql_params!["b1", 900i64],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(store.audit_rows(0, 1000).await.unwrap().len(), before);
    store.close().await;
    db.cleanup().await;
}
