//! The incident actions: open, revoke, isolate, release, lockdown, note, notify, close,
//! and the record of a report's export. The CLI and the console call these, with the
//! acting [`Actor`].
//!
//! Every step writes, in one audited commit: its change (a control row, a notice, the
//! incident's own row), its timeline entry and an `incident` event for the alert
//! pipeline (to the security channel). Revocations go through the services that own
//! the thing revoked (API keys and sessions through `stockade-access`, credentials
//! through the vault, a connection through `stockade-sync`), each audited there, and the
//! incident's timeline entry follows with the counts. A refusal (an unknown name, a
//! second lockdown, a release of what is not isolated) changes nothing; it writes one
//! audit row, `incident.refused`, naming the step and why, never the name typed.
//!
//! In a drill, nothing real is revoked and no control is enforced: revocations record
//! what they would have touched (with counts), and isolation and lockdown rows are
//! written with `drill = 1`, which no process enforces.

use std::sync::Arc;

use serde::Serialize;
use stockade_access::Access;
use stockade_core::Actor;
use stockade_core::event::{Event, EventColumns};
use stockade_core::time::now_ms;
use stockade_store::{
    AuditDetails, AuditEntry, Change, Expect, Mutation, Store, StoreError, sql_params,
};
use stockade_sync::connections::{self, ConnectionStatus};
use stockade_vault::Vault;

use crate::model::{self, Control, Incident, Party, Severity};
use crate::text;
use crate::{IncidentError, Result};

/// What `open` needs.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub severity: Severity,
    /// A drill exercises every step without revoking or locking anything real.
    pub drill: bool,
    /// When the incident was detected (the deadlines count from here); `None`: now.
    pub detected_at_ms: Option<i64>,
}

/// All of a kind, or one by name or id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    One(String),
}

/// What `revoke` revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A credential of the credential store, by name.
    Credential(String),
    /// A connection's marketplace tokens (its stored credentials): it is paused and needs
    /// re-authorization (`stockade connection edit`). Its orders stay (evidence).
    Connection(String),
    /// API keys: all active ones, or one by id or name.
    ApiKeys(Scope),
    /// Sessions: all, or those of one user (by email or id).
    Sessions(Scope),
}

/// What `isolate` quarantines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolate {
    Workflow(String),
    Connection(String),
}

/// What `release` lifts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    Workflow(String),
    Connection(String),
    Lockdown,
}

/// What an action did (or, in a drill, would have done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    pub incident_id: i64,
    pub drill: bool,
    pub step: &'static str,
    pub target: String,
    /// How many things it touched (in a drill: would have touched).
    pub affected: i64,
    /// One line for the operator.
    pub summary: String,
}

/// The incident kit over one access service (its store and vault).
#[derive(Debug, Clone)]
pub struct IncidentKit {
    access: Arc<Access>,
}

const INSERT_INCIDENT: &str =
    "INSERT INTO incidents (id, title, severity, drill, detected_at_ms, opened_at_ms, opened_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_STEP: &str =
    "INSERT INTO incident_timeline (incident_id, at_ms, actor, step, target, detail, affected)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_CONTROL: &str =
    "INSERT INTO incident_controls (kind, name, drill, incident_id, since_ms, actor)
     VALUES ($1, $2, $3, $4, $5, $6)";
const DELETE_CONTROL: &str =
    "DELETE FROM incident_controls WHERE kind = $1 AND name = $2 AND drill = $3";
const CLOSE: &str = "UPDATE incidents SET closed_at_ms = $2, closed_by = $3, root_cause = $4
     WHERE id = $1 AND closed_at_ms IS NULL";
const NOTICE: &str =
    "INSERT INTO incident_notices (incident_id, party, notified_at_ms, actor, note)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (incident_id, party) DO UPDATE SET notified_at_ms = excluded.notified_at_ms,
        actor = excluded.actor, note = excluded.note";

/// One timeline step's statements: the step and its alert event.
struct Step<'a> {
    incident: &'a Incident,
    step: &'static str,
    target: String,
    detail: String,
    affected: Option<i64>,
}

