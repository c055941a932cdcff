//! Triggers in a real `stockade serve`: a credential stored with `credential set` (usable only
//! once scoped to the workflow), a
//! webhook signed with it answered with the execution's result over HTTPS (a forged one
//! refused), a schedule that fires by itself, and an event that starts its listener once.

use aws_lc_rs::hmac;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade_core::event::{Event, OrderLineEvent};
use stockade_core::{Actor, Environment};
use stockade_store::{AuditDetails, AuditEntry, DatabaseUrl, Store};

use crate::harness::Sandbox;
use crate::server::Server;

const SECRET: &str = "3f9c1a7e5b2d4c6e8f0a1b2c3d4e5f60";
const HOOK: &str = "name: supplier-stock\ntrigger:\n  webhook:\n    path: supplier/stock\n    auth: { hmac: supplier-hmac }\n    respond: result\npermissions: { credentials: [supplier-hmac] }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"delivery {{ trigger.body.delivery }}\" }\n";
const OVERSELL: &str = "name: oversell-note\ntrigger: { event: { kind: oversell } }\npermissions: { events: [oversell] }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"oversold {{ trigger.event.sku }}\" }\n";
const TICK: &str = "name: every-second\ntrigger: { schedule: { cron: \"* * * * * *\" } }\nsteps:\n  - id: note\n    uses: audit.note\n    with: { message: \"tick {{ trigger.scheduled_at }}\" }\n";

fn sign(body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_signed_webhooks_and_fires_schedules() {
    let s = Sandbox::new();
    s.run(&["--env", "dev", "init"]).expect_code(0);
    let mut files = Vec::new();
    for (name, text) in [
        ("hook.yaml", HOOK),
        ("tick.yaml", TICK),
        ("over.yaml", OVERSELL),
    ] {
        let path = s.dir.join(name);
        std::fs::write(&path, text).unwrap();
        files.push(path.display().to_string());
    }
    let mut args = vec!["workflow", "apply"];
    args.extend(files.iter().map(String::as_str));
    s.run(&args).expect_code(0);
    // Scoped to another workflow first: this webhook may not use it.
    let set = |workflow: &str| {
        s.run_with_stdin(
            &s.data(),
            &[
                "credential",
                "set",
                "supplier-hmac",
                "--workflow",
                workflow,
                "--secret-stdin",
            ],
            Some(&format!("{SECRET}\n")),
        )
        .expect_code(0);
    };
    set("another-workflow");

    let server = Server::start(&s);
    let body = br#"{"delivery":"D-17"}"#.to_vec();
    let post = |signature: String| {
        server
            .client
            .post(server.url("/hooks/workflows/supplier/stock"))
            .header("content-type", "application/json")
            .header("x-stockade-signature", signature)
            .body(body.clone())
            .send()
    };
    let res = post(sign(&body)).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a key not scoped to it"
    );
    set("supplier-stock");
    let res = post(sign(&body)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["status"], json!("succeeded"), "{answer}");
    assert_eq!(answer["output"], json!({ "noted": true }));
    let res = post(sign(b"forged")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // An event appended by another process starts the listener once.
    let store = Store::open(
        &DatabaseUrl::Sqlite(s.data().join("stockade.db")),
        Environment::Dev,
        &Default::default(),
    )
    .await
    .unwrap();
    let oversell = Event::Oversell(OrderLineEvent {
        connection: "shop".into(),
        order: Some("o-1".into()),
        sku: "MUG-RED-350".into(),
        units: Some(2),
    });
    store
        .append_event(
            &Actor::System("test"),
            &oversell,
            AuditEntry::new("test.event", "events", AuditDetails::new()),
        )
        .await
        .unwrap();
    store.close().await;

    for (name, want) in [("every-second", 1), ("oversell-note", 1)] {
        let mut seen = 0;
        for _ in 0..100 {
            let listed = s
                .run(&["workflow", "runs", name, "--status", "succeeded"])
                .expect_code(0)
                .stdout();
            seen = listed.lines().count() - 1;
            if seen >= want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(seen >= want, "{name} did not run");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let listed = s
        .run(&["workflow", "runs", "oversell-note"])
        .expect_code(0)
        .stdout();
    assert_eq!(
        listed.lines().count(),
        2,
        "one execution per event: {listed}"
    );
    let log = server.log_text();
    assert!(!log.contains(SECRET) && !log.contains("D-17"), "{log}");
    drop(server);
    s.run(&["audit", "verify"]).expect_code(0);
}
