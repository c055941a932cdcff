//! In-memory access-token cache with single-flight refresh and refresh-token rotation.

use std::sync::Mutex;

use stockade_core::SecretString;
use stockade_core::time::now_ms;

/// Refresh this long before the marketplace's expiry.
const EXPIRY_MARGIN_MS: i64 = 60_000;

pub(crate) struct TokenCache {
    access: Mutex<Option<(SecretString, i64)>>,
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
            Some((token, expires)) if *expires - EXPIRY_MARGIN_MS > now_ms() => Some(token.clone()),
            _ => None,
        }
    }

    pub(crate) fn store(&self, token: SecretString, expires_at_ms: i64) {
        if let Ok(mut guard) = self.access.lock() {
            *guard = Some((token, expires_at_ms));
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
