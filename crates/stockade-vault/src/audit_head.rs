//! The audit head mark: the chain's last row (seq and hash) kept in a second place, a
//! small file in the data directory, MAC'd with this installation's tag key (itself
//! wrapped under the master key, so someone with only the database cannot forge a mark).
//! `stockade audit verify` checks that the chain still reaches the mark and that the row
//! at the mark has the recorded hash: a deleted tail, or an emptied table, is caught
//! without an external `--anchor`.
//!
//! The mark only moves forward, and is written off the commit path: by `stockade serve`
//! at most once a second when the head moved, and after CLI commands that write. It is
//! therefore a lower bound of the head, which is all the check needs.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use stockade_store::Hash;

use crate::Vault;

/// The mark file's name in the data directory.
pub const HEAD_FILE: &str = "audit-head";

const MAGIC: &str = "stockade-audit-head 1";

/// A recorded head: row `seq` had hash `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadMark {
    pub seq: i64,
    pub hash: Hash,
}

/// What checking the chain against the mark found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadCheck {
    /// No mark has been recorded yet (a new installation, or the file was removed).
    NoMark,
    /// The chain reaches the mark and the row at the mark has the recorded hash.
    Reached(HeadMark),
    /// The chain ends before the mark: rows were deleted from the end.
    Behind { mark: HeadMark, head: Option<i64> },
    /// The row at the mark has another hash: the chain was rewritten.
    Rewritten(HeadMark),
    /// The file exists but is not a valid mark of this installation (edited, forged,
    /// or another environment's).
    Invalid(String),
}

fn body(env: &str, seq: i64, hash: &Hash) -> String {
    format!(
        "{MAGIC}\nenv={env}\nseq={seq}\nhash={}\n",
        hex::encode(hash)
    )
}

impl Vault {
    fn head_mac(&self, body: &str) -> String {
        self.tag_bytes(body.as_bytes()).to_string()
    }

    /// Read and authenticate the mark at `path`: `Ok(None)` if there is none.
    pub fn read_audit_head(&self, path: &Path) -> Result<Option<HeadMark>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let invalid = || format!("{} is not a valid audit head mark", path.display());
        let (signed, mac) = text.rsplit_once("mac=").ok_or_else(invalid)?;
        let mut seq = None;
        let mut hash = None;
        for line in signed.lines().skip(1) {
            match line.split_once('=') {
                Some(("seq", v)) => seq = v.parse::<i64>().ok(),
                Some(("hash", v)) => {
                    hash = hex::decode(v).ok().and_then(|b| Hash::try_from(b).ok());
                }
                _ => {}
            }
        }
        let (Some(seq), Some(hash)) = (seq, hash) else {
            return Err(invalid());
        };
        let expected = body(self.environment().as_str(), seq, &hash);
        let ok = signed == expected
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                mac.trim().as_bytes(),
                self.head_mac(&expected).as_bytes(),
            )
            .is_ok();
        if !ok {
            return Err(format!(
                "{} does not verify: it was edited, or belongs to another installation or environment",
                path.display()
            ));
        }
        Ok(Some(HeadMark { seq, hash }))
    }

    /// The chain's current last row, if any (one indexed read).
    pub async fn audit_head(&self) -> crate::Result<Option<HeadMark>> {
        let head = self.store().audit_head().await?;
        Ok(head.map(|(seq, hash)| HeadMark { seq, hash }))
    }

    /// Record the current head at `path` if it is beyond the recorded one. Returns the
    /// mark now recorded. An invalid file is left alone (it is evidence) and reported.
    pub async fn record_audit_head(&self, path: &Path) -> Result<Option<HeadMark>, String> {
        let recorded = self.read_audit_head(path)?;
        let head = self.audit_head().await.map_err(|e| e.to_string())?;
        let Some(head) = head else {
            return Ok(recorded);
        };
        if recorded.is_some_and(|r| r.seq >= head.seq) {
            return Ok(recorded);
        }
        let body = body(self.environment().as_str(), head.seq, &head.hash);
        let text = format!("{body}mac={}\n", self.head_mac(&body));
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(Some(head))
    }

    /// Check the chain against the mark at `path`. `head` is the verified chain's last
    /// row (from [`stockade_store::Store::verify_audit`]).
    pub async fn check_audit_head(&self, path: &Path, head: Option<(i64, Hash)>) -> HeadCheck {
        let mark = match self.read_audit_head(path) {
            Ok(Some(m)) => m,
            Ok(None) => return HeadCheck::NoMark,
            Err(e) => return HeadCheck::Invalid(e),
        };
        if head.is_none_or(|(seq, _)| seq < mark.seq) {
            return HeadCheck::Behind {
                mark,
                head: head.map(|h| h.0),
            };
        }
        match self.store().audit_hash(mark.seq).await {
            Ok(Some(h)) if h == mark.hash => HeadCheck::Reached(mark),
            Ok(_) => HeadCheck::Rewritten(mark),
            Err(e) => HeadCheck::Invalid(format!("cannot read row {}: {e}", mark.seq)),
        }
    }
}
