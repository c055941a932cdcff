//! A loopback TCP proxy in front of the test PostgreSQL, to restart "the database" under
//! a running server without touching the real one (other tests share it): [`PgProxy::
//! restart`] does what a restart does to its clients: it stops accepting, terminates
//! the backends of the connections it carries (`pg_terminate_backend`: each client reads
//! FATAL 57P01 `terminating connection due to administrator command`), cuts whatever is
//! left, refuses connections for the outage, then accepts again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Conns {
    /// id → (the upstream socket's local port, as PostgreSQL sees the client; the task).
    open: HashMap<u64, (u16, JoinHandle<()>)>,
}

pub(crate) struct PgProxy {
    /// The listening address (the same across restarts).
    pub(crate) addr: SocketAddr,
    upstream: SocketAddr,
    conns: Arc<Mutex<Conns>>,
    next: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
}

/// `host:port` of a `postgres://user:pass@host:port/db?…` URL (port 5432 when absent).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hp = &rest[..end];
    if hp.contains(':') {
        hp.to_owned()
    } else {
        format!("{hp}:5432")
    }
}

impl PgProxy {
    /// A proxy on a free loopback port forwarding to the server `url` names.
    pub(crate) async fn start(url: &str) -> PgProxy {
        let upstream = tokio::net::lookup_host(host_port(url))
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut p = PgProxy {
            addr,
            upstream,
            conns: Arc::default(),
            next: Arc::default(),
            acceptor: None,
        };
        p.acceptor = Some(p.accept(listener));
        p
    }

    /// `url` with its host and port replaced by the proxy's.
    pub(crate) fn url(&self, url: &str) -> String {
        url.replacen(&host_port(url), &self.addr.to_string(), 1)
    }

    fn accept(&self, listener: TcpListener) -> JoinHandle<()> {
        let (upstream, conns, next) = (self.upstream, self.conns.clone(), self.next.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let port = server.local_addr().map(|a| a.port()).unwrap_or(0);
                let id = next.fetch_add(1, Ordering::Relaxed);
                let done = conns.clone();
                let task = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    done.lock().unwrap().open.remove(&id);
                });
                conns.lock().unwrap().open.insert(id, (port, task));
            }
        })
    }

    /// Connections open through the proxy right now.
    pub(crate) fn open(&self) -> usize {
        self.conns.lock().unwrap().open.len()
    }

    /// Restart: refuse new connections, terminate the carried backends through
    /// `direct_url` (a connection not through the proxy), cut the rest, stay down for
    /// `down`, then accept again. Returns how many backends were terminated.
    pub(crate) async fn restart(&mut self, direct_url: &str, down: Duration) -> i64 {
        if let Some(a) = self.acceptor.take() {
            a.abort();
            let _ = a.await;
        }
        let ports: Vec<String> = self
            .conns
            .lock()
            .unwrap()
            .open
            .values()
            .map(|(p, _)| p.to_string())
            .collect();
        let mut terminated = 0;
        if !ports.is_empty() {
            let sql = format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE client_port IN ({})) x WHERE t",
                ports.join(", ")
            );
            let sql: &'static str = Box::leak(sql.into_boxed_str());
            terminated = crate::scale_out::rows::<i64>(direct_url, sql)
                .await
                .first()
                .copied()
                .unwrap_or(0);
            // Let the FATAL messages reach the clients before the cut.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (_, (_, task)) in self.conns.lock().unwrap().open.drain() {
            task.abort();
        }
        tokio::time::sleep(down).await;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.acceptor = Some(self.accept(listener));
        terminated
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        for (_, (_, task)) in self.conns.lock().unwrap().open.drain() {
            task.abort();
        }
    }
}

#[test]
fn host_port_of_urls() {
    assert_eq!(
        host_port("postgres://u:p@127.0.0.1:5433/db?x=1"),
        "127.0.0.1:5433"
    );
    assert_eq!(host_port("postgres://localhost/db"), "localhost:5432");
    assert_eq!(host_port("postgres://u@h:1?a=b"), "h:1");
}
