//! Every step of the plan against real databases: open, the deadlines, revoke (each kind
//! takes effect; unknown names refused with nothing written), isolate (egress refused for
//! that caller only), lockdown (once; egress off except alerts), release (only what is
//! held), note, notify, close, report; a drill revokes and locks nothing real and is
//! evidence; every step is audited and the chain verifies.

use std::net::{IpAddr, Ipv4Addr};

use stockade_access::{KeyRejection, Role};
use stockade_core::time::now_ms;
use stockade_core::{Environment, SecretString};
use stockade_egress::{Caller, EgressConfig, EgressError, Gateway, Request};
use stockade_incident::{
    DeadlineState, IncidentError, Isolate, NewIncident, Party, Release, RevokeTarget, Scope,
    Severity, last_drill, report,
};
use stockade_vault::{CredentialScopes, KeyOwner, NewCredential};

use crate::kit::{ADMIN, Env};

const HOUR_MS: i64 = 3_600_000;

fn new(title: &str, drill: bool, detected: Option<i64>) -> NewIncident {
    NewIncident {
        title: title.into(),
        severity: Severity::High,
        drill,
        detected_at_ms: detected,
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, IncidentError>, what: &str) -> String {
    match r {
        Err(IncidentError::Refused(m)) => m,
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Rows of the incident tables (a refusal must change none of them).
async fn rows(env: &Env) -> i64 {
    env.count(
        "SELECT (SELECT COUNT(*) FROM incidents) + (SELECT COUNT(*) FROM incident_timeline)
              + (SELECT COUNT(*) FROM incident_controls) + (SELECT COUNT(*) FROM incident_notices)",
    )
    .await
}

#[tokio::test]
async fn the_timeline_and_deadlines_sqlite() {
    timeline_and_deadlines(false).await;
}

#[tokio::test]
async fn the_timeline_and_deadlines_postgres() {
    timeline_and_deadlines(true).await;
}

async fn timeline_and_deadlines(pg: bool) {
    let Some(env) = Env::new(pg).await else {
        return;
    };
    let kit = &env.kit;
    // Nothing open: an action is refused, nothing written but the refusal's audit row.
    let msg = refused(
        kit.lockdown(&ADMIN, None).await,
        "lockdown without incident",
    );
    assert!(msg.contains("no incident is open"), "{msg}");
    assert_eq!(rows(&env).await, 0);
    assert_eq!(env.actions().await, ["incident.refused"]);

    // Text that looks like personal data or a secret is refused.
    for title in [
        "buyer jo@example.com complained",
        "leak ghp_0123456789abcdefghij",
        "x",
    ] {
        refused(kit.open(&ADMIN, new(title, false, None)).await, title);
    }
    assert_eq!(rows(&env).await, 0);

    let detected = now_ms() - 48 * 60_000;
    let inc = kit
        .open(
            &ADMIN,
            new("API key leaked in a ticket", false, Some(detected)),
        )
        .await
        .unwrap();
    assert_eq!(inc.id, 1);
    let v = stockade_incident::show_at(env.store(), inc.id, detected + 48 * 60_000)
        .await
        .unwrap();
    assert_eq!(v.deadlines[0].party, Party::Amazon);
    assert_eq!(v.deadlines[0].due_at_ms, detected + 24 * HOUR_MS);
    assert_eq!(
        v.deadlines[0].line(),
        "Amazon: notify within 24 h — 23 h 12 m left"
    );
    assert!(v.deadlines[1].line().contains("Amazon's 24 h applied"));
    // A day later, not notified: overdue.
    let late = stockade_incident::show_at(env.store(), inc.id, detected + 25 * HOUR_MS)
        .await
        .unwrap();
    assert!(matches!(
        late.deadlines[0].state,
        DeadlineState::Overdue { .. }
    ));
    assert!(late.deadlines[0].line().contains("overdue by 1 h"));

    kit.notify(
        &ADMIN,
        inc.id,
        Party::Amazon,
        "Sent to the security contact",
    )
    .await
    .unwrap();
    let v = stockade_incident::show(env.store(), inc.id).await.unwrap();
    assert!(matches!(v.deadlines[0].state, DeadlineState::Met { .. }));
    assert!(v.deadlines[0].line().contains("notified at"));
    assert!(matches!(
        v.deadlines[1].state,
        DeadlineState::Pending { .. }
    ));

    let before = rows(&env).await;
    refused(
        kit.note(&ADMIN, inc.id, "call back on +1 415 555 0100")
            .await,
        "a phone number",
    );
    assert_eq!(rows(&env).await, before, "a refused note wrote");
    kit.note(&ADMIN, inc.id, "Ticket CS-4412 deleted")
        .await
        .unwrap();

    // Lockdown holds until released; the incident cannot close while it does.
    kit.lockdown(&ADMIN, None).await.unwrap();
    let msg = refused(kit.lockdown(&ADMIN, None).await, "second lockdown");
    assert!(msg.contains("already in lockdown"), "{msg}");
    let msg = refused(
        kit.close(&ADMIN, inc.id, "Support macro fixed").await,
        "close while locked",
    );
    assert!(msg.contains("--lockdown"), "{msg}");
    kit.release(&ADMIN, None, Release::Lockdown).await.unwrap();
    let msg = refused(
        kit.release(&ADMIN, None, Release::Lockdown).await,
        "release twice",
    );
    assert!(msg.contains("not in lockdown"), "{msg}");
    let msg = refused(
        kit.release(&ADMIN, None, Release::Workflow("nightly".into()))
            .await,
        "release what is not isolated",
    );
    assert!(msg.contains("not isolated"), "{msg}");

    let closed = kit
        .close(&ADMIN, inc.id, "Support macro pasted the key; macro fixed")
        .await
        .unwrap();
    assert!(closed.closed_at_ms.is_some());
    refused(
        kit.close(&ADMIN, inc.id, "again and again").await,
        "close twice",
    );
    refused(
        kit.lockdown(&ADMIN, Some(inc.id)).await,
        "act on a closed incident",
    );

    kit.record_report(&ADMIN, inc.id, "md").await.unwrap();
    let v = stockade_incident::show(env.store(), inc.id).await.unwrap();
    let steps: Vec<&str> = v.timeline.iter().map(|t| t.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "open", "notify", "note", "lockdown", "release", "close", "report"
        ]
    );
    let md = report::markdown(&v, Some(chrono_tz::Asia::Shanghai));
    assert!(
        md.starts_with("# Incident #1: API key leaked in a ticket"),
        "{md}"
    );
    for want in [
        "| Amazon |",
        "notified at",
        "Ticket CS-4412 deleted",
        "Support macro pasted the key",
        "Asia/Shanghai",
        "| lockdown |",
    ] {
        assert!(md.contains(want), "{want} not in:\n{md}");
    }
    let json = report::json(&v);
    assert_eq!(json["deadlines"][0]["met"], true);
    assert_eq!(json["timeline"].as_array().unwrap().len(), 7);

    // Every step is audited, and alerted (an `incident` event each).
    let actions = env.actions().await;
    for a in [
        "incident.open",
        "incident.notify",
        "incident.note",
        "incident.lockdown",
        "incident.release",
        "incident.close",
        "incident.report",
        "incident.refused",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    assert_eq!(
        env.count("SELECT COUNT(*) FROM events WHERE source = 'incident'")
            .await,
        7
    );
    // No free text reaches an alert event.
    let details: Vec<String> = env
        .store()
        .query_as(
            "SELECT detail FROM events WHERE source = 'incident'",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        details
            .iter()
            .all(|d| !d.contains("ticket") && !d.contains("Ticket"))
    );
    assert!(
        env.store()
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    env.finish().await;
}

#[tokio::test]
async fn revocations_take_effect_at_once_sqlite() {
    revocations(false).await;
}

#[tokio::test]
async fn revocations_take_effect_at_once_postgres() {
    revocations(true).await;
}

async fn revocations(pg: bool) {
    let Some(env) = Env::new(pg).await else {
        return;
    };
    let (kit, access) = (&env.kit, &env.access);
    let (key, token) = access
        .create_api_key("ci", Role::Operator, None, &ADMIN)
        .await
        .unwrap();
    let (_, token2) = access
        .create_api_key("ops", Role::Operator, None, &ADMIN)
        .await
        .unwrap();
    let pw = SecretString::from("Correct-horse-battery-9".to_owned());
    access
        .add_user("ann@shop.example", Role::Operator, &pw, &ADMIN)
        .await
        .unwrap();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let s1 = access
        .login(ip, "ann@shop.example", &pw, None, true)
        .await
        .unwrap();
    assert!(
        access
            .session(s1.token.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    let secret = SecretString::from("supplier-secret-value".to_owned());
    access
        .vault()
        .put_credential(
            &NewCredential {
                name: "supplier-token",
                kind: "token",
                secret: &secret,
                owner: &KeyOwner::system(),
                scopes: &CredentialScopes::default(),
                account: None,
            },
            &ADMIN,
        )
        .await
        .unwrap();
    env.connection(1, "amz").await;

    let inc = kit
        .open(&ADMIN, new("Keys exposed", false, None))
        .await
        .unwrap();

    // Unknown names: refused, nothing revoked or written.
    let before = rows(&env).await;
    for target in [
        RevokeTarget::Credential("nope".into()),
        RevokeTarget::Connection("nope".into()),
        RevokeTarget::ApiKeys(Scope::One("nope".into())),
        RevokeTarget::Sessions(Scope::One("nobody@shop.example".into())),
    ] {
        refused(
            kit.revoke(&ADMIN, None, target.clone()).await,
            &format!("{target:?}"),
        );
    }
    assert_eq!(rows(&env).await, before);
    assert!(
        access
            .authenticate_api_key(token.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );

    // One API key: refused from the next request, the other still works.
    let out = kit
        .revoke(
            &ADMIN,
            Some(inc.id),
            RevokeTarget::ApiKeys(Scope::One(key.id.clone())),
        )
        .await
        .unwrap();
    assert_eq!(out.affected, 1);
    assert!(matches!(
        access
            .authenticate_api_key(token.expose_secret())
            .await
            .unwrap(),
        Err(KeyRejection::Revoked)
    ));
    assert!(
        access
            .authenticate_api_key(token2.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
    let out = kit
        .revoke(&ADMIN, None, RevokeTarget::ApiKeys(Scope::All))
        .await
        .unwrap();
    assert_eq!(out.affected, 1);
    assert!(
        access
            .authenticate_api_key(token2.expose_secret())
            .await
            .unwrap()
            .is_err()
    );

    // Sessions of one user end.
    let out = kit
        .revoke(
            &ADMIN,
            None,
            RevokeTarget::Sessions(Scope::One("ann@shop.example".into())),
        )
        .await
        .unwrap();
    assert_eq!(out.affected, 1);
    assert!(
        access
            .session(s1.token.expose_secret())
            .await
            .unwrap()
            .is_none()
    );
    // The target names the user by id, never by email.
    assert!(
        out.target.starts_with("sessions:user:usr_"),
        "{}",
        out.target
    );

    // A credential leaves the store.
    kit.revoke(
        &ADMIN,
        None,
        RevokeTarget::Credential("supplier-token".into()),
    )
    .await
    .unwrap();
    assert!(access.vault().list_credentials().await.unwrap().is_empty());

    // A connection: paused, orders kept.
    env.store()
        .tamper_for_tests(
            "INSERT INTO orders (id, connection_id, external_id, status, marketplace_status,
               status_rank, created_at_ms, updated_at_ms, ingested_at_ms)
             VALUES (1, 1, 'o1', 'paid', 'Paid', 1, 0, 0, 0)",
        )
        .await
        .unwrap();
    kit.revoke(&ADMIN, None, RevokeTarget::Connection("amz".into()))
        .await
        .unwrap();
    let status: Option<String> = env
        .store()
        .query_one_as("SELECT status FROM connections WHERE name = 'amz'", vec![])
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("paused"));
    assert_eq!(
        env.count("SELECT COUNT(*) FROM orders").await,
        1,
        "evidence kept"
    );

    let actions = env.actions().await;
    assert_eq!(
        actions.iter().filter(|a| *a == "incident.revoke").count(),
        5
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "incident.refused").count(),
        4
    );
    // The services' own audit rows are there too.
    for a in [
        "apikey.revoke",
        "session.end_all",
        "credential.delete",
        "connection.pause",
    ] {
        assert!(
            env.store()
                .count(
                    "SELECT COUNT(*) FROM audit WHERE action = $1",
                    vec![a.into()]
                )
                .await
                .unwrap()
                > 0,
            "{a}"
        );
    }
    assert!(
        env.store()
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    env.finish().await;
}

fn gateway(env: &Env) -> Gateway {
    let mut cfg = EgressConfig::new(Environment::Dev);
    cfg.allowed_hosts = vec!["127.0.0.1:9".into()];
    cfg.max_attempts = 1;
    Gateway::new(cfg, Some(env.store().clone())).unwrap()
}

async fn send(g: &Gateway, caller: Caller) -> Result<(), EgressError> {
    g.client(caller, &["127.0.0.1:9"])
        .send(Request::get("https://127.0.0.1:9/x", "/x", "probe"))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn isolation_and_lockdown_refuse_egress_but_not_alerts_sqlite() {
    isolation_and_lockdown(false).await;
}

#[tokio::test]
async fn isolation_and_lockdown_refuse_egress_but_not_alerts_postgres() {
    isolation_and_lockdown(true).await;
}

async fn isolation_and_lockdown(pg: bool) {
    let Some(env) = Env::new(pg).await else {
        return;
    };
    let kit = &env.kit;
    env.connection(1, "amz").await;
    env.connection(2, "tts").await;
    let g = gateway(&env);
    kit.open(&ADMIN, new("Suspicious pushes", false, None))
        .await
        .unwrap();
    refused(
        kit.isolate(&ADMIN, None, Isolate::Connection("ghost".into()))
            .await,
        "unknown connection",
    );
    refused(
        kit.isolate(&ADMIN, None, Isolate::Workflow("ghost".into()))
            .await,
        "unknown workflow",
    );
    kit.isolate(&ADMIN, None, Isolate::Connection("amz".into()))
        .await
        .unwrap();
    refused(
        kit.isolate(&ADMIN, None, Isolate::Connection("amz".into()))
            .await,
        "isolate twice",
    );
    let controls = env.store().controls();
    assert!(controls.connection_isolated("amz") && !controls.connection_isolated("tts"));
    let err = send(&g, Caller::Connection("amz".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, EgressError::Contained(_)), "{err:?}");
    assert!(err.to_string().contains("isolated"), "{err}");
    // Another connection is not held back (it fails to connect: nothing listens on 9).
    let err = send(&g, Caller::Connection("tts".into()))
        .await
        .unwrap_err();
    assert!(!matches!(err, EgressError::Contained(_)), "{err:?}");
    g.flush().await.unwrap();
    assert_eq!(
        env.count("SELECT COUNT(*) FROM egress_log WHERE caller = 'connection:amz' AND outcome = 'blocked'")
            .await,
        1
    );

    // Lockdown: everything but alert channels is refused.
    kit.lockdown(&ADMIN, None).await.unwrap();
    assert!(env.store().controls().locked_down());
    for caller in [
        Caller::Connection("tts".into()),
        Caller::Workflow("nightly".into()),
        Caller::System("mirror"),
    ] {
        let err = send(&g, caller.clone()).await.unwrap_err();
        assert!(
            matches!(err, EgressError::Contained(_)),
            "{caller}: {err:?}"
        );
    }
    let err = send(&g, Caller::Alerts("feishu".into())).await.unwrap_err();
    assert!(
        !matches!(err, EgressError::Contained(_)),
        "alerts refused: {err:?}"
    );

    kit.release(&ADMIN, None, Release::Lockdown).await.unwrap();
    kit.release(&ADMIN, None, Release::Connection("amz".into()))
        .await
        .unwrap();
    let c = env.store().controls().snapshot();
    assert!(!c.locked_down() && c.connections.is_empty());
    let err = send(&g, Caller::Connection("amz".into()))
        .await
        .unwrap_err();
    assert!(!matches!(err, EgressError::Contained(_)), "{err:?}");
    assert!(
        env.store()
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    drop(g);
    env.finish().await;
}

#[tokio::test]
async fn a_drill_revokes_nothing_real_and_is_evidence_sqlite() {
    drill(false).await;
}

#[tokio::test]
async fn a_drill_revokes_nothing_real_and_is_evidence_postgres() {
    drill(true).await;
}

async fn drill(pg: bool) {
    let Some(env) = Env::new(pg).await else {
        return;
    };
    let (kit, access) = (&env.kit, &env.access);
    assert_eq!(last_drill(env.store()).await.unwrap(), None);
    let (_, token) = access
        .create_api_key("ci", Role::Operator, None, &ADMIN)
        .await
        .unwrap();
    env.connection(1, "amz").await;
    let inc = kit
        .open(&ADMIN, new("Half-year drill", true, None))
        .await
        .unwrap();
    assert!(inc.drill);
    let out = kit
        .revoke(&ADMIN, None, RevokeTarget::ApiKeys(Scope::All))
        .await
        .unwrap();
    assert_eq!(out.affected, 1, "what it would revoke is counted");
    assert!(out.summary.contains("would revoke 1"), "{}", out.summary);
    assert!(
        access
            .authenticate_api_key(token.expose_secret())
            .await
            .unwrap()
            .is_ok()
    );
    kit.revoke(&ADMIN, None, RevokeTarget::Sessions(Scope::All))
        .await
        .unwrap();
    kit.isolate(&ADMIN, None, Isolate::Connection("amz".into()))
        .await
        .unwrap();
    kit.lockdown(&ADMIN, None).await.unwrap();
    // Recorded, never enforced.
    let c = env.store().refresh_controls().await.unwrap();
    assert!(!c.locked_down() && !c.connection_isolated("amz"));
    let v = stockade_incident::show(env.store(), inc.id).await.unwrap();
    assert_eq!(v.controls.len(), 2);
    assert!(v.deadlines.iter().all(|d| d.state == DeadlineState::Drill));
    kit.release(&ADMIN, None, Release::Lockdown).await.unwrap();
    kit.release(&ADMIN, None, Release::Connection("amz".into()))
        .await
        .unwrap();
    kit.close(&ADMIN, inc.id, "Drill went through every step")
        .await
        .unwrap();
    kit.record_report(&ADMIN, inc.id, "json").await.unwrap();
    let e = last_drill(env.store()).await.unwrap().unwrap();
    assert!(e.passed, "{e:?}");
    assert!(e.drill && e.missing.is_empty());
    assert_eq!(
        e.steps,
        [
            "open", "revoke", "isolate", "lockdown", "release", "close", "report"
        ]
    );
    assert!(!e.stale(now_ms()) && e.stale(now_ms() + 200 * 24 * HOUR_MS));
    assert_eq!(
        env.count("SELECT COUNT(*) FROM api_keys WHERE revoked_at_ms IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT COUNT(*) FROM audit WHERE action = 'apikey.revoke'")
            .await,
        0
    );

    // A closed drill that skipped steps is not evidence of a full exercise.
    let short = kit
        .open(&ADMIN, new("Short drill", true, None))
        .await
        .unwrap();
    kit.close(&ADMIN, short.id, "Only opened and closed")
        .await
        .unwrap();
    let e = last_drill(env.store()).await.unwrap().unwrap();
    assert_eq!(e.incident_id, inc.id, "the complete one is the evidence");
    assert!(
        env.store()
            .verify_audit(None)
            .await
            .unwrap()
            .problem
            .is_none()
    );
    env.finish().await;
}
