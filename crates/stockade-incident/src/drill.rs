//! Evidence that the incident-response plan is exercised: the last drill (or real
//! incident) closed with every step of the plan on its timeline. Amazon's Data
//! Protection Policy asks for the plan to be reviewed every six months; a drill older
//! than [`STALE_AFTER_MS`] is stale.

use serde::Serialize;
use stockade_store::{Store, sql_params};

use crate::Result;
use crate::model::Incident;

/// The steps a complete exercise goes through (a report's export is recorded too, but
/// is not required: it can be taken at any time later).
pub const REQUIRED_STEPS: [&str; 6] = ["open", "revoke", "isolate", "lockdown", "release", "close"];

/// Six months (183 days).
pub const STALE_AFTER_MS: i64 = 183 * 24 * 3_600_000;

/// One closed exercise of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillEvidence {
    pub incident_id: i64,
    pub drill: bool,
    pub closed_at_ms: i64,
    /// The distinct steps on its timeline, in plan order (then any others).
    pub steps: Vec<String>,
    /// The required steps it did not go through.
    pub missing: Vec<&'static str>,
    /// Every required step exercised.
    pub passed: bool,
}

impl DrillEvidence {
    /// Whether it is older than six months at `now_ms`.
    pub fn stale(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.closed_at_ms) > STALE_AFTER_MS
    }
}

const CLOSED: &str = "SELECT id, title, severity, drill, detected_at_ms, opened_at_ms, opened_by, closed_at_ms, closed_by, root_cause
     FROM incidents WHERE closed_at_ms IS NOT NULL AND ($1 = 0 OR drill = 1)
     ORDER BY closed_at_ms DESC, id DESC LIMIT 50";
const STEPS: &str = "SELECT DISTINCT step FROM incident_timeline WHERE incident_id = $1";

async fn evidence_of(store: &Store, inc: &Incident) -> Result<DrillEvidence> {
    let mut found: Vec<String> = store.query_as(STEPS, sql_params![inc.id]).await?;
    found.sort_by_key(|s| {
        REQUIRED_STEPS
            .iter()
            .position(|r| r == s)
            .unwrap_or(REQUIRED_STEPS.len())
    });
    let missing: Vec<&'static str> = REQUIRED_STEPS
        .into_iter()
        .filter(|r| !found.iter().any(|s| s == r))
        .collect();
    Ok(DrillEvidence {
        incident_id: inc.id,
        drill: inc.drill,
        closed_at_ms: inc.closed_at_ms.unwrap_or_default(),
        passed: missing.is_empty(),
        steps: found,
        missing,
    })
}

async fn last(store: &Store, drills_only: bool) -> Result<Option<DrillEvidence>> {
    let closed: Vec<Incident> = store
        .query_as(CLOSED, sql_params![i64::from(drills_only)])
        .await?;
    let mut newest = None;
    for inc in &closed {
        let e = evidence_of(store, inc).await?;
        if e.passed {
            return Ok(Some(e));
        }
        newest.get_or_insert(e);
    }
    Ok(newest)
}

/// The last closed drill: the newest that exercised every step, else the newest closed
/// one (so a report can say what it missed); `None` if no drill was ever closed.
pub async fn last_drill(store: &Store) -> Result<Option<DrillEvidence>> {
    last(store, true).await
}

/// As [`last_drill`], drills and real incidents alike (either proves the plan works).
pub async fn last_exercise(store: &Store) -> Result<Option<DrillEvidence>> {
    last(store, false).await
}
