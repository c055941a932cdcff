//! The flags that run the simulators in their own process for `bench sync`: on the
//! bench (`--sandbox-process`, `--sandbox-cpus`) and on `stockade sandbox` (its limits
//! lifted, the ready file the bench waits for).

use clap::Args;

/// `bench sync` flags for simulators in a child process.
#[derive(Debug, Clone, Default, Args)]
pub struct BenchSandboxProcessArgs {
    /// Run the marketplace simulators (and the buyers placing orders) in a child process,
    /// `stockade sandbox`, instead of inside this one: server_cpu_ms_per_order then
    /// counts the server alone, and sandbox_cpu_ms_per_order the simulators. Their rate
    /// and delivery limits are lifted unless --realistic-limits is given.
    #[arg(long)]
    pub sandbox_process: bool,
    /// With --sandbox-process: pin the simulators' process to these CPUs, e.g. 1 or 1-3
    /// (same syntax as --server-cpus).
    #[arg(long = "sandbox-cpus", value_name = "LIST")]
    pub sandbox_cpus: Option<String>,
    /// With --sandbox-process and --database-url: also start N `worker` processes of
    /// this program on the same database. The webhooks still reach this process; each
    /// connection's pushes, polls and fetches go to whichever process holds its lease.
    /// server_cpu_ms_per_order then counts every process; the latency to the last channel
    /// is measured from the simulators' quantity history (change_staleness_ms), since a
    /// connection another process owns is confirmed there.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub workers: u32,
}

/// `stockade bench sync-worker`: one extra process of `bench sync --workers` (started by
/// the bench, not by hand).
#[derive(Debug, Clone, Args)]
pub struct BenchSyncWorkerArgs {
    /// The bench's throw-away directory (its master key and the simulators' ready file).
    #[arg(long, value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// The bench's PostgreSQL URL, schema included.
    #[arg(long = "database-url", value_name = "URL")]
    pub database_url: String,
    /// The marketplaces' published rate limits on (as the bench).
    #[arg(long)]
    pub realistic_limits: bool,
}

/// `stockade sandbox` flags for a benchmark that starts it.
#[derive(Debug, Clone, Default, Args)]
pub struct SandboxBenchArgs {
    /// For benchmarks: lift the simulators' own limits: the marketplaces' rate limits off
    /// (as --no-rate-limits) and the delivery limits lifted (as --lift-delivery-limits).
    #[arg(long)]
    pub lift_limits: bool,
    /// For benchmarks: lift the delivery limits only (rate limits stay as set): no
    /// per-host pacing and no circuit breaker on webhook deliveries, 128 in flight at
    /// once, a 10 s timeout, bodies not kept in the delivery log (last 10,000), Amazon
    /// feeds processed in 50 ms steps; as the in-process `bench sync` runs them.
    #[arg(long)]
    pub lift_delivery_limits: bool,
    /// For a program that starts the sandbox: once the simulators listen, write their
    /// URLs, throw-away test credentials and CA as JSON to PATH (mode 0600, removed when
    /// the sandbox stops), and stop when standard input closes (the program ended) as
    /// well as on Ctrl-C.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,
}
