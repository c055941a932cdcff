//! `[audit.mirror.nocodb]` and `[audit.mirror.file]` (and `[audit.mirror] alert_after`):
//! the audit mirror's settings, checked into a [`stockade_mirror::MirrorConfig`].
//!
//! Invariant: `token` names a stored credential; a token pasted inline is refused
//! because it would sit in the config file in clear.

use std::path::PathBuf;

use serde::Deserialize;
use stockade_mirror::{FileSinkConfig, MirrorConfig, NocoSinkConfig};

use crate::AppError;

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFileConfig {
    #[serde(default)]
    mirror: MirrorFileConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorFileConfig {
    nocodb: Option<NocoFileConfig>,
    file: Option<FileFileConfig>,
    alert_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NocoFileConfig {
    base_url: String,
    base: String,
    table: Option<String>,
    token: String,
    requests_per_second: Option<f64>,
    batch: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFileConfig {
    path: PathBuf,
    rotate_at: Option<String>,
    keep: Option<u32>,
}

/// `64MiB`, `512KiB`, `1GiB` or a number of bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n.trim(), *m)))
    .unwrap_or((t, 1));
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// A token-like value where a credential name belongs (NocoDB tokens are 40 characters).
fn looks_like_token(value: &str) -> bool {
    value.len() >= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().any(|b| b.is_ascii_uppercase())
}

pub(super) fn mirror_settings(
    f: &AuditFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<MirrorConfig, AppError> {
    let m = &f.mirror;
    let mut out = MirrorConfig::default();
    if let Some(t) = &m.alert_after {
        let secs = match stockade_core::time::parse_duration_secs(t) {
            Ok(Some(s)) if s > 0 => s,
            _ => {
                return Err(AppError::config(
                    "audit.mirror.alert_after must be a duration such as 5m or 1h",
                ));
            }
        };
        out.alert_after = std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(300));
        provenance.push((
            "audit.mirror.alert_after",
            format!("{secs}s"),
            "config file",
        ));
    }
    if let Some(n) = &m.nocodb {
        if looks_like_token(&n.token) {
            return Err(AppError::config(
                "audit.mirror.nocodb.token looks like an API token: it takes the NAME of a stored credential; store the token with `stockade credential set NAME --workflow audit-mirror --host HOST --secret-stdin` and write that NAME here",
            ));
        }
        let cfg = NocoSinkConfig::new(
            &n.base_url,
            &n.base,
            n.table.as_deref(),
            &n.token,
            n.requests_per_second,
            n.batch,
        )
        .map_err(AppError::config)?;
        provenance.push((
            "audit.mirror.nocodb.base_url",
            cfg.base_url.clone(),
            "config file",
        ));
        provenance.push((
            "audit.mirror.nocodb.table",
            cfg.table.clone(),
            "config file",
        ));
        provenance.push((
            "audit.mirror.nocodb.requests_per_second",
            cfg.requests_per_second.to_string(),
            "config file",
        ));
        out.nocodb = Some(cfg);
    }
    if let Some(file) = &m.file {
        let rotate = match file.rotate_at.as_deref() {
            None => None,
            Some(t) => Some(parse_size(t).ok_or_else(|| {
                AppError::config("audit.mirror.file.rotate_at must be a size such as 64MiB")
            })?),
        };
        let cfg =
            FileSinkConfig::new(file.path.clone(), rotate, file.keep).map_err(AppError::config)?;
        provenance.push((
            "audit.mirror.file.path",
            cfg.path.display().to_string(),
            "config file",
        ));
        out.file = Some(cfg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MirrorConfig, AppError> {
        let f: AuditFileConfig = toml::from_str(text).expect("toml");
        mirror_settings(&f, &mut Vec::new())
    }

    #[test]
    fn sections_parse_and_refuse_inline_tokens() {
        let c = parse(
            "[mirror.nocodb]\nbase_url = \"https://noco.example\"\nbase = \"audit\"\ntoken = \"noco-audit\"\n\
             [mirror.file]\npath = \"/var/log/stockade/audit.jsonl\"\nrotate_at = \"1MiB\"\nkeep = 3\n",
        )
        .unwrap();
        assert_eq!(c.nocodb.unwrap().requests_per_second, 4.0);
        assert_eq!(c.file.unwrap().rotate_bytes, 1 << 20);
        let e = parse("[mirror.nocodb]\nbase_url = \"https://n\"\nbase = \"a\"\ntoken = \"Ab3dEfGh1jKlMnOpQrStUvWxYz0123456789AbCd\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("NAME of a stored credential"), "{e}");
        assert!(
            parse("[mirror.nocodb]\nbase_url = \"http://n\"\nbase = \"a\"\ntoken = \"x\"\n")
                .is_err()
        );
        assert!(parse("[mirror]\nalert_after = \"soon\"\n").is_err());
    }
}
