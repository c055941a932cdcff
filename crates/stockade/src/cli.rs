//! The command line: global flags and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
EXIT CODES:
  0  done
  1  runtime failure (database unreachable, disk full, …): retry or investigate
  2  usage, configuration or environment error (wrong --env, bad or missing master key, …)
  3  a verification found a problem (audit chain altered, value that no longer decrypts)
  130  the demo was stopped with Ctrl-C (after cleaning up)

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

impl GlobalArgs {
    /// The flags as overrides of the config file (defaults, then stockade.toml, then
    /// STOCKADE_* variables, then these).
    pub fn overrides(&self) -> stockade_app::Overrides {
        stockade_app::Overrides {
            env: self.env.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            config: self.config.clone(),
        }
    }
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
    /// Show the effective configuration and where each value came from (never secrets),
    /// and check it as `stockade serve` would: exit 2 on what serve would refuse.
    /// `stockade config reload` makes the running server take on changed settings.
    Config(ConfigArgs),
    #[cfg(feature = "dev-tools")]
    /// Run a live throw-away dev environment: the three marketplace simulators, a catalog
    /// on every channel, the real server and sync engine, and a stream of buyer orders,
    /// with a live summary. Cleans up after itself.
    #[command(
        after_long_help = "Runs until Ctrl-C, or for --duration. Everything lives in a temporary directory (kept\nwith --keep) and uses test credentials of the simulators.\n\nExamples:\n  stockade demo\n  stockade demo --duration 30s --rate 50"
    )]
    Demo(DemoArgs),
    /// Run the HTTPS server: sign-in, dashboard, API, marketplace webhooks, and the sync
    /// engine (orders in, stock out) with alert delivery.
    #[command(
        after_long_help = "TLS 1.2 and 1.3 only. Without [server] tls_cert/tls_key in stockade.toml, a development\ncertificate authority and server certificate (valid for a year) are generated into\nDATA_DIR/tls (trust DATA_DIR/tls/dev-ca.pem in your client); in prod only with\n--self-signed or [server] self_signed = true, else serve refuses to start (exit 2). Plain HTTP is possible only on a loopback address,\nfor a reverse proxy on the same host: [server] plain_http = true.\n\nExample:\n  stockade serve --env prod --listen 0.0.0.0:8443"
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
    /// Marketplace connections (one seller's authorization on one marketplace): add,
    /// edit, test, list, show, pause, resume, revoke.
    #[command(
        subcommand,
        after_long_help = "A running `stockade serve` picks up connections added, paused, resumed or revoked here\nwithin 2 seconds. Secrets are never taken as arguments: `connection add` reads them from a\nJSON file (mode 0600) or from standard input.\n\nExamples:\n  stockade connection add --marketplace ebay --name ebay-us --account seller1 \\\n      --marketplace-id EBAY_US --credentials-file ebay-us.json\n  stockade connection test ebay-us\n  stockade connection edit ebay-us --credentials-file new-token.json\n  stockade connection list\n\nIn dev, `stockade sandbox --credentials-dir DIR` (in a build with the default dev-tools\nfeature) prints the `connection add` commands for its simulators (see docs/sync.md)."
    )]
    Connection(ConnectionCommand),
    /// The SKU catalog: import and export it as CSV, list stock per SKU and channel.
    #[command(
        subcommand,
        after_long_help = "CSV columns: sku, on_hand, then per connection CONNECTION:listing, CONNECTION:buffer and\nCONNECTION:max (reserved and available, written by export, are ignored on import).\nA listing is, per marketplace: TikTok PRODUCT_ID:SKU_ID[@WAREHOUSE], Amazon ASIN[:PRODUCT_TYPE],\neBay OFFER_ID[|OFFER_ID…] or - (look offers up by SKU).\n\nExample:\n  stockade sku export --output catalog.csv\n  stockade sku import catalog.csv"
    )]
    Sku(SkuCommand),
    /// Stock against its ledger: verify, rebuild.
    #[command(subcommand)]
    Stock(StockCommand),
    #[cfg(feature = "dev-tools")]
    /// Run local simulators of TikTok Shop, Amazon SP-API and eBay (HTTPS, with their
    /// signing, tokens, rate limits and error bodies) and print their URLs and test
    /// credentials. For development and tests only; runs until Ctrl-C.
    #[command(
        after_long_help = "Each marketplace gets its own HTTPS server on 127.0.0.1 and a random port, signed by a\ntest certificate authority written to --ca-file. Faults can be injected at start\n(--fault amazon:throttle_rate=0.2) and at run time:\n  curl --cacert sandbox-ca.pem -X PUT https://127.0.0.1:PORT/_sandbox/faults \\\n       -H 'content-type: application/json' -d '{\"error_rate\":0.1}'\nOther admin routes under /_sandbox/ (loopback only): orders, orders/{id}/advance,\nlistings, deliveries, revoke, expire-tokens, webhook, rate-limits; read-only: acknowledged,\nquantity-history, delivery-stats, callers. See docs/marketplaces.md.\n\nExample:\n  stockade sandbox --seed 7 --skus 20 --orders 50"
    )]
    Sandbox(SandboxArgs),
    /// Alerts to DingTalk, Feishu/Lark and signed webhooks: channel status, recent
    /// alerts, test messages, channel secrets, releasing held alerts.
    #[command(
        subcommand,
        after_long_help = "Channels and routing live in stockade.toml ([[alerts.channel]], see docs/alerts.md); their\ntokens and signing secrets live in the credential store, set with `alert secret set`.\n\nExamples:\n  stockade alert secret set ops-dingtalk --credentials-file ops-dingtalk.json\n  stockade alert test --channel ops-dingtalk\n  stockade alert status\n  stockade alert retry --channel ops-dingtalk"
    )]
    Alert(AlertCommand),
    /// Workflows: lint, apply and approve versions, list, diff, export, enable, disable;
    /// run them and follow their executions.
    #[command(
        subcommand,
        after_long_help = "The format, the expression language and every lint rule: docs/workflows.md.\n\nExamples:\n  stockade workflow lint workflows/*.yaml\n  stockade workflow lint --env prod workflows/*.yaml\n  stockade workflow schema > workflow.schema.json\n  stockade --env prod workflow apply --as ann@example.com workflows/*.yaml\n  stockade --env prod workflow approve low-stock-alert --version 3 --as bo@example.com\n  stockade workflow diff low-stock-alert --from 2 --to 3\n  stockade workflow run low-stock-alert --input inputs.json --wait\n  stockade workflow runs low-stock-alert --status failed\n  stockade workflow show-run job_01J…"
    )]
    Workflow(WorkflowCommand),
    /// Credentials workflows use by name (`http.request`'s `credential`, a webhook's `hmac`
    /// key): stored encrypted, scoped to workflows and hosts, never printed.
    #[command(
        subcommand,
        after_long_help = "Example:\n  printf %s \"$SUPPLIER_TOKEN\" | stockade credential set supplier-token \\\n      --workflow supplier-reorder --host api.supplier.example --secret-stdin\n  openssl rand -hex 32 > supplier.key    # a webhook's HMAC key: no host, never sent\n  stockade credential set supplier-hmac --workflow supplier-stock-webhook --secret-stdin \\\n      < supplier.key\n  stockade credential list"
    )]
    Credential(CredentialCommand),
    #[cfg(feature = "dev-tools")]
    /// Benchmarks that print measured figures (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Retention: how long each kind of data is kept ([retention] in stockade.toml),
    /// a run now (or a dry run that only counts), the last run.
    #[command(
        subcommand,
        after_long_help = "The server runs retention every [retention] every (default 1h); these commands show the
