//! The `nocodb.*` steps against a REAL NocoDB 0.301.3 (installed by `./scripts/test` with
//! `tools/nocodb/install.sh` into a cache outside the clone; found through
//! `STOCKADE_TEST_NOCODB_DIR` or that cache's default place). NocoDB is started on a free
//! loopback port with a temporary data directory, behind the sandbox's loopback TLS
//! terminator (egress is https only), set up through its REST API (sign in, API token,
//! base, table), and then a workflow inserts 150 rows in two `for_each` batches, lists
//! with `where`/`sort`/`fields`, updates and deletes by `Id`; a wrong token and an unknown
//! table fail clearly; and the sandbox's simulator is checked to answer NocoDB's refusals
//! with the same status and body as the real one.
//! NocoDB is killed when the test ends, panics included ([`Noco`]'s `Drop`).
//!
//! Without an install the test prints `SKIPPED: real NocoDB not installed (…)` and
//! passes, except under CI / `STOCKADE_REQUIRE_ALL`, where the set-up must have installed
//! it and the test fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_core::Environment;
use stockade_egress::{Caller, EgressConfig, Gateway, Method, Request};
use stockade_sandbox::NocoSim;
use stockade_sandbox::tlsproxy::TlsProxy;
use stockade_workflows::exec::{Executor, RunOutcome};

use crate::exec_nocodb::{failure, mirror, output, run, single};
use crate::exec_support::{Backend, Env, catalog, open_vault, put_credential};

const VERSION: &str = "0.301.3";
const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "Passw0rd!Test123";

/// The installed NocoDB's directory, if there is one.
fn installed() -> Option<PathBuf> {
    let dir = match std::env::var_os("STOCKADE_TEST_NOCODB_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache.join("stockade").join(format!("nocodb-{VERSION}"))
        }
    };
    (dir.join(".stockade-installed").is_file() && dir.join("start.js").is_file()).then_some(dir)
}

/// A running NocoDB: killed, and its data directory removed, on drop.
struct Noco {
    child: Child,
    data: PathBuf,
    port: u16,
}

impl Drop for Noco {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl Noco {
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.data.join("nocodb.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or("").to_owned()
    }

