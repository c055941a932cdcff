//! Exit codes and messages of every command, as an operator meets them.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Sandbox, drop_schema, pg_schema_url, tamper};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn init_dev() -> Sandbox {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    s
}

#[test]
fn help_describes_every_command_and_the_exit_codes() {
    let s = Sandbox::new();
    let top = s.run(&["--help"]).expect_code(0).stdout();
    for word in [
        "init",
        "migrate",
        "key",
        "audit",
        "demo",
        "--env",
        "--data-dir",
        "--database-url",
        "--config",
        "EXIT CODES",
        "3  a verification",
    ] {
        assert!(top.contains(word), "--help lacks {word}:\n{top}");
    }
    for sub in [
        vec!["init"],
        vec!["migrate"],
        vec!["key", "rotate"],
        vec!["key", "status"],
        vec!["key", "verify"],
        vec!["audit", "verify"],
        vec!["audit", "export"],
        vec!["audit", "hash-value"],
        vec!["config"],
        vec!["demo"],
    ] {
        let mut args: Vec<&str> = sub.clone();
        args.push("--help");
        let out = s.run(&args).expect_code(0).stdout();
        assert!(
            out.lines().next().is_some_and(|l| l.len() > 20),
            "{sub:?} --help has no description:\n{out}"
        );
        assert!(
            out.contains("--env"),
            "{sub:?} --help lacks the global flags"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let s = Sandbox::new();
    s.run(&["no-such-command"]).expect_code(2);
    let out = s.run(&["init"]).expect_code(2);
    assert!(out.stderr().contains("--env"), "{}", out.stderr());
    let out = s.run(&["--env", "production", "init"]).expect_code(2);
    assert!(
        out.stderr().contains("prod, staging, dev"),
        "{}",
        out.stderr()
    );
    let out = s.run(&["--env", "dev", "audit", "verify"]).expect_code(2);
    assert!(out.stderr().contains("stockade init"), "{}", out.stderr());
    assert!(
        !s.data().join("stockade.db").exists(),
        "a failed command must not create a database"
    );
}

#[test]
fn init_creates_a_private_environment_once() {
    let s = Sandbox::new();
    let out = s.run(&["--env", "prod", "init"]).expect_code(0).stdout();
    assert!(
        out.contains("initialised environment prod") && out.contains("head "),
        "{out}"
    );
    let data = s.data();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("stockade.db")), 0o600);
    assert!(
        std::fs::read_to_string(data.join("stockade.toml"))
            .unwrap()
            .contains("env = \"prod\"")
    );
    let key_before = std::fs::read(data.join("master.key")).unwrap();
    let again = s.run(&["--env", "prod", "init"]).expect_code(2);
    assert!(
        again.stderr().contains("already initialised"),
        "{}",
        again.stderr()
    );
    assert_eq!(
        std::fs::read(data.join("master.key")).unwrap(),
        key_before,
        "the key file must not change"
    );
    // The environment now comes from the data directory's stockade.toml.
    s.run(&["audit", "verify"]).expect_code(0);
}

#[test]
fn another_environment_is_refused_and_nothing_is_written() {
    let s = init_dev();
    let db = s.data().join("stockade.db");
    let before = std::fs::read(&db).unwrap();
    assert!(
        !s.data().join("stockade.db-wal").exists(),
        "a closed store leaves no WAL behind"
    );
    for args in [
        vec!["--env", "prod", "audit", "verify"],
        vec!["--env", "staging", "key", "rotate"],
        vec!["--env", "prod", "init"],
        vec!["--env", "prod", "migrate"],
    ] {
        let out = s.run(&args).expect_code(2);
        assert!(
            out.stderr().contains("belongs to environment \"dev\""),
            "{args:?}: {}",
            out.stderr()
        );
        assert_eq!(
            out.stderr().lines().count(),
            1,
            "one-line error: {}",
            out.stderr()
        );
    }
    let via_env = Sandbox {
        dir: s.dir.clone(),
        env: vec![("STOCKADE_ENV".into(), "prod".into())],
    };
    via_env.run(&["audit", "verify"]).expect_code(2);
    std::mem::forget(via_env);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database file changed"
    );
    // A read-only look may leave an empty WAL index behind, never a logged write.
    let wal = s.data().join("stockade.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the refused commands wrote to the WAL"
    );
}

