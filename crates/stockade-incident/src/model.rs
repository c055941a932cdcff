//! Incidents, their timeline, notices and controls as stored (this crate owns the
//! `incident_*` tables), and the reads of them.

use serde::Serialize;
use stockade_store::{Columns, FromRow, Store, sql_params};

use crate::deadline::{self, Deadline};
use crate::{IncidentError, Result};

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = IncidentError;
    fn from_str(s: &str) -> Result<Self> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                IncidentError::Refused("unknown severity: use low, medium, high or critical".into())
            })
    }
}

/// Who is notified of an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    Amazon,
    TikTok,
    Ebay,
    Clients,
}

impl Party {
    pub const ALL: [Party; 4] = [Party::Amazon, Party::TikTok, Party::Ebay, Party::Clients];

    pub fn as_str(self) -> &'static str {
        match self {
            Party::Amazon => "amazon",
            Party::TikTok => "tiktok",
            Party::Ebay => "ebay",
            Party::Clients => "clients",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Party::Amazon => "Amazon",
            Party::TikTok => "TikTok Shop",
            Party::Ebay => "eBay",
            Party::Clients => "Clients",
        }
    }
}

impl std::str::FromStr for Party {
    type Err = IncidentError;
    fn from_str(s: &str) -> Result<Self> {
        Party::ALL
            .into_iter()
            .find(|v| v.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                IncidentError::Refused("unknown party: use amazon, tiktok, ebay or clients".into())
            })
    }
}

/// One incident (or drill).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    pub severity: String,
    pub drill: bool,
    /// When it was detected (the notification deadlines count from here).
    pub detected_at_ms: i64,
    pub opened_at_ms: i64,
    pub opened_by: String,
    pub closed_at_ms: Option<i64>,
    pub closed_by: Option<String>,
    pub root_cause: Option<String>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.closed_at_ms.is_none()
    }
}

impl FromRow for Incident {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Incident {
            id: c.get()?,
            title: c.get()?,
            severity: c.get()?,
            drill: c.get::<i64>()? != 0,
            detected_at_ms: c.get()?,
            opened_at_ms: c.get()?,
            opened_by: c.get()?,
            closed_at_ms: c.get()?,
            closed_by: c.get()?,
            root_cause: c.get()?,
        })
    }
}

/// One step on an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    pub at_ms: i64,
    pub actor: String,
    /// `open`, `revoke`, `isolate`, `release`, `lockdown`, `note`, `notify`, `close`,
    /// `report`.
    pub step: String,
    /// What it acted on (`api_keys:all`, `workflow:NAME`, …), empty for none.
    pub target: String,
    pub detail: String,
    /// How many things it touched (or, in a drill, would have).
    pub affected: Option<i64>,
}

impl FromRow for TimelineEntry {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(TimelineEntry {
            at_ms: c.get()?,
            actor: c.get()?,
            step: c.get()?,
            target: c.get()?,
            detail: c.get()?,
            affected: c.get()?,
        })
    }
}

/// A notice sent to a party (`stockade incident notify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub party: String,
    pub notified_at_ms: i64,
    pub actor: String,
    pub note: String,
}

impl FromRow for Notice {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Notice {
            party: c.get()?,
            notified_at_ms: c.get()?,
            actor: c.get()?,
            note: c.get()?,
        })
    }
}

/// A control in force (isolation or lockdown), drill rows included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    /// `lockdown`, `workflow` or `connection`.
    pub kind: String,
    /// The workflow or connection (empty for the lockdown).
    pub name: String,
    /// A drill's control is recorded, never enforced.
    pub drill: bool,
    pub incident_id: i64,
    pub since_ms: i64,
    pub actor: String,
}

impl FromRow for Control {
    fn from_row(c: &mut Columns<'_>) -> stockade_store::Result<Self> {
        Ok(Control {
            kind: c.get()?,
            name: c.get()?,
            drill: c.get::<i64>()? != 0,
            incident_id: c.get()?,
            since_ms: c.get()?,
            actor: c.get()?,
        })
    }
}

