//! Ingest and confirmations as multi-row statements (`stockade_store::rows`).
//!
//! - A batch of order changes committed at once writes exactly what the same changes
//!   write through per-row statements (the statements' `one` SQL as plain `Sql` steps):
//!   same orders, lines, ledger rows, stock, listing targets and versions, events and
//!   audit rows, on SQLite and PostgreSQL, and both audit chains verify.
//! - On PostgreSQL, many ingest batches on the same SKUs with pushers confirming at the
//!   same time finish without a deadlock (none counted by the server) and without a
//!   failed commit, and the stock, the ledger and the listing targets add up.
//! - On PostgreSQL a confirmation skips a listing row another session holds instead of
//!   waiting for it.

use std::sync::Arc;

use stockade_core::order::{Buyer, Marketplace, Order, OrderLine, OrderStatus};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, SqlValue, sql_params};
use stockade_sync::ack::ACK_ROWS;
use stockade_sync::ingest::{Source, order_change};

use super::*;

const SETUP: [&str; 4] = [
    "INSERT INTO connections (id, name, marketplace, endpoint, account, settings, status, created_at_ms, updated_at_ms)
     VALUES ($1, $2, 'ebay', 'sandbox', 'acct', '{}', 'active', 1, 1)",
    "INSERT INTO skus (sku, on_hand, reserved, created_at_ms, updated_at_ms) VALUES ($1, 0, 0, 1, 1)",
    "INSERT INTO listings (connection_id, sku, listing_id, listing_ref, buffer, max_displayed, target_qty, target_version, pushed_version)
     VALUES ($1, $2, $2, '{}', $3, NULL, 0, 1, 0)",
    // The stock comes from the ledger (which retargets the listings).
    "INSERT INTO stock_ledger (sku, movement, on_hand_delta, reserved_delta, at_ms) VALUES ($1, 'adjust', $2, 0, 1)",
];

fn sql(statement: &'static str, params: Vec<SqlValue>) -> Mutation {
    Mutation::Sql {
        statement,
        params,
        expect: Expect::Any,
    }
}

/// Connections 1..=`conns`, `skus` SKUs `S0…` with `on_hand` each, a listing of every SKU
/// on every connection (buffer 1).
async fn setup(store: &Store, conns: i64, skus: usize, on_hand: i64) {
    let mut steps = Vec::new();
    for c in 1..=conns {
        steps.push(sql(SETUP[0], sql_params![c, format!("c{c}")]));
    }
    for s in 0..skus {
        let sku = format!("S{s}");
        steps.push(sql(SETUP[1], sql_params![sku.as_str()]));
        for c in 1..=conns {
            steps.push(sql(SETUP[2], sql_params![c, sku.as_str(), 1_i64]));
        }
        steps.push(sql(SETUP[3], sql_params![sku.as_str(), on_hand]));
    }
    let audit = AuditEntry::new("test.setup", "catalog", AuditDetails::new());
    commit_steps(store, steps, audit).await.unwrap();
}

/// Commit `steps` as one unguarded change.
async fn commit_steps(
    store: &Store,
    steps: Vec<Mutation>,
    audit: AuditEntry,
) -> stockade_store::Result<()> {
    let change = Change::new(
        Mutation::Many {
            steps,
            guard: false,
        },
        audit,
    );
    store.commit(&ACTOR, vec![change]).await.map(|_| ())
}

fn order(id: &str, status: OrderStatus, updated: i64, lines: &[(&str, &str, u32)]) -> Order {
    Order {
        marketplace: Marketplace::Ebay,
        external_id: id.into(),
        status,
        marketplace_status: format!("{status:?}"),
        created_at_ms: 1_000,
        updated_at_ms: updated,
        lines: lines
            .iter()
            .map(|(l, s, q)| OrderLine {
                line_id: (*l).into(),
                sku: (*s).into(),
                quantity: *q,
                listing_id: None,
            })
            .collect(),
        buyer: Buyer::default(),
    }
}

fn change(conn: i64, o: &Order, now: i64) -> Change {
    // Fixed "ciphertext" bytes, so both paths store the same cells.
    let cell = |i: u8| Some(vec![i, conn as u8, o.external_id.len() as u8]);
    order_change(
        conn,
        &format!("c{conn}"),
        o,
        [cell(1), None, cell(3), cell(4)],
        Source::Webhook,
        now,
    )
}

/// The same change through plain per-row statements (the `one` SQL; locks dropped).
fn per_row(c: &Change) -> Change {
    let step = |m: &Mutation| match m {
        Mutation::Row { statement, params } => statement.one.map(|one| sql(one, params.clone())),
        other => Some(other.clone()),
    };
    let mutation = match &c.mutation {
        Mutation::Many { steps, guard } => Mutation::Many {
            steps: steps.iter().filter_map(step).collect(),
            guard: *guard,
        },
        other => step(other).unwrap(),
    };
    Change::new(mutation, c.audit.clone())
}

