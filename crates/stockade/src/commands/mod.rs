//! One function per command. Each opens what it needs (store, vault) from the settings.

mod access;
mod alert;
mod audit;
mod bench;
mod bench_alerts;
mod catalog;
mod connection;
mod demo;
mod hooks;
mod init;
mod key;
mod live;
mod sandbox;
mod serve;

use stockade_core::Actor;
use stockade_store::Store;
use stockade_vault::Vault;

use crate::cli::{Cli, Command};
use crate::exit::Failure;
use crate::settings::Settings;

/// The actor recorded on audit rows written from the command line.
pub const CLI_ACTOR: Actor = Actor::System("cli");

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Init => init::init(&settings).await,
        Command::Migrate => init::migrate(&settings).await,
        Command::Key(cmd) => key::run(&settings, cmd).await,
        Command::Audit(cmd) => audit::run(&settings, cmd).await,
        Command::Config => show_config(&settings),
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(&settings, args).await,
        Command::User(cmd) => access::user(&settings, cmd).await,
        Command::Apikey(cmd) => access::apikey(&settings, cmd).await,
        Command::Ban(cmd) => access::ban(&settings, cmd).await,
        Command::Connection(cmd) => connection::run(&settings, cmd).await,
        Command::Sku(cmd) => catalog::sku(&settings, cmd).await,
        Command::Stock(cmd) => catalog::stock(&settings, cmd).await,
        Command::Sandbox(args) => sandbox::run(args).await,
        Command::Alert(cmd) => alert::run(&settings, cmd).await,
        Command::Bench(crate::cli::BenchCommand::Sync(args)) => bench::sync(args).await,
        Command::Bench(crate::cli::BenchCommand::Alerts(args)) => bench::alerts(args).await,
    }
}

/// Open the store of an initialised environment.
pub async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    let env = settings.require_env()?;
    Ok(Store::open(&settings.database, env, &settings.store).await?)
}

/// Open the store and its vault (checks the master key against the keyring).
pub async fn open_vault(settings: &Settings) -> Result<Vault, Failure> {
    let store = open_store(settings).await?;
    let master = settings.load_master_key(store.environment())?;
    Ok(Vault::open(store, master).await?)
}

fn show_config(settings: &Settings) -> Result<(), Failure> {
    match &settings.config_file {
        Some(p) => println!("config file: {}", p.display()),
        None => println!("config file: (none)"),
    }
    for (key, value, source) in &settings.provenance {
        println!("{key:<29} {value:<45} [{source}]");
    }
    Ok(())
}
