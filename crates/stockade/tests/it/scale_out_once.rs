//! What runs once across the scale-out test's processes: a workflow fired every second
//! by its schedule, whose first step posts to a receiver on loopback (the sandbox's
//! webhook receiver, checking a bearer token; the engine sends `Idempotency-Key:
//! EXECUTION/STEP`) and whose second step raises an alert to a Feishu channel (the
//! sandbox's Feishu bot, verifying every signature). The executions run in whichever
//! process claims them, before and after the SIGKILLs; the channel is sent by the one
//! process holding its lease, taken over after a kill.
//!
//! Checked at the end, against the database and the receivers:
//! - every fired tick has one execution and it succeeded; fired ticks plus the ticks
//!   each one says it stood for (`missed`) cover every second of the run (no tick lost);
//! - each execution's `ping` step reached the receiver once, or, when a process was
//!   killed with the request in flight, again with the same key and a second attempt in
//!   the journal (at least once for a step cut mid-flight; a committed step never runs
//!   again); no request the database has no execution for;
//! - each execution raised one alert event, and every alert event reached the bot once
//!   (its event id in the messages), none lost after the kills; a second copy is allowed
//!   only for a message the bot received in the second before a kill (the sender died
//!   between the bot's answer and its commit: at least once, documented).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockade_sandbox::bots::{FeishuBot, FeishuBotSpec, Received, WebhookReceiver};
use stockade_sandbox::{Bots, BotsConfig};

use crate::harness::Sandbox;
use crate::sync::credentials_file;

const TOKEN: &str = "tok-ScaleOut-Once-4d2a91c07e5b";
const WORKFLOW: &str = "scale-tick";
const CHANNEL: &str = "ops";

/// The receivers (on one loopback HTTPS server) and what a data directory needs to
/// reach them.
pub(crate) struct Once {
    bots: Bots,
    hook: WebhookReceiver,
    feishu: FeishuBot,
    ca: PathBuf,
}

impl Once {
    pub(crate) async fn start(sb: &Sandbox) -> Once {
        let bots = Bots::start(BotsConfig::default()).await.unwrap();
        let hook = bots.add_bearer_webhook("tick", TOKEN);
        let feishu = bots.add_feishu(FeishuBotSpec {
            name: "ops".into(),
            sign: true,
            keywords: vec!["Stockade".into()],
            ip_allow: vec![],
        });
        // A platform's latency: a message is in flight for a while, so a second sender
        // (were the channel's lease not respected) would pick it up again.
        bots.set_delay("ops", Duration::from_millis(300));
        let ca = sb.dir.join("receivers-ca.pem");
        std::fs::write(&ca, &bots.ca_pem).unwrap();
        Once {
            bots,
            hook,
            feishu,
            ca,
        }
    }

    /// The receivers' `host:port`, for `[egress] allowed_hosts`.
    pub(crate) fn host(&self) -> String {
        self.bots.base_url.trim_start_matches("https://").to_owned()
    }

    /// The receivers' CA, for `[egress] extra_root_certs`.
    pub(crate) fn ca(&self) -> String {
        self.ca.display().to_string()
    }

    /// `stockade.toml` sections: a short workflow lease (a killed process's execution
    /// resumes within seconds) and the Feishu channel.
    pub(crate) fn config(&self) -> String {
        format!(
            "\n[workflows]\nlease = \"3s\"\n\n[[alerts.channel]]\nname = \"{CHANNEL}\"\nkind = \"feishu\"\nurl = \"{}/open-apis/bot/v2/hook\"\nkeyword = \"Stockade\"\n",
            self.bots.base_url
        )
    }

