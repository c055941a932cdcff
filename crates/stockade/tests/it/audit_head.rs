//! Regression: an emptied or truncated audit log is not "intact". The chain's head is
//! kept in a second place (DATA_DIR/audit-head, MAC'd with a key under the master key),
//! so `audit verify` catches a deleted tail without `--anchor`, on SQLite and PostgreSQL.

use crate::harness::{Sandbox, drop_schema, pg_schema_url, tamper};

async fn truncation_is_caught(s: &Sandbox, url: &str) {
    s.run(&["--env", "dev", "init"]).expect_code(0);
    // A command that writes moves the mark to the new head.
    s.run(&["--env", "dev", "key", "rotate"]).expect_code(0);
    let mark = std::fs::read_to_string(s.data().join("audit-head")).unwrap();
    assert!(
        mark.contains("seq=") && mark.contains("mac=hmac-sha256:"),
        "{mark}"
    );
    let ok = s
        .run(&["--env", "dev", "audit", "verify"])
        .expect_code(0)
        .stdout();
    assert!(ok.contains("reaches the recorded head mark"), "{ok}");
    let rows: i64 = ok.split_whitespace().nth(3).unwrap().parse().unwrap();

    // Delete the tail: the rest is a valid, shorter chain; the mark catches it.
    tamper(
        url,
        "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
    )
    .await;
    let bad = s.run(&["--env", "dev", "audit", "verify"]).expect_code(3);
    assert!(
        bad.stderr().contains("truncated")
            && bad.stderr().contains(&format!("row {rows}"))
            && bad.stderr().contains(&format!("row {}", rows - 1)),
        "{}",
        bad.stderr()
    );
    // A later write does not move the mark back to the truncated head.
    s.run(&["--env", "dev", "audit", "verify"]).expect_code(3);

    // Delete everything: an initialised database always has audit rows.
    tamper(url, "DELETE FROM audit").await;
    let bad = s.run(&["--env", "dev", "audit", "verify"]).expect_code(3);
    assert!(bad.stderr().contains("empty"), "{}", bad.stderr());
    assert!(!bad.stdout().contains("intact"), "{}", bad.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_or_truncated_audit_log_fails_verify_sqlite() {
    let s = Sandbox::new();
    let url = format!("sqlite://{}", s.data().join("stockade.db").display());
    truncation_is_caught(&s, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_or_truncated_audit_log_fails_verify_postgres() {
    let Some((url, schema)) = pg_schema_url() else {
        return;
    };
    let s = Sandbox::new().with("STOCKADE_DATABASE_URL", &url);
    truncation_is_caught(&s, &url).await;
    drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_edited_head_mark_is_refused() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    s.run(&["--env", "dev", "audit", "verify"]).expect_code(0);
    let path = s.data().join("audit-head");
    let mark = std::fs::read_to_string(&path).unwrap();
    // Someone with the database but not the master key lowers the mark after deleting
    // rows: without the key the MAC cannot be recomputed.
    let seq: i64 = mark
        .lines()
        .find_map(|l| l.strip_prefix("seq="))
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(
        &path,
        mark.replace(&format!("seq={seq}"), &format!("seq={}", seq - 1)),
    )
    .unwrap();
    let bad = s.run(&["--env", "dev", "audit", "verify"]).expect_code(3);
    assert!(bad.stderr().contains("does not verify"), "{}", bad.stderr());
    // Untouched again: intact.
    std::fs::write(&path, &mark).unwrap();
    s.run(&["--env", "dev", "audit", "verify"]).expect_code(0);
}
