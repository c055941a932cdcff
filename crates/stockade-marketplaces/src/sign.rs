//! Pure signing and verification: TikTok Shop request signing and webhook HMAC, the eBay
//! endpoint challenge, and eBay's ECDSA notification signatures. No I/O.

use aws_lc_rs::{digest, hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::json::compact_json;
use crate::util::constant_time_eq;

/// Query keys TikTok leaves out of the string to sign.
const TIKTOK_UNSIGNED_KEYS: [&str; 3] = ["sign", "access_token", "x-tts-access-token"];

/// TikTok Shop request signature (reference §2.3): every query parameter except `sign`
/// and `access_token`, sorted by key, concatenated as `{key}{value}` after the path; the
/// raw body appended when there is one (pass `None` for GET and multipart requests);
/// wrapped in the app secret on both sides; lowercase hex HMAC-SHA256 keyed by the app
/// secret.
pub fn tiktok_sign(
    app_secret: &str,
    path: &str,
    params: &[(&str, &str)],
    body: Option<&[u8]>,
) -> String {
    let mut sorted: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(k, _)| !TIKTOK_UNSIGNED_KEYS.contains(k))
        .collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut msg = Vec::with_capacity(256);
    msg.extend_from_slice(app_secret.as_bytes());
    msg.extend_from_slice(path.as_bytes());
    for (k, v) in sorted {
        msg.extend_from_slice(k.as_bytes());
        msg.extend_from_slice(v.as_bytes());
    }
    if let Some(body) = body {
        msg.extend_from_slice(body);
    }
    msg.extend_from_slice(app_secret.as_bytes());
    hmac_sha256_hex(app_secret.as_bytes(), &msg)
}

/// The `Authorization` header TikTok puts on a webhook: lowercase hex
/// HMAC-SHA256(key = app secret, message = app key ‖ raw body).
pub fn tiktok_webhook_signature(app_key: &str, app_secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(app_key.as_bytes());
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

/// Check a TikTok webhook `Authorization` header against the raw body, in constant time.
/// Surrounding whitespace and hex case are ignored.
pub fn tiktok_webhook_verify(app_key: &str, app_secret: &str, body: &[u8], header: &str) -> bool {
    let expected = tiktok_webhook_signature(app_key, app_secret, body);
    let given = header.trim().to_ascii_lowercase();
    constant_time_eq(expected.as_bytes(), given.as_bytes())
}

fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::encode(hmac::sign(&key, msg).as_ref())
}

/// eBay endpoint validation: lowercase hex SHA-256(challenge code ‖ verification token ‖
/// endpoint URL), the endpoint byte-identical to the registered one.
pub fn ebay_challenge_response(
    challenge_code: &str,
    verification_token: &str,
    endpoint: &str,
) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(challenge_code.as_bytes());
    ctx.update(verification_token.as_bytes());
    ctx.update(endpoint.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// The JSON body answering an eBay challenge.
pub fn ebay_challenge_body(
    challenge_code: &str,
    verification_token: &str,
    endpoint: &str,
) -> String {
    serde_json::json!({
        "challengeResponse": ebay_challenge_response(challenge_code, verification_token, endpoint)
    })
    .to_string()
}

/// Why an eBay signature could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFormatError {
    #[error("the signature header is not base64")]
    HeaderNotBase64,
    #[error("the signature header is not the expected JSON object")]
    HeaderNotJson,
    #[error("the signature in the header is not base64")]
    SignatureNotBase64,
    #[error("unsupported signature algorithm {0:?} (expected ecdsa)")]
    UnsupportedAlgorithm(String),
    #[error("unsupported digest {0:?} (expected SHA1 or SHA256)")]
    UnsupportedDigest(String),
    #[error("the public key is not a P-256 SubjectPublicKeyInfo")]
    BadPublicKey,
}

/// The digest an eBay signature uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EbayDigest {
    Sha1,
    Sha256,
}

impl EbayDigest {
    /// Parse eBay's digest name (`SHA1`, `SHA-256`, case-insensitive).
    pub fn parse(name: &str) -> Result<Self, SignatureFormatError> {
        match name.trim().to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(EbayDigest::Sha1),
            "SHA256" => Ok(EbayDigest::Sha256),
            _ => Err(SignatureFormatError::UnsupportedDigest(truncate(name, 32))),
        }
    }
}

/// The decoded `X-EBAY-SIGNATURE` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbaySignatureHeader {
    /// The key id to fetch the public key with.
    pub kid: String,
    /// The DER-encoded ECDSA signature.
    pub signature: Vec<u8>,
    pub digest: EbayDigest,
}

