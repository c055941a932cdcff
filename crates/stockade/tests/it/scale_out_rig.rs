//! The scale-out tests' rig, written once: a data directory on a PostgreSQL schema, the
//! simulators (in their own process) delivering signed webhooks to the first node's
//! port, the receivers of the per-second scheduled workflow and its alerts
//! ([`Once`]), the three connections and the catalog; and [`start_node`], one `stockade
//! serve` of a role. The tests start the nodes themselves.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::Sandbox;
use crate::market_run::{connect_and_import, spawn_markets, write_config};
use crate::scale_out_once::Once;
use crate::sync::{Admin, Proc, SandboxInfo, free_port, read_until, spawn_env};

/// `stockade serve --role ROLE --listen 127.0.0.1:PORT`, once it prints its address.
pub(crate) fn start_node(sb: &Sandbox, port: u16, name: &str, role: &str) -> Proc {
    start_node_env(sb, port, name, role, &[])
}

/// [`start_node`] with `extra` variables in the process's environment.
pub(crate) fn start_node_env(
    sb: &Sandbox,
    port: u16,
    name: &str,
    role: &str,
    extra: &[(&str, &str)],
) -> Proc {
    let log = sb.dir.join(format!("serve-{name}.log"));
    let listen = format!("127.0.0.1:{port}");
    let data = sb.data();
    let (proc, rx) = spawn_env(
        sb,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--role",
            role,
            "--listen",
            &listen,
        ],
        &log,
        extra,
    );
    if read_until(&rx, Duration::from_secs(30), |l| {
        l.starts_with("listening on ")
    })
    .is_none()
    {
        panic!("serve {name} did not start:\n{}", proc.log_tail());
    }
    proc
}

/// A data directory set up for several nodes (none running).
pub(crate) struct Rig {
    /// The simulators' process (first: stopped before the directory goes).
    pub(crate) _sandbox: Proc,
    pub(crate) sb: Sandbox,
    /// A port per node; the simulators deliver webhooks to the first.
    pub(crate) ports: Vec<u16>,
    /// `https://127.0.0.1:PORTS[0]/hooks`.
    pub(crate) hook_base: String,
    /// The development CA the nodes serve with.
    pub(crate) server_ca: PathBuf,
    pub(crate) info: SandboxInfo,
    pub(crate) admin: Admin,
    pub(crate) once: Once,
}

impl Rig {
    /// Set up a data directory on `url` for `nodes` processes: simulators with no rate
    /// limits (seed 43, 12 SKUs), a 3 s poll, the per-second workflow and its alert
    /// channel, the connections and the catalog.
    pub(crate) async fn start(url: &str, nodes: usize) -> Rig {
        let sb = Sandbox::new().with("STOCKADE_DATABASE_URL", url);
        sb.run(&["init", "--env", "dev"]).expect_code(0);
        let ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let hook_base = format!("https://127.0.0.1:{}/hooks", ports[0]);

        // A first start creates the development CA the sandbox must trust.
        // Stopped as an operator would: a killed process would hold the alert router's lease
        // until it expires.
        start_node(&sb, ports[0], "first", "all").stop();
        let server_ca = sb.data().join("tls/dev-ca.pem");
        let (sandbox, info, admin) = spawn_markets(&sb, 43, 12, &hook_base);
        // The receivers of the workflow's requests and of the alerts.
        let once = Once::start(&sb).await;
        write_config(&sb, &info, &[once.host()], &[once.ca()], &once.config());
        once.setup(&sb);
        connect_and_import(&sb, &info, &admin, &hook_base).await;
        Rig {
            sb,
            ports,
            hook_base,
            server_ca,
            info,
            admin,
            once,
            _sandbox: sandbox,
        }
    }

    /// A simulator's base URL.
    pub(crate) fn base(&self, name: &str) -> String {
        self.info.m(name).base.clone()
    }
}

/// Wait (30 s) until the database on `url` holds every order in `orders` (marketplace,
/// order id), each once, and none the simulators do not have.
pub(crate) async fn orders_stored_once(
    url: &str,
    orders: &HashSet<(String, String)>,
    logs: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored: Vec<(String, String)> = crate::scale_out::rows(
            url,
            "SELECT c.name, o.external_id FROM orders o JOIN connections c ON c.id = o.connection_id",
        )
        .await;
        let set: HashSet<(String, String)> = stored.iter().cloned().collect();
        assert_eq!(set.len(), stored.len(), "an order is stored twice");
        assert!(
            set.is_subset(orders),
            "stored orders the sandbox does not have"
        );
        if set == *orders {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} orders not stored\n{}",
            orders.len() - set.len(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
