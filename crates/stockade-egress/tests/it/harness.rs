//! A test PKI, an HTTPS test server with scripted routes, and fresh databases.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use stockade_core::Environment;
use stockade_egress::{EgressConfig, Gateway};
use stockade_store::{DatabaseUrl, Store, StoreOptions};

pub use stockade_testkit::random_hex as unique;

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM, also on disk.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "egress test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "egress test server");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let dir = std::env::temp_dir().join(format!("stockade-egress-test-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            ca_pem: ca.pem(),
            cert_pem: format!("{}{}", cert.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
            dir,
        };
        std::fs::write(pki.dir.join("cert.pem"), &pki.cert_pem).unwrap();
        std::fs::write(pki.dir.join("key.pem"), &pki.key_pem).unwrap();
        pki
    }

    pub fn server_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ServerConfig> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub struct ServerState {
    hits: Mutex<Vec<Hit>>,
    counters: Mutex<HashMap<String, u32>>,
}

/// An HTTPS server on an ephemeral loopback port. Routes (any method):
/// `/ok` → 200 `{"ok":true}`; `/status/{code}[/…]` → that status;
/// `/throttle/{n}[/…]` → 429 `Retry-After: 1` for the first n hits of that path, then 200;
/// `/big/{n}` → n bytes; `/slow` → 200 after 2 s.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    handle: axum_server::Handle<SocketAddr>,
    _pki: Arc<Pki>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl TestServer {
    pub async fn start(pki: Arc<Pki>) -> TestServer {
        Self::start_with(pki, &[&rustls::version::TLS13, &rustls::version::TLS12]).await
    }

    pub async fn start_with(
        pki: Arc<Pki>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TestServer {
        let state = Arc::new(ServerState::default());
        let app = axum::Router::new()
            .fallback(handler)
            .with_state(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let config =
            axum_server::tls_rustls::RustlsConfig::from_config(pki.server_config(versions));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, config)
            .unwrap()
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        TestServer {
            addr,
            state,
            handle,
            _pki: pki,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.addr.port(), path)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn hits_on(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.path == path).count()
    }
}

async fn handler(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    let path = uri.path().to_owned();
    state.hits.lock().unwrap().push(Hit {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
    });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let reply = |status: u16, body: Body| {
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    };
    match parts.as_slice() {
        ["ok", ..] => reply(200, Body::from(r#"{"ok":true}"#)),
        ["html", ..] => reply(
            200,
            Body::from("<html><body>Service Unavailable</body></html>"),
        ),
        ["status", code, ..] => reply(code.parse().unwrap(), Body::from(r#"{"error":"scripted"}"#)),
        ["throttle", n, ..] => {
            let n: u32 = n.parse().unwrap();
            let seen = {
                let mut c = state.counters.lock().unwrap();
                let e = c.entry(path.clone()).or_insert(0);
                *e += 1;
                *e
            };
            if seen <= n {
                Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .body(Body::from(r#"{"errors":[{"code":"QuotaExceeded"}]}"#))
                    .unwrap()
            } else {
                reply(200, Body::from(r#"{"ok":true}"#))
            }
        }
        ["big", n] => reply(200, Body::from(vec![b'x'; n.parse::<usize>().unwrap()])),
        ["redirect"] => Response::builder()
            .status(302)
            .header("location", "/ok")
            .body(Body::empty())
            .unwrap(),
        ["slow"] => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            reply(200, Body::from("{}"))
        }
        _ => reply(404, Body::from("{}")),
    }
}

/// A config for tests: dev, trusting the test CA, allowing `hosts`, fast backoff.
pub fn config(pki: &Pki, hosts: &[String]) -> EgressConfig {
    let mut c = EgressConfig::new(Environment::Dev);
    c.allowed_hosts = hosts.to_vec();
    c.extra_root_pems = vec![pki.ca_pem.clone()];
    c.backoff_base = Duration::from_millis(5);
    c.backoff_max = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(10);
    c
}

pub fn gateway(c: EgressConfig) -> Gateway {
    Gateway::new(c, None).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database, removed by `cleanup`.
pub struct TestDb {
    pub url: DatabaseUrl,
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// `None` (with a message) when PostgreSQL is not configured.
    pub fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("stockade-egress-db-{}", unique()));
                std::fs::create_dir_all(&dir).unwrap();
                Some(TestDb {
                    url: DatabaseUrl::Sqlite(dir.join("stockade.db")),
                    dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let url = stockade_testkit::pg_or_skip()?;
                let schema = format!("t_egress_{}", unique());
                Some(TestDb {
                    url: DatabaseUrl::Postgres {
                        url: url.clone(),
                        schema: Some(schema.clone()),
                    },
                    dir: None,
                    pg: Some((url, schema)),
                })
            }
        }
    }

    pub async fn init(&self) -> Store {
        Store::init(&self.url, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap()
            .0
    }

    /// The SQLite database file and its write-ahead log, as bytes.
    pub fn sqlite_bytes(&self) -> Option<Vec<u8>> {
        let DatabaseUrl::Sqlite(path) = &self.url else {
            return None;
        };
        let mut bytes = std::fs::read(path).unwrap();
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        if let Ok(w) = std::fs::read(PathBuf::from(wal)) {
            bytes.extend(w);
        }
        Some(bytes)
    }

    pub async fn cleanup(self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((url, schema)) = &self.pg {
            stockade_store::testing::drop_postgres_schema(url, schema).await;
        }
    }
}

/// Declare a test that runs on both backends: `both!(name)` with `async fn name(Backend)`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::harness::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use both;

/// Whether the external `tool` is on the PATH. Without it this prints one SKIPPED line
/// (straight to stderr, so it shows even when test output is captured) and the caller
/// skips what needs the tool, except under CI (`CI` or `STOCKADE_REQUIRE_ALL` set, as
/// `./scripts/test` does once it has installed everything), where it fails.
pub fn require_tool(tool: &str, package: &str, what: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if found {
        return true;
    }
    let strict = ["CI", "STOCKADE_REQUIRE_ALL"].iter().any(|v| {
        std::env::var(v)
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    });
    assert!(
        !strict,
        "`{tool}` is not installed and CI / STOCKADE_REQUIRE_ALL forbid skipping {what}: install the Debian package `{package}` (./scripts/test does)"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {what}: `{tool}` is not installed (Debian package `{package}`; ./scripts/test installs it)"
    );
    false
}
