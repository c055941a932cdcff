//! The rate limiter: each channel's budget of messages per second and per minute.
//!
//! Invariants: a sender asks [`Limiter::wait`] before every message and records the send
//! in `sent`; a platform's own rate-limit answer sets `blocked_until`, which no message
//! passes. The budget survives a restart: [`seed_limiter`] reloads the last minute's sends
//! (by any process) from the outbox when a sender takes the channel's lease.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use stockade_store::sql_params;

use super::{ChannelRuntime, Inner, lock, now_ms};

pub(super) struct Limiter {
    pub(super) sent: VecDeque<Instant>,
    pub(super) blocked_until: Option<Instant>,
}

impl Limiter {
    /// How long until one more message may go out within (per second, per minute).
    pub(super) fn wait(&mut self, per_second: u32, per_minute: u32, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        let mut wait = Duration::ZERO;
        if let Some(b) = self.blocked_until {
            if b > now {
                wait = b - now;
            } else {
                self.blocked_until = None;
            }
        }
        let windows = [
            (Duration::from_secs(1), per_second as usize),
            (Duration::from_secs(60), per_minute as usize),
        ];
        for (window, limit) in windows {
            let recent: Vec<&Instant> = self
                .sent
                .iter()
                .filter(|t| now.duration_since(**t) < window)
                .collect();
            if recent.len() >= limit.max(1) {
                // The oldest of the last `limit` sends must leave the window.
                let oldest = recent[recent.len() - limit.max(1)];
                // A little slack so the platform's clock sees us inside the limit.
                wait = wait.max(window + Duration::from_millis(50) - now.duration_since(*oldest));
            }
        }
        wait
    }
}

/// Messages this channel sent in the last minute (by any process), so a restart does
/// not reset the rate budget.
pub(super) async fn seed_limiter(inner: &Inner, ch: &ChannelRuntime) {
    let name = ch.client.config.name.as_str();
    let since = now_ms() - 60_000;
    let Ok(rows) = inner
        .store
        .query_as::<Option<i64>>(
            "SELECT DISTINCT sent_at_ms FROM alert_outbox WHERE channel = $1 AND sent_at_ms > $2",
            sql_params![name, since],
        )
        .await
    else {
        return;
    };
    let now_i = Instant::now();
    let now = now_ms();
    let mut l = lock(&ch.limiter);
    for t in rows.into_iter().flatten() {
        let age = Duration::from_millis(u64::try_from((now - t).max(0)).unwrap_or(0));
        if let Some(at) = now_i.checked_sub(age) {
            l.sent.push_back(at);
        }
    }
    l.sent.make_contiguous().sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_keeps_both_windows() {
        let mut l = Limiter {
            sent: VecDeque::new(),
            blocked_until: None,
        };
        let t0 = Instant::now();
        for i in 0..4 {
            assert!(l.wait(4, 90, t0 + Duration::from_millis(i)).is_zero());
            l.sent.push_back(t0 + Duration::from_millis(i));
        }
        let w = l.wait(4, 90, t0 + Duration::from_millis(10));
        assert!(
            w > Duration::from_millis(900) && w <= Duration::from_millis(1100),
            "{w:?}"
        );
        // Per minute: 18 sent spread over 36 s → the 19th waits for the first to age out.
        let mut l = Limiter {
            sent: VecDeque::new(),
            blocked_until: None,
        };
        for i in 0..18u64 {
            l.sent.push_back(t0 + Duration::from_secs(i * 2));
        }
        let w = l.wait(18, 18, t0 + Duration::from_secs(36));
        assert!(
            w >= Duration::from_secs(24) && w <= Duration::from_secs(25),
            "{w:?}"
        );
        l.blocked_until = Some(t0 + Duration::from_secs(600));
        assert!(l.wait(18, 18, t0 + Duration::from_secs(36)) >= Duration::from_secs(560));
    }
}
