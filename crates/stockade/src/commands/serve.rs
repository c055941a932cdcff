//! `stockade serve`: the HTTPS server.

use std::sync::Arc;
use std::time::Duration;

use stockade_access::Access;
use stockade_server::{AppState, ServeOptions, tls};

use super::open_vault;
use super::reload::{
    Reloader, ReloaderParts, check_listen, check_serve, remove_pid_file, write_pid_file,
};
use crate::cli::{GlobalArgs, ServeArgs};
use crate::exit::Failure;
use crate::settings::Settings;

pub async fn run(settings: &Settings, global: &GlobalArgs, args: ServeArgs) -> Result<(), Failure> {
    check_listen(settings, args.listen.as_deref())?;
    // Refusals first, before anything is written: the environment and the data directory
    // (opening the vault checks both and writes nothing when it refuses), then the checks
    // `stockade config` and every reload share (a production server without a
    // certificate, unreadable certificates, egress and alert settings).
    let vault = open_vault(settings).await?;
    let server = match check_serve(settings, args.listen.as_deref(), args.self_signed) {
        Ok((_, server)) => server,
        Err(e) => {
            vault.close().await;
            return Err(e);
        }
    };
    let env = vault.environment();
    let tls_config = if server.plain_http {
        tracing::warn!(
            "serving plain HTTP on {} for a reverse proxy on this host; the proxy must terminate TLS 1.2+",
            server.listen
        );
        None
    } else {
        let (cert, key) = match (&server.tls_cert, &server.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => {
                let dir = settings.data_dir.join("tls");
                let dev = tls::development_cert(&dir, Some(server.listen.ip()))
                    .map_err(|e| Failure::runtime(e.to_string()))?;
                if dev.generated {
                    tracing::warn!(
                        "no TLS certificate configured: generated a development certificate authority {} and server certificate {} (valid for a year); clients must trust the CA. Configure [server] tls_cert and tls_key for production",
                        dev.ca.display(),
                        dev.cert.display()
                    );
                } else {
                    tracing::warn!(
                        "no TLS certificate configured: using the development certificate {} (CA {})",
                        dev.cert.display(),
                        dev.ca.display()
                    );
                }
                (dev.cert, dev.key)
            }
        };
        Some(tls::server_config(&cert, &key).map_err(|e| Failure::usage(e.to_string()))?)
    };
    // The one outbound client of this process: its request log and anomaly events go to
    // this environment's database and are pruned after [egress] log_retention.
    let gateway =
        stockade_egress::Gateway::new(settings.egress_config(env), Some(vault.store().clone()))
            .map_err(|e| Failure::usage(format!("[egress] configuration: {e}")))?;
    let vault = Arc::new(vault);
    let access = Arc::new(Access::new(vault.clone(), settings.access.clone()).await?);
    // Sync runs in every server process: webhooks in, pushes out, polls, reconciliation.
    let sync =
        stockade_sync::SyncEngine::start(vault.clone(), gateway.clone(), settings.sync_options())
            .await
            .map_err(|e| Failure::runtime(format!("cannot start sync: {e}")))?;
    // Alerts: every event (sync failures, egress anomalies, security events) is routed to
    // the configured channels; with none configured they stay on the dashboard.
    let alerts = stockade_alerts::Alerts::start(
        vault.store().clone(),
        vault.clone(),
        &gateway,
        settings.alerts.clone(),
    )
    .await
    .map_err(|e| Failure::runtime(format!("cannot start alerts: {e}")))?;
    // Reloads (SIGHUP, `stockade config reload`) change the egress allowlist and the
    // alert channels of this process; the answer goes to the log and DATA_DIR/serve.reload.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| Failure::runtime(format!("cannot listen for SIGHUP: {e}")))?;
    let mut reloader = Reloader::new(
        settings,
        ReloaderParts {
            global: global.clone(),
            listen: args.listen.clone(),
            self_signed: args.self_signed,
            env,
            gateway: gateway.clone(),
            vault: vault.clone(),
            alerts,
        },
    );
    let (reload_stop, mut reload_stopped) = tokio::sync::watch::channel(false);
    let reload_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hangup.recv() => match got {
                    Some(()) => reloader.reload("SIGHUP").await,
                    None => break,
                },
                _ = reload_stopped.changed() => break,
            }
        }
        reloader
    });
    write_pid_file(&settings.data_dir);
    let state = AppState {
        access,
        trust_forwarded_for: server.trust_forwarded_for,
        plain_http: server.plain_http,
        hooks: Some(Arc::new(sync.clone())),
    };
    let options = ServeOptions {
        listen: server.listen,
        tls: tls_config,
        ban_refresh: Duration::from_secs(2),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let scheme = if server.plain_http { "http" } else { "https" };
    tokio::spawn(async move {
        if let Ok(addr) = rx.await {
            tracing::info!("stockade {} listening on {}://{}", env, scheme, addr);
            // A machine-readable line for scripts and tests.
            println!("listening on {scheme}://{addr}");
        }
    });
    // The audit head mark follows the chain off the commit path: at most once a second,
    // and only when the head moved (one indexed read, one small fsynced file).
    let head_path = super::audit_head_path(settings);
    let head_vault = vault.clone();
    let head_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = head_vault.record_audit_head(&head_path).await {
                tracing::warn!("could not record the audit head mark: {e}");
            }
        }
    });
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    };
    let served = stockade_server::serve(state, options, tx, shutdown)
        .await
        .map_err(|e| match e {
            stockade_server::ServeError::PlainHttpNotLoopback(_) => Failure::usage(e.to_string()),
            _ => Failure::runtime(e.to_string()),
        });
    sync.shutdown().await;
    let _ = reload_stop.send(true);
    if let Ok(reloader) = reload_task.await {
        reloader.shutdown().await;
    }
    remove_pid_file(&settings.data_dir);
    head_task.abort();
    if let Err(e) = vault
        .record_audit_head(&super::audit_head_path(settings))
        .await
    {
        tracing::warn!("could not record the audit head mark: {e}");
    }
    if let Err(e) = gateway.flush().await {
        tracing::warn!("the last egress log rows could not be written: {e}");
    }
    served
}
