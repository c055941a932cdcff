//! Catalogue import and listing discovery, in the console (forms on the inventory, a
//! result page) and over the API. Import is `stockade_sync::catalog::import_csv`, the code
//! path of `stockade sku import` (every row checked first, then one transaction; a refused
//! file writes nothing and the refusal names the line); discovery is
//! `stockade_sync::discover::discover`, the code path of `stockade sku discover`, run on
//! this process's vault and egress gateway ([`crate::channel_live::ChannelLive`]).
//!
//! Invariants: both need `ManageSync` (the route table); the caller is the audit actor;
//! a refusal is shown in the user's language with the library's detail (which names the
//! line or the connection); a dry-run discovery writes nothing.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Form, Json};
use serde::{Deserialize, Serialize};
use stockade_sync::SyncError;
use stockade_sync::catalog::ImportReport;
use stockade_sync::discover::{DiscoverOptions, DiscoverReport};
use utoipa::ToSchema;

use crate::api_types::ErrorBody;
use crate::console::Chrome;
use crate::error::{AppError, render};
use crate::extract::Caller;
use crate::i18n::Lang;
use crate::state::AppState;

/// The largest catalogue the API accepts in one request.
pub const IMPORT_MAX: usize = 8 * 1024 * 1024;

fn refused(lang: Lang, key: &str, e: SyncError) -> AppError {
    match e {
        SyncError::Invalid(m) => AppError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{} {m}", lang.t(key)),
        ),
        e @ SyncError::UnknownConnection(_) => AppError::refused(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} {e}", lang.t(key)),
        ),
        e @ SyncError::Revoked(_) => AppError::refused(
            StatusCode::CONFLICT,
            "revoked",
            format!("{} {e}", lang.t(key)),
        ),
        // The marketplace's scrubbed message (never a secret or buyer data).
        e @ SyncError::Market(_) => AppError::refused(
            StatusCode::BAD_GATEWAY,
            "marketplace",
            format!("{} {e}", lang.t(key)),
        ),
        e => AppError::internal(e),
    }
}

async fn import(
    state: &AppState,
    caller: &Caller,
    lang: Lang,
    text: &str,
) -> Result<ImportReport, AppError> {
    stockade_sync::catalog::import_csv(state.access.store(), text, &caller.actor())
        .await
        .map_err(|e| refused(lang, "inv.import_refused", e))
}

async fn discover(
    state: &AppState,
    caller: &Caller,
    lang: Lang,
    connection: &str,
    opts: DiscoverOptions,
) -> Result<DiscoverReport, AppError> {
    let Some(live) = &state.channels else {
        return Err(AppError::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            lang.t("inv.discover_unavailable"),
        ));
    };
    live.discover(connection, opts, &caller.actor())
        .await
        .map_err(|e| refused(lang, "inv.discover_refused", e))
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    pub skus: usize,
    pub listings: usize,
    /// Order lines that waited for one of these SKUs and are now matched; of them, the
    /// lines of open orders were reserved.
    pub matched_lines: usize,
    pub reserved_lines: usize,
    pub warnings: Vec<String>,
}

/// Import a catalogue CSV (`sku,on_hand[,low_stock_threshold][,CONNECTION:listing,…]`),
/// as `stockade sku import`: every row is checked first; a refused file writes nothing.
#[utoipa::path(post, path = "/api/v1/stock/import", tag = "stock", operation_id = "stock_import",
    request_body(content = String, content_type = "text/csv", description = "The catalogue CSV"),
    responses(
        (status = 200, description = "Imported", body = ImportAnswer),
        (status = 422, description = "Refused (the message names the line); nothing written", body = ErrorBody),
    ))]
pub async fn api_import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<ImportAnswer>, AppError> {
    let r = import(&state, &caller, Lang::for_caller(&caller, &headers), &body).await?;
    Ok(Json(ImportAnswer {
        skus: r.skus,
        listings: r.listings,
        matched_lines: r.matched_lines,
        reserved_lines: r.reserved_lines,
        warnings: r.warnings,
    }))
}

/// `POST /api/v1/stock/discover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverBody {
    /// The connection's name.
    pub connection: String,
    /// New SKUs take the marketplace's quantity as their on hand (else 0).
    #[serde(default)]
    pub take_quantity: bool,
    /// Report only; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a discovery found and did (as `stockade sku discover` prints it).
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoverAnswer {
    /// `connection`, `marketplace`, `dry_run`, `found`, `new_skus`, `new_listings`,
    /// `changed`, `unchanged`, `gone`, `skipped`, `case_conflicts`, `matched_lines`,
    /// `reserved_lines`.
    #[schema(value_type = Object)]
    pub report: DiscoverReport,
}

/// Read a connection's listings from its marketplace and merge them into the catalogue
/// (`stockade sku discover`).
#[utoipa::path(post, path = "/api/v1/stock/discover", tag = "stock", operation_id = "stock_discover",
    request_body = DiscoverBody,
    responses(
        (status = 200, description = "What was found and matched", body = DiscoverAnswer),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "The connection is revoked", body = ErrorBody),
    ))]
