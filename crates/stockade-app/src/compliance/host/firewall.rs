//! The firewall: active, incoming policy drop (or reject), and the TCP ports it accepts
//! a subset of {Stockade's listening port, 22}. Read from `nft -j list ruleset` (JSON),
//! else `ufw status verbose`, else `iptables-save`; chains jumped to from the input chain
//! are followed. Accepting established/related traffic, loopback and ICMP is expected.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::{CmdOut, Fact, HostEnv, State, fact, text};

/// What one tool shows of the incoming filter.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Incoming {
    pub tool: &'static str,
    /// Unmatched incoming traffic is dropped or rejected.
    pub drop: bool,
    /// `tcp/8443`, `udp/123`, …: what new incoming traffic is accepted on.
    pub ports: BTreeSet<String>,
    /// A rule accepts new traffic on every port.
    pub any: bool,
}

enum Outcome {
    Seen(Incoming),
    /// The tool ran and found no incoming filter (no input chain, ufw inactive).
    Off(&'static str, &'static str),
    Refused(&'static str, CmdOut),
}

pub(super) fn facts(env: &HostEnv<'_>) -> Vec<Fact> {
    let tools: [(&'static str, &[&str]); 3] = [
        ("nft", &["-j", "list", "ruleset"]),
        ("ufw", &["status", "verbose"]),
        ("iptables-save", &[]),
    ];
    let mut seen_off = None;
    let mut refusals = Vec::new();
    let mut installed = false;
    for (tool, args) in tools {
        let Some(out) = env.runner.run(tool, args) else {
            continue;
        };
        installed = true;
        match parse(tool, &out) {
            Outcome::Seen(inc) => return judge(env, inc),
            Outcome::Off(t, why) => seen_off = seen_off.or(Some((t, why))),
            Outcome::Refused(t, o) => refusals.push((t, o)),
        }
    }
    if let Some((tool, why)) = seen_off {
        return vec![fact(State::Broken, why, vec![text(tool)])];
    }
    if !installed {
        return vec![super::missing("firewall", "nft, ufw, iptables-save")];
    }
    refusals
        .iter()
        .map(|(t, o)| super::refused("firewall", t, o))
        .collect()
}

fn judge(env: &HostEnv<'_>, inc: Incoming) -> Vec<Fact> {
    let mut out = vec![fact(State::Info, "fw_tool", vec![text(inc.tool)])];
    out.push(if inc.drop {
        fact(State::Holds, "fw_drop", vec![])
    } else {
        fact(State::Broken, "fw_accept_default", vec![])
    });
    let allowed: HashSet<String> = [format!("tcp/{}", env.listen_port), "tcp/22".into()]
        .into_iter()
        .collect();
    let ports = inc.ports.iter().cloned().collect::<Vec<_>>().join(", ");
    let extra: Vec<String> = inc
        .ports
        .iter()
        .filter(|p| !allowed.contains(*p))
        .cloned()
        .collect();
    let allowed_text = format!("tcp/{}, tcp/22", env.listen_port);
    if inc.any {
        out.push(fact(State::Broken, "fw_any", vec![]));
    }
    let shown = if ports.is_empty() {
        "—".into()
    } else {
        ports
    };
    if extra.is_empty() {
        let state = if inc.any { State::Info } else { State::Holds };
        out.push(fact(
            state,
            "fw_ports",
            vec![text(shown), text(allowed_text)],
        ));
    } else {
        out.push(fact(
            State::Broken,
            "fw_ports_extra",
            vec![text(shown), text(extra.join(", ")), text(allowed_text)],
        ));
    }
    out
}

fn parse(tool: &'static str, out: &CmdOut) -> Outcome {
    match tool {
        "nft" => {
            if !out.ok() {
                return Outcome::Refused(tool, out.clone());
            }
            match nft(&out.stdout) {
                Some(i) => Outcome::Seen(i),
                None => Outcome::Off(tool, "fw_no_input"),
            }
        }
        "ufw" => {
            if !out.ok() || !out.stdout.contains("Status:") {
                return Outcome::Refused(tool, out.clone());
            }
            match ufw(&out.stdout) {
                Some(i) => Outcome::Seen(i),
                None => Outcome::Off(tool, "fw_ufw_inactive"),
            }
        }
        _ => {
            if !out.ok() {
                return Outcome::Refused(tool, out.clone());
            }
            match iptables(&out.stdout) {
                Some(i) => Outcome::Seen(i),
                None => Outcome::Off(tool, "fw_no_input"),
            }
        }
    }
}

/// Ports in a `right` value of an nft match: a number, a service name, a set, a range.
fn nft_ports(v: &Value, proto: &str, into: &mut BTreeSet<String>) {
    match v {
        Value::Number(n) => {
            into.insert(format!("{proto}/{n}"));
        }
        Value::String(s) => {
            into.insert(format!("{proto}/{}", service(s)));
        }
        Value::Array(a) => a.iter().for_each(|x| nft_ports(x, proto, into)),
        Value::Object(o) => {
            if let Some(set) = o.get("set") {
                nft_ports(set, proto, into);
            } else if let Some(Value::Array(r)) = o.get("range") {
                let a = r.first().map(Value::to_string).unwrap_or_default();
                let b = r.get(1).map(Value::to_string).unwrap_or_default();
                into.insert(format!("{proto}/{a}-{b}"));
            }
        }
        _ => {}
    }
}

fn service(s: &str) -> String {
    match s {
        "ssh" => "22".into(),
        "http" => "80".into(),
        "https" => "443".into(),
        other => other.into(),
    }
}

/// Whether an nft value names ICMP only (`icmp`, `{ icmp, ipv6-icmp }`).
fn only_icmp(v: &Value) -> bool {
    let icmp = |s: &str| s.starts_with("icmp") || s == "ipv6-icmp";
    match v {
        Value::String(s) => icmp(s),
        Value::Object(o) => o.get("set").is_some_and(only_icmp),
        Value::Array(a) => !a.is_empty() && a.iter().all(only_icmp),
        _ => false,
    }
}

/// What a rule's expressions say: its verdict and what it matches.
#[derive(Default)]
struct Rule {
    accept: bool,
    drop: bool,
    jump: Option<String>,
    ports: BTreeSet<String>,
    /// Matches that make it not "new traffic on any port": ct state, loopback, ICMP,
    /// a source address.
    narrowed: bool,
    matches: usize,
}

fn nft_rule(expr: &[Value]) -> Rule {
    let mut r = Rule::default();
    for e in expr {
        let Some(obj) = e.as_object() else { continue };
        if obj.contains_key("accept") {
            r.accept = true;
        } else if obj.contains_key("drop") || obj.contains_key("reject") {
            r.drop = true;
        } else if let Some(t) = obj.get("jump").or_else(|| obj.get("goto")) {
            r.jump = t.get("target").and_then(Value::as_str).map(str::to_owned);
        } else if let Some(m) = obj.get("match") {
            r.matches += 1;
            let left = &m["left"];
            let right = &m["right"];
            if let Some(p) = left.get("payload") {
                let proto = p["protocol"].as_str().unwrap_or("");
                let field = p["field"].as_str().unwrap_or("");
                match (proto, field) {
                    ("tcp" | "udp", "dport") => nft_ports(right, proto, &mut r.ports),
                    ("ip" | "ip6", "saddr") => r.narrowed = true,
                    ("icmp" | "icmpv6", _) => r.narrowed = true,
                    ("ip", "protocol") | ("ip6", "nexthdr")
                        if right.as_str().is_some_and(|s| s.starts_with("icmp")) =>
                    {
                        r.narrowed = true
                    }
                    _ => {}
                }
            } else if let Some(meta) = left.get("meta") {
                let key = meta["key"].as_str().unwrap_or("");
                let val = right.as_str().unwrap_or("");
                if ((key == "iifname" || key == "iif") && val == "lo")
                    || (key == "l4proto" && only_icmp(right))
                {
                    r.narrowed = true;
                }
            } else if left.get("ct").is_some() {
                // ct state established,related (a new connection is not accepted here).
                let text = right.to_string();
                if !text.contains("new") {
                    r.narrowed = true;
                }
            }
        }
    }
    r
}

/// The incoming filter from `nft -j list ruleset`; `None` without an input base chain.
pub(super) fn nft(json: &str) -> Option<Incoming> {
    let v: Value = serde_json::from_str(json).ok()?;
    let items = v.get("nftables")?.as_array()?;
    let mut chains: HashMap<(String, String, String), Vec<Rule>> = HashMap::new();
    let mut bases = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let key = (
                c["family"].as_str().unwrap_or("").to_owned(),
                c["table"].as_str().unwrap_or("").to_owned(),
                c["name"].as_str().unwrap_or("").to_owned(),
            );
            if c["hook"] == "input" && matches!(c["family"].as_str(), Some("inet" | "ip" | "ip6")) {
                bases.push((key.clone(), c["policy"].as_str() == Some("drop")));
            }
            chains.entry(key).or_default();
        } else if let Some(r) = item.get("rule") {
            let key = (
                r["family"].as_str().unwrap_or("").to_owned(),
                r["table"].as_str().unwrap_or("").to_owned(),
                r["chain"].as_str().unwrap_or("").to_owned(),
            );
            let expr = r["expr"].as_array().cloned().unwrap_or_default();
            chains.entry(key).or_default().push(nft_rule(&expr));
        }
    }
    if bases.is_empty() {
        return None;
    }
    let mut inc = Incoming {
        tool: "nft",
        ..Incoming::default()
    };
    for (key, policy_drop) in bases {
        let rules = chains.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let ends_in_drop = rules.last().is_some_and(|r| r.drop && r.matches == 0);
        inc.drop |= policy_drop || ends_in_drop;
        let mut seen = HashSet::new();
        walk_nft(&chains, &key, &mut inc, &mut seen);
    }
    Some(inc)
}

