//! The TLS facts of the configuration, read without a server (the CLI's report): plain
//! HTTP behind a proxy, the configured certificate, or the development certificate in
//! DATA_DIR/tls if one was generated. Read-only: nothing is generated here.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::TlsFacts;
use crate::settings::Settings;

pub fn configured_tls(settings: &Settings) -> TlsFacts {
    if settings.server.plain_http {
        return TlsFacts::PlainHttp;
    }
    let (path, development) = match &settings.server.tls_cert {
        Some(c) => (c.clone(), false),
        None => (settings.data_dir.join("tls").join("dev-cert.pem"), true),
    };
    let cert = CertificateDer::from_pem_file(&path)
        .ok()
        .map(|c| c.as_ref().to_vec());
    TlsFacts::Served { cert, development }
}