/// Batches of changes: every case the ingest meets in one batch.
fn batches(now: i64) -> Vec<Vec<Change>> {
    use OrderStatus::*;
    let first = vec![
        change(
            1,
            &order("A", Placed, 10, &[("1", "S0", 2), ("2", "S1", 1)]),
            now,
        ),
        change(2, &order("B", Placed, 10, &[("1", "S0", 3)]), now),
        // Shipped at first sight: reserve and commit in one change.
        change(1, &order("C", Shipped, 10, &[("1", "S2", 1)]), now),
        // More than the stock: an oversell, attributed in batch order.
        change(2, &order("D", Placed, 10, &[("1", "S3", 4)]), now),
        change(1, &order("E", Placed, 10, &[("1", "S3", 4)]), now),
        // Not in the catalog: stored unmatched.
        change(1, &order("F", Placed, 10, &[("1", "NOPE", 1)]), now),
        // The same order twice in one batch: placed, then cancelled.
        change(2, &order("G", Placed, 10, &[("1", "S1", 1)]), now),
        change(2, &order("G", Cancelled, 11, &[("1", "S1", 1)]), now),
        // A replay within the batch: its guard writes nothing, no audit row.
        change(
            1,
            &order("A", Placed, 10, &[("1", "S0", 2), ("2", "S1", 1)]),
            now,
        ),
    ];
    let second = vec![
        change(
            1,
            &order("A", Shipped, 20, &[("1", "S0", 2), ("2", "S1", 1)]),
            now + 1,
        ),
        change(2, &order("B", Cancelled, 20, &[("1", "S0", 3)]), now + 1),
        change(1, &order("C", Returned, 20, &[("1", "S2", 1)]), now + 1),
        // An older status arriving late: nothing.
        change(2, &order("D", Pending, 5, &[("1", "S3", 4)]), now + 1),
        change(
            1,
            &order("H", Delivered, 20, &[("1", "S4", 1), ("2", "S0", 1)]),
            now + 1,
        ),
    ];
    vec![first, second]
}

