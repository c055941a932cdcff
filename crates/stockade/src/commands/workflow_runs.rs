//! `stockade workflow run|runs|show-run|cancel|rerun`: starting a manual run, following
//! executions, cancelling and rerunning them (`stockade_workflows::runs` and `operate` do
//! the work; this file reads the input file and prints).
//!
//! `run` only queues the execution (an audited job, pinned to the active version); the
//! running `stockade serve` executes it. `--wait` polls the job until it ends. Output
//! holds ids, names, states, times and stored (scrubbed) errors, never a step's output.

use std::path::PathBuf;
use std::time::Duration;

use stockade_core::time::{format_rfc3339_ms, now_ms};
use stockade_store::{JobState, Store};
use stockade_workflows::operate;
use stockade_workflows::runs::{self, RunError, RunRow};

use super::open_store;
use super::workflow_registry::open_as;
use crate::exit::Failure;
use crate::settings::Settings;

/// The longest `run --wait` waits.
const WAIT_BOUND: Duration = Duration::from_secs(600);
/// The largest input file read.
const MAX_INPUT_BYTES: u64 = 1 << 20;

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Store(s) => s.into(),
            RunError::Registry(r) => r.into(),
            other => Failure::usage(other.to_string()),
        }
    }
}

fn read_input(path: &PathBuf) -> Result<serde_json::Value, Failure> {
    let name = path.display();
    let refuse = |why: String| Failure::usage(format!("{name}: {why}; nothing was enqueued"));
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot read: {}", e.kind())))?;
    if !meta.is_file() || meta.len() > MAX_INPUT_BYTES {
        return Err(refuse(format!(
            "not a file of at most {MAX_INPUT_BYTES} bytes"
        )));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read: {}", e.kind())))?;
    serde_json::from_str(&text).map_err(|e| {
        refuse(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

pub async fn run(
    settings: &Settings,
    name: &str,
    input: Option<&PathBuf>,
    wait: bool,
    as_user: Option<&str>,
) -> Result<(), Failure> {
    let inputs = match input {
        Some(path) => read_input(path)?,
        None => serde_json::json!({}),
    };
    let (store, actor) = open_as(settings, as_user).await?;
    let result = async {
        let started = runs::enqueue_manual(&store, &actor, name, inputs).await?;
        println!("{}", started.execution);
        eprintln!(
            "{name}@{}: execution {} queued; `stockade serve` runs it (`stockade workflow show-run {}`)",
            started.version, started.execution, started.execution
        );
        if wait {
            wait_for(&store, &started.execution).await
        } else {
            Ok(())
        }
    }
    .await;
    store.close().await;
    result
}

async fn wait_for(store: &Store, id: &str) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + WAIT_BOUND;
    loop {
        let (row, _) = runs::show(store, id).await?;
        match row.state {
            JobState::Succeeded => {
                println!("succeeded");
                eprintln!("{id}: succeeded in {}", took(&row));
                return Ok(());
            }
            JobState::Failed | JobState::Cancelled => {
                println!("{}", row.state.as_str());
                return Err(Failure::runtime(format!(
                    "execution {id} {}: {} (`stockade workflow show-run {id}` shows its steps)",
                    row.state.as_str(),
                    row.error.as_deref().unwrap_or("no error recorded")
                )));
            }
            JobState::Queued | JobState::Running => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::runtime(format!(
                "execution {id} is still {} after {} s: is `stockade serve` running? It stays queued and runs once a server takes it",
                row.state.as_str(),
                WAIT_BOUND.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn took(row: &RunRow) -> String {
    match row.took_ms() {
        Some(ms) => format!("{ms} ms"),
        None if row.started_at_ms.is_some() => format!(
            "{} ms so far",
            now_ms() - row.started_at_ms.unwrap_or(row.created_at_ms)
        ),
        None => "-".into(),
    }
}

fn version(row: &RunRow) -> String {
    match row.version {
        Some(v) => format!("{}@{v}", row.workflow),
        None => format!("{}@active", row.workflow),
    }
}

pub async fn list(
    settings: &Settings,
    name: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> Result<(), Failure> {
    let state = status
        .map(|s| {
            s.parse::<JobState>().map_err(|_| {
                Failure::usage(format!(
                    "--status {s:?}: one of queued, running, succeeded, failed, cancelled"
                ))
            })
        })
        .transpose()?;
    let store = open_store(settings).await?;
    let rows = runs::list(&store, name, state, limit).await;
    store.close().await;
    println!(
        "{:<30} {:<32} {:<10} {:<24} {:<14} attempts",
        "execution", "workflow", "state", "started", "took"
    );
    for r in rows? {
        println!(
            "{:<30} {:<32} {:<10} {:<24} {:<14} {}/{}",
            r.id,
            version(&r),
            r.state.as_str(),
            r.started_at_ms.map_or("-".to_owned(), format_rfc3339_ms),
            took(&r),
            r.attempts,
            r.max_attempts
        );
    }
    Ok(())
}

pub async fn show(settings: &Settings, id: &str) -> Result<(), Failure> {
    let store = open_store(settings).await?;
    let shown = runs::show(&store, id).await;
    store.close().await;
    let (row, steps) = shown?;
    println!("execution {}", row.id);
    println!("workflow  {}", version(&row));
    println!("state     {}", row.state.as_str());
    println!("attempts  {}/{}", row.attempts, row.max_attempts);
    println!("queued    {}", format_rfc3339_ms(row.created_at_ms));
    println!(
        "finished  {}",
        row.finished_at_ms.map_or("-".to_owned(), format_rfc3339_ms)
    );
    println!("took      {}", took(&row));
    if let Some(e) = &row.error {
        println!("error     {e}");
    }
    println!();
    println!(
        "{:<24} {:<8} {:<10} {:<24} {:<10} error",
        "step", "attempt", "status", "started", "took"
    );
    for (i, s) in steps.iter().enumerate() {
        let label = runs::step_label(row.state, &steps, i);
        let took = match (s.finished_at_ms, label) {
            (Some(f), _) => format!("{} ms", f - s.started_at_ms),
            (None, "running") => "running".into(),
            (None, _) => "-".into(),
        };
        println!(
            "{:<24} {:<8} {:<10} {:<24} {:<10} {}",
            s.step_id,
            s.attempt,
            label,
            format_rfc3339_ms(s.started_at_ms),
            took,
            s.error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

pub async fn cancel(settings: &Settings, id: &str, as_user: Option<&str>) -> Result<(), Failure> {
    let (store, actor) = open_as(settings, as_user).await?;
    let result = operate::cancel(&store, &actor, id).await;
    store.close().await;
    let was = result?;
    println!("cancelled");
    eprintln!(
        "{id}: cancelled (it was {}); a running execution stops at its next step boundary",
        was.as_str()
    );
    Ok(())
}

pub async fn rerun(
    settings: &Settings,
    id: &str,
    from_step: Option<&str>,
    as_user: Option<&str>,
) -> Result<(), Failure> {
    let (store, actor) = open_as(settings, as_user).await?;
    let result = operate::rerun(&store, &actor, id, from_step).await;
    store.close().await;
    let started = result?;
    println!("{}", started.execution);
    eprintln!(
        "execution {} queued at version {} as a rerun of {id}{}",
        started.execution,
        started.version,
        from_step.map_or(String::new(), |s| format!(" from step {s}"))
    );
    Ok(())
}
