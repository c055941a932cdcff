//! `stockade audit mirror init|status|verify` and the mirror of `stockade serve`, against
//! the sandbox's NocoDB simulator, as an operator follows docs/operations.md: refusals
//! without configuration or credential name their fix; init creates the table, then finds
//! it ready; serve copies the audit log; status works with the server stopped; verify
//! passes, then names a row deleted in NocoDB by hand (exit 3).

use std::time::{Duration, Instant};

use serde_json::json;
use stockade_sandbox::{NocoSim, SIM_BASE_TITLE};

use crate::harness::Sandbox;
use crate::sync::{free_port, read_until, spawn};

const TOKEN: &str = "cli-sim-token-abcdefghijklmnopqrstuvwxyz0";

#[test]
fn audit_mirror_commands_against_the_simulator() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(NocoSim::start(TOKEN)).unwrap();
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let data = s.data();

    let out = s
        .run(&["audit", "mirror", "status"])
        .expect_code(0)
        .stdout();
    assert!(out.contains("no audit mirror is configured"), "{out}");
    let err = s.run(&["audit", "mirror", "init"]).expect_code(2).stderr();
    assert!(err.contains("[audit.mirror.nocodb]"), "{err}");

    let ca = s.dir.join("sim-ca.pem");
    std::fs::write(&ca, &sim.ca_pem).unwrap();
    let toml = format!(
        "[egress]\nextra_root_certs = [{ca:?}]\n\n[audit.mirror.nocodb]\nbase_url = \"{}\"\nbase = \"{SIM_BASE_TITLE}\"\ntoken = \"noco-audit\"\n",
        sim.base_url
    );
    // Appended to the stockade.toml `init` wrote.
    let path = data.join("stockade.toml");
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, format!("{before}\n{toml}")).unwrap();
    let err = s.run(&["audit", "mirror", "init"]).expect_code(2).stderr();
    assert!(
        err.contains("no credential named noco-audit")
            && err.contains("stockade credential set noco-audit"),
        "{err}"
    );
    s.run_with_stdin(
        &data,
        &[
            "credential",
            "set",
            "noco-audit",
            "--workflow",
            "audit-mirror",
            "--host",
            "127.0.0.1",
            "--secret-stdin",
        ],
        Some(TOKEN),
    )
    .expect_code(0);
    let out = s.run(&["audit", "mirror", "init"]).expect_code(0).stdout();
    assert!(out.contains("created NocoDB table audit_mirror"), "{out}");
    let out = s.run(&["audit", "mirror", "init"]).expect_code(0).stdout();
    assert!(out.contains("has every audit column"), "{out}");

    // The server copies the audit log; stopped, status still answers from the database.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data_arg = data.display().to_string();
    let (server, rx) = spawn(
        &s,
        &["--data-dir", &data_arg, "serve", "--listen", &listen],
        &s.dir.join("serve.log"),
    );
    read_until(&rx, Duration::from_secs(30), |l| {
        l.starts_with("listening on ")
    })
    .unwrap_or_else(|| panic!("serve did not start:\n{}", server.log_tail()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = s
            .run(&["audit", "mirror", "status"])
            .expect_code(0)
            .stdout();
        if out.contains("lag 0 rows") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}\n{}", server.log_tail());
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(server);
    let out = s
        .run(&["audit", "mirror", "status"])
        .expect_code(0)
        .stdout();
    assert!(out.starts_with("nocodb: copied up to row "), "{out}");
    let out = s
        .run(&["audit", "mirror", "verify"])
        .expect_code(0)
        .stdout();
    assert!(out.contains("NocoDB matches the audit chain"), "{out}");

    let table = sim.table_id("audit_mirror").unwrap();
    assert_eq!(sim.delete_where(&table, "seq", &json!(3)), 1);
    let err = s
        .run(&["audit", "mirror", "verify"])
        .expect_code(3)
        .stderr();
    assert!(err.contains("row seq 3 is missing from NocoDB"), "{err}");
    assert!(!err.contains(TOKEN));
    rt.block_on(sim.shutdown());
}