fn walk_nft(
    chains: &HashMap<(String, String, String), Vec<Rule>>,
    key: &(String, String, String),
    inc: &mut Incoming,
    seen: &mut HashSet<(String, String, String)>,
) {
    if !seen.insert(key.clone()) {
        return;
    }
    for r in chains.get(key).map(Vec::as_slice).unwrap_or(&[]) {
        if r.accept {
            accept(inc, &r.ports, r.narrowed);
        }
        if let Some(t) = &r.jump {
            let next = (key.0.clone(), key.1.clone(), t.clone());
            walk_nft(chains, &next, inc, seen);
        }
    }
}

fn accept(inc: &mut Incoming, ports: &BTreeSet<String>, narrowed: bool) {
    if !ports.is_empty() {
        inc.ports.extend(ports.iter().cloned());
    } else if !narrowed {
        inc.any = true;
    }
}

/// The incoming filter from `ufw status verbose`; `None` when ufw is inactive.
pub(super) fn ufw(out: &str) -> Option<Incoming> {
    if !out.lines().any(|l| l.trim() == "Status: active") {
        return None;
    }
    let mut inc = Incoming {
        tool: "ufw",
        ..Incoming::default()
    };
    for line in out.lines() {
        if let Some(d) = line.strip_prefix("Default:") {
            let incoming = d
                .split(',')
                .find(|p| p.contains("(incoming)"))
                .unwrap_or("");
            inc.drop = incoming.contains("deny") || incoming.contains("reject");
            continue;
        }
        let Some(at) = line.find(" ALLOW") else {
            continue;
        };
        if line[at..].trim_start().starts_with("ALLOW OUT") {
            continue;
        }
        let to = line[..at].replace("(v6)", "");
        let to = to.trim();
        if to.starts_with("Anywhere") {
            let from = line[at..]
                .trim_start()
                .trim_start_matches("ALLOW IN")
                .trim();
            accept(&mut inc, &BTreeSet::new(), !from.starts_with("Anywhere"));
            continue;
        }
        let mut ports = BTreeSet::new();
        let (spec, proto) = match to.split_once('/') {
            Some((s, p)) => (s.trim(), vec![p.trim().to_owned()]),
            None => (to, vec!["tcp".to_owned(), "udp".to_owned()]),
        };
        if spec.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            for p in spec.split(',') {
                for pr in &proto {
                    ports.insert(format!("{pr}/{}", p.trim().replace(':', "-")));
                }
            }
        } else if spec.eq_ignore_ascii_case("OpenSSH") {
            ports.insert("tcp/22".into());
        } else {
            ports.insert(format!("app/{spec}"));
        }
        accept(&mut inc, &ports, false);
    }
    Some(inc)
}

