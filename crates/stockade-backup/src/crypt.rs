//! The age layer: who a backup is encrypted to, and what decrypts it.
//!
//! Only the two recipient kinds the Debian `age` 1.1 tool understands are offered: x25519
//! public keys (`age1…`) and one scrypt passphrase. Passphrases come only from files (never
//! argv or config) and are held in `SecretString`. Every error names the fix and never
//! echoes a key or passphrase.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::SecretString;

use crate::{BackupError, Result};

/// How a new backup is encrypted.
pub enum Encryption {
    /// x25519 recipients (public keys only).
    Recipients(Vec<age::x25519::Recipient>),
    /// One scrypt passphrase, with an optional work factor (tests lower it).
    Passphrase(SecretString, Option<u8>),
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// Read a passphrase file: its first line, which must not be empty.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        BackupError::Usage(format!(
            "cannot read the passphrase file {}: {e}; give a readable file holding the passphrase on its first line",
            path.display()
        ))
    })?);
    let line = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r');
    if line.is_empty() {
        return Err(BackupError::Usage(format!(
            "the passphrase file {} is empty: write the passphrase on its first line",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_owned()))
}

impl Encryption {
    /// From the command line or config: `age1…` recipients, or a passphrase file (not both).
    pub fn from_args(recipients: &[String], passphrase_file: Option<&Path>) -> Result<Self> {
        match (recipients.is_empty(), passphrase_file) {
            (false, Some(_)) => Err(BackupError::Usage(
                "give either --recipient or --passphrase-file, not both (age cannot mix them)".into(),
            )),
            (true, None) => Err(BackupError::Usage(
                "say who can decrypt the backup: --recipient age1… (from `age-keygen`) or --passphrase-file FILE".into(),
            )),
            (true, Some(p)) => Ok(Encryption::Passphrase(read_passphrase_file(p)?, None)),
            (false, None) => {
                let parsed = recipients
                    .iter()
                    .map(|r| parse_recipient(r))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Encryption::Recipients(parsed))
            }
        }
    }

    /// `x25519` or `passphrase`, as recorded in `backup list`.
    pub fn kind(&self) -> &'static str {
        match self {
            Encryption::Recipients(_) => "x25519",
            Encryption::Passphrase(..) => "passphrase",
        }
    }

    /// Wrap `out` in an age writer. The caller must `finish()` it.
    pub fn wrap<W: Write>(&self, out: W) -> Result<age::stream::StreamWriter<W>> {
        let enc = match self {
            Encryption::Recipients(rs) => {
                age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(|e| {
                        BackupError::Usage(format!("cannot encrypt to these recipients: {e}"))
                    })?
            }
            Encryption::Passphrase(p, log_n) => {
                let mut r = age::scrypt::Recipient::new(p.clone());
                if let Some(n) = log_n {
                    r.set_work_factor(*n);
                }
                age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                    .map_err(|e| {
                        BackupError::Usage(format!("cannot encrypt with this passphrase: {e}"))
                    })?
            }
        };
        enc.wrap_output(out)
            .map_err(crate::io_err("cannot write the age header"))
    }
}

/// Parse one `age1…` public key.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient> {
    let t = text.trim();
    if t.starts_with("AGE-SECRET-KEY-") {
        return Err(BackupError::Usage(
            "that is a secret key, not a recipient: give its public key (the `# public key: age1…` line of the key file, or `age-keygen -y KEYFILE`)".into(),
        ));
    }
    age::x25519::Recipient::from_str(t).map_err(|_| {
        BackupError::Usage(format!(
            "{:?} is not an age x25519 public key: recipients look like age1… (`age-keygen -y KEYFILE` prints one)",
            t.chars().take(12).collect::<String>()
        ))
    })
}

/// What decrypts a backup.
pub enum Decryption {
    /// An age identity file (`AGE-SECRET-KEY-1…` lines, as `age-keygen` writes).
    Identities(Vec<Box<dyn age::Identity>>),
    Passphrase(SecretString),
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decryption::Identities(_) => f.write_str("identities"),
            Decryption::Passphrase(_) => f.write_str("passphrase"),
        }
    }
}