/// Everything known about one incident, as `show`, the report and the console render it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentView {
    pub incident: Incident,
    pub timeline: Vec<TimelineEntry>,
    pub notices: Vec<Notice>,
    /// Controls of this incident still in force.
    pub controls: Vec<Control>,
    /// The notification deadlines, as of `as_of_ms`.
    pub deadlines: Vec<Deadline>,
    pub as_of_ms: i64,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentSummary {
    pub incident: Incident,
    pub deadlines: Vec<Deadline>,
    pub as_of_ms: i64,
}

pub(crate) const GET: &str = "SELECT id, title, severity, drill, detected_at_ms, opened_at_ms, opened_by, closed_at_ms, closed_by, root_cause FROM incidents WHERE id = $1";
const LIST: &str = "SELECT id, title, severity, drill, detected_at_ms, opened_at_ms, opened_by, closed_at_ms, closed_by, root_cause FROM incidents ORDER BY id DESC";
pub(crate) const OPEN: &str = "SELECT id, title, severity, drill, detected_at_ms, opened_at_ms, opened_by, closed_at_ms, closed_by, root_cause FROM incidents WHERE closed_at_ms IS NULL ORDER BY id";
const TIMELINE: &str = "SELECT at_ms, actor, step, target, detail, affected FROM incident_timeline WHERE incident_id = $1 ORDER BY id";
const NOTICES: &str = "SELECT party, notified_at_ms, actor, note FROM incident_notices WHERE incident_id = $1 ORDER BY notified_at_ms, party";
pub(crate) const CONTROLS: &str = "SELECT kind, name, drill, incident_id, since_ms, actor FROM incident_controls ORDER BY kind, name, drill";

/// One incident by id.
pub async fn get(store: &Store, id: i64) -> Result<Incident> {
    store
        .query_one_as::<Incident>(GET, sql_params![id])
        .await?
        .ok_or_else(|| {
            IncidentError::NotFound(format!("no incident #{id}; see `stockade incident list`"))
        })
}

/// Every incident and drill, newest first, with its deadlines as of now.
pub async fn list(store: &Store) -> Result<Vec<IncidentSummary>> {
    let now = stockade_core::time::now_ms();
    let incidents: Vec<Incident> = store.query_as(LIST, vec![]).await?;
    let mut out = Vec::with_capacity(incidents.len());
    for incident in incidents {
        let notices: Vec<Notice> = store.query_as(NOTICES, sql_params![incident.id]).await?;
        out.push(IncidentSummary {
            deadlines: deadline::deadlines(&incident, &notices, now),
            incident,
            as_of_ms: now,
        });
    }
    Ok(out)
}

/// One incident with its timeline, notices, controls and deadlines as of now.
pub async fn show(store: &Store, id: i64) -> Result<IncidentView> {
    show_at(store, id, stockade_core::time::now_ms()).await
}

/// [`show`] as of `now_ms` (tests, a report for a given time).
pub async fn show_at(store: &Store, id: i64, now_ms: i64) -> Result<IncidentView> {
    let incident = get(store, id).await?;
    let timeline = store.query_as(TIMELINE, sql_params![id]).await?;
    let notices: Vec<Notice> = store.query_as(NOTICES, sql_params![id]).await?;
    let controls: Vec<Control> = store.query_as(CONTROLS, vec![]).await?;
    Ok(IncidentView {
        deadlines: deadline::deadlines(&incident, &notices, now_ms),
        controls: controls
            .into_iter()
            .filter(|c| c.incident_id == id)
            .collect(),
        incident,
        timeline,
        notices,
        as_of_ms: now_ms,
    })
}

/// Every control in force (drill rows included), as the console's overview shows them.
pub async fn controls(store: &Store) -> Result<Vec<Control>> {
    Ok(store.query_as(CONTROLS, vec![]).await?)
}
