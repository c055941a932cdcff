//! The OpenAPI 3.1 document of the JSON API, served at `GET /api/v1/openapi.json`.
//!
//! Built once from the handlers' own `#[utoipa::path]` attributes and the `ToSchema`
//! types they answer with ([`crate::api_types`], [`crate::api_workflows`]), so the document
//! follows the code. [`SecurityDoc`] then adds what the gate (`routes.rs`) decides for every
//! route instead of the handlers: the security schemes (API key bearer; session cookie,
//! plus the CSRF header on state-changing requests), and the gate's refusals (401, 403,
//! 429, 500 in the one error shape) on every operation.
//!
//! Invariants: every `/api/` route of [`crate::routes::ROUTES`] is documented with the
//! same method and path template, and nothing else is (checked by the integration tests);
//! the public routes (sign-in, this document) carry an empty security requirement. The
//! document holds no secret and no instance data, so it is public.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api_incidents as ai;
use crate::api_types::ErrorBody;
use crate::extract::{CSRF_HEADER, SESSION_COOKIE};
use crate::{
    api, api_alerts, api_ops as ops, api_orders, api_stock, api_types, api_workflows as wf,
    stock_actions,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stockade API",
        description = "The JSON API of a Stockade server. Authenticate with an API key \
            (`Authorization: Bearer stk_…`) or a session cookie from sign-in (then send the \
            session's CSRF token as `X-CSRF-Token` on POST and DELETE). Every error is \
            `{\"error\":{\"code\",\"message\"}}`. Lists with `next_cursor` are paged by \
            passing it back as `cursor`."
    ),
    paths(
        api::login, api::mfa_enroll, api::mfa_confirm, api::logout, api::whoami,
        api::users, api::api_keys, api::bans, api::add_ban, api::remove_ban,
        api::audit_verify, api::audit, api_alerts::alerts, openapi_json,
        wf::list, wf::versions, wf::approve, wf::run, wf::executions, wf::execution,
        wf::cancel, wf::rerun,
        // Orders.
        api_orders::list, api_orders::show, api_orders::reveal,
        // The workflow pages' review reads, rejection, and the alert test-send.
        wf::reject, wf::diff, wf::lint, api_alerts::alert_test,
        ops::connections, ops::pause, ops::resume, ops::revoke, ops::sessions,
        ops::revoke_session, ops::revoke_user_sessions, ops::revoke_api_key,
        // The inventory and stock API.
        api_stock::list, api_stock::show, api_stock::adjust, api_stock::csv,
        stock_actions::api_import, stock_actions::api_discover,
        crate::console_compliance::api,
        // Incident response.
        ai::list, ai::show, ai::open, ai::revoke, ai::isolate, ai::release, ai::lockdown,
        ai::note, ai::notify, ai::close, ai::report,
    ),
    components(schemas(ErrorBody, api_types::ErrorDetail)),
    modifiers(&SecurityDoc),
    tags(
        (name = "auth", description = "Sign-in, TOTP enrollment and sign-out"),
        (name = "access", description = "Users, API keys and bans"),
        (name = "audit", description = "The audit chain"),
        (name = "alerts", description = "Alert channels and history"),
        (name = "workflows", description = "Workflows, versions, approval and manual runs"),
        (name = "executions", description = "Executions, their timelines, cancel and rerun"),
        (name = "meta", description = "This document"),
        (name = "orders", description = "Orders, their lines, history and stock movements; the audited reveal of buyer fields"),
        (name = "connections", description = "Marketplace connections: health, pause, resume, revoke"),
        (name = "stock", description = "Stock per SKU and channel, adjustments, CSV export"),
        (name = "compliance", description = "Each policy clause with its verdict and live evidence"),
        (name = "incidents", description = "Incident response: open, revoke, isolate, lockdown, release, notes, notices, close, report"),
    ),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// Security schemes and the gate's refusals, added to every operation.
#[derive(Debug)]
pub struct SecurityDoc;

const ERROR_RESPONSE: &str = "Error";

impl Modify for SecurityDoc {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("stk_…")
                    .description(Some("An API key made with `stockade apikey create`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie set by sign-in (browsers: the console)",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                CSRF_HEADER,
                "The session's `csrf_token` (sign-in answer); required with the cookie on POST and DELETE",
            ))),
        );
        components.responses.insert(
            ERROR_RESPONSE.to_owned(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("Refused or failed: the one JSON error shape")
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for (op, changes) in [(&mut item.get, false), (&mut item.delete, true)]
                .into_iter()
                .chain([(&mut item.post, true)])
            {
                if let Some(op) = op.as_mut() {
                    gate_operation(op, changes);
                }
            }
        }
    }
}

/// The gate's part of one operation: who may call it and how it may be refused.
fn gate_operation(op: &mut Operation, changes_state: bool) {
    let public = op
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
    if op.security.is_none() {
        let session = if changes_state {
            SecurityRequirement::new("session", Vec::<String>::new())
                .add("csrf", Vec::<String>::new())
        } else {
            SecurityRequirement::new("session", Vec::<String>::new())
        };
        op.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            session,
        ]);
    }
    // 403: banned address or missing permission; 429: throttled; 500: failed on the
    // server; 401 (gated routes): not signed in, session locked, or a bad API key.
    let mut refusals = vec!["403", "429", "500"];
    if !public {
        refusals.push("401");
    }
    for status in refusals {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(ERROR_RESPONSE)));
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
}

/// GET /api/v1/openapi.json: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