impl Decryption {
    pub fn from_args(identity: Option<&Path>, passphrase_file: Option<&Path>) -> Result<Self> {
        match (identity, passphrase_file) {
            (Some(_), Some(_)) => Err(BackupError::Usage(
                "give either --identity or --passphrase-file, not both".into(),
            )),
            (None, None) => Err(BackupError::Usage(
                "say how to decrypt: --identity KEYFILE (the age-keygen file whose public key was a recipient) or --passphrase-file FILE".into(),
            )),
            (None, Some(p)) => Ok(Decryption::Passphrase(read_passphrase_file(p)?)),
            (Some(path), None) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    BackupError::Usage(format!("cannot read the identity file {}: {e}", path.display()))
                })?;
                let ids = age::IdentityFile::from_buffer(BufReader::new(file))
                    .ok()
                    .and_then(|f| f.into_identities().ok())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        BackupError::Usage(format!(
                            "{} is not an age identity file: give the file `age-keygen -o` wrote (AGE-SECRET-KEY-1… lines)",
                            path.display()
                        ))
                    })?;
                Ok(Decryption::Identities(ids))
            }
        }
    }

    /// Open an age stream for reading. `what` names the file in errors.
    pub fn open<R: Read>(&self, input: R, what: &str) -> Result<age::stream::StreamReader<R>> {
        let dec = age::Decryptor::new(input).map_err(|e| header_error(e, what))?;
        let scrypt = dec.is_scrypt();
        let out = match self {
            Decryption::Passphrase(_) if !scrypt => {
                return Err(BackupError::BadFile(format!(
                    "{what} is encrypted to age public keys, not a passphrase: decrypt it with --identity KEYFILE"
                )));
            }
            Decryption::Identities(_) if scrypt => {
                return Err(BackupError::BadFile(format!(
                    "{what} is encrypted with a passphrase: decrypt it with --passphrase-file FILE"
                )));
            }
            Decryption::Passphrase(p) => {
                let id = age::scrypt::Identity::new(p.clone());
                dec.decrypt(std::iter::once(&id as &dyn age::Identity))
            }
            Decryption::Identities(ids) => dec.decrypt(ids.iter().map(|i| i.as_ref())),
        };
        out.map_err(|e| key_error(e, what, scrypt))
    }
}

fn header_error(e: age::DecryptError, what: &str) -> BackupError {
    match e {
        age::DecryptError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            BackupError::BadFile(format!(
                "{what} is not an age-encrypted file, or is truncated inside its age header: give a complete file `stockade backup create` wrote"
            ))
        }
        _ => BackupError::BadFile(format!(
            "{what} is not an age-encrypted file: give a file `stockade backup create` wrote (it starts with `age-encryption.org/v1`)"
        )),
    }
}

fn key_error(e: age::DecryptError, what: &str, scrypt: bool) -> BackupError {
    match e {
        age::DecryptError::NoMatchingKeys => BackupError::BadFile(format!(
            "none of the given identities can decrypt {what}: use the age key whose public key (age1…) the backup was made for"
        )),
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed if scrypt => {
            BackupError::BadFile(format!(
                "wrong passphrase for {what}: use the passphrase file the backup was made with"
            ))
        }
        age::DecryptError::ExcessiveWork { .. } => BackupError::BadFile(format!(
            "{what} asks for an excessive scrypt work factor; decrypt it on a faster machine or with the `age` tool"
        )),
        age::DecryptError::InvalidMac => BackupError::BadFile(format!(
            "the age header of {what} was altered (MAC check failed), or the key is wrong: use an unaltered copy and the right key"
        )),
        _ => BackupError::BadFile(format!(
            "cannot decrypt {what}: the wrong key or passphrase, or the file's header was altered"
        )),
    }
}

/// An error reading the decrypted stream: truncation or tampering of the payload.
pub fn stream_error(e: std::io::Error, what: &str) -> BackupError {
    BackupError::BadFile(format!(
        "{what} is truncated or was altered (age authentication failed: {}); use an intact copy of the backup",
        e.kind()
    ))
}
