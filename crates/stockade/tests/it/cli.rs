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
    let out = s
        .run(&["demo", "--duration", "6s", "--rate", "30", "--skus", "20"])
        .expect_code(0)
        .stdout();
    // Not a terminal: the set-up, then one plain summary line every few seconds.
    for expect in [
        "Dashboard  https://127.0.0.1:",
        "Sign in    admin@demo.example",
        "oathtool --totp -b ",
        "] orders ",
        "lag p99 tiktok",
        "amazon",
        "ebay",
        "low stock",
        "errors ",
        "Audit chain:",
        "verified",
        "Stock rebuilt from the ledger: matches",
        "Cleaned up.",
    ] {
        assert!(out.contains(expect), "demo output lacks {expect:?}:\n{out}");
    }
    assert!(
        !out.contains(" WARN ") && !out.contains(" INFO "),
        "log lines in the output:\n{out}"
    );
    // It cleaned up after itself.
    let dir = out
        .lines()
        .find_map(|l| l.strip_prefix("Data       "))
        .expect("the demo names its directory");
    assert!(!std::path::Path::new(dir).exists(), "{dir} was left behind");
    let stored: u64 = out
        .lines()
        .filter_map(|l| l.split_once("] orders ").map(|(_, r)| r))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0);
    assert!(
        stored > 20,
        "the demo stored only {stored} order changes:\n{out}"
    );
}

#[test]
fn bench_sync_prints_one_json_object_last() {
    let s = Sandbox::new();
    let out = s
        .run(&[
            "bench",
            "sync",
            "--rate",
            "200",
            "--duration",
            "3s",
            "--skus",
            "20",
            "--json",
        ])
        .expect_code(0)
        .stdout();
    let last = out.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    for key in [
        "orders_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "lost",
        "undelivered",
        "recovered_by_poll",
        "duplicated",
        "oversold",
        "peak_rss_mb",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {last}");
    }
    assert_eq!(v["lost"], 0, "{last}");
    assert_eq!(v["duplicated"], 0, "{last}");
    assert!(v["orders_stored"].as_u64().unwrap() > 300, "{last}");
    assert!(v["p99_ms"].as_f64().unwrap() > 0.0, "{last}");
    assert_eq!(v["audit_ok"], true, "{last}");
    assert_eq!(out.lines().filter(|l| l.starts_with('{')).count(), 1);
}

