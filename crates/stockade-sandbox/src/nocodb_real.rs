//! A REAL NocoDB 0.301.3 for integration tests and `stockade bench mirror`: found where
//! `./scripts/test` installs it (`STOCKADE_TEST_NOCODB_DIR`, else
//! `$XDG_CACHE_HOME|~/.cache/stockade/nocodb-0.301.3`), started with `node start.js` on a
//! free loopback port with its own SQLite metadata in a temporary directory, behind a
//! [`TlsProxy`] (egress is HTTPS only), and set up through its REST API (sign in, an API
//! token, a base).
//!
//! Invariants: the node process and its data directory go when [`RealNoco`] is dropped
//! (panics included); [`RealNoco::kill`] stops the process abruptly (SIGKILL) and
//! [`RealNoco::restart`] brings it back on the same port and data, so a test can take
//! NocoDB away for a while.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_core::Environment;
use stockade_egress::{Caller, EgressConfig, Gateway, Method, Request};

use crate::SandboxError;
use crate::tlsproxy::TlsProxy;

pub const NOCODB_VERSION: &str = "0.301.3";
const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "Passw0rd!Test123";

/// The installed NocoDB's directory, if there is one.
pub fn installed_nocodb() -> Option<PathBuf> {
    let dir = match std::env::var_os("STOCKADE_TEST_NOCODB_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache
                .join("stockade")
                .join(format!("nocodb-{NOCODB_VERSION}"))
        }
    };
    (dir.join(".stockade-installed").is_file() && dir.join("start.js").is_file()).then_some(dir)
}

/// A running NocoDB behind a loopback TLS terminator.
pub struct RealNoco {
    dir: PathBuf,
    child: Option<Child>,
    pub data: PathBuf,
    pub port: u16,
    pub proxy: TlsProxy,
    secret: String,
}

impl std::fmt::Debug for RealNoco {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNoco")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for RealNoco {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

fn err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Bind(format!("real NocoDB: {e}"))
}

