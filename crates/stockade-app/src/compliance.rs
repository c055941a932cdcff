//! The compliance report's evidence: each clause of the company's security policy
//! (`DESIGN.md` §1 maps them) checked against the running system and its configuration.
//! The console's Compliance page and `GET /api/v1/compliance` render what [`Compliance`]
//! gathers (through [`stockade_server::compliance::ComplianceSource`]); the CLI's
//! `stockade compliance report` can build one from [`Settings`] and an [`Access`] too.
//!
//! Invariants: every clause gets exactly one verdict from its evidence, taken at call
//! time from the database (users, orders' buyer fields, the audit chain, bans, blocked
//! egress, workflow approvals) and from the configuration this process runs with
//! (password rule, idle lock, ban policy, TLS, allowlist, alert channels); a clause whose
//! evidence is not in this process says "cannot check here" — none passes by default.
//! Evidence holds counts, settings, dates and hashes: no secret and no personal data.

// backup:
mod backup;
// Incident response: the last drill or incident exercised the whole plan.
mod cert;
mod incident;
mod retention;
// Audit mirror: the NocoDB-mirror clause's evidence.
mod mirror;
// Compliance report: the Amazon DPP rows, the host checks, the plaintext scan and TLS as served.
mod configured;
mod dpp;
pub mod host;
mod lint;
mod pii_scan;
mod tls_probe;
pub use configured::configured_tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use stockade_access::Access;
use stockade_core::{Environment, time::now_ms};
use stockade_server::compliance::{Arg, Check, ComplianceSource, Evidence, Report, Verdict};
use stockade_store::Store;

use crate::settings::Settings;

pub use cert::validity as certificate_validity;

/// What the served TLS looks like.
#[derive(Debug, Clone)]
pub enum TlsFacts {
    /// Plain HTTP on loopback behind a reverse proxy (the proxy terminates TLS).
    PlainHttp,
    /// TLS 1.2/1.3 by rustls with this certificate (DER, when known) — the generated
    /// development certificate or a configured one.
    Served {
        cert: Option<Vec<u8>>,
        development: bool,
    },
}

/// The configuration the evidence is compared with (copied from [`Settings`]).
#[derive(Debug, Clone)]
struct ConfigFacts {
    env: Environment,
    require_mix: bool,
    idle_timeout_s: i64,
    /// maxretry, bantime (s), findtime (s) of the interactive jail.
    ban: (u32, i64, i64),
    tls: TlsFacts,
    allowed_hosts: Vec<String>,
    /// The configured alert channels' names.
    alert_channels: Vec<String>,
    data_dir: PathBuf,
    /// The retention rules in force (`[retention]`).
    retention: stockade_retention::Rules,
    /// The audit mirror's configuration (the NocoDB-mirror clause).
    mirror: stockade_mirror::MirrorConfig,
    /// Compliance report: the configured listening address (the TLS probe's and the
    /// firewall's port), the database (the plaintext scan) and the master key file.
    listen: SocketAddr,
    database: stockade_store::DatabaseUrl,
    key_file: Option<PathBuf>,
}

/// The policy's idle lock: at most 15 minutes.
pub const MAX_IDLE_MIN: i64 = 15;
/// Blocked outbound requests are counted over this window.
const BLOCKED_WINDOW_MS: i64 = 30 * 86_400_000;

/// Gathers the compliance report of one environment.
pub struct Compliance {
    access: Arc<Access>,
    facts: ConfigFacts,
    /// The address the server bound (set once it listens; the probe's target).
    served: Arc<OnceLock<SocketAddr>>,
    /// Where the host checks look (`/`, or a fixture directory) and how they run commands.
    host_root: PathBuf,
    runner: Arc<dyn host::Runner>,
}

impl std::fmt::Debug for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compliance")
            .field("env", &self.facts.env)
            .finish_non_exhaustive()
    }
}

