//! The standard `age` tool (Debian package `age`) decrypts a backup and a keyring export
//! without Stockade; `tail -n +3` of the plaintext is the SQLite database.

use std::process::Command;

use stockade_testkit::{Db, require_tool};

use crate::*;

#[tokio::test]
async fn the_age_cli_decrypts_a_backup_into_a_working_database() {
    if !require_tool("age", "age", "the age CLI interoperability test") {
        return;
    }
    let f = Fixture::new(Db::sqlite()).await;
    let (enc, _, key) = x25519(&f.db.dir);
    let file = f.db.dir.join("b.age");
    backup(&f, &file, &enc).await.unwrap();
    let plain = f.db.dir.join("b.plain");
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `tail -n +3`: the database after the magic and header lines.
    let db = f.db.dir.join("from-age.db");
    let sh = Command::new("sh")
        .arg("-c")
        .arg("tail -n +3 \"$1\" > \"$2\"")
        .arg("sh")
        .arg(&plain)
        .arg(&db)
        .status()
        .unwrap();
    assert!(sh.success());
    let c = rusqlite::Connection::open(&db).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let (creds, wrapped): (i64, i64) = c
        .query_row("SELECT (SELECT COUNT(*) FROM credentials), (SELECT COUNT(wrapped) FROM keyring_data_keys)", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((creds, wrapped), (2, 0));
    // The wrong key: age refuses.
    let (_, _, other) = x25519(&std::env::temp_dir());
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&other)
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let _ = std::fs::remove_file(other);
    f.cleanup().await;
}
