//! `stockade sandbox --credentials-dir DIR`: one credentials file per marketplace, in
//! exactly the fields `connection add` reads, the sandbox's test CA next to them, and the
//! `connection add` commands that use them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use stockade_core::order::Marketplace;
use stockade_sandbox::Sandbox;

use crate::exit::Failure;

/// The files the sandbox writes into a credentials directory (and may overwrite).
pub const CA_FILE: &str = "sandbox-ca.pem";
const OWN_FILES: &[&str] = &["tiktok.json", "amazon.json", "ebay.json", CA_FILE];

/// Refuse a directory that holds anything but the sandbox's own files (from an earlier
/// run), before the sandbox starts; create it (0700) when missing.
pub fn prepare_dir(dir: &Path) -> Result<(), Failure> {
    let shown = dir.display();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut others = Vec::new();
            for entry in entries {
                let entry =
                    entry.map_err(|e| Failure::runtime(format!("cannot list {shown}: {e}")))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Ours, or a temporary file of ours left by an interrupted run.
                let leftover = OWN_FILES
                    .iter()
                    .any(|f| name.starts_with(&format!(".{f}.tmp-")));
                if !OWN_FILES.contains(&name.as_str()) && !leftover {
                    others.push(name);
                }
            }
            if !others.is_empty() {
                others.sort();
                let more = if others.len() > 5 { ", …" } else { "" };
                others.truncate(5);
                return Err(Failure::usage(format!(
                    "--credentials-dir {shown} already holds other files ({}{more}); nothing was written: give a new or empty directory (the sandbox writes only tiktok.json, amazon.json, ebay.json and {CA_FILE} there)",
                    others.join(", ")
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Failure::runtime(format!("cannot create {shown}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Failure::usage(format!(
            "--credentials-dir {shown} is a file, not a directory"
        ))),
        Err(e) => Err(Failure::runtime(format!("cannot read {shown}: {e}"))),
    }
}

/// Write `bytes` to `dir/name` atomically (a temporary file in the same directory,
/// synced, then renamed over), with `mode`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<PathBuf, Failure> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        Failure::runtime(format!("cannot write {}: {e}", path.display()))
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(bytes).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(fail)?;
    Ok(path)
}

/// Quote a word for a POSIX shell when it needs it.
fn sh(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The commands that connect a dev instance to this sandbox run.
#[derive(Debug, Default)]
pub struct Commands {
    /// `connection add …`, for a data directory without these connections.
    pub add: Vec<String>,
    /// `connection edit …`, moving existing connections to this run (new ports, new CA).
    pub edit: Vec<String>,
}

/// Write the three credentials files and the CA; return the commands that use them.
pub fn write_credentials(sb: &Sandbox, dir: &Path, serve_url: &str) -> Result<Commands, Failure> {
    let ca = write_atomic(dir, CA_FILE, sb.ca_pem.as_bytes(), 0o644)?;
    let mut commands = Commands::default();
    for m in [Marketplace::TikTok, Marketplace::Amazon, Marketplace::Ebay] {
        let e = sb.endpoint(m);
        let Some(s) = e.sellers.first() else {
            return Err(Failure::runtime("the simulator has no seller"));
        };
        let app_id = e.app.client_id.clone();
        let app_secret = e.app.client_secret.expose_secret().clone();
        let refresh = s.refresh_token.expose_secret().clone();
        let base = e.base_url.trim_end_matches('/');
        let mut args: Vec<String> = vec![
            "--marketplace".into(),
            m.as_str().into(),
            "--name".into(),
            m.as_str().into(),
        ];
        let creds = match m {
            Marketplace::TikTok => {
                args.extend([
                    "--account".into(),
                    s.seller_id.clone(),
                    "--api-url".into(),
                    base.into(),
                    "--auth-url".into(),
                    base.into(),
                    "--shop-cipher".into(),
                    s.shop_cipher.clone(),
                ]);
                serde_json::json!({"app_key": app_id, "app_secret": app_secret, "refresh_token": refresh})
            }
            Marketplace::Amazon => {
                args.extend([
                    "--account".into(),
                    s.seller_id.clone(),
                    "--api-url".into(),
                    base.into(),
                    "--auth-url".into(),
                    format!("{base}/auth/o2/token"),
                    "--marketplace-id".into(),
                    s.marketplace_id.clone(),
                ]);
                serde_json::json!({"client_id": app_id, "client_secret": app_secret,
                    "refresh_token": refresh,
                    "event_key": sb.amazon_event_secret().expose_secret()})
            }
            Marketplace::Ebay => {
                args.extend([
                    "--account".into(),
                    s.user_id.clone(),
                    "--api-url".into(),
                    base.into(),
                    "--marketplace-id".into(),
                    s.marketplace_id.clone(),
                    "--endpoint-url".into(),
                    format!("{serve_url}/hooks/ebay/ebay"),
                ]);
                serde_json::json!({"client_id": app_id, "client_secret": app_secret,
                    "refresh_token": refresh,
                    "verification_token": sb.ebay_verification_token().expose_secret()})
            }
        };
        let mut text = serde_json::to_string_pretty(&creds)
            .map_err(|e| Failure::runtime(format!("cannot encode the credentials: {e}")))?;
        text.push('\n');
        let file = write_atomic(dir, &format!("{}.json", m.as_str()), text.as_bytes(), 0o600)?;
        args.extend([
            "--sandbox-ca".into(),
            ca.display().to_string(),
            "--credentials-file".into(),
            file.display().to_string(),
        ]);
        let quoted: Vec<String> = args.iter().map(|a| sh(a)).collect();
        commands
            .add
            .push(format!("stockade connection add {}", quoted.join(" ")));
        // The same connection moved to this run: URLs, CA and credentials.
        let mut edit = vec![sh(m.as_str())];
        let mut i = 0;
        while i + 1 < args.len() {
            if matches!(
                args[i].as_str(),
                "--api-url" | "--auth-url" | "--sandbox-ca" | "--credentials-file"
            ) {
                edit.push(args[i].clone());
                edit.push(sh(&args[i + 1]));
            }
            i += 2;
        }
        commands
            .edit
            .push(format!("stockade connection edit {}", edit.join(" ")));
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh("https://127.0.0.1:4443"), "https://127.0.0.1:4443");
        assert_eq!(sh("/tmp/my dir/x.json"), "'/tmp/my dir/x.json'");
        assert_eq!(sh("it's"), "'it'\\''s'");
        assert_eq!(sh(""), "''");
    }
}
