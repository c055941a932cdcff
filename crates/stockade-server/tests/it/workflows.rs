//! The workflow API through the real HTTPS server: authentication required, the wrong
//! role gets 403, each action works (list, versions, approve, run, executions, show,
//! cancel, rerun), and bad input is 400 and writes nothing. Both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade_access::Role;
use stockade_core::{Actor, Environment};
use stockade_store::Store;
use stockade_workflows::registry;

use crate::harness::{Backend, Options, TestServer};

const FLOW: &str = "name: restock\ntrigger: manual\ninputs:\n  sku: { type: string, required: true }\nsteps:\n  - id: a\n    uses: audit.note\n    with: { message: \"restock {{ inputs.sku }}\" }\n  - id: b\n    uses: audit.note\n    with: { message: done }\n";

struct Api<'a> {
    server: &'a TestServer,
    key: String,
    id: String,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .server
            .client
            .get(self.server.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: String) -> (StatusCode, Value) {
        let res = self
            .server
            .client
            .post(self.server.url(path))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

async fn api<'a>(server: &'a TestServer, name: &str, role: Role) -> Api<'a> {
    let (info, secret) = server
        .access
        .create_api_key(name, role, None, &Actor::System("test"))
        .await
        .unwrap();
    Api {
        server,
        key: secret.expose_secret().to_owned(),
        id: info.id,
    }
}

async fn jobs(store: &Store) -> i64 {
    store
        .count("SELECT COUNT(*) FROM jobs", vec![])
        .await
        .unwrap()
}

