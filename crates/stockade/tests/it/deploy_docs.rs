//! docs/deploy.md is run: every ```sh runnable block, in order, as root, in a scratch
//! directory standing in for `/` (see the page's "How this page is checked"). A documented
//! command that breaks fails this test.

use std::path::Path;
use std::process::Command;

use crate::harness::{Sandbox, require_all, require_tool, skipped};

/// The fenced blocks of `doc` whose info string is `sh` plus `label`.
fn blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        if current.is_none() {
            if let Some(info) = line.strip_prefix("```sh") {
                current = Some((info.trim().to_owned(), String::new()));
            }
        } else if line == "```" {
            out.extend(current.take());
        } else if let Some((_, body)) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert!(
        current.is_none(),
        "an unclosed ```sh block in docs/deploy.md"
    );
    out
}

/// The page's paths moved under `root`, its user given to `nobody`.
fn localise(script: &str, root: &Path, binary: &str) -> String {
    let r = root.display().to_string();
    let mut s = script.replace("target/release/stockade", binary);
    for dir in [
        "/etc/stockade",
        "/var/lib/stockade",
        "/var/backups/stockade",
        "/usr/local/bin",
        "/etc/systemd/system",
        "/etc/fail2ban",
        "/etc/letsencrypt",
        "/etc/apt",
        "/etc/ssh",
    ] {
        s = s.replace(dir, &format!("{r}{dir}"));
    }
    s = s
        .replace("useradd ", &format!("useradd --prefix {r} "))
        .replace("-o stockade", "-o nobody")
        .replace("-g stockade", "-g nogroup")
        .replace("root:stockade", "root:nogroup")
        .replace("runuser -u stockade", "runuser -u nobody");
    // The page's names (nocodb.example.com, db.internal) resolve only at a real site.
    s.replace("deploy firewall", "deploy firewall --allow-unresolved")
        .replace("deploy unit", "deploy unit --allow-unresolved")
}

#[test]
fn every_runnable_command_of_the_deployment_guide_works() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let blocks = blocks(&doc);
    for (label, body) in &blocks {
        assert!(
            label == "runnable" || label == "host",
            "a ```sh block in docs/deploy.md is marked {label:?}, not `runnable` or `host`:\n{body}"
        );
    }
    let runnable: Vec<&str> = blocks
        .iter()
        .filter(|(l, _)| l == "runnable")
        .map(|(_, b)| b.as_str())
        .collect();
    assert!(runnable.len() >= 10, "{} runnable blocks", runnable.len());
    // Every host-changing command shown is named in the list of those not run.
    let not_run = doc.split("Not run in CI").nth(1).unwrap_or_default();
    for (label, body) in &blocks {
        if label == "host" {
            let first = body.lines().next().unwrap_or_default();
            let command = first
                .trim_start_matches("runuser -u stockade -- ")
                .trim_start_matches("sudo -u postgres ");
            let word = command.split_whitespace().next().unwrap_or_default();
            assert!(
                not_run.contains(word),
                "`{first}` is not run in CI but the list of such commands does not name `{word}`"
            );
        }
    }

    // Root is needed (useradd, chown, runuser), as are the tools the page uses.
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        assert!(
            !require_all(),
            "docs/deploy.md is run as root; CI / STOCKADE_REQUIRE_ALL forbid skipping it"
        );
        skipped("running docs/deploy.md: not root");
        return;
    }
    for (tool, package) in [
        ("openssl", "openssl"),
        ("age-keygen", "age"),
        ("nft", "nftables"),
        ("systemd-analyze", "systemd"),
        ("runuser", "util-linux"),
        ("useradd", "passwd"),
    ] {
        if !require_tool(tool, package, "running docs/deploy.md") {
            return;
        }
    }

    let sb = Sandbox::new();
    let root = sb.dir.join("root");
    let etc = root.join("etc");
    // The directories a Debian host has before the page starts.
    for d in [
        "etc/systemd/system",
        "usr/local/bin",
        "var/lib",
        "var/backups",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // The user database useradd --prefix edits: a copy of this machine's.
    for f in ["passwd", "group", "shadow", "gshadow", "login.defs"] {
        if Path::new("/etc").join(f).exists() {
            std::fs::copy(Path::new("/etc").join(f), etc.join(f)).unwrap();
        }
    }
    // A stand-in for the certificate certbot would have fetched.
    let live = etc.join("letsencrypt/live/stockade.example.com");
    std::fs::create_dir_all(&live).unwrap();
    let cert = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "30", "-subj", "/CN=stockade.example.com"])
        .args(["-addext", "subjectAltName=DNS:stockade.example.com"])
        .arg("-keyout")
        .arg(live.join("privkey.pem"))
        .arg("-out")
        .arg(live.join("fullchain.pem"))
        .output()
        .unwrap();
    assert!(
        cert.status.success(),
        "{}",
        String::from_utf8_lossy(&cert.stderr)
    );

    let binary = env!("CARGO_BIN_EXE_stockade");
    let mut script = String::from("set -euo pipefail\nset -x\n");
    for b in &runnable {
        script.push_str(&localise(b, &root, binary));
    }
    // The scratch root and the binary are reachable for `nobody`.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let work = sb.dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // The repository's deploy/ files are referenced relative to the checkout.
    std::os::unix::fs::symlink(repo.join("deploy"), work.join("deploy")).unwrap();
    let path = format!(
        "{}/usr/local/bin:{}",
        root.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script).current_dir(&work);
    for (k, _) in std::env::vars() {
        if k.starts_with("STOCKADE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("PATH", path)
        .env("NOCODB_TOKEN", "nc-test-token-not-real")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "a command of docs/deploy.md failed (exit {:?}):\n--- stdout\n{stdout}\n--- stderr (bash -x)\n{stderr}",
        out.status.code()
    );
    // What the page promises, seen on disk.
    let data = root.join("var/lib/stockade");
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(data.join("master.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
    assert_eq!(
        key.uid().to_string(),
        String::from_utf8_lossy(&nobody.stdout).trim(),
        "the master key belongs to the service user"
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/stockade.service")).unwrap();
    assert!(
        unit.contains(&format!("ReadWritePaths={}", data.display())),
        "{unit}"
    );
    assert!(unit.contains("/var/backups/stockade"), "{unit}");
    assert!(stdout.contains("Overall exposure level"), "{stdout}");
    let pg = std::fs::read_to_string(root.join("etc/stockade/firewall-pg.nft")).unwrap();
    assert!(
        pg.contains("db.internal:5432 (PostgreSQL database)"),
        "{pg}"
    );
    assert!(
        !pg.contains("CHANGE-ME"),
        "the database password leaked into the rules"
    );
    assert!(
        root.join("etc/passwd").exists()
            && std::fs::read_to_string(root.join("etc/passwd"))
                .unwrap()
                .contains("stockade:x:"),
        "useradd made the user in the scratch /etc/passwd"
    );
}
