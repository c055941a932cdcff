//! The workflow format: one YAML document per workflow, parsed into these types.
//!
//! Every name the linter reports on is a [`Located`] value, so a problem points at the
//! line and column where it was written. Unknown fields are refused everywhere
//! (`deny_unknown_fields`), so a misspelt key is an error, not a silently ignored
//! setting. Semantic checks (step kinds, references, permissions, cron) are the
//! linter's job (`crate::lint`); parsing only checks shape and scalar formats.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::IsoDuration;
use crate::yaml::{self, Located, Node, ParseError};

/// The error workflow used when `on_error` is not given.
pub const BUILTIN_ERROR_WORKFLOW: &str = "builtin.alert";

/// A workflow definition.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Stockade workflow",
    description = "A Stockade workflow (docs/workflows.md)."
)]
pub struct Workflow {
    /// Unique name: lower-case letters, digits, `-`, `_` and `.`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: Located<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// What starts an execution.
    pub trigger: Located<Trigger>,
    /// Inputs of a manual run or a `workflow.call`, by name.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Everything the workflow may reach; nothing else is reachable.
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
    /// Bound on a whole execution.
    #[serde(default)]
    pub timeout: Option<Located<IsoDuration>>,
    /// Default retry of every step (a step's own `retry` replaces it).
    #[serde(default)]
    pub retry: Option<Retry>,
    /// The workflow run with the error event when an execution fails after its retries
    /// (default `builtin.alert`).
    #[serde(default)]
    pub on_error: Option<Located<String>>,
    pub steps: Vec<Step>,
}

/// What starts an execution.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    Schedule(Schedule),
    Webhook(Webhook),
    Event(EventTrigger),
    /// Only `stockade workflow run`, the API or a `workflow.call`.
    Manual,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds.
    pub cron: Located<String>,
    /// IANA time zone the pattern is read in (default UTC).
    #[serde(default)]
    pub tz: Option<Located<String>>,
    /// Ticks missed while the server was down: skip them, or run once for all of them.
    #[serde(default)]
    pub missed: Missed,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    #[default]
    Skip,
    RunOnce,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Path under `/hooks/`, e.g. `supplier-stock`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9/_-]{0,127}$"))]
    pub path: Located<String>,
    pub auth: Located<WebhookAuth>,
    #[serde(default)]
    pub respond: Respond,
}

/// How a webhook delivery proves who sent it (checked before anything runs).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WebhookAuth {
    /// HMAC-SHA256 of the body under the named credential.
    Hmac(Located<String>),
    /// A Stockade API key with the `workflows:trigger` scope.
    ApiKey,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Respond {
    /// `202` with the execution id at once.
    #[default]
    Accepted,
    /// The execution's result, within a bound.
    Result,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTrigger {
    /// An event kind such as `order.created` (docs/workflows.md lists them).
    pub kind: Located<String>,
}

/// A typed input.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub kind: InputType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Located<serde_json::Value>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
}

/// Least privilege: the only connections, credentials, hosts and events the workflow
/// can reach, enforced at run time and at egress.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    #[serde(default)]
    pub connections: Vec<Located<String>>,
    /// Credential names from the credential store (never values).
    #[serde(default)]
    pub credentials: Vec<Located<String>>,
    /// Host names `http.request` may call.
    #[serde(default)]
    pub hosts: Vec<Located<String>>,
    /// Event kinds the workflow may be triggered by or wait for.
    #[serde(default)]
    pub events: Vec<Located<String>>,
    /// Whether `order.get` and `marketplace.fetch_orders` return buyer fields (names,
    /// addresses, phones) unmasked. Off by default.
    #[serde(default)]
    pub buyer_fields: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Executions running at once (per key), 1-1000.
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Located<u32>,
    /// An expression grouping executions (default: the workflow name).
    #[serde(default)]
    pub key: Option<Located<String>>,
    #[serde(default)]
    pub on_limit: OnLimit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    #[default]
    Queue,
    Skip,
    Fail,
}

