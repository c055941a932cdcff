//! `stockade compliance report|verify` against fresh data directories: the report on a
//! fresh environment exits 1 naming the failing clauses, and every format holds every
//! clause; the plaintext scan passes on real sealed orders and catches a planted buyer
//! value (SQLite file bytes, and PostgreSQL text columns); TLS as served while the server
//! runs; a signed report verifies and an edited one does not; bad input exits 2 and
//! writes nothing. (The host checks' pass/fail/cannot-check cases run on fixture files
//! in stockade-app's unit tests; here they run for real.)

use serde_json::Value;
use stockade_core::order::{Address, Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_core::{Actor, Environment, Pii};
use stockade_store::{DatabaseUrl, Store};
use stockade_vault::{MasterKeys, Vault};

use crate::harness::{Sandbox, drop_schema, pg_schema_url, require_tool};
use crate::server::{Server, init};

const BUYER: &str = "Lin Meihua";

fn json_report(sb: &Sandbox, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["compliance", "report", "--format", "json"];
    args.extend_from_slice(extra);
    let out = sb.run(&args);
    let v: Value = serde_json::from_str(&out.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout(), out.stderr()));
    (out.code(), v)
}

fn clause<'a>(r: &'a Value, id: &str) -> &'a Value {
    r["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no clause {id} in {r}"))
}