    /// The channel's secrets, the receiver's token and the workflow (firing from the
    /// next `serve` on).
    pub(crate) fn setup(&self, sb: &Sandbox) {
        let f = credentials_file(
            sb,
            "feishu-ops",
            json!({"hook_id": self.feishu.hook_id, "secret": self.feishu.secret}),
        );
        sb.run(&[
            "alert",
            "secret",
            "set",
            CHANNEL,
            "--credentials-file",
            f.to_str().unwrap(),
        ])
        .expect_code(0);
        let wf = format!(
            "name: {WORKFLOW}\ntrigger: {{ schedule: {{ cron: \"* * * * * *\" }} }}\npermissions:\n  hosts: [127.0.0.1]\n  credentials: [tick-token]\nsteps:\n  - id: ping\n    uses: http.request\n    with:\n      url: \"{}\"\n      method: POST\n      body: {{ tick: \"{{{{ trigger.tick_ms }}}}\", missed: \"{{{{ trigger.missed }}}}\" }}\n      credential: tick-token\n  - id: notify\n    uses: alert.send\n    with: {{ message: \"tick {{{{ trigger.scheduled_at }}}}\", channel: {CHANNEL} }}\n",
            self.hook.url
        );
        let path = sb.dir.join("scale-tick.yaml");
        std::fs::write(&path, wf).unwrap();
        sb.run(&["workflow", "apply", path.to_str().unwrap()])
            .expect_code(0);
        sb.run_with_stdin(
            &sb.data(),
            &[
                "credential",
                "set",
                "tick-token",
                "--workflow",
                WORKFLOW,
                "--host",
                "127.0.0.1",
                "--secret-stdin",
            ],
            Some(&format!("{TOKEN}\n")),
        )
        .expect_code(0);
    }

    /// Answer the workflow's requests only after `delay`: its executions are running
    /// most of the time (a reaper that wrongly finds their leases expired takes them).
    pub(crate) fn slow_requests(&self, delay: Duration) {
        self.bots.set_delay("tick", delay);
    }

    /// When (ms since the epoch, the receiver's clock) the workflow's requests from
    /// process `pid` arrived.
    pub(crate) fn requests_from(&self, pid: u32) -> Vec<i64> {
        self.bots
            .received()
            .iter()
            .filter(|r| r.bot == "tick" && node_pid(r) == Some(pid))
            .map(|r| r.at_ms)
            .collect()
    }

