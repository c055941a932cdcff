//! TLS: TLS 1.2 and 1.3 only (rustls has no code for older versions), the aws-lc-rs
//! provider, HTTP/1.1 over ALPN. A configured certificate and key, or a development
//! certificate authority and server certificate generated into the data directory.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the TLS certificate {path}: {reason}; set [server] tls_cert to a PEM file with the certificate chain"
    )]
    Cert { path: PathBuf, reason: String },
    #[error(
        "cannot read the TLS private key {path}: {reason}; set [server] tls_key to a PEM file with the private key"
    )]
    Key { path: PathBuf, reason: String },
    #[error("the TLS certificate and key do not fit together: {0}")]
    Config(String),
    #[error("cannot write the development certificate into {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot generate the development certificate: {0}")]
    Generate(String),
}

/// Where the server certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Generate (once) a development CA and server certificate in this directory.
    Development {
        dir: PathBuf,
    },
}

/// Paths of a development certificate set.
#[derive(Debug, Clone)]
pub struct DevCert {
    /// The CA certificate clients should trust.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether it was generated just now.
    pub generated: bool,
}

/// Build the rustls server configuration: TLS 1.3 and 1.2, nothing older.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long a generated certificate is valid: a year (browsers cap public certificates
/// at 398 days; a development CA has no reason to outlive that).
pub const GENERATED_VALIDITY_S: u64 = 365 * 86_400;
/// A generated certificate starts this far in the past, for clients with a slow clock.
pub const GENERATED_BACKDATE_S: u64 = 3600;
/// A generated set older than this (30 days before it expires) is replaced at start.
const RENEW_AFTER_S: u64 = GENERATED_VALIDITY_S - 30 * 86_400;

/// Set `not_before` and `not_after` of a certificate generated at `now` (Unix seconds).
/// (rcgen's default is 1975 to 4096.)
fn set_validity(params: &mut rcgen::CertificateParams, now: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before =
        epoch + std::time::Duration::from_secs(now.saturating_sub(GENERATED_BACKDATE_S));
    params.not_after = epoch + std::time::Duration::from_secs(now + GENERATED_VALIDITY_S);
}

/// Whether a generated set at these paths is missing or due for renewal.
fn needs_generating(set: &DevCert, now: std::time::SystemTime) -> bool {
    [&set.ca, &set.cert, &set.key].iter().any(|p| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .map_or(true, |written| {
                now.duration_since(written)
                    .is_ok_and(|age| age.as_secs() > RENEW_AFTER_S)
            })
    })
}

/// The development certificate in `dir`, generated on first use (valid for a year from
/// an hour ago, and replaced 30 days before it expires). The server certificate names
/// `localhost`, 127.0.0.1, ::1 and `extra_ip` (the listen address, if specific).
pub fn development_cert(dir: &Path, extra_ip: Option<IpAddr>) -> Result<DevCert, TlsError> {
    let set = DevCert {
        ca: dir.join("dev-ca.pem"),
        cert: dir.join("dev-cert.pem"),
        key: dir.join("dev-key.pem"),
        generated: false,
    };
    let now = std::time::SystemTime::now();
    if !needs_generating(&set, now) {
        return Ok(set);
    }
    let now_s = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Stockade development CA");
    set_validity(&mut ca_params, now_s);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err)?;

    let mut names = vec!["localhost".to_owned()];
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    if let Some(ip) = extra_ip.filter(|ip| !ip.is_unspecified() && !ips.contains(ip)) {
        ips.push(ip);
    }
    names.extend(ips.iter().map(|ip| ip.to_string()));
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Stockade development server");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, now_s);
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &ca).map_err(gen_err)?;

    std::fs::create_dir_all(dir).map_err(|e| TlsError::Write {
        path: dir.into(),
        reason: e.to_string(),
    })?;
    write_file(&set.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(
        &set.cert,
        format!("{}{}", cert.pem(), ca.pem()).as_bytes(),
        0o644,
    )?;
    write_file(&set.ca, ca.pem().as_bytes(), 0o644)?;
    Ok(DevCert {
        generated: true,
        ..set
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |e: std::io::Error| TlsError::Write {
        path: path.into(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
