//! `stockade workflow lint` end to end: the shipped examples pass, problems print as
//! `FILE:LINE:COL RULE MESSAGE` with exit 3, an unreadable file exits 2, and `--env prod`
//! requires an on_error. No database is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn scratch(name: &str) -> Scratch {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("stockade-wf-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
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

fn examples() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_examples_lint_clean_even_for_prod() {
    let dir = scratch("clean");
    let files = examples();
    let mut args = vec!["--env", "prod", "workflow", "lint"];
    args.extend(files.iter().map(String::as_str));
    let out = stockade(&dir, &args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no problems"));
}

#[test]
fn problems_are_printed_with_file_line_column_and_rule_and_exit_3() {
    let dir = scratch("bad");
    std::fs::write(
        dir.join("bad.yaml"),
        "name: bad\ntrigger: { schedule: { cron: \"0 0 31 2 *\" } }\nsteps:\n  - id: a\n    uses: shell.exec\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("ok.yaml"),
        "name: ok\ntrigger: manual\nsteps: [{ id: a, uses: fail, with: { message: m } }]\n",
    )
    .unwrap();
    let out = stockade(&dir, &["workflow", "lint", "bad.yaml", "ok.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("bad.yaml:2:30 schedule `0 0 31 2 *` never fires"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("bad.yaml:5:11 unknown-step "),
        "{stdout}"
    );
    // The same manual workflow passes in dev but needs on_error in prod.
    let out = stockade(&dir, &["workflow", "lint", "ok.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let out = stockade(&dir, &["--env", "prod", "workflow", "lint", "ok.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok.yaml:1:7 missing-on-error "));
}

#[test]
fn an_unreadable_file_exits_2_and_the_others_are_still_linted() {
    let dir = scratch("missing");
    std::fs::write(
        dir.join("bad.yaml"),
        "name: bad\ntrigger: manual\nsteps: [{ id: a, uses: nope }]\n",
    )
    .unwrap();
    let out = stockade(&dir, &["workflow", "lint", "bad.yaml", "absent.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.yaml: cannot read"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad.yaml:3:24 unknown-step"));
}

#[test]
fn the_schema_command_prints_the_shipped_schema() {
    let dir = scratch("schema");
    let out = stockade(&dir, &["workflow", "schema"]);
    assert_eq!(out.status.code(), Some(0));
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/workflow.schema.json"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), shipped);
}

#[test]
fn help_describes_the_workflow_commands() {
    let dir = scratch("help");
    let top = String::from_utf8_lossy(&stockade(&dir, &["--help"]).stdout).into_owned();
    assert!(top.contains("workflow"), "{top}");
    let out = stockade(&dir, &["workflow", "lint", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("FILE:LINE:COL RULE MESSAGE") && help.contains("exit 3"),
        "{help}"
    );
    let out = stockade(&dir, &["workflow", "lint"]);
    assert_eq!(out.status.code(), Some(2), "a FILE is required");
}
