//! A throw-away test CA and a server certificate for 127.0.0.1 / localhost, and the
//! rustls server configuration (TLS 1.3 and 1.2, aws-lc-rs, HTTP/1.1).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::SandboxError;

/// The generated certificate material.
pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

fn gen_err(e: rcgen::Error) -> SandboxError {
    SandboxError::Tls(e.to_string())
}

pub(crate) fn generate() -> Result<TlsMaterial, SandboxError> {
    let ca_key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Stockade sandbox test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(gen_err)?;

    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Stockade sandbox");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, &ca).map_err(gen_err)?;

    let chain = vec![cert.der().clone(), ca.der().clone()];
    let key_der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
        .map_err(|e| SandboxError::Tls(e.to_string()))?;
    let server_config = server_config(chain, key_der)?;
    Ok(TlsMaterial {
        ca_pem: ca.pem(),
        server_config,
    })
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, SandboxError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SandboxError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| SandboxError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A new throw-away CA (PEM) and a rustls server configuration with a certificate for
/// 127.0.0.1 / localhost signed by it: for a webhook receiver in another process than
/// the simulators (they trust the CA through `stockade sandbox --webhook-ca`).
pub fn receiver_tls() -> Result<(String, Arc<rustls::ServerConfig>), SandboxError> {
    let m = generate()?;
    Ok((m.ca_pem, m.server_config))
}
