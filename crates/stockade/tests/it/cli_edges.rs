//! Edges a new user meets on the command line: CSV files from spreadsheets (a UTF-8
//! BOM, semicolons, SKUs differing only in case), output piped into `head`, a mistyped
//! `--data-dir`, stale help text.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::harness::Sandbox;
use crate::sync::sku_list;

/// Regression: a spreadsheet's CSV with a byte-order mark and `;` separators was
/// refused ("no `sku` column"), and SKUs differing only in case went unnoticed.
#[test]
fn csv_with_bom_semicolons_and_case_only_duplicates() {
    let sb = crate::server::init("dev", "");
    let csv = sb.dir.join("excel.csv");
    std::fs::write(
        &csv,
        "\u{feff}sku;on_hand\r\nMUG-RED;10\r\nmug-red;4\r\nCAP;2\r\n",
    )
    .unwrap();
    let out = sb
        .run(&["sku", "import", csv.to_str().unwrap()])
        .expect_code(0);
    assert!(
        out.stdout().contains("imported 3 SKU(s)")
            && out.stdout().contains("read as semicolon-separated"),
        "{}",
        out.stdout()
    );
    assert!(
        out.stderr()
            .contains("warning: SKU \"mug-red\" differs only in case from \"MUG-RED\" on line 2"),
        "{}",
        out.stderr()
    );
    let list = sku_list(&sb);
    assert_eq!(list["MUG-RED"].0, 10);
    assert_eq!(list["mug-red"].0, 4);
    assert_eq!(list["CAP"].0, 2);

    // Against the catalog as well: a later file with "cap".
    let later = sb.dir.join("later.csv");
    std::fs::write(&later, "sku,on_hand\ncap,1\n").unwrap();
    let out = sb
        .run(&["sku", "import", later.to_str().unwrap()])
        .expect_code(0);
    assert!(
        out.stderr()
            .contains("\"cap\" differs only in case from \"CAP\" already in the catalog"),
        "{}",
        out.stderr()
    );

    // Tabs are named in the error; nothing is imported.
    let tabs = sb.dir.join("tabs.csv");
    std::fs::write(&tabs, "sku\ton_hand\nTAB-1\t3\n").unwrap();
    let out = sb
        .run(&["sku", "import", tabs.to_str().unwrap()])
        .expect_code(2);
    assert!(
        out.stderr().contains("no `sku` column")
            && out.stderr().contains("separated by '\\t'")
            && out.stderr().contains("nothing was imported"),
        "{}",
        out.stderr()
    );
    assert!(!sku_list(&sb).contains_key("TAB-1"));
}

/// Run `stockade ARGS`, read one line of its output, close the pipe, and return the
/// exit status and standard error.
fn head_one(sb: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockade"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("--data-dir")
        .arg(sb.data())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    drop(out);
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Regression: `stockade sku list | head` panicked with "failed printing to stdout:
/// Broken pipe" and `audit export | head` failed with exit 1.
#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    let sb = crate::server::init("dev", "");
    // Far more than a pipe buffer of output (64 KiB).
    let mut csv = String::from("sku,on_hand\n");
    for i in 0..4000 {
        csv.push_str(&format!("SKU-{i:05},{i}\n"));
    }
    let file = sb.dir.join("big.csv");
    std::fs::write(&file, csv).unwrap();
    sb.run(&["sku", "import", file.to_str().unwrap()])
        .expect_code(0);
    for args in [
        &["sku", "list"][..],
        &["audit", "export"][..],
        &["sku", "export"][..],
    ] {
        let (code, stderr) = head_one(&sb, args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panick") && !stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

/// Regression: a mistyped `--data-dir` asked for `--env` instead of saying that there
/// is no database there.
#[test]
fn a_mistyped_data_dir_names_the_missing_database() {
    let sb = Sandbox::new();
    sb.run(&["init", "--env", "dev"]).expect_code(0);
    let typo = sb.dir.join("dtaa");
    let out = sb.run_in(&typo, &["sku", "list"]).expect_code(2);
    let err = out.stderr();
    assert!(
        err.contains("no Stockade database at")
            && err.contains("does not exist")
            && err.contains("--data-dir")
            && !err.contains("no environment given"),
        "{err}"
    );
    // The right directory still works.
    sb.run(&["sku", "list"]).expect_code(0);
}

/// Stale help text: `serve` said "(later) webhooks, sync".
#[test]
fn help_text_has_no_later_promises() {
    let sb = Sandbox::new();
    for args in [
        &["--help"][..],
        &["serve", "--help"][..],
        &["connection", "--help"][..],
    ] {
        let out = sb.run(args).expect_code(0).stdout();
        assert!(!out.contains("(later)"), "{args:?}: {out}");
    }
    let out = sb.run(&["connection", "--help"]).expect_code(0).stdout();
    assert!(out.contains("edit") && out.contains("test"), "{out}");
}