pub async fn api_discover(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Json<DiscoverBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DiscoverAnswer>, AppError> {
    let Json(b) = body.map_err(|_| {
        AppError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body is {\"connection\": string, \"take_quantity\": bool, \"dry_run\": bool}",
        )
    })?;
    let opts = DiscoverOptions {
        take_quantity: b.take_quantity,
        dry_run: b.dry_run,
    };
    let report = discover(
        &state,
        &caller,
        Lang::for_caller(&caller, &headers),
        &b.connection,
        opts,
    )
    .await?;
    Ok(Json(DiscoverAnswer { report }))
}

/// Result lines in groups: a label and its lines (SKU · listing …).
type Groups = Vec<(&'static str, Vec<String>)>;

#[derive(Template)]
#[template(path = "stock_result.html")]
struct ResultPage {
    c: Chrome,
    title: &'static str,
    /// The summary, or the refusal.
    summary: String,
    refused: bool,
    groups: Groups,
}

fn page(
    c: Chrome,
    title: &'static str,
    outcome: Result<(String, Groups), AppError>,
) -> Result<Response, AppError> {
    let (summary, groups, refused) = match outcome {
        Ok((s, g)) => (s, g, false),
        Err(AppError::Refused { message, .. }) => (message.into_owned(), Vec::new(), true),
        Err(e) => return Err(e),
    };
    let status = if refused {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render(
        status,
        &ResultPage {
            c,
            title,
            summary,
            refused,
            groups,
        },
    ))
}

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    csv: String,
}

/// The inventory's import form (the CSV pasted; up to the form limit).
pub async fn import_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<ImportForm>,
) -> Result<Response, AppError> {
    let c = Chrome::new(&state, &caller, &headers, "inventory", "/inventory".into());
    let lang = c.lang;
    let outcome = import(&state, &caller, lang, &form.csv).await.map(|r| {
        let summary = format!(
            "{} {} · {} {} · {} {}",
            lang.t("inv.skus"),
            r.skus,
            lang.t("inv.listings"),
            r.listings,
            lang.t("inv.matched_lines"),
            r.matched_lines
        );
        (summary, vec![(lang.t("inv.warnings"), r.warnings)])
    });
    page(c, "inv.import_title", outcome)
}

#[derive(Deserialize)]
pub struct DiscoverForm {
    #[serde(default)]
    connection: String,
    #[serde(default)]
    take_quantity: Option<String>,
    #[serde(default)]
    dry_run: Option<String>,
}

/// The inventory's discovery form: what was found and matched (or would be, dry).
pub async fn discover_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<DiscoverForm>,
) -> Result<Response, AppError> {
    let c = Chrome::new(&state, &caller, &headers, "inventory", "/inventory".into());
    let lang = c.lang;
    let opts = DiscoverOptions {
        take_quantity: form.take_quantity.is_some(),
        dry_run: form.dry_run.is_some(),
    };
    let outcome = discover(&state, &caller, lang, form.connection.trim(), opts)
        .await
        .map(|r| discover_lines(lang, &r));
    page(c, "inv.discover_title", outcome)
}

fn discover_lines(lang: Lang, r: &DiscoverReport) -> (String, Groups) {
    let summary = format!(
        "{}{} · {} {} · {} {} · {} {} · {} {} · {} {} · {} {}",
        if r.dry_run {
            lang.t("inv.dry_note")
        } else {
            ""
        },
        r.connection,
        lang.t("inv.found"),
        r.found,
        lang.t("inv.new_skus"),
        r.new_skus.len(),
        lang.t("inv.new_listings"),
        r.new_listings.len(),
        lang.t("inv.changed"),
        r.changed.len(),
        lang.t("inv.unchanged"),
        r.unchanged,
        lang.t("inv.gone"),
        r.gone.len()
    );
    let listing = |l: &stockade_sync::discover::FoundListing| format!("{} · {}", l.sku, l.listing);
    let groups = vec![
        (
            lang.t("inv.new_skus"),
            r.new_skus
                .iter()
                .map(|n| {
                    format!(
                        "{} · {} · {} {}",
                        n.sku,
                        n.listing,
                        lang.t("inv.on_hand"),
                        n.on_hand
                    )
                })
                .collect(),
        ),
        (
            lang.t("inv.new_listings"),
            r.new_listings.iter().map(listing).collect(),
        ),
        (
            lang.t("inv.changed"),
            r.changed.iter().map(listing).collect(),
        ),
        (lang.t("inv.gone"), r.gone.iter().map(listing).collect()),
        (
            lang.t("inv.skipped"),
            r.skipped
                .iter()
                .map(|(s, why)| format!("{s} · {why}"))
                .collect(),
        ),
    ];
    (summary, groups)
}

// Forms are never printed whole (a pasted catalogue can be large).
impl std::fmt::Debug for ImportForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportForm")
            .field("bytes", &self.csv.len())
            .finish()
    }
}
impl std::fmt::Debug for DiscoverForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscoverForm")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}
