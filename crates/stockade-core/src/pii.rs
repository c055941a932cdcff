//! `Pii<T>`: the only way buyer data (names, addresses, phones, emails) is held.
//!
//! Invariant: the plain value never reaches a formatter or a serializer. `Debug`,
//! `Display` and `Serialize` all print `[redacted]`; the value is reached only through
//! [`Pii::expose_pii`], a call that is easy to grep for in review. The buffer is wiped
//! on drop. Together these make "PII in a log line, an alert or an audit row" a type
//! error or a visible review item rather than an accident.

use std::fmt;

use serde::{Serialize, Serializer};
use zeroize::Zeroize;

/// What a redacted value prints as, everywhere.
pub const REDACTED: &str = "[redacted]";

/// A piece of personal data. See the module docs for its guarantees.
#[derive(Clone, PartialEq, Eq)]
pub struct Pii<T: Zeroize>(T);

impl<T: Zeroize> Pii<T> {
    /// Wrap a value that came from a buyer or a marketplace.
    pub fn new(value: T) -> Self {
        Pii(value)
    }

    /// The plain value. Every call site is a place where PII is handled in the clear:
    /// encrypting it, tagging it, or showing it to an authorised user.
    pub fn expose_pii(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Pii<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> Serialize for Pii<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl From<&str> for Pii<String> {
    fn from(value: &str) -> Self {
        Pii(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize)]
    struct Buyer {
        id: u32,
        email: Pii<String>,
    }

    #[test]
    fn debug_display_and_serialize_never_show_the_value() {
        let email = Pii::new("jane.doe@example.com".to_owned());
        assert_eq!(format!("{email:?}"), REDACTED);
        assert_eq!(format!("{email}"), REDACTED);
        let buyer = Buyer { id: 7, email };
        let debug = format!("{buyer:?}");
        let json = serde_json::to_string(&buyer).unwrap_or_default();
        for text in [&debug, &json] {
            assert!(!text.contains("jane"), "leaked: {text}");
            assert!(text.contains(REDACTED));
        }
        assert_eq!(buyer.email.expose_pii(), "jane.doe@example.com");
    }
}
