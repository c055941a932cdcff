//! `[backup]`: scheduled encrypted backups run by the server.
//!
//! ```toml
//! [backup]
//! every = "1d"                 # off when absent
//! keep = 7                     # newest scheduled files kept in `dir`
//! dir = "/var/backups/stockade"
//! recipients = ["age1…"]       # age x25519 PUBLIC keys only
//! ```
//!
//! Only public keys belong here: a passphrase (or a secret key) in the config file is
//! refused, because a config file is not a secret store. Unknown keys are errors.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::AppError;

/// `[backup]` as written in stockade.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupFileConfig {
    every: Option<String>,
    keep: Option<usize>,
    dir: Option<PathBuf>,
    #[serde(default)]
    recipients: Vec<String>,
}

/// The backup schedule, when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    pub every: Duration,
    pub keep: usize,
    pub dir: PathBuf,
    /// age x25519 public keys (`age1…`).
    pub recipients: Vec<String>,
}

const MIN_EVERY_S: i64 = 60;

pub(super) fn backup_settings(
    f: &BackupFileConfig,
    data_dir: &std::path::Path,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<Option<BackupSettings>, AppError> {
    let Some(every) = &f.every else {
        if f.keep.is_some() || f.dir.is_some() || !f.recipients.is_empty() {
            return Err(AppError::config(
                "[backup] needs `every` (e.g. \"1d\") to schedule backups; remove the section to turn them off",
            ));
        }
        provenance.push(("backup.every", "off".into(), "default"));
        return Ok(None);
    };
    let secs = match stockade_core::time::parse_duration_secs(every) {
        Ok(Some(s)) if s >= MIN_EVERY_S => s,
        _ => {
            return Err(AppError::config(format!(
                "backup.every {every:?} is not a duration of at least 1m (e.g. \"6h\", \"1d\")"
            )));
        }
    };
    let keep = f.keep.unwrap_or(7);
    if keep == 0 {
        return Err(AppError::config("backup.keep must be at least 1"));
    }
    if f.recipients.is_empty() {
        return Err(AppError::config(
            "[backup] needs recipients = [\"age1…\"] (age public keys; make one with `age-keygen`); passphrases are not allowed in the config file",
        ));
    }
    for r in &f.recipients {
        if r.trim().starts_with("AGE-SECRET-KEY-") {
            return Err(AppError::config(
                "backup.recipients holds a SECRET key: put only its public key (age1…) in the config file, and remove the secret key from it now",
            ));
        }
        stockade_backup::crypt::parse_recipient(r)
            .map_err(|e| AppError::config(format!("backup.recipients: {e}")))?;
    }
    let dir = f.dir.clone().unwrap_or_else(|| data_dir.join("backups"));
    provenance.push(("backup.every", every.clone(), "config file"));
    provenance.push((
        "backup.keep",
        keep.to_string(),
        if f.keep.is_some() {
            "config file"
        } else {
            "default"
        },
    ));
    provenance.push((
        "backup.dir",
        dir.display().to_string(),
        if f.dir.is_some() {
            "config file"
        } else {
            "default"
        },
    ));
    provenance.push((
        "backup.recipients",
        f.recipients.len().to_string(),
        "config file",
    ));
    Ok(Some(BackupSettings {
        every: Duration::from_secs(u64::try_from(secs).unwrap_or(86_400)),
        keep,
        dir,
        recipients: f.recipients.iter().map(|r| r.trim().to_owned()).collect(),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<Option<BackupSettings>, AppError> {
        let f: BackupFileConfig = toml::from_str(text).unwrap();
        backup_settings(&f, std::path::Path::new("/data"), &mut Vec::new())
    }

    #[test]
    fn off_by_default_and_parsed_when_set() {
        assert_eq!(parse("").unwrap(), None);
        let s = parse("every = \"1d\"\nrecipients = [\"age1yf523y36pg7ur3adc6fct3c2wu4n0n7d590c3h4p7udgjvsle9dqwyvaew\"]").unwrap().unwrap();
        assert_eq!(s.every, Duration::from_secs(86_400));
        assert_eq!(s.keep, 7);
        assert_eq!(s.dir, PathBuf::from("/data/backups"));
    }

    #[test]
    fn secrets_and_nonsense_are_refused() {
        assert!(parse("every = \"1d\"\nrecipients = [\"AGE-SECRET-KEY-1XYZ\"]").is_err());
        assert!(parse("every = \"1d\"").is_err());
        assert!(parse("every = \"1s\"\nrecipients = [\"age1yf523y36pg7ur3adc6fct3c2wu4n0n7d590c3h4p7udgjvsle9dqwyvaew\"]").is_err());
        assert!(parse("keep = 3").is_err());
        assert!(parse("every = \"1d\"\nkeep = 0\nrecipients = [\"age1yf523y36pg7ur3adc6fct3c2wu4n0n7d590c3h4p7udgjvsle9dqwyvaew\"]").is_err());
        assert!(toml::from_str::<BackupFileConfig>("passphrase = \"x\"").is_err());
    }
}
