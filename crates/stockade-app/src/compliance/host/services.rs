//! Fail2Ban (the Stockade jails run) and automatic security updates (unattended-upgrades
//! enabled and installed).

use super::{Fact, HostEnv, JAILS, State, fact, missing, refused, text};

pub(super) fn fail2ban(env: &HostEnv<'_>) -> Vec<Fact> {
    let mut out = Vec::new();
    for jail in JAILS {
        let Some(o) = env.runner.run("fail2ban-client", &["status", jail]) else {
            return vec![missing("Fail2Ban", "fail2ban-client")];
        };
        let all = format!("{}\n{}", o.stdout, o.stderr);
        if o.ok() {
            let banned = number_after(&o.stdout, "Currently banned:").unwrap_or(0);
            let total = number_after(&o.stdout, "Total banned:").unwrap_or(0);
            out.push(fact(
                State::Holds,
                "f2b_jail",
                vec![
                    text(jail),
                    text(banned.to_string()),
                    text(total.to_string()),
                ],
            ));
        } else if all.contains("does not exist") {
            out.push(fact(State::Broken, "f2b_no_jail", vec![text(jail)]));
        } else if all.contains("Is fail2ban running")
            || (all.contains("Failed to access socket") && !all.contains("ermission"))
        {
            // Its own log line (time, pid, ERROR …) says no more than this.
            return vec![fact(State::Broken, "f2b_down", vec![])];
        } else {
            return vec![refused("Fail2Ban", "fail2ban-client", &o)];
        }
    }
    out
}

fn number_after(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.split_once(label))
        .and_then(|(_, v)| v.trim().parse().ok())
}

const APT_CONF: &str = "/etc/apt/apt.conf.d";

pub(super) fn updates(env: &HostEnv<'_>) -> Vec<Fact> {
    if !env.exists("/etc/apt") {
        return vec![fact(State::Unseen, "upd_not_apt", vec![])];
    }
    // Later files override earlier ones, as apt reads them (in name order).
    let dir = env.path(std::path::Path::new(APT_CONF));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut value: Option<(String, String)> = None;
    for name in names {
        let Ok(body) = std::fs::read_to_string(dir.join(&name)) else {
            continue;
        };
        for line in body.lines() {
            let line = line.trim();
            if line.starts_with("//") || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("APT::Periodic::Unattended-Upgrade") {
                let v = rest.trim().trim_end_matches(';').trim().trim_matches('"');
                value = Some((name.clone(), v.to_owned()));
            }
        }
    }
    let mut out = Vec::new();
    match &value {
        Some((file, v)) if v != "0" && !v.is_empty() => out.push(fact(
            State::Holds,
            "upd_on",
            vec![text(format!("{APT_CONF}/{file}")), text(v.clone())],
        )),
        Some((file, v)) => out.push(fact(
            State::Broken,
            "upd_off",
            vec![text(format!("{APT_CONF}/{file}")), text(v.clone())],
        )),
        None => out.push(fact(State::Broken, "upd_unset", vec![])),
    }
    let installed = env.exists("/usr/bin/unattended-upgrade")
        || env.read("/var/lib/dpkg/status").is_some_and(|s| {
            s.split("\n\n").any(|stanza| {
                stanza.lines().any(|l| l == "Package: unattended-upgrades")
                    && stanza.lines().any(|l| l == "Status: install ok installed")
            })
        });
    out.push(if installed {
        fact(State::Holds, "upd_installed", vec![])
    } else {
        fact(State::Broken, "upd_not_installed", vec![])
    });
    out
}
