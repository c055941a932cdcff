//! Password policy and argon2id hashing.
//!
//! Policy (the company's: 12+ characters, complex), each rejection naming its rule:
//! length 12..=128 characters; at least 3 of lower, upper, digit, symbol (can be turned
//! off: NIST 800-63B and ASVS advise against composition rules); not a common password;
//! not derived from context (the email's name or domain, "stockade"); not one repeated
//! or sequential run; and, on top of those rules, a strength estimate: zxcvbn (Dropbox's
//! estimator: dictionaries, keyboard walks, dates, l33t, repeats) must score it at least
//! [`MIN_SCORE`] of 4, with the account's email and the product name as words an attacker
//! would try first. The rules name simple mistakes; the estimate catches guessable
//! passwords the rules let through (`Liverpool2024!`, `1qaz2wsx3edC`).
//!
//! Hashes are PHC strings `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` (OWASP's
//! minimum), 16-byte random salt, 32-byte output. `needs_rehash` tells the login path to
//! upgrade a hash made with weaker parameters.

use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::constant_time;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use zeroize::Zeroizing;

pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 128;
/// Lowest zxcvbn score accepted (3: "safely unguessable: moderate protection from an
/// offline slow-hash scenario", about 10^8 guesses or more).
pub const MIN_SCORE: u8 = 3;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for HashParams {
    /// OWASP Password Storage Cheat Sheet minimum: m=19 MiB, t=2, p=1.
    fn default() -> Self {
        HashParams {
            m_kib: 19_456,
            t: 2,
            p: 1,
        }
    }
}

/// Which rule a password broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("the password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("the password must be at most {MAX_LEN} characters")]
    TooLong,
    #[error("the password must mix at least 3 of: lower case, upper case, digits, symbols")]
    NotComplex,
    #[error("the password is too common: it appears in lists of leaked passwords")]
    Common,
    #[error("the password is derived from the account's email or the product name")]
    ContextDerived,
    #[error("the password is a repeated or sequential pattern")]
    Pattern,
    /// The estimator's own advice (fixed phrases; never the password or a part of it).
    #[error("the password is too easy to guess{0}")]
    Guessable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("this password hash is not an argon2id PHC string")]
    Malformed,
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the system random number generator failed")]
    Rng,
}

/// The password rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Require 3 of 4 character classes (the company's "complex"); see the module docs.
    pub require_mix: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy { require_mix: true }
    }
}

/// Passwords that appear at the top of every leaked-password list, and their usual
/// 12-character stretchings. Compared case-insensitively after removing digits and symbols
/// at the ends, so "Password123!" is caught through "password".
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "qwerty",
    "qwertyuiop",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "iloveyou",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "shadow",
    "master",
    "superman",
    "trustno1",
    "abc123",
    "starwars",
    "whatever",
    "freedom",
    "computer",
    "internet",
    "changeme",
    "secret",
    "login",
    "hello",
    "charlie",
    "michael",
    "jennifer",
    "jordan",
    "hunter",
    "ranger",
    "summer",
    "winter",
    "spring",
    "autumn",
    "asdfghjkl",
    "zxcvbnm",
    "qazwsx",
    "1q2w3e4r",
    "1qaz2wsx",
    "passwordpassword",
    "p@ssw0rd",
    "p@ssword",
    "welcome1",
    "default",
    "guest",
    "root",
    "toor",
    "test",
    "testing",
    "amazon",
    "tiktok",
    "ebay",
    "shopify",
    "seller",
    "company",
    "business",
    "database",
    "server",
];

fn core_word(password: &str) -> String {
    password
        .trim_matches(|c: char| !c.is_alphabetic())
        .to_lowercase()
        .replace(['@'], "a")
        .replace('0', "o")
        .replace(['1', '!'], "i")
        .replace('3', "e")
        .replace('$', "s")
}

