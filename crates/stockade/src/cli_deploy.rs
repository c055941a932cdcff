//! The `stockade deploy …` command tree (clap types only; the work is in
//! `commands/deploy.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Print host firewall rules generated from the configuration: in, the listening port
    /// (and SSH); out, only the hosts Stockade talks to (egress allowlist, alert channels,
    /// the audit mirror's NocoDB, the PostgreSQL database), DNS and NTP. Everything else is
    /// dropped, and dropped outbound packets are counted and logged.
    #[command(
        after_long_help = "Host names are resolved now (IPv4 and IPv6) and each rule names its host in a comment:
regenerate the rules when a host's addresses change. A host that does not resolve (or a
\"*.domain\" allowlist entry, which names no address) is an error naming it, exit 2, and
nothing is written; --allow-unresolved writes a commented TODO line for it instead.
DNS servers come from /etc/resolv.conf (--resolv-conf). The host's own needs (package
updates, a backup target) are not in the configuration: add them with --allow-out.

Examples:
  stockade --config /etc/stockade/stockade.toml deploy firewall --format nft --out stockade.nft
  nft -c -f stockade.nft && nft -f stockade.nft
  stockade deploy firewall --format ufw --ssh-port 2222 --allow-out apt-mirror.example.net:80 > ufw.sh"
    )]
    Firewall(FirewallArgs),
    /// Print the systemd unit (deploy/stockade.service) with ExecStart=, ReadWritePaths= and
    /// IPAddressAllow= filled in from the configuration: the data directory, the backup
    /// and audit mirror directories, and the resolved addresses of the hosts Stockade
    /// talks to, the database and the DNS servers.
    #[command(
        after_long_help = "IPAddressDeny=any applies to packets in both directions. A server whose server.listen
is not a loopback address needs --clients: the networks its users and the marketplaces'
webhooks come from, or `any` (then outbound traffic is limited by the firewall from
`stockade deploy firewall` and by the egress gateway, not by the unit).

Example:
  stockade --config /etc/stockade/stockade.toml deploy unit > /etc/systemd/system/stockade.service"
    )]
    Unit(UnitArgs),
}

/// What `deploy firewall` and `deploy unit` resolve.
#[derive(Debug, Args, Clone)]
pub struct ResolveArgs {
    /// Write a commented TODO line for a host that does not resolve, instead of refusing.
    #[arg(long)]
    pub allow_unresolved: bool,
    /// The file naming the DNS servers (its `nameserver` lines).
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// An NTP server the host's clock synchronises with (UDP 123); repeat for several.
    #[arg(long = "ntp", value_name = "HOST")]
    pub ntp: Vec<String>,
    /// Another destination to allow out, HOST[:PORT] (port 443 by default; TCP), e.g. the
    /// package mirror for unattended upgrades; repeat for several.
    #[arg(long = "allow-out", value_name = "HOST[:PORT]")]
    pub allow_out: Vec<String>,
    /// Write the result to this file (refused if it exists) instead of standard output.
    /// Nothing is written when generation fails.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FirewallArgs {
    /// nft: an nftables ruleset (`table inet stockade`) for `nft -f`; ufw: a shell script
    /// of `ufw` commands.
    #[arg(long, value_enum)]
    pub format: FirewallFormat,
    /// The SSH port to let in, or `none`.
    #[arg(long, value_name = "PORT|none", default_value = "22")]
    pub ssh_port: String,
    /// Another TCP port to let in, e.g. 443 of a reverse proxy on this host when
    /// server.listen is a loopback address; repeat for several.
    #[arg(long = "open-port", value_name = "PORT")]
    pub open_ports: Vec<u16>,
    #[command(flatten)]
    pub resolve: ResolveArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FirewallFormat {
    Nft,
    Ufw,
}

#[derive(Debug, Args)]
pub struct UnitArgs {
    /// The binary's path in ExecStart=.
    #[arg(long, value_name = "PATH", default_value = "/usr/local/bin/stockade")]
    pub binary: PathBuf,
    /// Networks allowed to connect in (CIDR, an address, or `any`); repeat for several.
    /// Needed when server.listen is not a loopback address.
    #[arg(long = "clients", value_name = "CIDR|any")]
    pub clients: Vec<String>,
    #[command(flatten)]
    pub resolve: ResolveArgs,
}
