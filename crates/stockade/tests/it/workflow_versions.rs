//! `stockade workflow apply|approve|versions|diff|export|enable|disable|list` end to end:
//! apply twice stores one version, prod waits for a second person, self-approval is
//! refused and writes nothing, a lint failure never runs, export returns the exact bytes,
//! and every change is in the audit log under its actor. SQLite and PostgreSQL.

use crate::harness::{Sandbox, drop_schema, pg_schema_url};
use crate::server::add_user;

/// Comments, trailing spaces and no final newline: export must keep them.
const V1: &str = "# nightly report  \nname: nightly\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"first\" }";
const V2: &str = "# nightly report  \nname: nightly\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"second\" }\n";
const BAD: &str = "name: broken\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: x\n    uses: shell.exec\n";

fn write(s: &Sandbox, name: &str, text: &str) -> String {
    let path = s.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The workflow rows of the audit log as (actor, action) pairs.
fn audit(s: &Sandbox) -> Vec<(String, String)> {
    let out = s
        .run(&["audit", "export", "--format", "jsonl"])
        .expect_code(0)
        .stdout();
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("workflow."))
        })
        .map(|v| {
            (
                v["actor"].as_str().unwrap_or("").to_owned(),
                v["action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// A user's id from `user list`.
fn user_id(s: &Sandbox, email: &str) -> String {
    let list = s.run(&["user", "list"]).expect_code(0).stdout();
    let line = list.lines().find(|l| l.contains(email)).unwrap();
    line.split_whitespace().next().unwrap().to_owned()
}

fn dev_lifecycle(s: &Sandbox) {
    let v1 = write(s, "v1.yaml", V1);
    let out = s.run(&["workflow", "apply", &v1]).expect_code(0);
    assert!(
        out.stderr()
            .contains("nightly version 1 applied and active"),
        "{}",
        out.stderr()
    );
    let out = s.run(&["workflow", "apply", &v1]).expect_code(0);
    assert!(
        out.stderr().contains("unchanged (version 1, active)"),
        "{}",
        out.stderr()
    );
    let versions = s
        .run(&["workflow", "versions", "nightly"])
        .expect_code(0)
        .stdout();
    assert_eq!(
        versions.lines().count(),
        2,
        "one header and one version:\n{versions}"
    );
    assert!(
        versions.contains("active") && versions.contains("system:cli"),
        "{versions}"
    );

    let exported = s.run(&["workflow", "export", "nightly"]).expect_code(0);
    assert_eq!(exported.0.stdout, V1.as_bytes());

    let v2 = write(s, "v2.yaml", V2);
    s.run(&["workflow", "apply", &v2]).expect_code(0);
    let diff = s
        .run(&["workflow", "diff", "nightly", "--from", "1", "--to", "2"])
        .expect_code(0)
        .stdout();
    assert!(diff.contains("-    with: { message: \"first\" }"), "{diff}");
    assert!(
        diff.contains("+    with: { message: \"second\" }"),
        "{diff}"
    );
    assert!(diff.contains(" name: nightly"), "{diff}");
    let old = s
        .run(&["workflow", "export", "nightly", "--version", "1"])
        .expect_code(0);
    assert_eq!(old.0.stdout, V1.as_bytes());
    let versions = s
        .run(&["workflow", "versions", "nightly"])
        .expect_code(0)
        .stdout();
    assert!(versions.contains("superseded"), "{versions}");

    s.run(&["workflow", "disable", "nightly"]).expect_code(0);
    let list = s.run(&["workflow", "list"]).expect_code(0).stdout();
    assert!(
        list.lines()
            .any(|l| l.starts_with("nightly") && l.contains(" no ")),
        "{list}"
    );
    let again = s
        .run(&["workflow", "disable", "nightly"])
        .expect_code(0)
        .stdout();
    assert!(again.contains("already disabled"), "{again}");
    s.run(&["workflow", "enable", "nightly"]).expect_code(0);

    let err = s
        .run(&["workflow", "export", "nope"])
        .expect_code(2)
        .stderr();
    assert!(err.contains("no workflow named \"nope\""), "{err}");
    let cli = "system:cli".to_owned();
    assert_eq!(
        audit(s),
        [
            (cli.clone(), "workflow.apply".to_owned()),
            (cli.clone(), "workflow.apply".to_owned()),
            (cli.clone(), "workflow.disable".to_owned()),
            (cli, "workflow.enable".to_owned()),
        ]
    );
    s.run(&["audit", "verify"]).expect_code(0);
}

#[test]
fn dev_applies_once_diffs_exports_and_toggles() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    dev_lifecycle(&s);
}

#[tokio::test]
async fn dev_lifecycle_on_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    s.run(&["--env", "dev", "init"]).expect_code(0);
    dev_lifecycle(&s);
    drop_schema(&schema).await;
}

#[test]
fn prod_needs_a_second_person_and_refuses_self_approval() {
    let s = Sandbox::new();
    s.run(&["--env", "prod", "init"]).expect_code(0);
    add_user(&s, "ann@example.com", "operator");
    add_user(&s, "bo@example.com", "admin");
    add_user(&s, "vi@example.com", "viewer");
    let (ann, bo) = (
        user_id(&s, "ann@example.com"),
        user_id(&s, "bo@example.com"),
    );
    let v1 = write(&s, "v1.yaml", V1);

    let err = s.run(&["workflow", "apply", &v1]).expect_code(2).stderr();
    assert!(err.contains("--as EMAIL"), "{err}");
    let out = s
        .run(&["workflow", "apply", "--as", "ann@example.com", &v1])
        .expect_code(0);
    assert!(
        out.stderr().contains("pending approval"),
        "{}",
        out.stderr()
    );
    let versions = s
        .run(&["workflow", "versions", "nightly"])
        .expect_code(0)
        .stdout();
    assert!(versions.contains("pending"), "{versions}");
    let before = audit(&s);

    // Four eyes: the author cannot approve; a viewer may not; nothing is written.
    let err = s
        .run(&[
            "workflow",
            "approve",
            "nightly",
            "--version",
            "1",
            "--as",
            "ANN@example.com",
        ])
        .expect_code(2)
        .stderr();
    assert!(
        err.contains("four eyes") && err.contains("Nothing was changed"),
        "{err}"
    );
    let err = s
        .run(&[
            "workflow",
            "approve",
            "nightly",
            "--version",
            "1",
            "--as",
            "vi@example.com",
        ])
        .expect_code(2)
        .stderr();
    assert!(err.contains("may not manage workflows"), "{err}");
    assert_eq!(audit(&s), before);
    let versions = s
        .run(&["workflow", "versions", "nightly"])
        .expect_code(0)
        .stdout();
    assert!(
        versions.contains("pending") && !versions.contains("active"),
        "{versions}"
    );

    let out = s
        .run(&[
            "workflow",
            "approve",
            "nightly",
            "--version",
            "1",
            "--as",
            "bo@example.com",
        ])
        .expect_code(0)
        .stdout();
    assert!(
        out.contains("approved by user:") && out.contains("active"),
        "{out}"
    );
    let versions = s
        .run(&["workflow", "versions", "nightly"])
        .expect_code(0)
        .stdout();
    assert!(
        versions.contains("active") && versions.contains(&format!("user:{bo}")),
        "{versions}"
    );
    assert_eq!(
        audit(&s),
        [
            (format!("user:{ann}"), "workflow.apply".to_owned()),
            (format!("user:{bo}"), "workflow.approve".to_owned()),
        ]
    );

    // A file that fails lint is stored as rejected, exits 3 and can never be approved.
    let bad = write(&s, "bad.yaml", BAD);
    let out = s
        .run(&["workflow", "apply", "--as", "ann@example.com", &bad])
        .expect_code(3);
    assert!(
        out.stdout().contains("bad.yaml:6:11 unknown-step"),
        "{}",
        out.stdout()
    );
    assert!(out.stderr().contains("rejected"), "{}", out.stderr());
    let err = s
        .run(&[
            "workflow",
            "approve",
            "broken",
            "--version",
            "1",
            "--as",
            "bo@example.com",
        ])
        .expect_code(2)
        .stderr();
    assert!(err.contains("is rejected, not pending"), "{err}");
    let list = s.run(&["workflow", "list"]).expect_code(0).stdout();
    assert!(
        list.lines()
            .any(|l| l.starts_with("broken") && l.contains(" - ")),
        "a rejected version is never active:\n{list}"
    );
    s.run(&["audit", "verify"]).expect_code(0);
}
