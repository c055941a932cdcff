//! Each host check on fixture files and command outputs: pass, fail and cannot check;
//! and one real run on this machine that must never panic.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use stockade_server::compliance::Verdict;

use super::*;

/// Canned outputs: `"prog arg…"` → output; a missing entry: not installed.
#[derive(Default)]
struct Fake(HashMap<String, CmdOut>);

impl Fake {
    fn with(mut self, cmd: &str, status: i32, stdout: &str, stderr: &str) -> Self {
        self.0.insert(
            cmd.to_owned(),
            CmdOut {
                status: Some(status),
                stdout: stdout.into(),
                stderr: stderr.into(),
            },
        );
        self
    }
}

impl Runner for Fake {
    fn run(&self, program: &str, args: &[&str]) -> Option<CmdOut> {
        let key = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        self.0.get(&key).cloned()
    }
}

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir = std::env::temp_dir().join(format!(
            "stockade-host-{name}-{}-{}",
            std::process::id(),
            stockade_core::time::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Root(dir)
    }
    fn file(&self, path: &str, body: &str) -> &Self {
        let p = self.0.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
        self
    }
    fn mode(&self, path: &str, mode: u32) -> &Self {
        let p = self.0.join(path.trim_start_matches('/'));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }
    fn env<'a>(&self, runner: &'a dyn Runner) -> HostEnv<'a> {
        HostEnv {
            root: self.0.clone(),
            runner,
            euid: 0,
            listen_port: 8443,
            data_dir: PathBuf::from("/var/lib/stockade"),
            key_file: Some(PathBuf::from("/var/lib/stockade/master.key")),
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keys(facts: &[Fact]) -> Vec<&'static str> {
    facts.iter().map(|f| f.evidence.key).collect()
}

#[test]
fn ssh_from_sshd_t_passes_and_fails() {
    let root = Root::new("ssh-t");
    let good = "port 22\npasswordauthentication no\nkbdinteractiveauthentication no\npermitrootlogin without-password\n";
    let fake = Fake::default().with("sshd -T", 0, good, "");
    let facts = ssh::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Pass, "{:?}", keys(&facts));
    let bad = "passwordauthentication yes\nkbdinteractiveauthentication no\npermitrootlogin yes\n";
    let fake = Fake::default().with("sshd -T", 0, bad, "");
    let facts = ssh::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Fail);
    let broken: Vec<_> = facts
        .iter()
        .filter(|f| f.state == State::Broken)
        .map(|f| f.evidence.key)
        .collect();
    assert_eq!(broken, ["ssh_password", "ssh_root"]);
}

#[test]
fn ssh_config_files_follow_include_first_value_and_match() {
    let root = Root::new("ssh-files");
    root.file(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n\
         ChallengeResponseAuthentication no\nMatch User deploy\n  PermitRootLogin yes\n",
    )
    .file(
        "/etc/ssh/sshd_config.d/10-keys.conf",
        "# keys only\nPasswordAuthentication no\n",
    )
    .file(
        "/etc/ssh/sshd_config.d/20-root.conf",
        "PermitRootLogin=no\n",
    )
    .file(
        "/etc/ssh/sshd_config.d/ignored.txt",
        "PermitRootLogin yes\n",
    );
    // sshd -T refused (not root): the files are read instead, and that is said.
    let fake = Fake::default().with("sshd -T", 1, "", "sshd: no hostkeys available -- exiting.");
    let facts = ssh::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Pass, "{:?}", keys(&facts));
    assert!(keys(&facts).contains(&"ssh_t_refused"));
    // Without the drop-in, the main file's `yes` is the first value: fail.
    std::fs::remove_file(root.0.join("etc/ssh/sshd_config.d/10-keys.conf")).unwrap();
    let facts = ssh::facts(&root.env(&Fake::default()));
    assert_eq!(verdict(&facts), Verdict::Fail);
    // Unset keywords take OpenSSH's defaults (password login on): fail.
    root.file("/etc/ssh/sshd_config", "Port 22\n");
    std::fs::remove_dir_all(root.0.join("etc/ssh/sshd_config.d")).unwrap();
    let facts = ssh::facts(&root.env(&Fake::default()));
    assert_eq!(verdict(&facts), Verdict::Fail);
    assert!(ssh::glob(b"*.conf", b"a.conf") && !ssh::glob(b"*.conf", b"a.conf.bak"));
}

