//! Workflow webhooks: `POST /hooks/workflows/{path}` starts an execution of the enabled
//! workflow whose `trigger: webhook` has that `path`.
//!
//! The URL is `https://HOST/hooks/workflows/PATH`. `workflows` is not a marketplace, so
//! these URLs never meet `/hooks/<marketplace>/<connection>`; two workflows with the same
//! path are refused by lint when linted together.
//!
//! The order, each step before the next (nothing is enqueued before the auth passed):
//! 1. the ban check (the `webhook` jail, in the outer gate);
//! 2. the path is well formed and names an enabled workflow's webhook (else 404, not
//!    counted: a guessed path gains nothing); two enabled workflows with one path (applied
//!    separately, so lint did not see them together) are a 409 and nothing runs;
//! 3. `auth: api_key`: `Authorization: Bearer KEY`, a valid Stockade API key whose role
//!    may run workflows (operator, admin); checked before the body is read;
//! 4. the body is at most [`MAX_WORKFLOW_BODY`]: a larger declared length is refused
//!    unread, a longer stream once it passes the limit (413, not counted);
//! 5. `auth: {hmac: CREDENTIAL}`: `X-Stockade-Signature: sha256=HEX`, the HMAC-SHA256 of
//!    the raw body under the named credential (vault), compared in constant time; with
//!    an `X-Stockade-Timestamp: UNIX_SECONDS` header the signed bytes are
//!    `TIMESTAMP.BODY` and the timestamp must be within [`MAX_SKEW_S`] of now (replay);
//! 6. the body is JSON (an empty body is `{}`), else 400 with the parser's position;
//! 7. the execution starts (its enqueue audited as the caller), pinned to the active
//!    version, with the trigger data `{kind: webhook, at, path, body, headers, query}`:
//!    `headers` holds only [`READABLE_HEADERS`] (never `Authorization`, the signature or
//!    cookies). With this process's engine running it starts at once on it
//!    ([`Starter`]); a `respond: result` workflow whose steps stay inside the database
//!    (without retries or a concurrency limit) is one transaction from the enqueue to
//!    its end, answered once committed (a run that
//!    could not commit is answered 503 and left nothing). Without the engine, or with
//!    every worker busy, it is enqueued for the workers. The registry behind the path is
//!    read at most a second ago; the enqueue re-checks the version (a workflow disabled
//!    or replaced meanwhile is looked up once more, then answered 409).
//!
//! An auth failure (3 or 5) is answered 401 and recorded as a `webhook_signature`
//! failure in the `webhook` jail, so repeated ones ban the address from the webhook
//! routes. `respond: accepted` answers `202 {"execution": ID}` at once; `respond:
//! result` waits up to [`RESULT_WAIT`] for the execution to end and answers `200
//! {"execution", "status": "succeeded", "output"}` (the output of the last step that
//! succeeded, as journaled: an output holding PII is sealed and never returned), or
//! `500 {"execution", "status": "failed", "error"}` with the stored, scrubbed error; an
//! execution still running then is answered 202 like `accepted`.
//!
//! The body is the sender's data: it is stored in the job's payload as sent (not known
//! to be PII, so not sealed) and is readable by whoever can read executions; a sender
//! must not put buyer data in it unless the workflow's readers may see it. Log lines name
//! the path, the status and the outcome, never the body, headers or signature.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::OnceLock;
use stockade_access::{KeyRejection, Permission};
use stockade_core::Actor;
// Signatures' timestamps and token expiries: the clock the processes share, the
// database's when this host's wall clock was stepped (stockade_core::clock).
use stockade_core::clock::now_ms;
use stockade_store::{JobState, StepOutput, StepStatus, Store, StoreError};
use stockade_vault::Vault;
use stockade_workflows::definition::{Respond, WebhookAuth};
use stockade_workflows::engine::{Commit, Started, Starter};
use stockade_workflows::exec::RunOutcome;
use stockade_workflows::triggers::{
    ActiveSet, ActiveWorkflow, Delivery, webhook_payload, webhook_targets,
};

