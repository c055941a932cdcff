//! Reliability end to end, as an operator runs it: `stockade sandbox` delivers signed
//! webhooks to a real `stockade serve` (connections and catalog added with the CLI), the
//! server is SIGKILLed in the middle of the load and restarted on the same address, and
//! afterwards no order is lost or doubled, reservations match the orders, every channel
//! shows available − buffer and the audit chain verifies. And bad signatures on the
//! webhook routes get the sender (its X-Forwarded-For address) banned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Sandbox;

pub(crate) const MARKETS: [&str; 3] = ["tiktok", "amazon", "ebay"];
/// Every listing keeps this many units back.
pub(crate) const BUFFER: i64 = 3;
pub(crate) const ON_HAND: i64 = 5_000;
/// Orders per marketplace per round, and the rounds: the server is killed after
/// `KILL_AFTER` rounds, stays down for `DOWN_ROUNDS`, then runs again for the rest.
const PER_ROUND: usize = 10;
const ROUNDS: usize = 20;
const KILL_AFTER: usize = 8;
const DOWN_ROUNDS: usize = 5;
/// `[sync] poll_interval`. With a 1 s `poll_overlap` each poll reads one page: Amazon's
/// searchOrders allows a burst of 20 calls, then one every 3 minutes, and the connector
/// keeps to that, so the default 2-minute overlap (every order of the test, several
/// pages, on every poll) would stall Amazon's polling within seconds.
const POLL_INTERVAL_S: u64 = 3;

/// A child process killed (SIGKILL) and reaped on drop, pass or fail.
pub(crate) struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// `kill -9`.
    pub(crate) fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop it as an operator would (SIGTERM: it shuts down and gives its leases back),
    /// killed if it has not exited within 15 s.
    pub(crate) fn stop(mut self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The file its standard error goes to.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Start the binary with a clean STOCKADE_* environment; standard error goes to `log`,
/// standard output is read line by line into the returned channel (so reads can time out).
pub(crate) fn spawn(sb: &Sandbox, args: &[&str], log: &Path) -> (Proc, mpsc::Receiver<String>) {
    spawn_env(sb, args, log, &[])
}

/// [`spawn`] with `extra` variables in its environment (after the sandbox's).
pub(crate) fn spawn_env(
    sb: &Sandbox,
    args: &[&str],
    log: &Path,
    extra: &[(&str, &str)],
) -> (Proc, mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in &sb.env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .current_dir(&sb.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // Keep draining after the reader went away.
            let _ = tx.send(line);
        }
    });
    (
        Proc {
            child,
            log: log.to_owned(),
        },
        rx,
    )
}

/// Lines up to and including the first that `done` accepts; None on timeout or exit.
pub(crate) fn read_until(
    rx: &mpsc::Receiver<String>,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = rx.recv_timeout(left).ok()?;
        let stop = done(&line);
        lines.push(line);
        if stop {
            return Some(lines);
        }
    }
}

/// A loopback port free right now (the server is started on it, killed and restarted
/// on the same one, and the sandbox's webhook URLs name it before it first listens).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `stockade serve --listen 127.0.0.1:PORT`, once it prints its address.
pub(crate) fn start_serve(sb: &Sandbox, port: u16, n: usize) -> Result<Proc, String> {
    let log = sb.dir.join(format!("serve-{n}.log"));
    let listen = format!("127.0.0.1:{port}");
    let data = sb.data();
    let (proc, rx) = spawn(
        sb,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--listen",
            &listen,
        ],
        &log,
    );
    match read_until(&rx, Duration::from_secs(30), |l| {
        l.starts_with("listening on ")
    }) {
        Some(lines) => {
            let want = format!("listening on https://{listen}");
            assert_eq!(lines.last().map(String::as_str), Some(want.as_str()));
            Ok(proc)
        }
        None => Err(proc.log_tail()),
    }
}

/// Start the server on `port`, retrying a few times while the port is still held by
/// the process just killed.
fn restart_serve(sb: &Sandbox, port: u16, n: usize) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match start_serve(sb, port, n) {
            Ok(p) => return p,
            Err(log) if Instant::now() < deadline => {
                eprintln!("serve did not start yet, retrying:\n{log}");
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(log) => panic!("serve did not restart on 127.0.0.1:{port}:\n{log}"),
        }
    }
}

