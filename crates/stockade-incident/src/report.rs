//! The report of an incident for marketplaces and clients: the timeline (times in UTC,
//! ISO 8601, and in the console's zone), the actions, the notification deadlines and
//! whether each was met, the root cause. Markdown for people, JSON for tools.

use chrono::TimeZone;
use serde_json::{Value, json};
use stockade_core::time::format_rfc3339_s;

use crate::deadline::DeadlineState;
use crate::model::IncidentView;

/// A time in UTC and, when a zone is given (and is not UTC), in that zone.
fn when(ms: i64, zone: Option<chrono_tz::Tz>) -> String {
    let utc = format_rfc3339_s(ms);
    match zone.and_then(|z| z.timestamp_millis_opt(ms).single().map(|t| (z, t))) {
        Some((z, t)) if z != chrono_tz::UTC => {
            format!("{utc} ({} {})", t.format("%Y-%m-%d %H:%M:%S"), z.name())
        }
        _ => utc,
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The Markdown report. `zone`: the console's time zone, shown next to UTC.
pub fn markdown(v: &IncidentView, zone: Option<chrono_tz::Tz>) -> String {
    let i = &v.incident;
    let mut out = String::new();
    let kind = if i.drill { "Drill" } else { "Incident" };
    out.push_str(&format!("# {kind} #{}: {}\n\n", i.id, i.title));
    out.push_str(&format!("- Severity: {}\n", i.severity));
    out.push_str(&format!(
        "- Status: {}\n",
        if i.is_open() { "open" } else { "closed" }
    ));
    out.push_str(&format!("- Detected: {}\n", when(i.detected_at_ms, zone)));
    out.push_str(&format!(
        "- Opened: {} by {}\n",
        when(i.opened_at_ms, zone),
        i.opened_by
    ));
    if let Some(c) = i.closed_at_ms {
        out.push_str(&format!(
            "- Closed: {} by {}\n",
            when(c, zone),
            i.closed_by.as_deref().unwrap_or("?")
        ));
    }
    out.push_str(&format!(
        "- Root cause: {}\n",
        i.root_cause.as_deref().unwrap_or("(not yet established)")
    ));
    out.push_str(&format!("- Report as of: {}\n\n", when(v.as_of_ms, zone)));

    out.push_str("## Notification deadlines\n\n");
    out.push_str("| Party | Due | Basis | Status | Met |\n|---|---|---|---|---|\n");
    for d in &v.deadlines {
        let met = match d.met() {
            Some(true) => "yes",
            Some(false) => "no",
            None if d.state == DeadlineState::Drill => "n/a (drill)",
            None => "pending",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {met} |\n",
            d.party.label(),
            when(d.due_at_ms, zone),
            cell(d.basis),
            cell(d.line().split_once(" — ").map_or("", |(_, t)| t)),
        ));
    }
    out.push_str("\n## Timeline\n\n| Time | Actor | Step | Target | Detail | Count |\n|---|---|---|---|---|---|\n");
    for t in &v.timeline {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            when(t.at_ms, zone),
            cell(&t.actor),
            t.step,
            cell(&t.target),
            cell(&t.detail),
            t.affected.map_or_else(String::new, |n| n.to_string())
        ));
    }
    out.push_str("\n## Notices sent\n\n");
    if v.notices.is_empty() {
        out.push_str("None recorded.\n");
    }
    for n in &v.notices {
        out.push_str(&format!(
            "- {} at {} by {}: {}\n",
            n.party,
            when(n.notified_at_ms, zone),
            n.actor,
            n.note
        ));
    }
    out.push_str("\n## Controls still in force\n\n");
    if v.controls.is_empty() {
        out.push_str("None.\n");
    }
    for c in &v.controls {
        out.push_str(&format!(
            "- {}{} since {}{}\n",
            c.kind,
            if c.name.is_empty() {
                String::new()
            } else {
                format!(" {}", c.name)
            },
            when(c.since_ms, zone),
            if c.drill { " (drill)" } else { "" }
        ));
    }
    out
}

/// The JSON report (the same facts; times as RFC 3339 UTC and milliseconds).
pub fn json(v: &IncidentView) -> Value {
    let i = &v.incident;
    let t = |ms: i64| format_rfc3339_s(ms);
    json!({
        "id": i.id,
        "title": i.title,
        "severity": i.severity,
        "drill": i.drill,
        "status": if i.is_open() { "open" } else { "closed" },
        "detected_at": t(i.detected_at_ms),
        "opened_at": t(i.opened_at_ms),
        "opened_by": i.opened_by,
        "closed_at": i.closed_at_ms.map(t),
        "closed_by": i.closed_by,
        "root_cause": i.root_cause,
        "as_of": t(v.as_of_ms),
        "deadlines": v.deadlines.iter().map(|d| json!({
            "party": d.party.as_str(),
            "due_at": t(d.due_at_ms),
            "within_hours": d.within_h,
            "basis": d.basis,
            "state": d.state,
            "met": d.met(),
            "summary": d.line(),
        })).collect::<Vec<_>>(),
        "timeline": v.timeline.iter().map(|e| json!({
            "at": t(e.at_ms),
            "actor": e.actor,
            "step": e.step,
            "target": e.target,
            "detail": e.detail,
            "affected": e.affected,
        })).collect::<Vec<_>>(),
        "notices": v.notices.iter().map(|n| json!({
            "party": n.party,
            "at": t(n.notified_at_ms),
            "actor": n.actor,
            "note": n.note,
        })).collect::<Vec<_>>(),
        "controls_in_force": v.controls,
    })
}