    /// Wait until process `pid` (the channel's holder) has sent the bot a message, so
    /// that its kill cuts a channel that was sending (the first executions' alerts can
    /// still be on their way when the load starts).
    pub(crate) async fn wait_for_alert_from(&self, pid: u32, logs: &dyn Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sent = self
                .bots
                .accepted(CHANNEL)
                .iter()
                .any(|r| !r.path.ends_with("/accessToken") && node_pid(r) == Some(pid));
            if sent {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} holds the alert channel but sent nothing in 20 s\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until process `pid` holds the alert channel's lease.
    pub(crate) async fn wait_for_channel_holder(&self, url: &str, pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let held: Vec<Option<String>> = rows(
                url,
                "SELECT holder FROM leases WHERE name = 'alert_channel:ops'",
            )
            .await;
            if held
                .first()
                .and_then(Option::as_deref)
                .is_some_and(|h| super::scale_out::pid_of(h) == pid)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} did not take the alert channel: {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Check that the ticks up to `cutoff_ms` (ms since the epoch; the schedule keeps
    /// firing after it) ran once and alerted once, waiting for their executions and alerts
    /// to finish. `kills` are (pid, when) of the SIGKILLed processes, `logs` the
    /// survivors' logs.
    pub(crate) async fn check(
        &self,
        url: &str,
        cutoff_ms: i64,
        kills: &[(u32, i64)],
        logs: &dyn Fn() -> String,
    ) {
        let ticks: Vec<(i64, Option<String>)> = rows(
            url,
            "SELECT tick_ms, job_id FROM schedule_ticks WHERE schedule = 'workflow:scale-tick' ORDER BY tick_ms",
        )
        .await;
        let ticks: Vec<(i64, String)> = ticks
            .into_iter()
            .filter(|(t, _)| *t <= cutoff_ms)
            .map(|(t, job)| {
                (
                    t,
                    job.unwrap_or_else(|| panic!("tick {t} fired no execution")),
                )
            })
            .collect();
        assert!(ticks.len() >= 10, "too few ticks fired: {}", ticks.len());
        let ours: BTreeSet<String> = ticks.iter().map(|(_, j)| j.clone()).collect();
        assert_eq!(ours.len(), ticks.len(), "two ticks with one execution");
        // Every execution finishes (a killed process's are resumed after its lease).
        let deadline = Instant::now() + Duration::from_secs(40);
        let jobs: BTreeMap<String, (String, Option<String>)> = loop {
            let all: Vec<(String, String, Option<String>)> = rows(
                url,
                "SELECT id, state, last_error FROM jobs WHERE workflow = 'scale-tick'",
            )
            .await;
            let jobs: BTreeMap<String, (String, Option<String>)> = all
                .into_iter()
                .filter(|(id, _, _)| ours.contains(id))
                .map(|(id, state, error)| (id, (state, error)))
                .collect();
            let open = jobs
                .values()
                .filter(|(s, _)| s == "queued" || s == "running")
                .count();
            if open == 0 {
                break jobs;
            }
            assert!(
                Instant::now() < deadline,
                "{open} executions not finished\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(jobs.len(), ours.len(), "a tick's execution is missing");
        let failed: Vec<_> = jobs.iter().filter(|(_, (s, _))| s != "succeeded").collect();
        let step_errors: Vec<(String, String, i64, Option<String>)> = rows(
            url,
            "SELECT s.job_id, s.step_id, s.attempt, s.error FROM job_steps s JOIN jobs j ON j.id = s.job_id WHERE j.workflow = 'scale-tick' AND s.status <> 'succeeded'",
        )
        .await;
        assert!(
            failed.is_empty(),
            "executions that did not succeed: {failed:?}; steps: {step_errors:?}\n{}",
            logs()
        );

        // The journal: attempts of `ping` per execution.
        let steps: Vec<(String, String, i64, String)> = rows(
            url,
            "SELECT s.job_id, s.step_id, s.attempt, s.status FROM job_steps s JOIN jobs j ON j.id = s.job_id WHERE j.workflow = 'scale-tick'",
        )
        .await;
        let mut attempts: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for (job, step, _, status) in steps.iter().filter(|s| ours.contains(&s.0)) {
            let e = attempts.entry((job.clone(), step.clone())).or_default();
            e.0 += 1;
            e.1 += i64::from(status == "succeeded");
        }
        for job in jobs.keys() {
            for step in ["ping", "notify"] {
                let (_, ok) = attempts
                    .get(&(job.clone(), step.to_owned()))
                    .copied()
                    .unwrap_or_default();
                assert_eq!(ok, 1, "{job}/{step} committed {ok} times");
            }
        }

        // At the receiver: one request per (execution, step), or a repeat of a step cut
        // mid-flight (same key, a second attempt in the journal).
        let got: Vec<Received> = self
            .bots
            .received()
            .into_iter()
            .filter(|r| r.bot == "tick")
            .collect();
        let mut by_key: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
        for r in &got {
            let key = r
                .header("idempotency-key")
                .unwrap_or_else(|| panic!("a request without its key: {r:?}"));
            by_key.entry(key.to_owned()).or_default().push(r);
        }
        let mut repeated = Vec::new();
        let mut nodes = BTreeSet::new();
        let mut covered = 0i64;
        for job in jobs.keys() {
            let key = format!("{job}/ping");
            let hits = by_key.remove(&key).unwrap_or_default();
            let tried = attempts
                .get(&(job.clone(), "ping".to_owned()))
                .map_or(0, |a| a.0);
            assert!(!hits.is_empty(), "{key} never reached the receiver");
            assert!(
                hits.len() as i64 <= tried,
                "{key} reached the receiver {} times in {tried} attempt(s)",
                hits.len()
            );
            assert!(hits.iter().any(|r| r.accepted), "{key}: {hits:?}");
            if hits.len() > 1 {
                // Only a request cut by a kill is repeated: every copy but the last came
                // from a process killed after sending it.
                for r in &hits[..hits.len() - 1] {
                    let pid = node_pid(r);
                    assert!(
                        kills
                            .iter()
                            .any(|(p, at)| Some(*p) == pid && r.at_ms <= *at),
                        "{key} was sent again although process {pid:?} that sent it lived on"
                    );
                }
                repeated.push(key.clone());
            }
            nodes.extend(hits.iter().filter_map(|r| node_pid(r)));
            let missed: i64 = hits[0].body["missed"]
                .as_str()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            covered += 1 + missed;
        }
        // Requests of executions after the cutoff are not checked, but their executions
        // must exist too.
        let all: Vec<String> = rows(url, "SELECT id FROM jobs WHERE workflow = 'scale-tick'").await;
        by_key.retain(|k, _| {
            !k.split_once('/')
                .is_some_and(|(j, _)| all.iter().any(|a| a == j))
        });
        assert!(
            by_key.is_empty(),
            "requests for executions the database does not have: {:?}",
            by_key.keys().collect::<Vec<_>>()
        );
        // No tick lost: the fired ticks and those each stood for cover the run (the first
        // fired tick may stand for ticks from before the processes started).
        let span = (ticks.last().unwrap().0 - ticks[0].0) / 1000 + 1;
        assert!(
            covered >= span,
            "{covered} ticks accounted for over {span} seconds"
        );
        assert!(
            nodes.len() >= 2,
            "the executions ran in one process only: {nodes:?}"
        );
        eprintln!(
            "{} scheduled executions by {} processes, each step committed once; {} request(s) repeated after a kill: {repeated:?}",
            jobs.len(),
            nodes.len(),
            repeated.len()
        );

        // Alerts: one event per execution, each delivered (the survivor sends what was
        // pending when the channel's holder died).
        let events: Vec<(i64, String)> = rows(
            url,
            "SELECT id, detail FROM events WHERE source = 'workflow' AND kind = 'alert' ORDER BY id",
        )
        .await;
        let mut per_execution: BTreeMap<String, usize> = BTreeMap::new();
        let mut ids = Vec::new();
        for (id, detail) in &events {
            let d: Value = serde_json::from_str(detail).unwrap();
            let exec = d["execution"].as_str().unwrap_or_default().to_owned();
            if ours.contains(&exec) {
                *per_execution.entry(exec).or_default() += 1;
                ids.push(*id);
            }
        }
        for job in jobs.keys() {
            assert_eq!(
                per_execution.get(job).copied(),
                Some(1),
                "{job}: alert events"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let (messages, seen) = loop {
            let messages: Vec<Received> = self
                .bots
                .accepted("ops")
                .into_iter()
                .filter(|r| !r.path.ends_with("/accessToken"))
                .collect();
            let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
            for m in &messages {
                for id in event_ids(&m.body.to_string()) {
                    seen.entry(id).or_default().push(m.at_ms);
                }
            }
            let missing: Vec<&i64> = ids.iter().filter(|i| !seen.contains_key(i)).collect();
            if missing.is_empty() {
                break (messages, seen);
            }
            assert!(
                Instant::now() < deadline,
                "alert events never delivered: {missing:?}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let mut senders: Vec<(i64, u32)> = Vec::new();
        for m in &messages {
            if let Some(pid) = node_pid(m) {
                senders.push((m.at_ms, pid));
            }
        }
        let mut twice = Vec::new();
        for id in &ids {
            let at = seen.get(id).cloned().unwrap_or_default();
            assert!(!at.is_empty(), "alert event {id} never reached the bot");
            if at.len() > 1 {
                // At least once: only a message the bot took just before a kill may be
                // sent again by the process that took the channel over.
                assert!(
                    at.len() == 2 && kills.iter().any(|(_, k)| (k - 1000..=*k).contains(&at[0])),
                    "alert event {id} reached the bot {} times: {at:?} (kills {kills:?})",
                    at.len()
                );
                twice.push(*id);
            }
        }
        // The first killed process sent the channel until it died, another after.
        if let Some(&(first_killed, at)) = kills.first() {
            assert!(
                senders.iter().any(|(t, p)| *p == first_killed && *t <= at),
                "process {first_killed} sent no alert before its kill: {senders:?}"
            );
            assert!(
                senders.iter().any(|(t, p)| *p != first_killed && *t > at),
                "no alert sent by another process after the kill: {senders:?}"
            );
        }
        eprintln!(
            "{} alert events reached the bot in {} messages; sent again after a kill: {twice:?}",
            ids.len(),
            messages.len()
        );
    }
}

/// The process that sent a request (its User-Agent names the node).
fn node_pid(r: &Received) -> Option<u32> {
    let ua = r.header("user-agent")?;
    let (_, node) = ua.split_once(" node/")?;
    Some(super::scale_out::pid_of(node))
}

/// The event ids a message names (`event N`).
fn event_ids(text: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("event ") {
        rest = &rest[i + 6..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
    }
    out
}

async fn rows<T: stockade_store::FromRow>(url: &str, sql: &'static str) -> Vec<T> {
    super::scale_out::rows(url, sql).await
}
