//! Control steps (`if`, `switch`, `for_each`) and `workflow.call`: how each decides, and
//! how their children run (see [`super::walk`] for the journal paths).

use serde_json::{Value, json};
use stockade_store::StepOutcome;

use super::error::{ErrorClass, StepError};
use super::handlers::StepDone;
use super::walk::{DEFAULT_MAX_ITEMS, Decision, Done, Flow, MAX_ITEMS_CEILING, expr_error};
use super::{ExecError, Executor, Frame, MAX_CALL_DEPTH, Run};
use crate::definition::Step;
use crate::expr;

impl Executor {
    /// A control step's choice, from its `with`.
    pub(super) fn decide(&self, frame: &Frame, step: &Step) -> Result<Decision, StepError> {
        let param = |key: &str| {
            step.param(key).ok_or_else(|| {
                StepError::new(
                    ErrorClass::Invalid,
                    format!("{} needs `{key}`", step.uses.value),
                )
            })
        };
        match step.uses.value.as_str() {
            "if" => {
                let cond = param("condition")?;
                let text = cond.value.as_str().ok_or_else(|| {
                    StepError::new(ErrorClass::Invalid, "if: `condition` must be an expression")
                })?;
                expr::eval_condition(&self.env, text, &frame.scope)
                    .map(Decision::If)
                    .map_err(expr_error)
            }
            "switch" => {
                let v = expr::eval_node(&self.env, &param("value")?.value, &frame.scope)
                    .map_err(expr_error)?;
                let key = match v.value {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let known = step.cases.as_ref().is_some_and(|c| c.contains_key(&key));
                Ok(Decision::Switch(known.then_some(key)))
            }
            "for_each" => self
                .items(frame, step)
                .map(|(items, _)| Decision::ForEach(items.len())),
            other => Err(StepError::new(
                ErrorClass::Invalid,
                format!("{other} is not a control step"),
            )),
        }
    }

    /// A `for_each`'s items, bounded by its `max_items`, and whether they are buyer data.
    fn items(&self, frame: &Frame, step: &Step) -> Result<(Vec<Value>, bool), StepError> {
        let eval = |key: &str| {
            step.param(key)
                .map(|n| expr::eval_node(&self.env, &n.value, &frame.scope).map_err(expr_error))
                .transpose()
        };
        let max = match eval("max_items")? {
            Some(v) => v
                .value
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=MAX_ITEMS_CEILING).contains(n))
                .ok_or_else(|| {
                    StepError::new(
                        ErrorClass::Invalid,
                        format!("for_each: max_items must be 1 to {MAX_ITEMS_CEILING}"),
                    )
                })?,
            None => DEFAULT_MAX_ITEMS,
        };
        let items = eval("items")?
            .ok_or_else(|| StepError::new(ErrorClass::Invalid, "for_each needs `items`"))?;
        let Value::Array(list) = items.value else {
            return Err(StepError::new(
                ErrorClass::Invalid,
                "for_each: `items` must be a list",
            ));
        };
        if list.len() > max {
            return Err(StepError::new(
                ErrorClass::Invalid,
                format!("for_each: {} items, more than max_items {max}", list.len()),
            ));
        }
        Ok((list, items.pii))
    }

    /// Run the children a control step chose.
    pub(super) async fn run_children(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
        decision: Decision,
    ) -> Result<(), Flow> {
        let prefix = format!("{path}/");
        let branch = match &decision {
            Decision::If(true) => step.then.as_deref(),
            Decision::If(false) => step.otherwise.as_deref(),
            Decision::Switch(Some(case)) => step
                .cases
                .as_ref()
                .and_then(|c| c.get(case))
                .map(Vec::as_slice),
            Decision::Switch(None) => step.default.as_deref(),
            Decision::ForEach(_) => None,
        };
        if let Some(steps) = branch {
            return self.run_steps(run, frame, steps, prefix).await;
        }
        let Decision::ForEach(_) = decision else {
            return Ok(());
        };
        // Deterministic: the scope is what it was when the items were first counted.
        let (items, pii) = match self.items(frame, step) {
            Ok(found) => found,
            Err(e) => {
                return Err(Flow::Failed(super::error::Failure {
                    step: path.to_owned(),
                    error: e,
                    attempts: 1,
                    pending: None,
                }));
            }
        };
        let body = step.steps.as_deref().unwrap_or_default();
        if pii {
            frame.scope.mark_pii("item");
        }
        let saved = (
            frame.scope.data.get("item").cloned(),
            frame.scope.data.get("index").cloned(),
        );
        for (i, item) in items.into_iter().enumerate() {
            frame.scope.set("item", item);
            frame.scope.set("index", json!(i));
            self.run_steps(run, frame, body, format!("{path}#{i}/"))
                .await?;
        }
        for (key, old) in [("item", saved.0), ("index", saved.1)] {
            match old {
                Some(v) => frame.scope.set(key, v),
                None => {
                    frame.scope.data.remove(key);
                }
            }
        }
        Ok(())
    }

    /// `workflow.call`: the sub-workflow runs inline, its steps journaled under
    /// `CALL/`, as its own actor; its failure (after its own retries) fails this step.
    pub(super) async fn call(
        &self,
        run: &mut Run,
        frame: &mut Frame,
        step: &Step,
        path: &str,
    ) -> Result<Result<Done, StepError>, ExecError> {
        let (params, pii) = match step
            .with
            .as_ref()
            .map(|w| expr::eval_node(&self.env, &w.value, &frame.scope))
        {
            Some(Ok(p)) => (p.value, p.pii),
            Some(Err(e)) => return Ok(Err(expr_error(e))),
            None => (json!({}), false),
        };
        let Some(name) = params.get("workflow").and_then(Value::as_str) else {
            return Ok(Err(StepError::new(
                ErrorClass::Invalid,
                "workflow.call needs `workflow`",
            )));
        };
        let Some(def) = self.definitions.get(name) else {
            return Ok(Err(StepError::new(
                ErrorClass::Invalid,
                format!("workflow.call: no workflow named {name}"),
            )));
        };
        if frame.depth >= MAX_CALL_DEPTH {
            return Ok(Err(StepError::new(
                ErrorClass::Invalid,
                format!("workflow.call nested deeper than {MAX_CALL_DEPTH}"),
            )));
        }
        let inputs = params.get("inputs").cloned().unwrap_or_else(|| json!({}));
        let trigger = json!({ "call": { "workflow": frame.def.name(), "step": path } });
        let mut child = Frame::new(
            def.clone(),
            &run.lease.job_id,
            &inputs,
            trigger,
            frame.depth + 1,
        );
        if pii {
            // Buyer data passed in stays marked inside the sub-workflow.
            child.scope.mark_pii("inputs");
        }
        match self
            .run_steps(run, &mut child, &def.workflow.steps, format!("{path}/"))
            .await
        {
            Ok(()) => {
                let output = child
                    .scope
                    .data
                    .get("steps")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                Ok(Ok(Done::Effect(StepDone {
                    output: json!({ "steps": output }),
                    changes: vec![],
                })))
            }
            Err(Flow::Abort(e)) => Err(e),
            Err(Flow::Failed(f)) => {
                if let Some(p) = &f.pending {
                    let outcome = StepOutcome::Failed(f.error.stored());
                    let record = p.record(&run.lease, &outcome)?;
                    self.commit_run(run, &child.actor, vec![record]).await?;
                }
                Ok(Err(StepError {
                    class: ErrorClass::SubWorkflow,
                    message: format!("sub-workflow {name} failed at step {}: {}", f.step, f.error),
                    status: f.error.status,
                }))
            }
        }
    }
}
