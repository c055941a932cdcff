//! The audit chain: canonical row encoding, hashing and verification.
//!
//! Invariants:
//! - Rows are numbered 1, 2, 3… with no gaps; `seq` is assigned under the writer's
//!   exclusive hold of the chain (the single SQLite writer, or a PostgreSQL advisory
//!   lock held to COMMIT), so there is one chain even with many writers.
//! - `hash = SHA-256(encode(row))` where `encode` is, in order:
//!   the 16-byte domain tag `stockade-audit-1`, `prev_hash` (32 bytes),
//!   `seq` (i64 big-endian), `ts_ms` (i64 big-endian), then `env`, `actor`, `action`,
//!   `resource`, `details`, each as a u32 big-endian byte length followed by UTF-8 bytes.
//!   Length prefixes make the encoding injective: no two different rows hash the same input.
//! - The first row's `prev_hash` is 32 zero bytes.
//! - `details` is canonical JSON (keys sorted) and holds no PII: PII values appear only as
//!   `hmac-sha256:` tags computed by the vault.

use aws_lc_rs::digest;
use serde::Serialize;

/// A SHA-256 chain hash.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: Hash = [0u8; 32];

const DOMAIN_TAG: &[u8; 16] = b"stockade-audit-1";

/// The fields of one audit row, borrowed: what is hashed.
#[derive(Debug, Clone, Copy)]
pub struct AuditFields<'a> {
    pub seq: i64,
    pub ts_ms: i64,
    pub env: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub details: &'a str,
}

/// Compute a row's hash. `buf` is reused between calls so hashing a long chain does not
/// allocate per row.
pub fn chain_hash(prev: &Hash, row: &AuditFields<'_>, buf: &mut Vec<u8>) -> Hash {
    buf.clear();
    buf.extend_from_slice(DOMAIN_TAG);
    buf.extend_from_slice(prev);
    buf.extend_from_slice(&row.seq.to_be_bytes());
    buf.extend_from_slice(&row.ts_ms.to_be_bytes());
    for field in [row.env, row.actor, row.action, row.resource, row.details] {
        // Fields longer than 4 GiB cannot be stored; saturate rather than wrap.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(field.as_bytes());
    }
    let d = digest::digest(&digest::SHA256, buf);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// One stored audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub ts_ms: i64,
    pub env: String,
    pub actor: String,
    pub action: String,
    pub resource: String,
    /// Canonical JSON text, exactly as hashed.
    pub details: String,
    #[serde(serialize_with = "ser_hex")]
    pub prev_hash: Vec<u8>,
    #[serde(serialize_with = "ser_hex")]
    pub hash: Vec<u8>,
}

impl crate::FromRow for AuditRow {
    fn from_row(c: &mut crate::Columns<'_>) -> crate::Result<Self> {
        Ok(AuditRow {
            seq: c.get()?,
            ts_ms: c.get()?,
            env: c.get()?,
            actor: c.get()?,
            action: c.get()?,
            resource: c.get()?,
            details: c.get()?,
            prev_hash: c.get()?,
            hash: c.get()?,
        })
    }
}

fn ser_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

impl AuditRow {
    pub fn fields(&self) -> AuditFields<'_> {
        AuditFields {
            seq: self.seq,
            ts_ms: self.ts_ms,
            env: &self.env,
            actor: &self.actor,
            action: &self.action,
            resource: &self.resource,
            details: &self.details,
        }
    }
}

/// What `audit verify` found wrong, naming the first bad row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// The first row that is not as it was written (for a deletion: the first missing seq).
    pub seq: i64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The row's content does not match its own hash.
    Altered,
    /// Rows `seq..next_present` are missing.
    Missing { next_present: i64 },
    /// The row does not link to its predecessor: the predecessor was rewritten with a new
    /// hash, or rows were inserted or reordered.
    BrokenLink,
    /// The row names another environment.
    ForeignEnvironment(String),
    /// A hash column is not 32 bytes.
    Malformed,
    /// The last row does not match an anchor recorded earlier (rows were truncated or
    /// the chain was rewritten from an earlier point).
    AnchorMismatch,
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seq = self.seq;
        match &self.kind {
            ProblemKind::Altered => write!(
                f,
                "row {seq} was altered: its content does not match its hash"
            ),
            ProblemKind::Missing { next_present } => write!(
                f,
                "row {seq} is missing: rows {seq}..{} were deleted (next present row is {next_present})",
                next_present - 1
            ),
            ProblemKind::BrokenLink => write!(
                f,
                "row {seq} does not follow row {}: a row was inserted, reordered, or the previous row was rewritten",
                seq - 1
            ),
            ProblemKind::ForeignEnvironment(env) => {
                write!(f, "row {seq} belongs to environment {env:?}, not this one")
            }
            ProblemKind::Malformed => write!(f, "row {seq} has a malformed hash column"),
            ProblemKind::AnchorMismatch => write!(
                f,
                "row {seq} does not match the recorded anchor: the chain was truncated or rewritten"
            ),
        }
    }
}