impl Compliance {
    pub fn new(settings: &Settings, access: Arc<Access>, tls: TlsFacts) -> Compliance {
        let env = access.environment();
        let config = access.config();
        let allowed_hosts = settings.egress_config(env).allowed_hosts;
        Compliance {
            facts: ConfigFacts {
                env,
                require_mix: config.password_policy.require_mix,
                idle_timeout_s: config.idle_timeout_s,
                ban: (config.ban.maxretry, config.ban.bantime, config.ban.findtime),
                tls,
                allowed_hosts,
                alert_channels: settings
                    .alerts
                    .channels
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
                data_dir: settings.data_dir.clone(),
                retention: settings.retention,
                mirror: settings.audit_mirror.clone(),
                listen: settings.server.listen,
                database: settings.database.clone(),
                key_file: match &settings.master_key {
                    crate::settings::MasterKeyLocation::File(p) => Some(p.clone()),
                    crate::settings::MasterKeyLocation::EnvValue(_) => None,
                },
            },
            access,
            served: Arc::default(),
            host_root: PathBuf::from("/"),
            runner: Arc::new(host::SystemRunner),
        }
    }

    /// The host checks read files under `root` and run commands through `runner` (tests).
    pub fn with_host(mut self, root: PathBuf, runner: Arc<dyn host::Runner>) -> Compliance {
        self.host_root = root;
        self.runner = runner;
        self
    }

    /// Where the server took its address (the TLS probe connects there).
    pub fn served_address(&self) -> Arc<OnceLock<SocketAddr>> {
        self.served.clone()
    }

