//! `stockade serve`: the HTTPS server. Checks the settings, builds the application
//! ([`stockade_app::App`]), records the pid file, answers reloads (SIGHUP) and runs
//! until Ctrl-C or SIGTERM.

use stockade_app::{App, BuildOptions};

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
    let role = stockade_app::Role::parse(&args.role)?;
    let vault = open_vault(settings).await?;
    let server = match check_serve(settings, args.listen.as_deref(), args.self_signed) {
        Ok((_, server)) => server,
        Err(e) => {
            vault.close().await;
            return Err(e);
        }
    };
    // On SQLite one serve per database (held until this process ends, even on SIGKILL);
    // taken after the refusals above, which write nothing.
    let _serve_lock = match stockade_app::role::lock_single_serve(&settings.database, role) {
        Ok(lock) => lock,
        Err(e) => {
            vault.close().await;
            return Err(e.into());
        }
    };
    let env = vault.environment();
    let app = App::build_with(
        settings,
        BuildOptions {
            listen: Some(server.listen),
            vault: Some(vault),
            role,
            ..BuildOptions::default()
        },
    )
    .await?;
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
            gateway: app.gateway().clone(),
            alerts: app.alerts().clone(),
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
    });
    write_pid_file(&settings.data_dir);
    tracing::info!(
        role = role.as_str(),
        "stockade {} listening on {}",
        env,
        app.base_url()
    );
    // A machine-readable line for scripts and tests.
    println!("listening on {}", app.base_url());
    let shutdown = async move {
        stop_signal().await;
        let _ = reload_stop.send(true);
    };
    let served = app.run_until_stopped(shutdown).await;
    let _ = reload_task.await;
    remove_pid_file(&settings.data_dir);
    Ok(served?)
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
