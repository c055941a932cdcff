//! [`TlsProxy`]: a loopback TLS terminator in front of a plain-HTTP server, so a client
//! that speaks only HTTPS (the egress gateway) can reach a local test service (a real
//! NocoDB in the integration tests). It accepts TLS on an ephemeral 127.0.0.1 port with
//! a certificate from a fresh test CA ([`TlsProxy::ca_pem`]) and copies bytes both ways
//! to the upstream address; it reads and keeps nothing.

use std::net::SocketAddr;

use axum_server::accept::Accept;
use tokio::net::{TcpListener, TcpStream};

use crate::SandboxError;

/// A running TLS terminator. Dropping it (or [`TlsProxy::shutdown`]) stops accepting.
pub struct TlsProxy {
    /// PEM of the test CA that signed the proxy's certificate (trust it in clients).
    pub ca_pem: String,
    /// `https://127.0.0.1:PORT`: the upstream's base URL through the proxy.
    pub base_url: String,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TlsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsProxy")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TlsProxy {
    /// Start terminating TLS for `upstream` (a plain TCP address; needs a tokio runtime).
    pub async fn start(upstream: SocketAddr) -> Result<TlsProxy, SandboxError> {
        let material = crate::tls::generate()?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| SandboxError::Bind(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SandboxError::Bind(e.to_string()))?;
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(material.server_config),
        );
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok((mut tls, ())) = acceptor.accept(tcp, ()).await else {
                        return;
                    };
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        Ok(TlsProxy {
            ca_pem: material.ca_pem,
            base_url: format!("https://{addr}"),
            addr,
            task,
        })
    }

    /// Stop accepting (connections in flight end with their peers).
    pub async fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