#[test]
fn master_key_problems_are_refused_with_what_to_do() {
    let s = init_dev();
    let key = s.data().join("master.key");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = s.run(&["key", "status"]).expect_code(2);
    assert!(out.stderr().contains("chmod 600"), "{}", out.stderr());
    assert_eq!(mode(&key), 0o640, "the mode must not be fixed silently");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let good = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&key, "stockade-master-key 1 env=dev\nkey 1 tooshort\n").unwrap();
    let out = s.run(&["key", "status"]).expect_code(2);
    assert!(out.stderr().contains("malformed"), "{}", out.stderr());

    std::fs::write(&key, good.replace("env=dev", "env=prod")).unwrap();
    let out = s.run(&["key", "status"]).expect_code(2);
    assert!(
        out.stderr().contains("belongs to environment"),
        "{}",
        out.stderr()
    );
    std::fs::write(&key, &good).unwrap();

    let wrong = s.run(&["key", "status"]).expect_code(0);
    assert!(wrong.stdout().contains("v1"), "{}", wrong.stdout());

    let other = Sandbox {
        dir: s.dir.clone(),
        env: vec![(
            "STOCKADE_MASTER_KEY".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        )],
    };
    let out = other.run(&["key", "status"]).expect_code(2);
    assert!(
        out.stderr().contains("does not match this database"),
        "{}",
        out.stderr()
    );
    assert!(
        !out.stderr().contains("AAECAwQF"),
        "a key must never be echoed"
    );
    std::mem::forget(other);

    std::fs::remove_file(&key).unwrap();
    let out = s.run(&["key", "status"]).expect_code(2);
    assert!(out.stderr().contains("no master key"), "{}", out.stderr());
}

#[test]
fn rotation_rewraps_and_is_audited() {
    let s = init_dev();
    let out = s.run(&["key", "rotate"]).expect_code(0).stdout();
    assert!(
        out.contains("rotated to v2") && out.contains("1 data key(s) rewrapped"),
        "{out}"
    );
    assert_eq!(mode(&s.data().join("master.key")), 0o600);
    let status = s.run(&["key", "status"]).expect_code(0).stdout();
    assert!(status.contains("v2") && status.contains("v1"), "{status}");
    s.run(&["key", "verify"]).expect_code(0);
    let export = s
        .run(&["audit", "export", "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    assert!(export.contains("\"action\":\"key.rotate\""), "{export}");
    s.run(&["audit", "verify"]).expect_code(0);
}