#[derive(Deserialize)]
struct RawSignatureHeader {
    #[serde(default)]
    alg: Option<String>,
    kid: String,
    signature: String,
    #[serde(default)]
    digest: Option<String>,
}

/// Decode `X-EBAY-SIGNATURE`: base64 of `{"alg":"ecdsa","kid":…,"signature":…,"digest":"SHA1"}`.
pub fn parse_ebay_signature_header(
    header: &str,
) -> Result<EbaySignatureHeader, SignatureFormatError> {
    let json = B64
        .decode(header.trim())
        .map_err(|_| SignatureFormatError::HeaderNotBase64)?;
    let raw: RawSignatureHeader =
        serde_json::from_slice(&json).map_err(|_| SignatureFormatError::HeaderNotJson)?;
    if let Some(alg) = &raw.alg
        && !alg.eq_ignore_ascii_case("ecdsa")
    {
        return Err(SignatureFormatError::UnsupportedAlgorithm(truncate(
            alg, 32,
        )));
    }
    let digest = EbayDigest::parse(raw.digest.as_deref().unwrap_or("SHA1"))?;
    let signature = B64
        .decode(raw.signature.trim())
        .map_err(|_| SignatureFormatError::SignatureNotBase64)?;
    if raw.kid.is_empty() || raw.kid.len() > 200 {
        return Err(SignatureFormatError::HeaderNotJson);
    }
    Ok(EbaySignatureHeader {
        kid: raw.kid,
        signature,
        digest,
    })
}

/// The fixed DER prefix of a P-256 SubjectPublicKeyInfo with an uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An eBay notification public key: the uncompressed P-256 point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbayPublicKey {
    point: Vec<u8>,
}

impl EbayPublicKey {
    /// From SubjectPublicKeyInfo DER. Only P-256 with an uncompressed point is accepted.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, SignatureFormatError> {
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .ok_or(SignatureFormatError::BadPublicKey)?;
        if point.len() != 65 || point[0] != 0x04 {
            return Err(SignatureFormatError::BadPublicKey);
        }
        Ok(EbayPublicKey {
            point: point.to_vec(),
        })
    }

    /// From eBay's `key` field: a PEM block (`-----BEGIN PUBLIC KEY-----…`, with or without
    /// line breaks) or bare base64 of the DER.
    pub fn from_pem(text: &str) -> Result<Self, SignatureFormatError> {
        let b64: String = text
            .replace("-----BEGIN PUBLIC KEY-----", "")
            .replace("-----END PUBLIC KEY-----", "")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = B64
            .decode(b64)
            .map_err(|_| SignatureFormatError::BadPublicKey)?;
        Self::from_spki_der(&der)
    }

    /// The uncompressed point (65 bytes, leading 0x04).
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Verify a DER ECDSA signature over exactly `message`.
    pub fn verify_exact(&self, digest: EbayDigest, sig_der: &[u8], message: &[u8]) -> bool {
        let alg: &'static signature::EcdsaVerificationAlgorithm = match digest {
            EbayDigest::Sha1 => &signature::ECDSA_P256_SHA1_ASN1,
            EbayDigest::Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
        };
        signature::UnparsedPublicKey::new(alg, &self.point)
            .verify(message, sig_der)
            .is_ok()
    }

    /// Verify an eBay notification: over the raw body first, then over the body with
    /// insignificant JSON whitespace removed (the compact form eBay signs).
    pub fn verify_notification(&self, digest: EbayDigest, sig_der: &[u8], body: &[u8]) -> bool {
        if self.verify_exact(digest, sig_der, body) {
            return true;
        }
        match compact_json(body) {
            Some(compact) if compact != body => self.verify_exact(digest, sig_der, &compact),
            _ => false,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktok_library_vector() {
        assert_eq!(
            tiktok_sign("app_secret", "/test-api", &[("foo", "bar")], None),
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
        );
        // `sign` and `access_token` never take part.
        assert_eq!(
            tiktok_sign(
                "app_secret",
                "/test-api",
                &[("sign", "x"), ("foo", "bar"), ("access_token", "t")],
                Some(b"")
            ),
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(EbayPublicKey::from_spki_der(&[]).is_err());
        assert!(
            EbayPublicKey::from_pem("-----BEGIN PUBLIC KEY-----AAAA-----END PUBLIC KEY-----")
                .is_err()
        );
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&[0x02; 65]);
        assert!(EbayPublicKey::from_spki_der(&der).is_err());
    }
}
