//! The console language each user chose (`users.language`, migration 0015): stored on
//! the server so the choice follows the user to every browser, and read with the
//! session ([`super::SessionView::language`]).
//!
//! Invariants: only a short language code is stored (the server passes one it knows;
//! anything else is refused here too, writing nothing); `None` clears the choice. Every
//! change is one audited commit (`user.language`), by the user themself.

use stockade_core::{Actor, time::now_ms};
use stockade_store::{AuditDetails, AuditEntry, Change, Expect, Mutation, sql_params};

use super::{Access, AccessError, Result};

/// Whether `code` looks like a language code (`en`, `zh`, `zh-CN`): ASCII letters and
/// hyphens, 2 to 10 characters.
pub fn valid_language_code(code: &str) -> bool {
    (2..=10).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_alphabetic())
        && code.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
}

impl Access {
    /// Store (or clear, with `None`) the console language of user `user_id`. An unchanged
    /// choice writes nothing. Returns whether it changed.
    pub async fn set_language(&self, user_id: &str, language: Option<&str>) -> Result<bool> {
        if let Some(code) = language
            && !valid_language_code(code)
        {
            return Err(AccessError::BadLanguage);
        }
        if self.language(user_id).await?.as_deref() == language {
            return Ok(false);
        }
        let change = Change::new(
            Mutation::Sql {
                statement: "UPDATE users SET language = $2, updated_at_ms = $3 WHERE id = $1",
                params: sql_params![user_id.to_owned(), language.map(str::to_owned), now_ms()],
                expect: Expect::One("user"),
            },
            AuditEntry::new(
                "user.language",
                format!("user:{user_id}"),
                AuditDetails::new().str("language", language.unwrap_or("")),
            ),
        );
        self.store
            .commit(&Actor::User(user_id.to_owned()), vec![change])
            .await?;
        Ok(true)
    }

    /// The console language user `user_id` chose, if any.
    pub async fn language(&self, user_id: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = self
            .store
            .query_one_as(
                "SELECT language FROM users WHERE id = $1",
                sql_params![user_id.to_owned()],
            )
            .await?;
        Ok(row.and_then(|(l,)| l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_language_codes_are_stored() {
        for ok in ["en", "zh", "zh-CN"] {
            assert!(valid_language_code(ok), "{ok}");
        }
        for bad in ["", "e", "-en", "en_US", "zh-Hans-CN-x", "<b>", "en;"] {
            assert!(!valid_language_code(bad), "{bad}");
        }
    }
}