#[test]
fn bench_workflow_runs_the_server_and_accounts_for_every_execution() {
    let s = Sandbox::new();
    let out = s
        .run(&[
            "bench",
            "workflow",
            "--duration",
            "2s",
            "--concurrency",
            "4",
            "--skus",
            "5",
            "--json",
        ])
        .expect_code(0)
        .stdout();
    let last = out.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    for key in [
        "executions_per_s",
        "p50_ms",
        "p99_ms",
        "cpu_ms_per_execution",
        "failed",
        "lost",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {last}");
    }
    assert!(v["executions"].as_u64().unwrap() > 10, "{last}");
    assert_eq!(v["lost"], 0, "{last}");
    assert_eq!(v["failed"], 0, "{last}");
    assert_eq!(v["ledger_ok"], true, "{last}");
    // The server's CPU was read from its own process.
    assert!(v["cpu_ms_per_execution"].as_f64().unwrap() > 0.0, "{last}");
    assert_eq!(out.lines().filter(|l| l.starts_with('{')).count(), 1);
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

// ---- connections, catalog and stock ------------------------------------------------

const TT_SECRETS: [&str; 3] = [
    "tt-key-4f1c9e2a",
    "tt-secret-8d7b3a65",
    "tt-refresh-2c9e4b17",
];

/// A credentials file with mode `mode`.
fn credentials_file(s: &Sandbox, name: &str, json: &str, mode: u32) -> String {
    let path = s.dir.join(name);
    std::fs::write(&path, json).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn tiktok_credentials(s: &Sandbox) -> String {
    credentials_file(
        s,
        "tiktok.json",
        &format!(
            r#"{{"app_key":"{}","app_secret":"{}","refresh_token":"{}"}}"#,
            TT_SECRETS[0], TT_SECRETS[1], TT_SECRETS[2]
        ),
        0o600,
    )
}

/// `connection add` of a TikTok sandbox connection named `name`.
fn add_tiktok<'a>(name: &'a str, file: &'a str) -> Vec<&'a str> {
    vec![
        "connection",
        "add",
        "--marketplace",
        "tiktok",
        "--name",
        name,
        "--account",
        "7494-shop",
        "--api-url",
        "https://127.0.0.1:4443",
        "--shop-cipher",
        "ROW_abc",
        "--credentials-file",
        file,
    ]
}

/// Neither output stream of a command shows a secret.
#[track_caller]
fn no_secrets(out: crate::harness::Outcome, secrets: &[&str]) -> crate::harness::Outcome {
    for secret in secrets {
        assert!(
            !out.stdout().contains(secret) && !out.stderr().contains(secret),
            "a secret was printed:\nstdout:\n{}\nstderr:\n{}",
            out.stdout(),
            out.stderr()
        );
    }
    out
}

const CONNECTION_CREDENTIALS: &str =
    "SELECT COUNT(*) FROM credentials WHERE name LIKE 'connection/shop1/%'";

async fn count(url: &str, sql: &'static str) -> i64 {
    let url = stockade_store::DatabaseUrl::parse(url).unwrap();
    let store =
        stockade_store::Store::open(&url, stockade_core::Environment::Dev, &Default::default())
            .await
            .unwrap();
    let n = store
        .query_one(sql, vec![])
        .await
        .unwrap()
        .unwrap()
        .decode::<i64>()
        .unwrap();
    store.close().await;
    n
}

async fn connections_end_to_end(s: &Sandbox, url: &str) {
    let secrets: Vec<&str> = TT_SECRETS.into();
    let file = tiktok_credentials(s);
    let out = no_secrets(s.run(&add_tiktok("shop1", &file)).expect_code(0), &secrets);
    assert!(
        out.stdout().contains("/hooks/tiktok/shop1") && out.stdout().contains("sandbox"),
        "{}",
        out.stdout()
    );

    let list = no_secrets(s.run(&["connection", "list"]).expect_code(0), &secrets).stdout();
    let row = list.lines().find(|l| l.starts_with("shop1 ")).unwrap();
    for word in ["tiktok", "sandbox", "active", "7494-shop"] {
        assert!(row.contains(word), "{list}");
    }
    let show = no_secrets(
        s.run(&["connection", "show", "shop1"]).expect_code(0),
        &secrets,
    )
    .stdout();
    for word in [
        "app_key, app_secret, refresh_token",
        "https://127.0.0.1:4443",
        "ROW_abc",
        "/hooks/tiktok/shop1",
        "listings         0",
        "orders           0",
        "not polled yet",
    ] {
        assert!(show.contains(word), "show lacks {word:?}:\n{show}");
    }
    assert_eq!(count(url, CONNECTION_CREDENTIALS).await, 3);

    // Refusals, each naming what to do and storing nothing.
    let open = credentials_file(s, "open.json", "{}", 0o644);
    let out = no_secrets(s.run(&add_tiktok("shop2", &open)).expect_code(2), &secrets);
    assert!(out.stderr().contains("chmod 600"), "{}", out.stderr());
    let partial = credentials_file(
        s,
        "partial.json",
        &format!(
            r#"{{"app_key":"{}","app_secret":"{}"}}"#,
            TT_SECRETS[0], TT_SECRETS[1]
        ),
        0o600,
    );
    let out = no_secrets(
        s.run(&add_tiktok("shop2", &partial)).expect_code(2),
        &secrets,
    );
    assert!(out.stderr().contains("refresh_token"), "{}", out.stderr());
    let not_text = credentials_file(
        s,
        "number.json",
        r#"{"app_key":"a","app_secret":"b","refresh_token":987654321}"#,
        0o600,
    );
    let out = s.run(&add_tiktok("shop2", &not_text)).expect_code(2);
    assert!(
        out.stderr().contains("refresh_token") && !out.stderr().contains("987654321"),
        "{}",
        out.stderr()
    );
    let mut live = add_tiktok("shop2", &file);
    live[9] = "https://open-api.tiktokglobalshop.com";
    let out = no_secrets(s.run(&live).expect_code(2), &secrets);
    assert!(out.stderr().contains("live endpoint"), "{}", out.stderr());
    let mut no_url = add_tiktok("shop2", &file);
    no_url.drain(8..10);
    let out = s.run(&no_url).expect_code(2);
    assert!(out.stderr().contains("--api-url"), "{}", out.stderr());
    let out = no_secrets(s.run(&add_tiktok("shop1", &file)).expect_code(2), &secrets);
    assert!(out.stderr().contains("already exists"), "{}", out.stderr());
    let list = s.run(&["connection", "list"]).expect_code(0).stdout();
    assert!(!list.contains("shop2"), "{list}");

    // The same JSON on standard input.
    let ebay = r#"{"client_id":"eb-id-77a1","client_secret":"eb-secret-5e0f","refresh_token":"eb-refresh-93cd"}"#;
    let out = s
        .run_with_stdin(
            &s.data(),
            &[
                "connection",
                "add",
                "--marketplace",
                "ebay",
                "--name",
                "ebay-us",
                "--account",
                "seller-9",
                "--api-url",
                "https://127.0.0.1:4445",
                "--marketplace-id",
                "EBAY_US",
                "--credentials-stdin",
            ],
            Some(ebay),
        )
        .expect_code(0);
    let out = no_secrets(out, &["eb-id-77a1", "eb-secret-5e0f", "eb-refresh-93cd"]);
    assert!(
        out.stdout().contains("/hooks/ebay/ebay-us"),
        "{}",
        out.stdout()
    );

    // Pause and resume.
    s.run(&["connection", "pause", "shop1"]).expect_code(0);
    let list = s.run(&["connection", "list"]).expect_code(0).stdout();
    assert!(
        list.lines()
            .any(|l| l.starts_with("shop1 ") && l.contains("paused")),
        "{list}"
    );
    s.run(&["connection", "resume", "shop1"]).expect_code(0);
    let list = s.run(&["connection", "list"]).expect_code(0).stdout();
    assert!(
        list.lines()
            .any(|l| l.starts_with("shop1 ") && l.contains("active")),
        "{list}"
    );
    s.run(&["connection", "pause", "nosuch"]).expect_code(2);

    // Revoke: no terminal to confirm on without --yes; with it, the receipt.
    let out = s.run(&["connection", "revoke", "shop1"]).expect_code(2);
    assert!(out.stderr().contains("--yes"), "{}", out.stderr());
    let out = no_secrets(
        s.run(&["connection", "revoke", "shop1", "--yes"])
            .expect_code(0),
        &secrets,
    )
    .stdout();
    assert!(
        out.lines()
            .any(|l| l.contains("credentials deleted") && l.trim_end().ends_with(" 3"))
            && out
                .lines()
                .any(|l| l.contains("data keys destroyed") && l.trim_end().ends_with(" 1")),
        "{out}"
    );
    let show = no_secrets(
        s.run(&["connection", "show", "shop1"]).expect_code(0),
        &secrets,
    )
    .stdout();
    assert!(
        show.contains("revoked")
            && show.contains("credentials      (none)")
            && show.contains("purge receipt"),
        "{show}"
    );
    let out = s.run(&["connection", "resume", "shop1"]).expect_code(2);
    assert!(out.stderr().contains("revoked"), "{}", out.stderr());
    assert_eq!(count(url, CONNECTION_CREDENTIALS).await, 0);
    let audit = no_secrets(
        s.run(&["audit", "export"]).expect_code(0),
        &["eb-id-77a1", "eb-secret-5e0f", "eb-refresh-93cd"],
    );
    let audit = no_secrets(audit, &secrets).stdout();
    for action in [
        "connection.add",
        "connection.pause",
        "connection.resume",
        "connection.purge",
    ] {
        assert!(
            audit.contains(&format!("\"action\":\"{action}\"")),
            "{action}"
        );
    }
    s.run(&["audit", "verify"]).expect_code(0);
    s.run(&["key", "verify"]).expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_added_shown_paused_and_revoked_without_printing_secrets() {
    let s = init_dev();
    let url = format!("sqlite://{}", s.data().join("stockade.db").display());
    connections_end_to_end(&s, &url).await;
    // Not in the database file either: the values are encrypted.
    for f in ["stockade.db", "stockade.db-wal"] {
        let bytes = std::fs::read(s.data().join(f)).unwrap_or_default();
        for secret in TT_SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} is in {f}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    s.run(&["--env", "dev", "init"]).expect_code(0);
    connections_end_to_end(&s, &url).await;
    drop_schema(&schema).await;
}

#[test]
fn a_production_instance_connects_to_live_endpoints_only() {
    let s = Sandbox::new();
    s.run(&["--env", "prod", "init"]).expect_code(0);
    let file = tiktok_credentials(&s);
    let out = no_secrets(
        s.run(&add_tiktok("shop1", &file)).expect_code(2),
        &TT_SECRETS,
    );
    assert!(
        out.stderr().contains("live endpoints") && out.stderr().contains("--env dev"),
        "{}",
        out.stderr()
    );
    // Without --api-url, prod uses the marketplace's live API.
    let mut live = add_tiktok("shop1", &file);
    live.drain(8..10);
    let out = no_secrets(s.run(&live).expect_code(0), &TT_SECRETS).stdout();
    assert!(
        out.contains("live endpoint https://open-api.tiktokglobalshop.com"),
        "{out}"
    );
}

const CATALOG: &str = "sku,on_hand,shop1:listing,shop1:buffer,shop1:max,ebay-us:listing
A-1,10,1729:3301,2,,5551
B-2,5,1729:3302,0,3,-
\"C,3\",0,,,,
";

async fn catalog_end_to_end(s: &Sandbox, url: &str) {
    let file = tiktok_credentials(s);
    s.run(&add_tiktok("shop1", &file)).expect_code(0);
    let ebay = credentials_file(
        s,
        "ebay.json",
        r#"{"client_id":"i","client_secret":"s","refresh_token":"r"}"#,
        0o600,
    );
    s.run(&[
        "connection",
        "add",
        "--marketplace",
        "ebay",
        "--name",
        "ebay-us",
        "--account",
        "seller-9",
        "--api-url",
        "https://127.0.0.1:4445",
        "--credentials-file",
        &ebay,
    ])
    .expect_code(0);
    let csv = s.dir.join("catalog.csv");
    std::fs::write(&csv, CATALOG).unwrap();
    let out = s
        .run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(out.contains("3 SKU(s) and 4 listing(s)"), "{out}");

    let list = s.run(&["sku", "list"]).expect_code(0).stdout();
    let row = |sku: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.starts_with(sku))
            .unwrap_or_else(|| panic!("{sku} not listed:\n{list}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("A-1")[1..4], ["10", "0", "10"], "{list}");
    assert!(
        list.contains("shop1 8/-") && list.contains("ebay-us 10/-"),
        "{list}"
    );
    assert_eq!(row("B-2")[1..4], ["5", "0", "5"], "{list}");
    assert!(list.contains("shop1 3/-"), "{list}");
    assert_eq!(row("C,3")[1..4], ["0", "0", "0"], "{list}");

    // Export, import the export, export again: identical.
    let first = s.run(&["sku", "export"]).expect_code(0).stdout();
    assert!(
        first.starts_with("sku,on_hand,reserved,available,") && first.contains("\"C,3\",0,0,0"),
        "{first}"
    );
    let exported = s.dir.join("exported.csv");
    s.run(&["sku", "export", "--output", exported.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(std::fs::read_to_string(&exported).unwrap(), first);
    s.run(&["sku", "import", exported.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(s.run(&["sku", "export"]).expect_code(0).stdout(), first);

    // A broken file changes nothing, not even its good rows.
    let broken = s.dir.join("broken.csv");
    std::fs::write(&broken, "sku,on_hand\nA-1,99\nB-2,1\nA-1,7\n").unwrap();
    let audit_rows = s
        .run(&["audit", "export"])
        .expect_code(0)
        .stdout()
        .lines()
        .count();
    let out = s
        .run(&["sku", "import", broken.to_str().unwrap()])
        .expect_code(2);
    assert!(
        out.stderr().contains("line 4")
            && out.stderr().contains("A-1")
            && out.stderr().contains("line 2"),
        "{}",
        out.stderr()
    );
    assert_eq!(s.run(&["sku", "export"]).expect_code(0).stdout(), first);
    assert_eq!(
        s.run(&["audit", "export"])
            .expect_code(0)
            .stdout()
            .lines()
            .count(),
        audit_rows
    );
    let out = s
        .run(&["sku", "import", s.dir.join("missing.csv").to_str().unwrap()])
        .expect_code(2);
    assert!(out.stderr().contains("missing.csv"), "{}", out.stderr());

    // Stock against its ledger.
    let out = s.run(&["stock", "verify"]).expect_code(0).stdout();
    assert!(out.contains("stock matches the ledger: 3 SKU(s)"), "{out}");
    tamper(url, "UPDATE skus SET on_hand = 42 WHERE sku = 'B-2'").await;
    let out = s.run(&["stock", "verify"]).expect_code(3);
    assert!(
        out.stdout()
            .lines()
            .any(|l| l.starts_with("B-2") && l.contains("42")),
        "{}",
        out.stdout()
    );
    assert!(out.stderr().contains("stock rebuild"), "{}", out.stderr());
    let out = s.run(&["stock", "rebuild"]).expect_code(0).stdout();
    assert!(out.contains("1 SKU(s) rebuilt"), "{out}");
    s.run(&["stock", "verify"]).expect_code(0);
    assert_eq!(s.run(&["sku", "export"]).expect_code(0).stdout(), first);
    s.run(&["audit", "verify"]).expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_import_export_round_trip_and_stock_verify() {
    let s = init_dev();
    let url = format!("sqlite://{}", s.data().join("stockade.db").display());
    catalog_end_to_end(&s, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    s.run(&["--env", "dev", "init"]).expect_code(0);
    catalog_end_to_end(&s, &url).await;
    drop_schema(&schema).await;
}

#[test]
fn connection_sku_and_stock_commands_have_help() {
    let s = Sandbox::new();
    let top = s.run(&["--help"]).expect_code(0).stdout();
    for word in ["connection", "sku", "stock"] {
        assert!(top.contains(word), "--help lacks {word}:\n{top}");
    }
    for sub in [
        vec!["connection", "add"],
        vec!["connection", "list"],
        vec!["connection", "show"],
        vec!["connection", "pause"],
        vec!["connection", "resume"],
        vec!["connection", "revoke"],
        vec!["sku", "import"],
        vec!["sku", "export"],
        vec!["sku", "list"],
        vec!["stock", "verify"],
        vec!["stock", "rebuild"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let out = s.run(&args).expect_code(0).stdout();
        assert!(
            out.lines().next().is_some_and(|l| l.len() > 20),
            "{sub:?} --help has no description:\n{out}"
        );
    }
    let add = s
        .run(&["connection", "add", "--help"])
        .expect_code(0)
        .stdout();
    assert!(
        add.contains("0600") && add.contains("--credentials-stdin"),
        "{add}"
    );
    // Secrets are never arguments.
    s.run(&[
        "connection",
        "add",
        "--marketplace",
        "tiktok",
        "--name",
        "x",
        "--account",
        "1",
        "--app-secret",
        "s",
    ])
    .expect_code(2);
}

#[test]
fn sync_settings_come_from_the_config_file() {
    let s = init_dev();
    let path = s.data().join("stockade.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\n[sync]\npoll_interval = \"never\"\npoll_overlap = \"5m\"\npii_retention = \"14d\"\n",
    );
    std::fs::write(&path, &text).unwrap();
    let out = s.run(&["config"]).expect_code(0).stdout();
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing:\n{out}"))
            .to_owned()
    };
    assert!(
        line("sync.poll_interval").contains("never")
            && line("sync.poll_interval").contains("[config file]")
    );
    assert!(line("sync.poll_overlap").contains("5m"));
    assert!(
        line("sync.reconcile_interval").contains("5m")
            && line("sync.reconcile_interval").contains("[default]")
    );
    // `[sync] pii_retention` is the older name of the three `[retention.buyer_pii]` periods.
    assert!(line("retention.buyer_pii.amazon").contains("14d"));
    assert!(
        line("retention.buyer_pii.tiktok").contains("older name")
            || line("retention.buyer_pii.tiktok").contains("sync.pii_retention")
    );
    std::fs::write(&path, format!("{text}reconcile_interval = \"soon\"\n")).unwrap();
    let out = s.run(&["config"]).expect_code(2);
    assert!(
        out.stderr().contains("sync.reconcile_interval"),
        "{}",
        out.stderr()
    );
    std::fs::write(&path, text.replace("\"5m\"", "\"never\"")).unwrap();
    let out = s.run(&["config"]).expect_code(2);
    assert!(
        out.stderr().contains("sync.poll_overlap"),
        "{}",
        out.stderr()
    );
}