fn is_pattern(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    if chars.iter().all(|c| *c == chars[0]) {
        return true;
    }
    // A short unit repeated ("abcabcabcabc") or one ascending/descending run.
    for unit in 1..=chars.len() / 3 {
        if chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|c| c == &chars[..unit]) {
            return true;
        }
    }
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1)
}

impl PasswordPolicy {
    /// Check a candidate password for an account with `email`.
    pub fn check(&self, password: &str, email: &str) -> Result<(), PolicyViolation> {
        let len = password.chars().count();
        if len < MIN_LEN {
            return Err(PolicyViolation::TooShort);
        }
        if len > MAX_LEN {
            return Err(PolicyViolation::TooLong);
        }
        if self.require_mix {
            let classes = [
                password.chars().any(|c| c.is_lowercase()),
                password.chars().any(|c| c.is_uppercase()),
                password.chars().any(|c| c.is_ascii_digit()),
                password.chars().any(|c| !c.is_alphanumeric()),
            ];
            if classes.iter().filter(|c| **c).count() < 3 {
                return Err(PolicyViolation::NotComplex);
            }
        }
        let lower = password.to_lowercase();
        let core = core_word(password);
        let squeezed: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
        if COMMON.iter().any(|w| {
            core == *w
                || squeezed == *w
                || core.trim_end_matches(|c: char| !c.is_alphabetic()) == *w
        }) {
            return Err(PolicyViolation::Common);
        }
        let email = email.to_lowercase();
        let (local, domain) = email.split_once('@').unwrap_or((&email, ""));
        let domain_word = domain.split('.').next().unwrap_or_default();
        let squeeze = |w: &str| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        };
        let mut context: Vec<String> =
            vec![squeeze(local), squeeze(domain_word), "stockade".into()];
        context.extend(
            local
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_owned),
        );
        context.extend(
            domain_word
                .split(|c: char| !c.is_alphanumeric())
                .map(str::to_owned),
        );
        if context
            .iter()
            .any(|w| w.len() >= 4 && (core.contains(w.as_str()) || squeezed.contains(w.as_str())))
        {
            return Err(PolicyViolation::ContextDerived);
        }
        if is_pattern(&lower) {
            return Err(PolicyViolation::Pattern);
        }
        check_strength(password, &email)
    }
}

/// The zxcvbn estimate, with the email (whole, its name and domain parts) and the product
/// name as user inputs. Two ways to fail, each explained in zxcvbn's own words (fixed
/// phrases, so the password is never echoed): a score below [`MIN_SCORE`]; or a password
/// that is mostly one repeat, sequence or keyboard walk (`Aaaaaaaaaaaa1!`,
/// `Abcdefghijkl1!`), which zxcvbn scores just over the line (10^8.0 guesses) because it
/// counts a run's length, although cracking rules try such runs first.
fn check_strength(password: &str, email: &str) -> Result<(), PolicyViolation> {
    use zxcvbn::feedback::{Suggestion, Warning};
    use zxcvbn::matching::patterns::MatchPattern;

    let mut inputs: Vec<&str> = vec!["stockade", email];
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    inputs.extend(local.split(|c: char| !c.is_alphanumeric()));
    inputs.extend(domain.split(|c: char| !c.is_alphanumeric()));
    inputs.retain(|w| w.len() >= 3);
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    let reason = |warning: Option<String>, tips: Vec<String>| {
        let mut reason = String::new();
        if let Some(w) = warning {
            reason.push_str(&format!(": {w}"));
        }
        if !tips.is_empty() {
            reason.push_str(&format!(" ({})", tips.join(" ")));
        }
        if reason.is_empty() {
            reason.push_str(": add another word or two that are not related to you");
        }
        PolicyViolation::Guessable(reason)
    };
    if u8::from(estimate.score()) < MIN_SCORE {
        let feedback = estimate.feedback();
        return Err(reason(
            feedback.and_then(|f| f.warning()).map(|w| w.to_string()),
            feedback.map_or_else(Vec::new, |f| {
                f.suggestions().iter().map(ToString::to_string).collect()
            }),
        ));
    }
    let half = password.chars().count().div_ceil(2);
    for m in estimate.sequence() {
        if m.j + 1 - m.i < half {
            continue;
        }
        let (warning, tip) = match &m.pattern {
            MatchPattern::Repeat(p) if p.base_token.chars().count() == 1 => (
                Warning::RepeatsLikeAaaAreEasyToGuess,
                Suggestion::AvoidRepeatedWordsAndCharacters,
            ),
            MatchPattern::Repeat(_) => (
                Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess,
                Suggestion::AvoidRepeatedWordsAndCharacters,
            ),
            MatchPattern::Sequence(_) => (
                Warning::SequencesLikeAbcAreEasyToGuess,
                Suggestion::AvoidSequences,
            ),
            MatchPattern::Spatial(p) if p.turns == 1 => (
                Warning::StraightRowsOfKeysAreEasyToGuess,
                Suggestion::UseALongerKeyboardPatternWithMoreTurns,
            ),
            MatchPattern::Spatial(_) => (
                Warning::ShortKeyboardPatternsAreEasyToGuess,
                Suggestion::UseALongerKeyboardPatternWithMoreTurns,
            ),
            _ => continue,
        };
        return Err(reason(Some(warning.to_string()), vec![tip.to_string()]));
    }
    Ok(())
}