#[tokio::test]
async fn the_workflow_api_on_sqlite() {
    the_workflow_api(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_workflow_api_on_postgres() {
    the_workflow_api(Backend::Postgres).await;
}

async fn the_workflow_api(backend: Backend) {
    let Some(server) = TestServer::spawn(Options {
        backend,
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let store = server.access.store().clone();
    let ops = Actor::User("usr_author".into());
    registry::apply(&store, &ops, &[("restock.yaml".into(), FLOW.into())])
        .await
        .unwrap();
    let viewer = api(&server, "console-viewer", Role::Viewer).await;
    let operator = api(&server, "console-ops", Role::Operator).await;
    let auditor = api(&server, "console-audit", Role::Auditor).await;

    // Authentication is required; the wrong role is 403 and writes nothing.
    let anon = server
        .client
        .get(server.url("/api/v1/workflows"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        auditor.get("/api/v1/executions").await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = viewer
        .post(
            "/api/v1/workflows/restock/run",
            json!({"inputs": {"sku": "MUG-1"}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        viewer
            .post("/api/v1/workflows/restock/versions/1/approve", "{}".into())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(jobs(&store).await, 0);

    // Reads.
    let (status, list) = viewer.get("/api/v1/workflows").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["workflows"][0]["name"], "restock");
    assert_eq!(list["workflows"][0]["active_version"], 1);
    let (status, versions) = viewer.get("/api/v1/workflows/restock/versions").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions["versions"][0]["state"], "active");
    assert_eq!(
        viewer.get("/api/v1/workflows/nope/versions").await.0,
        StatusCode::NOT_FOUND
    );
    // Approval goes through the registry's rules: an active version is not pending.
    let (status, body) = operator
        .post("/api/v1/workflows/restock/versions/1/approve", "{}".into())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Bad input is 400 (413 when too large) and writes nothing.
    let head = store.audit_head().await.unwrap();
    for bad in [
        json!({"inputs": {"sku": "MUG-1", "extra": 1}}).to_string(),
        json!({"inputs": {}}).to_string(),
        json!({"inputs": "MUG-1"}).to_string(),
        json!({"input": {}}).to_string(),
        "{not json".to_owned(),
    ] {
        let (status, body) = operator
            .post("/api/v1/workflows/restock/run", bad.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let huge = json!({"inputs": {"sku": "x".repeat(100_000)}}).to_string();
    let (status, _) = operator.post("/api/v1/workflows/restock/run", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        viewer.get("/api/v1/executions?status=bogus").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert_eq!(jobs(&store).await, 0);

    // Run, list, show, cancel.
    let (status, started) = operator
        .post(
            "/api/v1/workflows/restock/run",
            json!({"inputs": {"sku": "MUG-1"}}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["execution"].as_str().unwrap().to_owned();
    assert_eq!(started["version"], 1);
    let (status, listed) = viewer
        .get("/api/v1/executions?workflow=restock&status=queued")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["executions"][0]["id"], id.as_str());
    let (_, other) = viewer.get("/api/v1/executions?workflow=other").await;
    assert_eq!(other["executions"], json!([]));
    let (status, shown) = viewer.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["execution"]["state"], "queued");
    assert_eq!(shown["steps"], json!([]));
    assert!(
        !shown.to_string().contains("MUG-1"),
        "no input values: {shown}"
    );
    assert_eq!(
        viewer.get("/api/v1/executions/job_nope").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, cancelled) = operator
        .post(&format!("/api/v1/executions/{id}/cancel"), String::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["was"], "queued");
    let (status, _) = operator
        .post(&format!("/api/v1/executions/{id}/cancel"), String::new())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Rerun: an unknown step is 400 and writes nothing; a plain rerun starts a new one.
    let before = jobs(&store).await;
    let (status, _) = operator
        .post(
            &format!("/api/v1/executions/{id}/rerun"),
            json!({"from_step": "zz"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(jobs(&store).await, before);
    let (status, again) = operator
        .post(
            &format!("/api/v1/executions/{id}/rerun"),
            json!({}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_ne!(again["execution"], id.as_str());
    assert_eq!(jobs(&store).await, before + 1);
    // Every change is audited under the calling key.
    let actors: Vec<String> = store
        .query_as(
            "SELECT actor FROM audit WHERE action IN ('job.enqueue', 'job.cancel', 'workflow.rerun')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(actors.len(), 4);
    let caller = Actor::ApiKey(operator.id.clone()).to_string();
    assert!(actors.iter().all(|a| *a == caller), "{actors:?}");
    server.cleanup().await;
}

const PROD_FLOW: &str = "name: restock\ndescription: x\ntrigger: manual\non_error: builtin.alert\nsteps:\n  - id: a\n    uses: audit.note\n    with: { message: restock }\n";

/// In prod a version waits for a second person: the key that applied it cannot approve
/// it through the API (403, nothing changes); another key can.
#[tokio::test]
async fn approval_through_the_api_needs_a_second_person() {
    let server = TestServer::spawn(Options {
        env: Environment::Prod,
        ..Options::default()
    })
    .await
    .unwrap();
    let store = server.access.store().clone();
    let author = api(&server, "author", Role::Operator).await;
    let reviewer = api(&server, "reviewer", Role::Admin).await;
    let applied = registry::apply(
        &store,
        &Actor::ApiKey(author.id.clone()),
        &[("restock.yaml".into(), PROD_FLOW.into())],
    )
    .await
    .unwrap();
    assert!(
        matches!(applied[0].applied, registry::Applied::Stored { .. }),
        "{applied:?}"
    );
    let (_, versions) = author.get("/api/v1/workflows/restock/versions").await;
    assert_eq!(versions["versions"][0]["state"], "pending", "{versions}");
    let head = store.audit_head().await.unwrap();
    let (status, body) = author
        .post(
            "/api/v1/workflows/restock/versions/1/approve",
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "four_eyes");
    assert_eq!(store.audit_head().await.unwrap(), head, "nothing written");
    let (status, _) = author
        .post("/api/v1/workflows/restock/run", "{}".into())
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a pending version does not run"
    );
    let (status, body) = reviewer
        .post(
            "/api/v1/workflows/restock/versions/1/approve",
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"]["state"], "active");
    assert_eq!(
        body["version"]["approved_by"],
        Actor::ApiKey(reviewer.id.clone()).to_string()
    );
    let (status, _) = author
        .post("/api/v1/workflows/restock/run", "{}".into())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    server.cleanup().await;
}
