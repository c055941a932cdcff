//! `stockade demo`: a throw-away dev environment that shows the foundation at work.
//! Everything it writes is fake and lives in a temporary directory.

use std::path::{Path, PathBuf};

use stockade_core::{Actor, Environment, Pii, SecretString};
use stockade_store::{DatabaseUrl, Store, StoreOptions};
use stockade_vault::{
    CredentialScopes, FieldContext, KeyOwner, MasterKeySource, MasterKeys, NewCredential, Vault,
    VaultError,
};

use crate::cli::DemoArgs;
use crate::exit::Failure;

const ACTOR: Actor = Actor::System("demo");

struct DemoDir(PathBuf, bool);

impl Drop for DemoDir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp_dir() -> Result<PathBuf, Failure> {
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix)
        .map_err(|_| Failure::runtime("the system random number generator failed"))?;
    let dir = std::env::temp_dir().join(format!("stockade-demo-{}", hex::encode(suffix)));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::runtime(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let mut found = false;
    for p in [path.to_path_buf(), path.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&p) {
            found |= bytes.windows(needle.len()).any(|w| w == needle);
        }
    }
    found
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let dir = DemoDir(temp_dir()?, args.keep);
    let db_path = dir.0.join("stockade.db");
    let db = DatabaseUrl::Sqlite(db_path.clone());
    let key_path = dir.0.join("master.key");
    println!(
        "Stockade demo: a throw-away dev environment in {}\n",
        dir.0.display()
    );

    // 1. A new environment.
    let master = MasterKeys::generate(Environment::Dev, MasterKeySource::File(key_path.clone()))?;
    master
        .write_new_file(&key_path)
        .map_err(Failure::from_master)?;
    let (store, _) = Store::init(&db, Environment::Dev, &StoreOptions::default()).await?;
    let mut vault = Vault::bootstrap(store.clone(), master, &ACTOR).await?;
    println!(
        "1. init: environment dev, SQLite in WAL mode, master key file mode 0600, keyring with a system data key"
    );

    // 2. Credentials for three sellers, each under its own data key.
    let sellers = [
        (
            "tiktok-shop-us",
            "tiktok_app_secret",
            "open-api.tiktokglobalshop.com",
            "ttsecret-DEMO-0a1b2c3d4e5f",
        ),
        (
            "amazon-eu",
            "lwa_refresh_token",
            "sellingpartnerapi-eu.amazon.com",
            "Atzr|DEMO-refresh-token-9f8e7d6c",
        ),
        (
            "ebay-uk",
            "ebay_refresh_token",
            "api.ebay.com",
            "v^1.1#DEMO-ebay-token-5a4b3c2d",
        ),
    ];
    for (conn, kind, host, secret) in sellers {
        let owner = KeyOwner::connection(conn)?;
        let scopes = CredentialScopes {
            workflows: vec!["stock-sync".into()],
            hosts: vec![host.into()],
        };
        let account = Pii::new(format!("seller-{conn}@example.com"));
        vault
            .put_credential(
                &NewCredential {
                    name: &format!("{conn}/token"),
                    kind,
                    secret: &SecretString::from(secret.to_owned()),
                    owner: &owner,
                    scopes: &scopes,
                    account: Some(&account),
                },
                &ACTOR,
            )
            .await?;
    }
    println!(
        "2. stored 3 marketplace credentials, each encrypted (AES-256-GCM) under its seller's own data key:"
    );
    for c in vault.list_credentials().await? {
        println!(
            "     {:<22} {:<20} data key {:<20} hosts {:?}  account {}…",
            c.name,
            c.kind,
            c.key_id,
            c.scopes.hosts,
            c.account_tag
                .as_deref()
                .unwrap_or("-")
                .chars()
                .take(24)
                .collect::<String>()
        );
    }
    let leaked = sellers.iter().any(|(conn, _, _, secret)| {
        file_contains(&db_path, secret.as_bytes())
            || file_contains(&db_path, format!("seller-{conn}@").as_bytes())
    });
    println!(
        "   byte scan of the database and its WAL for the secrets and seller emails: {}",
        if leaked { "FOUND (bug!)" } else { "not found" }
    );

    // 3. Environment isolation.
    match Store::open(&db, Environment::Prod, &StoreOptions::default()).await {
        Err(e) => println!("3. opening this dev database as prod is refused: {e}"),
        Ok(_) => {
            return Err(Failure::runtime(
                "the dev database opened as prod: isolation is broken",
            ));
        }
    }

    // 4. Master key rotation: data keys are rewrapped, data is not re-encrypted.
    let next = vault.master_keys().with_new_version()?;
    next.replace_file().map_err(Failure::from_master)?;
    let report = vault.rotate_master_key(next, &ACTOR).await?;
    let still = vault.reveal_credential("amazon-eu/token").await.is_ok();
    println!(
        "4. master key rotated to v{}: {} data keys rewrapped in one audited transaction; credentials still decrypt: {}",
        report.new_version,
        report.rewrapped,
        if still { "yes" } else { "NO" }
    );

    // 5. Crypto-shredding: the eBay seller revokes access.
    let rec = store
        .credential("ebay-uk/token")
        .await?
        .ok_or_else(|| Failure::runtime("demo credential missing"))?;
    let destroyed = vault
        .shred(
            &KeyOwner::connection("ebay-uk")?,
            "seller revoked authorization",
            &ACTOR,
        )
        .await?;
    let after = vault
        .decrypt(
            &FieldContext::new("credentials", "secret", &rec.name),
            &rec.ciphertext,
        )
        .await;
    println!(
        "5. seller ebay-uk revoked: data key {destroyed:?} destroyed; a copy of its ciphertext now gives:"
    );
    match after {
        Err(e @ VaultError::KeyDestroyed { .. }) => println!("     \"{e}\""),
        other => {
            return Err(Failure::runtime(format!(
                "shredded data still readable: {:?}",
                other.map(|_| "plaintext")
            )));
        }
    }

    // 6. The audit chain.
    let rows = store.audit_rows(0, 1000).await?;
    println!(
        "6. the audit chain ({} rows, each holding the hash of the one before):",
        rows.len()
    );
    for r in &rows {
        println!(
            "     #{:<3} {:<20} {:<34} {}",
            r.seq, r.action, r.resource, r.actor
        );
    }
    let report = store.verify_audit(None).await?;
    println!(
        "   audit verify: {} rows, {}, head {}",
        report.rows_checked,
        if report.problem.is_none() {
            "intact"
        } else {
            "BROKEN"
        },
        super::audit::format_head(report.head)
    );

    // 7. Tampering is found.
    let victim = rows
        .iter()
        .find(|r| r.action == "credential.put")
        .map_or(3, |r| r.seq);
    store
        .tamper_for_tests(&format!(
            "UPDATE audit SET details = '{{\"kind\":\"nothing to see\"}}' WHERE seq = {victim}"
        ))
        .await?;
    let report = store.verify_audit(None).await?;
    match report.problem {
        Some(p) => println!(
            "7. an attacker with database access edits row {victim}; audit verify now says: {p}"
        ),
        None => return Err(Failure::runtime("tampering was not detected")),
    }
    drop(store);
    vault.close().await;
    if args.keep {
        println!(
            "\nkept {} (stockade --env dev --data-dir {} audit verify)",
            dir.0.display(),
            dir.0.display()
        );
    } else {
        println!(
            "\nthe throw-away environment was deleted. Next: README.md and docs/operations.md."
        );
    }
    Ok(())
}
