//! The data directory (0700) and master key file (0600 or stricter, owned by the service
//! user), and the service user itself: the owner of the data directory, not root, with
//! no login shell.

use std::os::unix::fs::MetadataExt;

use super::{Fact, HostEnv, State, fact, text};

fn mode(m: u32) -> String {
    format!("{:04o}", m & 0o7777)
}

pub(super) fn permissions(env: &HostEnv<'_>) -> Vec<Fact> {
    let mut out = Vec::new();
    let dir = env.path(&env.data_dir);
    let shown_dir = env.data_dir.display().to_string();
    let owner = match std::fs::metadata(&dir) {
        Ok(m) => {
            let ok = m.mode() & 0o077 == 0;
            out.push(fact(
                if ok { State::Holds } else { State::Broken },
                if ok { "files_dir" } else { "files_dir_open" },
                vec![text(shown_dir), text(mode(m.mode()))],
            ));
            Some(m.uid())
        }
        Err(e) => {
            out.push(fact(
                State::Unseen,
                "files_dir_unseen",
                vec![text(shown_dir), text(e.to_string())],
            ));
            None
        }
    };
    match &env.key_file {
        None => out.push(fact(State::Info, "files_key_env", vec![])),
        Some(key) => {
            let shown = key.display().to_string();
            match std::fs::metadata(env.path(key)) {
                Ok(m) => {
                    let private = m.mode() & 0o077 == 0;
                    let same_owner = owner.is_none_or(|o| o == m.uid());
                    let args = vec![
                        text(shown),
                        text(mode(m.mode())),
                        text(user_name(env, m.uid())),
                    ];
                    out.push(if private && same_owner {
                        fact(State::Holds, "files_key", args)
                    } else if !private {
                        fact(State::Broken, "files_key_open", args)
                    } else {
                        fact(State::Broken, "files_key_owner", args)
                    });
                }
                Err(e) => out.push(fact(
                    State::Unseen,
                    "files_key_unseen",
                    vec![text(shown), text(e.to_string())],
                )),
            }
        }
    }
    out
}

/// `(name, shell)` of `uid` in /etc/passwd.
fn passwd(env: &HostEnv<'_>, uid: u32) -> Option<(String, String)> {
    let body = env.read("/etc/passwd")?;
    body.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(uid))
            .then(|| (f[0].to_owned(), f[6].to_owned()))
    })
}

fn user_name(env: &HostEnv<'_>, uid: u32) -> String {
    passwd(env, uid)
        .map(|(n, _)| n)
        .unwrap_or_else(|| format!("uid {uid}"))
}

pub(super) fn service_user(env: &HostEnv<'_>) -> Vec<Fact> {
    let mut out = Vec::new();
    // The service user owns the data directory (the unit's User= creates and writes it).
    let uid = match std::fs::metadata(env.path(&env.data_dir)) {
        Ok(m) => m.uid(),
        Err(e) => {
            return vec![fact(
                State::Unseen,
                "files_dir_unseen",
                vec![
                    text(env.data_dir.display().to_string()),
                    text(e.to_string()),
                ],
            )];
        }
    };
    let name = user_name(env, uid);
    if uid == 0 {
        out.push(fact(State::Broken, "user_root", vec![]));
    } else {
        out.push(fact(
            State::Holds,
            "user_unprivileged",
            vec![text(name.clone()), text(uid.to_string())],
        ));
    }
    match passwd(env, uid) {
        Some((_, shell)) => {
            let no_login = shell.ends_with("/nologin") || shell.ends_with("/false");
            out.push(fact(
                if no_login {
                    State::Holds
                } else {
                    State::Broken
                },
                if no_login {
                    "user_nologin"
                } else {
                    "user_shell"
                },
                vec![text(name), text(shell)],
            ));
        }
        None => out.push(fact(
            State::Unseen,
            "user_unknown",
            vec![text(uid.to_string())],
        )),
    }
    out.push(fact(
        State::Info,
        "user_report_euid",
        vec![text(user_name(env, env.euid)), text(env.euid.to_string())],
    ));
    out
}
