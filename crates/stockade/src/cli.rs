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
    /// Run the HTTPS server: sign-in, API, and (later) webhooks, sync and the dashboard.
    #[command(
        after_long_help = "TLS 1.2 and 1.3 only. Without [server] tls_cert/tls_key in stockade.toml, a development\ncertificate authority and server certificate are generated into DATA_DIR/tls (trust\nDATA_DIR/tls/dev-ca.pem in your client). Plain HTTP is possible only on a loopback address,\nfor a reverse proxy on the same host: [server] plain_http = true.\n\nExample:\n  stockade serve --env prod --listen 0.0.0.0:8443"
    )]
    Serve(ServeArgs),
    /// Manage users: add, list, disable, enable, set-role, reset-mfa, set-password.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys: create, list, revoke.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Manage address bans: list, add, remove.
    #[command(subcommand)]
    Ban(BanCommand),
    /// Run local simulators of TikTok Shop, Amazon SP-API and eBay (HTTPS, with their
    /// signing, tokens, rate limits and error bodies) and print their URLs and test
    /// credentials. For development and tests only; runs until Ctrl-C.
    #[command(
        after_long_help = "Each marketplace gets its own HTTPS server on 127.0.0.1 and a random port, signed by a\ntest certificate authority written to --ca-file. Faults can be injected at start\n(--fault amazon:throttle_rate=0.2) and at run time:\n  curl --cacert sandbox-ca.pem -X PUT https://127.0.0.1:PORT/_sandbox/faults \\\n       -H 'content-type: application/json' -d '{\"error_rate\":0.1}'\nOther admin routes under /_sandbox/ (loopback only): orders, orders/{id}/advance,\nlistings, deliveries, revoke, expire-tokens, webhook, rate-limits. See docs/marketplaces.md.\n\nExample:\n  stockade sandbox --seed 7 --skus 20 --orders 50"
    )]
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Seed of the simulated world: the same seed gives the same credentials, listings
    /// and orders.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sellers per marketplace.
    #[arg(long, default_value_t = 1)]
    pub sellers: usize,
    /// SKUs per seller.
    #[arg(long, default_value_t = 10)]
    pub skus: usize,
    /// Starting quantity of every listing.
    #[arg(long, default_value_t = 100)]
    pub quantity: u32,
    /// Orders to generate on each marketplace at start.
    #[arg(long, default_value_t = 0)]
    pub orders: usize,
    /// Turn the marketplaces' rate limits off (benchmarks).
    #[arg(long)]
    pub no_rate_limits: bool,
    /// A fault at start, as MARKETPLACE:NAME=VALUE (repeatable). Names: latency_ms,
    /// error_rate, throttle_rate, timeout_rate, malformed_rate, drop_rate (rates 0..1).
    #[arg(long = "fault", value_name = "M:NAME=VALUE")]
    pub faults: Vec<String>,
    /// Deliver a marketplace's webhooks/events to this HTTPS URL, as
    /// MARKETPLACE=URL (repeatable), e.g. tiktok=https://127.0.0.1:8443/hooks/tiktok/shop1.
    #[arg(long = "webhook", value_name = "M=URL")]
    pub webhooks: Vec<String>,
    /// A PEM certificate authority to trust when delivering webhooks (e.g. the
    /// development CA of `stockade serve`, DATA_DIR/tls/dev-ca.pem).
    #[arg(long, value_name = "PEM")]
    pub webhook_ca: Option<std::path::PathBuf>,
    /// Where to write the sandbox's test certificate authority (PEM).
    #[arg(long, value_name = "PATH", default_value = "sandbox-ca.pem")]
    pub ca_file: std::path::PathBuf,
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

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: server.listen in stockade.toml, else 127.0.0.1:8443].
    #[arg(long, env = "STOCKADE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from standard input (one line) instead of prompting.
    /// Passwords are never accepted as arguments.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user. The password is prompted for (or read with --password-stdin); the user
    /// enrolls TOTP at first sign-in.
    Add {
        /// The user's email address (case-insensitive).
        #[arg(long)]
        email: String,
        /// admin, operator, viewer or auditor.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List users (email, role, MFA state).
    List,
    /// Disable a user and end their sessions.
    Disable {
        /// The user's email address (case-insensitive).
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The user's email address (case-insensitive).
        #[arg(long)]
        email: String,
    },
    /// Change a user's role.
    SetRole {
        /// The user's email address (case-insensitive).
        #[arg(long)]
        email: String,
        /// admin, operator, viewer or auditor.
        #[arg(long)]
        role: String,
    },
    /// Remove a user's TOTP and recovery codes; they enroll again at next sign-in.
    ResetMfa {
        /// The user's email address (case-insensitive).
        #[arg(long)]
        email: String,
    },
    /// Set a new password (policy-checked) and end the user's sessions.
    SetPassword {
        /// The user's email address (case-insensitive).
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key; it is printed once and stored only as a hash.
    Create {
        /// A unique name for the key, e.g. erp-sync.
        #[arg(long)]
        name: String,
        /// admin, operator, viewer or auditor.
        #[arg(long)]
        role: String,
        /// Lifetime: 90d, 12h, 2w, … or `never`.
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by name or id; effective on its next request.
    Revoke {
        /// Key name or id.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BanCommand {
    /// List bans in force (--all: the whole history).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Ban an address.
    Add {
        /// IPv4 or IPv6 address.
        ip: String,
        /// 1h, 7d, … or `permanent`.
        #[arg(long, default_value = "1h")]
        duration: String,
    },
    /// Lift the bans on an address.
    Remove {
        /// IPv4 or IPv6 address.
        ip: String,
    },
}
