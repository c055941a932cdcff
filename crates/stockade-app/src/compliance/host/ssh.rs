//! SSH: keys only, no root password login. `sshd -T` (the effective configuration) when
//! it runs; else `/etc/ssh/sshd_config` and its `Include`s read as sshd does (the first
//! value of a keyword wins; `Match` blocks are conditional and left out; unset keywords
//! take OpenSSH's defaults).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Fact, HostEnv, State, fact, missing, text};

const MAIN: &str = "/etc/ssh/sshd_config";

pub(super) fn facts(env: &HostEnv<'_>) -> Vec<Fact> {
    let mut out = Vec::new();
    let (source, settings) = match env.runner.run("sshd", &["-T"]) {
        Some(o) if o.ok() => ("sshd -T", parse_effective(&o.stdout)),
        other => {
            if !env.exists(MAIN) {
                if other.is_none() {
                    return vec![missing("SSH", "sshd")];
                }
                return vec![fact(
                    State::Unseen,
                    "ssh_no_config",
                    vec![text(other.map(|o| o.why()).unwrap_or_default())],
                )];
            }
            if let Some(o) = &other {
                out.push(fact(State::Info, "ssh_t_refused", vec![text(o.why())]));
            }
            (MAIN, read_config(env))
        }
    };
    out.push(fact(State::Info, "ssh_source", vec![text(source)]));
    let get = |k: &str, default: &str| {
        settings
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    };
    let password = get("passwordauthentication", "yes");
    out.push(fact(
        if password == "no" {
            State::Holds
        } else {
            State::Broken
        },
        "ssh_password",
        vec![text(password)],
    ));
    // OpenSSH 8.7 renamed ChallengeResponseAuthentication; either name, same switch.
    let kbd = settings
        .get("kbdinteractiveauthentication")
        .or_else(|| settings.get("challengeresponseauthentication"))
        .cloned()
        .unwrap_or_else(|| "yes".into());
    out.push(fact(
        if kbd == "no" {
            State::Holds
        } else {
            State::Broken
        },
        "ssh_kbd",
        vec![text(kbd)],
    ));
    let root = get("permitrootlogin", "prohibit-password");
    let ok = matches!(
        root.as_str(),
        "no" | "prohibit-password" | "without-password" | "forced-commands-only"
    );
    out.push(fact(
        if ok { State::Holds } else { State::Broken },
        "ssh_root",
        vec![text(root)],
    ));
    out
}

/// `sshd -T` prints one lower-case `keyword value` per line.
fn parse_effective(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
        .collect()
}

fn read_config(env: &HostEnv<'_>) -> HashMap<String, String> {
    let mut settings = HashMap::new();
    let mut in_match = false;
    read_file(env, Path::new(MAIN), &mut settings, &mut in_match, 0);
    settings
}

fn read_file(
    env: &HostEnv<'_>,
    file: &Path,
    settings: &mut HashMap<String, String>,
    in_match: &mut bool,
    depth: u8,
) {
    // sshd limits the nesting of Include too.
    if depth > 8 {
        return;
    }
    let Ok(body) = std::fs::read_to_string(env.path(file)) else {
        return;
    };
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (
                k.to_ascii_lowercase(),
                v.trim_start_matches([' ', '\t', '=']),
            ),
            None => continue,
        };
        let value = value.trim().trim_matches('"');
        if key == "match" {
            *in_match = true;
            continue;
        }
        if *in_match {
            // Everything after a Match line is conditional, up to the file's end (sshd
            // applies an Include inside a Match only to that Match too).
            continue;
        }
        if key == "include" {
            for pattern in value.split_whitespace() {
                for f in expand(env, pattern) {
                    read_file(env, &f, settings, in_match, depth + 1);
                }
            }
            continue;
        }
        settings
            .entry(key)
            .or_insert_with(|| value.to_ascii_lowercase());
    }
}

/// An Include pattern: relative to /etc/ssh, `*`/`?` globs in the file name, sorted.
fn expand(env: &HostEnv<'_>, pattern: &str) -> Vec<PathBuf> {
    let full = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![full];
    }
    let Some(dir) = full.parent() else {
        return vec![];
    };
    let Ok(entries) = std::fs::read_dir(env.path(dir)) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| glob(name.as_bytes(), n.as_bytes()))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// `*` and `?` matching (what sshd's glob does within one directory).
pub(super) fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => glob(rest, s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some((b'?', rest)), Some((_, srest))) => glob(rest, srest),
        (Some((a, rest)), Some((b, srest))) if a == b => glob(rest, srest),
        _ => false,
    }
}
