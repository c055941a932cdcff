//! TOTP, RFC 6238 (SHA-1, 6 digits, 30-second steps), as authenticator apps implement it.
//!
//! Invariants:
//! - A code is accepted only for time steps T-1, T or T+1 (RFC 6238 §5.2: at most one
//!   step of network delay) and only when its step is strictly after the last accepted
//!   one, so a code can never be used twice. Callers persist the returned step.
//! - Codes are compared in constant time.
//! - Secrets are 160 random bits, wiped on drop, and never printed.

use aws_lc_rs::{constant_time, hmac};
use zeroize::Zeroizing;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;

/// A TOTP shared secret.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([secret])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the code is not 6 digits")]
    Malformed,
    #[error("the code is wrong or expired")]
    Wrong,
    #[error("the code was already used")]
    Replayed,
    #[error("the secret is not valid base32")]
    BadSecret,
    #[error("the system random number generator failed")]
    Rng,
}

impl TotpSecret {
    /// A new 160-bit secret from the system RNG.
    pub fn generate() -> Result<Self, TotpError> {
        let mut bytes = Zeroizing::new(vec![0u8; 20]);
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TotpError::Rng)?;
        Ok(TotpSecret(bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        TotpSecret(Zeroizing::new(bytes.to_vec()))
    }

    /// Parse base32 (RFC 4648, case-insensitive, padding and spaces ignored).
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        base32_decode(text)
            .map(|b| TotpSecret(Zeroizing::new(b)))
            .ok_or(TotpError::BadSecret)
    }

    /// Base32 without padding, as the `otpauth://` URI carries it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32_encode(&self.0))
    }

    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The code for a time step.
    pub fn code_at_step(&self, step: i64) -> String {
        format!(
            "{:0width$}",
            hotp(&self.0, step as u64, DIGITS),
            width = DIGITS as usize
        )
    }

    /// The code for a Unix time.
    pub fn code_at(&self, unix: i64) -> String {
        self.code_at_step(unix.div_euclid(STEP_SECONDS))
    }

    /// Check `code` at `unix` time. `last_step` is the step of the last accepted code.
    /// Returns the matched step, which the caller must store as the new `last_step`.
    pub fn verify(&self, code: &str, unix: i64, last_step: Option<i64>) -> Result<i64, TotpError> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TotpError::Malformed);
        }
        let now = unix.div_euclid(STEP_SECONDS);
        let mut matched = None;
        for step in [now - 1, now, now + 1] {
            let expected = self.code_at_step(step);
            // Check all three steps whatever matches, so timing does not tell which one did.
            if constant_time::verify_slices_are_equal(expected.as_bytes(), code.as_bytes()).is_ok()
            {
                matched = Some(step);
            }
        }
        let step = matched.ok_or(TotpError::Wrong)?;
        if last_step.is_some_and(|last| step <= last) {
            return Err(TotpError::Replayed);
        }
        Ok(step)
    }

    /// The `otpauth://` URI an authenticator app scans.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        let issuer_enc = stockade_core::codec::percent_encode_keep_at(issuer);
        Zeroizing::new(format!(
            "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            stockade_core::codec::percent_encode_keep_at(account),
            &*self.to_base32()
        ))
    }
}

/// HOTP (RFC 4226): HMAC-SHA1 over the counter, dynamic truncation, modulo 10^digits.
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key),
        &counter.to_be_bytes(),
    );
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = (u32::from(mac[offset]) & 0x7f) << 24
        | u32::from(mac[offset + 1]) << 16
        | u32::from(mac[offset + 2]) << 8
        | u32::from(mac[offset + 3]);
    bin % 10u32.pow(digits)
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    for chunk in data.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from(buf[0]) << 32
            | u64::from(buf[1]) << 24
            | u64::from(buf[2]) << 16
            | u64::from(buf[3]) << 8
            | u64::from(buf[4]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(char::from(B32[((n >> (35 - 5 * i)) & 31) as usize]));
        }
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u64, 0u32);
    for c in text.bytes().filter(|c| !matches!(c, b'=' | b' ' | b'-')) {
        let v = B32.iter().position(|b| *b == c.to_ascii_uppercase())? as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(SEED, counter as u64, 6), *want);
        }
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        let cases = [
            (59, 94287082),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ];
        let secret = TotpSecret::from_bytes(SEED);
        for (t, want8) in cases {
            assert_eq!(hotp(SEED, (t / 30) as u64, 8), want8, "t={t}");
            assert_eq!(
                secret.code_at(t),
                format!("{:06}", want8 % 1_000_000),
                "t={t}"
            );
        }
    }

    #[test]
    fn base32_matches_the_reference_seed() {
        let s = TotpSecret::from_bytes(SEED);
        assert_eq!(&*s.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let back = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(back.expose_bytes(), SEED);
        assert!(TotpSecret::from_base32("not base32!").is_err());
    }

    #[test]
    fn window_is_one_step_and_codes_are_single_use() {
        let s = TotpSecret::from_bytes(SEED);
        let now = 1_111_111_111;
        let code = s.code_at(now);
        let step = s.verify(&code, now, None).unwrap();
        assert_eq!(s.verify(&code, now, Some(step)), Err(TotpError::Replayed));
        assert!(s.verify(&s.code_at(now - 30), now, None).is_ok());
        assert!(s.verify(&s.code_at(now + 30), now, None).is_ok());
        assert_eq!(
            s.verify(&s.code_at(now - 60), now, None),
            Err(TotpError::Wrong)
        );
        assert_eq!(
            s.verify(&s.code_at(now + 60), now, None),
            Err(TotpError::Wrong)
        );
        // An older code after a newer one was used is refused too.
        assert_eq!(
            s.verify(&s.code_at(now - 30), now, Some(step)),
            Err(TotpError::Replayed)
        );
        assert_eq!(s.verify("12345", now, None), Err(TotpError::Malformed));
        assert_eq!(s.verify("12a456", now, None), Err(TotpError::Malformed));
    }

    #[test]
    fn otpauth_uri_has_the_standard_form_and_debug_hides_the_secret() {
        let s = TotpSecret::from_bytes(SEED);
        let uri = s.otpauth_uri("Stockade prod", "ops@example.com");
        assert_eq!(
            &*uri,
            "otpauth://totp/Stockade%20prod:ops@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Stockade%20prod&algorithm=SHA1&digits=6&period=30"
        );
        assert!(!format!("{s:?}").contains("GEZD"));
    }
}
