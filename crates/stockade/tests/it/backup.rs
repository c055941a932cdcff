//! `stockade backup …` end to end with the real binary, the real server and the real
//! `age-keygen`: an online backup while the server runs and another process writes, the
//! refusal while the server runs, a restore that replays a purge made after the backup,
//! a restore into a fresh data directory from the keyring export, drills and the list.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{Sandbox, require_tool};
use crate::sync::{free_port, start_serve};

fn tiktok(sb: &Sandbox, name: &str) {
    let file = sb.dir.join(format!("{name}.json"));
    std::fs::write(
        &file,
        r#"{"app_key":"bk-key-1","app_secret":"bk-secret-2","refresh_token":"bk-refresh-3"}"#,
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    sb.run(&[
        "connection",
        "add",
        "--marketplace",
        "tiktok",
        "--name",
        name,
        "--account",
        "7494-shop",
        "--api-url",
        "https://127.0.0.1:4443",
        "--shop-cipher",
        "ROW_abc",
        "--credentials-file",
        file.to_str().unwrap(),
    ])
    .expect_code(0);
}

/// `age-keygen -o FILE`; returns (identity file, public key).
fn keygen(sb: &Sandbox) -> (String, String) {
    let path = sb.dir.join("backup-key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = String::from_utf8_lossy(&out.stderr)
        .trim()
        .strip_prefix("Public key: ")
        .unwrap()
        .to_owned();
    (path.to_str().unwrap().to_owned(), public)
}

#[tokio::test]
async fn backup_restore_and_drill_with_the_real_server_and_a_purge_after_the_backup() {
    if !require_tool("age-keygen", "age", "the backup CLI test") {
        return;
    }
    scenario(Sandbox::new().with("STOCKADE_ENV", "dev"), false).await;
}

#[tokio::test]
async fn the_same_on_postgresql() {
    if !require_tool("age-keygen", "age", "the backup CLI test") {
        return;
    }
    let Some((url, schema)) = crate::harness::pg_schema_url() else {
        return;
    };
    let sb = Sandbox::new()
        .with("STOCKADE_ENV", "dev")
        .with("STOCKADE_DATABASE_URL", &url);
    scenario(sb, true).await;
    crate::harness::drop_schema(&schema).await;
}

async fn scenario(sb: Sandbox, pg: bool) {
    sb.run(&["init"]).expect_code(0);
    tiktok(&sb, "shop1");
    tiktok(&sb, "shop2");
    let (key, public) = keygen(&sb);
    let backup = sb.dir.join("b.age");
    let backup = backup.to_str().unwrap();

    // Online: the server runs, and another process keeps writing during the backup.
    let server = start_serve(&sb, free_port(), 0).expect("serve starts");
    let writer_sb = Sandbox {
        dir: sb.dir.clone(),
        env: sb.env.clone(),
    };
    let writer = std::thread::spawn(move || {
        for _ in 0..6 {
            writer_sb
                .run(&["connection", "pause", "shop2"])
                .expect_code(0);
            writer_sb
                .run(&["connection", "resume", "shop2"])
                .expect_code(0);
        }
        std::mem::forget(writer_sb); // the main sandbox owns the directory
    });
    let out = sb
        .run(&["backup", "create", "--to", backup, "--recipient", &public])
        .expect_code(0);
    assert!(
        out.stdout().contains("backup written") && out.stdout().contains("environment dev"),
        "{}",
        out.stdout()
    );
    writer.join().unwrap();
    // A restore while the server runs on the data directory is refused, nothing written.
    let out = sb
        .run(&["backup", "restore", backup, "--identity", &key, "--force"])
        .expect_code(2);
    assert!(
        out.stderr().contains("is running") && out.stderr().contains("stop it first"),
        "{}",
        out.stderr()
    );
    drop(server);

    // Verify names environment, time, backend and schema version.
    let out = sb
        .run(&["backup", "verify", backup, "--identity", &key])
        .expect_code(0)
        .stdout();
    let backend = if pg {
        "backend         postgres"
    } else {
        "backend         sqlite"
    };
    let schema = format!(
        "schema version  {}",
        stockade_store::MIGRATIONS.last().unwrap().version
    );
    for want in ["backup OK", "environment     dev", backend, schema.as_str()] {
        assert!(out.contains(want), "{want}: {out}");
    }

    // After the backup: shop1 is revoked and purged; then the keyring is exported.
    sb.run(&["connection", "revoke", "shop1", "--yes"])
        .expect_code(0);
    let keyring = sb.dir.join("k.age");
    let keyring = keyring.to_str().unwrap();
    let out = sb
        .run(&["backup", "keyring", "--to", keyring, "--recipient", &public])
        .expect_code(0)
        .stdout();
    assert!(
        out.contains("1 purge tombstones") && out.contains("NOT in this export"),
        "{out}"
    );

    let list = sb.run(&["backup", "list"]).expect_code(0).stdout();
    for op in ["create", "keyring"] {
        assert!(
            list.lines().any(|l| l.contains(&format!(" {op} "))
                && l.contains(" x25519 ")
                && l.contains(" ok ")),
            "{op}: {list}"
        );
    }
    // Restore over the database: refused without --force, then done; the purge replayed.
    let out = sb
        .run(&["backup", "restore", backup, "--identity", &key])
        .expect_code(2);
    assert!(out.stderr().contains("--force"), "{}", out.stderr());
    let out = sb
        .run(&["backup", "restore", backup, "--identity", &key, "--force"])
        .expect_code(0)
        .stdout();
    assert!(out.contains("purges replayed: 1"), "{out}");
    let show = sb
        .run(&["connection", "show", "shop1"])
        .expect_code(0)
        .stdout();
    assert!(
        show.contains("revoked") && show.contains("purge receipt"),
        "{show}"
    );
    let status = sb.run(&["key", "status"]).expect_code(0).stdout();
    assert!(
        status.contains("data keys: 2 live, 1 destroyed"),
        "{status}"
    );
    sb.run(&["key", "verify"]).expect_code(0);
    sb.run(&["audit", "verify"]).expect_code(0);

    if !pg {
        fresh_data_dir(&sb, backup, &key, keyring);
    }

    // Drill, list; a damaged file is exit 3 and named.
    let out = sb
        .run(&["backup", "drill", backup, "--identity", &key])
        .expect_code(0)
        .stdout();
    assert!(
        out.contains("restore drill passed") && out.contains("audit chain ok"),
        "{out}"
    );
    // The restored database's list: what ran on it since (the backup's own row was
    // written after its snapshot, so it is in the list of the database it came from).
    let list = sb.run(&["backup", "list"]).expect_code(0).stdout();
    for op in ["restore", "drill"] {
        assert!(
            list.lines().any(|l| l.contains(&format!(" {op} "))),
            "{op}: {list}"
        );
    }
    let bytes = std::fs::read(backup).unwrap();
    let cut = sb.dir.join("cut.age");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = sb
        .run(&[
            "backup",
            "verify",
            cut.to_str().unwrap(),
            "--identity",
            &key,
        ])
        .expect_code(3);
    assert!(out.stderr().contains("truncated"), "{}", out.stderr());
    // Help on every command.
    for cmd in ["create", "verify", "restore", "drill", "keyring", "list"] {
        sb.run(&["backup", cmd, "--help"]).expect_code(0);
    }
}

/// Into a fresh data directory: needs the master key file and the keyring export.
fn fresh_data_dir(sb: &Sandbox, backup: &str, key: &str, keyring: &str) {
    let fresh = sb.dir.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::copy(sb.data().join("master.key"), fresh.join("master.key")).unwrap();
    let out = sb
        .run_in(&fresh, &["backup", "restore", backup, "--identity", key])
        .expect_code(2);
    assert!(out.stderr().contains("--keyring"), "{}", out.stderr());
    let out = sb
        .run_in(
            &fresh,
            &[
                "--env",
                "prod",
                "backup",
                "restore",
                backup,
                "--identity",
                key,
                "--keyring",
                keyring,
            ],
        )
        .expect_code(2);
    assert!(out.stderr().contains("--into-env prod"), "{}", out.stderr());
    assert!(
        !fresh.join("stockade.db").exists(),
        "nothing written on refusal"
    );
    let out = sb
        .run_in(
            &fresh,
            &[
                "backup",
                "restore",
                backup,
                "--identity",
                key,
                "--keyring",
                keyring,
            ],
        )
        .expect_code(0)
        .stdout();
    assert!(out.contains("purges replayed: 1"), "{out}");
    let show = sb
        .run_in(&fresh, &["connection", "show", "shop1"])
        .expect_code(0)
        .stdout();
    assert!(show.contains("revoked"), "{show}");
    sb.run_in(&fresh, &["key", "verify"]).expect_code(0);
}
