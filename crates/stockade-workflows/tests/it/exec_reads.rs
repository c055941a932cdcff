//! The report read steps' refusals, on both backends: `orders.summary` and
//! `stock.reconcile_report` count only declared connections (an undeclared one is a
//! `permission` error, none declared an `invalid` one); `executions.count` takes only a
//! known status and a window; nothing is written by any of them.

use serde_json::{Value, json};
use stockade_workflows::definition::Permissions;
use stockade_workflows::exec::{
    ErrorClass, ExecutionsCount, OrdersSummary, ReconcileReport, StepCtx, StepHandler,
};
use stockade_workflows::expr::Evaluated;

use crate::exec_support::{Backend, Env, both};

both!(report_reads_refuse_what_the_workflow_did_not_declare);

fn permissions(connections: &[&str]) -> Permissions {
    let yaml = format!(
        "name: r\ntrigger: manual\npermissions: {{ connections: [{}] }}\nsteps:\n  - id: a\n    uses: audit.note\n    with: {{ message: x }}\n",
        connections.join(", ")
    );
    stockade_workflows::Workflow::parse(&yaml)
        .unwrap()
        .permissions
}

async fn class(
    env: &Env,
    handler: &dyn StepHandler,
    declared: &[&str],
    with: Value,
) -> Result<Value, ErrorClass> {
    let actor = stockade_workflows::exec::actor("r", 1, "job_r");
    let permissions = permissions(declared);
    let ctx = StepCtx {
        store: &env.store,
        execution: "job_r",
        workflow: "r",
        version: 1,
        step: "a",
        idempotency_key: "job_r/a",
        attempt: 1,
        actor: &actor,
        allow_pii: false,
        permissions: &permissions,
    };
    let params = Evaluated {
        value: with,
        pii: false,
    };
    handler
        .run(&ctx, &params)
        .await
        .map(|d| {
            assert!(d.changes.is_empty(), "a read writes nothing");
            d.output
        })
        .map_err(|e| e.class)
}

async fn report_reads_refuse_what_the_workflow_did_not_declare(b: Backend) {
    let Some(env) = Env::new(b).await else { return };
    let day = json!({ "within": "P1D" });
    // Declared and empty: a report of zeros.
    let ok = class(&env, &OrdersSummary, &["shop-a"], day.clone())
        .await
        .unwrap();
    assert_eq!(ok["channels"][0]["connection"], "shop-a");
    assert_eq!(ok["total"]["orders"], 0);
    let asked = json!({ "within": "P1D", "connections": ["shop-b"] });
    for h in [&OrdersSummary as &dyn StepHandler, &ReconcileReport] {
        assert_eq!(
            class(&env, h, &["shop-a"], asked.clone()).await,
            Err(ErrorClass::Permission)
        );
        assert_eq!(
            class(&env, h, &[], day.clone()).await,
            Err(ErrorClass::Invalid)
        );
    }
    let clean = class(&env, &ReconcileReport, &["shop-a"], json!({}))
        .await
        .unwrap();
    assert_eq!(clean["clean"], true);
    for bad in [
        json!({ "within": "PT10M", "status": "exploded" }),
        json!({ "status": "failed" }),
        json!({ "within": "ten minutes" }),
    ] {
        assert_eq!(
            class(&env, &ExecutionsCount, &[], bad).await,
            Err(ErrorClass::Invalid)
        );
    }
    let none = class(&env, &ExecutionsCount, &[], json!({ "within": "PT10M" }))
        .await
        .unwrap();
    assert_eq!(
        (none["count"].clone(), none["status"].clone()),
        (json!(0), json!("failed"))
    );
    env.cleanup().await;
}
