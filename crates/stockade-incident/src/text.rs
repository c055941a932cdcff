//! Free text an operator types (a title, a note, a root cause, a notice's note): it ends
//! up in the audit log, the timeline and the report sent to marketplaces, so it must not
//! carry personal data or secrets.
//!
//! The rules are the console's for a reveal reason: control and invisible characters
//! removed, runs of white space made one space, trimmed, bounded; refused when it looks
//! like an email address or a phone number. On top of those, text that looks like a
//! secret (known token prefixes, a Stockade API key, a JWT, a private key, a long
//! high-entropy string) is refused. A refusal never repeats the text.

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
            TextProblem::LooksLikePii => f.write_str(
                "it looks like personal data (an email address or a phone number); describe the person by role or by an order id instead",
            ),
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
    if raw.chars().count() > max * 4 {
        return Err(TextProblem::TooLong { max });
    }
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        let ch = if ch.is_whitespace() { ' ' } else { ch };
        if ch.is_control() || is_invisible(ch) || (ch == ' ' && out.ends_with(' ')) {
            continue;
        }
        out.push(ch);
    }
    let out = out.trim().to_owned();
    let n = out.chars().count();
    if n < min {
        return Err(TextProblem::TooShort { min });
    }
    if n > max {
        return Err(TextProblem::TooLong { max });
    }
    if let Some(what) = looks_like_secret(&out) {
        return Err(TextProblem::LooksLikeSecret(what));
    }
    if looks_like_pii(&out) {
        return Err(TextProblem::LooksLikePii);
    }
    Ok(out)
}

/// Zero-width and direction-override characters (they hide or reorder text in a log).
fn is_invisible(ch: char) -> bool {
    matches!(ch, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// An email address (`x@y.z`) or a phone number (nine or more digits in one run of
/// digits, spaces, dots, dashes, parentheses and a leading `+`).
fn looks_like_pii(s: &str) -> bool {
    let email = s.split(' ').any(|w| {
        w.split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.') && !b.ends_with('.'))
    });
    let mut digits = 0;
    let mut phone = false;
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            digits += 1;
            phone |= digits >= 9;
        } else if !matches!(ch, ' ' | '-' | '.' | '(' | ')' | '+') {
            digits = 0;
        }
    }
    email || phone
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