fn evidence(r: &Value, id: &str, key: &str) -> Option<Vec<String>> {
    clause(r, id)["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| {
            e["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        })
}

fn ids(r: &Value) -> Vec<String> {
    r["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A port nothing listens on (the default 8443 may be another test's server).
fn free_port_config() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")
}

#[test]
fn a_fresh_environment_fails_named_clauses_in_every_format() {
    let sb = init("dev", &free_port_config());
    let (code, r) = json_report(&sb, &[]);
    assert_eq!(code, 1);
    let all = ids(&r);
    for id in [
        "mfa",
        "password",
        "tls",
        "pii",
        "pii_scan",
        "audit",
        "alerts",
        "backups",
        "incident",
        "retention",
        "mirror",
        "host",
        "host_ssh",
        "host_firewall",
        "host_fail2ban",
        "host_updates",
        "host_files",
        "host_user",
        "dpp_network",
        "dpp_access",
        "dpp_least_privilege",
        "dpp_credentials",
        "dpp_transit",
        "dpp_incident",
        "dpp_deletion",
        "dpp_retention",
        "dpp_at_rest",
        "dpp_logging",
    ] {
        assert!(all.contains(&id.to_owned()), "{id} missing from {all:?}");
    }
    // No channel, no backup, no mirror, no retention run yet; the server is not running.
    for (id, want) in [
        ("alerts", "fail"),
        ("backups", "fail"),
        ("mirror", "fail"),
        ("retention", "fail"),
        ("tls", "cannot_check"),
        ("pii_scan", "not_applicable"),
        ("audit", "pass"),
        ("dpp_transit", "cannot_check"),
        ("dpp_access", "fail"),
    ] {
        assert_eq!(clause(&r, id)["verdict"], want, "{id}: {}", clause(&r, id));
    }
    assert!(evidence(&r, "tls", "tls_probe_down").is_some());
    assert_eq!(
        evidence(&r, "review", "review_lint").unwrap(),
        ["0", "0", "0"]
    );
    assert!(evidence(&r, "dpp_access", "dpp_review_none").is_some());
    assert_eq!(
        evidence(&r, "dpp_least_privilege", "dpp_reveal_role").unwrap()[0],
        "admin"
    );
    let sections: Vec<&str> = r["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["section"].as_str().unwrap())
        .collect();
    assert!(sections.contains(&"policy") && sections.contains(&"amazon_dpp"));
    // Every host check is answered, none silently: evidence on each.
    for id in all.iter().filter(|i| i.starts_with("host")) {
        assert!(
            !clause(&r, id)["evidence"].as_array().unwrap().is_empty(),
            "{id}"
        );
    }
    // The exit status names the failing clauses.
    let out = sb.run(&["compliance", "report"]).expect_code(1);
    let err = out.stderr();
    assert!(
        err.contains("alerts") && err.contains("backups") && err.contains("mirror"),
        "{err}"
    );
    let md = out.stdout();
    assert!(md.contains("## Policy clauses") && md.contains("## Amazon Data Protection Policy"));
    let html = sb
        .run(&["compliance", "report", "--format", "html"])
        .expect_code(1)
        .stdout();
    assert!(html.starts_with("<!doctype html>") && !html.contains("src=\"http"));
    let zh = sb
        .run(&["compliance", "report", "--lang", "zh"])
        .expect_code(1)
        .stdout();
    assert!(zh.contains("合规报告") && zh.contains("未通过"), "{zh}");
    for id in &all {
        assert!(
            md.contains(&format!("(`{id}`)")),
            "{id} not in the Markdown"
        );
        assert!(
            html.contains(&format!("id=\"clause-{id}\"")),
            "{id} not in the HTML"
        );
        assert!(
            zh.contains(&format!("(`{id}`)")),
            "{id} not in the Chinese report"
        );
    }
    for doc in [&md, &html, &zh] {
        assert!(
            !doc.contains("??") && !doc.contains("{1}"),
            "untranslated text"
        );
    }

    // --only: one clause; its exit status is its own.
    let (code, r) = json_report(&sb, &["--only", "audit", "--only", "password"]);
    assert_eq!(
        (code, ids(&r)),
        (0, vec!["password".to_owned(), "audit".to_owned()])
    );
    let out = sb
        .run(&["compliance", "report", "--only", "nope"])
        .expect_code(2);
    assert!(
        out.stderr().contains("not a clause id") && out.stderr().contains("pii_scan"),
        "{}",
        out.stderr()
    );
    sb.run(&["compliance", "report", "--format", "xml"])
        .expect_code(2);
    sb.run(&["compliance", "report", "--lang", "fr"])
        .expect_code(2);
    // --out: written whole, or (unwritable) not at all, with exit 2.
    let target = sb.dir.join("report.html");
    sb.run(&[
        "compliance",
        "report",
        "--format",
        "html",
        "--out",
        target.to_str().unwrap(),
    ])
    .expect_code(1);
    assert!(
        std::fs::read_to_string(&target)
            .unwrap()
            .ends_with("</html>\n")
    );
    let missing = sb.dir.join("no-such-dir/report.md");
    let out = sb
        .run(&["compliance", "report", "--out", missing.to_str().unwrap()])
        .expect_code(2);
    assert!(
        out.stderr().contains("nothing was written"),
        "{}",
        out.stderr()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&sb.dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_signed_report_verifies_and_an_edited_one_does_not() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let md = sb.dir.join("signed.md");
    let out = sb
        .run(&[
            "compliance",
            "report",
            "--sign",
            "--out",
            md.to_str().unwrap(),
        ])
        .expect_code(1);
    assert!(
        out.stderr().contains("signed: audit row #"),
        "{}",
        out.stderr()
    );
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("Signed: Stockade audit row #"), "{text}");
    let ok = sb
        .run(&["compliance", "verify", md.to_str().unwrap()])
        .expect_code(0);
    assert!(ok.stdout().contains("verified"), "{}", ok.stdout());
    // The signed report is the access review's record.
    let (_, r) = json_report(&sb, &["--only", "dpp_access"]);
    assert!(
        evidence(&r, "dpp_access", "dpp_review_last").is_some(),
        "{r}"
    );

    // One word changed in the body: named as such, exit 1.
    let edited = sb.dir.join("edited.md");
    std::fs::write(&edited, text.replacen("**Fail**", "**Pass**", 1)).unwrap();
    let bad = sb
        .run(&["compliance", "verify", edited.to_str().unwrap()])
        .expect_code(1);
    assert!(
        bad.stderr().contains("changed after it was signed"),
        "{}",
        bad.stderr()
    );
    // A trailer pointing at another audit row.
    let seq: i64 = text
        .split("audit row #")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let moved = sb.dir.join("moved.md");
    std::fs::write(
        &moved,
        text.replace(&format!("row #{seq},"), &format!("row #{},", seq - 1)),
    )
    .unwrap();
    let bad = sb
        .run(&["compliance", "verify", moved.to_str().unwrap()])
        .expect_code(1);
    assert!(
        bad.stderr()
            .contains(&format!("audit row #{} is a", seq - 1)),
        "{}",
        bad.stderr()
    );

    // JSON stays one JSON document when signed, and verifies.
    let json = sb.dir.join("signed.json");
    sb.run(&[
        "compliance",
        "report",
        "--format",
        "json",
        "--sign",
        "--out",
        json.to_str().unwrap(),
    ])
    .expect_code(1);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["signature"]["audit_seq"].as_i64().unwrap() > seq);
    sb.run(&["compliance", "verify", json.to_str().unwrap()])
        .expect_code(0);

    // Not a report at all.
    let other = sb.dir.join("notes.txt");
    std::fs::write(&other, "just notes\n").unwrap();
    let out = sb
        .run(&["compliance", "verify", other.to_str().unwrap()])
        .expect_code(2);
    assert!(
        out.stderr()
            .contains("not a signed Stockade compliance report")
    );
    // Far too large to be a report: refused before it is read (a sparse file).
    let huge = sb.dir.join("huge.md");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(65 * 1024 * 1024)
        .unwrap();
    let out = sb
        .run(&["compliance", "verify", huge.to_str().unwrap()])
        .expect_code(2);
    assert!(
        out.stderr().contains("larger than any compliance report"),
        "{}",
        out.stderr()
    );
}

/// Orders on the `tiktok` connection with buyer fields sealed as the engine seals them.
async fn seed_orders(sb: &Sandbox, url: &DatabaseUrl) {
    let store = Store::open(url, Environment::Dev, &Default::default())
        .await
        .unwrap();
    let master = MasterKeys::load_file(&sb.data().join("master.key"), Environment::Dev).unwrap();
    let vault = Vault::open(store.clone(), master).await.unwrap();
    let conn = stockade_sync::connections::get(&store, "tiktok")
        .await
        .unwrap();
    let actor = Actor::System("test");
    let key = vault
        .data_key_for(&conn.key_owner().unwrap(), &actor)
        .await
        .unwrap();
    let now = stockade_core::time::now_ms();
    let mut changes = Vec::new();
    for n in 0..5_i64 {
        let order = Order {
            marketplace: Marketplace::TikTok,
            external_id: format!("5770000000000{n:05}"),
            status: OrderStatus::Placed,
            marketplace_status: "AWAITING_SHIPMENT".into(),
            created_at_ms: now,
            updated_at_ms: now,
            lines: vec![OrderLine {
                line_id: "1".into(),
                sku: "MUG-RED-350ML".into(),
                quantity: 1,
                listing_id: None,
            }],
            buyer: Buyer {
                name: Some(Pii::new(if n == 0 {
                    BUYER.into()
                } else {
                    format!("Buyer Number {n}")
                })),
                email: Some(Pii::new(format!("buyer{n}@mail.example"))),
                phone: Some(Pii::new(format!("+65 9123 45{n:02}"))),
                address: Some(Address {
                    line1: Some(Pii::new(format!("{n} Raffles Place"))),
                    country_code: "SG".into(),
                    ..Address::default()
                }),
            },
        };
        let buyer = stockade_sync::ingest::seal_buyer(&key, conn.id, &order).unwrap();
        changes.push(stockade_sync::ingest::order_change(
            conn.id,
            "tiktok",
            &order,
            buyer,
            stockade_sync::ingest::Source::Poll,
            now,
        ));
    }
    store.commit(&actor, changes).await.unwrap();
    vault.close().await;
}

async fn pii_scan_flow(sb: &Sandbox, url: DatabaseUrl, pg: bool) {
    crate::sync::add_unreachable_tiktok(sb, "pii-scan-secret-1");
    seed_orders(sb, &url).await;
    let (_, r) = json_report(sb, &["--only", "pii_scan"]);
    assert_eq!(clause(&r, "pii_scan")["verdict"], "pass", "{r}");
    let values = evidence(&r, "pii_scan", "pii_scan_values").unwrap();
    assert_eq!(values[1], "5", "{values:?}");
    assert!(values[0].parse::<i64>().unwrap() >= 15, "{values:?}");
    if pg {
        assert!(evidence(&r, "pii_scan", "pii_scan_pg").is_some());
    } else {
        let files = evidence(&r, "pii_scan", "pii_scan_files").unwrap();
        assert!(files[0].contains("stockade.db"), "{files:?}");
    }
    // The sealed orders' emails are not email-shaped in the file: only staff would be.
    assert_eq!(evidence(&r, "pii_scan", "pii_scan_emails").unwrap()[0], "0");

    // A buyer's name written in plain text (upper case) beside the sealed data.
    let store = Store::open(&url, Environment::Dev, &Default::default())
        .await
        .unwrap();
    store
        .tamper_for_tests(&format!(
            "INSERT INTO stockade_meta (key, value) VALUES ('note', 'shipped to {}')",
            BUYER.to_uppercase()
        ))
        .await
        .unwrap();
    store.close().await;
    let (code, r) = json_report(sb, &["--only", "pii_scan"]);
    assert_eq!(code, 1);
    assert_eq!(clause(&r, "pii_scan")["verdict"], "fail", "{r}");
    let hits = evidence(&r, "pii_scan", "pii_scan_hits").unwrap();
    assert_ne!(hits[0], "0");
    // Counts only: the value itself appears nowhere in the report.
    assert!(!r.to_string().to_lowercase().contains("meihua"));
}

#[tokio::test]
async fn the_plaintext_scan_passes_sealed_orders_and_catches_a_planted_name_sqlite() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let url = DatabaseUrl::Sqlite(sb.data().join("stockade.db"));
    pii_scan_flow(&sb, url, false).await;
}

#[tokio::test]
async fn the_plaintext_scan_searches_text_columns_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    pii_scan_flow(&sb, DatabaseUrl::parse(&url).unwrap(), true).await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_as_served_while_the_server_runs() {
    let sb = init("dev", "");
    let server = Server::start(&sb);
    let port = server.port();
    let path = sb.data().join("stockade.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&path, toml).unwrap();
    let (code, r) = json_report(&sb, &["--only", "tls"]);
    assert_eq!(clause(&r, "tls")["verdict"], "pass", "{r}");
    assert_eq!(code, 0);
    let served: Vec<Vec<String>> = clause(&r, "tls")["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["key"] == "tls_served")
        .map(|e| {
            e["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(served.len(), 2, "{r}");
    assert_eq!(served[0][2], "TLS 1.3");
    assert!(served[0][3].starts_with("TLS13_"), "{served:?}");
    assert_eq!(served[1][2], "TLS 1.2");
    assert!(served[1][3].starts_with("TLS_ECDHE_"), "{served:?}");
    assert!(evidence(&r, "tls", "tls_served_cert").is_some());
    let text = clause(&r, "tls").to_string();
    if require_tool("openssl", "openssl", "the old-TLS probe") {
        assert!(!text.contains("tls_old_accepted"), "{text}");
        assert_eq!(
            clause(&r, "tls")["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["key"] == "tls_old_refused")
                .count(),
            2,
            "{text}"
        );
    }
    drop(server);
}

/// The report run by an unprivileged user (root drops to `nobody` with `setpriv`, after
/// handing it the data directory): what it may not see is "cannot check here" with the
/// reason, never a crash; the service-user and permission checks see their facts.
#[test]
fn host_checks_as_an_unprivileged_user_say_what_they_cannot_see() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let root = rustix::process::geteuid().is_root();
    if root && !require_tool("setpriv", "util-linux", "the unprivileged host checks") {
        return;
    }
    let mut cmd = if root {
        let chown = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&sb.dir)
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_stockade"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_stockade"))
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg("--data-dir")
        .arg(sb.data())
        .args(["compliance", "report", "--format", "json"])
        .current_dir(&sb.dir)
        .output()
        .unwrap();
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1)), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for id in [
        "host_ssh",
        "host_firewall",
        "host_fail2ban",
        "host_updates",
        "host_files",
        "host_user",
    ] {
        let c = clause(&r, id);
        let refused = c["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == "host_refused" || e["key"] == "host_missing");
        if refused {
            assert_ne!(c["verdict"], "pass", "{c}");
        }
        assert!(!c["evidence"].as_array().unwrap().is_empty(), "{c}");
    }
    let ran_as = evidence(&r, "host_user", "user_report_euid").unwrap();
    assert_ne!(ran_as[1], "0", "{ran_as:?}");
    if root {
        // `nobody` owns the data directory (0700) and the key file (0600).
        assert_eq!(clause(&r, "host_files")["verdict"], "pass", "{r}");
        assert!(
            evidence(&r, "host_user", "user_unprivileged").is_some(),
            "{r}"
        );
        assert_eq!(ran_as[1], "65534");
    }
}
