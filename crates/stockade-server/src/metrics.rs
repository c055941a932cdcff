//! `GET /metrics`: the Prometheus text exposition. A client that asks for OpenMetrics
//! (`Accept: application/openmetrics-text`, as Prometheus does) gets it as the registry
//! encodes it; any other (curl, `promtool check metrics`, older scrapers) gets the classic
//! text format 0.0.4, converted line by line ([`to_classic`]). The gate ([`crate::routes::Gate::MetricsScrape`]) has already
//! admitted the caller; this handler only asks the [`MetricsSource`](crate::MetricsSource)
//! the composition root put in the state to render. Labels never carry buyer data,
//! order ids or addresses (the source's job; its tests check it).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as the classic format: a counter family `x` is announced as `x_total`
/// (its samples' name), an info family `x` as the gauge `x_info`, and `# EOF` / `# UNIT`
/// lines go. Sample lines are the same in both formats.
pub fn to_classic(open: &str) -> String {
    let mut kinds: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            kinds.insert(name, kind);
        }
    }
    let renamed = |name: &str| match kinds.get(name) {
        Some(&"counter") => format!("{name}_total"),
        Some(&"info") => format!("{name}_info"),
        _ => name.to_owned(),
    };
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let kind = if kind == "info" { "gauge" } else { kind };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ")
            && let Some((name, help)) = rest.split_once(' ')
        {
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

pub async fn scrape(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(source) = state.metrics.as_ref() else {
        return Err(AppError::refused(
            StatusCode::NOT_FOUND,
            "not_found",
            "metrics are not served by this process",
        ));
    };
    match source.render().await {
        Ok(text) if wants_openmetrics(&headers) => {
            Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
        }
        Ok(text) => Ok((
            [(header::CONTENT_TYPE, CLASSIC_CONTENT_TYPE)],
            to_classic(&text),
        )
            .into_response()),
        Err(e) => {
            tracing::error!("could not render metrics: {e}");
            Err(AppError::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "metrics could not be read just now",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_families_after_their_samples() {
        let open = "# HELP a_build Version.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n# HELP a_pushes Pushes.\n# TYPE a_pushes counter\n# UNIT a_pushes x\na_pushes_total{c=\"t\"} 4\n# HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 0\n# EOF\n";
        assert_eq!(
            to_classic(open),
            "# HELP a_build_info Version.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n# HELP a_pushes_total Pushes.\n# TYPE a_pushes_total counter\na_pushes_total{c=\"t\"} 4\n# HELP a_depth Depth.\n# TYPE a_depth gauge\na_depth 0\n"
        );
    }
}
