//! `stockade credential set|list`: a workflow credential read from standard input,
//! stored encrypted with its scopes, listed without its secret, and never printed or
//! stored in clear (the SQLite file is searched for it).

use crate::harness::Sandbox;

const SECRET: &str = "tok-CliS3cret-4b9a2c7e1f";

#[test]
fn a_credential_is_stored_scoped_and_never_shown() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let data = s.data();
    // Never on the command line.
    let out = s
        .run(&[
            "credential",
            "set",
            "supplier-token",
            "--workflow",
            "reorder",
            "--host",
            "api.supplier.example",
        ])
        .expect_code(2);
    assert!(out.stderr().contains("--secret-stdin"), "{}", out.stderr());
    let out = s
        .run_with_stdin(
            &data,
            &[
                "credential",
                "set",
                "supplier-token",
                "--workflow",
                "reorder",
                "--host",
                "API.Supplier.example",
                "--secret-stdin",
            ],
            Some(&format!("{SECRET}\n")),
        )
        .expect_code(0);
    assert!(!out.stdout().contains(SECRET) && !out.stderr().contains(SECRET));
    let list = s.run(&["credential", "list"]).expect_code(0).stdout();
    let row = list
        .lines()
        .find(|l| l.starts_with("supplier-token "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("reorder") && row.contains("api.supplier.example"),
        "{row}"
    );
    assert!(!list.contains(SECRET));
    let mut bytes = std::fs::read(data.join("stockade.db")).unwrap_or_default();
    bytes.extend(std::fs::read(data.join("stockade.db-wal")).unwrap_or_default());
    assert!(!bytes.is_empty());
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
}