use crate::error::AppError;
use crate::extract::ClientIp;
use crate::hooks::{ReadError, count_failure, read_limited};
use crate::state::AppState;

/// The largest body a workflow webhook accepts.
pub const MAX_WORKFLOW_BODY: usize = 1024 * 1024;
/// How long `respond: result` waits for the execution's end.
pub const RESULT_WAIT: Duration = Duration::from_secs(10);
/// How far `X-Stockade-Timestamp` may be from the server's clock.
pub const MAX_SKEW_S: i64 = 300;
/// How often a webhook waiting for its result re-reads the execution when no end was
/// announced (one ended by another process).
const RESULT_REREAD: Duration = Duration::from_millis(250);

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-stockade-signature";
/// The optional timestamp header (replay protection).
pub const TIMESTAMP_HEADER: &str = "x-stockade-timestamp";

/// What the workflow webhooks need: the vault (credentials, the store) and the
/// workflows' active versions.
pub struct WorkflowHooks {
    vault: Arc<Vault>,
    set: ActiveSet,
    /// The engine of this process, once it runs: executions start here at once (see
    /// [`Starter`]); without it they are enqueued for whichever process runs workers.
    starter: OnceLock<Starter>,
}

impl std::fmt::Debug for WorkflowHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowHooks").finish_non_exhaustive()
    }
}

impl WorkflowHooks {
    pub fn new(vault: Arc<Vault>) -> Self {
        WorkflowHooks {
            vault,
            set: ActiveSet::new(),
            starter: OnceLock::new(),
        }
    }

    /// Run the executions webhooks start on this process's engine (set once, after the
    /// engine started).
    pub fn run_on(&self, starter: Starter) {
        let _ = self.starter.set(starter);
    }

    /// Start (or enqueue) the execution of `target` for `delivery`. A target replaced or
    /// disabled since the registry was read is looked up again once.
    async fn start(
        &self,
        actor: &Actor,
        target: ActiveWorkflow,
        path: &str,
        delivery: Delivery,
        commit: Commit,
    ) -> Result<Started, AppError> {
        let mut target = target;
        let mut payload = webhook_payload(&target, path, delivery);
        for retry in [false, true] {
            let outcome = match self.starter.get() {
                Some(starter) => {
                    let p = if retry {
                        std::mem::take(&mut payload)
                    } else {
                        payload.clone()
                    };
                    starter.start(actor, target.def.clone(), p, commit).await
                }
                None => {
                    let job = payload
                        .job()
                        .requiring_active(target.name(), target.def.version);
                    self.store().enqueue(actor, &job).await.map(|e| Started {
                        id: e.id,
                        committed: true,
                        ended: None,
                    })
                }
            };
            match outcome {
                Ok(started) => return Ok(started),
                Err(StoreError::Conflict(_)) if !retry => {
                    self.set.forget();
                    let fresh = webhook_targets(self.store(), &self.set, path)
                        .await
                        .map_err(|e| {
                            AppError::internal(format_args!("workflow webhook {path}: {e}"))
                        })?;
                    match <[_; 1]>::try_from(fresh) {
                        Ok([(t, _)]) => {
                            payload = t.payload(std::mem::take(&mut payload.trigger));
                            target = t;
                        }
                        Err(_) => break,
                    }
                }
                Err(e) => {
                    return Err(AppError::internal(format_args!(
                        "workflow webhook {path}: {e}"
                    )));
                }
            }
        }
        log(path, StatusCode::CONFLICT, "replaced");
        Err(AppError::refused(
            StatusCode::CONFLICT,
            "replaced",
            "the workflow of this webhook was disabled or replaced while the request arrived; nothing was started (send it again)",
        ))
    }

    fn store(&self) -> &Store {
        self.vault.store()
    }
}

/// A webhook path as lint accepts it: 1 to 128 of `[a-z0-9/_-]`, starting with a letter
/// or digit, no empty segment (no `//`, no trailing `/`).
pub fn valid_path(path: &str) -> bool {
    stockade_workflows::lint::valid_webhook_path(path)
}