    /// The host checks, gathered now (blocking reads and commands on a blocking thread).
    async fn host_checks(&self) -> Result<Vec<Check>, String> {
        let root = self.host_root.clone();
        let runner = self.runner.clone();
        let listen_port = self
            .served
            .get()
            .copied()
            .unwrap_or(self.facts.listen)
            .port();
        let data_dir = std::path::absolute(&self.facts.data_dir)
            .unwrap_or_else(|_| self.facts.data_dir.clone());
        let key_file = self
            .facts
            .key_file
            .as_ref()
            .map(|k| std::path::absolute(k).unwrap_or_else(|_| k.clone()));
        tokio::task::spawn_blocking(move || {
            host::checks(&host::HostEnv {
                root,
                runner: runner.as_ref(),
                euid: host::current_euid(),
                listen_port,
                data_dir,
                key_file,
            })
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// The plaintext scan of the database's files (or text columns on PostgreSQL).
    async fn pii_scan(&self) -> Result<Check, String> {
        let staff = self
            .access
            .users()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|u| u.email)
            .collect();
        pii_scan::pii_scan(self.access.vault(), &self.facts.database, staff).await
    }

    /// The Amazon DPP rows over the policy clauses' checks.
    async fn dpp(&self, clauses: &[Check], now: i64) -> Result<Vec<Check>, String> {
        let users = self.access.users().await.map_err(|e| e.to_string())?;
        let facts = dpp::Facts {
            store: self.access.store(),
            rules: &self.facts.retention,
            roles: users
                .iter()
                .filter(|u| !u.disabled)
                .map(|u| u.role)
                .collect(),
            now,
        };
        dpp::rows(clauses, &facts).await
    }

    /// The report, gathered now.
    pub async fn report(&self) -> Result<Report, String> {
        let store = self.access.store();
        let now = now_ms();
        let mut checks = vec![
            self.mfa().await?,
            self.password(),
            self.idle_lock(),
            self.tls(now).await,
            pii(store).await?,
            self.pii_scan().await?,
            audit(store).await?,
            self.bans().await?,
            self.egress(store, now).await?,
            self.review(store).await?,
            self.isolation(store),
            self.alerts(store).await?,
            backup::backups(store, now).await?,
            incident::incident(store, now).await?,
            retention::retention(store, &self.facts.retention, now).await?,
            mirror::mirror(store, &self.facts.mirror).await?,
            // Compliance report: what no machine shows (staff devices, training, desks).
            check(
                "host",
                "002 §III",
                Verdict::CannotCheck,
                vec![ev("host_org", vec![])],
            ),
        ];
        checks.extend(self.host_checks().await?);
        let dpp = self.dpp(&checks, now).await?;
        checks.extend(dpp);
        Ok(Report {
            generated_at_ms: now,
            environment: self.facts.env,
            checks,
        })
    }

    async fn mfa(&self) -> Result<Check, String> {
        let users = self.access.users().await.map_err(|e| e.to_string())?;
        let active: Vec<_> = users.iter().filter(|u| !u.disabled).collect();
        let enrolled = active.iter().filter(|u| u.mfa_enrolled).count();
        let total = active.len();
        let missing = total - enrolled;
        let (verdict, mut evidence) = if total == 0 {
            (Verdict::NotApplicable, vec![ev("no_users", vec![])])
        } else {
            let counts = vec![count(enrolled), count(total)];
            let v = if missing == 0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            (v, vec![ev("mfa_users", counts)])
        };
        if missing > 0 {
            evidence.push(ev("mfa_missing", vec![count(missing)]));
        }
        evidence.push(ev("mfa_signin", vec![]));
        Ok(check("mfa", "002 §II", verdict, evidence))
    }

    fn password(&self) -> Check {
        let min = stockade_access::password::MIN_LEN;
        let max = stockade_access::password::MAX_LEN;
        let mut evidence = vec![ev("pw_min", vec![count(min), count(max)])];
        let ok = min >= 12 && self.facts.require_mix;
        evidence.push(if self.facts.require_mix {
            ev("pw_mix_on", vec![])
        } else {
            ev("pw_mix_off", vec![])
        });
        // The strength estimate every new password must pass (stockade-access password.rs).
        evidence.push(ev(
            "pw_estimate",
            vec![count(stockade_access::password::MIN_SCORE)],
        ));
        check("password", "002 §II", pass_if(ok), evidence)
    }

    fn idle_lock(&self) -> Check {
        let minutes = (self.facts.idle_timeout_s + 59) / 60;
        let evidence = vec![ev("idle", vec![count(minutes), count(MAX_IDLE_MIN)])];
        let ok = self.facts.idle_timeout_s <= MAX_IDLE_MIN * 60;
        check("idle_lock", "002 §III", pass_if(ok), evidence)
    }

    async fn tls(&self, now: i64) -> Check {
        let policy = "000 §4, 001 §4, 002 §I";
        let (cert, development) = match &self.facts.tls {
            TlsFacts::PlainHttp => {
                let evidence = vec![ev("tls_plain", vec![]), ev("tls_egress", vec![])];
                return check("tls", policy, Verdict::CannotCheck, evidence);
            }
            TlsFacts::Served { cert, development } => (cert, *development),
        };
        // TLS as served: what a client negotiates with the running server right now.
        let listen = self.served.get().copied().unwrap_or(self.facts.listen);
        let runner = self.runner.clone();
        let probed =
            tokio::task::spawn_blocking(move || tls_probe::probe(listen, runner.as_ref(), now))
                .await
                .unwrap_or_default();
        let served_down = probed.iter().any(|f| f.state == host::State::Unseen)
            && !probed.iter().any(|f| f.state == host::State::Holds);
        let served_broken = probed.iter().any(|f| f.state == host::State::Broken);
        let mut evidence: Vec<Evidence> = probed.into_iter().map(|f| f.evidence).collect();
        evidence.push(ev("tls_versions", vec![]));
        let mut ok = !served_broken;
        match cert.as_deref().and_then(cert::validity) {
            Some((from, to)) => {
                evidence.push(ev("tls_cert", vec![Arg::Time(from), Arg::Time(to)]));
                if now < from || now >= to {
                    ok = false;
                    evidence.push(ev("tls_cert_expired", vec![]));
                }
            }
            None => evidence.push(ev("tls_cert_unknown", vec![])),
        }
        if development {
            evidence.push(ev("tls_dev_cert", vec![]));
            // A generated certificate nobody was told to trust is no TLS policy for prod.
            ok &= !self.facts.env.is_production();
        }
        evidence.push(ev("tls_egress", vec![]));
        // Not running: only the configured facts are known, so it cannot pass here.
        let verdict = match pass_if(ok) {
            Verdict::Pass if served_down => Verdict::CannotCheck,
            v => v,
        };
        check("tls", policy, verdict, evidence)
    }

    async fn bans(&self) -> Result<Check, String> {
        let (maxretry, bantime, findtime) = self.facts.ban;
        let active = self.access.bans(false).await.map_err(|e| e.to_string())?;
        let evidence = vec![
            ev(
                "ban_policy",
                vec![
                    count(maxretry),
                    count((bantime + 59) / 60),
                    count((findtime + 59) / 60),
                ],
            ),
            ev("bans_active", vec![count(active.len())]),
        ];
        // A ban guard that never bans (no retries counted) enforces nothing.
        let ok = maxretry > 0 && bantime > 0;
        Ok(check("bans", "001 §2", pass_if(ok), evidence))
    }

    async fn egress(&self, store: &Store, now: i64) -> Result<Check, String> {
        let blocked = store
            .count_events_since("egress", "blocked", now - BLOCKED_WINDOW_MS)
            .await
            .map_err(|e| e.to_string())?;
        let hosts = &self.facts.allowed_hosts;
        let shown = hosts
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let shown = if hosts.len() > 12 {
            format!("{shown}, …")
        } else {
            shown
        };
        let evidence = vec![
            ev("egress_allow", vec![count(hosts.len()), Arg::Text(shown)]),
            ev("egress_blocked", vec![Arg::Count(blocked)]),
            ev("egress_alerts", vec![]),
        ];
        // The gateway is the only client and refuses every host off the list.
        Ok(check(
            "egress",
            "000 §2, 000 §3, 000 §4",
            Verdict::Pass,
            evidence,
        ))
    }

    async fn review(&self, store: &Store) -> Result<Check, String> {
        let (active, unapproved) = stockade_workflows::registry::review_counts(store)
            .await
            .map_err(|e| e.to_string())?;
        let mut evidence = vec![ev(
            "review_counts",
            vec![Arg::Count(active), Arg::Count(unapproved)],
        )];
        // Compliance report: the linter's verdict on the versions in use.
        let (lint_ok, rejected) = lint::counts(store).await?;
        evidence.push(ev(
            "review_lint",
            vec![
                Arg::Count(lint_ok),
                Arg::Count(active),
                Arg::Count(rejected),
            ],
        ));
        let verdict = if self.facts.env.is_production() {
            evidence.push(ev("review_prod", vec![]));
            pass_if(unapproved == 0 && lint_ok == active)
        } else {
            let env = Arg::Text(self.facts.env.as_str().to_owned());
            evidence.push(ev("review_not_prod", vec![env]));
            Verdict::NotApplicable
        };
        Ok(check("review", "000 §5", verdict, evidence))
    }

    fn isolation(&self, store: &Store) -> Check {
        let process = self.facts.env;
        let database = store.environment();
        let text = |e: Environment| Arg::Text(e.as_str().to_owned());
        let mut evidence = vec![
            ev("env_process", vec![text(process)]),
            ev("env_database", vec![text(database)]),
        ];
        let mark = data_dir_environment(&self.facts.data_dir);
        let mark_ok = match &mark {
            Some(env) => {
                evidence.push(ev("env_data_dir", vec![Arg::Text(env.clone())]));
                env == process.as_str()
            }
            None => {
                evidence.push(ev("env_data_dir_none", vec![]));
                true
            }
        };
        evidence.push(ev("env_keys", vec![]));
        let ok = process == database && mark_ok;
        check(
            "isolation",
            "000 §2, 001 §2, 002 §III",
            pass_if(ok),
            evidence,
        )
    }

    /// Alert channels configured, and whether each delivers now (its status row).
    async fn alerts(&self, store: &Store) -> Result<Check, String> {
        let names = &self.facts.alert_channels;
        if names.is_empty() {
            let evidence = vec![ev("alert_none", vec![])];
            return Ok(check("alerts", "000 §3, 001 §3", Verdict::Fail, evidence));
        }
        let statuses = stockade_alerts::channel_statuses(store)
            .await
            .map_err(|e| e.to_string())?;
        let down = statuses
            .iter()
            .filter(|s| names.contains(&s.name))
            .filter(|s| matches!(s.status.as_str(), "misconfigured" | "failing"))
            .count();
        let mut evidence = vec![ev("alert_channels", vec![count(names.len())])];
        if down > 0 {
            evidence.push(ev("alert_not_delivering", vec![count(down)]));
        }
        Ok(check(
            "alerts",
            "000 §3, 001 §3",
            pass_if(down == 0),
            evidence,
        ))
    }
}

async fn pii(store: &Store) -> Result<Check, String> {
    let (with_pii, unsealed) = stockade_sync::stats::pii_sealing(store)
        .await
        .map_err(|e| e.to_string())?;
    let (verdict, mut evidence) = if with_pii == 0 {
        (Verdict::NotApplicable, vec![ev("pii_none", vec![])])
    } else {
        let sealed = with_pii - unsealed;
        (
            pass_if(unsealed == 0),
            vec![ev(
                "pii_sealed",
                vec![Arg::Count(sealed), Arg::Count(with_pii)],
            )],
        )
    };
    if unsealed > 0 {
        evidence.push(ev("pii_unsealed", vec![Arg::Count(unsealed)]));
    }
    Ok(check("pii", "002 §I", verdict, evidence))
}

async fn audit(store: &Store) -> Result<Check, String> {
    let report = store.verify_audit(None).await.map_err(|e| e.to_string())?;
    let policy = "000 §3, 001 §3";
    if let Some(problem) = report.problem {
        let evidence = vec![ev("audit_broken", vec![Arg::Text(problem.to_string())])];
        return Ok(check("audit", policy, Verdict::Fail, evidence));
    }
    let Some((seq, hash)) = report.head else {
        return Ok(check(
            "audit",
            policy,
            Verdict::Pass,
            vec![ev("audit_empty", vec![])],
        ));
    };
    let rows = i64::try_from(report.rows_checked).unwrap_or(i64::MAX);
    let evidence = vec![ev(
        "audit_ok",
        vec![
            Arg::Count(rows),
            Arg::Count(seq),
            Arg::Text(hex::encode(hash)),
        ],
    )];
    Ok(check("audit", policy, Verdict::Pass, evidence))
}

/// The environment named by the data directory's audit head mark (`env=` line), if the
/// mark exists.
fn data_dir_environment(data_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(stockade_vault::HEAD_FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("env="))
        .map(|e| e.trim().to_owned())
}

fn check(
    id: &'static str,
    policy: &'static str,
    verdict: Verdict,
    evidence: Vec<Evidence>,
) -> Check {
    Check {
        id,
        policy,
        verdict,
        evidence,
    }
}

fn ev(key: &'static str, args: Vec<Arg>) -> Evidence {
    Evidence::new(key, args)
}

fn count(n: impl TryInto<i64>) -> Arg {
    Arg::Count(n.try_into().unwrap_or(i64::MAX))
}

fn pass_if(ok: bool) -> Verdict {
    if ok { Verdict::Pass } else { Verdict::Fail }
}

impl ComplianceSource for Compliance {
    fn report(&self) -> Pin<Box<dyn Future<Output = Result<Report, String>> + Send + '_>> {
        Box::pin(Compliance::report(self))
    }
}
