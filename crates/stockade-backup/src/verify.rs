//! `backup verify` and the decryption every reader of a backup shares: decrypt into a
//! scratch directory, check the container, the payload's length and SHA-256, and the
//! payload itself (SQLite `integrity_check`, or `pg_restore --list` for an archive).

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::container::{self, Backend, Header};
use crate::crypt::Decryption;
use crate::scratch::{Scratch, create_private};
use crate::{BackupError, Result};

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub header: Header,
    pub file_bytes: u64,
}

/// Decrypt `file` into `scratch`, checking everything but the payload's own structure.
/// Returns the header and the plaintext payload's path (inside `scratch`).
pub async fn decrypt_to(
    file: &Path,
    dec: &Decryption,
    scratch: &Scratch,
    expect_kind: &str,
) -> Result<(Header, PathBuf)> {
    let what = file.display().to_string();
    let input = std::fs::File::open(file)
        .map_err(|e| BackupError::Usage(format!("cannot read {what}: {e}; check the path")))?;
    let mut reader = BufReader::with_capacity(1 << 20, dec.open(BufReader::new(input), &what)?);
    let header = container::read_header(&mut reader, &what)?;
    if header.kind != expect_kind {
        return Err(BackupError::Usage(format!(
            "{what} is a {} export, not a {expect_kind} backup: {}",
            header.kind,
            if expect_kind == "data" {
                "give the file `stockade backup create` wrote (a keyring export goes to --keyring)"
            } else {
                "give the file `stockade backup keyring` wrote"
            }
        )));
    }
    let payload = scratch.join(match header.backend {
        Backend::Sqlite => "payload.db",
        Backend::Postgres => "payload.pgdump",
    });
    let out = create_private(&payload)?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    container::read_payload(&mut reader, &header, &mut w, &what)?;
    w.flush()
        .map_err(crate::io_err("cannot write the decrypted payload"))?;
    Ok((header, payload))
}

/// Check a decrypted payload: SQLite integrity, or a readable pg_dump archive.
pub async fn check_payload(header: &Header, payload: &Path) -> Result<()> {
    if header.kind != "data" {
        return Ok(());
    }
    match header.backend {
        Backend::Sqlite => {
            let p = payload.to_path_buf();
            tokio::task::spawn_blocking(move || crate::sqlite::integrity_check(&p))
                .await
                .map_err(|_| BackupError::Io("the integrity check stopped".into()))?
        }
        Backend::Postgres => {
            let out = tokio::process::Command::new("pg_restore")
                .arg("--list")
                .arg(payload)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| {
                    BackupError::Usage(format!(
                        "cannot run pg_restore: {e}; install the PostgreSQL client tools (Debian package postgresql-client)"
                    ))
                })?;
            if !out.status.success() {
                return Err(BackupError::BadFile(
                    "the PostgreSQL archive in the backup is not readable by pg_restore; use another backup".into(),
                ));
            }
            Ok(())
        }
    }
}

/// Decrypt and check a backup; nothing is written outside a scratch directory.
pub async fn verify(file: &Path, dec: &Decryption, scratch_parent: &Path) -> Result<VerifyReport> {
    let scratch = Scratch::new_in(scratch_parent, "verify")?;
    let (header, payload) = decrypt_to(file, dec, &scratch, "data").await?;
    check_payload(&header, &payload).await?;
    let file_bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or_default();
    Ok(VerifyReport { header, file_bytes })
}