/// What `stockade sandbox` prints for one marketplace.
#[derive(Debug, Default, Clone)]
pub(crate) struct Market {
    pub(crate) base: String,
    client_id: String,
    client_secret: String,
    seller: String,
    refresh_token: String,
    shop_cipher: String,
    marketplace_id: String,
}

#[derive(Debug, Default)]
pub(crate) struct SandboxInfo {
    markets: BTreeMap<String, Market>,
    amazon_event_key: String,
    ebay_verification_token: String,
}

impl SandboxInfo {
    pub(crate) fn m(&self, name: &str) -> &Market {
        &self.markets[name]
    }

    pub(crate) fn parse(lines: &[String]) -> SandboxInfo {
        let mut info = SandboxInfo::default();
        let mut section: Option<String> = None;
        for line in lines {
            let t = line.trim();
            if t.starts_with("-----BEGIN") {
                break;
            }
            if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = Some(name.to_owned());
                info.markets.insert(name.to_owned(), Market::default());
                continue;
            }
            if let Some(rest) = t.strip_prefix("amazon event header ") {
                info.amazon_event_key = rest.split_once(" = ").unwrap().1.trim().to_owned();
                continue;
            }
            if let Some(rest) = t.strip_prefix("ebay verification token = ") {
                info.ebay_verification_token = rest.trim().to_owned();
                continue;
            }
            let Some(m) = section.as_ref().and_then(|s| info.markets.get_mut(s)) else {
                continue;
            };
            if let Some(seller) = t.strip_prefix("seller ") {
                // The first seller only (the sandbox runs with one).
                if m.seller.is_empty() {
                    m.seller = seller.trim().to_owned();
                }
                continue;
            }
            let Some((k, v)) = t.split_once('=') else {
                continue;
            };
            let v = v.trim().to_owned();
            match k.trim() {
                "base_url" => m.base = v,
                "client_id" => m.client_id = v,
                "client_secret" => m.client_secret = v,
                "refresh_token" if m.refresh_token.is_empty() => m.refresh_token = v,
                "shop_cipher" if m.shop_cipher.is_empty() => m.shop_cipher = v,
                "marketplace" if m.marketplace_id.is_empty() => m.marketplace_id = v,
                _ => {}
            }
        }
        for name in MARKETS {
            let m = info
                .markets
                .get(name)
                .unwrap_or_else(|| panic!("no [{name}] in the sandbox output:\n{lines:?}"));
            assert!(
                m.base.starts_with("https://127.0.0.1:")
                    && !m.client_id.is_empty()
                    && !m.client_secret.is_empty()
                    && !m.seller.is_empty()
                    && !m.refresh_token.is_empty(),
                "{name}: {m:?}"
            );
        }
        assert!(!info.amazon_event_key.is_empty() && !info.ebay_verification_token.is_empty());
        info
    }
}

