//! A seller's first hour, following README "Use it" and docs/sync.md ("Connecting to the
//! sandbox", "Discover the catalog") literally, with no step of its own: `stockade init
//! --env dev --data-dir ./dev-data`; `stockade sandbox --credentials-dir ./sandbox-creds
//! --orders 5` as a real child process, whose printed `connection add` commands are run
//! exactly as printed with `export STOCKADE_DATA_DIR=./dev-data`; `connection test` ×3;
//! `stockade serve`, which stores the sandbox's early orders as unmatched lines (`stock
//! verify` exits 3); `sku discover` for each connection as the docs say. Then the early
//! orders are reserved, every channel shows on hand − reserved − buffer (read back from
//! the simulators' own listings), `stock verify` and `audit verify` pass, and the
//! configuration file was never touched: no hand-written `[egress]` or CA trust.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Outcome, Sandbox};
use crate::onboarding::printed;
use crate::sync::{Admin, SandboxInfo, db_query, free_port, read_until, sku_list, spawn};

const MARKETS: [&str; 3] = ["tiktok", "amazon", "ebay"];
/// The docs' `--orders 5`: orders placed on every simulator before any catalog exists.
const ORDERS: usize = 5;

/// `stockade ARGS` typed in the docs' second terminal (`export
/// STOCKADE_DATA_DIR=./dev-data`, no `--data-dir`), in the directory the user works in.
fn typed(sb: &Sandbox, args: &[&str]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(sb.env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .current_dir(&sb.dir);
    Outcome(cmd.output().unwrap())
}

/// A command the docs show, run as a user would: exit 0, and nothing but its answer
/// (no log lines on standard error).
#[track_caller]
fn ok(sb: &Sandbox, args: &[&str]) -> String {
    let out = typed(sb, args).expect_code(0);
    assert_eq!(out.stderr(), "", "{args:?} wrote to standard error");
    out.stdout()
}

/// The simulator's own listing quantities, by SKU (its admin API).
async fn shown(admin: &Admin, base: &str) -> BTreeMap<String, i64> {
    admin
        .get(format!("{base}/_sandbox/listings"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|l: &Value| {
            (
                l["sku"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `sku list`: the catalog (sku → on hand, reserved, available) and the UNMATCHED
/// section (sku → open units).
type Stock = BTreeMap<String, (i64, i64, i64)>;
fn sku_list_typed(sb: &Sandbox) -> (Stock, BTreeMap<String, i64>) {
    let out = ok(sb, &["sku", "list"]);
    let (catalog, unmatched) = out.split_once("UNMATCHED").unwrap_or((&out, ""));
    let num = |f: &[&str], i: usize| f.get(i)?.parse::<i64>().ok();
    let stock = catalog
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                (num(&f, 1)?, num(&f, 2)?, num(&f, 3)?),
            ))
        })
        .collect();
    let open = unmatched
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), num(&f, 2)?))
        })
        .collect();
    (stock, open)
}

/// `stock verify`'s unmatched lines of open orders: (connection, sku) → units.
fn open_unmatched(verify: &str) -> BTreeMap<(String, String), i64> {
    let mut units = BTreeMap::new();
    for l in verify.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 6 && f[5] == "open" && MARKETS.contains(&f[0]) {
            *units.entry((f[0].to_owned(), f[3].to_owned())).or_default() +=
                f[4].parse::<i64>().unwrap();
        }
    }
    units
}