/// An externally recorded checkpoint: "row `seq` had hash `hash`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: Hash,
}

impl Anchor {
    /// Parse `SEQ:HEXHASH` as printed by `audit verify`.
    pub fn parse(text: &str) -> Option<Anchor> {
        let (seq, hash) = text.split_once(':')?;
        let seq = seq.trim().parse().ok()?;
        let bytes = hex::decode(hash.trim()).ok()?;
        Some(Anchor {
            seq,
            hash: bytes.try_into().ok()?,
        })
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub rows_checked: u64,
    /// The last good row (seq, hash).
    pub head: Option<(i64, Hash)>,
    pub problem: Option<ChainProblem>,
}

/// Walks rows in `seq` order and stops at the first problem.
#[derive(Debug)]
pub struct ChainVerifier {
    env: String,
    expected_seq: i64,
    prev: Hash,
    rows: u64,
    buf: Vec<u8>,
    anchor: Option<Anchor>,
    anchor_seen: bool,
    /// Where a resumed walk started (a row already verified), if it did not start at genesis.
    start: Option<(i64, Hash)>,
}

impl ChainVerifier {
    pub fn new(env: &str, anchor: Option<Anchor>) -> Self {
        ChainVerifier {
            env: env.to_owned(),
            expected_seq: 1,
            prev: GENESIS_HASH,
            rows: 0,
            buf: Vec::with_capacity(512),
            anchor,
            anchor_seen: false,
            start: None,
        }
    }

    /// A walk that resumes after row `seq`, whose hash `hash` was verified earlier (the
    /// rows after it are checked against it; the rows up to it are not read again).
    pub fn resume(env: &str, seq: i64, hash: Hash) -> Self {
        ChainVerifier {
            expected_seq: seq + 1,
            prev: hash,
            start: Some((seq, hash)),
            ..ChainVerifier::new(env, None)
        }
    }

    /// The `seq` after which this walk reads rows (0: from the first row).
    pub fn after_seq(&self) -> i64 {
        self.expected_seq - 1
    }

    /// Check the next row. `prev_hash` and `hash` are the stored columns.
    pub fn check(
        &mut self,
        row: &AuditFields<'_>,
        prev_hash: &[u8],
        hash: &[u8],
    ) -> Result<(), ChainProblem> {
        let problem = |kind| ChainProblem { seq: row.seq, kind };
        if row.seq != self.expected_seq {
            return Err(ChainProblem {
                seq: self.expected_seq,
                kind: ProblemKind::Missing {
                    next_present: row.seq,
                },
            });
        }
        if row.env != self.env {
            return Err(problem(ProblemKind::ForeignEnvironment(
                row.env.chars().take(16).collect(),
            )));
        }
        let (Ok(stored_prev), Ok(stored_hash)) =
            (<&Hash>::try_from(prev_hash), <&Hash>::try_from(hash))
        else {
            return Err(problem(ProblemKind::Malformed));
        };
        if *stored_prev != self.prev {
            return Err(problem(ProblemKind::BrokenLink));
        }
        let computed = chain_hash(&self.prev, row, &mut self.buf);
        if computed != *stored_hash {
            return Err(problem(ProblemKind::Altered));
        }
        if let Some(anchor) = self.anchor
            && anchor.seq == row.seq
        {
            if anchor.hash != computed {
                return Err(problem(ProblemKind::AnchorMismatch));
            }
            self.anchor_seen = true;
        }
        self.prev = computed;
        self.expected_seq += 1;
        self.rows += 1;
        Ok(())
    }

    /// Finish the walk, turning an anchor beyond the end into a truncation finding.
    pub fn finish(self, problem: Option<ChainProblem>) -> VerifyReport {
        let head = if self.rows > 0 {
            Some((self.expected_seq - 1, self.prev))
        } else {
            self.start
        };
        let truncated = self.anchor.is_some() && !self.anchor_seen;
        let problem = problem.or(truncated.then_some(ChainProblem {
            seq: self.expected_seq,
            kind: ProblemKind::AnchorMismatch,
        }));
        VerifyReport {
            rows_checked: self.rows,
            head,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, details: &str) -> AuditFields<'_> {
        AuditFields {
            seq,
            ts_ms: 1000 + seq,
            env: "dev",
            actor: "system:test",
            action: "test.event",
            resource: "r",
            details,
        }
    }

