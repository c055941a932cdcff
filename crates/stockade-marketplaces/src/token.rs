//! In-memory access-token cache with single-flight refresh and refresh-token rotation.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use stockade_core::SecretString;
use stockade_core::clock::now_ms;

/// Refresh this long before the marketplace's expiry (or half the token's lifetime, for
/// a token that lives less than two margins).
const EXPIRY_MARGIN_MS: i64 = 60_000;

pub(crate) struct TokenCache {
    /// (token, refresh after this instant): monotonic, so a step of the wall clock
    /// neither keeps an expired token nor drops a good one.
    access: Mutex<Option<(SecretString, Instant)>>,
    refresh: Mutex<SecretString>,
    rotated: Mutex<Option<SecretString>>,
    /// Held while one task refreshes, so concurrent callers wait for its token.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
}

impl TokenCache {
    pub(crate) fn new(refresh_token: SecretString) -> Self {
        TokenCache {
            access: Mutex::new(None),
            refresh: Mutex::new(refresh_token),
            rotated: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The cached access token, if it is still valid for at least the margin.
    pub(crate) fn current(&self) -> Option<SecretString> {
        let guard = self.access.lock().ok()?;
        match &*guard {
            Some((token, refresh_after)) if *refresh_after > Instant::now() => Some(token.clone()),
            _ => None,
        }
    }

    pub(crate) fn store(&self, token: SecretString, expires_at_ms: i64) {
        let lifetime = expires_at_ms - now_ms();
        let left = lifetime - EXPIRY_MARGIN_MS.min(lifetime / 2).max(0);
        let refresh_after =
            Instant::now() + Duration::from_millis(u64::try_from(left).unwrap_or(0));
        if let Ok(mut guard) = self.access.lock() {
            *guard = Some((token, refresh_after));
        }
    }

    pub(crate) fn invalidate(&self) {
        if let Ok(mut guard) = self.access.lock() {
            *guard = None;
        }
    }

    pub(crate) fn refresh_token(&self) -> SecretString {
        self.refresh
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Record the refresh token the marketplace returned; `Some` when it differs (a
    /// rotation the caller must persist).
    pub(crate) fn rotate(&self, new: Option<&str>) -> Option<SecretString> {
        let new = new.filter(|t| !t.is_empty())?;
        let mut guard = self.refresh.lock().ok()?;
        if guard.expose_secret() == new {
            return None;
        }
        *guard = SecretString::from(new.to_owned());
        let rotated = SecretString::from(new.to_owned());
        if let Ok(mut r) = self.rotated.lock() {
            *r = Some(rotated.clone());
        }
        Some(rotated)
    }

    /// A rotated refresh token not yet collected by the caller.
    pub(crate) fn take_rotated(&self) -> Option<SecretString> {
        self.rotated.lock().ok().and_then(|mut g| g.take())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_lived_tokens_are_used_and_long_ones_refreshed_a_minute_early() {
        let cache = TokenCache::new(SecretString::from("r".to_owned()));
        // A 20 s token (less than two margins) is still usable at once.
        cache.store(SecretString::from("short".to_owned()), now_ms() + 20_000);
        assert!(cache.current().is_some());
        // An hour's token is used until a minute before it expires.
        cache.store(SecretString::from("hour".to_owned()), now_ms() + 3_600_000);
        let refresh_after = cache.access.lock().unwrap().as_ref().unwrap().1;
        let left = refresh_after.saturating_duration_since(Instant::now());
        assert!(left.abs_diff(Duration::from_secs(3_540)) < Duration::from_secs(1));
        cache.store(SecretString::from("late".to_owned()), now_ms() - 1);
        assert!(cache.current().is_none(), "expired");
        cache.invalidate();
        assert!(cache.current().is_none());
    }
}
