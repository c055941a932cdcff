//! One function per command. Each opens what it needs (store, vault) from the settings.

mod access;
mod alert;
mod audit;
// backup:
mod backup;
// Audit mirror: `audit mirror init|status|verify`.
mod audit_mirror;
#[cfg(feature = "dev-tools")]
mod bench;
#[cfg(feature = "dev-tools")]
mod bench_alerts;
#[cfg(feature = "dev-tools")]
mod bench_console;
#[cfg(feature = "dev-tools")]
mod bench_console_seed;
#[cfg(feature = "dev-tools")]
mod bench_workflow;
// Retention: `stockade bench retention`.
#[cfg(feature = "dev-tools")]
mod bench_retention;
// backup:
#[cfg(feature = "dev-tools")]
mod bench_backup;
// Audit mirror: `bench mirror`.
#[cfg(feature = "dev-tools")]
mod bench_mirror;
// `bench sync --server-cpus`: CPU pinning.
#[cfg(feature = "dev-tools")]
mod bench_pin;
// The oversell window of `bench sync`.
#[cfg(feature = "dev-tools")]
mod bench_oversell;
mod catalog;
mod connection;
mod connection_edit;
mod credential;
#[cfg(feature = "dev-tools")]
mod demo;
#[cfg(feature = "dev-tools")]
mod demo_screen;
mod discover;
mod init;
mod key;
#[cfg(feature = "dev-tools")]
mod live;
mod reload;
// Retention: `stockade retention run|show`.
mod retention;
#[cfg(feature = "dev-tools")]
mod sandbox;
#[cfg(feature = "dev-tools")]
mod sandbox_creds;
mod serve;
mod workflow;
mod workflow_import;
mod workflow_new;
mod workflow_registry;
mod workflow_runs;
// deploy: `stockade deploy firewall|unit`.
mod deploy;
mod deploy_rules;
mod deploy_unit;
// Compliance report: `stockade compliance report|verify` and the signature trailer.
mod compliance;
mod compliance_sign;
// Incident response: `stockade incident …`.
mod incident;
// `bench sync --sandbox-process`: the simulators in a child process, the server against
// them, and the sandbox's ready file.
#[cfg(feature = "dev-tools")]
mod bench_child;
#[cfg(feature = "dev-tools")]
mod bench_sandbox_process;
// `bench sync --workers N`: more processes on the bench's PostgreSQL database.
#[cfg(feature = "dev-tools")]
mod bench_workers;
#[cfg(feature = "dev-tools")]
mod sandbox_lift;
#[cfg(feature = "dev-tools")]
mod sandbox_ready;

use stockade_core::Actor;
use stockade_store::Store;
use stockade_vault::Vault;

use crate::cli::{Cli, Command};
use crate::exit::Failure;
use crate::settings::Settings;

/// The actor recorded on audit rows written from the command line.
pub const CLI_ACTOR: Actor = Actor::System("cli");

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = Settings::resolve(&cli.global.overrides())?;
    // Init creates the database; config and workflow lint do not need one.
    let needs_db = !matches!(cli.command, Command::Init | Command::Config(_))
        && !matches!(&cli.command, Command::Workflow(c) if workflow::offline(c))
        && !matches!(&cli.command, Command::Backup(c) if c.offline())
        && !matches!(cli.command, Command::Deploy(_));
    if needs_db && !is_dev_tool(&cli.command) {
        check_database_exists(&settings)?;
    }
    // Commands that may append to the audit chain move its head mark afterwards.
    let writes = matches!(
        cli.command,
        Command::Init
            | Command::Migrate
            | Command::Key(_)
            | Command::User(_)
            | Command::Apikey(_)
            | Command::Ban(_)
            | Command::Connection(_)
            | Command::Sku(_)
            | Command::Stock(_)
            | Command::Alert(_)
            | Command::Credential(_)
    ) || matches!(&cli.command, Command::Workflow(c) if workflow::writes(c))
        || matches!(
            &cli.command,
            Command::Retention(crate::cli::RetentionCommand::Run { dry_run: false })
        )
        || matches!(&cli.command, Command::Backup(c) if !c.offline())
        || matches!(&cli.command, Command::Compliance(c) if c.writes())
        || matches!(&cli.command, Command::Incident(_));
    let result = run_command(&settings, &cli.global, cli.command).await;
    if writes && result.is_ok() {
        record_audit_head(&settings).await;
    }
    result
}

/// The dev-tools commands run their own throw-away environment: no database to check.
#[cfg(feature = "dev-tools")]
fn is_dev_tool(command: &Command) -> bool {
    matches!(
        command,
        Command::Demo(_) | Command::Sandbox(_) | Command::Bench(_)
    )
}