    #[test]
    fn field_boundaries_change_the_hash() {
        let mut buf = Vec::new();
        let a = AuditFields {
            actor: "ab",
            action: "c",
            ..row(1, "{}")
        };
        let b = AuditFields {
            actor: "a",
            action: "bc",
            ..row(1, "{}")
        };
        assert_ne!(
            chain_hash(&GENESIS_HASH, &a, &mut buf),
            chain_hash(&GENESIS_HASH, &b, &mut buf)
        );
    }

    #[test]
    fn a_good_chain_verifies_and_reports_its_head() {
        let mut buf = Vec::new();
        let mut v = ChainVerifier::new("dev", None);
        let mut prev = GENESIS_HASH;
        for seq in 1..=5 {
            let r = row(seq, "{}");
            let h = chain_hash(&prev, &r, &mut buf);
            assert_eq!(v.check(&r, &prev, &h), Ok(()));
            prev = h;
        }
        let report = v.finish(None);
        assert_eq!(report.rows_checked, 5);
        assert_eq!(report.head, Some((5, prev)));
        assert_eq!(report.problem, None);
    }

    /// A valid chain of `n` rows, as stored: (fields as owned strings, prev_hash, hash).
    fn build(n: usize) -> Vec<AuditRow> {
        let mut buf = Vec::new();
        let mut prev = GENESIS_HASH;
        (1..=n as i64)
            .map(|seq| {
                let details = format!("{{\"n\":{seq}}}");
                let f = row(seq, &details);
                let hash = chain_hash(&prev, &f, &mut buf);
                let r = AuditRow {
                    seq,
                    ts_ms: f.ts_ms,
                    env: f.env.into(),
                    actor: f.actor.into(),
                    action: f.action.into(),
                    resource: f.resource.into(),
                    details,
                    prev_hash: prev.to_vec(),
                    hash: hash.to_vec(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    fn verify(rows: &[AuditRow]) -> VerifyReport {
        let mut v = ChainVerifier::new("dev", None);
        for r in rows {
            if let Err(p) = v.check(&r.fields(), &r.prev_hash, &r.hash) {
                return v.finish(Some(p));
            }
        }
        v.finish(None)
    }

    proptest::proptest! {
        /// Any single tampering anywhere is found, and the first bad row is named.
        #[test]
        fn random_tamper_is_found(n in 2usize..40, at in proptest::prelude::any::<usize>(), how in 0u8..8, byte in 1u8..255) {
            let mut rows = build(n);
            proptest::prop_assert_eq!(verify(&rows).problem, None);
            let i = at % n;
            let expect_seq = i as i64 + 1;
            match how {
                0 => rows[i].details.push(' '),
                1 => rows[i].actor = "user:666".into(),
                2 => rows[i].ts_ms += i64::from(byte),
                3 => { let k = usize::from(byte) % 32; rows[i].hash[k] ^= byte; }
                4 => { let k = usize::from(byte) % 32; rows[i].prev_hash[k] ^= byte; }
                5 => { rows.remove(i); }
                6 => { let copy = rows[(i + 1) % n].clone(); rows.insert(i, AuditRow { seq: expect_seq, ..copy }); for (k, r) in rows.iter_mut().enumerate() { r.seq = k as i64 + 1; } }
                _ => { let j = (i + 1) % n; let (a, b) = (i.min(j), i.max(j)); rows.swap(a, b); rows[a].seq = a as i64 + 1; rows[b].seq = b as i64 + 1; }
            }
            let report = verify(&rows);
            if how == 5 && i == n - 1 {
                // Removing the last row leaves a valid shorter chain: anchors catch that.
                proptest::prop_assert_eq!(report.problem, None);
            } else {
                let problem = report.problem.expect("tampering must be found");
                let first = if how == 7 { (i.min((i + 1) % n) + 1) as i64 } else { expect_seq };
                proptest::prop_assert_eq!(problem.seq, first, "{}", problem);
            }
        }
    }

    #[test]
    fn anchors_parse_from_the_printed_form() {
        let text = format!("42:{}", hex::encode([7u8; 32]));
        assert_eq!(
            Anchor::parse(&text),
            Some(Anchor {
                seq: 42,
                hash: [7u8; 32]
            })
        );
        assert_eq!(Anchor::parse("42:abcd"), None);
        assert_eq!(Anchor::parse("nope"), None);
    }
}
