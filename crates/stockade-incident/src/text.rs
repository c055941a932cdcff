//! Free text an operator types (a title, a note, a root cause, a notice's note): it ends
//! up in the audit log, the timeline and the report sent to marketplaces, so it must not
//! carry personal data or secrets.
//!
//! The rules are the console's for a reveal reason: control and invisible characters
//! removed, runs of white space made one space, trimmed, bounded; refused when it looks
//! like an email address or a phone number. On top of those, text that looks like a
//! secret (known token prefixes, a Stockade API key, a JWT, a private key, a long
//! high-entropy string) is refused. A refusal never repeats the text.

use stockade_core::free_text::{self, FreeTextProblem};

/// Why a text was refused (never the text itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    TooShort { min: usize },
    TooLong { max: usize },
    LooksLikePii,
    LooksLikeSecret(&'static str),
}

impl std::fmt::Display for TextProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextProblem::TooShort { min } => write!(f, "it needs at least {min} characters"),
            TextProblem::TooLong { max } => write!(f, "it is longer than {max} characters"),
            TextProblem::LooksLikePii => FreeTextProblem::LooksLikePii.fmt(f),
            TextProblem::LooksLikeSecret(what) => write!(
                f,
                "it looks like a secret ({what}); name the credential or key instead of pasting it"
            ),
        }
    }
}

/// Bounds of each kind of text.
pub const TITLE: (usize, usize) = (4, 120);
pub const NOTE: (usize, usize) = (4, 1000);
pub const NOTICE_NOTE: (usize, usize) = (4, 500);

/// `raw` as it is stored, or why it is refused.
pub fn clean(raw: &str, (min, max): (usize, usize)) -> Result<String, TextProblem> {
    let out = free_text::normalize(raw, min, max).map_err(|p| match p {
        FreeTextProblem::TooShort { min } => TextProblem::TooShort { min },
        FreeTextProblem::TooLong { max } => TextProblem::TooLong { max },
        FreeTextProblem::LooksLikePii => TextProblem::LooksLikePii,
    })?;
    // A secret first: its digits would otherwise pass for a phone number.
    if let Some(what) = looks_like_secret(&out) {
        return Err(TextProblem::LooksLikeSecret(what));
    }
    if free_text::looks_like_pii(&out) {
        return Err(TextProblem::LooksLikePii);
    }
    Ok(out)
}

fn looks_like_secret(s: &str) -> Option<&'static str> {
    // A Stockade API key: `stk_<env>_<id>_<secret>`.
    if s.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .any(|w| w.starts_with("stk_") && w.len() > 20)
    {
        return Some("a Stockade API key");
    }
    stockade_workflows::secrets::looks_like_secret(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cleaned_bounded_and_never_personal_data_or_secrets() {
        assert_eq!(
            clean("  API key\u{0007} leaked:\n\tsupport   ticket ", NOTE).unwrap(),
            "API key leaked: support ticket"
        );
        assert_eq!(clean("ab", TITLE), Err(TextProblem::TooShort { min: 4 }));
        assert_eq!(
            clean(&"x".repeat(121), TITLE),
            Err(TextProblem::TooLong { max: 120 })
        );
        assert_eq!(
            clean("mail from buyer a.b@example.com", NOTE),
            Err(TextProblem::LooksLikePii)
        );
        assert_eq!(
            clean("called +86 138 0013 8000 back", NOTE),
            Err(TextProblem::LooksLikePii)
        );
        assert!(matches!(
            clean("found ghp_0123456789abcdefghij in a log", NOTE),
            Err(TextProblem::LooksLikeSecret(_))
        ));
        assert!(matches!(
            clean(
                "key stk_prod_0123456789abcdef_0123456789abcdef0123456789abcdef leaked",
                NOTE
            ),
            Err(TextProblem::LooksLikeSecret(_))
        ));
        assert!(matches!(
            clean("token 9fK2mQ7xL1pR8sT4vW6yZ0aB3cD5eF7gH9jK", NOTE),
            Err(TextProblem::LooksLikeSecret(_))
        ));
        // Order ids and short numbers stay.
        assert!(clean("order 12345678 shipped twice", NOTE).is_ok());
        // The refusal never repeats the text.
        let e = clean("x a.b@example.com", NOTE).unwrap_err().to_string();
        assert!(!e.contains("example"));
    }
}
