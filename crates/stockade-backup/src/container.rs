//! The plaintext inside the age stream: a magic line, one JSON header line, the payload.
//!
//! ```text
//! STOCKADE-BACKUP 1\n
//! {"format":1,"kind":"data","environment":"prod",…,"payload_bytes":N,"payload_sha256":"…"}\n
//! <exactly N payload bytes: a SQLite database or a pg_dump -Fc archive>
//! ```
//!
//! The payload is taken from a finished snapshot file, so its length and SHA-256 are in
//! the header before it; `age -d … | tail -n +3` yields the payload with standard tools.
//! The header holds no key material and no row data: the data-key skeleton lists ids,
//! owners and master key versions only.

use std::io::{BufRead, Read, Write};

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use crate::{BackupError, Result};

pub const MAGIC: &str = "STOCKADE-BACKUP 1";
pub const FORMAT: u32 = 1;
const MAX_HEADER: u64 = 4 << 20;

/// The database kind a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A data key's row without its wrapped key: enough to put the key back from a keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySkeleton {
    pub id: i64,
    pub owner: String,
    pub master_version: Option<i64>,
    pub created_at_ms: i64,
    pub destroyed_at_ms: Option<i64>,
}

/// The container header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    /// `data` (a database) or `keyring` (a keyring export).
    pub kind: String,
    pub environment: String,
    pub created_at_ms: i64,
    pub backend: Backend,
    pub schema_version: i64,
    pub stockade_version: String,
    /// The PostgreSQL schema the dump holds (PostgreSQL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_schema: Option<String>,
    #[serde(default)]
    pub data_keys: Vec<KeySkeleton>,
    pub payload_bytes: u64,
    pub payload_sha256: String,
}

/// SHA-256 and length of a file.
pub fn hash_file(path: &std::path::Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).map_err(crate::io_err("cannot read the snapshot"))?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let got = f
            .read(&mut buf)
            .map_err(crate::io_err("cannot read the snapshot"))?;
        if got == 0 {
            break;
        }
        ctx.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, hex::encode(ctx.finish().as_ref())))
}

/// Write the container: magic, header, then the payload file's bytes.
pub fn write(out: &mut impl Write, header: &Header, payload: &std::path::Path) -> Result<()> {
    let json = serde_json::to_string(header)
        .map_err(|e| BackupError::Io(format!("cannot encode the backup header: {e}")))?;
    let w = crate::io_err("cannot write the backup");
    out.write_all(MAGIC.as_bytes()).map_err(w)?;
    out.write_all(b"\n")
        .map_err(crate::io_err("cannot write the backup"))?;
    out.write_all(json.as_bytes())
        .map_err(crate::io_err("cannot write the backup"))?;
    out.write_all(b"\n")
        .map_err(crate::io_err("cannot write the backup"))?;
    let mut f = std::fs::File::open(payload).map_err(crate::io_err("cannot read the snapshot"))?;
    let copied = std::io::copy(&mut f, out).map_err(crate::io_err("cannot write the backup"))?;
    if copied != header.payload_bytes {
        return Err(BackupError::Io(
            "the snapshot changed while it was being written".into(),
        ));
    }
    Ok(())
}

/// Read the magic and header lines. `what` names the file in errors.
pub fn read_header(input: &mut impl BufRead, what: &str) -> Result<Header> {
    let mut line = Vec::new();
    let stream = |e| crate::crypt::stream_error(e, what);
    input
        .take(64)
        .read_until(b'\n', &mut line)
        .map_err(stream)?;
    if line.strip_suffix(b"\n") != Some(MAGIC.as_bytes()) {
        return Err(BackupError::BadFile(format!(
            "{what} decrypts, but is not a Stockade backup (no `{MAGIC}` line): give a file `stockade backup create` or `backup keyring` wrote"
        )));
    }
    line.clear();
    input
        .take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .map_err(|e| crate::crypt::stream_error(e, what))?;
    let header: Header = serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(&line))
        .map_err(|_| {
            BackupError::BadFile(format!(
                "the header of {what} is not readable: the file is truncated, or comes from a newer Stockade; use an intact copy and a current Stockade"
            ))
        })?;
    if header.format != FORMAT {
        return Err(BackupError::BadFile(format!(
            "{what} has backup format {}, this Stockade reads format {FORMAT}: use a matching Stockade version",
            header.format
        )));
    }
    Ok(header)
}

/// Copy the payload into `out`, checking its length, its SHA-256 and that nothing follows.
pub fn read_payload(
    input: &mut impl Read,
    header: &Header,
    out: &mut impl Write,
    what: &str,
) -> Result<()> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = header.payload_bytes;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let got = input
            .read(&mut buf[..want])
            .map_err(|e| crate::crypt::stream_error(e, what))?;
        if got == 0 {
            return Err(BackupError::BadFile(format!(
                "{what} is truncated: its payload ends {left} bytes early; use a complete copy of the backup"
            )));
        }
        ctx.update(&buf[..got]);
        out.write_all(&buf[..got])
            .map_err(crate::io_err("cannot write the decrypted payload"))?;
        left -= got as u64;
    }
    let mut extra = [0u8; 1];
    match input.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(BackupError::BadFile(format!(
                "{what} holds more bytes than its header says: it was altered; use an intact copy"
            )));
        }
        Err(e) => return Err(crate::crypt::stream_error(e, what)),
    }
    if hex::encode(ctx.finish().as_ref()) != header.payload_sha256 {
        return Err(BackupError::BadFile(format!(
            "the payload of {what} does not match its SHA-256: the backup is corrupt; use another copy"
        )));
    }
    Ok(())
}
