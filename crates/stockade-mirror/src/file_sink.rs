//! The JSON-lines sink: one line per audit row (every audit field, see
//! [`crate::columns::json_line`]) appended to `path`, rotated to `path.1` … `path.N`
//! once `path` reaches `rotate_at`, for syslog or SIEM shippers that tail the file.
//!
//! Invariants:
//! - Lines are in `seq` order with no gap and no duplicate across restarts: on open, the
//!   last complete line (of `path`, else `path.1`) gives the resume point; rows at or
//!   below it are skipped.
//! - A process killed mid-write leaves at most one torn last line: it is cut off on open
//!   (the file is truncated to its last newline and synced) before anything is appended,
//!   so no half line is ever followed by another line.
//! - Every batch is `fsync`ed before the cursor moves; a rotation syncs the file and the
//!   directory before the new file is written.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use stockade_store::AuditRow;

use crate::columns::json_line;
use crate::config::FileSinkConfig;

/// How much of a file's end is read to find its last line.
const TAIL: u64 = 8 * 1024 * 1024;

/// The open sink.
#[derive(Debug)]
pub struct FileSink {
    cfg: FileSinkConfig,
    file: File,
    size: u64,
    last_seq: i64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!(
        "audit mirror file: cannot {what} {}: {e}; check audit.mirror.file.path and its directory's permissions",
        path.display()
    )
}

/// `path.N`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Cut a torn last line off `file` (size `size`); the seq of the last complete line.
fn repair_tail(file: &mut File, path: &Path, size: u64) -> Result<(u64, Option<i64>), String> {
    if size == 0 {
        return Ok((0, None));
    }
    let start = size.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| io("read", path, e))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)
        .map_err(|e| io("read", path, e))?;
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => start + i as u64 + 1,
        None if start == 0 => 0,
        None => {
            return Err(format!(
                "audit mirror file: {} ends with a line over 8 MiB; move it aside",
                path.display()
            ));
        }
    };
    if keep != size {
        tracing::warn!(
            bytes = size - keep,
            "audit mirror file: cut a torn last line"
        );
        file.set_len(keep).map_err(|e| io("truncate", path, e))?;
        file.sync_all().map_err(|e| io("sync", path, e))?;
    }
    let body = &tail[..(keep - start) as usize];
    let last = body
        .strip_suffix(b"\n")
        .and_then(|b| b.split(|c| *c == b'\n').next_back())
        .and_then(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .and_then(|v| v.get("seq").and_then(serde_json::Value::as_i64));
    Ok((keep, last))
}

fn open_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| io("open", path, e))
}

impl FileSink {
    /// Open (or create) the current file, cut a torn line, find the resume point.
    /// `acked` is the cursor recorded in the database (used when the files hold nothing).
    pub fn open(cfg: &FileSinkConfig, acked: i64) -> Result<FileSink, String> {
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| io("create the directory of", &cfg.path, e))?;
        }
        let mut file = open_append(&cfg.path)?;
        let size = file.metadata().map_err(|e| io("read", &cfg.path, e))?.len();
        let (size, mut last) = repair_tail(&mut file, &cfg.path, size)?;
        if last.is_none() {
            let prev = rotated(&cfg.path, 1);
            if let Ok(mut f) = OpenOptions::new().read(true).write(true).open(&prev) {
                let n = f.metadata().map_err(|e| io("read", &prev, e))?.len();
                last = repair_tail(&mut f, &prev, n)?.1;
            }
        }
        Ok(FileSink {
            cfg: cfg.clone(),
            file,
            size,
            last_seq: last.unwrap_or(0).max(acked),
        })
    }

    /// The last row in the files.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Append the rows after [`FileSink::last_seq`], rotating as needed; synced on return.
    pub fn write_batch(&mut self, rows: &[AuditRow]) -> Result<(), String> {
        let mut buf = Vec::new();
        for row in rows {
            if row.seq <= self.last_seq {
                continue;
            }
            if row.seq != self.last_seq + 1 && self.last_seq != 0 {
                return Err(format!(
                    "audit mirror file: row {} does not follow row {}",
                    row.seq, self.last_seq
                ));
            }
            let line = json_line(row);
            let pending = self.size + buf.len() as u64;
            if pending > 0 && pending + line.len() as u64 + 1 > self.cfg.rotate_bytes {
                self.flush(&mut buf)?;
                self.rotate()?;
            }
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            self.last_seq = row.seq;
        }
        self.flush(&mut buf)
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), String> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = &self.cfg.path;
        self.file.write_all(buf).map_err(|e| io("write", path, e))?;
        self.file.sync_data().map_err(|e| io("sync", path, e))?;
        self.size += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// `path` → `path.1` → … → `path.keep` (the oldest dropped); a new empty `path`.
    fn rotate(&mut self) -> Result<(), String> {
        let path = self.cfg.path.clone();
        self.file.sync_all().map_err(|e| io("sync", &path, e))?;
        let keep = self.cfg.keep;
        if keep == 0 {
            std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
        } else {
            let oldest = rotated(&path, keep);
            if oldest.exists() {
                std::fs::remove_file(&oldest).map_err(|e| io("remove", &oldest, e))?;
            }
            for n in (1..keep).rev() {
                let from = rotated(&path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&path, n + 1))
                        .map_err(|e| io("rotate", &from, e))?;
                }
            }
            std::fs::rename(&path, rotated(&path, 1)).map_err(|e| io("rotate", &path, e))?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.file = open_append(&path)?;
        self.size = 0;
        Ok(())
    }
}
