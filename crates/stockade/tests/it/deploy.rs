//! The deployment kit: the shipped systemd unit's exposure score (systemd-analyze), the
//! unit and firewall rules `stockade deploy` generates from a configuration (checked by
//! `nft -c` and systemd-analyze), and the refusals that write nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Sandbox, require_tool};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `systemd-analyze security --offline=true FILE`: the overall exposure and its verdict.
pub fn exposure(unit: &Path) -> (f64, String) {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "systemd-analyze failed on {}:\n{text}\n{}",
        unit.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure line in:\n{text}"));
    let tail = line.rsplit(':').next().unwrap().trim();
    let mut words = tail.split_whitespace();
    let score: f64 = words.next().unwrap().parse().unwrap();
    (score, words.next().unwrap_or_default().to_owned())
}

fn systemd_analyze() -> bool {
    require_tool(
        "systemd-analyze",
        "systemd",
        "the systemd unit's exposure check",
    )
}

#[test]
fn the_shipped_unit_is_sandboxed_and_docs_quote_its_score() {
    let unit = repo_file("deploy/stockade.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "User=stockade",
        "Group=stockade",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/stockade",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "AmbientCapabilities=\n",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallArchitectures=native",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
        "UMask=0077",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "Restart=on-failure",
        "ExecStart=/usr/local/bin/stockade --env prod --data-dir /var/lib/stockade --config /etc/stockade/stockade.toml serve",
    ] {
        assert!(
            text.contains(line),
            "deploy/stockade.service lacks {line:?}"
        );
    }
    assert!(!text.contains("DynamicUser=yes"));
    if !systemd_analyze() {
        return;
    }
    let (score, verdict) = exposure(&unit);
    assert!(score <= 2.0, "exposure {score} {verdict} is above 2.0");
    assert_eq!(verdict, "OK");
    // The figure quoted in the docs and the unit is the one measured.
    let quoted = format!("{score:.1} OK");
    let doc = std::fs::read_to_string(repo_file("docs/deploy.md")).unwrap();
    assert!(
        doc.contains(&format!("Exposure: {quoted}")),
        "docs/deploy.md must quote the measured exposure \"Exposure: {quoted}\""
    );
    assert!(
        text.contains(&format!("{quoted} (a test")),
        "deploy/stockade.service must quote the measured exposure {quoted}"
    );
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    assert!(
        readme.contains(&format!("exposure {quoted}")),
        "README.md must quote the measured exposure {quoted}"
    );
}

/// A configuration whose hosts are IP literals or `localhost`, and a resolv.conf.
fn config(sb: &Sandbox, listen: &str, extra: &str) -> (String, String) {
    let data = sb.dir.join("data");
    let cfg = sb.dir.join("stockade.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"env = "prod"
data_dir = "{}"
database_url = "postgres://stockade:pw-not-shown@127.0.0.9:5433/stockade?sslmode=verify-full"

[server]
listen = "{listen}"

[egress]
allowed_hosts = ["127.0.0.2", "localhost:9443", "2001:db8::7"]

[[alerts.channel]]
name = "siem"
kind = "webhook"
url = "https://127.0.0.3:8444/hook"

[audit.mirror.nocodb]
base_url = "https://127.0.0.4"
base = "audit"
token = "nocodb-audit"

[audit.mirror.file]
path = "{}/log/audit.jsonl"
{extra}"#,
            data.display(),
            sb.dir.display(),
        ),
    )
    .unwrap();
    let resolv = sb.dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        "# test\nsearch example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n",
    )
    .unwrap();
    (cfg.display().to_string(), resolv.display().to_string())
}

