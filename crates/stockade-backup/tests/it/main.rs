//! stockade-backup against real parts: real SQLite files and PostgreSQL schemas (when
//! STOCKADE_TEST_PG_URL is set), real pg_dump/pg_restore, and the real `age` CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod age_cli;
mod bad_input;
mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};

use stockade_backup::crypt::{Decryption, Encryption};
use stockade_core::{Actor, Environment};
use stockade_store::{AuditDetails, AuditEntry, Change, Store, StoreOptions};
use stockade_testkit::Db;
use stockade_vault::{
    CredentialScopes, KeyOwner, MasterKeySource, MasterKeys, NewCredential, Vault,
};

pub const ACTOR: Actor = Actor::System("test");

/// A fresh database with a vault, a credential and a few data keys.
#[derive(Debug)]
pub struct Fixture {
    pub db: Db,
    pub vault: Vault,
    pub key_path: PathBuf,
}

impl Fixture {
    pub async fn new(db: Db) -> Fixture {
        let key_path = db.dir.join("master.key");
        let master =
            MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))
                .unwrap();
        master.write_new_file(&key_path).unwrap();
        let (store, _) = Store::init(&db.url, Environment::Dev, &StoreOptions::default())
            .await
            .unwrap();
        let vault = Vault::bootstrap(store, master, &ACTOR).await.unwrap();
        for shop in ["shop1", "shop2"] {
            let owner = KeyOwner::connection(shop).unwrap();
            let secret = stockade_core::SecretString::from(format!("refresh-token-{shop}-7f3a"));
            let scopes = CredentialScopes::default();
            vault
                .put_credential(
                    &NewCredential {
                        name: &format!("connection/{shop}/token"),
                        kind: "refresh_token",
                        secret: &secret,
                        owner: &owner,
                        scopes: &scopes,
                        account: None,
                    },
                    &ACTOR,
                )
                .await
                .unwrap();
        }
        Fixture {
            db,
            vault,
            key_path,
        }
    }

    pub fn store(&self) -> &Store {
        self.vault.store()
    }

    /// Every wrapped data key's bytes (what must never be in a data backup).
    pub async fn wrapped_keys(&self) -> Vec<Vec<u8>> {
        self.store()
            .data_keys()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|k| k.wrapped)
            .collect()
    }

    pub async fn cleanup(self) {
        self.vault.close().await;
        self.db.cleanup().await;
    }
}

/// One audited write.
pub async fn write_one(store: &Store, i: i64) {
    store
        .commit(
            &ACTOR,
            vec![Change::event(AuditEntry::new(
                "test.write",
                format!("row:{i}"),
                AuditDetails::new().int("i", i),
            ))],
        )
        .await
        .unwrap();
}

/// A fresh x25519 identity: (Encryption to it, Decryption with it, identity file path).
pub fn x25519(dir: &Path) -> (Encryption, Decryption, PathBuf) {
    let id = age::x25519::Identity::generate();
    let path = dir.join("age-key.txt");
    use age::secrecy::ExposeSecret;
    std::fs::write(
        &path,
        format!(
            "# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    let enc = Encryption::from_args(&[id.to_public().to_string()], None).unwrap();
    let dec = Decryption::from_args(Some(&path), None).unwrap();
    (enc, dec, path)
}

/// A passphrase file and a fast scrypt Encryption (tests only lower the work factor).
pub fn passphrase(dir: &Path, text: &str) -> (Encryption, Decryption, PathBuf) {
    let path = dir.join(format!("pass-{}.txt", stockade_testkit::random_hex()));
    std::fs::write(&path, format!("{text}\n")).unwrap();
    let enc = match Encryption::from_args(&[], Some(&path)).unwrap() {
        Encryption::Passphrase(p, _) => Encryption::Passphrase(p, Some(10)),
        other => other,
    };
    let dec = Decryption::from_args(None, Some(&path)).unwrap();
    (enc, dec, path)
}

/// The whole decrypted plaintext of an age file (container: header and payload).
pub fn decrypt_all(file: &Path, dec: &Decryption) -> Vec<u8> {
    let input = std::fs::File::open(file).unwrap();
    let mut r = dec.open(std::io::BufReader::new(input), "test").unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut out).unwrap();
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Create a backup of the fixture's database.
pub async fn backup(
    f: &Fixture,
    to: &Path,
    enc: &Encryption,
) -> stockade_backup::Result<stockade_backup::CreateReport> {
    stockade_backup::create(
        f.store(),
        &ACTOR,
        stockade_backup::create::CreateOptions {
            database: &f.db.url,
            to: to.to_path_buf(),
            encryption: enc,
            scratch_parent: f.db.dir.clone(),
            trigger: "cli",
        },
    )
    .await
}

/// No plaintext scratch left behind in `dir`.
pub fn no_scratch(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".stockade-") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "scratch left behind: {left:?}");
}
