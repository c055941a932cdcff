//! `TestApp`: the application `stockade serve` runs, built by `App::build` on 127.0.0.1
//! port 0 in a fresh database, wired to the marketplace simulators (one connection per
//! marketplace, every listing in the catalog with 100 on hand and a buffer of 2, the
//! simulators delivering signed webhooks to its routes). The server is the webhook
//! receiver: no hand-built one. The connectors' gateway retries fast (20–200 ms, 6
//! attempts) so fault tests stay short.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockade_app::sandbox::{SandboxApp, catalog_csv, launch};
use stockade_app::{App, AppError, Gateway};
use stockade_sandbox::{Sandbox, SandboxConfig};
use stockade_store::Store;
use stockade_sync::{SyncEngine, SyncOptions};
use stockade_vault::Vault;

use crate::Db;

#[derive(Debug)]
pub struct TestApp {
    pub sb: Sandbox,
    pub db: Db,
    pub addr: SocketAddr,
    /// `https://ADDR/hooks`: a connection's URL is `HOOK_BASE/MARKETPLACE/NAME`.
    pub hook_base: String,
    pub vault: Arc<Vault>,
    pub gateway: Gateway,
    pub sync: SyncEngine,
    app: Option<App>,
}

fn fast_retries(c: &mut stockade_app::EgressConfig) {
    c.max_attempts = 6;
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
}

impl TestApp {
    /// Start the simulators, then the application on `db` with `sync` options, and wait
    /// until the simulators' first deliveries (eBay's endpoint challenge) are done.
    pub async fn start(db: Db, sandbox: SandboxConfig, sync: SyncOptions) -> TestApp {
        Self::start_limited(db, sandbox, sync, false).await
    }

    /// [`TestApp::start`] with the connectors' own rate limits and daily caps in force
    /// (`realistic`), as a seller runs them; the egress gateway's per-host limits stay
    /// lifted.
    pub async fn start_limited(
        db: Db,
        sandbox: SandboxConfig,
        sync: SyncOptions,
        realistic: bool,
    ) -> TestApp {
        let sb = Sandbox::start(sandbox).await.unwrap();
        let app = launch(
            &sb,
            &db.dir,
            db.url.clone(),
            SandboxApp {
                sync,
                realistic_limits: realistic,
                catalog: Some(catalog_csv(&sb, 100, 2, None, 0)),
                hooks: None,
                tune_egress: Some(fast_retries),
            },
        )
        .await
        .unwrap();
        sb.flush_deliveries().await;
        TestApp {
            sb,
            db,
            addr: app.addr(),
            hook_base: format!("{}/hooks", app.base_url()),
            vault: app.vault().clone(),
            gateway: app.gateway().clone(),
            sync: app.sync().clone(),
            app: Some(app),
        }
    }

    pub fn store(&self) -> &Store {
        self.vault.store()
    }

    /// Stop the application as `serve` does on SIGTERM; how long the stop took.
    pub async fn stop(&mut self) -> (Result<(), AppError>, Duration) {
        let app = self.app.take().expect("the application was stopped");
        let started = Instant::now();
        let result = app.run_until_stopped(std::future::ready(())).await;
        (result, started.elapsed())
    }

    /// Stop everything (requests in flight get 2 s) and remove the database.
    pub async fn finish(mut self) {
        if let Some(app) = self.app.take() {
            let _ = app
                .run_until_stopped_within(std::future::ready(()), Duration::from_secs(2))
                .await;
        }
        self.sb.shutdown().await;
        drop((self.gateway, self.sync));
        if let Ok(v) = Arc::try_unwrap(self.vault) {
            v.close().await;
        }
        self.db.cleanup().await;
    }

    /// Wait until every listing's newest target is confirmed.
    pub async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        self.sb.flush_deliveries().await;
        loop {
            self.sync.wake_pushers();
            if self.sync.settled().await.unwrap() {
                return;
            }
            assert!(Instant::now() < deadline, "listings did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The one integer a query returns (a count).
    pub async fn count(&self, sql: &'static str) -> i64 {
        self.store().count(sql, vec![]).await.unwrap()
    }
}