fn deploy(sb: &Sandbox, cfg: &str, resolv: &str, args: &[&str]) -> crate::harness::Outcome {
    let mut all = vec!["--config", cfg, "deploy"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--resolv-conf", resolv]);
    sb.run(&all)
}

#[test]
fn nft_rules_come_from_the_configuration_and_pass_nft_check() {
    let sb = Sandbox::new();
    let (cfg, resolv) = config(&sb, "0.0.0.0:8443", "");
    let file = sb.dir.join("stockade.nft");
    let out = deploy(
        &sb,
        &cfg,
        &resolv,
        &[
            "firewall",
            "--format",
            "nft",
            "--ntp",
            "127.0.0.5",
            "--allow-out",
            "127.0.0.6:80",
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .expect_code(0);
    assert_eq!(
        out.stdout(),
        "",
        "with --out nothing goes to standard output"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    for want in [
        "table inet stockade {",
        "type filter hook input priority filter; policy drop;",
        "type filter hook output priority filter; policy drop;",
        "ct state established,related counter accept",
        "iif \"lo\" accept",
        "tcp dport 8443 ct state new counter accept comment \"stockade serve (server.listen 0.0.0.0:8443)\"",
        "tcp dport 22 ct state new counter accept comment \"SSH (--ssh-port)\"",
        // Each destination from its setting, with its host named.
        "127.0.0.2 . tcp . 443 comment \"127.0.0.2:443 (egress allowlist)\"",
        "127.0.0.1 . tcp . 9443 comment \"localhost:9443 (egress allowlist)\"",
        "2001:db8::7 . tcp . 443 comment \"[2001:db8::7]:443 (egress allowlist)\"",
        "127.0.0.3 . tcp . 8444 comment \"127.0.0.3:8444 (alert channel)\"",
        "127.0.0.4 . tcp . 443 comment \"127.0.0.4:443 (audit mirror NocoDB)\"",
        "127.0.0.9 . tcp . 5433 comment \"127.0.0.9:5433 (PostgreSQL database)\"",
        "192.0.2.53 . udp . 53 comment \"192.0.2.53:53 (DNS server from resolv.conf)\"",
        "192.0.2.53 . tcp . 53",
        "2001:db8::53 . udp . 53",
        "127.0.0.5 . udp . 123 comment \"127.0.0.5:123 (NTP server (--ntp))\"",
        "127.0.0.6 . tcp . 80 comment \"127.0.0.6:80 (--allow-out)\"",
        "ip daddr . meta l4proto . th dport @egress_v4 counter accept",
        "ip6 daddr . meta l4proto . th dport @egress_v6 counter accept",
        "log prefix \"stockade-egress-drop: \"",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("pw-not-shown"),
        "the database password leaked"
    );
    // The default allowlist of prod is replaced by the configured one.
    assert!(!text.contains("api.ebay.com"));

    if !require_tool("nft", "nftables", "the nftables ruleset check (nft -c)") {
        return;
    }
    let check = |f: &Path| {
        Command::new("nft")
            .args(["-c", "-f"])
            .arg(f)
            .output()
            .unwrap()
    };
    let ok = check(&file);
    assert!(
        ok.status.success(),
        "nft -c rejected the ruleset:\n{}\n{text}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The check is a real one: the same file with an IPv6 address in the IPv4 set fails.
    let bad = sb.dir.join("bad.nft");
    std::fs::write(
        &bad,
        text.replacen("127.0.0.2 . tcp . 443", "2001:db8::9 . tcp . 443", 1),
    )
    .unwrap();
    assert!(
        !check(&bad).status.success(),
        "nft -c accepted a broken ruleset"
    );

    // --ssh-port none keeps SSH closed; a loopback listener is not opened.
    let sb2 = Sandbox::new();
    let (cfg2, resolv2) = config(&sb2, "127.0.0.1:8443", "");
    let text = deploy(
        &sb2,
        &cfg2,
        &resolv2,
        &[
            "firewall",
            "--format",
            "nft",
            "--ssh-port",
            "none",
            "--open-port",
            "443",
        ],
    )
    .expect_code(0)
    .stdout();
    assert!(!text.contains("tcp dport 22 "), "{text}");
    assert!(!text.contains("tcp dport 8443 "), "{text}");
    assert!(
        text.contains("tcp dport 443 ct state new counter accept"),
        "{text}"
    );
    let f2 = sb2.dir.join("loopback.nft");
    std::fs::write(&f2, &text).unwrap();
    assert!(check(&f2).status.success(), "{text}");
}

#[test]
fn ufw_script_denies_both_ways_and_allows_each_destination() {
    let sb = Sandbox::new();
    let (cfg, resolv) = config(&sb, "0.0.0.0:8443", "");
    let text = deploy(
        &sb,
        &cfg,
        &resolv,
        &["firewall", "--format", "ufw", "--ssh-port", "2222"],
    )
    .expect_code(0)
    .stdout();
    let commands: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands[0], "set -eu");
    for c in &commands[1..] {
        assert!(c.starts_with("ufw "), "not a ufw command: {c}");
        if c.starts_with("ufw allow") {
            assert!(c.contains(" comment '"), "a rule without a comment: {c}");
        }
    }
    for want in [
        "ufw allow in 8443/tcp comment 'stockade serve (server.listen 0.0.0.0:8443)'",
        "ufw allow in 2222/tcp comment 'SSH (--ssh-port)'",
        "ufw allow out to 127.0.0.2 port 443 proto tcp comment '127.0.0.2:443 (egress allowlist)'",
        "ufw allow out to 127.0.0.1 port 9443 proto tcp comment 'localhost:9443 (egress allowlist)'",
        "ufw allow out to 127.0.0.9 port 5433 proto tcp comment '127.0.0.9:5433 (PostgreSQL database)'",
        "ufw allow out to 192.0.2.53 port 53 proto udp",
        "ufw allow out to 192.0.2.53 port 53 proto tcp",
        "ufw default deny incoming",
        "ufw default deny outgoing",
        "ufw logging low",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("allow in 22/tcp"), "{text}");
    // The defaults come after the allows, so applying it over SSH never cuts the session.
    let allow = text.find("ufw allow").unwrap();
    assert!(text.find("ufw default deny outgoing").unwrap() > allow);
    assert!(
        !commands.iter().any(|c| c.contains("ufw enable")),
        "the script must not enable ufw"
    );
    // Valid shell.
    let script = sb.dir.join("ufw.sh");
    std::fs::write(&script, &text).unwrap();
    let sh = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(
        sh.status.success(),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
}

#[test]
fn bad_input_is_refused_with_exit_2_and_nothing_written() {
    let sb = Sandbox::new();
    let (cfg, resolv) = config(&sb, "0.0.0.0:8443", "");
    let out_file = sb.dir.join("rules.nft");
    let out = out_file.to_str().unwrap();

    // An unknown format.
    let o = deploy(
        &sb,
        &cfg,
        &resolv,
        &["firewall", "--format", "pf", "--out", out],
    )
    .expect_code(2);
    assert!(o.stderr().contains("pf"), "{}", o.stderr());
    assert!(!out_file.exists());

    // A configuration that does not parse.
    let broken = sb.dir.join("broken.toml");
    std::fs::write(&broken, "env = \"prod\"\n[server\nlisten = 1\n").unwrap();
    let o = deploy(
        &sb,
        broken.to_str().unwrap(),
        &resolv,
        &["firewall", "--format", "nft", "--out", out],
    )
    .expect_code(2);
    assert!(o.stderr().contains("broken.toml"), "{}", o.stderr());
    assert!(!out_file.exists());

    // Hosts that do not resolve: a wildcard (no addresses) and a name under .invalid.
    let sb2 = Sandbox::new();
    let (cfg2, resolv2) = config(&sb2, "0.0.0.0:8443", "");
    let text = std::fs::read_to_string(&cfg2).unwrap().replace(
        "\"127.0.0.2\", ",
        "\"127.0.0.2\", \"*.example.com\", \"no-such-host.invalid\", ",
    );
    std::fs::write(&cfg2, text).unwrap();
    let out2 = sb2.dir.join("rules.nft");
    let o = deploy(
        &sb2,
        &cfg2,
        &resolv2,
        &[
            "firewall",
            "--format",
            "nft",
            "--out",
            out2.to_str().unwrap(),
        ],
    )
    .expect_code(2);
    let err = o.stderr();
    assert!(
        err.contains("*.example.com:443 (egress allowlist)"),
        "{err}"
    );
    assert!(err.contains("no-such-host.invalid:443"), "{err}");
    assert!(
        err.contains("--allow-unresolved") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!out2.exists());
    // The unit generator refuses them as well.
    let unit2 = sb2.dir.join("stockade.service");
    deploy(
        &sb2,
        &cfg2,
        &resolv2,
        &["unit", "--clients", "any", "--out", unit2.to_str().unwrap()],
    )
    .expect_code(2);
    assert!(!unit2.exists());
    // --allow-unresolved: a commented TODO for each, never a silent omission.
    let text = deploy(
        &sb2,
        &cfg2,
        &resolv2,
        &["firewall", "--format", "ufw", "--allow-unresolved"],
    )
    .expect_code(0)
    .stdout();
    assert!(
        text.contains("# TODO: *.example.com:443 (egress allowlist) did not resolve"),
        "{text}"
    );
    assert!(
        text.contains("# TODO: no-such-host.invalid:443 (egress allowlist) did not resolve"),
        "{text}"
    );

    // A bad --ssh-port, and an --out file that exists (left as it was).
    deploy(
        &sb,
        &cfg,
        &resolv,
        &["firewall", "--format", "nft", "--ssh-port", "ssh"],
    )
    .expect_code(2);
    std::fs::write(&out_file, "keep me").unwrap();
    let o = deploy(
        &sb,
        &cfg,
        &resolv,
        &["firewall", "--format", "nft", "--out", out],
    )
    .expect_code(2);
    assert!(o.stderr().contains("exists"), "{}", o.stderr());
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "keep me");
}

#[test]
fn the_generated_unit_fills_paths_and_addresses_and_stays_sandboxed() {
    let sb = Sandbox::new();
    let (cfg, resolv) = config(&sb, "0.0.0.0:8443", "");
    // A public listener needs --clients: IPAddressDeny=any would drop its clients.
    let o = deploy(&sb, &cfg, &resolv, &["unit"]).expect_code(2);
    assert!(o.stderr().contains("--clients"), "{}", o.stderr());
    deploy(&sb, &cfg, &resolv, &["unit", "--clients", "10.0.0.0/33"]).expect_code(2);

    let file = sb.dir.join("stockade.service");
    deploy(
        &sb,
        &cfg,
        &resolv,
        &[
            "unit",
            "--clients",
            "198.51.100.0/24",
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .expect_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    let data = sb.dir.join("data").display().to_string();
    for want in [
        format!(
            "ExecStart=/usr/local/bin/stockade --env prod --data-dir {data} --config {cfg} serve"
        ),
        format!("ReadWritePaths={data} {}/log", sb.dir.display()),
        format!("NoExecPaths={data}"),
        "IPAddressDeny=any".into(),
        "IPAddressAllow=localhost".into(),
        "# 127.0.0.2:443 (egress allowlist)\nIPAddressAllow=127.0.0.2".into(),
        "# localhost:9443 (egress allowlist)\nIPAddressAllow=127.0.0.1".into(),
        "IPAddressAllow=127.0.0.9".into(),
        "IPAddressAllow=192.0.2.53".into(),
        "IPAddressAllow=198.51.100.0/24".into(),
        "User=stockade".into(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    // The data directory is not under /var/lib: no StateDirectory= for it.
    assert!(!text.contains("\nStateDirectory="), "{text}");
    assert!(!text.contains("FILL-IN"), "{text}");
    assert!(!text.contains("pw-not-shown"));
    if !systemd_analyze() {
        return;
    }
    let (score, verdict) = exposure(&file);
    assert!(
        score <= 2.0,
        "the generated unit's exposure {score} {verdict} is above 2.0"
    );
}

/// Runs `argv` under the unit's kernel restrictions that need no systemd: no new
/// privileges, PR_SET_MDWE (no memory both writable and executable: the rule behind
/// MemoryDenyWriteExecute=yes) and a seccomp filter of the native architecture allowing
/// `@system-service` minus `@privileged` and `@resources` (the unit's SystemCallFilter=
/// lines, groups expanded from `systemd-analyze syscall-filter`; other calls fail with
/// EPERM, as SystemCallErrorNumber=EPERM says), through libseccomp. Exit 97 when the
/// kernel has no MDWE (before 6.3), 98 without libseccomp.
const UNIT_RESTRICTIONS: &str = r##"
import ctypes, ctypes.util, os, subprocess, sys
groups, cur = {}, None
out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True).stdout
for line in out.splitlines():
    if line.startswith("@"):
        cur = line.strip(); groups[cur] = []
    elif not line.startswith("    "):
        cur = None
    elif cur and not line.strip().startswith("#"):
        groups[cur].append(line.strip())
def expand(name, seen):
    res = set()
    for m in groups.get(name, []):
        if m.startswith("@"):
            if m not in seen:
                seen.add(m); res |= expand(m, seen)
        else:
            res.add(m)
    return res
allow = expand("@system-service", set()) - expand("@privileged", set()) - expand("@resources", set())
assert "setuid" not in allow and "setrlimit" not in allow and "read" in allow
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:
    sys.exit(96)
if libc.prctl(65, 1, 0, 0, 0) != 0 or libc.prctl(66, 0, 0, 0, 0) != 1:
    sys.exit(97)
name = ctypes.util.find_library("seccomp")
if not name:
    sys.exit(98)
sc = ctypes.CDLL(name)
sc.seccomp_init.restype = ctypes.c_void_p
sc.seccomp_init.argtypes = [ctypes.c_uint32]
sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
sc.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
sc.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = sc.seccomp_init(0x00050000 | 1)
for n in sorted(allow):
    nr = sc.seccomp_syscall_resolve_name(n.encode())
    if nr >= 0:
        sc.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0)
if sc.seccomp_load(ctx) != 0:
    sys.exit(99)
os.execv(sys.argv[1], sys.argv[1:])
"##;

#[test]
fn script_workflows_run_under_the_units_restrictions() {
    if !require_tool(
        "python3",
        "python3",
        "the unit restrictions check (python3)",
    ) || !systemd_analyze()
    {
        return;
    }
    // As root, also as the unit runs it: an unprivileged user with no capabilities
    // (setpriv), and the system's python3 (reachable by that user).
    let root = String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout)
        .trim()
        == "0";
    let drop_privileges =
        root && require_tool("setpriv", "util-linux", "dropping privileges like the unit");
    let restricted = |argv: &[&str]| {
        let mut c = if drop_privileges {
            let mut c = Command::new("setpriv");
            c.args([
                "--no-new-privs",
                "--bounding-set",
                "-all",
                "--inh-caps",
                "-all",
            ])
            .args([
                "--ambient-caps",
                "-all",
                "--reuid",
                "nobody",
                "--regid",
                "nogroup",
            ])
            .args(["--clear-groups", "--", "/usr/bin/python3"]);
            c
        } else {
            Command::new("python3")
        };
        c.arg("-c")
            .arg(UNIT_RESTRICTIONS)
            .args(argv)
            .current_dir(std::env::temp_dir())
            .env_remove("STOCKADE_DATA_DIR")
            .output()
            .unwrap()
    };
    // The restrictions are in force: a W+X mapping and a call of @resources are refused.
    let probe = restricted(&[
        "/usr/bin/python3",
        "-c",
        "import mmap\ntry:\n    mmap.mmap(-1, 4096, prot=7); print('wx')\nexcept OSError: pass\ntry:\n    import os; os.setpriority(os.PRIO_PROCESS, 0, 1); print('nice')\nexcept OSError: pass\nprint('probed')",
    ]);
    if probe.status.code() == Some(97) {
        crate::harness::skipped("the unit restrictions check: this kernel has no PR_SET_MDWE");
        return;
    }
    let said = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success() && said.trim() == "probed",
        "the restrictions are not in force (exit {:?}): {said} {}",
        probe.status.code(),
        String::from_utf8_lossy(&probe.stderr)
    );
    // The workflow engine's script steps (QuickJS: an interpreter, no JIT), end to end:
    // the bench runs a real server whose workflow computes each delta in a `script` step.
    let out = restricted(&[
        env!("CARGO_BIN_EXE_stockade"),
        "bench",
        "workflow",
        "--script",
        "--duration",
        "2s",
        "--concurrency",
        "2",
        "--skus",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the script workflow bench failed under the unit's restrictions:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("script pool:"), "{stdout}");
}

/// deploy/stockade-firewall.service's command, run as systemd would run it (its `$$`
/// unescaped, the paths moved to a scratch directory), with an `nft` that only checks:
/// it writes the rules, checks them, moves them in place and asks nft to load them.
#[test]
fn the_firewall_refresh_unit_regenerates_checks_and_loads() {
    if !require_tool("nft", "nftables", "the firewall refresh unit's check") {
        return;
    }
    let unit = std::fs::read_to_string(repo_file("deploy/stockade-firewall.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/bin/sh -ec '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("ExecStart=/bin/sh -ec '…'");
    let sb = Sandbox::new();
    let (cfg, resolv) = config(&sb, "0.0.0.0:8443", "");
    let etc = sb.dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let script = exec
        .replace("$$", "$")
        .replace("/usr/local/bin/stockade", env!("CARGO_BIN_EXE_stockade"))
        .replace("/etc/stockade/stockade.toml", &cfg)
        .replace("/etc/stockade", &etc.display().to_string());
    // An nft that records its calls and checks instead of loading.
    let bin = sb.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = sb.dir.join("nft.log");
    std::fs::write(
        bin.join("nft"),
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\n[ \"$1\" = -c ] && shift\nexec /usr/sbin/nft -c \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("nft"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &str| {
        Command::new("/bin/sh")
            .arg("-ec")
            .arg(&script)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("FIREWALL_ARGS", format!("--resolv-conf {resolv} {args}"))
            .env_remove("STOCKADE_CONFIG")
            .env_remove("STOCKADE_DATA_DIR")
            .output()
            .unwrap()
    };
    let out = run("--ntp 127.0.0.5");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::fs::read_to_string(etc.join("firewall.nft")).unwrap();
    assert!(rules.contains("127.0.0.5 . udp . 123"), "{rules}");
    assert!(!etc.join("firewall.nft.new").exists());
    let calls = std::fs::read_to_string(&log).unwrap();
    let f = etc.join("firewall.nft").display().to_string();
    assert_eq!(calls, format!("-c -f {f}.new\n-f {f}\n"));
    // A run that fails keeps the rules in force and loads nothing.
    std::fs::write(&log, "").unwrap();
    let out = run("--allow-out *.example.com");
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(etc.join("firewall.nft")).unwrap(),
        rules
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
}
