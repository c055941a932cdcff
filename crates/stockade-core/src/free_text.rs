//! Free text an operator types that ends up in the audit log or a report (a reveal's
//! reason, an incident's title, notes and root cause): cleaned the same way everywhere
//! and refused when it is shaped like personal data.
//!
//! Cleaning removes control and invisible characters (zero-width, direction overrides:
//! they hide or reorder text in a log), makes every run of white space one space and
//! trims. [`looks_like_pii`] spots an email address (`x@y.z`) or a phone number (nine or
//! more digits in one run of digits, spaces, dots, dashes, parentheses and `+`). A
//! refusal never repeats the text.

/// Why a text was refused (never the text itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeTextProblem {
    TooShort { min: usize },
    TooLong { max: usize },
    LooksLikePii,
}

impl std::fmt::Display for FreeTextProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreeTextProblem::TooShort { min } => write!(f, "it needs at least {min} characters"),
            FreeTextProblem::TooLong { max } => write!(f, "it is longer than {max} characters"),
            FreeTextProblem::LooksLikePii => f.write_str(
                "it looks like personal data (an email address or a phone number); describe the person by role or by an order id instead",
            ),
        }
    }
}

/// `raw` cleaned, between `min` and `max` characters, and not shaped like personal data.
pub fn clean(raw: &str, min: usize, max: usize) -> Result<String, FreeTextProblem> {
    let out = normalize(raw, min, max)?;
    if looks_like_pii(&out) {
        return Err(FreeTextProblem::LooksLikePii);
    }
    Ok(out)
}

/// `raw` cleaned and between `min` and `max` characters (no check of its content: for a
/// caller that checks for something else first, then [`looks_like_pii`]).
pub fn normalize(raw: &str, min: usize, max: usize) -> Result<String, FreeTextProblem> {
    // Far too long: refused before any work proportional to it.
    if raw.chars().count() > max.saturating_mul(4) {
        return Err(FreeTextProblem::TooLong { max });
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
        return Err(FreeTextProblem::TooShort { min });
    }
    if n > max {
        return Err(FreeTextProblem::TooLong { max });
    }
    Ok(out)
}

/// Zero-width and direction-override characters.
pub fn is_invisible(ch: char) -> bool {
    matches!(ch, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// An email address or a phone number somewhere in `s`.
pub fn looks_like_pii(s: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaned_bounded_and_never_personal_data() {
        assert_eq!(
            clean("  key\u{0007} leaked:\n\tsupport \u{200B}  ticket ", 4, 100).unwrap(),
            "key leaked: support ticket"
        );
        assert_eq!(
            clean(" ab ", 4, 100),
            Err(FreeTextProblem::TooShort { min: 4 })
        );
        assert_eq!(
            clean(&"x".repeat(101), 4, 100),
            Err(FreeTextProblem::TooLong { max: 100 })
        );
        assert_eq!(
            clean(&"x".repeat(10_000), 4, 100),
            Err(FreeTextProblem::TooLong { max: 100 })
        );
        for pii in [
            "mail a.b@example.com now",
            "call +86 138 0013 8000",
            "(555) 123-4567 ext",
        ] {
            assert_eq!(
                clean(pii, 4, 100),
                Err(FreeTextProblem::LooksLikePii),
                "{pii}"
            );
        }
        // Order numbers and dates are not phone numbers; an @ without a domain is no email.
        for ok in [
            "order 12345678 refunded",
            "since 2026-01-31",
            "ping @ops team",
        ] {
            assert!(clean(ok, 4, 100).is_ok(), "{ok}");
        }
        assert!(!FreeTextProblem::LooksLikePii.to_string().contains('@'));
    }
}
