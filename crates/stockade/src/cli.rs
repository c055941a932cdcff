//! The command line: global flags and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
EXIT CODES:
  0  done
  1  runtime failure (database unreachable, disk full, …): retry or investigate
  2  usage, configuration or environment error (wrong --env, bad or missing master key, …)
  3  a verification found a problem (audit chain altered, value that no longer decrypts)

ENVIRONMENT:
  STOCKADE_ENV, STOCKADE_DATA_DIR, STOCKADE_DATABASE_URL, STOCKADE_CONFIG   as the flags
  STOCKADE_MASTER_KEY_FILE   path of the master key file (default DATA_DIR/master.key)
  STOCKADE_MASTER_KEY        the master key itself (instead of a file)
  STOCKADE_LOG               log level: error, warn (default), info, debug";

/// Stockade keeps orders and stock in sync across TikTok Shop, Amazon and eBay, and
/// enforces the seller's security policy as code: encrypted PII, least privilege, a
/// hash-chained audit log, isolated environments.
#[derive(Debug, Parser)]
#[command(name = "stockade", version, after_long_help = EXIT_CODES, after_help = "Exit codes: 0 done, 1 runtime failure, 2 usage/config/environment error, 3 verification found a problem (see --help).")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes. Precedence: flag, then STOCKADE_* variable, then
/// stockade.toml, then the default.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Environment this process belongs to: prod, staging or dev. A database or key from
    /// another environment is refused.
    #[arg(long, global = true, env = "STOCKADE_ENV", value_name = "ENV")]
    pub env: Option<String>,
    /// Directory holding the database, the master key file and stockade.toml
    /// [default: ./stockade-data]
    #[arg(long, global = true, env = "STOCKADE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB [default: sqlite://DATA_DIR/stockade.db].
    /// Prefer the environment variable for URLs with passwords.
    #[arg(
        long,
        global = true,
        env = "STOCKADE_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Configuration file [default: DATA_DIR/stockade.toml if it exists]
    #[arg(long, global = true, env = "STOCKADE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new environment: data directory, master key file (0600), database,
    /// schema, keyring and the first audit rows.
    #[command(
        after_long_help = "Example:\n  stockade init --env prod --data-dir /var/lib/stockade\n\nThe master key file is written to DATA_DIR/master.key unless STOCKADE_MASTER_KEY_FILE or\nSTOCKADE_MASTER_KEY supplies one. Back it up separately from the data: losing it loses the data."
    )]
    Init,
    /// Apply pending schema migrations (each one audited).
    Migrate,
    /// Master and data keys: rotate, status, verify.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The hash-chained audit log: verify, export, hash a value.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Show the effective configuration and where each value came from (never secrets).
    Config,
    /// Run a throw-away dev environment: write encrypted records, rotate the master key,
    /// crypto-shred a seller, and show the verified audit chain.
    Demo(DemoArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a master key version to the key file and rewrap every data key under it, in one
    /// audited transaction. Data is not re-encrypted.
    Rotate,
    /// Master key versions, how many data keys each wraps, and destroyed keys.
    Status,
    /// Decrypt every stored credential to prove the keys open them (exit 3 if one fails).
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole chain; exit 0 with a one-line summary, or exit 3 naming the first
    /// altered, deleted, inserted or reordered row.
    Verify(VerifyArgs),
    /// Stream the audit log (one JSON object per line) to standard output.
    Export(ExportArgs),
    /// Print the hmac-sha256 tag of a value read from standard input, to find it in
    /// audit rows (PII never appears there in clear).
    HashValue,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A head printed by an earlier verify (SEQ:HASH). Also detects rows removed from the
    /// end or a chain rewritten from an earlier point.
    #[arg(long, value_name = "SEQ:HASH")]
    pub anchor: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Only rows after this sequence number.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: i64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the throw-away data directory instead of deleting it at the end.
    #[arg(long)]
    pub keep: bool,
}
