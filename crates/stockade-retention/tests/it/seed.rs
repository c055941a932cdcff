//! Seeded rows of every kind retention knows, old (expired under the default rules) and
//! new (kept), on a real SQLite or PostgreSQL database; and the expected counts.

use stockade_core::Environment;
use stockade_store::{SqlValue, Store, StoreOptions, sql_params};
use stockade_testkit::Db;

pub const DAY_MS: i64 = 86_400_000;

/// A fresh database of either backend (None: PostgreSQL skipped).
pub async fn open(pg: bool) -> Option<(Db, Store)> {
    let db = if pg { Db::postgres()? } else { Db::sqlite() };
    let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    Some((db, store))
}

async fn put(store: &Store, sql: &'static str, params: Vec<SqlValue>) {
    store.write_unaudited(sql, params).await.unwrap();
}

/// The ciphertext bytes seeded into order `id`'s buyer columns (a marker to look for in
/// the database file).
pub fn cipher(id: i64, col: &str) -> Vec<u8> {
    format!("SEALED-BUYER-{col}-{id:06}-ZZ").into_bytes()
}

const ORDER: &str =
    "INSERT INTO orders (id, connection_id, external_id, status, marketplace_status,
    status_rank, created_at_ms, updated_at_ms, ingested_at_ms, buyer_name, buyer_email,
    buyer_phone, buyer_address) VALUES ($1, $2, $3, $4, $4, $5, $6, $6, $6, $7, $8, $9, $10)";

/// What each kind holds: `expired` rows the default rules remove and `kept` rows they keep,
/// `n` of each expired kind (so a small batch takes several statements).
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub n: i64,
}

impl Seeded {
    /// Expected rows per kind for the default rules.
    pub fn expected(&self) -> Vec<(&'static str, i64)> {
        let n = self.n;
        vec![
            // Per marketplace: n delivered long ago + n undelivered and silent > 60 days.
            ("buyer_pii.amazon", 2 * n),
            ("buyer_pii.ebay", 2 * n),
            ("buyer_pii.tiktok", 2 * n),
            ("workflow_executions", n),
            // n old backup jobs + 1 superseded schedule tick.
            ("jobs", n + 1),
            ("egress_log", n),
            // n routed long ago + 1 unrouted older than twice the period.
            ("events", n + 1),
            ("alert_deliveries", n),
            ("sessions", n),
            ("bans", n),
        ]
    }
}

/// Seed `n` expired rows of every kind and a few kept ones around each cutoff, at `now`.
pub async fn seed(store: &Store, now: i64, n: i64) -> Seeded {
    for (id, m) in [(1_i64, "amazon"), (2, "ebay"), (3, "tiktok")] {
        put(
            store,
            "INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status,
              created_at_ms, updated_at_ms) VALUES ($1, $2, $3, 'e', 'a', '{}', 'active', 0, 0)",
            sql_params![id, format!("shop-{m}"), m],
        )
        .await;
    }
    let mut id = 0_i64;
    for conn in 1..=3_i64 {
        // Kept by the delivery clock: amazon 30d, ebay and tiktok 14d.
        let fresh = if conn == 1 { 29 } else { 13 };
        let mut rows = vec![];
        for _ in 0..n {
            rows.push(("delivered", 4, now - 31 * DAY_MS)); // expired everywhere
            rows.push(("placed", 1, now - 61 * DAY_MS)); // undelivered, silent > 60d
        }
        rows.push(("delivered", 4, now - fresh * DAY_MS)); // kept
        rows.push(("returned", 6, now - DAY_MS)); // kept
        rows.push(("shipped", 3, now - 59 * DAY_MS)); // undelivered but < 60d: kept
        for (status, rank, at) in rows {
            id += 1;
            put(
                store,
                ORDER,
                sql_params![
                    id,
                    conn,
                    format!("ext-{id}"),
                    status,
                    rank,
                    at,
                    cipher(id, "name"),
                    cipher(id, "email"),
                    cipher(id, "phone"),
                    cipher(id, "addr")
                ],
            )
            .await;
            put(
                store,
                "INSERT INTO order_lines (connection_id, external_id, line_id, sku, quantity)
                  VALUES ($1, $2, 'l1', 'SKU-1', 1)",
                sql_params![conn, format!("ext-{id}")],
            )
            .await;
        }
    }
    seed_jobs(store, now, n).await;
    seed_logs(store, now, n).await;
    seed_access(store, now, n).await;
    Seeded { n }
}

async fn job(store: &Store, id: String, kind: &str, finished: Option<i64>, now: i64) {
    let state = if finished.is_some() {
        "succeeded"
    } else {
        "queued"
    };
    put(
        store,
        "INSERT INTO jobs (id, kind, payload, state, run_at_ms, max_attempts, created_at_ms,
          updated_at_ms, finished_at_ms) VALUES ($1, $2, '{}', $3, $4, 3, $4, $4, $5)",
        sql_params![id.clone(), kind, state, now - 100 * DAY_MS, finished],
    )
    .await;
    put(
        store,
        "INSERT INTO job_steps (job_id, step_id, attempt, seq, lease_token, status,
          started_at_ms) VALUES ($1, 'a', 1, 1, 1, 'succeeded', 0)",
        sql_params![id],
    )
    .await;
}