#[test]
fn env_supplied_master_key_is_used_and_never_written() {
    let s = Sandbox::new().with(
        "STOCKADE_MASTER_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    s.run(&["--env", "staging", "init"]).expect_code(0);
    assert!(!s.data().join("master.key").exists());
    s.run(&["key", "status"]).expect_code(0);
    let out = s.run(&["key", "rotate"]).expect_code(2);
    assert!(
        out.stderr().contains("STOCKADE_MASTER_KEY"),
        "{}",
        out.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_first_bad_row_and_export_streams_all() {
    let s = init_dev();
    s.run(&["key", "rotate"]).expect_code(0);
    let ok = s.run(&["audit", "verify"]).expect_code(0).stdout();
    assert!(
        ok.starts_with("audit chain intact:") && ok.lines().count() == 1,
        "{ok}"
    );
    let head = ok.trim().rsplit(' ').next().unwrap().to_owned();
    s.run(&["audit", "verify", "--anchor", &head])
        .expect_code(0);
    s.run(&["audit", "verify", "--anchor", "nonsense"])
        .expect_code(2);

    let export = s
        .run(&["audit", "export", "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    let lines: Vec<serde_json::Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rows: i64 = ok.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(lines.len() as i64, rows);
    assert_eq!(lines[0]["seq"], 1);
    assert!(
        lines
            .iter()
            .all(|l| l["env"] == "dev" && l["hash"].as_str().unwrap().len() == 64)
    );
    let tail = s
        .run(&["audit", "export", "--after", "3"])
        .expect_code(0)
        .stdout();
    assert_eq!(tail.lines().count() as i64, rows - 3);

    let url = format!("sqlite://{}", s.data().join("stockade.db").display());
    tamper(&url, "UPDATE audit SET actor = 'user:1' WHERE seq = 4").await;
    let bad = s.run(&["audit", "verify"]).expect_code(3);
    assert!(
        bad.stderr().contains("row 4 was altered"),
        "{}",
        bad.stderr()
    );
    tamper(&url, "DELETE FROM audit WHERE seq = 4").await;
    let bad = s.run(&["audit", "verify"]).expect_code(3);
    assert!(
        bad.stderr().contains("row 4 is missing"),
        "{}",
        bad.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let s = init_dev();
    let url = format!("sqlite://{}", s.data().join("stockade.db").display());
    tamper(
        &url,
        "INSERT INTO schema_migrations VALUES (42, 'future', 'x', 0)",
    )
    .await;
    let out = s.run(&["audit", "verify"]).expect_code(2);
    assert!(
        out.stderr().contains("upgrade stockade"),
        "{}",
        out.stderr()
    );
    s.run(&["migrate"]).expect_code(2);
}

#[test]
fn hash_value_reads_stdin_and_tags_consistently() {
    let s = init_dev();
    let a = s
        .run_with_stdin(
            &s.data(),
            &["audit", "hash-value"],
            Some("jane@example.com\n"),
        )
        .expect_code(0)
        .stdout();
    let b = s
        .run_with_stdin(
            &s.data(),
            &["audit", "hash-value"],
            Some("jane@example.com"),
        )
        .expect_code(0)
        .stdout();
    assert!(
        a.starts_with("hmac-sha256:") && a.trim().len() == 12 + 64,
        "{a}"
    );
    assert_eq!(a, b);
    assert!(!a.contains("jane"));
}

#[test]
fn config_file_flags_and_variables_layer_in_order() {
    let s = init_dev();
    let out = s.run(&["config"]).expect_code(0).stdout();
    assert!(
        out.contains("env") && out.contains("dev") && out.contains("[config file]"),
        "{out}"
    );
    let out = s
        .run(&["--env", "staging", "config"])
        .expect_code(0)
        .stdout();
    assert!(
        out.lines().any(|l| l.starts_with("env")
            && l.contains("staging")
            && l.contains("[flag or environment]")),
        "{out}"
    );
    let cfg = s.dir.join("bad.toml");
    std::fs::write(&cfg, "env = \"dev\"\nmaster_key = \"AAAA\"\n").unwrap();
    let out = s
        .run(&["--config", cfg.to_str().unwrap(), "config"])
        .expect_code(2);
    assert!(
        out.stderr().contains("unknown field") && !out.stderr().contains("AAAA"),
        "{}",
        out.stderr()
    );
}

#[test]
fn the_demo_runs_end_to_end() {
    let s = Sandbox::new();
    let out = s.run(&["demo"]).expect_code(0).stdout();
    for expect in [
        "not found",
        "is refused",
        "rotated to v2",
        "crypto-shredded",
        "intact",
        "was altered",
    ] {
        assert!(out.contains(expect), "demo output lacks {expect:?}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend_end_to_end() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    let out = s.run(&["--env", "dev", "init"]).expect_code(0).stdout();
    assert!(
        out.contains("postgres://") && !out.contains("stockade:stockade@"),
        "{out}"
    );
    s.run(&["key", "rotate"]).expect_code(0);
    s.run(&["audit", "verify"]).expect_code(0);
    let out = s.run(&["--env", "prod", "audit", "verify"]).expect_code(2);
    assert!(
        out.stderr().contains("belongs to environment \"dev\""),
        "{}",
        out.stderr()
    );
    tamper(&url, "UPDATE audit SET resource = 'x' WHERE seq = 2").await;
    let out = s.run(&["audit", "verify"]).expect_code(3);
    assert!(
        out.stderr().contains("row 2 was altered"),
        "{}",
        out.stderr()
    );
    drop_schema(&schema).await;
}

#[test]
fn unreachable_postgres_exits_1_without_the_password() {
    let s = Sandbox::new().with(
        "STOCKADE_DATABASE_URL",
        "postgres://stockade:pa55word@127.0.0.1:1/stockade",
    );
    let out = s.run(&["--env", "dev", "audit", "verify"]).expect_code(1);
    assert!(
        out.stderr()
            .contains("cannot reach the database at postgres://127.0.0.1:1"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("pa55word"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_ciphertext_fails_key_verify_with_exit_3() {
    use stockade_core::{Actor, Environment, SecretString};
    use stockade_vault::{CredentialScopes, KeyOwner, MasterKeys, NewCredential, Vault};

    let s = init_dev();
    s.run(&["key", "verify"]).expect_code(0);
    // Store a credential with the library, as the server will.
    let url = stockade_store::DatabaseUrl::Sqlite(s.data().join("stockade.db"));
    let store = stockade_store::Store::open(&url, Environment::Dev, &Default::default())
        .await
        .unwrap();
    let master = MasterKeys::load_file(&s.data().join("master.key"), Environment::Dev).unwrap();
    let vault = Vault::open(store, master).await.unwrap();
    let new = NewCredential {
        name: "tiktok-1/app",
        kind: "tiktok_app_secret",
        secret: &SecretString::from("s3cr3t-app-value".to_owned()),
        owner: &KeyOwner::connection("tiktok-1").unwrap(),
        scopes: &CredentialScopes::default(),
        account: None,
    };
    vault
        .put_credential(&new, &Actor::System("test"))
        .await
        .unwrap();
    vault.close().await;
    s.run(&["key", "verify"]).expect_code(0);

    let sqlite_url = format!("sqlite://{}", s.data().join("stockade.db").display());
    tamper(
        &sqlite_url,
        "UPDATE credentials SET ciphertext = CAST(substr(ciphertext, 1, length(ciphertext) - 1) \
         || CASE WHEN substr(ciphertext, -1) = X'00' THEN X'01' ELSE X'00' END AS BLOB)",
    )
    .await;
    let out = s.run(&["key", "verify"]).expect_code(3);
    assert!(
        out.stderr().contains("tiktok-1/app") && out.stderr().contains("altered"),
        "{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("s3cr3t"));
}

#[test]
fn an_interrupted_init_is_completed_by_running_init_again() {
    // A bad master key stops init after the database was created, before the keyring.
    let s = Sandbox::new().with("STOCKADE_MASTER_KEY", "not-a-key");
    let out = s.run(&["--env", "dev", "init"]).expect_code(2);
    assert!(
        out.stderr().contains("malformed") && !out.stderr().contains("not-a-key"),
        "{}",
        out.stderr()
    );
    let fixed = Sandbox {
        dir: s.dir.clone(),
        env: Vec::new(),
    };
    fixed.run(&["--env", "dev", "init"]).expect_code(0);
    fixed.run(&["key", "status"]).expect_code(0);
    fixed.run(&["audit", "verify"]).expect_code(0);
    fixed.run(&["--env", "dev", "init"]).expect_code(2);
    std::mem::forget(fixed);
}
