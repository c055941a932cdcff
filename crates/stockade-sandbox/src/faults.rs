//! Fault injection: latency, 5xx, 429, storms, hangs, malformed bodies, dropped connections.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum_server::accept::Accept;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::resp;
use crate::sim::Sim;

/// Faults injected into one marketplace's API answers (not into `/_sandbox/` admin
/// routes). Rates are probabilities in `[0, 1]` drawn independently per request, in the
/// order drop, timeout, error, throttle, malformed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every request before it is handled.
    pub latency_ms: u64,
    /// Share of requests answered with the marketplace's HTTP 500 body (not processed).
    pub error_rate: f64,
    /// Share of requests answered with the marketplace's 429 body (not processed).
    pub throttle_rate: f64,
    /// Until this Unix-milliseconds time every request is answered 429 (a storm).
    pub storm_until_ms: i64,
    /// Share of requests that hang (never answered, not processed) until the client
    /// gives up.
    pub timeout_rate: f64,
    /// Share of requests that are processed but answered 200 with a broken body
    /// (an HTML error page or truncated JSON).
    pub malformed_rate: f64,
    /// Share of requests whose connection is closed without an answer (not processed).
    pub drop_rate: f64,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults::default()
    }

    fn is_quiet(&self) -> bool {
        self == &Faults::default()
    }
}

/// Per-connection kill switches, keyed by the peer address the handler sees.
pub(crate) type KillRegistry = Arc<Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>>;

/// Wraps each accepted TCP stream so a handler can close its connection without an
/// answer (the `drop_rate` fault). Also sets `TCP_NODELAY`.
#[derive(Clone, Debug, Default)]
pub(crate) struct KillAcceptor {
    pub registry: KillRegistry,
}

impl<S> Accept<TcpStream, S> for KillAcceptor {
    type Stream = KillStream;
    type Service = S;
    type Future = std::future::Ready<io::Result<(KillStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let _ = stream.set_nodelay(true);
        let flag = Arc::new(AtomicBool::new(false));
        let peer = stream.peer_addr().ok();
        if let (Some(peer), Ok(mut map)) = (peer, self.registry.lock()) {
            map.insert(peer, flag.clone());
        }
        std::future::ready(Ok((
            KillStream {
                inner: stream,
                flag,
                peer,
                registry: self.registry.clone(),
            },
            service,
        )))
    }
}

/// A TCP stream that fails every read and write once its flag is set.
#[derive(Debug)]
pub(crate) struct KillStream {
    inner: TcpStream,
    flag: Arc<AtomicBool>,
    peer: Option<SocketAddr>,
    registry: KillRegistry,
}

impl Drop for KillStream {
    fn drop(&mut self) {
        if let (Some(peer), Ok(mut map)) = (self.peer, self.registry.lock()) {
            map.remove(&peer);
        }
    }
}

fn killed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "sandbox fault: connection dropped",
    )
}

impl AsyncRead for KillStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.flag.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.flag.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.flag.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.flag.load(Ordering::Relaxed) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Close the connection of the request from `peer` without an answer.
fn dropped(sim: &Sim, peer: Option<SocketAddr>) -> Response {
    if let Some(peer) = peer
        && let Ok(map) = sim.kill_registry.lock()
        && let Some(flag) = map.get(&peer)
    {
        flag.store(true, Ordering::Relaxed);
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

const HTML: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n";

/// The middleware applying the marketplace's current faults.
pub(crate) async fn apply(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_sandbox/") {
        return next.run(req).await;
    }
    let faults = sim.faults();
    if faults.is_quiet() {
        return next.run(req).await;
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.storm_until_ms > stockade_core::time::now_ms() {
        return resp::throttled(sim.marketplace, 1.0);
    }
    let (drop, hang, error, throttle, malformed) = {
        let mut rng = sim.fault_rng();
        (
            rng.chance(faults.drop_rate),
            rng.chance(faults.timeout_rate),
            rng.chance(faults.error_rate),
            rng.chance(faults.throttle_rate),
            rng.chance(faults.malformed_rate),
        )
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if drop {
        return dropped(&sim, peer);
    }
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return dropped(&sim, peer);
    }
    if error {
        return resp::server_error(sim.marketplace);
    }
    if throttle {
        return resp::throttled(sim.marketplace, 1.0);
    }
    let response = next.run(req).await;
    if malformed {
        let html = sim.fault_rng().chance(0.5);
        let mut r = if html {
            let mut r = Response::new(Body::from(HTML));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            r
        } else {
            let (_, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, 8 << 20)
                .await
                .unwrap_or_default();
            let cut = bytes.len() / 2;
            let mut r = Response::new(Body::from(bytes.slice(..cut)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        };
        *r.status_mut() = StatusCode::OK;
        return r;
    }
    response
}
