//! `stockade deploy firewall|unit`: what the host needs to run Stockade, generated from
//! its configuration. This file gathers the destinations (the hosts Stockade talks to,
//! the database, DNS, NTP) and resolves them; `deploy_rules.rs` writes the firewall
//! rules and `deploy_unit.rs` the systemd unit.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use stockade_store::DatabaseUrl;

use super::{deploy_rules, deploy_unit};
use crate::cli_deploy::{DeployCommand, FirewallFormat, ResolveArgs};
use crate::exit::Failure;
use crate::settings::Settings;

/// A transport protocol of an outbound rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub(super) fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One place the host must be able to reach.
#[derive(Debug, Clone)]
pub(super) struct Destination {
    /// The host as configured (a name or an address).
    pub host: String,
    pub port: u16,
    pub protos: &'static [Proto],
    /// Why it is allowed: which setting named it.
    pub why: &'static str,
    /// Its addresses, resolved now; empty when it did not resolve.
    pub addrs: Vec<IpAddr>,
    /// Why it did not resolve.
    pub unresolved: Option<String>,
}

impl Destination {
    /// `host:port (why)`, for comments and messages.
    pub(super) fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{} ({})", self.host, self.port, self.why)
        } else {
            format!("{}:{} ({})", self.host, self.port, self.why)
        }
    }
}

/// Everything the rules and the unit are made from.
#[derive(Debug)]
pub(super) struct Plan {
    /// The configuration file the plan came from, as given (for the header comment).
    pub source: String,
    pub listen: SocketAddr,
    pub destinations: Vec<Destination>,
}

const TCP: &[Proto] = &[Proto::Tcp];
const UDP: &[Proto] = &[Proto::Udp];
const TCP_UDP: &[Proto] = &[Proto::Udp, Proto::Tcp];

pub async fn run(settings: &Settings, cmd: DeployCommand) -> Result<(), Failure> {
    match cmd {
        DeployCommand::Firewall(args) => {
            let ssh = parse_ssh_port(&args.ssh_port)?;
            let plan = plan(settings, &args.resolve)?;
            let text = match args.format {
                FirewallFormat::Nft => deploy_rules::nft(&plan, ssh, &args.open_ports),
                FirewallFormat::Ufw => deploy_rules::ufw(&plan, ssh, &args.open_ports),
            };
            emit(&text, args.resolve.out.as_deref())
        }
        DeployCommand::Unit(args) => {
            let plan = plan(settings, &args.resolve)?;
            let text = deploy_unit::unit(settings, &plan, &args.binary, &args.clients)?;
            emit(&text, args.resolve.out.as_deref())
        }
    }
}

fn parse_ssh_port(text: &str) -> Result<Option<u16>, Failure> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(Failure::usage(format!(
            "--ssh-port {text:?} is not a port: give a number from 1 to 65535, or `none` to keep SSH closed; nothing was written"
        ))),
    }
}

