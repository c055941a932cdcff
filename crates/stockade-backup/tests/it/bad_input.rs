//! Bad input: truncated, tampered, not age, wrong identity, a wrong environment, an
//! existing target, a running server. Each is a clear error naming the fix, and nothing
//! is written.

use stockade_backup::restore::{self, RestoreOptions};
use stockade_core::Environment;
use stockade_store::DatabaseUrl;
use stockade_testkit::Db;

use crate::*;

fn err_text(e: stockade_backup::BackupError) -> String {
    e.to_string()
}

#[tokio::test]
async fn damaged_or_foreign_files_are_named_and_nothing_is_written() {
    let f = Fixture::new(Db::sqlite()).await;
    let (enc, dec, _) = x25519(&f.db.dir);
    let good = f.db.dir.join("good.age");
    backup(&f, &good, &enc).await.unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let dir = f.db.dir.clone();
    let check = |name: &str, content: &[u8], want: &str| {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        (p, want.to_owned())
    };
    let mut tampered = bytes.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let cases = [
        check("truncated.age", &bytes[..bytes.len() - 1000], "truncated"),
        check("tampered.age", &tampered, "altered"),
        check(
            "plain.txt",
            b"just some text\nnot age at all\n",
            "not an age-encrypted file",
        ),
        check("empty.age", b"", "not an age-encrypted file"),
    ];
    for (p, want) in &cases {
        let e = err_text(stockade_backup::verify(p, &dec, &dir).await.unwrap_err());
        assert!(e.contains(want), "{}: {e}", p.display());
    }
    let (_, other, _) = x25519(
        &f.db
            .dir
            .join("..")
            .join(format!("other-{}", stockade_testkit::random_hex()))
            .tap_mkdir(),
    );
    let e = err_text(
        stockade_backup::verify(&good, &other, &dir)
            .await
            .unwrap_err(),
    );
    assert!(e.contains("none of the given identities"), "{e}");
    let (_, pass, _) = passphrase(&dir, "x");
    let e = err_text(
        stockade_backup::verify(&good, &pass, &dir)
            .await
            .unwrap_err(),
    );
    assert!(e.contains("--identity"), "{e}");
    // An existing file is never overwritten.
    let e = err_text(backup(&f, &good, &enc).await.unwrap_err());
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&good).unwrap(), bytes);
    no_scratch(&dir);
    f.cleanup().await;
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test]
async fn restore_refuses_another_environment_an_existing_database_and_a_running_server() {
    let f = Fixture::new(Db::sqlite()).await;
    let (enc, dec, _) = x25519(&f.db.dir);
    let file = f.db.dir.join("b.age");
    backup(&f, &file, &enc).await.unwrap();
    let before = std::fs::read(f.db.dir.join("stockade.db")).unwrap();
    let opts = |target: &'static str, env: Option<Environment>, force: bool| RestoreOptions {
        file: file.clone(),
        decryption: &dec,
        target: Box::leak(Box::new(DatabaseUrl::Sqlite(f.db.dir.join(target)))),
        target_env: env,
        into_env: false,
        force,
        keyring: None,
        data_dir: f.db.dir.clone(),
    };
    // Another environment.
    let e = err_text(
        restore::stage(opts("fresh.db", Some(Environment::Prod), false))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains("environment dev, not prod") && e.contains("--into-env prod"),
        "{e}"
    );
    // The database exists.
    let e = err_text(
        restore::stage(opts("stockade.db", None, false))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("--force"), "{e}");
    // No database here and no keyring export.
    let e = err_text(
        restore::stage(opts("fresh.db", None, false))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("--keyring"), "{e}");
    // A server runs on the data directory: a process whose program is named stockade
    // (a copy of `sleep`) stands in for it, with its pid in serve.pid.
    let fake = f.db.dir.join("stockade");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let mut child = std::process::Command::new(&fake).arg("30").spawn().unwrap();
    std::fs::write(f.db.dir.join("serve.pid"), format!("{}\n", child.id())).unwrap();
    for _ in 0..50 {
        if restore::server_pid(&f.db.dir).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        restore::server_pid(&f.db.dir),
        Some(child.id()),
        "{:?}",
        std::fs::read(format!("/proc/{}/cmdline", child.id()))
    );
    let e = err_text(
        restore::stage(opts("stockade.db", None, true))
            .await
            .unwrap_err(),
    );
    assert!(
        e.contains("is running") && e.contains("stop it first"),
        "{e}"
    );
    let _ = child.kill();
    let _ = child.wait();
    // A stale pid file (the process is gone) does not block a restore's checks.
    let e = err_text(
        restore::stage(opts("stockade.db", None, false))
            .await
            .unwrap_err(),
    );
    assert!(e.contains("--force"), "{e}");
    std::fs::remove_file(f.db.dir.join("serve.pid")).unwrap();
    assert!(!f.db.dir.join("fresh.db").exists());
    assert_eq!(std::fs::read(f.db.dir.join("stockade.db")).unwrap(), before);
    no_scratch(&f.db.dir);
    f.cleanup().await;
}
