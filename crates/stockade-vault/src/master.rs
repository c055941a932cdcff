//! Master keys: loading, checking and writing the key file.
//!
//! File format (text, one item per line, `#` comments allowed):
//! ```text
//! stockade-master-key 1 env=dev
//! key 1 <base64 of 32 bytes>
//! key 2 <base64 of 32 bytes>
//! ```
//! The highest version is the active one. The file must be mode `0600` (or stricter) and
//! is refused, not silently fixed, when others can read it. `STOCKADE_MASTER_KEY` may hold
//! the same text, or a bare base64 key (taken as version 1).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use stockade_core::Environment;
use zeroize::Zeroizing;

/// Why a master key could not be used. Messages never include key bytes.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "no master key: {0} does not exist. Run `stockade init`, or set STOCKADE_MASTER_KEY_FILE / STOCKADE_MASTER_KEY"
    )]
    Missing(PathBuf),
    #[error("master key {source_name} is malformed: {reason}")]
    Malformed { source_name: String, reason: String },
    #[error(
        "master key file {path} is readable or writable by others (mode {mode:04o}); run `chmod 600 {path}` and check who may have copied it"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("master key {source_name} belongs to environment {found:?}, not {expected}")]
    WrongEnvironment {
        source_name: String,
        found: String,
        expected: Environment,
    },
    #[error("the master key comes from STOCKADE_MASTER_KEY, which stockade cannot rewrite; {0}")]
    NotWritable(&'static str),
    #[error("cannot {action} {path}: {reason}")]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    File(PathBuf),
    EnvVar,
}

impl fmt::Display for MasterKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKeySource::File(p) => write!(f, "file {}", p.display()),
            MasterKeySource::EnvVar => f.write_str("STOCKADE_MASTER_KEY"),
        }
    }
}

/// The versions of one environment's master key. Bytes are zeroized on drop and never
/// printed.
pub struct MasterKeys {
    env: Environment,
    source: MasterKeySource,
    versions: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("env", &self.env)
            .field("source", &self.source)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}

const HEADER: &str = "stockade-master-key 1";

impl MasterKeys {
    /// A fresh master key (version 1) from the system RNG.
    pub fn generate(env: Environment, source: MasterKeySource) -> crate::Result<Self> {
        let mut keys = MasterKeys {
            env,
            source,
            versions: BTreeMap::new(),
        };
        keys.versions.insert(1, random_key()?);
        Ok(keys)
    }