/// The incoming filter from `iptables-save`; `None` without a filter table.
pub(super) fn iptables(out: &str) -> Option<Incoming> {
    let mut in_filter = false;
    let mut policy_drop = false;
    let mut found = false;
    let mut chains: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    for line in out.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix('*') {
            in_filter = t == "filter";
            continue;
        }
        if !in_filter {
            continue;
        }
        if let Some(c) = line.strip_prefix(":INPUT ") {
            found = true;
            policy_drop = c.starts_with("DROP");
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let words: Vec<String> = rule.split_whitespace().map(str::to_owned).collect();
            if let Some((chain, rest)) = words.split_first() {
                chains.entry(chain.clone()).or_default().push(rest.to_vec());
            }
        }
    }
    if !found {
        return None;
    }
    let mut inc = Incoming {
        tool: "iptables-save",
        drop: policy_drop,
        ..Incoming::default()
    };
    let last_drops = chains.get("INPUT").and_then(|r| r.last()).is_some_and(|r| {
        r.len() == 2 && r[0] == "-j" && matches!(r[1].as_str(), "DROP" | "REJECT")
    });
    inc.drop |= last_drops;
    let mut seen = HashSet::new();
    walk_ipt(&chains, "INPUT", &mut inc, &mut seen);
    Some(inc)
}

