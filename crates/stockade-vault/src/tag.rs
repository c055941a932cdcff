//! Keyed tags for PII: the only form in which a PII value may appear in an audit row.
//!
//! `tag = "hmac-sha256:" + hex(HMAC-SHA256(tag_key, value))`, the format HashiCorp Vault
//! uses in its audit devices. The same value always gives the same tag within one
//! installation, so an auditor can correlate ("the same buyer email in both rows") and
//! can check a known value, but cannot read one. The tag key is derived from the system
//! data key, so it stays stable across master key rotations and is never stored.

use std::fmt;

use aws_lc_rs::hmac;
use stockade_core::Pii;

/// A PII value's tag. Displays as `hmac-sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PiiTag(String);

impl PiiTag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PiiTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// HMAC-SHA256 tag of `value` under `key`, in Vault's `hmac-sha256:` format.
pub fn hmac_tag(key: &hmac::Key, value: &[u8]) -> PiiTag {
    PiiTag(format!(
        "hmac-sha256:{}",
        hex::encode(hmac::sign(key, value).as_ref())
    ))
}

/// Tag a PII string.
pub fn tag_pii(key: &hmac::Key, value: &Pii<String>) -> PiiTag {
    hmac_tag(key, value.expose_pii().as_bytes())
}

/// Derive the tag key from the system data key's raw bytes.
pub(crate) fn derive_tag_key(system_key: &[u8; 32]) -> hmac::Key {
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, system_key),
        b"stockade pii tag key 1",
    );
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors from HashiCorp Vault's `audit/hashstructure_test.go` (salt "foo").
    #[test]
    fn matches_vault_golden_vectors() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"foo");
        assert_eq!(
            hmac_tag(&key, b"foo").as_str(),
            "hmac-sha256:08ba357e274f528065766c770a639abf6809b39ccfd37c2a3157c7f51954da0a"
        );
        assert_eq!(
            hmac_tag(&key, b"bar").as_str(),
            "hmac-sha256:f9320baf0249169e73850cd6156ded0106e2bb6ad8cab01b7bbbebe6d1065317"
        );
    }

    #[test]
    fn tags_do_not_contain_the_value() {
        let key = derive_tag_key(&[3u8; 32]);
        let email = Pii::new("jane.doe@example.com".to_owned());
        let tag = tag_pii(&key, &email);
        assert!(!tag.as_str().contains("jane"));
        assert_eq!(
            tag,
            tag_pii(&key, &Pii::new("jane.doe@example.com".to_owned()))
        );
        assert_ne!(tag, tag_pii(&derive_tag_key(&[4u8; 32]), &email));
    }
}