rules and run it by hand. Rules, defaults and their sources: docs/operations.md (Retention).

Examples:
  stockade retention show
  stockade retention run --dry-run
  stockade retention run"
    )]
    Retention(RetentionCommand),
    // backup:
    /// Encrypted backups (age format): create, verify, restore, drill, keyring export,
    /// list. See docs/operations.md, "Backups and restore".
    #[command(subcommand)]
    Backup(crate::cli_backup::BackupCommand),
    // deploy:
    /// The host around Stockade, generated from the configuration: firewall rules (nft or
    /// ufw) and the sandboxed systemd unit. See docs/deploy.md.
    #[command(subcommand)]
    Deploy(crate::cli_deploy::DeployCommand),
    // Compliance report:
    /// The compliance report: every policy clause and the Amazon DPP items with live
    /// evidence and a verdict (report), and the check of a signed report (verify).
    #[command(subcommand)]
    Compliance(crate::cli_compliance::ComplianceCommand),
    /// Incident response: open an incident (or a drill), revoke keys and sessions, isolate
    /// a workflow or connection, lock the instance down, notify, close, report.
    #[command(
        subcommand,
        after_long_help = "The runbook (the first hour, every command, deadlines, drills): docs/incident.md.

Examples:
  stockade incident open --title \"API key leaked\" --severity high
  stockade incident revoke --api-keys all
  stockade incident isolate --connection amazon-eu
  stockade incident lockdown
  stockade incident show 1
  stockade incident notify 1 --party amazon --note \"Sent to the security contact\"
  stockade incident release --lockdown
  stockade incident close 1 --root-cause \"…\"
  stockade incident report 1 --format md"
    )]
    Incident(crate::cli_incident::IncidentCommand),
}

