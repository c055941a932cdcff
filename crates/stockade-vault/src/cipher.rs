//! AES-256-GCM field encryption and data-key wrapping.
//!
//! Field ciphertext, format version 1:
//! ```text
//! 0x01 | key_id (i64 BE, 8) | nonce (12) | ciphertext | tag (16)
//! ```
//! Associated data (not stored, rebuilt on decrypt), each part length-prefixed:
//! `"stockade-field-1"`, environment, table, column, row id, key_id. A ciphertext copied
//! to another row, column, table or environment therefore fails to authenticate, even
//! under the same key.
//!
//! Wrapped data key, format version 1:
//! ```text
//! 0x01 | master_version (u32 BE, 4) | nonce (12) | wrapped key (32) | tag (16)
//! ```
//! with associated data `"stockade-dek-1"`, environment, owner, key id, master version.
//!
//! Nonces are 96 random bits from the system RNG, drawn in blocks to amortise the RNG
//! call. With random nonces a key must not seal more than 2^32 messages; data keys are
//! per owner and far below that.

use std::cell::RefCell;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{Result, VaultError};

pub const FIELD_FORMAT_V1: u8 = 1;
pub const WRAP_FORMAT_V1: u8 = 1;
const TAG_LEN: usize = 16;
const FIELD_HEADER: usize = 1 + 8 + NONCE_LEN;
const WRAP_HEADER: usize = 1 + 4 + NONCE_LEN;

/// Where a field lives: bound into its ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldContext<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_id: &'a str,
}

impl<'a> FieldContext<'a> {
    pub fn new(table: &'a str, column: &'a str, row_id: &'a str) -> Self {
        FieldContext {
            table,
            column,
            row_id,
        }
    }
}

fn push_lp(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(part);
}

fn field_aad(env: &str, ctx: &FieldContext<'_>, key_id: i64, out: &mut Vec<u8>) {
    out.clear();
    for part in [
        b"stockade-field-1".as_slice(),
        env.as_bytes(),
        ctx.table.as_bytes(),
        ctx.column.as_bytes(),
        ctx.row_id.as_bytes(),
    ] {
        push_lp(out, part);
    }
    out.extend_from_slice(&key_id.to_be_bytes());
}

fn wrap_aad(env: &str, owner: &str, key_id: i64, master_version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for part in [
        b"stockade-dek-1".as_slice(),
        env.as_bytes(),
        owner.as_bytes(),
    ] {
        push_lp(&mut out, part);
    }
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&master_version.to_be_bytes());
    out
}

thread_local! {
    /// Random bytes drawn from the system RNG in blocks; nonces are taken from it.
    static NONCE_POOL: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

const POOL_BYTES: usize = NONCE_LEN * 256;

fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    NONCE_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (bytes, used) = &mut *pool;
        if bytes.len() != POOL_BYTES || *used + NONCE_LEN > POOL_BYTES {
            bytes.resize(POOL_BYTES, 0);
            aws_lc_rs::rand::fill(bytes).map_err(|_| VaultError::Rng)?;
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[*used..*used + NONCE_LEN]);
        // Never hand out the same bytes twice.
        bytes[*used..*used + NONCE_LEN].fill(0);
        *used += NONCE_LEN;
        Ok(nonce)
    })
}

