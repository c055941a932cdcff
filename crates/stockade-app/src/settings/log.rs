//! `[log]`: how the process writes its log lines. `format = "text"` (the default) is one
//! human-readable line per event; `format = "json"` is one JSON object per line for a log
//! shipper (tracing-subscriber's JSON formatter). Either way a line carries ids and
//! names only, never buyer data or secrets: the format changes the shape, not the content.

use serde::Deserialize;

use crate::AppError;

/// `[log]` as written in stockade.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFileConfig {
    format: Option<String>,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub(super) fn log_format(
    f: &LogFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<LogFormat, AppError> {
    let (format, src) = match f.format.as_deref() {
        None => (LogFormat::Text, "default"),
        Some("text") => (LogFormat::Text, "config file"),
        Some("json") => (LogFormat::Json, "config file"),
        Some(other) => {
            return Err(AppError::config(format!(
                "log.format must be \"text\" or \"json\", not {other:?}"
            )));
        }
    };
    let shown = match format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    provenance.push(("log.format", shown.to_owned(), src));
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_default_and_anything_else_is_refused() {
        let mut p = Vec::new();
        let f = |s: Option<&str>| LogFileConfig {
            format: s.map(str::to_owned),
        };
        assert_eq!(log_format(&f(None), &mut p).unwrap(), LogFormat::Text);
        assert_eq!(
            log_format(&f(Some("json")), &mut p).unwrap(),
            LogFormat::Json
        );
        assert_eq!(
            log_format(&f(Some("text")), &mut p).unwrap(),
            LogFormat::Text
        );
        let err = log_format(&f(Some("JSON ")), &mut p).unwrap_err();
        assert!(err.to_string().contains("\"text\" or \"json\""), "{err}");
    }
}
