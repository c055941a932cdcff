//! The `stockade` binary: parses the command line, builds the settings once, runs one
//! command, and maps its outcome to an exit code (see `stockade --help`).

/// `println!` through [`output`]: a closed pipe ends the command quietly.
macro_rules! println {
    () => {
        $crate::output::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::print_line(format_args!($($arg)*))
    };
}

mod cli;
mod cli_backup;
// deploy:
mod cli_deploy;
// Compliance report: `stockade compliance report|verify`.
mod cli_compliance;
// Incident response: `stockade incident …`.
mod cli_incident;
// `bench sync --sandbox-process` and the `stockade sandbox` flags it uses.
#[cfg(feature = "dev-tools")]
mod cli_sandbox_bench;
mod commands;
mod exit;
mod output;
/// The settings types live in the application crate, so `App::build` takes them.
mod settings {
    pub use stockade_app::settings::*;
}

use std::process::ExitCode;

use clap::Parser;

fn log_level(default_info: bool) -> tracing::Level {
    match std::env::var("STOCKADE_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => tracing::Level::ERROR,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        "warn" => tracing::Level::WARN,
        _ if default_info => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    }
}

fn init_logging(default_info: bool, json: bool) {
    use std::io::IsTerminal;
    if json {
        // One JSON object per line for a log shipper (`[log] format = "json"`).
        tracing_subscriber::fmt()
            .json()
            .with_max_level(log_level(default_info))
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_current_span(false)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_max_level(log_level(default_info))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Whether `serve` logs JSON: `[log] format` of the settings it will run with (settings
/// that do not resolve log text; the command then reports why).
fn serve_logs_json(cli: &cli::Cli) -> bool {
    matches!(cli.command, cli::Command::Serve(_))
        && stockade_app::Settings::resolve(&cli.global.overrides())
            .is_ok_and(|s| s.log_format == stockade_app::settings::LogFormat::Json)
}

#[cfg(feature = "dev-tools")]
/// `stockade demo` logs to a file (its screen is the live summary): the file named by
/// `--log`, or a new one in the temp directory, recorded in the arguments for the demo
/// to print.
fn init_demo_logging(args: &mut cli::DemoArgs) -> Result<(), String> {
    let path = match &args.log {
        Some(p) => p.clone(),
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            std::env::temp_dir().join(format!("stockade-demo-{stamp}-{}.log", std::process::id()))
        }
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
    tracing_subscriber::fmt()
        .with_max_level(log_level(true))
        .with_writer(std::sync::Mutex::new(file))
        .with_target(false)
        .with_ansi(false)
        .init();
    args.log = Some(path);
    Ok(())
}

fn main() -> ExitCode {
    #[cfg_attr(not(feature = "dev-tools"), allow(unused_mut))]
    let mut cli = cli::Cli::parse();
    #[cfg(feature = "dev-tools")]
    if let cli::Command::Demo(args) = &mut cli.command {
        if let Err(e) = init_demo_logging(args) {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    } else {
        init_logging(
            matches!(cli.command, cli::Command::Serve(_)),
            serve_logs_json(&cli),
        );
    }
    #[cfg(not(feature = "dev-tools"))]
    init_logging(
        matches!(cli.command, cli::Command::Serve(_)),
        serve_logs_json(&cli),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) if failure.kind == exit::Kind::Interrupted => failure.exit_code(),
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    }
}
