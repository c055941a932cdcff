//! Refusals and failures answered in the caller's language: a page, in the same layout as
//! the sign-in pages, for a browser's form post or page load; the JSON error
//! (`{"error":{"code","message"}}`) for `/api/` and `/hooks/` clients. A person who
//! submitted a form never lands on raw JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::api_error;
use crate::pages::{esc, layout};

/// Whether a path answers in JSON (the API and the webhooks) rather than pages.
pub fn wants_json(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/hooks/")
}

/// An error page: a title, what happened, and a link back to somewhere useful. `message`
/// is plain text (escaped here); the JSON messages start in lower case, the page's
/// sentence with a capital.
pub fn error_page(status: StatusCode, title: &str, message: &str, back: (&str, &str)) -> Response {
    let mut chars = message.chars();
    let sentence: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}.</p><p><a href=\"{}\">{}</a></p>",
        esc(sentence.trim_end_matches('.')),
        esc(back.0),
        esc(back.1)
    );
    (status, layout(title, &body)).into_response()
}

/// A refusal: JSON for API and webhook paths, otherwise a page with the same message.
pub fn refusal(path: &str, status: StatusCode, code: &str, message: &str) -> Response {
    if wants_json(path) {
        api_error(status, code, message)
    } else {
        error_page(
            status,
            "Request refused",
            message,
            ("/", "Back to Stockade"),
        )
    }
}

/// An internal failure on a page route: logged with its cause, shown without it.
pub fn internal_page(e: impl std::fmt::Display) -> Response {
    tracing::error!("request failed: {e}");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The server could not complete this request. The cause is in the server log; try again, or ask an administrator.",
        ("/", "Back to Stockade"),
    )
}
