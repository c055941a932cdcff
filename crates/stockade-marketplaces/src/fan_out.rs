//! One round of quantity calls with several in flight at once.
//!
//! A pusher hands a connector one round of changes; the connector turns it into calls
//! (Amazon: one patch per listing, TikTok: one per product, eBay: one per 25 listings)
//! that do not depend on each other. One after another, the last listing of a round of
//! hundreds is confirmed hundreds of round trips after the first; [`in_order`] overlaps
//! them while keeping what the callers rely on: calls start in the order given (zeros
//! and low stock first), results come back in that order, two calls touching the same
//! listing are never in flight together, and a fatal error stops the round.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use crate::{ErrorKind, MarketError, Marketplace};

/// Quantity calls of one round a connection keeps in flight at once.
///
/// Each call is one HTTPS round trip: about a millisecond on loopback, 100 ms or more
/// to a real marketplace. Eight overlap enough of that latency to take a round of
/// hundreds of listings from hundreds of round trips to a few dozen, while staying small:
/// the gateway's rate buckets still pace every call (Amazon's patchListingsItem is
/// 5/s with a burst of 5, so three of the eight wait for their token in order, without
/// spinning), a marketplace sees no more than eight connections from one seller, and a
/// revoked or blocked connection has at most eight calls out when the round stops.
pub const PUSH_CONCURRENCY: usize = 8;

/// An error after which no further call of the round can succeed: the connection's
/// authorization is gone or the marketplace blocks it.
pub(crate) fn is_fatal(e: &MarketError) -> bool {
    matches!(
        e.kind,
        ErrorKind::Auth | ErrorKind::Revoked | ErrorKind::Blocked
    )
}

/// A call in flight: its index among the calls, the keys it touches, the call.
type Running<'k, F> = (usize, Vec<&'k str>, Pin<Box<F>>);

