//! A running server with a fresh database, an Access service, an optional hook sink, and
//! the log lines the server wrote during the test.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stockade_access::ban::BanPolicy;
use stockade_access::{Access, AccessConfig};
use stockade_core::{Actor, Environment};
use stockade_marketplaces::HookSink;
use stockade_server::workflow_hooks::WorkflowHooks;
use stockade_server::{AppState, ServeOptions, tls};
use stockade_store::{Store, StoreOptions};
use stockade_vault::{MasterKeySource, MasterKeys, Vault};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

use stockade_testkit::Db;
pub use stockade_testkit::{random_hex, require_tool};

/// Log lines written while a test runs (the test's runtime is single-threaded, so the
/// thread's default subscriber sees the server's tasks).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub struct Options {
    pub backend: Backend,
    pub hooks: Option<Arc<dyn HookSink>>,
    pub tls: bool,
    pub maxretry: u32,
    pub env: Environment,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Sqlite,
            hooks: None,
            tls: true,
            maxretry: 5,
            env: Environment::Dev,
        }
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub access: Arc<Access>,
    pub vault: Arc<Vault>,
    pub logs: Logs,
    dir: PathBuf,
    pg: Option<(String, String)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _log_guard: tracing::subscriber::DefaultGuard,
}

impl TestServer {
    /// `None` (with a message) for the PostgreSQL backend when it is not configured.
    pub async fn spawn(options: Options) -> Option<TestServer> {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_target(false)
            .finish();
        let log_guard = tracing::subscriber::set_default(subscriber);

        let db = match options.backend {
            Backend::Sqlite => Db::sqlite(),
            Backend::Postgres => Db::postgres()?,
        };
        let (dir, url) = (db.dir.clone(), db.url.clone());
        let (store, _) = Store::init(&url, options.env, &StoreOptions::default())
            .await
            .unwrap();
        let master = MasterKeys::generate(options.env, MasterKeySource::EnvVar).unwrap();
        let vault = Vault::bootstrap(store, master, &Actor::System("test"))
            .await
            .unwrap();
        let config = AccessConfig {
            ban: BanPolicy {
                maxretry: options.maxretry,
                ..BanPolicy::default()
            },
            webhook_ban: BanPolicy {
                maxretry: options.maxretry,
                ..BanPolicy::webhook_default()
            },
            ..AccessConfig::default()
        };
        let vault = Arc::new(vault);
        let access = Arc::new(Access::new(vault.clone(), config).await.unwrap());

        let tls_config = if options.tls {
            let dev = tls::development_cert(&dir.join("tls"), None).unwrap();
            Some(tls::server_config(&dev.cert, &dev.key).unwrap())
        } else {
            None
        };
        let state = AppState {
            access: Arc::clone(&access),
            // Requests name their client in X-Forwarded-For, so each test uses documentation
            // addresses of its own (and no ignore list spares them).
            trust_forwarded_for: true,
            plain_http: !options.tls,
            hooks: options.hooks,
            workflows: Some(Arc::new(WorkflowHooks::new(vault.clone()))),
            console: Default::default(),
            metrics: Some(Arc::new(FixedMetrics)),
            alert_test: None,
            hook_stats: Default::default(),
            live_cache: Default::default(),
            compliance_page: Default::default(),
            channels: None,
            compliance: None,
        };
        let serve_options = ServeOptions {
            health_only: false,
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: tls_config,
            ban_refresh: Duration::from_secs(60),
        };
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(stockade_server::serve(
            state,
            serve_options,
            bound_tx,
            async move {
                let _ = shutdown_rx.await;
            },
        ));
        let addr = bound_rx.await.unwrap();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        let (base, client) = if options.tls {
            let ca = std::fs::read(dir.join("tls/dev-ca.pem")).unwrap();
            let ca = reqwest::Certificate::from_pem(&ca).unwrap();
            (
                format!("https://{addr}"),
                client.tls_certs_only([ca]).build().unwrap(),
            )
        } else {
            (format!("http://{addr}"), client.build().unwrap())
        };
        Some(TestServer {
            addr,
            base,
            client,
            access,
            vault,
            logs,
            dir,
            pg: db.pg,
            shutdown: Some(shutdown_tx),
            _log_guard: log_guard,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The PostgreSQL database URL (with its schema) when the server runs on one, so a
    /// test can open a second store there as another process would.
    pub fn pg_url(&self) -> Option<stockade_store::DatabaseUrl> {
        self.pg
            .as_ref()
            .map(|(url, schema)| stockade_store::DatabaseUrl::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
            })
    }

    /// Stop the server and remove its database.
    pub async fn cleanup(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((url, schema)) = self.pg.take() {
            stockade_store::testing::drop_postgres_schema(&url, &schema).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `/metrics` source with one fixed sample, so the gate can be tested without the app.
pub struct FixedMetrics;

pub const FIXED_METRICS: &str = "# HELP t_up Up.\n# TYPE t_up gauge\nt_up 1\n# EOF\n";

impl stockade_server::MetricsSource for FixedMetrics {
    fn render(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>
    {
        Box::pin(async { Ok(FIXED_METRICS.to_owned()) })
    }
}
