//! A delivery's outcome, committed with its audit row.
//!
//! Delivered: the rows are sent and the channel is ok. Rate-limited or failing: the rows
//! are kept and retried (after the platform's wait, or with exponential backoff up to
//! `retry_max`); the channel raises a `channel_down` event once, when its failures reach
//! `down_after`. A configuration error: every pending row of the channel is held, its
//! settings' fingerprint is recorded (a change releases them), and a `channel_config`
//! event is raised once, when the channel becomes misconfigured.

use std::time::Duration;

use stockade_core::event::{ChannelTrouble, Event};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Grant, Mutation, sql_params};

use super::sender::{Row, channel_status};
use super::{ACTOR, ChannelRuntime, Inner, Result, ms, now_ms};
use crate::channel::Outcome;

fn backoff(inner: &Inner, attempts: i64) -> Duration {
    let base = inner.config.retry_base;
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    let d = base.saturating_mul(2u32.saturating_pow(exp));
    d.min(inner.config.retry_max)
}

pub(super) async fn record_outcome(
    inner: &Inner,
    ch: &ChannelRuntime,
    grant: &Grant,
    batch: &[Row],
    outcome: &Outcome,
) -> Result<()> {
    let cfg = &ch.client.config;
    let name = cfg.name.as_str();
    let now = now_ms();
    let attempts = batch.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
    let events: i64 = batch.iter().map(|r| r.events).sum();
    let detail = outcome.detail().to_owned();
    // First, the channel lease's fence: refused whole once another process took it.
    let mut steps = vec![grant.fence()];
    let previous = channel_status(inner, name).await.map(|s| s.0);
    let failures_before = inner
        .store
        .query_one_as(
            "SELECT failures FROM alert_channels WHERE name = $1",
            sql_params![name],
        )
        .await?
        .unwrap_or(0);
    match outcome {
        Outcome::Delivered { .. } => {
            for r in batch {
                steps.push(Mutation::Sql {
                    statement: "UPDATE alert_outbox SET state = 'sent', attempts = attempts + 1, sent_at_ms = $2, last_error = NULL WHERE id = $1",
                    params: sql_params![r.id, now],
                    expect: Expect::Any,
                });
            }
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_channels SET status = 'ok', last_error = NULL, last_ok_ms = $2, last_attempt_ms = $2, failures = 0 WHERE name = $1",
                params: sql_params![name, now],
                expect: Expect::Any,
            });
        }
        Outcome::RateLimited { .. } | Outcome::Transient { .. } => {
            let (next, status) = match outcome {
                Outcome::RateLimited { wait, .. } => (now + ms(*wait), "rate_limited"),
                _ => (now + ms(backoff(inner, attempts)), "failing"),
            };
            for r in batch {
                steps.push(Mutation::Sql {
                    statement: "UPDATE alert_outbox SET attempts = attempts + 1, next_at_ms = $2, last_error = $3 WHERE id = $1",
                    params: sql_params![r.id, next, detail.as_str()],
                    expect: Expect::Any,
                });
            }
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_channels SET status = $2, last_error = $3, last_attempt_ms = $4, failures = failures + 1 WHERE name = $1",
                params: sql_params![name, status, detail.as_str(), now],
                expect: Expect::Any,
            });
            if status == "failing" && failures_before + 1 == i64::from(inner.config.down_after) {
                let held = pending_count(inner, name).await;
                steps.push(channel_event(now, Event::ChannelDown, name, &detail, held));
            }
        }
        Outcome::Config { .. } => {
            let fp = ch.client.fingerprint(&inner.vault).await;
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_outbox SET state = 'held', attempts = attempts + 1, last_error = $2 WHERE channel = $1 AND state = 'pending'",
                params: sql_params![name, detail.as_str()],
                expect: Expect::Any,
            });
            steps.push(Mutation::Sql {
                statement: "UPDATE alert_channels SET status = 'misconfigured', last_error = $2, last_attempt_ms = $3, failures = failures + 1, fingerprint = $4 WHERE name = $1",
                params: sql_params![name, detail.as_str(), now, fp],
                expect: Expect::Any,
            });
            if previous.as_deref() != Some("misconfigured") {
                let held = pending_count(inner, name).await;
                steps.push(channel_event(
                    now,
                    Event::ChannelConfig,
                    name,
                    &detail,
                    held,
                ));
            }
        }
    }
    if !matches!(outcome, Outcome::Delivered { .. }) {
        tracing::warn!(
            channel = name,
            status = outcome.status(),
            "alert delivery: {detail}"
        );
    }
    inner
        .store
        .commit(
            &ACTOR,
            vec![Change::new(
                Mutation::Many {
                    steps,
                    guard: false,
                },
                AuditEntry::new(
                    "alert.delivery",
                    format!("alert_channel:{name}"),
                    AuditDetails::new()
                        .str("channel", name)
                        .str("kind", cfg.kind.as_str())
                        .str("status", outcome.status())
                        .int("attempts", attempts)
                        .int("alerts", i64::try_from(batch.len()).unwrap_or(0))
                        .int("events", events)
                        .int("first_row", batch.first().map_or(0, |r| r.id)),
                ),
            )],
        )
        .await?;
    Ok(())
}

/// The `alerts` event a channel raises when it goes down or becomes misconfigured.
fn channel_event(
    now: i64,
    kind: fn(ChannelTrouble) -> Event,
    name: &str,
    detail: &str,
    held: i64,
) -> Mutation {
    let trouble = ChannelTrouble {
        channel: name.to_owned(),
        held: Some(held),
        reason: Some(detail.to_owned()),
    };
    stockade_store::events::append(now, &kind(trouble))
}

async fn pending_count(inner: &Inner, channel: &str) -> i64 {
    inner
        .store
        .count(
            "SELECT COUNT(*) FROM alert_outbox WHERE channel = $1 AND state IN ('pending', 'held')",
            sql_params![channel],
        )
        .await
        .unwrap_or(0)
}
