//! `stockade sandbox --lift-limits | --lift-delivery-limits` (the simulators' own limits
//! lifted for benchmarks, as the in-process `bench sync` sets them) and how a sandbox
//! started by another program stops.

use std::time::Duration;

use stockade_egress::EgressConfig;
use stockade_sandbox::SandboxConfig;

use crate::exit::Failure;

/// Deliveries as the in-process bench runs them: many in flight, bodies not kept, a
/// short log, Amazon feeds in 50 ms steps.
pub fn lift_deliveries(config: &mut SandboxConfig) {
    config.record_delivery_bodies = false;
    config.delivery_log_limit = 10_000;
    config.delivery_concurrency = 128;
    config.feed_step = Duration::from_millis(50);
}

/// The delivery gateway without per-host pacing or circuit breaker, 10 s per attempt.
pub fn lift_delivery_egress(egress: &mut EgressConfig) {
    egress.host_rate = (1_000_000.0, 1_000_000);
    egress.breaker_failures = 1_000_000;
    egress.request_timeout = Duration::from_secs(10);
}

/// Wait for Ctrl-C (SIGINT) or SIGTERM, or, when `stdin_eof` (started by a program with
/// `--ready-file`), for standard input to close: the program that started the sandbox
/// ended, however it ended, and the sandbox must not outlive it.
pub async fn until_stopped(stdin_eof: bool) -> Result<(), Failure> {
    let closed = stdin_closed(stdin_eof);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::runtime(format!("cannot wait for SIGTERM: {e}")))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            r.map_err(|e| Failure::runtime(format!("cannot wait for Ctrl-C: {e}")))
        }
        _ = term.recv() => Ok(()),
        () = closed => Ok(()),
    }
}

/// Resolves when standard input reaches its end (never when `watch` is false).
async fn stdin_closed(watch: bool) {
    let rx = watch
        .then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name("stdin-watch".into())
                .spawn(move || {
                    let mut sink = [0u8; 256];
                    let mut stdin = std::io::stdin();
                    // Read (and ignore) until end of file or an error.
                    while let Ok(n) = std::io::Read::read(&mut stdin, &mut sink) {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = tx.send(());
                })
                .ok()
                .map(|_| rx)
        })
        .flatten();
    match rx {
        Some(rx) => {
            let _ = rx.await;
        }
        None => std::future::pending::<()>().await,
    }
}