fn walk_ipt(
    chains: &HashMap<String, Vec<Vec<String>>>,
    chain: &str,
    inc: &mut Incoming,
    seen: &mut HashSet<String>,
) {
    if !seen.insert(chain.to_owned()) {
        return;
    }
    for words in chains.get(chain).map(Vec::as_slice).unwrap_or(&[]) {
        let arg = |flag: &str| {
            words
                .iter()
                .position(|w| w == flag)
                .and_then(|i| words.get(i + 1))
                .cloned()
        };
        let target = arg("-j").unwrap_or_default();
        match target.as_str() {
            "ACCEPT" => {
                let proto = arg("-p").unwrap_or_else(|| "all".into());
                let mut ports = BTreeSet::new();
                for p in arg("--dport")
                    .into_iter()
                    .chain(arg("--dports"))
                    .flat_map(|s| s.split(',').map(str::to_owned).collect::<Vec<_>>())
                {
                    ports.insert(format!("{proto}/{}", service(&p.replace(':', "-"))));
                }
                let narrowed = arg("-i").as_deref() == Some("lo")
                    || words.iter().any(|w| w == "--ctstate" || w == "--state")
                        && !arg("--ctstate")
                            .or_else(|| arg("--state"))
                            .unwrap_or_default()
                            .contains("NEW")
                    || proto.starts_with("icmp")
                    || arg("-s").is_some();
                accept(inc, &ports, narrowed);
            }
            "DROP" | "REJECT" | "RETURN" | "LOG" | "" => {}
            other => walk_ipt(chains, other, inc, seen),
        }
    }
}