/// Write a private (0600) JSON credentials file.
pub(crate) fn credentials_file(sb: &Sandbox, name: &str, value: Value) -> PathBuf {
    let path = sb.dir.join(format!("{name}.credentials.json"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(value.to_string().as_bytes()).unwrap();
    path
}

/// Add the TikTok connection `tiktok` (shop 7495123456789) with app secret `app_secret`,
/// pointed at a port nothing listens on: webhooks and the catalog work, fetches fail.
pub(crate) fn add_unreachable_tiktok(sb: &Sandbox, app_secret: &str) {
    let creds = credentials_file(
        sb,
        "tiktok",
        json!({"app_key": "6a1b2c3d4e5f", "app_secret": app_secret,
               "refresh_token": "ROW_not-a-real-token"}),
    );
    sb.run(&[
        "connection",
        "add",
        "--marketplace",
        "tiktok",
        "--name",
        "tiktok",
        "--account",
        "7495123456789",
        "--api-url",
        "https://127.0.0.1:9",
        "--auth-url",
        "https://127.0.0.1:9",
        "--shop-cipher",
        "ROW_cipher",
        "--credentials-file",
        creds.to_str().unwrap(),
    ])
    .expect_code(0);
}

pub(crate) fn add_connections(sb: &Sandbox, info: &SandboxInfo, hook_base: &str) {
    for name in MARKETS {
        let m = info.m(name);
        let mut args: Vec<String> = vec![
            "connection".into(),
            "add".into(),
            "--marketplace".into(),
            name.into(),
            "--name".into(),
            name.into(),
            "--account".into(),
            m.seller.clone(),
            "--api-url".into(),
            m.base.clone(),
        ];
        let creds = match name {
            "tiktok" => {
                args.extend([
                    "--auth-url".into(),
                    m.base.clone(),
                    "--shop-cipher".into(),
                    m.shop_cipher.clone(),
                ]);
                json!({"app_key": m.client_id, "app_secret": m.client_secret,
                       "refresh_token": m.refresh_token})
            }
            "amazon" => {
                args.extend([
                    "--auth-url".into(),
                    format!("{}/auth/o2/token", m.base),
                    "--marketplace-id".into(),
                    m.marketplace_id.clone(),
                ]);
                json!({"client_id": m.client_id, "client_secret": m.client_secret,
                       "refresh_token": m.refresh_token, "event_key": info.amazon_event_key})
            }
            _ => {
                args.extend([
                    "--marketplace-id".into(),
                    m.marketplace_id.clone(),
                    "--endpoint-url".into(),
                    format!("{hook_base}/ebay/ebay"),
                ]);
                json!({"client_id": m.client_id, "client_secret": m.client_secret,
                       "refresh_token": m.refresh_token,
                       "verification_token": info.ebay_verification_token})
            }
        };
        let file = credentials_file(sb, name, creds);
        args.extend(["--credentials-file".into(), file.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sb.run(&args).expect_code(0).stdout();
        assert!(out.contains(&format!("connection {name} added")), "{out}");
    }
}

/// Admin and status calls to the simulators and the server (both test CAs trusted).
pub(crate) struct Admin {
    client: reqwest::Client,
}

impl Admin {
    pub(crate) fn new(sandbox_ca: &Path, server_ca: &Path) -> Admin {
        let cert = |p: &Path| reqwest::Certificate::from_pem(&std::fs::read(p).unwrap()).unwrap();
        Admin {
            client: reqwest::Client::builder()
                .tls_certs_only([cert(sandbox_ca), cert(server_ca)])
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
        }
    }

    pub(crate) async fn get(&self, url: String) -> Value {
        let res = self.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {url}");
        res.json().await.unwrap()
    }

    /// A GET answered 200, its body as text.
    pub(crate) async fn get_text(&self, url: String) -> String {
        let res = self.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {url}");
        res.text().await.unwrap()
    }

    pub(crate) async fn send(&self, method: reqwest::Method, url: String, body: Value) -> Value {
        let res = self
            .client
            .request(method.clone(), &url)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "{method} {url}: {}",
            res.status()
        );
        res.json().await.unwrap()
    }
}

/// The catalog CSV of the simulators' listings: every SKU on every channel.
pub(crate) fn catalog_csv(listings: &BTreeMap<String, Vec<Value>>) -> String {
    let mut rows: BTreeMap<String, HashMap<&str, String>> = BTreeMap::new();
    for name in MARKETS {
        for l in &listings[name] {
            let s = |k: &str| l[k].as_str().unwrap().to_owned();
            let id = match name {
                "tiktok" => format!("{}:{}", s("product_id"), s("sku_id")),
                "amazon" => s("asin"),
                _ => s("offer_id"),
            };
            rows.entry(s("sku")).or_default().insert(name, id);
        }
    }
    let mut out = String::from("sku,on_hand");
    for name in MARKETS {
        out.push_str(&format!(",{name}:listing,{name}:buffer,{name}:max"));
    }
    out.push('\n');
    for (sku, ids) in &rows {
        out.push_str(&format!("{sku},{ON_HAND}"));
        for name in MARKETS {
            out.push_str(&format!(",{},{BUFFER},", ids[name]));
        }
        out.push('\n');
    }
    out
}

/// The order a delivery was about, if it is an order event.
fn delivered_order(market: &str, d: &Value) -> Option<String> {
    let body: Value = serde_json::from_str(d["body"].as_str()?).ok()?;
    let id = match (market, d["kind"].as_str()?) {
        ("tiktok", "ORDER_STATUS_CHANGE") => &body["data"]["order_id"],
        ("amazon", "ORDER_CHANGE") => {
            &body["detail"]["Payload"]["OrderChangeNotification"]["AmazonOrderId"]
        }
        ("ebay", "ORDER_CONFIRMATION") => &body["notification"]["data"]["orderId"],
        _ => return None,
    };
    id.as_str().map(str::to_owned)
}

const DB_ORDERS: &str = "SELECT c.name, o.external_id FROM orders o JOIN connections c ON c.id = o.connection_id ORDER BY o.id";
const DB_LEDGER_RESERVED: &str =
    "SELECT sku, SUM(reserved_delta) FROM stock_ledger GROUP BY sku ORDER BY sku";

/// Rows of a query against the environment's database, read the way the CLI opens it.
pub(crate) async fn db_query(sb: &Sandbox, sql: &'static str) -> Vec<stockade_store::SqlRow> {
    let url = stockade_store::DatabaseUrl::Sqlite(sb.data().join("stockade.db"));
    let store =
        stockade_store::Store::open(&url, stockade_core::Environment::Dev, &Default::default())
            .await
            .unwrap();
    let rows = store.query(sql, vec![]).await.unwrap();
    store.close().await;
    rows
}

/// (connection, external order id) of every stored order; the count of rows too, so a
/// doubled order would show.
async fn db_orders(sb: &Sandbox) -> (HashSet<(String, String)>, usize) {
    let rows = db_query(sb, DB_ORDERS).await;
    let set = rows.iter().map(|r| r.decode().unwrap()).collect();
    (set, rows.len())
}

/// Place `count` orders on one simulator; their ids.
pub(crate) async fn place(admin: &Admin, base: &str, count: usize) -> Vec<String> {
    let r = admin
        .send(
            reqwest::Method::POST,
            format!("{base}/_sandbox/orders"),
            json!({ "count": count }),
        )
        .await;
    r["order_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The delivery counters (one outbox for the three simulators).
pub(crate) async fn delivery_stats(admin: &Admin, info: &SandboxInfo) -> Value {
    admin
        .get(format!("{}/_sandbox/delivery-stats", info.m("tiktok").base))
        .await
}

/// Wait until every delivery queued so far has finished.
pub(crate) async fn drain(admin: &Admin, info: &SandboxInfo) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = delivery_stats(admin, info).await;
        let n = |k: &str| s[k].as_u64().unwrap();
        if n("in_flight") == 0 && n("queued") == n("delivered") + n("failed") {
            return s;
        }
        assert!(Instant::now() < deadline, "deliveries did not drain: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (marketplace, order id) of the orders with a delivery answered 2xx, and of those
/// with a delivery that failed.
pub(crate) async fn delivery_outcomes(
    admin: &Admin,
    info: &SandboxInfo,
) -> (HashSet<(String, String)>, HashSet<(String, String)>) {
    let mut acked = HashSet::new();
    let mut failed = HashSet::new();
    for name in MARKETS {
        for d in admin
            .get(format!("{}/_sandbox/deliveries", info.m(name).base))
            .await
            .as_array()
            .unwrap()
        {
            if let Some(id) = delivered_order(name, d) {
                if d["ok"] == true {
                    acked.insert((name.to_owned(), id));
                } else {
                    failed.insert((name.to_owned(), id));
                }
            }
        }
    }
    (acked, failed)
}

/// Every order the simulators hold, and the units each SKU's orders hold (all are
/// placed: none is advanced).
pub(crate) async fn sandbox_orders(
    admin: &Admin,
    info: &SandboxInfo,
) -> (HashSet<(String, String)>, BTreeMap<String, i64>) {
    let mut orders = HashSet::new();
    let mut units: BTreeMap<String, i64> = BTreeMap::new();
    for name in MARKETS {
        for o in admin
            .get(format!("{}/_sandbox/orders", info.m(name).base))
            .await
            .as_array()
            .unwrap()
        {
            assert_eq!(o["state"], "placed", "{o}");
            orders.insert((name.to_owned(), o["order_id"].as_str().unwrap().to_owned()));
            for line in o["lines"].as_array().unwrap() {
                *units
                    .entry(line[0].as_str().unwrap().to_owned())
                    .or_default() += line[1].as_i64().unwrap();
            }
        }
    }
    (orders, units)
}

/// Wait until the stored orders are exactly `want`: never one the sandbox does not
/// have, never one twice.
async fn wait_stored(
    sb: &Sandbox,
    want: &HashSet<(String, String)>,
    deadline: Instant,
    server: &Proc,
) {
    loop {
        let (stored, rows) = db_orders(sb).await;
        assert_eq!(stored.len(), rows, "an order is stored twice");
        let extra: Vec<_> = stored.difference(want).collect();
        assert!(
            extra.is_empty(),
            "stored orders the sandbox does not have: {extra:?}"
        );
        let missing: Vec<_> = want.difference(&stored).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} orders not stored (the poller runs every {POLL_INTERVAL_S}s): {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `stockade sku list`: sku → (on_hand, reserved, available).
pub(crate) fn sku_list(sb: &Sandbox) -> BTreeMap<String, (i64, i64, i64)> {
    let out = sb.run(&["sku", "list"]).expect_code(0).stdout();
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i)?.parse::<i64>().ok();
            Some((f.first()?.to_string(), (n(1)?, n(2)?, n(3)?)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_through_serve_and_sigkill_mid_load() {
    let started = Instant::now();
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let port = free_port();
    let hook_base = format!("https://127.0.0.1:{port}/hooks");

    // A first start creates the server's development CA, which the sandbox must trust
    // to deliver to it; the server then goes down until it is configured.
    drop(start_serve(&sb, port, 0).unwrap_or_else(|log| panic!("serve: {log}")));
    let server_ca = sb.data().join("tls/dev-ca.pem");
    assert!(server_ca.is_file());

    // The simulators, delivering to the server's webhook routes.
    let sandbox_ca = sb.dir.join("sandbox-ca.pem");
    let (sandbox, info, admin) = crate::market_run::spawn_markets(&sb, 41, 20, &hook_base);
    let base = |name: &str| info.m(name).base.clone();

    // Egress to the three simulators only, trusting their CA; polling every few seconds.
    let hosts: Vec<String> = MARKETS
        .iter()
        .map(|m| format!("\"{}\"", base(m).trim_start_matches("https://")))
        .collect();
    let config = sb.data().join("stockade.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[egress]\nallowed_hosts = [{}]\nextra_root_certs = [{:?}]\n\n[sync]\npoll_interval = \"{POLL_INTERVAL_S}s\"\npoll_overlap = \"1s\"\n",
        hosts.join(", "),
        sandbox_ca.display().to_string()
    ));
    std::fs::write(&config, text).unwrap();

    add_connections(&sb, &info, &hook_base);
    let mut listings = BTreeMap::new();
    for name in MARKETS {
        let l = admin.get(format!("{}/_sandbox/listings", base(name))).await;
        let l = l.as_array().unwrap().clone();
        assert_eq!(l.len(), 20, "{name}");
        listings.insert(name.to_owned(), l);
    }
    let csv = sb.dir.join("catalog.csv");
    std::fs::write(&csv, catalog_csv(&listings)).unwrap();
    let out = sb
        .run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0)
        .stdout();
    assert!(
        out.contains("imported 20 SKU(s) and 60 listing(s)"),
        "{out}"
    );

    let mut server = Some(start_serve(&sb, port, 1).unwrap_or_else(|log| panic!("serve: {log}")));
    // eBay delivers only to a validated endpoint.
    crate::market_run::validate_ebay(&admin, &info, &hook_base, &|| {
        server.as_ref().unwrap().log_tail()
    })
    .await;
    eprintln!("setup done in {:?}", started.elapsed());

    // The load, with the server killed (SIGKILL) in the middle and restarted later.
    let mut generated = 0usize;
    let mut killed_at = None;
    for round in 0..ROUNDS {
        if round == KILL_AFTER {
            server.as_mut().unwrap().sigkill();
            killed_at = Some(Instant::now());
            eprintln!(
                "server killed after {generated} orders, at {:?}: {}",
                started.elapsed(),
                delivery_stats(&admin, &info).await
            );
        }
        if round == KILL_AFTER + DOWN_ROUNDS {
            server = Some(restart_serve(&sb, port, 2));
            eprintln!(
                "server restarted on the same address after {:?} down",
                killed_at.unwrap().elapsed()
            );
        }
        for name in MARKETS {
            generated += place(&admin, &base(name), PER_ROUND).await.len();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rounds_done = Instant::now();
    eprintln!("{generated} orders placed by {:?}", started.elapsed());
    let server = server.unwrap();

    // The deliveries drain: each finished with a 2xx answer or given up on after its
    // attempts (the sandbox's gateway pauses a host after repeated failures, so those
    // during the outage and just after it fail fast).
    let stats = drain(&admin, &info).await;
    eprintln!("deliveries drained by {:?}: {stats}", started.elapsed());
    let (acked, failed) = delivery_outcomes(&admin, &info).await;
    let (orders, _) = sandbox_orders(&admin, &info).await;
    assert_eq!(orders.len(), generated);
    let missed: HashSet<_> = orders.difference(&acked).cloned().collect();
    eprintln!(
        "{} orders: {} acknowledged by webhook, {} with refused or unanswered deliveries only",
        orders.len(),
        acked.len(),
        missed.len()
    );
    assert!(
        !acked.is_empty() && !failed.is_empty() && !missed.is_empty(),
        "the outage made no delivery fail, or none succeeded: {stats}"
    );

    // (a) Every order a webhook was answered 2xx for is stored, exactly once: the server
    // answers 2xx only once the order is durable, and the SIGKILL loses none of them.
    let (stored, rows) = db_orders(&sb).await;
    assert_eq!(stored.len(), rows, "an order is stored twice");
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged by webhook but not stored: {lost:?}"
    );

    // The orders whose deliveries failed (during the outage, and just after the restart
    // while the sandbox held deliveries back) are found by the poller within its interval.
    wait_stored(
        &sb,
        &orders,
        rounds_done + Duration::from_secs(POLL_INTERVAL_S * 3 + 10),
        &server,
    )
    .await;
    eprintln!(
        "every order stored {:?} after the last round ({:?} in)",
        rounds_done.elapsed(),
        started.elapsed()
    );

    // Once the sandbox lets deliveries through again (its gateway's cool-down is 30 s),
    // the restarted server acknowledges webhooks on every channel: place an order per
    // marketplace every second until one on each is answered 2xx.
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut recent: HashSet<(String, String)> = HashSet::new();
    let mut recovered: HashSet<&str> = HashSet::new();
    while recovered.len() < MARKETS.len() {
        assert!(
            Instant::now() < deadline,
            "webhooks were not acknowledged again after the restart on {:?}: {}\n{}",
            MARKETS
                .iter()
                .filter(|m| !recovered.contains(*m))
                .collect::<Vec<_>>(),
            delivery_stats(&admin, &info).await,
            server.log_tail()
        );
        for name in MARKETS {
            if !recovered.contains(name) {
                for id in place(&admin, &base(name), 1).await {
                    generated += 1;
                    recent.insert((name.to_owned(), id));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (acked, _) = delivery_outcomes(&admin, &info).await;
        for (name, _) in recent.intersection(&acked) {
            recovered.insert(MARKETS.iter().find(|m| *m == name).unwrap());
        }
    }
    eprintln!(
        "webhooks acknowledged again on every channel {:?} after the kill",
        killed_at.unwrap().elapsed()
    );

    // All of it once more: every order stored exactly once, each acknowledged one too.
    let stats = drain(&admin, &info).await;
    let (acked, _) = delivery_outcomes(&admin, &info).await;
    let (orders, reserved_expected) = sandbox_orders(&admin, &info).await;
    assert_eq!(orders.len(), generated, "{stats}");
    let (stored, _) = db_orders(&sb).await;
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged by webhook but not stored: {lost:?}"
    );
    wait_stored(
        &sb,
        &orders,
        Instant::now() + Duration::from_secs(POLL_INTERVAL_S * 3 + 10),
        &server,
    )
    .await;
    eprintln!(
        "{} orders, {} acknowledged by webhook, all stored once, by {:?}",
        orders.len(),
        acked.len(),
        started.elapsed()
    );

    // (b) Reserved per SKU is the sum of the orders' lines, in the stock table and in its
    // ledger.
    let stock = sku_list(&sb);
    assert_eq!(stock.len(), 20, "{stock:?}");
    let ledger: BTreeMap<String, i64> = db_query(&sb, DB_LEDGER_RESERVED)
        .await
        .iter()
        .map(|r| r.decode().unwrap())
        .collect();
    crate::market_run::check_stock(&stock, &reserved_expected, &ledger);
    sb.run(&["stock", "verify"]).expect_code(0);

    // (c) Every channel converges to available − buffer.
    crate::market_run::wait_converged(&admin, &info, &stock, Duration::from_secs(60), &|| {
        server.log_tail()
    })
    .await;
    eprintln!("every listing converged by {:?}", started.elapsed());

    // (d) The audit chain is intact after the kill, and after a revocation purges one
    // connection's orders while the server runs.
    sb.run(&["audit", "verify"]).expect_code(0);
    sb.run(&["connection", "revoke", "tiktok", "--yes"])
        .expect_code(0);
    let (stored, _) = db_orders(&sb).await;
    assert!(
        stored.iter().all(|(c, _)| c != "tiktok") && !stored.is_empty(),
        "a revoked connection's orders are deleted, the others kept"
    );
    sb.run(&["audit", "verify"]).expect_code(0);
    drop(server);
    drop(sandbox);
    eprintln!("done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_failures_through_serve_ban_the_sender() {
    let sb = crate::server::init(
        "dev",
        "[server]\ntrust_forwarded_for = true\n\n[ban]\nmaxretry = 5\nfindtime = \"10m\"\nbantime = \"1h\"\n\n[sync]\npoll_interval = \"never\"\nreconcile_interval = \"never\"\n",
    );
    // A TikTok connection whose app secret the sender does not know.
    add_unreachable_tiktok(&sb, "the-real-app-secret");
    let port = free_port();
    let server = start_serve(&sb, port, 0).unwrap_or_else(|log| panic!("serve: {log}"));
    let ca = sb.data().join("tls/dev-ca.pem");
    let client = crate::server::client(&ca);
    let url = format!("https://127.0.0.1:{port}/hooks/tiktok/tiktok");
    let body = json!({"type": 1, "shop_id": "7495123456789", "timestamp": 1_700_000_000,
                      "data": {"order_id": "576461413038785752", "order_status": "AWAITING_SHIPMENT",
                               "update_time": 1_700_000_000}})
    .to_string();
    let post = |from: &'static str, signature: &'static str| {
        client
            .post(&url)
            .header("x-forwarded-for", from)
            .header("authorization", signature)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for i in 0..6 {
        let signature = if i % 2 == 0 { "deadbeef" } else { "" };
        let res = post("198.51.100.23", signature).await.unwrap();
        statuses.push(res.status().as_u16());
        last = res.json().await.unwrap_or(Value::Null);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 403],
        "{last}\n{}",
        server.log_tail()
    );
    assert_eq!(last["error"]["code"], "banned", "{last}");
    // The forwarded address is banned, not the proxy's: another client still reaches
    // the signature check.
    let res = post("198.51.100.24", "deadbeef").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let list = sb.run(&["ban", "list"]).expect_code(0).stdout();
    assert!(
        list.contains("198.51.100.23") && !list.contains("198.51.100.24"),
        "{list}"
    );
    assert!(!list.contains("127.0.0.1"), "{list}");
    // Regression: the webhook jail's ban does not lock the same address out of sign-in.
    let res = client
        .get(format!("https://127.0.0.1:{port}/login"))
        .header("x-forwarded-for", "198.51.100.23")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Deliveries to an unknown or revoked connection are 404/410, logged, never counted.
    sb.run(&["connection", "revoke", "tiktok", "--yes"])
        .expect_code(0);
    // A running server picks the revocation up within 2 seconds.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        for path in ["tiktok", "nope"] {
            let res = client
                .post(format!("https://127.0.0.1:{port}/hooks/tiktok/{path}"))
                .header("x-forwarded-for", "198.51.100.25")
                .header("authorization", "deadbeef")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            statuses.push(res.status().as_u16());
        }
    }
    assert!(
        statuses.ends_with(&[410, 404, 410, 404]),
        "{statuses:?}\n{}",
        server.log_tail()
    );
    assert!(!statuses.contains(&403), "{statuses:?}");
    assert!(
        !sb.run(&["ban", "list"]).stdout().contains("198.51.100.25"),
        "stale deliveries ban nobody"
    );
    sb.run(&["audit", "verify"]).expect_code(0);
    drop(server);
}
