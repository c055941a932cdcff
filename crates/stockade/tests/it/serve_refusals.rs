//! Regression: a refused `serve` writes nothing (it used to write a development CA first),
//! prod needs a configured certificate or an explicit `--self-signed`, and a generated
//! certificate is valid for a year from an hour ago (it used to be 1975 to 4096).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Sandbox, require_tool};
use crate::server::{Server, init};

/// Every file and directory under `root` with its bytes: a byte-for-byte snapshot.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// The paths that differ between two snapshots (added, removed or changed).
fn changed(
    before: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    after: &BTreeMap<PathBuf, Option<Vec<u8>>>,
) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = before
        .iter()
        .filter(|(p, v)| after.get(*p) != Some(*v))
        .map(|(p, _)| p.clone())
        .collect();
    paths.extend(after.keys().filter(|p| !before.contains_key(*p)).cloned());
    paths
}

#[test]
fn serve_refused_for_a_missing_data_directory_creates_nothing() {
    let sb = Sandbox::new();
    let missing = sb.dir.join("no-such-dir");
    let out = sb
        .run_in(
            &missing,
            &["--env", "dev", "serve", "--listen", "127.0.0.1:0"],
        )
        .expect_code(2);
    assert!(
        out.stderr().contains("not initialised") || out.stderr().contains("stockade init"),
        "{}",
        out.stderr()
    );
    assert!(!missing.exists(), "the refused serve created {missing:?}");
}

#[test]
fn serve_refused_for_the_wrong_environment_writes_nothing() {
    let sb = init("dev", "");
    let before = snapshot(&sb.data());
    assert!(!before.keys().any(|p| p.starts_with("tls")));
    let out = sb
        .run(&["--env", "prod", "serve", "--listen", "127.0.0.1:0"])
        .expect_code(2);
    assert!(out.stderr().contains("dev"), "{}", out.stderr());
    assert_eq!(
        changed(&before, &snapshot(&sb.data())),
        Vec::<PathBuf>::new(),
        "the data directory changed after a refusal"
    );
}

#[test]
fn prod_serve_without_a_certificate_refuses_unless_told_to_self_sign() {
    let sb = init("prod", "");
    let before = snapshot(&sb.data());
    let out = sb.run(&["serve", "--listen", "127.0.0.1:0"]).expect_code(2);
    let err = out.stderr();
    assert!(
        err.contains("tls_cert") && err.contains("--self-signed") && err.contains("self_signed"),
        "{err}"
    );
    assert_eq!(
        changed(&before, &snapshot(&sb.data())),
        Vec::<PathBuf>::new(),
        "a refusal writes nothing"
    );

    // Told to, it serves a generated certificate with a sane validity.
    let server = Server::start_with(&sb, &["--self-signed"]);
    drop(server);
    let cert = sb.data().join("tls/dev-cert.pem");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let files = [(&cert, "server"), (&sb.data().join("tls/dev-ca.pem"), "CA")];
    let read_dates = require_tool("openssl", "openssl", "the certificate validity check");
    for (file, what) in files.into_iter().filter(|_| read_dates) {
        let (start, end) = validity(file);
        assert!(
            (now - 2 * 3600..=now - 3500).contains(&start),
            "{what} not_before {start} is about an hour ago ({now})"
        );
        assert!(
            end > now + 300 * 86_400 && end <= now + 366 * 86_400,
            "{what} not_after {end} is at most a year away ({now})"
        );
    }
    // The setting does the same as the flag.
    let sb = init("prod", "[server]\nself_signed = true\n");
    drop(Server::start(&sb));
    assert!(sb.data().join("tls/dev-cert.pem").exists());
}

/// `not_before` and `not_after` of a PEM certificate, as Unix seconds, read by openssl.
fn validity(pem: &Path) -> (i64, i64) {
    let out = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
        ])
        .arg(pem)
        .output()
        .expect("openssl is required");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        let out = Command::new("date")
            .args(["-u", "+%s", "-d", line.trim()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    (field("notBefore="), field("notAfter="))
}
