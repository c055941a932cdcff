//! The mirror's settings, already checked (the composition root parses
//! `[audit.mirror.nocodb]` and `[audit.mirror.file]` into these with [`NocoSinkConfig::new`]
//! and [`FileSinkConfig::new`]).
//!
//! Invariants: the NocoDB base URL is `https://` with no path, query or credentials (the
//! egress gateway sends HTTPS only; a NocoDB on loopback HTTP goes behind a TLS
//! terminator); the token is the NAME of a stored credential, never the token;
//! `requests_per_second` is in (0, 20]; `batch` in 1..=100.

use std::path::PathBuf;
use std::time::Duration;

use crate::{DEFAULT_RATE, MAX_BATCH, MAX_RATE};

/// `[audit.mirror.nocodb]`.
#[derive(Debug, Clone, PartialEq)]
pub struct NocoSinkConfig {
    /// `https://host[:port]`, no trailing slash.
    pub base_url: String,
    /// The base's id (`p…`) or title.
    pub base: String,
    /// The table's title.
    pub table: String,
    /// The name of the credential holding the API token.
    pub credential: String,
    pub requests_per_second: f64,
    pub batch: usize,
}

/// The default table title.
pub const DEFAULT_TABLE: &str = "audit_mirror";

impl NocoSinkConfig {
    /// Check and normalise the settings; the error names the key and the fix.
    pub fn new(
        base_url: &str,
        base: &str,
        table: Option<&str>,
        credential: &str,
        requests_per_second: Option<f64>,
        batch: Option<usize>,
    ) -> Result<NocoSinkConfig, String> {
        let url = base_url.trim().trim_end_matches('/');
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            "audit.mirror.nocodb.base_url must start with https:// (outbound requests are HTTPS \
             only; put a NocoDB that listens on plain HTTP behind a TLS reverse proxy)"
                .to_owned()
        })?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(
                "audit.mirror.nocodb.base_url is NocoDB's address only, such as \
                 https://nocodb.example.com (no path, query or user)"
                    .into(),
            );
        }
        let base = base.trim();
        if base.is_empty() || base.len() > 128 {
            return Err(
                "audit.mirror.nocodb.base is the NocoDB base's id (p…) or its title".into(),
            );
        }
        let table = table.map_or(DEFAULT_TABLE, str::trim);
        if table.is_empty()
            || table.len() > 64
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(
                "audit.mirror.nocodb.table is a table title of letters, digits, _ and - \
                 (default audit_mirror)"
                    .into(),
            );
        }
        let credential = credential.trim();
        if credential.is_empty() || credential.len() > 100 {
            return Err(
                "audit.mirror.nocodb.token is the NAME of a stored credential holding \
                        the API token (store it with `stockade credential set NAME --workflow \
                        audit-mirror --host HOST --secret-stdin`), never the token itself"
                    .into(),
            );
        }
        let rate = requests_per_second.unwrap_or(DEFAULT_RATE);
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(format!(
                "audit.mirror.nocodb.requests_per_second must be above 0 and at most {MAX_RATE}; \
                 default {DEFAULT_RATE} (NocoDB Cloud allows 5 per user: go above 5 only for a \
                 self-hosted NocoDB)"
            ));
        }
        let batch = batch.unwrap_or(MAX_BATCH);
        if !(1..=MAX_BATCH).contains(&batch) {
            return Err(format!(
                "audit.mirror.nocodb.batch must be from 1 to {MAX_BATCH} (NocoDB's payload limit)"
            ));
        }
        Ok(NocoSinkConfig {
            base_url: url.to_owned(),
            base: base.to_owned(),
            table: table.to_owned(),
            credential: credential.to_owned(),
            requests_per_second: rate,
            batch,
        })
    }

    /// `host[:port]` as the egress allowlist writes it (port 443 implied).
    pub fn authority(&self) -> String {
        let rest = self.base_url.trim_start_matches("https://");
        let lower = rest.to_ascii_lowercase();
        lower
            .strip_suffix(":443")
            .map_or(lower.clone(), str::to_owned)
    }

    /// The host without the port (the credential's host scope).
    pub fn host(&self) -> String {
        let a = self.authority();
        if a.starts_with('[') {
            return a.split(']').next().unwrap_or("").to_owned() + "]";
        }
        a.split(':').next().unwrap_or("").to_owned()
    }
}

/// `[audit.mirror.file]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSinkConfig {
    /// The current file; rotated files are `PATH.1` (newest) … `PATH.N`.
    pub path: PathBuf,
    /// Rotate once the current file reaches this size.
    pub rotate_bytes: u64,
    /// Rotated files kept (0: the current file only).
    pub keep: u32,
}

/// Default rotation size (64 MiB) and files kept.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_KEEP: u32 = 10;

impl FileSinkConfig {
    pub fn new(
        path: PathBuf,
        rotate_bytes: Option<u64>,
        keep: Option<u32>,
    ) -> Result<FileSinkConfig, String> {
        if path.as_os_str().is_empty() || path.file_name().is_none() {
            return Err("audit.mirror.file.path is the file to write, such as \
                        /var/log/stockade/audit.jsonl"
                .into());
        }
        let rotate_bytes = rotate_bytes.unwrap_or(DEFAULT_ROTATE_BYTES);
        if rotate_bytes < 4096 {
            return Err("audit.mirror.file.rotate_at must be at least 4 KiB, such as 64MiB".into());
        }
        let keep = keep.unwrap_or(DEFAULT_KEEP);
        if keep > 1000 {
            return Err("audit.mirror.file.keep must be at most 1000".into());
        }
        Ok(FileSinkConfig {
            path,
            rotate_bytes,
            keep,
        })
    }
}

/// Everything the mirror runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    pub nocodb: Option<NocoSinkConfig>,
    pub file: Option<FileSinkConfig>,
    /// A sink failing this long raises an alert (and its recovery another).
    pub alert_after: Duration,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            nocodb: None,
            file: None,
            alert_after: Duration::from_secs(300),
        }
    }
}

impl MirrorConfig {
    pub fn is_configured(&self) -> bool {
        self.nocodb.is_some() || self.file.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_rates_and_batches_are_checked() {
        let ok = NocoSinkConfig::new(
            "https://noco.example:8443/",
            "audit",
            None,
            "noco",
            None,
            None,
        )
        .unwrap();
        assert_eq!(ok.base_url, "https://noco.example:8443");
        assert_eq!(ok.authority(), "noco.example:8443");
        assert_eq!(ok.host(), "noco.example");
        assert_eq!((ok.table.as_str(), ok.batch), ("audit_mirror", 100));
        assert!(NocoSinkConfig::new("http://127.0.0.1:8080", "a", None, "n", None, None).is_err());
        assert!(NocoSinkConfig::new("https://h/x", "a", None, "n", None, None).is_err());
        let e = NocoSinkConfig::new("https://h", "a", None, "n", Some(21.0), None).unwrap_err();
        assert!(e.contains("at most 20"), "{e}");
        assert!(NocoSinkConfig::new("https://h", "a", None, "n", Some(12.0), None).is_ok());
        assert!(NocoSinkConfig::new("https://h", "a", None, "n", None, Some(101)).is_err());
        assert!(NocoSinkConfig::new("https://h", "a", Some("bad name"), "n", None, None).is_err());
    }
}