/// The summary line of a `sku discover` run.
fn summary(out: &str, name: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no summary:\n{out}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_hour_as_the_docs_say_sandbox_connections_early_orders_discover() {
    let sb = Sandbox::new().with("STOCKADE_DATA_DIR", "./dev-data");
    let data = sb.dir.join("dev-data");
    ok(&sb, &["init", "--env", "dev", "--data-dir", "./dev-data"]);
    let config = data.join("stockade.toml");
    let config_at_init = std::fs::read_to_string(&config).unwrap();

    let orders = ORDERS.to_string();
    let (sandbox, rx) = spawn(
        &sb,
        &[
            "sandbox",
            "--credentials-dir",
            "./sandbox-creds",
            "--orders",
            &orders,
        ],
        &sb.dir.join("sandbox.log"),
    );
    let lines = read_until(&rx, Duration::from_secs(30), |l| {
        l.contains("Ctrl-C stops the sandbox")
    })
    .unwrap_or_else(|| panic!("the sandbox did not start:\n{}", sandbox.log_tail()));
    let info = SandboxInfo::parse(&lines);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("STOCKADE_DATA_DIR") && l.contains("connect a dev instance")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stockade sku discover --connection tiktok --take-quantity")),
        "the sandbox names the next step: {lines:#?}"
    );

    // The three printed lines, as printed.
    let commands = printed(&lines, "add");
    assert_eq!(commands.len(), 3, "{lines:#?}");
    for (args, name) in commands.iter().zip(MARKETS) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(&sb, &args);
        assert!(out.contains(&format!("connection {name} added")), "{out}");
    }
    for name in MARKETS {
        let out = ok(&sb, &["connection", "test", name]);
        assert!(
            out.contains("access token obtained")
                && out.contains(&format!("read {ORDERS} order(s)")),
            "{name}: {out}"
        );
    }

    // `stockade serve` (on a free port: tests run side by side; the docs' default is
    // 8443). Its first poll stores the early orders; their lines name SKUs the catalog
    // does not have yet.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (server, srx) = spawn(
        &sb,
        &["serve", "--listen", &listen],
        &sb.dir.join("serve.log"),
    );
    read_until(&srx, Duration::from_secs(30), |l| {
        l.starts_with("listening on ")
    })
    .unwrap_or_else(|| panic!("serve did not start:\n{}", server.log_tail()));
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in MARKETS {
        loop {
            let show = ok(&sb, &["connection", "show", name]);
            if show.contains(&format!("orders           {ORDERS}\n")) {
                // It names the command that fixes it (it named only `sku import`).
                assert!(
                    show.contains("UNMATCHED") && show.contains("`stockade sku discover`"),
                    "{show}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "{show}\n{}", server.log_tail());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let (stock, waiting) = sku_list_typed(&sb);
    assert!(
        stock.is_empty() && !waiting.is_empty(),
        "{stock:?} {waiting:?}"
    );
    let verify = typed(&sb, &["stock", "verify"]).expect_code(3).stdout();
    assert!(
        verify.contains("unmatched sku")
            && verify.contains("every open order line of a catalog SKU is reserved exactly once"),
        "{verify}"
    );
    let early = open_unmatched(&verify);
    assert_eq!(
        early.values().sum::<i64>(),
        waiting.values().sum::<i64>(),
        "{verify}"
    );

    // The simulators' listings, read through their admin API (trusting the CA the
    // sandbox wrote and the server's development CA).
    let admin = Admin::new(
        &sb.dir.join("sandbox-creds/sandbox-ca.pem"),
        &data.join("tls/dev-ca.pem"),
    );
    let mut before = BTreeMap::new();
    for name in MARKETS {
        before.insert(name, shown(&admin, &info.m(name).base).await);
    }
    let skus = before["tiktok"].len();
    assert!(skus > 0);

    // docs/sync.md: a dry run first. It shows the plan and writes nothing.
    let dry = ok(
        &sb,
        &["sku", "discover", "--connection", "tiktok", "--dry-run"],
    );
    assert_eq!(
        summary(&dry, "tiktok"),
        format!(
            "tiktok: {skus} listing(s) found on tiktok: {skus} new SKU(s), 0 new listing(s), 0 changed, 0 unchanged, 0 gone"
        )
    );
    assert!(
        dry.contains("would be matched") && dry.contains("dry run: nothing was written"),
        "{dry}"
    );
    assert_eq!(sku_list_typed(&sb), (Stock::new(), waiting.clone()));
    let audit = ok(&sb, &["audit", "export"]);
    assert!(!audit.contains("catalog.discover"));

    // TikTok's listings make the catalog, its quantities taken as on hand; Amazon's and
    // eBay's listings join the same SKUs.
    let out = ok(
        &sb,
        &[
            "sku",
            "discover",
            "--connection",
            "tiktok",
            "--take-quantity",
        ],
    );
    assert_eq!(
        summary(&out, "tiktok"),
        format!(
            "tiktok: {skus} listing(s) found on tiktok: {skus} new SKU(s), 0 new listing(s), 0 changed, 0 unchanged, 0 gone"
        )
    );
    assert!(out.contains("are now matched"), "{out}");
    for name in ["amazon", "ebay"] {
        let out = ok(&sb, &["sku", "discover", "--connection", name]);
        assert_eq!(
            summary(&out, name),
            format!(
                "{name}: {skus} listing(s) found on {name}: 0 new SKU(s), {skus} new listing(s), 0 changed, 0 unchanged, 0 gone"
            )
        );
    }

    // The early orders are reserved; on hand is the shelf: what TikTok shows plus what
    // its open orders sold (regression: --take-quantity counted those twice). Every
    // simulator started each SKU with the same quantity, so each agrees.
    let (stock, waiting) = sku_list_typed(&sb);
    assert!(waiting.is_empty(), "{waiting:?}");
    assert_eq!(stock.len(), skus);
    for (sku, (on_hand, reserved, available)) in &stock {
        let open = |name: &str| {
            early
                .get(&(name.to_owned(), sku.clone()))
                .copied()
                .unwrap_or(0)
        };
        for name in MARKETS {
            assert_eq!(*on_hand, before[name][sku] + open(name), "{name} {sku}");
        }
        assert_eq!(
            *reserved,
            MARKETS.into_iter().map(open).sum::<i64>(),
            "{sku}"
        );
        assert_eq!(*available, on_hand - reserved, "{sku}");
    }
    assert!(stock.values().map(|s| s.1).sum::<i64>() > 0);
    ok(&sb, &["stock", "verify"]);

    // Every channel shows on hand − reserved − buffer (0: discover sets none), pushed by
    // the running server, read back from the simulators.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut wrong = Vec::new();
        for name in MARKETS {
            let now = shown(&admin, &info.m(name).base).await;
            for (sku, (_, _, available)) in &stock {
                if now.get(sku) != Some(available) {
                    wrong.push(format!("{name} {sku}: {:?} ≠ {available}", now.get(sku)));
                }
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{wrong:?}\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ok(&sb, &["stock", "verify"]);
    ok(&sb, &["audit", "verify"]);

    // Again: nothing new. A catalog listing the marketplace does not have is reported
    // gone and kept.
    let csv = sb.dir.join("old.csv");
    std::fs::write(&csv, "sku,on_hand,tiktok:listing\nOLD-1,3,1729:3301\n").unwrap();
    ok(&sb, &["sku", "import", "old.csv"]);
    let out = ok(&sb, &["sku", "discover", "--connection", "tiktok"]);
    assert_eq!(
        summary(&out, "tiktok"),
        format!(
            "tiktok: {skus} listing(s) found on tiktok: 0 new SKU(s), 0 new listing(s), 0 changed, {skus} unchanged, 1 gone"
        )
    );
    assert!(out.contains("gone         OLD-1"), "{out}");
    assert!(sku_list_typed(&sb).0.contains_key("OLD-1"));
    ok(&sb, &["stock", "verify"]);
    ok(&sb, &["audit", "verify"]);

    // Nothing was configured by hand.
    assert_eq!(std::fs::read_to_string(&config).unwrap(), config_at_init);
    drop(server);
    drop(sandbox);
}

/// An unknown connection is a usage error; an unreachable marketplace fails the command
/// and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_refusals_write_nothing() {
    let sb = crate::server::init("dev", "");
    let out = sb
        .run(&["sku", "discover", "--connection", "nope"])
        .expect_code(2);
    assert!(
        out.stderr().contains("no connection named"),
        "{}",
        out.stderr()
    );
    crate::sync::add_unreachable_tiktok(&sb, "s");
    let out = sb
        .run(&["sku", "discover", "--connection", "tiktok"])
        .expect_code(1);
    assert!(out.stderr().contains("tiktok"), "{}", out.stderr());
    assert!(sku_list(&sb).is_empty());
    let audited = db_query(
        &sb,
        "SELECT COUNT(*) FROM audit WHERE action = 'catalog.discover'",
    )
    .await[0]
        .decode::<i64>()
        .unwrap();
    assert_eq!(audited, 0);
}