fn argon2(params: HashParams) -> Result<Argon2<'static>, HashError> {
    let p = Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

/// Hash a password into a PHC string.
pub fn hash_password(password: &str, params: HashParams) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| HashError::Rng)?;
    let mut out = Zeroizing::new([0u8; 32]);
    argon2(params)?
        .hash_password_into(password.as_bytes(), &salt, &mut *out)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_kib,
        params.t,
        params.p,
        B64.encode(salt),
        B64.encode(*out)
    ))
}

struct Phc {
    params: HashParams,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_phc(phc: &str) -> Result<Phc, HashError> {
    let parts: Vec<&str> = phc.split('$').collect();
    let ["", "argon2id", "v=19", params, salt, hash] = parts.as_slice() else {
        return Err(HashError::Malformed);
    };
    let mut p = HashParams {
        m_kib: 0,
        t: 0,
        p: 0,
    };
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=').ok_or(HashError::Malformed)?;
        let v: u32 = v.parse().map_err(|_| HashError::Malformed)?;
        match k {
            "m" => p.m_kib = v,
            "t" => p.t = v,
            "p" => p.p = v,
            _ => return Err(HashError::Malformed),
        }
    }
    let salt = B64.decode(salt).map_err(|_| HashError::Malformed)?;
    let hash = B64.decode(hash).map_err(|_| HashError::Malformed)?;
    if salt.len() < 8 || hash.len() < 16 {
        return Err(HashError::Malformed);
    }
    Ok(Phc {
        params: p,
        salt,
        hash,
    })
}

/// Verify a password against a PHC string, in constant time over the hash.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, HashError> {
    let parsed = parse_phc(phc)?;
    let mut out = Zeroizing::new(vec![0u8; parsed.hash.len()]);
    let p = Params::new(
        parsed.params.m_kib,
        parsed.params.t,
        parsed.params.p,
        Some(parsed.hash.len()),
    )
    .map_err(|e| HashError::Argon2(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password.as_bytes(), &parsed.salt, &mut out)
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(constant_time::verify_slices_are_equal(&out, &parsed.hash).is_ok())
}