/// `stockade retention …`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Remove what has expired now, in batches of [retention] batch rows, and record the
    /// run (one audit row with the counts per kind). Prints per kind: the rule, the
    /// cutoff and the rows removed. Exit 1 while another run (the server's) is going.
    Run {
        /// Only count what a run would remove; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the rules in force and the last run (when, and how many rows per kind).
    Show,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Check workflow files, together (so on_error and workflow.call cycles among them are
    /// found). Prints one `FILE:LINE:COL RULE MESSAGE` line per problem; exit 3 when there
    /// are problems, 2 when a file cannot be read. With --env prod (or env = "prod" in
    /// stockade.toml) every workflow must name its on_error.
    Lint {
        /// Workflow YAML files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the workflow format (as shipped in docs/workflow.schema.json).
    Schema,
    /// Convert an n8n workflow export (one workflow or an array; n8n 1.x/2.x) into Stockade
    /// workflow YAML, one file per workflow, and print a report: per node converted / needs
    /// review / unsupported, the credentials to create (with the `stockade credential set`
    /// command), the hosts allowed and the alert channels to configure. The result is linted:
    /// exit 3 when lint finds problems (the files are still written, for a human to fix).
    /// Nothing is written when the export is refused, or when a file exists (unless --force).
    ///
    /// Examples:
    ///   stockade workflow import-n8n export.json --out workflows/
    ///   stockade workflow import-n8n export.json > converted.yaml   (report on stderr)
    ///   stockade workflow import-n8n export.json --out wf/ --nocodb-url https://nocodb.example.com
    #[command(name = "import-n8n", verbatim_doc_comment)]
    ImportN8n {
        /// The n8n export (JSON, at most 16 MiB).
        #[arg(value_name = "EXPORT.json")]
        export: PathBuf,
        /// Write NAME.yaml per workflow into this directory (created if missing). Without
        /// it, the YAML goes to standard output and the report to standard error.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// The NocoDB base URL the NocoDB nodes used (an export holds only the credential's
        /// name); without it a placeholder host that fails lint is written.
        #[arg(long, value_name = "URL")]
        nocodb_url: Option<String>,
    },
    /// Lint the files together for this environment and store a new version of each
    /// (unchanged text stores nothing). dev and staging activate a passing version at
    /// once; prod keeps it pending until another user approves it. A version whose lint
    /// fails is stored as rejected and never runs (exit 3).
    Apply {
        /// Workflow YAML files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The user applying (an admin or operator, by email); recorded on the version and
        /// the audit row. Required in prod.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
    },
    /// Approve a pending prod version, which then becomes active. Four eyes: refused for
    /// the user who applied it.
    Approve {
        /// The workflow's name.
        name: String,
        /// The version to approve (see `workflow versions`).
        #[arg(long)]
        version: i64,
        /// The approving user (an admin or operator, by email).
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
    },
    /// Every stored workflow: enabled or not, active and newest version.
    List,
    /// A workflow's versions: state, lint verdict, content hash, who applied and approved.
    Versions {
        /// The workflow's name.
        name: String,
    },
    /// A line diff between two versions.
    Diff {
        /// The workflow's name.
        name: String,
        #[arg(long)]
        from: i64,
        #[arg(long)]
        to: i64,
    },
    /// Let a workflow run again (its active version).
    Enable {
        /// The workflow's name.
        name: String,
        /// The user doing it (by email); without it the audit row names system:cli.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
    },
    /// Stop a workflow from running (its versions are kept).
    Disable {
        /// The workflow's name.
        name: String,
        /// The user doing it (by email); without it the audit row names system:cli.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
    },
    /// Print a version's YAML exactly as applied (default: the active version, else the
    /// newest).
    Export {
        /// The workflow's name.
        name: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Queue a manual run of the workflow's active version (`stockade serve` runs it).
    /// Prints the execution id. With --wait, waits for the outcome: exit 0 when it
    /// succeeded, 1 when it failed.
    Run {
        /// The workflow's name.
        name: String,
        /// A JSON file with the run's inputs (an object of the declared inputs).
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Wait until the execution has succeeded or failed (at most 10 minutes).
        #[arg(long)]
        wait: bool,
        /// The user starting the run (by email); without it the audit row names system:cli.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
    },
    /// Executions, newest first: id, workflow@version, state, started, took, attempts.
    Runs {
        /// Only this workflow's executions.
        name: Option<String>,
        /// Only executions in this state: queued, running, succeeded, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One execution: its state and error, and a timeline of its steps (each attempt, when
    /// it started, how long it took, its error).
    ShowRun {
        /// The execution id (from `workflow run` or `workflow runs`).
        id: String,
    },
    /// Cancel a queued or running execution. A queued one never runs; a running one
    /// stops at its next step boundary (its worker's next commit is refused), and a
    /// step already running is not committed. No error workflow runs for a cancel.
    /// Refused for a finished execution.
    Cancel {
        /// The execution id.
        id: String,
        /// The user cancelling (by email); without it the audit row names system:cli.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
    },
    /// Start a new execution of the same workflow version with the same inputs. Prints
    /// the new execution id. With --from-step S, the steps before S that succeeded are
    /// copied from the old execution as done and do not run again; S must be a top-level
    /// step (not one inside if/switch/for_each/workflow.call).
    Rerun {
        /// The execution to run again.
        id: String,
        /// The top-level step to start from.
        #[arg(long, value_name = "STEP")]
        from_step: Option<String>,
        /// The user starting the rerun (by email); without it the audit row names
        /// system:cli.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: Option<String>,
    },
    /// Start a workflow from the library of examples (built into this binary): copy one
    /// to a file, then print what to fill in (connections, credentials, hosts, alert
    /// channels) and the commands to lint and apply it. Never overwrites a file.
    ///
    /// Examples:
    ///   stockade workflow new --list
    ///   stockade workflow new --from-example daily-sales-summary
    ///   stockade workflow new --from-example error-escalation --out workflows/escalate.yaml
    #[command(verbatim_doc_comment)]
    New {
        /// The example to copy (see --list).
        #[arg(long, value_name = "NAME", required_unless_present = "list")]
        from_example: Option<String>,
        /// The file to write (default: NAME.yaml in the current directory); refused if
        /// it exists.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// List the examples with what each does.
        #[arg(long, conflicts_with_all = ["from_example", "out"])]
        list: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Each configured channel: kind, status (ok, failing, rate_limited, misconfigured),
    /// alerts pending, held and sent, the last error, and which secrets are set.
    Status,
    /// Every alert, newest first, with its time (UTC, when it happened) and where it went:
    /// each channel's delivery state, or "dashboard only" with no channel.
    List {
        /// How many alerts to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Send a signed test message to a channel now and report the platform's answer in
    /// plain words. Exit 0 when delivered, 1 when the platform refused or could not be
    /// reached. A channel that works again sends the alerts it held.
    Test {
        /// The channel's name in [[alerts.channel]].
        #[arg(long)]
        channel: String,
    },
    /// Alert channel secrets.
    #[command(subcommand)]
    Secret(AlertSecretCommand),
    /// Send a misconfigured channel's held alerts again (after fixing its settings or
    /// secrets; a running server also does this by itself within 15 s of a change).
    Retry {
        /// The channel's name.
        #[arg(long)]
        channel: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Store (or replace) a credential read from standard input (one value; a trailing
    /// newline is dropped), usable only by the named workflows and hosts.
    Set {
        /// Its name, as workflows write it in `permissions.credentials`.
        name: String,
        /// A workflow that may use it (repeat for several).
        #[arg(long = "workflow", required = true)]
        workflows: Vec<String>,
        /// A host it may be sent to by `http.request` (repeat for several). None for a
        /// webhook's `hmac` key, which is never sent anywhere.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Read the secret from standard input (required: never on the command line).
        #[arg(long)]
        secret_stdin: bool,
    },
    /// The stored credentials with their scopes (never their secrets).
    List,
}

#[derive(Debug, Subcommand)]
pub enum AlertSecretCommand {
    /// Store a channel's secrets (encrypted; never printed). Fields by kind:
    /// dingtalk: access_token, secret (SEC…); dingtalk_app: app_key, app_secret;
    /// feishu and lark: hook_id (the last part of the webhook URL), secret;
    /// webhook: secret.
    Set {
        /// The channel's name in [[alerts.channel]].
        channel: String,
        /// A JSON object of the fields, readable by its owner only (chmod 600).
        #[arg(long, value_name = "FILE")]
        credentials_file: Option<PathBuf>,
        /// Read the same JSON object from standard input instead.
        #[arg(long)]
        credentials_stdin: bool,
    },
}

#[cfg(feature = "dev-tools")]
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
    /// Where to write the sandbox's test certificate authority (PEM) [default:
    /// DIR/sandbox-ca.pem with --credentials-dir, else ./sandbox-ca.pem].
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Write one credentials file per marketplace (tiktok.json, amazon.json, ebay.json,
    /// mode 0600, in the fields `connection add` reads) and the test CA into DIR, and
    /// print the `stockade connection add` commands that use them. DIR must be new,
    /// empty, or hold only these files from an earlier run.
    #[arg(long, value_name = "DIR")]
    pub credentials_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub bench: crate::cli_sandbox_bench::SandboxBenchArgs,
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
    /// The audit mirror to NocoDB ([audit.mirror.nocodb]) and to a JSON-lines file
    /// ([audit.mirror.file]): set it up, see how far behind it is, compare NocoDB with
    /// the chain.
    #[command(
        subcommand,
        after_long_help = "The server copies every audit row to the configured sinks in the background;\nthese commands set NocoDB up and check it. See docs/operations.md, \"Audit mirror to NocoDB\".\n\nExamples:\n  stockade audit mirror init\n  stockade audit mirror status\n  stockade audit mirror verify"
    )]
    Mirror(AuditMirrorCommand),
}

/// `stockade audit mirror …` (audit mirror).
#[derive(Debug, Subcommand)]
pub enum AuditMirrorCommand {
    /// Create the NocoDB table with one column per audit field (through NocoDB's meta
    /// API), or check an existing one and name each missing or mistyped column (exit 3).
    /// Nothing is ever dropped or changed in an existing table.
    Init,
    /// Each sink's lag (rows and seconds), last copy and last error, read from the
    /// database (works with the server stopped).
    Status,
    /// Page through NocoDB's rows and compare them with the audit chain; exit 3 naming
    /// the first difference (a missing, duplicate or extra seq, or a cell that differs).
    Verify,
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

#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the throw-away data directory instead of deleting it at the end.
    #[arg(long)]
    pub keep: bool,
    /// Stop after this long (e.g. 30s, 5m) instead of at Ctrl-C.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Buyer orders per second across the three marketplaces.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// SKUs in the catalog (each listed on all three channels).
    #[arg(long, default_value_t = 300)]
    pub skus: usize,
    /// Write the log here (default: a new stockade-demo-*.log in the temp directory).
    /// The screen shows the live summary only.
    #[arg(long, value_name = "FILE")]
    pub log: Option<std::path::PathBuf>,
}

#[cfg(feature = "dev-tools")]
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Order sync under load: signed webhooks over HTTPS keep-alive from the three
    /// marketplace simulators into the real server, sync engine and database.
    #[command(
        after_long_help = "Reports orders ingested per second, the latency from an order's arrival to the last\nchannel's confirmation (p50/p99/max), pushes coalesced, oversold units, lost and duplicated\norders, CPU and peak memory. The simulators run in the same process, so CPU and memory\ninclude them, unless --sandbox-process runs them in a child process (its CPU is then\nreported apart, as sandbox_cpu_ms_per_order).\n\nExamples:\n  stockade bench sync --rate 2000 --duration 20s\n  stockade bench sync --rate 500 --duration 30s --database-url postgres://u:p@127.0.0.1/db --json\n  stockade bench sync --rate 50 --duration 60s --realistic-limits\n  stockade bench sync --sandbox-process --server-cpus 0 --sandbox-cpus 1 --rate 3000 --json\n  stockade bench sync --sandbox-process --database-url postgres://u:p@127.0.0.1/db --workers 2 --json"
    )]
    Sync(BenchSyncArgs),
    /// One extra worker process of `bench sync --workers` (started by the bench).
    #[command(hide = true)]
    SyncWorker(crate::cli_sandbox_bench::BenchSyncWorkerArgs),
    /// Alert delivery: failures recorded as events, routed, rendered, signed and sent to
    /// the DingTalk, Feishu and webhook bot simulators; latency from the failure being
    /// recorded to the signed request reaching the bot.
    #[command(
        after_long_help = "Reports p50/p99/max latency, messages delivered, events lost and PII leaks (planted\nbuyer data found in any request a bot received). Distinct failures are spread so every\nchannel stays within its platform's rate limit.\n\nExamples:\n  stockade bench alerts\n  stockade bench alerts --failures 60 --json"
    )]
    Alerts(BenchAlertsArgs),
    /// Workflow executions through the real server: a webhook → an expression →
    /// `stock.adjust` → `audit.note`, every execution persisted, with `stockade serve` in
    /// its own process so its CPU is measured alone.
    #[command(
        after_long_help = "Builds a fresh dev data directory with this program's own commands (init, sku import,\napikey create, workflow apply), starts `stockade serve` as a child process and posts\nwebhooks to it over HTTPS from --concurrency clients, each waiting for the execution's\nresult. Reports executions per second, latency (request to finished, persisted\nexecution) p50/p99, the server's CPU milliseconds per execution (read from the child's\n/proc stat), failed and lost executions, and whether the stock ledger moved by exactly\nthe units the executions added. Exit 1 if any execution was lost.\n\nExamples:\n  stockade bench workflow\n  stockade bench workflow --concurrency 128 --duration 20s --json\n  stockade bench workflow --database-url postgres://u:p@127.0.0.1/db"
    )]
    Workflow(BenchWorkflowArgs),
    /// Console pages' server time with 10,000 SKUs and 1,000,000 orders, and the live
    /// overview's server CPU per polling client.
    #[command(
        after_long_help = "Builds a fresh dev data directory (init, sku import, an admin API key; the orders,\nlistings and three paused connections bulk-inserted in audited batches), starts\n`stockade serve` as a child process and requests every console page many times with the\nAPI key. Server time is the `Server-Timing: app;dur=` header the server adds (from the\nrequest entering the server to its response's headers). Pages that answer 404 (not built\nyet) are skipped with a message. Then --clients clients poll /overview/live every 5 s for\n--live-seconds; the server's CPU (from the child's /proc stat, minus an idle baseline)\nper client per second is reported.\n\nExamples:\n  stockade bench console\n  stockade bench console --skus 200 --orders 2000 --requests 20 --json\n  stockade bench console --database-url postgres://u:p@127.0.0.1/db"
    )]
    Console(BenchConsoleArgs),
    /// Retention: a large backlog of expired rows removed by one run, and the order ingest
    /// beside it (alone, then during the run).
    #[command(
        after_long_help = "Seeds a throw-away database with --rows expired rows (half orders with buyer fields,