impl IncidentKit {
    pub fn new(access: Arc<Access>) -> IncidentKit {
        IncidentKit { access }
    }

    pub fn store(&self) -> &Store {
        self.access.store()
    }

    fn vault(&self) -> &Arc<Vault> {
        self.access.vault()
    }

    /// Open an incident (or a drill) and alert the security channel.
    pub async fn open(&self, actor: &Actor, new: NewIncident) -> Result<Incident> {
        let title = match text::clean(&new.title, text::TITLE) {
            Ok(t) => t,
            Err(p) => {
                return Err(self
                    .refuse(actor, "open", format!("the title is refused: {p}"))
                    .await);
            }
        };
        let now = now_ms();
        let detected = new.detected_at_ms.unwrap_or(now);
        if detected > now + 60_000 {
            return Err(self
                .refuse(actor, "open", "the detection time is in the future; give the time it was detected (RFC 3339, e.g. 2026-03-01T08:30:00Z)".into())
                .await);
        }
        let store = self.store();
        // Ids are small numbers an operator types; a concurrent open takes the next one.
        for _ in 0..3 {
            let id = store
                .query_one_as::<i64>("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents", vec![])
                .await?
                .unwrap_or(1);
            let incident = Incident {
                id,
                title: title.clone(),
                severity: new.severity.as_str().to_owned(),
                drill: new.drill,
                detected_at_ms: detected,
                opened_at_ms: now,
                opened_by: actor.to_string(),
                closed_at_ms: None,
                closed_by: None,
                root_cause: None,
            };
            let insert = Mutation::Sql {
                statement: INSERT_INCIDENT,
                params: sql_params![
                    id,
                    title.clone(),
                    new.severity.as_str(),
                    new.drill,
                    detected,
                    now,
                    actor.to_string()
                ],
                expect: Expect::One("new incident"),
            };
            let detail = format!(
                "{} {} opened; detected {}",
                if new.drill { "drill" } else { "incident" },
                new.severity.as_str(),
                stockade_core::time::format_rfc3339_s(detected)
            );
            let step = Step {
                incident: &incident,
                step: "open",
                target: String::new(),
                detail,
                affected: None,
            };
            let details = AuditDetails::new()
                .str("severity", new.severity.as_str())
                .bool("drill", new.drill)
                .int("detected_at_ms", detected);
            match self
                .commit_step(actor, step, "incident.open", details, vec![insert])
                .await
            {
                Ok(()) => return Ok(incident),
                Err(IncidentError::Store(StoreError::Database(_) | StoreError::Conflict(_)))
                    if store
                        .count(
                            "SELECT COUNT(*) FROM incidents WHERE id = $1",
                            sql_params![id],
                        )
                        .await?
                        > 0 =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(IncidentError::Refused(
            "incidents are being opened concurrently; try again".into(),
        ))
    }

    /// Revoke credentials, a connection's tokens, API keys or sessions at once (a drill
    /// counts what it would revoke and revokes nothing). `incident`: the open incident it
    /// belongs to (`None`: the only open one).
    pub async fn revoke(
        &self,
        actor: &Actor,
        incident: Option<i64>,
        target: RevokeTarget,
    ) -> Result<ActionOutcome> {
        let inc = self.current(actor, "revoke", incident).await?;
        let drill = inc.drill;
        let (target_text, affected, detail) = match &target {
            RevokeTarget::Credential(name) => {
                let exists = self
                    .vault()
                    .list_credentials()
                    .await?
                    .iter()
                    .any(|c| &c.name == name);
                if !exists {
                    return Err(self
                        .refuse(actor, "revoke", format!("no credential named {name:?}; see `stockade credential list`; nothing was revoked"))
                        .await);
                }
                if !drill {
                    self.vault().delete_credential(name, actor).await?;
                }
                (
                    format!("credential:{name}"),
                    1,
                    "credential deleted from the credential store".to_owned(),
                )
            }
            RevokeTarget::Connection(name) => {
                let conn = match connections::get(self.store(), name).await {
                    Ok(c) if c.status != ConnectionStatus::Revoked => c,
                    Ok(_) => {
                        return Err(self
                            .refuse(actor, "revoke", format!("connection {name:?} is already revoked and purged; nothing was revoked"))
                            .await);
                    }
                    Err(stockade_sync::SyncError::UnknownConnection(_)) => {
                        return Err(self
                            .refuse(actor, "revoke", format!("no connection named {name:?}; see `stockade connection list`; nothing was revoked"))
                            .await);
                    }
                    Err(e) => return Err(e.into()),
                };
                let prefix = format!("connection/{}/", conn.name);
                let creds: Vec<String> = self
                    .vault()
                    .list_credentials()
                    .await?
                    .into_iter()
                    .map(|c| c.name)
                    .filter(|n| n.starts_with(&prefix))
                    .collect();
                if !drill {
                    if conn.status == ConnectionStatus::Active {
                        connections::set_status(
                            self.store(),
                            name,
                            ConnectionStatus::Paused,
                            actor,
                        )
                        .await?;
                    }
                    for c in &creds {
                        self.vault().delete_credential(c, actor).await?;
                    }
                }
                (
                    format!("connection:{name}"),
                    creds.len() as i64,
                    format!(
                        "connection paused and its {} marketplace token(s) deleted; orders kept as evidence; re-authorize with `stockade connection edit`",
                        creds.len()
                    ),
                )
            }
            RevokeTarget::ApiKeys(scope) => {
                let active: Vec<_> = self
                    .access
                    .api_keys()
                    .await?
                    .into_iter()
                    .filter(|k| k.revoked_at_ms.is_none())
                    .collect();
                let chosen: Vec<_> = match scope {
                    Scope::All => active,
                    Scope::One(key) => {
                        let found = active
                            .iter()
                            .find(|k| &k.id == key)
                            .or_else(|| active.iter().find(|k| &k.name == key))
                            .cloned();
                        match found {
                            Some(k) => vec![k],
                            None => {
                                return Err(self
                                    .refuse(actor, "revoke", "no active API key with that id or name; see `stockade apikey list`; nothing was revoked".into())
                                    .await);
                            }
                        }
                    }
                };
                if !drill {
                    for k in &chosen {
                        self.access.revoke_api_key(&k.id, actor).await?;
                    }
                }
                let target = match scope {
                    Scope::All => "api_keys:all".to_owned(),
                    Scope::One(_) => {
                        format!("api_key:{}", chosen.first().map_or("", |k| k.id.as_str()))
                    }
                };
                (
                    target,
                    chosen.len() as i64,
                    "API key(s) revoked; refused from the next request".to_owned(),
                )
            }
            RevokeTarget::Sessions(scope) => {
                let users = self.access.users().await?;
                let chosen: Vec<_> = match scope {
                    Scope::All => users,
                    Scope::One(who) => {
                        let who_l = who.to_ascii_lowercase();
                        match users.into_iter().find(|u| u.id == *who || u.email == who_l) {
                            Some(u) => vec![u],
                            None => {
                                return Err(self
                                    .refuse(actor, "revoke", "no user with that email or id; see `stockade user list`; nothing was revoked".into())
                                    .await);
                            }
                        }
                    }
                };
                let mut n = 0;
                for u in &chosen {
                    let open = self
                        .store()
                        .count(
                            "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND expires_at_ms > $2",
                            sql_params![u.id.clone(), now_ms()],
                        )
                        .await?;
                    // A user with no session is left alone (no empty `session.end_all`).
                    n += if drill || open == 0 {
                        open
                    } else {
                        self.access.revoke_user_sessions(&u.id, actor).await?
                    };
                }
                let target = match scope {
                    Scope::All => "sessions:all".to_owned(),
                    Scope::One(_) => format!(
                        "sessions:user:{}",
                        chosen.first().map_or("", |u| u.id.as_str())
                    ),
                };
                (
                    target,
                    n,
                    "session(s) ended; those users sign in again (with MFA)".to_owned(),
                )
            }
        };
        let detail = if drill {
            format!("drill: would revoke {affected} ({detail}); nothing was revoked")
        } else {
            detail
        };
        let step = Step {
            incident: &inc,
            step: "revoke",
            target: target_text.clone(),
            detail: detail.clone(),
            affected: Some(affected),
        };
        let details = AuditDetails::new()
            .str("target", &target_text)
            .int("affected", affected)
            .bool("drill", drill);
        self.commit_step(actor, step, "incident.revoke", details, vec![])
            .await?;
        Ok(ActionOutcome {
            incident_id: inc.id,
            drill,
            step: "revoke",
            target: target_text,
            affected,
            summary: detail,
        })
    }

    /// Quarantine a workflow or connection until [`IncidentKit::release`]: no executions,
    /// no egress, its webhooks answered 503 (every process within a second).
    pub async fn isolate(
        &self,
        actor: &Actor,
        incident: Option<i64>,
        what: Isolate,
    ) -> Result<ActionOutcome> {
        let inc = self.current(actor, "isolate", incident).await?;
        let (kind, name) = match &what {
            Isolate::Workflow(n) => ("workflow", n.clone()),
            Isolate::Connection(n) => ("connection", n.clone()),
        };
        let exists = match &what {
            Isolate::Workflow(n) => stockade_workflows::registry::workflow(self.store(), n)
                .await
                .map_err(|e| IncidentError::Other(e.to_string()))?
                .is_some(),
            Isolate::Connection(n) => match connections::get(self.store(), n).await {
                Ok(_) => true,
                Err(stockade_sync::SyncError::UnknownConnection(_)) => false,
                Err(e) => return Err(e.into()),
            },
        };
        if !exists {
            return Err(self
                .refuse(
                    actor,
                    "isolate",
                    format!("no {kind} named {name:?}; nothing was isolated"),
                )
                .await);
        }
        let in_force = model::controls(self.store()).await?;
        if in_force
            .iter()
            .any(|c| c.kind == kind && c.name == name && c.drill == inc.drill)
        {
            return Err(self
                .refuse(
                    actor,
                    "isolate",
                    format!("{kind} {name:?} is already isolated; nothing was changed"),
                )
                .await);
        }
        let now = now_ms();
        let insert = Mutation::Sql {
            statement: INSERT_CONTROL,
            params: sql_params![
                kind,
                name.clone(),
                inc.drill,
                inc.id,
                now,
                actor.to_string()
            ],
            expect: Expect::One("new control"),
        };
        let target = format!("{kind}:{name}");
        let detail = if inc.drill {
            format!("drill: {kind} isolation recorded, not enforced")
        } else if kind == "workflow" {
            "workflow isolated: no executions, no egress, webhooks answered 503".to_owned()
        } else {
            "connection isolated: no pushes or polls, no egress, webhooks answered 503".to_owned()
        };
        let step = Step {
            incident: &inc,
            step: "isolate",
            target: target.clone(),
            detail: detail.clone(),
            affected: Some(1),
        };
        let details = AuditDetails::new()
            .str("target", &target)
            .bool("drill", inc.drill);
        self.commit_step(actor, step, "incident.isolate", details, vec![insert])
            .await?;
        self.store().controls_changed().await?;
        Ok(ActionOutcome {
            incident_id: inc.id,
            drill: inc.drill,
            step: "isolate",
            target,
            affected: 1,
            summary: detail,
        })
    }

    /// Put the instance in lockdown: read-only, egress off except alerts, only admins.
    pub async fn lockdown(&self, actor: &Actor, incident: Option<i64>) -> Result<ActionOutcome> {
        let inc = self.current(actor, "lockdown", incident).await?;
        let in_force = model::controls(self.store()).await?;
        if let Some(c) = in_force
            .iter()
            .find(|c| c.kind == "lockdown" && c.drill == inc.drill)
        {
            return Err(self
                .refuse(
                    actor,
                    "lockdown",
                    format!(
                        "the instance is already in {}lockdown since {} (incident #{}); nothing was changed",
                        if c.drill { "drill " } else { "" },
                        stockade_core::time::format_rfc3339_s(c.since_ms),
                        c.incident_id
                    ),
                )
                .await);
        }
        let now = now_ms();
        // What it holds back (for the timeline): the users it keeps out.
        let users = self.access.users().await?;
        let kept_out = users
            .iter()
            .filter(|u| !u.disabled && u.role != stockade_access::Role::Admin)
            .count() as i64;
        let insert = Mutation::Sql {
            statement: INSERT_CONTROL,
            params: sql_params!["lockdown", "", inc.drill, inc.id, now, actor.to_string()],
            expect: Expect::One("new control"),
        };
        let detail = if inc.drill {
            format!(
                "drill: lockdown recorded, not enforced; it would keep {kept_out} non-admin user(s) out and stop egress"
            )
        } else {
            format!(
                "lockdown: read-only, egress off except alerts, {kept_out} non-admin user(s) kept out; webhooks still stored"
            )
        };
        let step = Step {
            incident: &inc,
            step: "lockdown",
            target: "instance".into(),
            detail: detail.clone(),
            affected: Some(kept_out),
        };
        let details = AuditDetails::new()
            .bool("drill", inc.drill)
            .int("users_kept_out", kept_out);
        self.commit_step(actor, step, "incident.lockdown", details, vec![insert])
            .await?;
        self.store().controls_changed().await?;
        Ok(ActionOutcome {
            incident_id: inc.id,
            drill: inc.drill,
            step: "lockdown",
            target: "instance".into(),
            affected: kept_out,
            summary: detail,
        })
    }

    /// Lift an isolation or the lockdown. `incident`: the incident whose control it is
    /// (`None`: whichever holds it, a real one before a drill's).
    pub async fn release(
        &self,
        actor: &Actor,
        incident: Option<i64>,
        what: Release,
    ) -> Result<ActionOutcome> {
        let (kind, name) = match &what {
            Release::Workflow(n) => ("workflow", n.clone()),
            Release::Connection(n) => ("connection", n.clone()),
            Release::Lockdown => ("lockdown", String::new()),
        };
        let in_force = model::controls(self.store()).await?;
        let mut held: Vec<&Control> = in_force
            .iter()
            .filter(|c| c.kind == kind && c.name == name)
            .filter(|c| incident.is_none_or(|id| c.incident_id == id))
            .collect();
        held.sort_by_key(|c| c.drill);
        let Some(control) = held.first().copied() else {
            let what = if kind == "lockdown" {
                "the instance is not in lockdown".to_owned()
            } else {
                format!("{kind} {name:?} is not isolated")
            };
            return Err(self
                .refuse(actor, "release", format!("{what}; nothing was changed"))
                .await);
        };
        let inc = model::get(self.store(), control.incident_id).await?;
        let delete = Mutation::Sql {
            statement: DELETE_CONTROL,
            params: sql_params![kind, name.clone(), control.drill],
            expect: Expect::One("control in force"),
        };
        let target = if kind == "lockdown" {
            "lockdown".to_owned()
        } else {
            format!("{kind}:{name}")
        };
        let detail = if control.drill {
            format!("drill: {target} released")
        } else if kind == "lockdown" {
            "lockdown lifted: sign-in, changes, egress, pushes and workflows resume".to_owned()
        } else {
            format!("{target} released: it runs and sends again")
        };
        let step = Step {
            incident: &inc,
            step: "release",
            target: target.clone(),
            detail: detail.clone(),
            affected: Some(1),
        };
        let details = AuditDetails::new()
            .str("target", &target)
            .bool("drill", control.drill);
        self.commit_step(actor, step, "incident.release", details, vec![delete])
            .await?;
        self.store().controls_changed().await?;
        Ok(ActionOutcome {
            incident_id: inc.id,
            drill: control.drill,
            step: "release",
            target,
            affected: 1,
            summary: detail,
        })
    }

    /// Add a note to the timeline (no personal data, no secrets).
    pub async fn note(&self, actor: &Actor, id: i64, note: &str) -> Result<()> {
        let inc = model::get(self.store(), id).await?;
        let note = match text::clean(note, text::NOTE) {
            Ok(t) => t,
            Err(p) => {
                return Err(self
                    .refuse(actor, "note", format!("the note is refused: {p}"))
                    .await);
            }
        };
        let step = Step {
            incident: &inc,
            step: "note",
            target: String::new(),
            detail: note,
            affected: None,
        };
        self.commit_step(actor, step, "incident.note", AuditDetails::new(), vec![])
            .await
    }

    /// Record that the notice to `party` was sent (when, by whom, a short note).
    pub async fn notify(&self, actor: &Actor, id: i64, party: Party, note: &str) -> Result<()> {
        let inc = model::get(self.store(), id).await?;
        let note = match text::clean(note, text::NOTICE_NOTE) {
            Ok(t) => t,
            Err(p) => {
                return Err(self
                    .refuse(actor, "notify", format!("the note is refused: {p}"))
                    .await);
            }
        };
        let now = now_ms();
        let upsert = Mutation::Sql {
            statement: NOTICE,
            params: sql_params![id, party.as_str(), now, actor.to_string(), note.clone()],
            expect: Expect::One("notice"),
        };
        let due = inc.detected_at_ms + crate::deadline::NOTIFY_WITHIN_H * 3_600_000;
        let detail = format!(
            "{} notified ({}): {note}",
            party.label(),
            if now <= due {
                "in time"
            } else {
                "after the deadline"
            }
        );
        let step = Step {
            incident: &inc,
            step: "notify",
            target: format!("party:{}", party.as_str()),
            detail,
            affected: None,
        };
        let details = AuditDetails::new()
            .str("party", party.as_str())
            .bool("in_time", now <= due);
        self.commit_step(actor, step, "incident.notify", details, vec![upsert])
            .await
    }

    /// Close an incident with its root cause. Refused while one of its controls is in
    /// force (release it first) or when it is closed already.
    pub async fn close(&self, actor: &Actor, id: i64, root_cause: &str) -> Result<Incident> {
        let inc = model::get(self.store(), id).await?;
        if !inc.is_open() {
            return Err(self
                .refuse(
                    actor,
                    "close",
                    format!("incident #{id} is closed already; nothing was changed"),
                )
                .await);
        }
        let root = match text::clean(root_cause, text::NOTE) {
            Ok(t) => t,
            Err(p) => {
                return Err(self
                    .refuse(actor, "close", format!("the root cause is refused: {p}"))
                    .await);
            }
        };
        let held: Vec<String> = model::controls(self.store())
            .await?
            .into_iter()
            .filter(|c| c.incident_id == id)
            .map(|c| {
                if c.kind == "lockdown" {
                    "--lockdown".to_owned()
                } else {
                    format!("--{} {}", c.kind, c.name)
                }
            })
            .collect();
        if !held.is_empty() {
            return Err(self
                .refuse(
                    actor,
                    "close",
                    format!(
                        "incident #{id} still holds controls in force; release them first (`stockade incident release {}`); nothing was changed",
                        held.join("`, `stockade incident release ")
                    ),
                )
                .await);
        }
        let now = now_ms();
        let update = Mutation::Sql {
            statement: CLOSE,
            params: sql_params![id, now, actor.to_string(), root.clone()],
            expect: Expect::One("open incident"),
        };
        let step = Step {
            incident: &inc,
            step: "close",
            target: String::new(),
            detail: format!("closed; root cause: {root}"),
            affected: None,
        };
        self.commit_step(
            actor,
            step,
            "incident.close",
            AuditDetails::new(),
            vec![update],
        )
        .await?;
        model::get(self.store(), id).await
    }

    /// Record that the report was exported (the timeline shows who took it, and when).
    pub async fn record_report(&self, actor: &Actor, id: i64, format: &str) -> Result<()> {
        let inc = model::get(self.store(), id).await?;
        let format = if format == "json" { "json" } else { "md" };
        let step = Step {
            incident: &inc,
            step: "report",
            target: format!("format:{format}"),
            detail: format!("report exported ({format})"),
            affected: None,
        };
        let details = AuditDetails::new().str("format", format);
        self.commit_step(actor, step, "incident.report", details, vec![])
            .await
    }

    /// The open incident an action belongs to: `id`, or the only open one.
    async fn current(
        &self,
        actor: &Actor,
        step: &'static str,
        id: Option<i64>,
    ) -> Result<Incident> {
        if let Some(id) = id {
            let inc = match model::get(self.store(), id).await {
                Ok(i) => i,
                Err(e) => return Err(self.refuse(actor, step, e.to_string()).await),
            };
            if !inc.is_open() {
                return Err(self
                    .refuse(
                        actor,
                        step,
                        format!(
                            "incident #{id} is closed; open a new one (`stockade incident open`)"
                        ),
                    )
                    .await);
            }
            return Ok(inc);
        }
        let open: Vec<Incident> = self.store().query_as(model::OPEN, vec![]).await?;
        match open.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(self
                .refuse(actor, step, "no incident is open: open one first (`stockade incident open --title … --severity …`); nothing was changed".into())
                .await),
            many => Err(self
                .refuse(
                    actor,
                    step,
                    format!(
                        "{} incidents are open ({}): say which with --incident ID; nothing was changed",
                        many.len(),
                        many.iter().map(|i| format!("#{}", i.id)).collect::<Vec<_>>().join(", ")
                    ),
                )
                .await),
        }
    }

    /// One step: `mutations`, its timeline row and its alert event, audited as `action`.
    async fn commit_step(
        &self,
        actor: &Actor,
        step: Step<'_>,
        action: &str,
        details: AuditDetails,
        mutations: Vec<Mutation>,
    ) -> Result<()> {
        let now = now_ms();
        let inc = step.incident;
        let mut steps = mutations;
        steps.push(Mutation::Sql {
            statement: INSERT_STEP,
            params: sql_params![
                inc.id,
                now,
                actor.to_string(),
                step.step,
                step.target.clone(),
                step.detail.clone(),
                step.affected
            ],
            expect: Expect::One("timeline entry"),
        });
        steps.push(stockade_store::events::append(
            now,
            &alert_event(inc, step.step, &step.target, step.affected),
        ));
        let details = details.str("step", step.step).bool("drill", inc.drill);
        let change = Change::new(
            Mutation::Many {
                steps,
                guard: false,
            },
            AuditEntry::new(action, format!("incident:{}", inc.id), details),
        );
        self.store().commit(actor, vec![change]).await?;
        Ok(())
    }

    /// Audit a refused action (nothing else is written) and return its error.
    async fn refuse(&self, actor: &Actor, step: &'static str, why: String) -> IncidentError {
        let change = Change::event(AuditEntry::new(
            "incident.refused",
            "incident",
            AuditDetails::new().str("step", step),
        ));
        if let Err(e) = self.store().commit(actor, vec![change]).await {
            tracing::error!("could not audit a refused incident action: {e}");
        }
        IncidentError::Refused(why)
    }
}

/// The alert event of a step: ids, names of things and counts only (never free text).
fn alert_event(inc: &Incident, step: &str, target: &str, affected: Option<i64>) -> Event {
    let mut detail = serde_json::json!({
        "incident": inc.id,
        "severity": inc.severity,
        "drill": inc.drill,
        "step": step,
    });
    if !target.is_empty() {
        detail["target"] = serde_json::Value::from(target);
    }
    if let Some(n) = affected {
        detail["affected"] = serde_json::Value::from(n);
    }
    Event::Other(EventColumns {
        source: "incident".into(),
        kind: step.to_owned(),
        caller: "incident".into(),
        host: String::new(),
        path_template: String::new(),
        operation: "incident".into(),
        status: None,
        detail: detail.to_string(),
    })
}
