//! TLS as served: connect to the running server's listening address with rustls, once
//! offering only TLS 1.3 and once only TLS 1.2, and record what was negotiated (protocol,
//! cipher suite) and the served certificate's validity; then ask `openssl s_client` for
//! TLS 1.1 and 1.0, which must be refused. The certificate is read, not trusted: the
//! probe measures what the server offers, whoever signed it.
//!
//! Invariants: a server that is not running is said so (cannot check as served), never a
//! pass; a missing `openssl` makes only its lines "cannot check"; every connection has a
//! short time limit.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use stockade_server::compliance::Arg;

use super::host::{Fact, Runner, State, fact, text};

const LIMIT: Duration = Duration::from_secs(3);

/// Where to connect for a server listening on `listen` (an unspecified address is
/// reached on loopback).
pub(crate) fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Reads the served certificate without judging its issuer (signatures are still
/// checked, so the handshake is a real one).
#[derive(Debug)]
struct ReadOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What one handshake negotiated.
struct Negotiated {
    protocol: String,
    suite: String,
    cert: Option<Vec<u8>>,
}

fn handshake(
    addr: SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<Negotiated, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect_timeout(&addr, LIMIT).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    let n = Negotiated {
        protocol: conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
            .replace("TLSv1_", "TLS 1."),
        suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
        cert: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec()),
    };
    // Close politely; the answer is already known.
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
    let _ = sock.read(&mut [0u8; 1]);
    Ok(n)
}

/// Whether anything listens at `addr`.
fn listening(addr: SocketAddr) -> Result<(), String> {
    TcpStream::connect_timeout(&addr, LIMIT)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The as-served facts for the TLS clause (blocking: run on a blocking thread).
pub(crate) fn probe(listen: SocketAddr, runner: &dyn Runner, now: i64) -> Vec<Fact> {
    let addr = target(listen);
    let mut out = Vec::new();
    if let Err(why) = listening(addr) {
        out.push(fact(
            State::Unseen,
            "tls_probe_down",
            vec![text(addr.to_string()), text(why)],
        ));
        return out;
    }
    let mut cert = None;
    for (label, version) in [
        ("TLS 1.3", &rustls::version::TLS13),
        ("TLS 1.2", &rustls::version::TLS12),
    ] {
        match handshake(addr, version) {
            Ok(n) => {
                out.push(fact(
                    State::Holds,
                    "tls_served",
                    vec![
                        text(addr.to_string()),
                        text(label),
                        text(n.protocol),
                        text(n.suite),
                    ],
                ));
                cert = cert.or(n.cert);
            }
            Err(why) => out.push(fact(
                // Refusing TLS 1.2 still meets "1.2 or later"; refusing 1.3 is said too.
                State::Info,
                "tls_served_refused",
                vec![text(addr.to_string()), text(label), text(why)],
            )),
        }
    }
    if !out.iter().any(|f| f.state == State::Holds) {
        out.push(fact(State::Broken, "tls_served_none", vec![]));
    }
    match cert.as_deref().and_then(super::cert::validity) {
        Some((from, to)) => {
            let valid = (from..to).contains(&now);
            out.push(fact(
                if valid { State::Holds } else { State::Broken },
                if valid {
                    "tls_served_cert"
                } else {
                    "tls_served_cert_expired"
                },
                vec![Arg::Time(from), Arg::Time(to)],
            ));
        }
        None if cert.is_some() => out.push(fact(State::Info, "tls_cert_unknown", vec![])),
        None => {}
    }
    for (label, flag) in [("TLS 1.1", "-tls1_1"), ("TLS 1.0", "-tls1")] {
        out.push(old_version(runner, addr, label, flag));
    }
    out
}

/// `openssl s_client` offering only an old version (at security level 0, so the client
/// itself does not refuse to try).
fn old_version(runner: &dyn Runner, addr: SocketAddr, label: &str, flag: &str) -> Fact {
    let connect = addr.to_string();
    let args = [
        "s_client",
        "-connect",
        &connect,
        flag,
        "-cipher",
        "DEFAULT@SECLEVEL=0",
    ];
    let Some(o) = runner.run("openssl", &args) else {
        return fact(
            State::Unseen,
            "tls_old_unchecked",
            vec![text(label), text("openssl is not installed on this host")],
        );
    };
    let all = format!("{}\n{}", o.stdout, o.stderr);
    if all.contains("unknown option") || all.contains("no protocols available") {
        return fact(
            State::Unseen,
            "tls_old_unchecked",
            vec![text(label), text(o.why())],
        );
    }
    let established = all
        .lines()
        .any(|l| l.contains("Cipher is") && !l.contains("(NONE)"));
    if established {
        fact(State::Broken, "tls_old_accepted", vec![text(label)])
    } else {
        fact(State::Holds, "tls_old_refused", vec![text(label)])
    }
}