/// Run `calls` (each with the keys of the listings it touches) with at most `limit` in
/// flight and return their results in the order given.
///
/// Calls start in the order given; a call whose keys meet those of a call still in
/// flight waits for it (and the calls behind it wait too, so the start order holds).
/// After a fatal error ([`is_fatal`]) no call starts any more: the calls in flight
/// finish, and each call not started gets that error without being sent.
pub(crate) async fn in_order<'k, T, F>(
    marketplace: Marketplace,
    calls: Vec<(Vec<&'k str>, F)>,
    limit: usize,
) -> Vec<Result<T, MarketError>>
where
    F: Future<Output = Result<T, MarketError>>,
{
    let total = calls.len();
    let mut results: Vec<Option<Result<T, MarketError>>> = (0..total).map(|_| None).collect();
    let mut waiting = calls.into_iter().enumerate().peekable();
    let mut running: Vec<Running<'k, F>> = Vec::new();
    let mut fatal: Option<MarketError> = None;
    loop {
        while fatal.is_none() && running.len() < limit.max(1) {
            let Some((_, (keys, _))) = waiting.peek() else {
                break;
            };
            let busy = running
                .iter()
                .any(|(_, held, _)| held.iter().any(|k| keys.contains(k)));
            if busy {
                break;
            }
            let Some((i, (keys, call))) = waiting.next() else {
                break;
            };
            running.push((i, keys, Box::pin(call)));
        }
        if running.is_empty() {
            break;
        }
        // The running calls are polled in the order they started (`running` keeps that
        // order: removal below shifts, never swaps), so a call's first poll — when its
        // request goes out — follows the one of every call before it. A call not polled
        // in this pass is polled in the next, which follows at once.
        let (slot, result) = std::future::poll_fn(|cx| {
            for (slot, (_, _, call)) in running.iter_mut().enumerate() {
                if let Poll::Ready(v) = call.as_mut().poll(cx) {
                    return Poll::Ready((slot, v));
                }
            }
            Poll::Pending
        })
        .await;
        let (i, _, _) = running.remove(slot);
        if let Err(e) = &result
            && fatal.is_none()
            && is_fatal(e)
        {
            fatal = Some(e.clone());
        }
        if let Some(r) = results.get_mut(i) {
            *r = Some(result);
        }
    }
    // Only a fatal error leaves calls waiting; they were never sent.
    for (i, _) in waiting {
        if let (Some(r), Some(e)) = (results.get_mut(i), &fatal) {
            *r = Some(Err(e.clone()));
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(MarketError::new(
                    marketplace,
                    ErrorKind::Invalid,
                    "not sent",
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// What the fake calls saw: the order they started, and how many overlapped.
    #[derive(Default)]
    struct Seen {
        started: Vec<usize>,
        now: usize,
        peak: usize,
        /// Keys in flight; a key seen twice is a test failure.
        keys: Vec<String>,
        clash: bool,
    }

    async fn fake(
        seen: &Mutex<Seen>,
        i: usize,
        key: &str,
        outcome: Result<usize, ErrorKind>,
    ) -> Result<usize, MarketError> {
        {
            let mut s = seen.lock().unwrap();
            s.started.push(i);
            s.now += 1;
            s.peak = s.peak.max(s.now);
            if s.keys.iter().any(|k| k == key) {
                s.clash = true;
            }
            s.keys.push(key.to_owned());
        }
        // Later calls finish first, so completion order differs from start order.
        tokio::time::sleep(Duration::from_millis(20 - (i as u64 % 4) * 5)).await;
        {
            let mut s = seen.lock().unwrap();
            s.now -= 1;
            if let Some(p) = s.keys.iter().position(|k| k == key) {
                s.keys.remove(p);
            }
        }
        outcome.map_err(|k| MarketError::new(Marketplace::Amazon, k, "refused"))
    }

    #[tokio::test]
    async fn results_in_order_starts_in_order_bounded_and_same_keys_apart() {
        let seen = Mutex::new(Seen::default());
        // Keys: "k0".."k19", except that 5 and 6 share one, and 12 repeats 10's.
        let keys: Vec<String> = (0..20)
            .map(|i| match i {
                6 => "k5".to_owned(),
                12 => "k10".to_owned(),
                i => format!("k{i}"),
            })
            .collect();
        let calls: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let outcome = if i == 3 {
                    Err(ErrorKind::Invalid)
                } else {
                    Ok(i)
                };
                (vec![k.as_str()], fake(&seen, i, k, outcome))
            })
            .collect();
        let results = in_order(Marketplace::Amazon, calls, 4).await;
        assert_eq!(results.len(), 20);
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, i),
                Err(e) => {
                    assert_eq!(i, 3);
                    assert_eq!(e.kind, ErrorKind::Invalid);
                }
            }
        }
        let s = seen.lock().unwrap();
        assert_eq!(s.started, (0..20).collect::<Vec<_>>());
        assert!(s.peak > 1 && s.peak <= 4, "peak {}", s.peak);
        assert!(!s.clash, "a key was in flight twice");
    }

    #[tokio::test]
    async fn a_fatal_error_stops_starting_and_fails_the_rest_unsent() {
        let seen = Mutex::new(Seen::default());
        let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        let calls: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let outcome = if i == 2 {
                    Err(ErrorKind::Revoked)
                } else {
                    Ok(i)
                };
                (vec![k.as_str()], fake(&seen, i, k, outcome))
            })
            .collect();
        let results = in_order(Marketplace::Amazon, calls, 4).await;
        let started = seen.lock().unwrap().started.len();
        assert!((3..30).contains(&started), "{started} started");
        assert!(results[started..].iter().all(|r| {
            r.as_ref()
                .is_err_and(|e| e.kind == ErrorKind::Revoked && e.message == "refused")
        }));
        assert!(results[..started].iter().enumerate().all(|(i, r)| match r {
            Ok(v) => *v == i,
            Err(e) => i == 2 && e.kind == ErrorKind::Revoked,
        }));
        assert_eq!(results.len(), 30);
    }
}
