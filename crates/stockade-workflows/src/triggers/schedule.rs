//! The scheduler: fires every due tick of each enabled `trigger: schedule` workflow
//! exactly once, across processes and restarts.
//!
//! A pass ([`Scheduler::fire_due`], every [`super::TriggerConfig::poll`]) reads the active
//! versions and, for each schedule, the newest tick already fired (`schedule_ticks`, one
//! row per workflow `workflow:NAME` and tick). The ticks due are those after it (after
//! the version's activation when none fired yet, and never before it) up to now. The
//! newest of them, `T`, is the only one that may fire; the ones before it were missed:
//! - `T` at most `grace_ms` late (a normal pass, or a short restart): it fires, whatever
//!   `missed` says; with earlier ticks missed it stands for them (`missed` in its trigger
//!   data counts them).
//! - `T` later than that (no scheduler ran over it): `missed: run_once` fires it once as
//!   the catch-up (`catch_up: true`); `missed: skip` (the default) fires nothing and
//!   records `T` as taken without a job (audited `schedule.tick`), so later passes start
//!   after it.
//!
//! Firing is [`Store::fire_schedule`]: the tick's row and the execution's job in one
//! audited commit, actor `system:scheduler`. The row's primary key and the store's "ticks
//! only move forward" rule let one insert win, whichever process or handle tries and
//! however often, so two schedulers fire one job per tick and a restarted one never fires
//! a tick again. The job is pinned to the version active when the tick fired; its trigger
//! data is `{kind: schedule, at (when it fired), scheduled_at (the tick), previous_fire
//! (the tick before, or null), tick_ms, missed, catch_up}`, times in RFC 3339 UTC.
//!
//! A disabled workflow's ticks are missed ticks: on re-enable, `run_once` runs one
//! catch-up, `skip` none. The clock is a parameter of [`Scheduler::fire_due`], so tests
//! move time without sleeping. [`Scheduler::run`] passes the clock the processes share
//! ([`stockade_core::clock::now_ms`]): a host whose wall clock was stepped an hour ahead
//! neither fires the next hour's ticks early (which, ticks only moving forward, would
//! also take them from every other process) nor, stepped back, stops firing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use stockade_core::Actor;
// Due times and leases are on the clock the processes share (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_store::Store;
use tokio::sync::watch;

use super::{ActiveSet, ActiveWorkflow, TriggerError};
use crate::definition::{Missed, Schedule, Trigger};
use crate::schedule::CronSchedule;

/// At most this many ticks are stepped over in one pass for one schedule (a per-second
/// cron after a long downtime); the rest is stepped over by the next pass.
const MAX_SCAN: u32 = 100_000;

/// What a pass did for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub workflow: String,
    pub tick_ms: i64,
    /// The execution's job; `None` when the tick was skipped (`missed: skip`).
    pub job: Option<String>,
    pub catch_up: bool,
}

/// Fires due schedule ticks.
#[derive(Debug)]
pub struct Scheduler {
    store: Store,
    set: ActiveSet,
    grace_ms: i64,
}

fn actor() -> Actor {
    Actor::System("scheduler")
}

/// The schedule name of a workflow in `schedule_ticks`.
pub fn schedule_name(workflow: &str) -> String {
    format!("workflow:{workflow}")
}

fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The newest tick of `cron` in `(after, now]` and how many due ticks precede it.
fn newest_due(cron: &CronSchedule, after: i64, now: i64) -> Option<(i64, u32)> {
    let mut t = cron.next_after(from_ms(after)?)?;
    if to_ms(t) > now {
        return None;
    }
    let mut before = 0;
    while before < MAX_SCAN {
        match cron.next_after(t) {
            Some(n) if to_ms(n) <= now => {
                t = n;
                before += 1;
            }
            _ => break,
        }
    }
    Some((to_ms(t), before))
}

impl Scheduler {
    /// A scheduler on `store`; a tick up to `grace_ms` late is on time.
    pub fn new(store: Store, grace_ms: i64) -> Self {
        Scheduler {
            store,
            set: ActiveSet::new(),
            grace_ms: grace_ms.max(0),
        }
    }

    /// One pass at time `now_ms`: fire (or skip) the newest due tick of every schedule.
    pub async fn fire_due(&self, now_ms: i64) -> Result<Vec<Fired>, TriggerError> {
        let mut out = Vec::new();
        for a in self.set.load(&self.store).await? {
            if let Trigger::Schedule(s) = &a.workflow().trigger.value
                && let Some(f) = self.fire_one(&a, s, now_ms).await?
            {
                out.push(f);
            }
        }
        Ok(out)
    }

    async fn fire_one(
        &self,
        a: &ActiveWorkflow,
        s: &Schedule,
        now: i64,
    ) -> Result<Option<Fired>, TriggerError> {
        let Some(now_dt) = from_ms(now) else {
            return Ok(None);
        };
        let tz = s.tz.as_ref().map(|t| t.value.as_str());
        let Ok(cron) = CronSchedule::parse(&s.cron.value, tz, now_dt) else {
            // Lint refused it when applied; a pattern that stopped firing does nothing.
            return Ok(None);
        };
        let name = schedule_name(a.name());
        let last = self.store.last_tick(&name).await?;
        let after = last.unwrap_or(a.since_ms).max(a.since_ms);
        let Some((tick, missed)) = newest_due(&cron, after, now) else {
            return Ok(None);
        };
        let late = now - tick > self.grace_ms;
        if late && s.missed == Missed::Skip {
            self.store.claim_tick(&actor(), &name, tick).await?;
            return Ok(Some(Fired {
                workflow: a.name().to_owned(),
                tick_ms: tick,
                job: None,
                catch_up: false,
            }));
        }
        let catch_up = late || (missed > 0 && s.missed == Missed::RunOnce);
        let trigger = json!({
            "kind": "schedule",
            "at": super::rfc3339(now),
            "scheduled_at": super::rfc3339(tick),
            "previous_fire": last.map(super::rfc3339),
            "tick_ms": tick,
            "missed": missed + u32::from(late),
            "catch_up": catch_up,
        });
        let job = a
            .payload(trigger)
            .job()
            .dedup_key(format!("schedule:{}:{tick}", a.name()));
        let fired = self
            .store
            .fire_schedule(&actor(), &name, tick, &job)
            .await?;
        Ok(fired.map(|id| Fired {
            workflow: a.name().to_owned(),
            tick_ms: tick,
            job: Some(id),
            catch_up,
        }))
    }

    /// Run passes every `poll` until `stopped` turns true.
    pub async fn run(self, poll: Duration, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*stopped.borrow() {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.fire_due(now_ms()).await {
                        tracing::warn!("workflow scheduler: {e}");
                    }
                }
                _ = stopped.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_due_tick_and_the_missed_before_it() {
        let now = 0i64;
        let cron = CronSchedule::parse("* * * * *", None, from_ms(now).unwrap()).unwrap();
        // Nothing due before the first minute.
        assert_eq!(newest_due(&cron, 0, 59_999), None);
        assert_eq!(newest_due(&cron, 0, 60_000), Some((60_000, 0)));
        // Ten minutes down: the tenth minute fires, nine were missed.
        assert_eq!(newest_due(&cron, 0, 600_500), Some((600_000, 9)));
        // After the newest fired tick nothing is due until the next one.
        assert_eq!(newest_due(&cron, 600_000, 600_500), None);
    }
}