half request log rows), measures audited order commits from 16 writers for --duration,
then the same while one retention run removes the backlog in transactions of --batch
rows. Reports rows removed per second, the SQLite file before and after, and the ingest
rate and commit p99 alone and during the run. Exit 1 if the run removed another number
of rows than seeded.

Examples:
  stockade bench retention
  stockade bench retention --rows 1000000 --json
  stockade bench retention --database-url postgres://u:p@127.0.0.1/db"
    )]
    Retention(BenchRetentionArgs),
    // backup:
    /// Backup of a database with 1,000,000 orders: time, size, MB/s, and the ingest
    /// throughput with and without a concurrent backup.
    Backup(crate::cli_backup::BenchBackupArgs),
    /// Audit mirror: audit rows appended at a target rate, copied to a real NocoDB (or the
    /// simulator); lag p50/p99, rows/s mirrored, catch-up after a backlog.
    #[command(
        after_long_help = "Uses the NocoDB 0.301.3 installed by ./scripts/test (or --nocodb-dir), started on\nloopback behind a TLS terminator; without one, or with --simulator, the sandbox's\nsimulator. Lag is from a row's commit to NocoDB confirming its batch. At most 100 rows\nper request and NocoDB's 5 requests/s per user cap the mirror at 500 rows/s; --rps above 5\nmeasures what NocoDB sustains when its limit is raised. Ends with a verify of every row.\n\nExamples:\n  stockade bench mirror\n  stockade bench mirror --rate 300 --duration 30s\n  stockade bench mirror --backlog 100000 --rate 100 --duration 5s\n  stockade bench mirror --rps 50"
    )]
    Mirror(BenchMirrorArgs),
}

