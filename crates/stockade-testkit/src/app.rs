//! `TestApp`: the application `stockade serve` runs, built by `App::build` on 127.0.0.1
//! port 0 in a fresh database, wired to the marketplace simulators (one connection per
//! marketplace, every listing in the catalog, the simulators delivering signed webhooks
//! to its routes). The server is the webhook receiver: no hand-built one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stockade_app::sandbox::{SandboxApp, catalog_csv, launch};
use stockade_app::{App, AppError};
use stockade_sandbox::{Sandbox, SandboxConfig};

use crate::Db;

#[derive(Debug)]
pub struct TestApp {
    pub sb: Sandbox,
    pub db: Db,
    pub addr: SocketAddr,
    app: Option<App>,
}

impl TestApp {
    /// Start the simulators, then the application on `db` with `sync` options; the
    /// catalog holds every simulator listing with `on_hand` units.
    pub async fn spawn(
        db: Db,
        sandbox: SandboxConfig,
        sync: stockade_sync::SyncOptions,
        on_hand: i64,
    ) -> TestApp {
        let sb = Sandbox::start(sandbox).await.unwrap();
        let app = launch(
            &sb,
            &db.dir,
            db.url.clone(),
            SandboxApp {
                sync,
                realistic_limits: false,
                catalog: Some(catalog_csv(&sb, on_hand, 0, 0)),
                hooks: None,
            },
        )
        .await
        .unwrap();
        TestApp {
            sb,
            db,
            addr: app.addr(),
            app: Some(app),
        }
    }

    /// The running application (until [`TestApp::stop`]).
    pub fn app(&self) -> &App {
        self.app.as_ref().expect("the application was stopped")
    }

    /// Stop the application as `serve` does on SIGTERM; how long the stop took.
    pub async fn stop(&mut self) -> (Result<(), AppError>, Duration) {
        let app = self.app.take().expect("the application was stopped");
        let started = Instant::now();
        let result = app.run_until_stopped(std::future::ready(())).await;
        (result, started.elapsed())
    }

    /// Stop everything and remove the database.
    pub async fn cleanup(mut self) {
        if self.app.is_some() {
            let _ = self.stop().await;
        }
        self.sb.shutdown().await;
        self.db.cleanup().await;
    }
}