#[test]
fn ssh_cannot_check_without_an_ssh_server() {
    let root = Root::new("ssh-none");
    let facts = ssh::facts(&root.env(&Fake::default()));
    assert_eq!(verdict(&facts), Verdict::CannotCheck);
    assert_eq!(keys(&facts), ["host_missing"]);
}

const NFT_GOOD: &str = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
{"table":{"family":"inet","name":"filter","handle":1}},
{"chain":{"family":"inet","table":"filter","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"drop"}},
{"chain":{"family":"inet","table":"filter","name":"services","handle":2}},
{"rule":{"family":"inet","table":"filter","chain":"input","handle":3,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"]}},{"accept":null}]}},
{"rule":{"family":"inet","table":"filter","chain":"input","handle":4,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"lo"}},{"accept":null}]}},
{"rule":{"family":"inet","table":"filter","chain":"input","handle":5,"expr":[{"jump":{"target":"services"}}]}},
{"rule":{"family":"inet","table":"filter","chain":"services","handle":6,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"set":[22,8443]}}},{"accept":null}]}}]}"#;

#[test]
fn firewall_from_nft_json() {
    let root = Root::new("nft");
    let fake = Fake::default().with("nft -j list ruleset", 0, NFT_GOOD, "");
    let facts = firewall::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Pass, "{:?}", keys(&facts));
    // Another port open, and a policy of accept: fail, both named.
    let bad = NFT_GOOD
        .replace("\"policy\":\"drop\"", "\"policy\":\"accept\"")
        .replace("[22,8443]", "[22,8443,3306]");
    let fake = Fake::default().with("nft -j list ruleset", 0, &bad, "");
    let facts = firewall::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Fail);
    assert!(keys(&facts).contains(&"fw_accept_default"));
    let extra = facts
        .iter()
        .find(|f| f.evidence.key == "fw_ports_extra")
        .unwrap();
    assert_eq!(extra.evidence.args[1], text("tcp/3306"));
    // An empty ruleset filters nothing.
    let fake = Fake::default().with("nft -j list ruleset", 0, r#"{"nftables":[]}"#, "");
    assert_eq!(verdict(&firewall::facts(&root.env(&fake))), Verdict::Fail);
}

/// `nft -j list ruleset` (nftables 1.0.6) after loading the input chain `stockade deploy
/// firewall` generates: policy drop, established/related, loopback, ICMP, 8443 and 22.
const NFT_DEPLOY: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "stockade", "handle": 1}}, {"chain": {"family": "inet", "table": "stockade", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 2, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 3, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 6, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["icmp", "ipv6-icmp"]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 7, "comment": "stockade", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8443}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 8, "comment": "ssh", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "stockade", "chain": "input", "handle": 9, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"limit": {"rate": 10, "burst": 5, "per": "second"}}, {"log": {"prefix": "stockade-drop ", "level": "info"}}]}}]}"#;

#[test]
fn firewall_rules_generated_by_deploy_pass() {
    let root = Root::new("nft-deploy");
    let fake = Fake::default().with("nft -j list ruleset", 0, NFT_DEPLOY, "");
    let facts = firewall::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Pass, "{:?}", keys(&facts));
    let ports = facts.iter().find(|f| f.evidence.key == "fw_ports").unwrap();
    assert_eq!(ports.evidence.args[0], text("tcp/22, tcp/8443"));
    // Served on another port than the rules open: the extra port is named.
    let mut env = root.env(&fake);
    env.listen_port = 9443;
    let facts = firewall::facts(&env);
    assert_eq!(verdict(&facts), Verdict::Fail);
}

