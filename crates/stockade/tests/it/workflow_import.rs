//! `stockade workflow import-n8n` end to end: files written all or nothing (never over an
//! existing one without --force), the report on standard error, lint run on the result
//! (exit 3 with problems, 0 without), a refused export writing nothing. No database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "stockade-n8n-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stockade-n8n/tests/fixtures/n8n")
        .join(name)
        .display()
        .to_string()
}

fn stockade(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn an_export_is_written_reported_and_linted_and_never_overwritten_without_force() {
    let dir = scratch("seller");
    let export = fixture("seller-order-sync.json");
    let out = stockade(&dir.0, &["workflow", "import-n8n", &export, "--out", "wf"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for f in [
        "tiktok-order-sync.yaml",
        "order-sync-errors.yaml",
        "hourly-stock-check.yaml",
    ] {
        assert!(dir.0.join("wf").join(f).is_file(), "{f}");
    }
    assert!(
        err.contains("[converted] Order Lines (n8n-nodes-base.code) → step `order_lines`"),
        "{err}"
    );
    assert!(err.contains("stockade credential set wms-api --workflow tiktok-order-sync"));
    assert!(err.contains("unsupported-node"));
    assert!(err.contains("lint found"));
    assert!(
        !err.contains("wms_live_") && !err.contains("ghp_"),
        "no secret from the export is printed"
    );

    // A second import refuses: nothing is written, not even the files that do not exist.
    let kept = dir.0.join("wf/tiktok-order-sync.yaml");
    std::fs::write(&kept, "edited by hand\n").unwrap();
    std::fs::remove_file(dir.0.join("wf/order-sync-errors.yaml")).unwrap();
    let out = stockade(&dir.0, &["workflow", "import-n8n", &export, "--out", "wf"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "edited by hand\n");
    assert!(!dir.0.join("wf/order-sync-errors.yaml").exists());

    let out = stockade(
        &dir.0,
        &["workflow", "import-n8n", &export, "--out", "wf", "--force"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        std::fs::read_to_string(&kept)
            .unwrap()
            .contains("name: tiktok-order-sync")
    );
    assert!(dir.0.join("wf/order-sync-errors.yaml").is_file());
}

#[test]
fn without_out_the_yaml_goes_to_stdout_and_a_clean_result_exits_0() {
    let dir = scratch("stdout");
    let out = stockade(
        &dir.0,
        &[
            "workflow",
            "import-n8n",
            &fixture("mrumpold-weather-api-1.json"),
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("name: weather-api-1") && stdout.contains("uses: http.request"));
    assert!(
        stderr.contains("3 converted, 0 need review, 0 unsupported, 3 left out"),
        "{stderr}"
    );
    assert!(stderr.contains("lint: no problems"));
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn an_export_that_is_not_n8n_writes_nothing() {
    let dir = scratch("bad");
    std::fs::write(dir.0.join("x.json"), "{\"workflows\": []}").unwrap();
    let out = stockade(&dir.0, &["workflow", "import-n8n", "x.json", "--out", "wf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not an n8n workflow export"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.0.join("wf").exists());
    std::fs::write(dir.0.join("y.json"), "name: yaml").unwrap();
    let out = stockade(&dir.0, &["workflow", "import-n8n", "y.json", "--out", "wf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not JSON"));
    assert!(!dir.0.join("wf").exists());
}