fn log(path: &str, status: StatusCode, outcome: &str) {
    let status = status.as_u16();
    if (200..300).contains(&status) {
        tracing::info!(target: "stockade::hooks", "workflow webhook path={path} status={status} outcome={outcome}");
    } else {
        tracing::warn!(target: "stockade::hooks", "workflow webhook path={path} status={status} outcome={outcome}");
    }
}

fn not_found() -> AppError {
    AppError::refused(
        StatusCode::NOT_FOUND,
        "not_found",
        "no webhook endpoint here",
    )
}

fn unauthorized(message: &'static str) -> AppError {
    AppError::refused(StatusCode::UNAUTHORIZED, "invalid_signature", message)
}

/// The handler of `POST /hooks/workflows/{*path}`.
pub async fn receive(
    State(state): State<AppState>,
    client: Option<Extension<ClientIp>>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, AppError> {
    let Some(Extension(ClientIp(ip))) = client else {
        return Err(AppError::internal(
            "a hook route was reached without its gate",
        ));
    };
    let Some(hooks) = state.workflows.clone() else {
        return Err(not_found());
    };
    let path = match path {
        Ok(Path(p)) if valid_path(&p) => p,
        _ => {
            log("<invalid>", StatusCode::NOT_FOUND, "unknown_path");
            return Err(not_found());
        }
    };
    let mut targets = webhook_targets(hooks.store(), &hooks.set, &path)
        .await
        .map_err(|e| AppError::internal(format_args!("workflow webhook {path}: {e}")))?;
    if targets.len() > 1 {
        log(&path, StatusCode::CONFLICT, "ambiguous_path");
        return Err(AppError::refused(
            StatusCode::CONFLICT,
            "ambiguous",
            "more than one enabled workflow has this webhook path; nothing was started (disable all but one)",
        ));
    }
    let Some((target, hook)) = targets.pop() else {
        log(&path, StatusCode::NOT_FOUND, "unknown_path");
        return Err(not_found());
    };
    // Incident controls: an isolated workflow, or the instance in lockdown, starts
    // nothing; the sender is asked to retry (its delivery is not lost).
    let controls = hooks.store().controls().snapshot();
    if controls.workflow_isolated(target.name()) || controls.locked_down() {
        log(&path, StatusCode::SERVICE_UNAVAILABLE, "isolated");
        return Err(crate::hooks::unavailable(
            "this workflow is paused by an incident (isolated or lockdown); retry later",
        ));
    }
    let mut actor = Actor::System("webhook");
    if let WebhookAuth::ApiKey = hook.auth.value {
        match api_key(&state, ip, req.headers()).await {
            Some(key) => actor = Actor::ApiKey(key),
            None => {
                log(&path, StatusCode::UNAUTHORIZED, "bad_api_key");
                count_failure(&state, ip).await;
                return Err(unauthorized(
                    "a valid API key that may run workflows is required (Authorization: Bearer KEY)",
                ));
            }
        }
    }
    let (parts, body) = req.into_parts();
    let body = read_body(&path, &parts.headers, body).await?;
    if let WebhookAuth::Hmac(credential) = &hook.auth.value {
        match check_hmac(
            &hooks,
            target.name(),
            &credential.value,
            &parts.headers,
            &body,
        )
        .await
        {
            Ok(()) => {}
            Err(Refusal::Bad(why)) => {
                log(&path, StatusCode::UNAUTHORIZED, "bad_signature");
                count_failure(&state, ip).await;
                return Err(unauthorized(why));
            }
            Err(Refusal::NoCredential) => {
                log(&path, StatusCode::SERVICE_UNAVAILABLE, "credential_missing");
                return Err(AppError::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "this webhook's credential is not in the credential store for this workflow (stockade credential set NAME --workflow WORKFLOW --secret-stdin)",
                ));
            }
        }
    }
    let input = parse_json(&path, &body)?;
    let delivery = Delivery {
        body: input,
        headers: readable_headers(&parts.headers),
        query: query(&parts.uri),
        received_at_ms: now_ms(),
    };
    let commit = match hook.respond {
        Respond::Result => Commit::WithRun,
        Respond::Accepted => Commit::First,
    };
    let started = hooks.start(&actor, target, &path, delivery, commit).await?;
    let execution = started.id;
    if hook.respond == Respond::Result {
        let deadline = tokio::time::Instant::now() + RESULT_WAIT;
        if let Some(ended) = started.ended {
            // Run here: its end comes straight from the run. One whose enqueue goes with
            // its end is waited for whatever the bound: until then nothing is stored, and
            // nothing may be acknowledged.
            let ended = if started.committed {
                tokio::time::timeout_at(deadline, ended).await.ok()
            } else {
                Some(ended.await)
            };
            match ended {
                Some(Ok(Ok((RunOutcome::Succeeded, output)))) => {
                    log(&path, StatusCode::OK, "finished");
                    let body =
                        json!({ "execution": execution, "status": "succeeded", "output": output });
                    return Ok((StatusCode::OK, axum::Json(body)).into_response());
                }
                Some(Ok(Err(_)) | Err(_)) if !started.committed => {
                    // Nothing was written (the workflow was replaced meanwhile, or the
                    // database refused the run's commit).
                    log(&path, StatusCode::SERVICE_UNAVAILABLE, "not_started");
                    return Err(AppError::refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_started",
                        "the execution could not be stored; nothing was started (send it again)",
                    ));
                }
                _ => {}
            }
        }
        if let Some(res) = wait_result(hooks.store(), &execution, deadline).await {
            log(&path, res.status(), "finished");
            return Ok(res);
        }
    }
    log(&path, StatusCode::ACCEPTED, "accepted");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "execution": execution })),
    )
        .into_response())
}