impl RealNoco {
    /// Start NocoDB from its install `dir` and wait until it answers (up to 90 s).
    pub async fn start(dir: &Path) -> Result<RealNoco, SandboxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(err)?
            .port();
        let data = std::env::temp_dir().join(format!("stockade-nocodb-{}", unique()));
        std::fs::create_dir_all(&data).map_err(err)?;
        let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let proxy = TlsProxy::start(upstream).await?;
        let mut noco = RealNoco {
            dir: dir.to_path_buf(),
            child: None,
            data,
            port,
            proxy,
            secret: unique(),
        };
        noco.spawn()?;
        noco.ready().await?;
        Ok(noco)
    }

    fn spawn(&mut self) -> Result<(), SandboxError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("nocodb.log"))
            .map_err(err)?;
        let child = Command::new("node")
            .arg("start.js")
            .current_dir(&self.dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env(
                "NC_DB",
                format!(
                    "sqlite3://?database={}",
                    self.data.join("noco.db").display()
                ),
            )
            .env("NC_TOOL_DIR", &self.data)
            .env("NC_DISABLE_TELE", "true")
            .env("NC_DISABLE_ERR_REPORTS", "true")
            .env("NC_DISABLE_SUPPORT_CHAT", "true")
            .env("NC_AUTH_JWT_SECRET", &self.secret)
            .env("NC_ADMIN_EMAIL", EMAIL)
            .env("NC_ADMIN_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(err)?)
            .stderr(log)
            .spawn()
            .map_err(|e| err(format!("cannot run node start.js: {e}")))?;
        self.child = Some(child);
        Ok(())
    }

    /// The last 3000 characters of NocoDB's log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.data.join("nocodb.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(3000);
        text.get(start..).unwrap_or("").to_owned()
    }

    /// Wait (up to 90 s) until `GET /api/v1/health` answers 200 over plain loopback HTTP.
    async fn ready(&mut self) -> Result<(), SandboxError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(err(format!(
                    "exited ({status}) while starting:\n{}",
                    self.log_tail()
                )));
            }
            if Instant::now() > deadline {
                return Err(err(format!("no answer within 90 s:\n{}", self.log_tail())));
            }
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                let req =
                    "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                let mut got = Vec::new();
                if s.write_all(req.as_bytes()).await.is_ok()
                    && s.read_to_end(&mut got).await.is_ok()
                    && got.starts_with(b"HTTP/1.1 200")
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stop NocoDB abruptly (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start NocoDB again on the same port and data.
    pub async fn restart(&mut self) -> Result<(), SandboxError> {
        self.kill();
        self.spawn()?;
        self.ready().await
    }

    /// `https://127.0.0.1:PORT` of the TLS terminator.
    pub fn base_url(&self) -> &str {
        &self.proxy.base_url
    }

    /// `127.0.0.1:PORT` of the TLS terminator (for the egress allowlist).
    pub fn authority(&self) -> String {
        self.proxy
            .base_url
            .trim_start_matches("https://")
            .to_owned()
    }

    /// A gateway that reaches this NocoDB (and trusts its terminator's CA).
    pub fn gateway(&self) -> Result<Gateway, SandboxError> {
        let mut cfg = EgressConfig::new(Environment::Dev);
        cfg.allowed_hosts = vec![self.authority()];
        cfg.extra_root_pems = vec![self.proxy.ca_pem.clone()];
        Gateway::new(cfg, None).map_err(err)
    }

    /// Sign in, create an API token and a base titled `base`: (token, base id).
    pub async fn set_up(&self, base: &str) -> Result<(String, String), SandboxError> {
        let gateway = self.gateway()?;
        let jwt = self
            .call(
                &gateway,
                "/api/v1/auth/user/signin",
                None,
                json!({"email": EMAIL, "password": PASSWORD}),
            )
            .await?;
        let jwt = jwt["token"]
            .as_str()
            .ok_or_else(|| err("no JWT"))?
            .to_owned();
        let token = self
            .call(
                &gateway,
                "/api/v1/tokens",
                Some(("xc-auth", jwt)),
                json!({"description": "stockade-mirror"}),
            )
            .await?;
        let token = token["token"]
            .as_str()
            .ok_or_else(|| err("no API token"))?
            .to_owned();
        let made = self
            .call(
                &gateway,
                "/api/v2/meta/bases",
                Some(("xc-token", token.clone())),
                json!({"title": base}),
            )
            .await?;
        let base_id = made["id"]
            .as_str()
            .ok_or_else(|| err("no base id"))?
            .to_owned();
        Ok((token, base_id))
    }

    /// One set-up request (a `method` call with a JSON body): its JSON answer.
    pub async fn request(
        &self,
        gateway: &Gateway,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<Value, SandboxError> {
        let client = gateway.client(Caller::System("nocodb-setup"), &[&self.authority()]);
        let mut req = Request::new(
            method,
            format!("{}{path}", self.base_url()),
            "/setup",
            "nocodb.setup",
        )
        .header_named("xc-token", token.to_owned());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = client.send(req).await.map_err(err)?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if !resp.status.is_success() {
            return Err(err(format!("{path}: HTTP {}: {v}", resp.status)));
        }
        Ok(v)
    }

    async fn call(
        &self,
        gateway: &Gateway,
        path: &str,
        header: Option<(&str, String)>,
        body: Value,
    ) -> Result<Value, SandboxError> {
        let client = gateway.client(Caller::System("nocodb-setup"), &[&self.authority()]);
        let mut req = Request::new(
            Method::POST,
            format!("{}{path}", self.base_url()),
            "/setup",
            "nocodb.setup",
        )
        .json(&body);
        if let Some((name, value)) = header {
            req = req.header_named(name, value);
        }
        let resp = client.send(req).await.map_err(err)?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        if !resp.status.is_success() {
            return Err(err(format!("{path}: HTTP {}: {v}", resp.status)));
        }
        Ok(v)
    }
}