/// Everything the ingest writes, in a comparable form.
async fn snapshot(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    type OrderRow = (
        (i64, String, String, i64),
        (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>),
    );
    let orders: Vec<OrderRow> = store
        .query_as(
            "SELECT connection_id, external_id, status, status_rank, ingested_at_ms, oversold_units, buyer_name, buyer_email
               FROM orders ORDER BY connection_id, external_id",
            vec![],
        )
        .await
        .unwrap();
    out.extend(orders.iter().map(|r| format!("order {r:?}")));
    let lines: Vec<(i64, String, String, String, i64, Option<i64>)> = store
        .query_as(
            "SELECT connection_id, external_id, line_id, sku, quantity, unmatched_since_ms FROM order_lines
              ORDER BY connection_id, external_id, line_id",
            vec![],
        )
        .await
        .unwrap();
    out.extend(lines.iter().map(|r| format!("line {r:?}")));
    let ledger: Vec<(String, String, i64, i64, i64, Option<String>)> = store
        .query_as(
            "SELECT sku, movement, on_hand_delta, reserved_delta, at_ms, ukey FROM stock_ledger
              WHERE ukey IS NOT NULL ORDER BY ukey",
            vec![],
        )
        .await
        .unwrap();
    out.extend(ledger.iter().map(|r| format!("ledger {r:?}")));
    let skus: Vec<(String, i64, i64)> = store
        .query_as(
            "SELECT sku, on_hand, reserved FROM skus ORDER BY sku",
            vec![],
        )
        .await
        .unwrap();
    out.extend(skus.iter().map(|r| format!("sku {r:?}")));
    // PostgreSQL moves stock once per ledger statement: a listing's version grows once
    // per statement there, once per row through per-row statements. Its target must agree.
    let listings_sql = if store.is_postgres() {
        "SELECT connection_id, sku, target_qty, 0 FROM listings ORDER BY connection_id, sku"
    } else {
        "SELECT connection_id, sku, target_qty, target_version FROM listings ORDER BY connection_id, sku"
    };
    let listings: Vec<(i64, String, i64, i64)> =
        store.query_as(listings_sql, vec![]).await.unwrap();
    out.extend(listings.iter().map(|r| format!("listing {r:?}")));
    let mut events: Vec<String> = store
        .query_as::<(String, String, String)>("SELECT source, kind, detail FROM events", vec![])
        .await
        .unwrap()
        .iter()
        .map(|r| format!("event {r:?}"))
        .collect();
    events.sort();
    out.extend(events);
    let audit: Vec<(String, String, String, String)> = store
        .query_as(
            // The instance's own rows (its id, creation time) differ between databases.
            "SELECT actor, action, resource, details FROM audit WHERE actor <> 'system:migrate' ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    out.extend(audit.iter().map(|r| format!("audit {r:?}")));
    out
}

async fn multi_row_writes_what_per_row_writes(bulk_db: Db, plain_db: Db) {
    let opts = StoreOptions::default();
    let (bulk, _) = Store::init(&bulk_db.url, Environment::Dev, &opts)
        .await
        .unwrap();
    let (plain, _) = Store::init(&plain_db.url, Environment::Dev, &opts)
        .await
        .unwrap();
    for s in [&bulk, &plain] {
        setup(s, 2, 5, 5).await;
    }
    for batch in batches(1_000_000) {
        let n = batch.len();
        let r = bulk.commit(&ACTOR, batch.clone()).await.unwrap();
        let p = plain
            .commit(&ACTOR, batch.iter().map(per_row).collect())
            .await
            .unwrap();
        assert_eq!((r.first_seq, r.last_seq), (p.first_seq, p.last_seq));
        assert!(
            r.last_seq - r.first_seq + 1 < n as i64,
            "the replays wrote no audit row"
        );
    }
    let (a, b) = (snapshot(&bulk).await, snapshot(&plain).await);
    assert_eq!(a, b);
    // The cases happened: an oversell, an unmatched line, a commit, a restock.
    let all = a.join("\n");
    for want in [
        "\"oversell\"",
        "\"unmatched_sku\"",
        "\"commit\"",
        "\"restock\"",
        "\"release\"",
        "\"cancelled\"",
    ] {
        assert!(all.contains(want), "{want} missing:\n{all}");
    }
    for s in [&bulk, &plain] {
        let report = s.verify_audit(None).await.unwrap();
        assert!(report.problem.is_none(), "{report:?}");
    }
    bulk.close().await;
    plain.close().await;
    bulk_db.cleanup().await;
    plain_db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_row_writes_what_per_row_writes_sqlite() {
    multi_row_writes_what_per_row_writes(Db::sqlite(), Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_row_writes_what_per_row_writes_postgres() {
    if let (Some(a), Some(b)) = (Db::postgres(), Db::postgres()) {
        multi_row_writes_what_per_row_writes(a, b).await;
    }
}

/// One pusher's round: confirm every pending listing of `conn`, zeros first, then the
/// lowest (a push planner's order, not the lock order), behind the fence of the connection's lease as the owning process does (the
/// store must still lock the listings in its one order, not in this one).
async fn confirm_round(store: &Store, conn: i64, fence: &Mutation) -> usize {
    let pending: Vec<(String, i64, i64)> = store
        .query_as(
            "SELECT sku, target_qty, target_version FROM listings
              WHERE connection_id = $1 AND target_version > pushed_version
              ORDER BY CASE WHEN target_qty = 0 THEN 0 ELSE 1 END, target_qty, sku DESC",
            sql_params![conn],
        )
        .await
        .unwrap();
    if pending.is_empty() {
        return 0;
    }
    let steps = std::iter::once(fence.clone())
        .chain(pending.iter().map(|(sku, qty, version)| Mutation::Row {
            statement: &ACK_ROWS,
            params: sql_params![*version, *qty, 1_i64, conn, sku.as_str()],
        }))
        .collect();
    let audit = AuditEntry::new(
        "listing.push",
        format!("connection:c{conn}"),
        AuditDetails::new(),
    );
    commit_steps(store, steps, audit)
        .await
        .expect("a confirmation commit failed");
    pending.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_and_pushers_do_not_deadlock_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let opts = StoreOptions {
        pg_max_connections: 12,
        ..StoreOptions::default()
    };
    let (store, _) = Store::init(&db.url, Environment::Dev, &opts).await.unwrap();
    const CONNS: i64 = 3;
    const SKUS: usize = 8;
    const WRITERS: usize = 4;
    const BATCHES: usize = 25;
    const PER_BATCH: usize = 20;
    setup(&store, CONNS, SKUS, 10_000).await;
    let store = Arc::new(store);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pushers = Vec::new();
    let mut fences = Vec::new();
    for conn in 1..=CONNS {
        let grant = store
            .acquire_lease(&format!("connection:{conn}"), "node-a", 600_000)
            .await
            .unwrap()
            .unwrap();
        fences.push(grant.fence());
    }
    for conn in 1..=CONNS {
        let (store, done) = (store.clone(), done.clone());
        let fence = fences[conn as usize - 1].clone();
        pushers.push(tokio::spawn(async move {
            let mut confirmed = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                confirmed += confirm_round(&store, conn, &fence).await;
            }
            confirmed
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let batch: Vec<Change> = (0..PER_BATCH)
                    .map(|i| {
                        // Lines on several SKUs, in an order that differs per order.
                        let k = w * 7 + b * 3 + i;
                        let lines = [
                            ("1", format!("S{}", k % SKUS), 1),
                            ("2", format!("S{}", (k * 5 + 3) % SKUS), 2),
                        ];
                        let lines: Vec<(&str, &str, u32)> =
                            lines.iter().map(|(l, s, q)| (*l, s.as_str(), *q)).collect();
                        let id = format!("W{w}-{b}-{i}");
                        change(
                            (k % CONNS as usize) as i64 + 1,
                            &order(&id, OrderStatus::Placed, 10, &lines),
                            1,
                        )
                    })
                    .collect();
                store
                    .commit(&ACTOR, batch)
                    .await
                    .expect("an ingest batch failed (it would be committed one by one)");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut confirmed = 0;
    for p in pushers {
        confirmed += p.await.unwrap();
    }
    assert!(confirmed > 0);
    for conn in 1..=CONNS {
        confirm_round(&store, conn, &fences[conn as usize - 1]).await;
    }
    // A deadlock or serialization failure would have rolled a commit back and retried
    // it (the store retries them); this store's count covers only its own commits,
    // unlike the database-wide counter other tests running beside it move.
    assert_eq!(
        store.commit_retries(),
        0,
        "commits were rolled back and retried"
    );

    // Stock: every unit reserved once; the ledger explains it; every listing shows
    // available − buffer and was confirmed at its newest version.
    let units = (WRITERS * BATCHES * PER_BATCH * 3) as i64;
    assert_eq!(
        store
            .count("SELECT COALESCE(SUM(reserved), 0)::int8 FROM skus", vec![])
            .await
            .unwrap(),
        units
    );
    assert_eq!(
        store
            .count(
                "SELECT COALESCE(SUM(reserved_delta), 0)::int8 FROM stock_ledger",
                vec![]
            )
            .await
            .unwrap(),
        units
    );
    assert!(catalog::verify_stock(&store).await.unwrap().is_empty());
    let wrong = store
        .count(
            "SELECT COUNT(*) FROM listings l JOIN skus s ON s.sku = l.sku
              WHERE l.target_qty <> GREATEST(0, s.on_hand - s.reserved - l.buffer)
                 OR l.pushed_version <> l.target_version OR l.acked_qty <> l.target_qty",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(wrong, 0);
    let report = store.verify_audit(None).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    drop(store);
    db.cleanup().await;
}

/// A confirmation does not wait for a listing row another transaction holds (an ingest
/// moving that SKU's stock): it confirms the others, leaves that one at its older
/// version (it is pushed again), and returns at once. A real second session (`psql`)
/// holds the row for three seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_skips_a_listing_another_transaction_holds_postgres() {
    let Some(db) = Db::postgres() else {
        return;
    };
    let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
        .await
        .unwrap();
    setup(&store, 1, 2, 100).await;
    let (url, schema) = db.pg.clone().unwrap();
    let mut holder = std::process::Command::new("psql")
        .arg(&url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!(
            "BEGIN; SELECT 1 FROM {schema}.listings WHERE sku = 'S0' FOR NO KEY UPDATE; \
             SELECT pg_sleep(3); COMMIT;"
        ))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql runs (the PostgreSQL client is installed with the server)");
    // Wait until the other session holds the row.
    let held = "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE a.query LIKE '%pg_sleep(3)%' AND l.granted AND l.locktype = 'transactionid'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.count(held, vec![]).await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the other session never took the row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let version = 1_i64;
    let steps = ["S0", "S1"]
        .iter()
        .map(|sku| Mutation::Row {
            statement: &ACK_ROWS,
            params: sql_params![version, 100_i64, 2_i64, 1_i64, *sku],
        })
        .collect();
    let started = Instant::now();
    let audit = AuditEntry::new("listing.push", "connection:c1", AuditDetails::new());
    commit_steps(&store, steps, audit).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the confirmation waited for the held row ({:?})",
        started.elapsed()
    );
    let pushed: Vec<(String, i64)> = store
        .query_as(
            "SELECT sku, pushed_version FROM listings ORDER BY sku",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pushed, vec![("S0".into(), 0), ("S1".into(), 1)]);
    assert!(holder.wait().unwrap().success());
    store.close().await;
    db.cleanup().await;
}