/// The body, at most [`MAX_WORKFLOW_BODY`] bytes (a larger declared length is refused
/// unread; a longer stream once it passes the limit).
async fn read_body(
    path: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Vec<u8>, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        log(path, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
        AppError::refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {MAX_WORKFLOW_BODY} bytes"),
        )
    };
    if declared.is_some_and(|n| n > MAX_WORKFLOW_BODY as u64) {
        return Err(too_large());
    }
    match read_limited(body, MAX_WORKFLOW_BODY).await {
        Ok(b) => Ok(b),
        Err(ReadError::TooLarge) => Err(too_large()),
        Err(ReadError::Broken) => {
            log(path, StatusCode::BAD_REQUEST, "unreadable_body");
            Err(AppError::refused(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the request body could not be read",
            ))
        }
    }
}

/// The body as JSON (an empty body is `{}`); 400 with the parser's position otherwise.
fn parse_json(path: &str, body: &[u8]) -> Result<Value, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        log(path, StatusCode::BAD_REQUEST, "not_json");
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!(
                "the body is not JSON (line {}, column {}); nothing was started",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The headers an execution may read (`trigger.headers`): a short allowlist, never the
/// auth headers, cookies or the proxy's.
pub const READABLE_HEADERS: &[&str] = &[
    "content-type",
    "user-agent",
    "x-request-id",
    "x-delivery-id",
    "x-event-type",
];

fn readable_headers(headers: &HeaderMap) -> serde_json::Map<String, Value> {
    READABLE_HEADERS
        .iter()
        .filter_map(|name| {
            let v = headers.get(*name)?.to_str().ok()?;
            Some((
                (*name).to_owned(),
                Value::String(v.chars().take(256).collect()),
            ))
        })
        .collect()
}

fn query(uri: &axum::http::Uri) -> serde_json::Map<String, Value> {
    axum::extract::Query::<std::collections::BTreeMap<String, String>>::try_from_uri(uri)
        .map(|q| {
            q.0.into_iter()
                .take(64)
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// The API key of `Authorization: Bearer KEY` if it is valid and may run workflows.
async fn api_key(state: &AppState, ip: IpAddr, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    match state.access.authenticate_api_key(token.trim()).await.ok()? {
        Ok(principal) => principal
            .role
            .can(Permission::RunWorkflows)
            .then_some(principal.id),
        Err(KeyRejection::WrongEnvironment { key_env, .. }) => {
            // As on the API: a key of another environment is audited and alerted.
            if let Err(e) = state
                .access
                .record_wrong_environment_key(ip, &key_env)
                .await
            {
                tracing::error!("could not audit a wrong-environment key: {e}");
            }
            None
        }
        Err(_) => None,
    }
}

enum Refusal {
    Bad(&'static str),
    NoCredential,
}

async fn check_hmac(
    hooks: &WorkflowHooks,
    workflow: &str,
    credential: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    let given = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(Refusal::Bad(
            "X-Stockade-Signature: sha256=HEX (HMAC-SHA256 of the body) is required",
        ))?;
    let timestamp = match headers.get(TIMESTAMP_HEADER) {
        None => None,
        Some(v) => {
            let ts = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or(Refusal::Bad(
                    "X-Stockade-Timestamp is not a number of seconds",
                ))?;
            if (now_ms() / 1000 - ts).abs() > MAX_SKEW_S {
                return Err(Refusal::Bad("X-Stockade-Timestamp is too far from now"));
            }
            Some(ts)
        }
    };
    // Least privilege: the key must be scoped to this workflow (`credential set
    // --workflow`), as an `http.request` credential is.
    let scoped = hooks
        .vault
        .list_credentials()
        .await
        .map_err(|_| Refusal::NoCredential)?
        .into_iter()
        .find(|c| c.name == credential)
        .is_some_and(|c| c.scopes.workflows.iter().any(|w| w == workflow || w == "*"));
    if !scoped {
        return Err(Refusal::NoCredential);
    }
    let secret = hooks
        .vault
        .reveal_credential(credential)
        .await
        .map_err(|_| Refusal::NoCredential)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    let mut signed = Vec::with_capacity(body.len() + 12);
    if let Some(ts) = timestamp {
        signed.extend_from_slice(ts.to_string().as_bytes());
        signed.push(b'.');
    }
    signed.extend_from_slice(body);
    // Constant-time comparison.
    hmac::verify(&key, &signed, &given).map_err(|_| Refusal::Bad("the signature does not verify"))
}

/// The execution's answer once it ended, or `None` if it still runs at `deadline`.
async fn wait_result(
    store: &Store,
    execution: &str,
    deadline: tokio::time::Instant,
) -> Option<Response> {
    // Woken when this process ends the execution; re-read now and then for one ended by
    // another process (or an announcement lost to lag).
    let mut finished = store.finished_jobs();
    loop {
        let job = store.job(execution).await.ok().flatten()?;
        match job.state {
            JobState::Succeeded => {
                let output = last_output(store, execution).await;
                let body =
                    json!({ "execution": execution, "status": "succeeded", "output": output });
                return Some((StatusCode::OK, axum::Json(body)).into_response());
            }
            JobState::Failed => {
                let body =
                    json!({ "execution": execution, "status": "failed", "error": job.last_error });
                return Some((StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response());
            }
            JobState::Cancelled => {
                // Cancelled by an operator, or skipped by `concurrency: {on_limit: skip}`.
                let body = json!({ "execution": execution, "status": "cancelled" });
                return Some((StatusCode::CONFLICT, axum::Json(body)).into_response());
            }
            JobState::Queued | JobState::Running => {}
        }
        let reread = tokio::time::sleep(RESULT_REREAD);
        tokio::pin!(reread);
        loop {
            tokio::select! {
                ended = finished.recv() => match ended {
                    Ok(id) if &*id == execution => break,
                    Ok(_) => continue,
                    // Lagged (ids lost) or closed: read the job.
                    Err(_) => break,
                },
                () = &mut reread => break,
                () = tokio::time::sleep_until(deadline) => return None,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// The output of the last step that succeeded, unless it is sealed (PII) or absent.
async fn last_output(store: &Store, execution: &str) -> Value {
    let Ok(journal) = store.journal(execution).await else {
        return Value::Null;
    };
    journal
        .into_iter()
        .filter(|s| s.status == StepStatus::Succeeded)
        .max_by_key(|s| (s.finished_at_ms, s.started_at_ms))
        .and_then(|s| match s.output {
            StepOutput::Json(v) => Some(v),
            _ => None,
        })
        .unwrap_or(Value::Null)
}