#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchRetentionArgs {
    /// Expired rows seeded (half orders with buyer fields, half request log rows).
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Rows per deletion transaction ([retention] batch).
    #[arg(long, default_value_t = 1_000)]
    pub batch: i64,
    /// How long ingest is measured alone (e.g. 10s).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: String,
    /// A PostgreSQL URL: run on a fresh schema there (dropped afterwards) instead of SQLite.
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// `stockade bench mirror` (audit mirror).
#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchMirrorArgs {
    /// Audit rows per second offered.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long rows are offered (e.g. 20s, 2m).
    #[arg(long, default_value = "20s", value_name = "DURATION")]
    pub duration: String,
    /// Rows written with the mirror stopped first; the time to drain them is reported.
    #[arg(long, default_value_t = 0)]
    pub backlog: usize,
    /// Requests per second to NocoDB (the mirror's default is 4; NocoDB documents 5).
    #[arg(long, default_value_t = 4.0)]
    pub rps: f64,
    /// Rows per insert request (at most 100).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// A NocoDB install directory (with start.js) instead of the default one.
    #[arg(long, value_name = "DIR")]
    pub nocodb_dir: Option<PathBuf>,
    /// Use the sandbox's NocoDB simulator even when a real NocoDB is installed.
    #[arg(long)]
    pub simulator: bool,
    /// After the writing stops, how long to wait for the mirror to catch up (seconds).
    #[arg(long, default_value_t = 600)]
    pub catch_up_limit_s: u64,
}