    fn start(dir: &Path) -> Noco {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = stockade_testkit::temp_dir("nocodb-it");
        let log = std::fs::File::create(data.join("nocodb.log")).unwrap();
        let child = Command::new("node")
            .arg("start.js")
            .current_dir(dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env(
                "NC_DB",
                format!("sqlite3://?database={}", data.join("noco.db").display()),
            )
            .env("NC_TOOL_DIR", &data)
            .env("NC_DISABLE_TELE", "true")
            .env("NC_DISABLE_ERR_REPORTS", "true")
            .env("NC_DISABLE_SUPPORT_CHAT", "true")
            .env("NC_AUTH_JWT_SECRET", stockade_testkit::random_hex())
            .env("NC_ADMIN_EMAIL", EMAIL)
            .env("NC_ADMIN_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node start.js");
        Noco { child, data, port }
    }

    /// Wait (up to 90 s) until `GET /api/v1/health` answers 200, over plain loopback HTTP.
    async fn ready(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "NocoDB exited ({status}) while starting:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "NocoDB did not answer /api/v1/health within 90 s:\n{}",
                self.log_tail()
            );
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let req =
                    "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                let mut got = Vec::new();
                if s.write_all(req.as_bytes()).await.is_ok()
                    && s.read_to_end(&mut got).await.is_ok()
                    && got.starts_with(b"HTTP/1.1 200")
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// One set-up call through `gateway`; the JSON answer (a non-2xx fails the test).
async fn call(gateway: &Gateway, authority: &str, req: Request) -> Value {
    let client = gateway.client(Caller::System("nocodb-it"), &[authority]);
    let resp = client.send(req).await.expect("NocoDB answers");
    let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    assert!(resp.status.is_success(), "{}: {body}", resp.status);
    body
}

/// Sign in, create an API token, a base and a table: (API token, table id).
async fn set_up(gateway: &Gateway, base: &str, authority: &str) -> (String, String) {
    let post = |path: &str| {
        Request::new(
            Method::POST,
            format!("{base}{path}"),
            "/setup",
            "nocodb.setup",
        )
    };
    let signin =
        post("/api/v1/auth/user/signin").json(&json!({"email": EMAIL, "password": PASSWORD}));
    let jwt = call(gateway, authority, signin).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let token_req = post("/api/v1/tokens")
        .header_named("xc-auth", jwt)
        .json(&json!({"description": "stockade-it"}));
    let token = call(gateway, authority, token_req).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let base_req = post("/api/v2/meta/bases")
        .header_named("xc-token", token.clone())
        .json(&json!({"title": "stockade_it"}));
    let base_id = call(gateway, authority, base_req).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let column = |name: &str, uidt: &str| json!({"column_name": name, "title": name, "uidt": uidt});
    let table_req = post(&format!("/api/v2/meta/bases/{base_id}/tables"))
        .header_named("xc-token", token.clone())
        .json(&json!({
            "table_name": "orders_mirror",
            "title": "orders_mirror",
            "columns": [column("sku", "SingleLineText"), column("qty", "Number"), column("status", "SingleLineText")],
        }));
    let table = call(gateway, authority, table_req).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (token, table)
}

/// One request through `gateway`: (status, JSON answer).
async fn answer(gateway: &Gateway, authority: &str, req: Request) -> (u16, Value) {
    let client = gateway.client(Caller::System("nocodb-it"), &[authority]);
    let resp = client.send(req).await.expect("an answer");
    let body = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    (resp.status.as_u16(), body)
}

/// The sandbox's simulator answers the refusals exactly as this real NocoDB does: over
/// 100 rows, an unknown table, a missing record, a bad token, a malformed `where`.
async fn simulator_answers_like_nocodb(real: (&Gateway, &str, &str), token: &str, table: &str) {
    let sim = NocoSim::start(token).await.expect("simulator");
    let sim_table = sim.add_table("probe");
    let sim_authority = sim.base_url.trim_start_matches("https://").to_owned();
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec![sim_authority.clone()];
    cfg.extra_root_pems = vec![sim.ca_pem.clone()];
    cfg.max_attempts = 1;
    let sim_gateway = Gateway::new(cfg, None).expect("gateway");
    let many: Vec<Value> = (0..101).map(|i| json!({ "qty": i })).collect();
    let probes: [(Method, &str, &str, Option<Value>, bool); 5] = [
        (Method::POST, "", "", Some(Value::Array(many)), true),
        (Method::GET, "mNoSuchTbl", "", None, true),
        (
            Method::PATCH,
            "",
            "",
            Some(json!([{ "Id": 99999, "qty": 1 }])),
            true,
        ),
        (Method::GET, "", "", None, false),
        (Method::GET, "", "?where=bad", None, true),
    ];
    for (method, other_table, query, body, good_token) in probes {
        let mut got = Vec::new();
        for (gateway, authority, base, own) in [
            (real.0, real.1, real.2, table),
            (
                &sim_gateway,
                sim_authority.as_str(),
                sim.base_url.as_str(),
                sim_table.as_str(),
            ),
        ] {
            let t = if other_table.is_empty() {
                own
            } else {
                other_table
            };
            let sent = if good_token { token } else { "wrong-token" };
            let url = format!("{base}/api/v2/tables/{t}/records{query}");
            let mut req = Request::new(method.clone(), url, "/probe", "nocodb.probe")
                .header_named("xc-token", sent.to_owned());
            if let Some(b) = &body {
                req = req.json(b);
            }
            got.push(answer(gateway, authority, req).await);
        }
        assert_eq!(
            got[0], got[1],
            "{method} {other_table}{query}: NocoDB vs the simulator"
        );
    }
    sim.shutdown().await;
}

/// The mirror workflow's outputs: two inserts, the five largest `qty` above 140, one row
/// updated and four deleted.
fn check_journal(journal: &[stockade_store::StepRecord]) {
    let inserted: Vec<Value> = journal
        .iter()
        .filter(|r| r.step_id.ends_with("/insert"))
        .map(|r| match &r.output {
            stockade_store::StepOutput::Json(v) => v["count"].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(inserted, vec![json!(100), json!(50)]);
    let top = output(journal, "top");
    let qtys: Vec<i64> = top["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["qty"].as_i64().unwrap())
        .collect();
    assert_eq!(qtys, vec![150, 149, 148, 147, 146], "{top}");
    assert_eq!(top["page_info"]["totalRows"], json!(10), "{top}");
    assert_eq!(output(journal, "fix"), json!({ "count": 1 }));
    assert_eq!(output(journal, "drop"), json!({ "count": 4 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nocodb_steps_against_a_real_nocodb() {
    let Some(dir) = installed() else {
        let how = "run ./scripts/test --setup-only, which installs NocoDB 0.301.3 once with \
                   tools/nocodb/install.sh (Node 20+ and npm, about 4 min) into \
                   ~/.cache/stockade/nocodb-0.301.3, or set STOCKADE_TEST_NOCODB_DIR";
        assert!(
            !stockade_testkit::require_all(),
            "real NocoDB not installed and CI / STOCKADE_REQUIRE_ALL forbid skipping it: {how}"
        );
        stockade_testkit::skipped(&format!("real NocoDB not installed ({how})"));
        return;
    };
    let started = Instant::now();
    let mut noco = Noco::start(&dir);
    noco.ready().await;
    let boot = started.elapsed();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], noco.port));
    let proxy = TlsProxy::start(upstream).await.expect("TLS terminator");
    let authority = proxy.base_url.trim_start_matches("https://").to_owned();
    let gateway_for = |store| {
        let mut cfg = EgressConfig::new(Environment::Dev);
        cfg.allowed_hosts = vec![authority.clone()];
        cfg.extra_root_pems = vec![proxy.ca_pem.clone()];
        cfg.request_timeout = Duration::from_secs(30);
        Gateway::new(cfg, store).expect("gateway")
    };
    let setup = gateway_for(None);
    let (token, table) = set_up(&setup, &proxy.base_url, &authority).await;

    simulator_answers_like_nocodb((&setup, &authority, &proxy.base_url), &token, &table).await;

    let env = Env::new(Backend::Sqlite).await.expect("a store");
    let vault = open_vault(&env).await;
    put_credential(&vault, "noco", &token, &["*"], &["127.0.0.1"]).await;
    put_credential(
        &vault,
        "noco-bad",
        "0123456789abcdefghij0123456789abcdefghij",
        &["*"],
        &["127.0.0.1"],
    )
    .await;
    let url = proxy.base_url.clone();
    let wfs = [
        mirror(&url, &table),
        single("badtoken", "nocodb.list", &url, "noco-bad", &table, ""),
        single("notable", "nocodb.list", &url, "noco", "mNoSuchTbl", ""),
    ];
    let refs: Vec<&str> = wfs.iter().map(String::as_str).collect();
    let exec = Executor::new(env.store.clone(), catalog(&refs))
        .with_services(gateway_for(Some(env.store.clone())), vault);

    let rows: Vec<Value> = (1..=150)
        .map(|i| json!({ "sku": format!("SKU-{i:03}"), "qty": i, "status": "new" }))
        .collect();
    let batches = json!([rows[..100], rows[100..]]);
    let run_started = Instant::now();
    let (id, outcome) = run(&env, &exec, "mirror", json!({ "batches": batches })).await;
    let ran = run_started.elapsed();
    assert_eq!(outcome, RunOutcome::Succeeded, "{}", noco.log_tail());
    let journal = env.store.journal(&id).await.unwrap();
    check_journal(&journal);

    // What NocoDB now holds, read back directly.
    let list = |q: &str| {
        Request::new(
            Method::GET,
            format!("{url}/api/v2/tables/{table}/records{q}"),
            "/check",
            "nocodb.check",
        )
        .header_named("xc-token", token.clone())
    };
    let all = call(&setup, &authority, list("?limit=1000&fields=qty")).await;
    assert_eq!(
        all["pageInfo"]["totalRows"],
        json!(146),
        "{}",
        all["pageInfo"]
    );
    let top_row = call(&setup, &authority, list("?where=(qty,eq,150)")).await;
    assert_eq!(top_row["list"][0]["status"], json!("checked"), "{top_row}");

    // A token NocoDB does not know: a clear, permanent failure naming the credential.
    let f = failure(run(&env, &exec, "badtoken", json!({})).await.1);
    assert_eq!(
        (f.class.as_str(), f.status),
        ("http", Some(401)),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains("the API token in credential noco-bad was refused"),
        "{}",
        f.message
    );
    let f = failure(run(&env, &exec, "notable", json!({})).await.1);
    assert_eq!(
        (f.class.as_str(), f.status),
        ("http", Some(404)),
        "{}",
        f.message
    );
    assert!(f.message.contains("table was not found"), "{}", f.message);
    for sql in [
        "SELECT COALESCE(output, '') || COALESCE(error, '') FROM job_steps",
        "SELECT action || details FROM audit",
    ] {
        let rows: Vec<(String,)> = env.store.query_as(sql, vec![]).await.unwrap();
        assert!(
            rows.iter().all(|(t,)| !t.contains(&token)),
            "{sql}: the token was persisted"
        );
    }
    eprintln!(
        "real NocoDB {VERSION}: ready in {:.1} s, the 150-row workflow ran in {:.2} s, whole test {:.1} s",
        boot.as_secs_f64(),
        ran.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    proxy.shutdown().await;
    env.cleanup().await;
    drop(noco);
}