async fn seed_jobs(store: &Store, now: i64, n: i64) {
    for i in 0..n {
        job(
            store,
            format!("wf-old-{i}"),
            "workflow",
            Some(now - 15 * DAY_MS),
            now,
        )
        .await;
        job(
            store,
            format!("bk-old-{i}"),
            "backup",
            Some(now - 31 * DAY_MS),
            now,
        )
        .await;
    }
    job(
        store,
        "wf-new".into(),
        "workflow",
        Some(now - 13 * DAY_MS),
        now,
    )
    .await;
    job(store, "wf-queued".into(), "workflow", None, now).await;
    job(
        store,
        "bk-new".into(),
        "backup",
        Some(now - 29 * DAY_MS),
        now,
    )
    .await;
    // Two old ticks of one schedule: the older goes, the newest always stays.
    for tick in [1_i64, 2] {
        put(
            store,
            "INSERT INTO schedule_ticks (schedule, tick_ms, fired_at_ms) VALUES ('s', $1, $2)",
            sql_params![tick, now - 40 * DAY_MS],
        )
        .await;
    }
}

async fn seed_logs(store: &Store, now: i64, n: i64) {
    const EGRESS: &str = "INSERT INTO egress_log (at_ms, environment, caller, method, host,
        path_template, operation, outcome, latency_us, bytes_sent, bytes_received, attempt)
        VALUES ($1, 'dev', 'sync', 'GET', 'h', '/p', 'op', 'ok', 1, 0, 0, 1)";
    const EVENT: &str = "INSERT INTO events (at_ms, source, kind, caller, host, path_template,
        operation, detail, delivered_at_ms) VALUES ($1, 'egress', 'k', 'c', 'h', '/p', 'o', '', $2)";
    const OUTBOX: &str = "INSERT INTO alert_outbox (channel, created_at_ms, severity, events,
        alert, state, next_at_ms) VALUES ('ops', $1, 1, 1, '{}', $2, $1)";
    for _ in 0..n {
        put(store, EGRESS, sql_params![now - 91 * DAY_MS]).await;
        put(
            store,
            EVENT,
            sql_params![now - 91 * DAY_MS, Some(now - 91 * DAY_MS)],
        )
        .await;
        put(store, OUTBOX, sql_params![now - 31 * DAY_MS, "sent"]).await;
    }
    put(store, EGRESS, sql_params![now - 89 * DAY_MS]).await;
    put(store, EVENT, sql_params![now - 89 * DAY_MS, Some(now)]).await;
    // Unrouted: kept up to twice the period, then removed.
    put(store, EVENT, sql_params![now - 91 * DAY_MS, None::<i64>]).await;
    put(store, EVENT, sql_params![now - 181 * DAY_MS, None::<i64>]).await;
    put(store, OUTBOX, sql_params![now - 29 * DAY_MS, "sent"]).await;
    put(store, OUTBOX, sql_params![now - 31 * DAY_MS, "pending"]).await;
}

async fn seed_access(store: &Store, now: i64, n: i64) {
    put(
        store,
        "INSERT INTO users (id, email, role, password_hash, created_at_ms, updated_at_ms)
          VALUES ('u1', 'u1@example.test', 'admin', 'x', 0, 0)",
        vec![],
    )
    .await;
    const SESSION: &str = "INSERT INTO sessions (id_hash, user_id, stage, csrf, created_at_ms,
        last_seen_ms, expires_at_ms) VALUES ($1, 'u1', 'full', 'c', 0, 0, $2)";
    const BAN: &str = "INSERT INTO bans (id, ip, since_s, until_s, ban_count, recidive, reason)
        VALUES ($1, '192.0.2.1', 0, $2, 1, 0, 'r')";
    for i in 0..n {
        put(
            store,
            SESSION,
            sql_params![format!("old-{i}"), now - 2 * DAY_MS],
        )
        .await;
        put(
            store,
            BAN,
            sql_params![format!("old-{i}"), Some((now - 91 * DAY_MS) / 1000)],
        )
        .await;
    }
    put(store, SESSION, sql_params!["live", now + DAY_MS]).await;
    put(
        store,
        BAN,
        sql_params!["recent", Some((now - 89 * DAY_MS) / 1000)],
    )
    .await;
    put(store, BAN, sql_params!["permanent", None::<i64>]).await;
}

/// Rows in each table retention touches (to show a dry run changed nothing).
pub async fn table_counts(store: &Store) -> Vec<i64> {
    let mut out = vec![];
    for sql in [
        "SELECT COUNT(*) FROM orders",
        "SELECT COUNT(*) FROM orders WHERE buyer_name IS NOT NULL",
        "SELECT COUNT(*) FROM order_lines",
        "SELECT COUNT(*) FROM jobs",
        "SELECT COUNT(*) FROM job_steps",
        "SELECT COUNT(*) FROM schedule_ticks",
        "SELECT COUNT(*) FROM egress_log",
        "SELECT COUNT(*) FROM events",
        "SELECT COUNT(*) FROM alert_outbox",
        "SELECT COUNT(*) FROM sessions",
        "SELECT COUNT(*) FROM bans",
        "SELECT COUNT(*) FROM audit",
        "SELECT COUNT(*) FROM retention_runs",
    ] {
        out.push(store.count(sql, vec![]).await.unwrap());
    }
    out
}