/// An unwrapped data key, ready to seal and open fields. The AES key schedule lives in
/// aws-lc, which cleanses it when freed.
pub struct DataKey {
    id: i64,
    env: &'static str,
    key: LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    pub fn new(id: i64, env: &'static str, raw: &[u8; 32]) -> Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, raw)
            .map_err(|_| VaultError::Malformed("bad key length"))?;
        Ok(DataKey {
            id,
            env,
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    /// Encrypt one field value.
    pub fn seal_field(&self, ctx: &FieldContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = random_nonce()?;
        let mut aad = Vec::with_capacity(96);
        field_aad(self.env, ctx, self.id, &mut aad);
        let mut out = Vec::with_capacity(FIELD_HEADER + plaintext.len() + TAG_LEN);
        out.push(FIELD_FORMAT_V1);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(FIELD_HEADER);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut body,
            )
            .map_err(|_| VaultError::Malformed("value too large"))?;
        out.append(&mut body);
        Ok(out)
    }

    /// Decrypt one field value; fails on any alteration or a different context.
    pub fn open_field(
        &self,
        ctx: &FieldContext<'_>,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (key_id, nonce, body) = split_field(ciphertext)?;
        if key_id != self.id {
            return Err(VaultError::DecryptFailed);
        }
        let mut aad = Vec::with_capacity(96);
        field_aad(self.env, ctx, self.id, &mut aad);
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf,
            )
            .map_err(|_| VaultError::DecryptFailed)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The data key id a field ciphertext names, after checking its framing.
pub fn field_key_id(ciphertext: &[u8]) -> Result<i64> {
    split_field(ciphertext).map(|(id, _, _)| id)
}

fn split_field(ct: &[u8]) -> Result<(i64, [u8; NONCE_LEN], &[u8])> {
    if ct.len() < FIELD_HEADER + TAG_LEN {
        return Err(VaultError::Malformed("too short"));
    }
    if ct[0] != FIELD_FORMAT_V1 {
        return Err(VaultError::Malformed("unknown format version"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&ct[1..9]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&ct[9..FIELD_HEADER]);
    Ok((i64::from_be_bytes(id), nonce, &ct[FIELD_HEADER..]))
}

/// Wrap a raw data key under a master key version.
pub fn wrap_data_key(
    master: &[u8; 32],
    master_version: u32,
    env: &str,
    owner: &str,
    key_id: i64,
    raw: &[u8; 32],
) -> Result<Vec<u8>> {
    let kek = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, master)
            .map_err(|_| VaultError::Malformed("bad master key"))?,
    );
    let nonce = random_nonce()?;
    let aad = wrap_aad(env, owner, key_id, master_version);
    let mut body = raw.to_vec();
    kek.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&aad[..]),
        &mut body,
    )
    .map_err(|_| VaultError::Malformed("wrap failed"))?;
    let mut out = Vec::with_capacity(WRAP_HEADER + body.len());
    out.push(WRAP_FORMAT_V1);
    out.extend_from_slice(&master_version.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    body.fill(0);
    Ok(out)
}

/// The master key version a wrapped key needs.
pub fn wrapped_master_version(wrapped: &[u8]) -> Result<u32> {
    if wrapped.len() != WRAP_HEADER + 32 + TAG_LEN || wrapped[0] != WRAP_FORMAT_V1 {
        return Err(VaultError::Malformed("bad wrapped data key"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&wrapped[1..5]);
    Ok(u32::from_be_bytes(v))
}

/// Unwrap a data key. A wrong master key, owner, id or environment fails.
pub fn unwrap_data_key(
    master: &[u8; 32],
    env: &str,
    owner: &str,
    key_id: i64,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>> {
    let version = wrapped_master_version(wrapped)?;
    let kek = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, master)
            .map_err(|_| VaultError::Malformed("bad master key"))?,
    );
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&wrapped[5..WRAP_HEADER]);
    let aad = wrap_aad(env, owner, key_id, version);
    let mut buf = Zeroizing::new(wrapped[WRAP_HEADER..].to_vec());
    let plain = kek
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut buf,
        )
        .map_err(|_| VaultError::DecryptFailed)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    raw.copy_from_slice(plain);
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(env: &'static str) -> DataKey {
        DataKey::new(42, env, &[7u8; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    const CTX: FieldContext<'static> = FieldContext {
        table: "orders",
        column: "buyer_email",
        row_id: "17",
    };

    #[test]
    fn nonces_never_repeat_across_pool_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(256 * 3) {
            assert!(seen.insert(random_nonce().unwrap_or_else(|e| panic!("{e}"))));
        }
    }

    #[test]
    fn same_key_other_environment_cannot_decrypt() {
        let ct = key("prod")
            .seal_field(&CTX, b"jane@example.com")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            key("dev").open_field(&CTX, &ct),
            Err(VaultError::DecryptFailed)
        ));
    }

    #[test]
    fn wrapping_is_bound_to_owner_id_and_master() {
        let raw = [9u8; 32];
        let w = wrap_data_key(&[1u8; 32], 3, "dev", "system", 5, &raw)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wrapped_master_version(&w).ok(), Some(3));
        assert_eq!(
            unwrap_data_key(&[1u8; 32], "dev", "system", 5, &w)
                .map(|k| *k)
                .ok(),
            Some(raw)
        );
        assert!(unwrap_data_key(&[2u8; 32], "dev", "system", 5, &w).is_err());
        assert!(unwrap_data_key(&[1u8; 32], "dev", "connection:1", 5, &w).is_err());
        assert!(unwrap_data_key(&[1u8; 32], "dev", "system", 6, &w).is_err());
        assert!(unwrap_data_key(&[1u8; 32], "prod", "system", 5, &w).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(value in proptest::collection::vec(any::<u8>(), 0..512), row in "[a-z0-9]{1,12}") {
            let k = key("dev");
            let ctx = FieldContext::new("orders", "buyer_name", &row);
            let ct = k.seal_field(&ctx, &value)?;
            prop_assert_eq!(&*k.open_field(&ctx, &ct)?, &value[..]);
        }

        #[test]
        fn any_bit_flip_fails(value in proptest::collection::vec(any::<u8>(), 1..128), bit in any::<usize>()) {
            let k = key("dev");
            let mut ct = k.seal_field(&CTX, &value)?;
            let bit = bit % (ct.len() * 8);
            ct[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(k.open_field(&CTX, &ct).is_err());
        }

        #[test]
        fn any_other_row_column_table_or_environment_fails(
            value in proptest::collection::vec(any::<u8>(), 0..64),
            which in 0usize..4,
            other in "[a-z0-9_]{1,12}",
        ) {
            let k = key("dev");
            let ct = k.seal_field(&CTX, &value)?;
            if which == 3 {
                // Same key bytes, another environment.
                for env in ["prod", "staging"] {
                    prop_assert!(matches!(key(env).open_field(&CTX, &ct), Err(VaultError::DecryptFailed)));
                }
                return Ok(());
            }
            let mut ctx = CTX;
            match which {
                0 => ctx.table = &other,
                1 => ctx.column = &other,
                _ => ctx.row_id = &other,
            }
            prop_assume!(ctx != CTX);
            prop_assert!(matches!(k.open_field(&ctx, &ct), Err(VaultError::DecryptFailed)));
        }
    }
}