/// Retries of a failed step, independent of `continue_on_error` (which applies only once
/// the retries are exhausted).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total tries, the first included (1 = no retry), at most 20.
    #[schemars(range(min = 1, max = 20))]
    pub attempts: Located<u32>,
    #[serde(default)]
    pub backoff: Backoff,
    /// First delay (default PT1S).
    #[serde(default)]
    pub initial: Option<Located<IsoDuration>>,
    /// Longest delay (default PT1M).
    #[serde(default)]
    pub max: Option<Located<IsoDuration>>,
    /// Randomise each delay (full jitter). Default true.
    #[serde(default = "yes")]
    pub jitter: bool,
    #[serde(default)]
    pub on: RetryOn,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    #[default]
    Exponential,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// Timeouts, connection errors, 429 and 5xx only.
    #[default]
    Transient,
    /// Every error except a `fail` step and a refused permission.
    Always,
}

/// One step. `uses` names its kind (docs/workflows.md); `with` holds its parameters,
/// whose strings may contain `{{ expressions }}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,63}$"))]
    pub id: Located<String>,
    #[schemars(with = "crate::steps::StepKindName")]
    pub uses: Located<String>,
    #[serde(default)]
    pub with: Option<Located<Node>>,
    /// A bare expression; the step is skipped when it is false.
    #[serde(default, rename = "if")]
    pub condition: Option<Located<String>>,
    #[serde(default)]
    pub retry: Option<Retry>,
    #[serde(default)]
    pub timeout: Option<Located<IsoDuration>>,
    /// After the retries are exhausted, record the failure and go on.
    #[serde(default)]
    pub continue_on_error: bool,
    /// A reviewed exception letting buyer data reach `alert.send`, `http.request` or
    /// `audit.note`.
    #[serde(default)]
    pub allow_pii: Option<AllowPii>,
    /// `if` steps: run when the condition holds.
    #[serde(default)]
    pub then: Option<Vec<Step>>,
    /// `if` steps: run otherwise.
    #[serde(default, rename = "else")]
    pub otherwise: Option<Vec<Step>>,
    /// `switch` steps: the branch per value.
    #[serde(default)]
    pub cases: Option<BTreeMap<String, Vec<Step>>>,
    /// `switch` steps: the branch when no case matches.
    #[serde(default)]
    pub default: Option<Vec<Step>>,
    /// `for_each` steps: the body run per item (`item`, `index`).
    #[serde(default)]
    pub steps: Option<Vec<Step>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowPii {
    /// Why buyer data must leave here; shown to the reviewer who approves the version.
    pub reason: Located<String>,
}

impl Step {
    /// The nested step lists of a control step, in document order.
    pub fn children(&self) -> Vec<&[Step]> {
        let mut out: Vec<&[Step]> = Vec::new();
        out.extend(self.then.as_deref());
        out.extend(self.otherwise.as_deref());
        if let Some(cases) = &self.cases {
            out.extend(cases.values().map(Vec::as_slice));
        }
        out.extend(self.default.as_deref());
        out.extend(self.steps.as_deref());
        out
    }

    /// The `with` parameter `key`, if given.
    pub fn param(&self, key: &str) -> Option<&Located<Node>> {
        self.with.as_ref().and_then(|w| w.value.get(key))
    }
}

impl Workflow {
    /// Parse a workflow document.
    pub fn parse(text: &str) -> Result<Workflow, ParseError> {
        yaml::parse(text)
    }

    /// The error workflow's name (`builtin.alert` when none is given).
    pub fn on_error_name(&self) -> &str {
        self.on_error
            .as_ref()
            .map_or(BUILTIN_ERROR_WORKFLOW, |l| l.value.as_str())
    }

    /// Every step, depth first in document order.
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                for c in s.children() {
                    walk(c, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }
}