/// Whether a stored hash used weaker parameters than `current` (rehash on next login).
pub fn needs_rehash(phc: &str, current: HashParams) -> bool {
    match parse_phc(phc) {
        Ok(p) => p.params.m_kib < current.m_kib || p.params.t < current.t || p.params.p < current.p,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "li.wei@acme-trading.com";

    #[test]
    fn every_rule_names_itself() {
        let policy = PasswordPolicy::default();
        let cases = [
            ("Sh0rt!pass", PolicyViolation::TooShort),
            (&*"Aa1!".repeat(33), PolicyViolation::TooLong),
            ("alllowercaseletters", PolicyViolation::NotComplex),
            ("Password123!", PolicyViolation::Common),
            ("P@ssw0rd2026!", PolicyViolation::Common),
            ("Qwertyuiop12", PolicyViolation::Common),
            ("Li.Wei#2026xyz", PolicyViolation::ContextDerived),
            ("AcmeTrading#77", PolicyViolation::ContextDerived),
            ("Stockade-Admin-1", PolicyViolation::ContextDerived),
        ];
        for (pw, want) in cases {
            assert_eq!(policy.check(pw, EMAIL), Err(want.clone()), "{pw}");
            assert!(!want.to_string().is_empty());
        }
        assert_eq!(
            PasswordPolicy { require_mix: false }.check("aaaaaaaaaaaaa", EMAIL),
            Err(PolicyViolation::Pattern)
        );
        assert_eq!(
            PasswordPolicy { require_mix: false }.check("abcdefghijklmn", EMAIL),
            Err(PolicyViolation::Pattern)
        );
        assert_eq!(
            PasswordPolicy { require_mix: false }.check("xyzxyzxyzxyz", EMAIL),
            Err(PolicyViolation::Pattern)
        );
    }

    /// The examples: each met the old rules, each is refused now, with zxcvbn's
    /// reason and without the password in the message.
    #[test]
    fn guessable_passwords_that_met_the_old_rules_are_refused_with_a_reason() {
        let policy = PasswordPolicy::default();
        for pw in [
            "Aaaaaaaaaaaa1!",
            "Abcdefghijkl1!",
            "Aa123456789!",
            "1qaz2wsx3edC",
            "Liverpool2024!",
        ] {
            let err = policy.check(pw, EMAIL).expect_err(pw);
            let msg = err.to_string();
            assert!(!msg.contains(pw), "{msg}");
            assert!(msg.len() > "the password is too ".len() + 12, "{pw}: {msg}");
            let PolicyViolation::Guessable(reason) = &err else {
                panic!("{pw}: {err:?}");
            };
            assert!(
                reason.starts_with(": ") && reason.ends_with(".)"),
                "{pw}: {reason}"
            );
        }
        // Context the estimator is given: the email's parts and the product name.
        assert!(matches!(
            policy.check("Zhang!Stockade7", "zhang@example.com"),
            Err(PolicyViolation::ContextDerived | PolicyViolation::Guessable(_))
        ));
    }

    #[test]
    fn good_passwords_pass_and_mix_can_be_turned_off() {
        let policy = PasswordPolicy::default();
        for pw in [
            "Tangerine-Kettle-42",
            "rain on 7 Copper roofs",
            "Vx9#mQ2!pL4z",
        ] {
            assert_eq!(policy.check(pw, EMAIL), Ok(()), "{pw}");
        }
        assert_eq!(
            policy.check("correct horse battery staple", EMAIL),
            Err(PolicyViolation::NotComplex)
        );
        assert_eq!(
            PasswordPolicy { require_mix: false }.check("correct horse battery staple", EMAIL),
            Ok(())
        );
    }

    #[test]
    fn hashes_verify_and_report_weaker_parameters() {
        let cheap = HashParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        };
        let phc = hash_password("Tangerine-Kettle-42", cheap).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(verify_password("Tangerine-Kettle-42", &phc).unwrap());
        assert!(!verify_password("Tangerine-Kettle-43", &phc).unwrap());
        assert_ne!(
            phc,
            hash_password("Tangerine-Kettle-42", cheap).unwrap(),
            "salted"
        );
        assert!(needs_rehash(&phc, HashParams::default()));
        assert!(!needs_rehash(&phc, cheap));
        assert!(verify_password("x", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA").is_err());
        assert!(verify_password("x", "garbage").is_err());
    }

    #[test]
    fn default_parameters_are_owasp_and_interoperable() {
        let phc = hash_password("Tangerine-Kettle-42", HashParams::default()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("Tangerine-Kettle-42", &phc).unwrap());
    }
}