#[test]
fn firewall_from_ufw_and_iptables() {
    let root = Root::new("ufw");
    let ufw = "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), disabled (routed)\n\n\
To                         Action      From\n--                         ------      ----\n\
22/tcp                     ALLOW IN    Anywhere\n8443/tcp                   ALLOW IN    Anywhere\n\
22/tcp (v6)                ALLOW IN    Anywhere (v6)\n";
    let fake = Fake::default().with("ufw status verbose", 0, ufw, "");
    assert_eq!(verdict(&firewall::facts(&root.env(&fake))), Verdict::Pass);
    let open = format!("{ufw}80/tcp                     ALLOW IN    Anywhere\n");
    let fake = Fake::default().with("ufw status verbose", 0, &open, "");
    assert_eq!(verdict(&firewall::facts(&root.env(&fake))), Verdict::Fail);
    let fake = Fake::default().with("ufw status verbose", 0, "Status: inactive\n", "");
    let facts = firewall::facts(&root.env(&fake));
    assert_eq!(
        (verdict(&facts), keys(&facts)),
        (Verdict::Fail, vec!["fw_ufw_inactive"])
    );

    let ipt = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A INPUT -p tcp -m multiport --dports 22,8443 -j ACCEPT\nCOMMIT\n";
    let fake = Fake::default().with("iptables-save", 0, ipt, "");
    assert_eq!(verdict(&firewall::facts(&root.env(&fake))), Verdict::Pass);
    let all = ipt
        .replace(":INPUT DROP", ":INPUT ACCEPT")
        .replace("-A INPUT -i lo", "-A INPUT");
    let fake = Fake::default().with("iptables-save", 0, &all, "");
    let facts = firewall::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Fail);
    assert!(keys(&facts).contains(&"fw_any"));
}

#[test]
fn firewall_cannot_check_when_missing_or_refused() {
    let root = Root::new("fw-none");
    let facts = firewall::facts(&root.env(&Fake::default()));
    assert_eq!(
        (verdict(&facts), keys(&facts)),
        (Verdict::CannotCheck, vec!["host_missing"])
    );
    let fake = Fake::default().with(
        "nft -j list ruleset",
        1,
        "",
        "Operation not permitted (you must be root)",
    );
    let facts = firewall::facts(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::CannotCheck);
    assert!(facts[0].evidence.args[2].plain().contains("not permitted"));
}

#[test]
fn fail2ban_jails() {
    let root = Root::new("f2b");
    let status = "Status for the jail: stockade\n|- Filter\n|  |- Currently failed:\t1\n`- Actions\n   |- Currently banned:\t2\n   |- Total banned:\t7\n";
    let fake = Fake::default()
        .with("fail2ban-client status stockade", 0, status, "")
        .with("fail2ban-client status stockade-webhook", 0, status, "");
    let facts = services::fail2ban(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Pass);
    assert_eq!(facts[0].evidence.args[1], text("2"));
    let fake = Fake::default()
        .with("fail2ban-client status stockade", 0, status, "")
        .with(
            "fail2ban-client status stockade-webhook",
            255,
            "",
            "Sorry but the jail 'stockade-webhook' does not exist",
        );
    assert_eq!(
        verdict(&services::fail2ban(&root.env(&fake))),
        Verdict::Fail
    );
    let fake = Fake::default().with(
        "fail2ban-client status stockade",
        255,
        "",
        "Permission denied to socket: /var/run/fail2ban/fail2ban.sock, (you must be root)",
    );
    assert_eq!(
        verdict(&services::fail2ban(&root.env(&fake))),
        Verdict::CannotCheck
    );
    let facts = services::fail2ban(&root.env(&Fake::default()));
    assert_eq!(
        (verdict(&facts), keys(&facts)),
        (Verdict::CannotCheck, vec!["host_missing"])
    );
}