    /// Load from a key file, refusing it if others can read or write it.
    pub fn load_file(path: &Path, env: Environment) -> Result<Self, MasterKeyError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MasterKeyError::Missing(path.to_owned()),
            _ => MasterKeyError::Io {
                action: "read",
                path: path.to_owned(),
                reason: e.to_string(),
            },
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| MasterKeyError::Io {
                    action: "read",
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?,
            );
        Self::parse(&text, env, MasterKeySource::File(path.to_owned()))
    }

    /// Load from the text of `STOCKADE_MASTER_KEY`.
    pub fn from_env_value(value: &str, env: Environment) -> Result<Self, MasterKeyError> {
        let trimmed = value.trim();
        if !trimmed.contains('\n') && !trimmed.starts_with("stockade-master-key") {
            let mut versions = BTreeMap::new();
            versions.insert(1, decode_key(trimmed, "STOCKADE_MASTER_KEY")?);
            return Ok(MasterKeys {
                env,
                source: MasterKeySource::EnvVar,
                versions,
            });
        }
        Self::parse(trimmed, env, MasterKeySource::EnvVar)
    }

    fn parse(
        text: &str,
        env: Environment,
        source: MasterKeySource,
    ) -> Result<Self, MasterKeyError> {
        let name = source.to_string();
        let malformed = |reason: String| MasterKeyError::Malformed {
            source_name: name.clone(),
            reason,
        };
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let header = lines
            .next()
            .ok_or_else(|| malformed("it is empty".into()))?;
        let file_env = header
            .strip_prefix(HEADER)
            .and_then(|rest| rest.trim().strip_prefix("env="))
            .ok_or_else(|| {
                malformed(format!(
                    "the first line must be `{HEADER} env=<environment>`"
                ))
            })?;
        if file_env != env.as_str() {
            return Err(MasterKeyError::WrongEnvironment {
                source_name: name.clone(),
                found: file_env.chars().take(16).collect(),
                expected: env,
            });
        }
        let mut versions = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            let mut parts = line.split_whitespace();
            let (Some("key"), Some(v), Some(b64), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed(format!(
                    "line {} is not `key <version> <base64>`",
                    i + 2
                )));
            };
            let version: u32 = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                malformed(format!(
                    "line {}: the version must be a positive number",
                    i + 2
                ))
            })?;
            if versions.insert(version, decode_key(b64, &name)?).is_some() {
                return Err(malformed(format!("version {version} appears twice")));
            }
        }
        if versions.is_empty() {
            return Err(malformed("it holds no key".into()));
        }
        Ok(MasterKeys {
            env,
            source,
            versions,
        })
    }

    pub fn environment(&self) -> Environment {
        self.env
    }

    pub fn source(&self) -> &MasterKeySource {
        &self.source
    }

    /// The active (highest) version.
    pub fn active_version(&self) -> u32 {
        self.versions.keys().next_back().copied().unwrap_or(1)
    }

    pub fn versions(&self) -> Vec<u32> {
        self.versions.keys().copied().collect()
    }

    pub(crate) fn key(&self, version: u32) -> Option<&[u8; 32]> {
        self.versions.get(&version).map(|k| &**k)
    }

    /// Fingerprint of a version: HMAC-SHA256(key, label ‖ env), first 16 bytes, hex.
    /// Stored in the database to recognise the right key without storing the key.
    pub fn fingerprint(&self, version: u32) -> Option<String> {
        let key = self.key(version)?;
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            format!("stockade master key fingerprint|{}", self.env).as_bytes(),
        );
        Some(hex::encode(&tag.as_ref()[..16]))
    }

    /// A copy with one more, freshly generated version, which becomes active.
    pub fn with_new_version(&self) -> crate::Result<Self> {
        let mut versions = self.versions.clone();
        versions.insert(self.active_version() + 1, random_key()?);
        Ok(MasterKeys {
            env: self.env,
            source: self.source.clone(),
            versions,
        })
    }

    /// A copy without the given versions (never the active one).
    pub fn without_versions(&self, remove: &[u32]) -> Self {
        let active = self.active_version();
        let versions = self
            .versions
            .iter()
            .filter(|(v, _)| **v == active || !remove.contains(v))
            .map(|(v, k)| (*v, k.clone()))
            .collect();
        MasterKeys {
            env: self.env,
            source: self.source.clone(),
            versions,
        }
    }

    /// A copy with only the given versions.
    pub(crate) fn retain_versions(&self, keep: &[u32]) -> Self {
        let versions = self
            .versions
            .iter()
            .filter(|(v, _)| keep.contains(v))
            .map(|(v, k)| (*v, k.clone()))
            .collect();
        MasterKeys {
            env: self.env,
            source: self.source.clone(),
            versions,
        }
    }

    fn render(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(format!(
            "# Stockade master key, environment {env}. Keep this file mode 0600, outside the\n\
             # data directory's backups, and never commit it. Losing it loses the data.\n\
             {HEADER} env={env}\n",
            env = self.env
        ));
        for (v, k) in &self.versions {
            // Build the line in the zeroized buffer itself: no unwiped temporary copy.
            let b64 = Zeroizing::new(B64.encode(**k));
            out.push_str("key ");
            out.push_str(&v.to_string());
            out.push(' ');
            out.push_str(&b64);
            out.push('\n');
        }
        out
    }

    /// Write a new key file; fails if the file exists.
    pub fn write_new_file(&self, path: &Path) -> Result<(), MasterKeyError> {
        let io = |action, e: std::io::Error| MasterKeyError::Io {
            action,
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io("create", e))?;
        f.write_all(self.render().as_bytes())
            .map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
        sync_parent(path).map_err(|e| io("sync the directory of", e))
    }

    /// Replace the key file atomically (write a temporary 0600 file, fsync, rename).
    pub fn replace_file(&self) -> Result<(), MasterKeyError> {
        let MasterKeySource::File(path) = &self.source else {
            return Err(MasterKeyError::NotWritable(
                "use a key file (STOCKADE_MASTER_KEY_FILE) to rotate, or add the new version to the variable yourself",
            ));
        };
        let tmp = path.with_extension("key.tmp");
        let _ = std::fs::remove_file(&tmp);
        self.write_new_file(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| MasterKeyError::Io {
            action: "replace",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        sync_parent(path).map_err(|e| MasterKeyError::Io {
            action: "sync",
            path: path.clone(),
            reason: e.to_string(),
        })
    }
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

fn decode_key(b64: &str, name: &str) -> Result<Zeroizing<[u8; 32]>, MasterKeyError> {
    let bytes = Zeroizing::new(
        B64.decode(b64.trim())
            .map_err(|_| MasterKeyError::Malformed {
                source_name: name.to_owned(),
                reason: "a key is not valid base64".into(),
            })?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(MasterKeyError::Malformed {
            source_name: name.to_owned(),
            reason: format!(
                "a key must be 32 bytes (256 bits), this one is {} bytes",
                bytes.len()
            ),
        });
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

pub(crate) fn random_key() -> crate::Result<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut *key).map_err(|_| crate::VaultError::Rng)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(env: &str, lines: &[&str]) -> String {
        format!(
            "# comment\nstockade-master-key 1 env={env}\n{}\n",
            lines.join("\n")
        )
    }

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn parses_versions_and_picks_the_highest() {
        let keys = MasterKeys::parse(
            &text("dev", &[&format!("key 1 {K1}"), &format!("key 3 {K1}")]),
            Environment::Dev,
            MasterKeySource::EnvVar,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.versions(), vec![1, 3]);
        assert_eq!(keys.active_version(), 3);
    }

    #[test]
    fn malformed_and_foreign_keys_are_refused_without_echoing_bytes() {
        let cases = [
            text("dev", &["key 1 not-base64!"]),
            text("dev", &["key 1 AAEC"]),
            text("dev", &["key 0 AAEC"]),
            text("dev", &[]),
            "garbage".to_owned(),
            text("prod", &[&format!("key 1 {K1}")]),
        ];
        for case in cases {
            let err = MasterKeys::parse(&case, Environment::Dev, MasterKeySource::EnvVar)
                .map(|_| ())
                .unwrap_err();
            assert!(!err.to_string().contains(K1), "{err}");
        }
        assert!(matches!(
            MasterKeys::parse(
                &text("prod", &[&format!("key 1 {K1}")]),
                Environment::Dev,
                MasterKeySource::EnvVar
            ),
            Err(MasterKeyError::WrongEnvironment { .. })
        ));
    }

    #[test]
    fn bare_env_value_is_version_one() {
        let keys =
            MasterKeys::from_env_value(K1, Environment::Prod).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.versions(), vec![1]);
        assert!(!format!("{keys:?}").contains("AAEC"));
    }

    #[test]
    fn fingerprints_depend_on_key_and_environment() {
        let a = MasterKeys::from_env_value(K1, Environment::Prod).unwrap_or_else(|e| panic!("{e}"));
        let b = MasterKeys::from_env_value(K1, Environment::Dev).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a.fingerprint(1), b.fingerprint(1));
        assert_eq!(a.fingerprint(2), None);
    }
}