/// The plan of this configuration: every destination, resolved. Refuses (exit 2) when a
/// host does not resolve, unless `--allow-unresolved`.
fn plan(settings: &Settings, args: &ResolveArgs) -> Result<Plan, Failure> {
    let env = settings.require_env()?;
    let mut wanted: Vec<(String, &'static [Proto], &'static str, u16)> = Vec::new();
    // Hosts configured for a purpose are named by it; the rest of the allowlist after.
    for h in settings.alerts.hosts() {
        wanted.push((h, TCP, "alert channel", 443));
    }
    if let Some(n) = &settings.audit_mirror.nocodb {
        wanted.push((n.authority(), TCP, "audit mirror NocoDB", 443));
    }
    for h in settings.egress_config(env).allowed_hosts {
        wanted.push((h, TCP, "egress allowlist", 443));
    }
    if let DatabaseUrl::Postgres { url, .. } = &settings.database {
        for h in postgres_hosts(url) {
            wanted.push((h, TCP, "PostgreSQL database", 5432));
        }
    }
    for ns in nameservers(&args.resolv_conf)? {
        wanted.push((ns, TCP_UDP, "DNS server from resolv.conf", 53));
    }
    for h in &args.ntp {
        wanted.push((h.clone(), UDP, "NTP server (--ntp)", 123));
    }
    for h in &args.allow_out {
        wanted.push((h.clone(), TCP, "--allow-out", 443));
    }

    let mut seen = BTreeSet::new();
    let mut destinations = Vec::new();
    for (authority, protos, why, default_port) in wanted {
        let (host, port) = split_authority(&authority, default_port).map_err(|e| {
            Failure::usage(format!(
                "{why} entry {authority:?}: {e}; nothing was written"
            ))
        })?;
        // The same host and port named twice is one rule (named by its first purpose).
        if !seen.insert((host.clone(), port, protos)) {
            continue;
        }
        let (addrs, unresolved) = match resolve(&host, port) {
            Ok(a) => (a, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        destinations.push(Destination {
            host,
            port,
            protos,
            why,
            addrs,
            unresolved,
        });
    }
    let failed: Vec<String> = destinations
        .iter()
        .filter_map(|d| {
            d.unresolved
                .as_ref()
                .map(|e| format!("{} ({e})", d.label()))
        })
        .collect();
    if !failed.is_empty() && !args.allow_unresolved {
        return Err(Failure::usage(format!(
            "cannot resolve {}: check the name in the configuration and this host's DNS, or pass --allow-unresolved to write a commented TODO line for it instead; nothing was written",
            failed.join("; ")
        )));
    }
    let source = match &settings.config_file {
        Some(p) => p.display().to_string(),
        None => "(no configuration file: the defaults)".into(),
    };
    Ok(Plan {
        source,
        listen: settings.server.listen,
        destinations,
    })
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address, as the settings write them.
fn split_authority(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not HOST or HOST:PORT");
    if text.is_empty() || text.contains('/') || text.contains('@') {
        return Err(bad());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    if text.parse::<IpAddr>().is_ok() {
        return Ok((text.to_owned(), default_port));
    }
    match text.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Ok((
            h.to_ascii_lowercase(),
            p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        )),
        Some(_) => Err(bad()),
        None => Ok((text.to_ascii_lowercase(), default_port)),
    }
}

/// The network hosts of a PostgreSQL URL (several with `host1,host2`); a Unix socket
/// (empty host or a path) needs no rule.
fn postgres_hosts(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty() && !h.starts_with('%') && !h.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// The `nameserver` lines of resolv.conf.
fn nameservers(path: &Path) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read {} for the DNS servers: {e}; pass --resolv-conf FILE; nothing was written",
            path.display()
        ))
    })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                // A scoped IPv6 address (fe80::1%eth0) is allowed without its scope.
                .map(|a| a.split('%').next().unwrap_or(a).to_owned())
        })
        .collect())
}

/// The host's addresses (IPv4 and IPv6), sorted.
fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    if host.starts_with("*.") {
        return Err(
            "a wildcard names no addresses: list the hosts it stands for with --allow-out, or in [egress] allowed_hosts"
                .into(),
        );
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let addrs = (host, port).to_socket_addrs().map_err(|e| e.to_string())?;
    let set: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).collect();
    if set.is_empty() {
        return Err("resolves to no address".into());
    }
    Ok(set.into_iter().collect())
}

/// Standard output, or a new file (refused if it exists; written whole or not at all).
fn emit(text: &str, out: Option<&Path>) -> Result<(), Failure> {
    let Some(path) = out else {
        println!("{}", text.strip_suffix('\n').unwrap_or(text));
        return Ok(());
    };
    if path.exists() {
        return Err(Failure::usage(format!(
            "{} exists: remove it or choose another --out; nothing was written",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // Refuses to replace a file that appeared meanwhile.
        std::fs::hard_link(&tmp, path)?;
        std::fs::remove_file(&tmp)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Failure::runtime(format!("cannot write {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn authorities_and_database_hosts() {
        assert_eq!(
            split_authority("api.ebay.com", 443).unwrap(),
            ("api.ebay.com".into(), 443)
        );
        assert_eq!(
            split_authority("nocodb.example:8080", 443).unwrap(),
            ("nocodb.example".into(), 8080)
        );
        assert_eq!(
            split_authority("[2001:db8::1]:5433", 5432).unwrap(),
            ("2001:db8::1".into(), 5433)
        );
        assert_eq!(
            split_authority("2001:db8::1", 53).unwrap(),
            ("2001:db8::1".into(), 53)
        );
        assert!(split_authority("https://x/", 443).is_err());
        assert!(split_authority("x:port", 443).is_err());
        assert!(split_authority("x:0", 443).is_err());
        assert_eq!(
            postgres_hosts("postgres://u:p@db.internal:5433/stockade?sslmode=verify-full"),
            vec!["db.internal:5433"]
        );
        assert_eq!(
            postgres_hosts("postgres://u@a:1,b/db"),
            vec!["a:1".to_owned(), "b".to_owned()]
        );
        assert!(postgres_hosts("postgres://u@%2Frun%2Fpostgresql/db").is_empty());
        assert!(postgres_hosts("postgres:///db").is_empty());
        assert!(
            resolve("*.example.com", 443)
                .unwrap_err()
                .contains("wildcard")
        );
        assert_eq!(parse_ssh_port("none").unwrap(), None);
        assert_eq!(parse_ssh_port("2222").unwrap(), Some(2222));
        assert!(parse_ssh_port("0").is_err());
    }
}