#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchConsoleArgs {
    /// SKUs in the catalogue (each listed on three channels).
    #[arg(long, default_value_t = 10_000)]
    pub skus: usize,
    /// Orders in the database (one line each, spread over 30 days and the channels).
    #[arg(long, default_value_t = 1_000_000)]
    pub orders: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Clients polling the live overview every 5 s.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How long the live overview is polled (seconds).
    #[arg(long = "live-seconds", default_value_t = 30)]
    pub live_seconds: u64,
    /// A PostgreSQL URL: run on a fresh schema there (dropped afterwards) instead of SQLite.
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchWorkflowArgs {
    /// How long webhooks are posted (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: String,
    /// Clients posting at once, each waiting for its execution's result.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// SKUs the executions adjust (spread round-robin).
    #[arg(long, default_value_t = 100)]
    pub skus: usize,
    /// `[workflows] workers` for the server [default: the server's own default].
    #[arg(long)]
    pub workers: Option<usize>,
    /// A PostgreSQL URL: run on a fresh schema there (dropped afterwards) instead of SQLite.
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Compute the delta in a `script` step (JavaScript) instead of an expression, and
    /// first measure the script engine pool on its own.
    #[arg(long)]
    pub script: bool,
}

#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchAlertsArgs {
    /// Distinct failures recorded (each a first alert on every channel).
    #[arg(long, default_value_t = 32)]
    pub failures: usize,
    /// Failures recorded per burst (then the next burst waits for the rate budget).
    #[arg(long, default_value_t = 4)]
    pub burst: usize,
    /// A PostgreSQL URL: run on a fresh schema there (dropped afterwards) instead of SQLite.
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: Option<String>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(feature = "dev-tools")]
#[derive(Debug, Args)]
pub struct BenchSyncArgs {
    /// Orders per second offered (across the three marketplaces).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// How long orders are offered (e.g. 20s, 2m).
    #[arg(long, default_value = "20s", value_name = "DURATION")]
    pub duration: String,
    /// A PostgreSQL URL: run on a fresh schema there (dropped afterwards) instead of SQLite.
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: Option<String>,
    /// Keep the marketplaces' published rate limits on and report each channel's staleness.
    #[arg(long)]
    pub realistic_limits: bool,
    /// SKUs in the catalog.
    #[arg(long, default_value_t = 300)]
    pub skus: usize,
    /// Print one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
    /// Pin this process (server, engine, database and the in-process simulators) to
    /// these CPUs, e.g. 0 or 0-1 (sched_setaffinity; `nproc` lists how many there are).
    #[arg(long = "server-cpus", value_name = "LIST")]
    pub server_cpus: Option<String>,
    #[command(flatten)]
    pub process: crate::cli_sandbox_bench::BenchSandboxProcessArgs,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: Option<ConfigAction>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Make the running `stockade serve` of this data directory reload stockade.toml (as
    /// SIGHUP does) and print its answer: what changed, what needs a restart, or why the
    /// new settings were refused (the old ones then stay in force). Egress hosts and
    /// alert channels change live; listen address, TLS, database and the rest need a
    /// restart.
    Reload {
        /// Seconds to wait for the server's answer.
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        wait: u64,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: server.listen in stockade.toml, else 127.0.0.1:8443].
    #[arg(long, env = "STOCKADE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Without [server] tls_cert/tls_key, serve a generated self-signed certificate even in
    /// prod (dev and staging do so anyway) [also: [server] self_signed = true].
    #[arg(long)]
    pub self_signed: bool,
    /// What this process does: `all` (default) serves the console, API and webhooks and
    /// runs the background work; `api` serves the console, API and webhooks only (webhook
    /// orders are fetched and stored here; no pushes, polls, workflow workers, alert
    /// senders, retention, backups or mirror); `worker` runs the background work only and
    /// answers /healthz, /readyz and /metrics, 404 for the rest. Several processes need
    /// PostgreSQL: each connection's pushes, polls and reconciliation then run in one
    /// worker at a time (a lease, taken over within seconds when it dies). On SQLite only
    /// one `serve` (role all) runs on a database. See docs/scale-out.md.
    #[arg(long, env = "STOCKADE_ROLE", value_name = "all|api|worker", default_value = "all",
          value_parser = ["all", "api", "worker"])]
    pub role: String,
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

