//! The background writer of `egress_log` rows and anomaly events.
//!
//! Both are queued on a bounded channel. Log rows are written in batches (multi-row
//! inserts, one statement per batch) through the store's unaudited path: this is
//! bookkeeping of machine activity, not anyone's decision. Anomaly events are appended
//! like every other event, in an audited commit (one per drained batch, audit action
//! `egress.anomaly`). The writer also prunes both tables by age.

use std::sync::OnceLock;
use std::time::Duration;

use stockade_core::{Actor, Event};
use stockade_store::{AuditDetails, AuditEntry, SqlValue, Store, sql_params};
use tokio::sync::{mpsc, oneshot};

/// One attempt (or one refusal) as recorded.
#[derive(Debug, Clone)]
pub(crate) struct LogRow {
    pub at_ms: i64,
    pub caller: String,
    pub method: String,
    pub host: String,
    pub path_template: &'static str,
    pub operation: &'static str,
    pub status: Option<u16>,
    pub outcome: &'static str,
    pub latency_us: i64,
    pub bytes_sent: i64,
    pub bytes_received: i64,
    pub attempt: u32,
}

pub(crate) enum Msg {
    Log(LogRow),
    /// An anomaly event and its time.
    Event(i64, Event),
    Flush(oneshot::Sender<Result<(), String>>),
    Prune(oneshot::Sender<Result<u64, String>>),
}

const QUEUE: usize = 16_384;
const LOG_BATCH: usize = 64;
const DRAIN: usize = 1024;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

const LOG_COLUMNS: &str = "at_ms, environment, caller, method, host, path_template, operation, status, outcome, latency_us, bytes_sent, bytes_received, attempt";
const LOG_ARITY: usize = 13;

/// `INSERT … VALUES (…), (…)` for 1..=max rows, built once; statements stay `&'static`.
fn inserts(table: &str, columns: &str, arity: usize, max: usize) -> Vec<String> {
    (1..=max)
        .map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    let ps: Vec<String> =
                        (1..=arity).map(|c| format!("${}", r * arity + c)).collect();
                    format!("({})", ps.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO {table} ({columns}) VALUES {}",
                values.join(", ")
            )
        })
        .collect()
}

fn log_insert(rows: usize) -> &'static str {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| inserts("egress_log", LOG_COLUMNS, LOG_ARITY, LOG_BATCH))
        .get(rows.wrapping_sub(1))
        .map_or("", String::as_str)
}

fn status(s: Option<u16>) -> SqlValue {
    SqlValue::Int(s.map(i64::from))
}

/// Start the writer on the current runtime.
pub(crate) fn spawn(
    store: Store,
    environment: &'static str,
    retention: Duration,
    auto_prune: bool,
) -> mpsc::Sender<Msg> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(store, environment, retention, auto_prune, rx));
    tx
}

/// With `auto_prune`, old rows are pruned at start and hourly; without (the server, whose
/// retention job removes them in batches), only on [`crate::Gateway::prune`].
async fn run(
    store: Store,
    env: &'static str,
    retention: Duration,
    auto_prune: bool,
    mut rx: mpsc::Receiver<Msg>,
) {
    let mut last_error: Option<String> = None;
    if auto_prune && let Err(e) = prune(&store, retention).await {
        tracing::warn!(error = %e, "egress log pruning failed");
    }
    let mut last_prune = tokio::time::Instant::now();
    loop {
        let first = match tokio::time::timeout(PRUNE_EVERY, rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) => {
                if auto_prune && let Err(e) = prune(&store, retention).await {
                    tracing::warn!(error = %e, "egress log pruning failed");
                }
                last_prune = tokio::time::Instant::now();
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < DRAIN {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut logs = Vec::new();
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut prunes = Vec::new();
        for m in batch {
            match m {
                Msg::Log(r) => logs.push(r),
                Msg::Event(at, e) => events.push((at, e)),
                Msg::Flush(reply) => flushes.push(reply),
                Msg::Prune(reply) => prunes.push(reply),
            }
        }
        if let Err(e) = write_logs(&store, env, &logs).await {
            tracing::warn!(error = %e, rows = logs.len(), "egress log rows were not written");
            last_error = Some(e);
        }
        if let Err(e) = write_events(&store, &events).await {
            tracing::warn!(error = %e, rows = events.len(), "egress events were not written");
            last_error = Some(e);
        }
        for reply in prunes {
            let r = prune(&store, retention).await;
            last_prune = tokio::time::Instant::now();
            let _ = reply.send(r);
        }
        if auto_prune && last_prune.elapsed() >= PRUNE_EVERY {
            if let Err(e) = prune(&store, retention).await {
                tracing::warn!(error = %e, "egress log pruning failed");
            }
            last_prune = tokio::time::Instant::now();
        }
        if !flushes.is_empty() {
            let result = match last_error.take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            for reply in flushes {
                let _ = reply.send(result.clone());
            }
        }
    }
}

async fn write_logs(store: &Store, env: &'static str, rows: &[LogRow]) -> Result<(), String> {
    let mut result = Ok(());
    for chunk in rows.chunks(LOG_BATCH) {
        let mut params = Vec::with_capacity(chunk.len() * LOG_ARITY);
        for r in chunk {
            params.extend(sql_params![
                r.at_ms,
                env,
                r.caller.as_str(),
                r.method.as_str(),
                r.host.as_str(),
                r.path_template,
                r.operation,
            ]);
            params.push(status(r.status));
            params.extend(sql_params![
                r.outcome,
                r.latency_us,
                r.bytes_sent,
                r.bytes_received,
                i64::from(r.attempt),
            ]);
        }
        if let Err(e) = store.write_unaudited(log_insert(chunk.len()), params).await {
            result = Err(e.to_string());
        }
    }
    result
}

async fn write_events(store: &Store, events: &[(i64, Event)]) -> Result<(), String> {
    if events.is_empty() {
        return Ok(());
    }
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let audit = AuditEntry::new(
        "egress.anomaly",
        "egress",
        AuditDetails::new().int("events", n),
    );
    store
        .append_events(&Actor::System("egress"), events, audit)
        .await
        .map_err(|e| e.to_string())
}

/// Delete log rows and routed events older than the retention period.
async fn prune(store: &Store, retention: Duration) -> Result<u64, String> {
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cutoff = stockade_core::time::now_ms().saturating_sub(keep_ms);
    let a = store
        .write_unaudited(
            "DELETE FROM egress_log WHERE at_ms < $1",
            sql_params![cutoff],
        )
        .await
        .map_err(|e| e.to_string())?;
    let b = store
        .prune_events(cutoff, cutoff.saturating_sub(keep_ms))
        .await
        .map_err(|e| e.to_string())?;
    Ok(a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_parameters_in_order() {
        assert_eq!(
            log_insert(1),
            format!(
                "INSERT INTO egress_log ({LOG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            )
        );
        assert!(
            log_insert(2)
                .ends_with("($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)")
        );
        assert!(log_insert(LOG_BATCH).contains(&format!("${}", LOG_BATCH * LOG_ARITY)));
        assert_eq!(log_insert(0), "");
        assert_eq!(log_insert(LOG_BATCH + 1), "");
    }
}
