//! Retention end to end, on SQLite and PostgreSQL: `retention run --dry-run` counts what
//! has expired and writes nothing; the server's scheduled job removes it at start (old
//! request log rows, an old order's buyer fields — the order itself stays) and records one
//! audited run that `retention show` reports; a later `retention run` finds nothing left.

use stockade_core::{Environment, time::now_ms};
use stockade_store::{DatabaseUrl, Store};

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::server::Server;

async fn open(url: &DatabaseUrl) -> Store {
    Store::open(url, Environment::Dev, &Default::default())
        .await
        .unwrap()
}

async fn seed(store: &Store, pg: bool) {
    let now = now_ms();
    let raw = |sql: String| async move { store.tamper_for_tests(&sql).await.unwrap() };
    for at in [1_000, 2_000, 3_000, now] {
        raw(format!(
            "INSERT INTO egress_log (at_ms, environment, caller, method, host, path_template,
               operation, outcome, latency_us, bytes_sent, bytes_received, attempt)
             VALUES ({at}, 'dev', 'sync', 'GET', 'h', '/p', 'op', 'ok', 1, 0, 0, 1)"
        ))
        .await;
    }
    // A revoked connection: the server's sync engine leaves it alone.
    raw(
        "INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status,
           created_at_ms, updated_at_ms, revoked_at_ms)
         VALUES (1, 'amz', 'amazon', 'sandbox', 'a', '{\"api_url\":\"https://127.0.0.1:9\"}',
                 'revoked', 0, 0, 0)"
            .into(),
    )
    .await;
    let blob = if pg {
        "'\\x5345414c4544'::bytea"
    } else {
        "X'5345414c4544'"
    };
    for (id, at) in [(1, 5_000), (2, now)] {
        raw(format!(
            "INSERT INTO orders (id, connection_id, external_id, status, marketplace_status,
               status_rank, created_at_ms, updated_at_ms, ingested_at_ms, buyer_email)
             VALUES ({id}, 1, 'o{id}', 'delivered', 'Delivered', 4, {at}, {at}, {at}, {blob})"
        ))
        .await;
    }
}

fn row<'a>(out: &'a str, kind: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{kind} ")))
        .unwrap_or_else(|| panic!("no {kind} line:\n{out}"))
}

fn rows_of(out: &str, kind: &str) -> i64 {
    row(out, kind)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_server_runs_retention_on_its_schedule_sqlite() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let url = DatabaseUrl::Sqlite(sb.data().join("stockade.db"));
    flow(sb, url, false).await;
}

#[tokio::test]
async fn the_server_runs_retention_on_its_schedule_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    flow(sb, DatabaseUrl::parse(&url).unwrap(), true).await;
    drop_schema(&schema).await;
}

async fn flow(sb: Sandbox, url: DatabaseUrl, pg: bool) {
    let store = open(&url).await;
    seed(&store, pg).await;
    store.close().await;

    // Help on each command.
    for cmd in [
        &["retention", "--help"][..],
        &["retention", "run", "--help"],
        &["retention", "show", "--help"],
    ] {
        let out = sb.run(cmd).expect_code(0).stdout();
        assert!(out.contains("Usage: stockade retention"), "{out}");
    }
    assert!(
        sb.run(&["retention", "run", "--help"])
            .stdout()
            .contains("--dry-run")
    );

    // A dry run counts and writes nothing.
    let out = sb
        .run(&["retention", "run", "--dry-run"])
        .expect_code(0)
        .stdout();
    assert_eq!(rows_of(&out, "egress_log"), 3, "{out}");
    assert_eq!(rows_of(&out, "buyer_pii.amazon"), 1, "{out}");
    assert!(out.contains("nothing removed"), "{out}");
    let show = sb.run(&["retention", "show"]).expect_code(0).stdout();
    assert!(show.contains("last run: none yet"), "{show}");
    assert!(show.contains("buyer fields 30d after delivery"), "{show}");

    // The server runs it at start.
    let server = Server::start(&sb);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let show = loop {
        let show = sb.run(&["retention", "show"]).expect_code(0).stdout();
        if !show.contains("none yet") {
            break show;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled run:\n{show}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        show.contains("egress_log=3") && show.contains("buyer_pii.amazon=1"),
        "{show}"
    );
    drop(server);

    let store = open(&url).await;
    let count = |sql: &'static str| store.count(sql, vec![]);
    assert_eq!(count("SELECT COUNT(*) FROM egress_log").await.unwrap(), 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM orders").await.unwrap(),
        2,
        "orders stay"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM orders WHERE buyer_email IS NULL AND pii_deleted_at_ms IS NOT NULL")
            .await
            .unwrap(),
        1
    );
    let runs: Vec<String> = store
        .query_as(
            "SELECT details FROM audit WHERE action = 'retention.run' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].contains("\"egress_log\":3"), "{}", runs[0]);
    store.close().await;
    sb.run(&["audit", "verify"]).expect_code(0);

    // Nothing left to remove.
    let out = sb.run(&["retention", "run"]).expect_code(0).stdout();
    assert!(out.contains("total: 0 rows removed"), "{out}");

    // Audit rows are kept at least a year: a shorter period is refused, naming the fix.
    let config = sb.data().join("stockade.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str("\n[retention]\naudit = \"180d\"\n");
    std::fs::write(&config, text).unwrap();
    let out = sb.run(&["retention", "show"]).expect_code(2);
    assert!(
        out.stderr().contains("retention.audit") && out.stderr().contains("365d"),
        "{}",
        out.stderr()
    );
}