/// A production build (without `dev-tools`) has none of them.
#[cfg(not(feature = "dev-tools"))]
fn is_dev_tool(_: &Command) -> bool {
    false
}

async fn run_command(
    settings: &Settings,
    global: &crate::cli::GlobalArgs,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Init => init::init(settings).await,
        Command::Migrate => init::migrate(settings).await,
        Command::Key(cmd) => key::run(settings, cmd).await,
        Command::Audit(cmd) => audit::run(settings, cmd).await,
        Command::Config(args) => match args.action {
            None => show_config(settings),
            Some(crate::cli::ConfigAction::Reload { wait }) => {
                reload::request(settings, wait).await
            }
        },
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(settings, global, args).await,
        Command::User(cmd) => access::user(settings, cmd).await,
        Command::Apikey(cmd) => access::apikey(settings, cmd).await,
        Command::Ban(cmd) => access::ban(settings, cmd).await,
        Command::Connection(cmd) => connection::run(settings, cmd).await,
        Command::Sku(cmd) => catalog::sku(settings, cmd).await,
        Command::Stock(cmd) => catalog::stock(settings, cmd).await,
        #[cfg(feature = "dev-tools")]
        Command::Sandbox(args) => sandbox::run(args).await,
        Command::Alert(cmd) => alert::run(settings, cmd).await,
        Command::Workflow(cmd) => workflow::run(settings, cmd).await,
        Command::Credential(cmd) => credential::run(settings, cmd).await,
        Command::Retention(cmd) => retention::run(settings, cmd).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Sync(args)) => bench::sync(args).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::SyncWorker(args)) => {
            bench_workers::worker(args).await
        }
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Alerts(args)) => bench::alerts(args).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Workflow(args)) => {
            bench_workflow::workflow(args).await
        }
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Console(args)) => {
            bench_console::console(args).await
        }
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Retention(args)) => {
            bench_retention::run(args).await
        }
        // backup:
        Command::Backup(cmd) => backup::run(settings, cmd).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Backup(args)) => bench_backup::run(args).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench(crate::cli::BenchCommand::Mirror(args)) => bench_mirror::mirror(args).await,
        // deploy:
        Command::Deploy(cmd) => deploy::run(settings, cmd).await,
        // Compliance report:
        Command::Compliance(cmd) => compliance::run(settings, cmd).await,
        Command::Incident(cmd) => incident::run(settings, cmd).await,
    }
}

/// A mistyped `--data-dir` is named as such before anything asks for `--env`: a SQLite
/// database that does not exist is the first thing to say.
fn check_database_exists(settings: &Settings) -> Result<(), Failure> {
    let stockade_store::DatabaseUrl::Sqlite(path) = &settings.database else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    let dir = &settings.data_dir;
    let why = if !dir.exists() {
        format!("the data directory {} does not exist", dir.display())
    } else {
        format!("{} holds no database", dir.display())
    };
    Err(Failure::usage(format!(
        "no Stockade database at {} ({why}): check --data-dir (or STOCKADE_DATA_DIR, --database-url), or create an environment with `stockade init --env dev --data-dir {}`",
        path.display(),
        dir.display()
    )))
}

/// Where the audit head mark of this data directory is kept.
pub fn audit_head_path(settings: &Settings) -> std::path::PathBuf {
    settings.data_dir.join(stockade_vault::HEAD_FILE)
}

/// Move the audit head mark to the chain's head (best effort: a failure is logged; the
/// mark is a lower bound, and `audit verify` reports a missing one).
pub async fn record_audit_head(settings: &Settings) {
    let Ok(vault) = open_vault(settings).await else {
        return;
    };
    if let Err(e) = vault.record_audit_head(&audit_head_path(settings)).await {
        tracing::warn!("could not record the audit head mark: {e}");
    }
    vault.close().await;
}

/// Open the store of an initialised environment.
pub async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    let env = settings.require_env()?;
    Ok(Store::open(&settings.database, env, &settings.store).await?)
}

/// Open the store and its vault (checks the master key against the keyring).
pub async fn open_vault(settings: &Settings) -> Result<Vault, Failure> {
    Ok(stockade_app::open_vault(settings).await?)
}

fn show_config(settings: &Settings) -> Result<(), Failure> {
    match &settings.config_file {
        Some(p) => println!("config file: {}", p.display()),
        None => println!("config file: (none)"),
    }
    for (key, value, source) in &settings.provenance {
        println!("{key:<29} {value:<45} [{source}]");
    }
    // What `stockade serve` would refuse is refused here too (the same checks).
    reload::check_serve(settings, None, false)?;
    Ok(())
}