/// A marketplace, as `--marketplace` takes it.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarketplaceArg {
    /// TikTok Shop.
    Tiktok,
    /// Amazon Selling Partner API.
    Amazon,
    /// eBay.
    Ebay,
}

#[derive(Debug, Args)]
#[group(id = "credentials", required = true, multiple = false)]
pub struct CredentialsArgs {
    /// A JSON object of the connection's credential fields, readable by its owner only
    /// (chmod 600). TikTok: app_key, app_secret, refresh_token. Amazon: client_id,
    /// client_secret, refresh_token [, event_key]. eBay: client_id, client_secret,
    /// refresh_token [, verification_token].
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Read the same JSON object from standard input instead.
    #[arg(long)]
    pub credentials_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ConnectionAddArgs {
    /// tiktok, amazon or ebay.
    #[arg(long, value_enum)]
    pub marketplace: MarketplaceArg,
    /// A unique name: 1 to 64 letters, digits, '-' or '_'. It names the webhook path
    /// /hooks/MARKETPLACE/NAME and is never reused, even after a revocation.
    #[arg(long)]
    pub name: String,
    /// The seller's id on the marketplace: TikTok shop id, Amazon seller id, eBay user.
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// API base URL (https://). Default in prod: the marketplace's live API. Required in
    /// dev and staging, which connect to sandboxes only (e.g. `stockade sandbox`).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// TikTok: the authorization base URL. Amazon: the Login with Amazon token URL.
    /// Default in prod: the live one.
    #[arg(long, value_name = "URL")]
    pub auth_url: Option<String>,
    /// TikTok: the shop cipher.
    #[arg(long, value_name = "C")]
    pub shop_cipher: Option<String>,
    /// Amazon: a marketplace id (repeatable). eBay: the marketplace, e.g. EBAY_US.
    #[arg(long = "marketplace-id", value_name = "ID")]
    pub marketplace_ids: Vec<String>,
    /// eBay: the public URL of this connection's notification endpoint
    /// (https://HOST/hooks/ebay/NAME); eBay's validation challenge hashes it.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Amazon: a host feed and report documents are uploaded to or downloaded from
    /// (repeatable).
    #[arg(long = "document-host", value_name = "HOST")]
    pub document_hosts: Vec<String>,
    /// Dev only: the test CA (PEM) of a local `stockade sandbox`
    /// (CREDENTIALS_DIR/sandbox-ca.pem). The connection trusts it and may reach the
    /// sandbox's loopback hosts without an [egress] allowed_hosts entry. Refused in
    /// staging and prod.
    #[arg(long, value_name = "PEM")]
    pub sandbox_ca: Option<PathBuf>,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

#[derive(Debug, Args)]
pub struct ConnectionEditArgs {
    /// The connection's name.
    pub name: String,
    /// The seller's id on the marketplace.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// A new API base URL (https://). Without --auth-url, the auth URL is derived again
    /// from a local sandbox's URL (dev and staging), or must be given.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// A new TikTok authorization base URL or Amazon token URL.
    #[arg(long, value_name = "URL")]
    pub auth_url: Option<String>,
    /// TikTok: a new shop cipher.
    #[arg(long, value_name = "C")]
    pub shop_cipher: Option<String>,
    /// Replace the marketplace ids (repeatable).
    #[arg(long = "marketplace-id", value_name = "ID")]
    pub marketplace_ids: Vec<String>,
    /// Replace the Amazon document hosts (repeatable).
    #[arg(long = "document-host", value_name = "HOST")]
    pub document_hosts: Vec<String>,
    /// eBay: a new public URL of the notification endpoint.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Dev only: trust this sandbox test CA (PEM) instead of the current one.
    #[arg(long, value_name = "PEM", conflicts_with = "no_sandbox_ca")]
    pub sandbox_ca: Option<PathBuf>,
    /// Stop trusting a sandbox CA.
    #[arg(long)]
    pub no_sandbox_ca: bool,
    /// Credential fields to replace, as a JSON object in a file (mode 0600); fields not
    /// named keep their stored value.
    #[arg(long, value_name = "FILE", conflicts_with = "credentials_stdin")]
    pub credentials_file: Option<PathBuf>,
    /// Read the same JSON object from standard input instead.
    #[arg(long)]
    pub credentials_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Add a connection. Its credentials are read from a JSON file (mode 0600) or
    /// standard input, stored encrypted under the connection's own data key, and never
    /// printed.
    Add(Box<ConnectionAddArgs>),
    /// Change a connection's URLs, account, settings or credentials in place: its
    /// orders, listings, key and webhook path stay (audited; values never recorded). A
    /// running server rebuilds the connection within 2 seconds.
    Edit(Box<ConnectionEditArgs>),
    /// Check a connection now: obtain an access token and read its orders of the last
    /// day (one page). Exit 0 when the marketplace answered, 1 when it did not.
    Test {
        /// The connection's name.
        name: String,
    },
    /// List connections (name, marketplace, endpoint, status, seller account).
    List,
    /// One connection: settings, status, listings, orders, last poll cursor and the names
    /// of its credential fields (never their values).
    Show {
        /// The connection's name.
        name: String,
    },
    /// Stop pushing quantities and polling for a connection (orders sent to its webhook
    /// are still recorded: the marketplace has accepted them).
    Pause {
        /// The connection's name.
        name: String,
    },
    /// Resume a paused connection.
    Resume {
        /// The connection's name.
        name: String,
    },
    /// Deauthorize a connection: stop it, delete its orders, buyer data, listings and
    /// credentials, destroy its data key, and print the purge receipt. Cannot be undone.
    Revoke {
        /// The connection's name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SkuCommand {
    /// Import a catalog CSV. Every row is checked first; then all of it is applied in
    /// one audited transaction, or nothing is.
    Import {
        /// The CSV file (`-` for standard input).
        file: PathBuf,
    },
    /// Read a connection's listings from its marketplace (TikTok Search Products, Amazon
    /// searchListingsItems, eBay inventory items and offers) and merge them into the
    /// catalog in one audited transaction: SKUs the catalog lacks are created, listings
    /// added or their ids updated; existing SKUs keep their on hand and listings their
    /// buffer and maximum; listings the marketplace no longer has are reported as gone,
    /// never deleted. Open orders that arrived before their SKU are reserved.
    Discover {
        /// The connection's name.
        #[arg(long, value_name = "NAME")]
        connection: String,
        /// New SKUs take the marketplace's quantity, plus this connection's open orders
        /// for them (sold, not yet shipped), as their on hand (without it they start at
        /// 0: set the real counts with `sku import`).
        #[arg(long)]
        take_quantity: bool,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write the catalog as CSV, in the import format.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Stock per SKU (on hand, reserved, available) and each channel's target and
    /// confirmed quantity.
    List,
    /// Set a SKU's own low-stock threshold: the `stock.low` event fires when its available
    /// stock falls to it (other SKUs keep `[sync] low_stock_threshold`). The catalog CSV's
    /// `low_stock_threshold` column sets it too.
    ///
    /// Examples:
    ///   stockade sku threshold MUG-RED-350 20
    ///   stockade sku threshold MUG-RED-350 --clear
    #[command(verbatim_doc_comment)]
    Threshold {
        /// The SKU.
        sku: String,
        /// Units available at or below which the SKU is low (0 to 1000000000).
        #[arg(required_unless_present = "clear")]
        units: Option<i64>,
        /// Go back to the global threshold.
        #[arg(long, conflicts_with = "units")]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Recompute every SKU's stock from the ledger; exit 3 listing the SKUs whose stored
    /// stock differs.
    Verify,
    /// Set the stock of every SKU that differs from its ledger back to the ledger's sum
    /// (audited, one row per SKU) and retarget its listings.
    Rebuild,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The test tools (`sandbox`, `demo`, `bench`) are commands exactly when the
    /// `dev-tools` feature is on: a production build (`--no-default-features`) neither
    /// parses them nor lists them in `--help`.
    #[test]
    fn dev_tool_commands_exist_only_with_the_dev_tools_feature() {
        let mut cli = Cli::command();
        let help = cli.render_help().to_string();
        for name in ["sandbox", "demo", "bench"] {
            let known = Cli::command().find_subcommand(name).is_some();
            let listed = help.lines().any(|l| l.trim_start().starts_with(name));
            assert_eq!(known, cfg!(feature = "dev-tools"), "{name} parsed: {known}");
            assert_eq!(
                listed,
                cfg!(feature = "dev-tools"),
                "{name} listed:\n{help}"
            );
        }
        assert!(Cli::command().find_subcommand("serve").is_some());
    }
}
