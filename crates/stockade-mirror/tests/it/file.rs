//! The JSON-lines sink on SQLite and PostgreSQL: every row once, in order, across
//! rotations (`path.1` … `path.keep`, the oldest dropped); a restart resumes without a
//! duplicate; a torn last line left by a killed process is cut before anything is
//! appended.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use stockade_mirror::file_sink::rotated;
use stockade_mirror::{FileSinkConfig, Mirror, MirrorConfig, state};

use crate::support::{Backend, Env, gateway, wait_for};

/// The `seq` of every line of the kept files, oldest first; panics on a line that is not
/// a whole JSON object with every audit field.
fn lines(path: &Path, keep: u32) -> Vec<i64> {
    let mut out = Vec::new();
    for n in (0..=keep).rev() {
        let p = if n == 0 {
            path.to_path_buf()
        } else {
            rotated(path, n)
        };
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends mid-line",
            p.display()
        );
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            for f in [
                "seq",
                "ts_ms",
                "ts",
                "env",
                "actor",
                "action",
                "resource",
                "details",
                "prev_hash",
                "hash",
            ] {
                assert!(v.get(f).is_some(), "{f} missing in {line}");
            }
            out.push(v["seq"].as_i64().unwrap());
        }
    }
    out
}

async fn file_sink(backend: Backend) {
    let Some(env) = Env::new(backend).await else {
        return;
    };
    let path = env.db.dir.join("logs").join("audit.jsonl");
    let cfg = MirrorConfig {
        file: Some(FileSinkConfig::new(path.clone(), Some(8192), Some(50)).unwrap()),
        ..MirrorConfig::default()
    };
    // No NocoDB: the gateway is never used.
    let gw = gateway("127.0.0.1:9", "", None, true);
    env.append(120).await;
    let mirror = Mirror::start(env.deps(&gw), &cfg);
    let acked = || async {
        state::get(&env.store, "file")
            .await
            .unwrap()
            .map_or(0, |s| s.acked_seq)
    };
    wait_for(30, "the file caught up", || async {
        acked().await == env.head().await
    })
    .await;
    mirror.stop(Duration::from_secs(5)).await;
    let head = env.head().await;
    assert_eq!(lines(&path, 50), (1..=head).collect::<Vec<_>>());
    assert!(rotated(&path, 2).exists(), "rotated at 8 KiB");
    assert!(std::fs::metadata(&path).unwrap().len() <= 8192);

    // A process killed mid-write: a torn last line. The restart cuts it and goes on.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"seq\":99999,\"ts_m")
        .unwrap();
    env.append(40).await;
    let mirror = Mirror::start(env.deps(&gw), &cfg);
    wait_for(30, "the file caught up again", || async {
        acked().await == env.head().await
    })
    .await;
    mirror.stop(Duration::from_secs(5)).await;
    let head = env.head().await;
    assert_eq!(
        lines(&path, 50),
        (1..=head).collect::<Vec<_>>(),
        "no duplicate, no gap, no torn line"
    );

    // Keep only 2 rotated files: the oldest go, the rest stays contiguous to the head.
    let small = MirrorConfig {
        file: Some(FileSinkConfig::new(path.clone(), Some(4096), Some(2)).unwrap()),
        ..MirrorConfig::default()
    };
    env.append(60).await;
    let mirror = Mirror::start(env.deps(&gw), &small);
    wait_for(30, "the file caught up with keep 2", || async {
        acked().await == env.head().await
    })
    .await;
    mirror.stop(Duration::from_secs(5)).await;
    let head = env.head().await;
    let kept = lines(&path, 2);
    assert!(!rotated(&path, 3).exists() || kept.len() < head as usize);
    assert_eq!(kept.last(), Some(&head));
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_sink_on_sqlite() {
    file_sink(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_sink_on_postgres() {
    file_sink(Backend::Postgres).await;
}