#[test]
fn automatic_updates() {
    let root = Root::new("apt");
    assert_eq!(
        verdict(&services::updates(&root.env(&Fake::default()))),
        Verdict::CannotCheck
    );
    root.file(
        "/etc/apt/apt.conf.d/20auto-upgrades",
        "APT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n",
    )
    .file(
        "/var/lib/dpkg/status",
        "Package: bash\nStatus: install ok installed\n\nPackage: unattended-upgrades\nStatus: install ok installed\nVersion: 2.9\n",
    );
    assert_eq!(
        verdict(&services::updates(&root.env(&Fake::default()))),
        Verdict::Pass
    );
    // A later file turns it off.
    root.file(
        "/etc/apt/apt.conf.d/99off",
        "APT::Periodic::Unattended-Upgrade \"0\";\n",
    );
    let facts = services::updates(&root.env(&Fake::default()));
    assert_eq!(verdict(&facts), Verdict::Fail);
    assert_eq!(keys(&facts), ["upd_off", "upd_installed"]);
}

#[test]
fn data_dir_key_file_and_service_user() {
    let root = Root::new("files");
    root.file("/var/lib/stockade/master.key", "k")
        .mode("/var/lib/stockade/master.key", 0o600)
        .mode("/var/lib/stockade", 0o700);
    let me = std::fs::metadata(root.0.join("var/lib/stockade"))
        .unwrap()
        .uid();
    root.file(
        "/etc/passwd",
        &format!("root:x:0:0:root:/root:/bin/bash\nstockade:x:{me}:{me}::/var/lib/stockade:/usr/sbin/nologin\n"),
    );
    let fake = Fake::default();
    let facts = files::permissions(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Pass, "{:?}", keys(&facts));
    let user = files::service_user(&root.env(&fake));
    // The test runs as root in CI containers: the owner is then root, which fails.
    if me == 0 {
        assert_eq!(verdict(&user), Verdict::Fail);
        assert_eq!(keys(&user)[0], "user_root");
    } else {
        assert_eq!(verdict(&user), Verdict::Pass, "{:?}", keys(&user));
    }
    root.mode("/var/lib/stockade/master.key", 0o644)
        .mode("/var/lib/stockade", 0o755);
    let facts = files::permissions(&root.env(&fake));
    assert_eq!(verdict(&facts), Verdict::Fail);
    assert_eq!(keys(&facts), ["files_dir_open", "files_key_open"]);
    assert_eq!(facts[1].evidence.args[1], text("0644"));
    // A data directory that is not there cannot be checked.
    let mut env = root.env(&fake);
    env.data_dir = Path::new("/srv/none").into();
    env.key_file = None;
    assert_eq!(verdict(&files::permissions(&env)), Verdict::CannotCheck);
    assert_eq!(verdict(&files::service_user(&env)), Verdict::CannotCheck);
}

#[test]
fn a_user_with_a_login_shell_fails() {
    let root = Root::new("shell");
    root.file("/var/lib/stockade/x", "");
    let me = std::fs::metadata(root.0.join("var/lib/stockade"))
        .unwrap()
        .uid();
    root.file(
        "/etc/passwd",
        &format!("svc:x:{me}:{me}::/home/svc:/bin/bash\n"),
    );
    let facts = files::service_user(&root.env(&Fake::default()));
    assert_eq!(verdict(&facts), Verdict::Fail);
    assert!(keys(&facts).contains(&"user_shell"));
}

/// The real host (a container running as root: no sshd, no firewall, no Fail2Ban):
/// clear lines, no panic, every check answered.
#[test]
fn a_real_run_on_this_machine_answers_every_check() {
    let dir = std::env::temp_dir();
    let env = HostEnv {
        root: PathBuf::from("/"),
        runner: &SystemRunner,
        euid: current_euid(),
        listen_port: 8443,
        data_dir: dir.clone(),
        key_file: Some(dir.join("no-such-master.key")),
    };
    let checks = checks(&env);
    assert_eq!(checks.len(), 6);
    for c in &checks {
        assert!(!c.evidence.is_empty(), "{}", c.id);
        if c.verdict == Verdict::Pass {
            assert!(c.evidence.iter().all(|e| e.key != "host_missing"), "{c:?}");
        }
    }
}
