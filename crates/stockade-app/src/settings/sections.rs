//! The `[egress]`, `[sync]` and `[alerts]` sections of stockade.toml, resolved onto the
//! engines' defaults and checked; each setting shown by `stockade config` is recorded
//! with its source.

use stockade_core::Environment;

use super::{AlertsFileConfig, EgressFileConfig, EgressSettings, SyncFileConfig, seconds};
use crate::AppError;

pub(super) fn egress_settings(
    e: &EgressFileConfig,
    env: Option<Environment>,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<EgressSettings, AppError> {
    let src = |set: bool| if set { "config file" } else { "default" };
    let defaults = stockade_egress::EgressConfig::new(env.unwrap_or(Environment::Dev));
    let duration = |name: &str, text: &Option<String>, default| {
        positive(name, text, default, "(e.g. \"30s\")")
    };
    if let Some(hosts) = &e.allowed_hosts {
        for h in hosts {
            let ok = !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*'))
                && h == &h.to_ascii_lowercase();
            if !ok {
                return Err(AppError::config(format!(
                    "egress.allowed_hosts entry {h:?} is not a host: use lowercase \"host\", \"host:port\" or \"*.domain\" (no scheme, no path)"
                )));
            }
        }
    }
    let mut extra_root_pems = Vec::new();
    for path in e.extra_root_certs.iter().flatten() {
        let pem = std::fs::read_to_string(path).map_err(|err| {
            AppError::config(format!(
                "egress.extra_root_certs: cannot read {}: {err}",
                path.display()
            ))
        })?;
        extra_root_pems.push(pem);
    }
    let out = EgressSettings {
        allowed_hosts: e.allowed_hosts.clone(),
        extra_root_pems,
        connect_timeout: duration(
            "egress.connect_timeout",
            &e.connect_timeout,
            defaults.connect_timeout,
        )?,
        request_timeout: duration(
            "egress.request_timeout",
            &e.request_timeout,
            defaults.request_timeout,
        )?,
        max_attempts: e.max_attempts.unwrap_or(defaults.max_attempts).clamp(1, 10),
        log_retention: duration(
            "egress.log_retention",
            &e.log_retention,
            defaults.log_retention,
        )?,
    };
    provenance.push((
        "egress.allowed_hosts",
        match &out.allowed_hosts {
            Some(h) => h.join(", "),
            None => {
                "(the marketplaces' hosts for this environment; see docs/marketplaces.md)".into()
            }
        },
        src(e.allowed_hosts.is_some()),
    ));
    provenance.push((
        "egress.extra_root_certs",
        format!("{} file(s)", out.extra_root_pems.len()),
        src(e.extra_root_certs.is_some()),
    ));
    provenance.push((
        "egress.request_timeout",
        format!("{}s", out.request_timeout.as_secs()),
        src(e.request_timeout.is_some()),
    ));
    provenance.push((
        "egress.log_retention",
        format!("{}s", out.log_retention.as_secs()),
        src(e.log_retention.is_some()),
    ));
    Ok(out)
}

/// `[sync]`, resolved onto the engine's defaults.
pub(super) fn sync_settings(
    f: &SyncFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<stockade_sync::SyncOptions, AppError> {
    use std::time::Duration;
    let src = |set: bool| if set { "config file" } else { "default" };
    let show = |d: Option<Duration>| {
        d.map_or_else(
            || "never".into(),
            |d| match d.as_secs() {
                s if s % 86_400 == 0 => format!("{}d", s / 86_400),
                s if s % 3600 == 0 => format!("{}h", s / 3600),
                s if s % 60 == 0 => format!("{}m", s / 60),
                s => format!("{s}s"),
            },
        )
    };
    let mut o = stockade_sync::SyncOptions::default();
    // An interval may be "never"; an overlap or a retention may not.
    let interval = |name: &str, text: &Option<String>, default: Option<Duration>| {
        let default_s = default.map_or(-1, |d| d.as_secs() as i64);
        let s = seconds(name, text, default_s)?;
        Ok::<_, AppError>((s > 0).then(|| Duration::from_secs(s as u64)))
    };
    let positive = |name: &str, text: &Option<String>, default| {
        positive(name, text, default, "(e.g. \"2m\"), not never")
    };
    o.poll_interval = interval("sync.poll_interval", &f.poll_interval, o.poll_interval)?;
    o.poll_overlap = positive("sync.poll_overlap", &f.poll_overlap, o.poll_overlap)?;
    o.reconcile_interval = interval(
        "sync.reconcile_interval",
        &f.reconcile_interval,
        o.reconcile_interval,
    )?;
    // Amazon's createReport allows one call a minute per seller, shared by all reports.
    let returns = positive(
        "sync.returns_report_interval",
        &f.returns_report_interval,
        o.returns_report_interval
            .unwrap_or(Duration::from_secs(30 * 60)),
    )?;
    if returns < Duration::from_secs(60) {
        return Err(AppError::config(
            "sync.returns_report_interval must be at least \"1m\" (Amazon allows one report request a minute)",
        ));
    }
    o.returns_report_interval = Some(returns);
    provenance.push((
        "sync.poll_interval",
        show(o.poll_interval),
        src(f.poll_interval.is_some()),
    ));
    provenance.push((
        "sync.poll_overlap",
        show(Some(o.poll_overlap)),
        src(f.poll_overlap.is_some()),
    ));
    provenance.push((
        "sync.reconcile_interval",
        show(o.reconcile_interval),
        src(f.reconcile_interval.is_some()),
    ));
    provenance.push((
        "sync.returns_report_interval",
        show(o.returns_report_interval),
        src(f.returns_report_interval.is_some()),
    ));
    if let Some(t) = f.low_stock_threshold {
        if !(0..=1_000_000).contains(&t) {
            return Err(AppError::config(
                "sync.low_stock_threshold must be a number of units from 0 to 1000000",
            ));
        }
        o.low_stock_threshold = t;
    }
    provenance.push((
        "sync.low_stock_threshold",
        o.low_stock_threshold.to_string(),
        src(f.low_stock_threshold.is_some()),
    ));
    if let Some(n) = f.max_pending_deliveries {
        let n = usize::try_from(n)
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| {
                AppError::config(
                    "sync.max_pending_deliveries must be a number of deliveries from 1 to 1000000",
                )
            })?;
        o.max_pending_deliveries = n;
    }
    provenance.push((
        "sync.max_pending_deliveries",
        o.max_pending_deliveries.to_string(),
        src(f.max_pending_deliveries.is_some()),
    ));
    Ok(o)
}

/// `[alerts]`, resolved and validated.
pub(super) fn alerts_settings(
    f: &AlertsFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<stockade_alerts::AlertsConfig, AppError> {
    use stockade_alerts::{ChannelConfig, ChannelKind, Severity};
    let src = |set: bool| if set { "config file" } else { "default" };
    let mut c = stockade_alerts::AlertsConfig::default();
    let positive =
        |name: &str, text: &Option<String>, default| positive(name, text, default, "(e.g. \"5m\")");
    c.window = positive("alerts.window", &f.window, c.window)?;
    c.retry_max = positive("alerts.retry_max", &f.retry_max, c.retry_max)?;
    c.dashboard_url = f
        .dashboard_url
        .as_ref()
        .map(|u| u.trim_end_matches('/').to_owned());
    if let Some(l) = &f.language {
        c.language = stockade_alerts::Language::parse(l.trim()).ok_or_else(|| {
            AppError::config(format!(
                "[alerts] language = {l:?}: use \"en\" (English) or \"zh\" (Simplified Chinese)"
            ))
        })?;
    }
    provenance.push((
        "alerts.language",
        c.language.as_str().to_owned(),
        src(f.language.is_some()),
    ));
    for ch in &f.channels {
        let kind = ChannelKind::parse(&ch.kind).ok_or_else(|| {
            AppError::config(format!(
                "alert channel {}: kind {:?} is not one of dingtalk, dingtalk_app, feishu, lark, webhook",
                ch.name, ch.kind
            ))
        })?;
        let url = match (&ch.url, kind.default_url()) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err(AppError::config(format!(
                    "alert channel {}: a webhook channel needs url = \"https://…\"",
                    ch.name
                )));
            }
        };
        let mut cfg = ChannelConfig::new(&ch.name, kind, &url);
        cfg.keyword = ch.keyword.clone();
        if let Some(s) = &ch.min_severity {
            cfg.min_severity = Severity::parse(s).ok_or_else(|| {
                AppError::config(format!(
                    "alert channel {}: min_severity {s:?} is not one of info, warning, error, critical",
                    ch.name
                ))
            })?;
        }
        cfg.sources = ch.sources.clone().unwrap_or_default();
        cfg.robot_code = ch.robot_code.clone();
        cfg.conversation = ch.conversation.clone();
        if let Some(n) = ch.per_second {
            cfg.per_second = n;
        }
        if let Some(n) = ch.per_minute {
            cfg.per_minute = n;
        }
        cfg.throttle_backoff = positive(
            "alerts.channel.throttle_backoff",
            &ch.throttle_backoff,
            cfg.throttle_backoff,
        )?;
        c.channels.push(cfg);
    }
    c.validate().map_err(AppError::config)?;
    provenance.push((
        "alerts.channels",
        if c.channels.is_empty() {
            "(none: alerts are kept on the dashboard only)".into()
        } else {
            c.channels
                .iter()
                .map(|ch| format!("{} ({}, {}+)", ch.name, ch.kind.as_str(), ch.min_severity))
                .collect::<Vec<_>>()
                .join(", ")
        },
        src(!f.channels.is_empty()),
    ));
    provenance.push((
        "alerts.window",
        format!("{}s", c.window.as_secs()),
        src(f.window.is_some()),
    ));
    Ok(c)
}

/// A duration that must be positive (not "never"); `hint` follows the refusal.
fn positive(
    name: &str,
    text: &Option<String>,
    default: std::time::Duration,
    hint: &str,
) -> Result<std::time::Duration, AppError> {
    let s = seconds(name, text, default.as_secs() as i64)?;
    if s <= 0 {
        return Err(AppError::config(format!(
            "{name} must be a positive duration {hint}"
        )));
    }
    Ok(std::time::Duration::from_secs(s as u64))
}

/// `[workflows.script]`: the limits a `script` step gets when its workflow names none,
/// and the most a workflow may ask for.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScriptFileConfig {
    memory_mb: Option<u64>,
    time_ms: Option<u64>,
    output_kb: Option<u64>,
    max_memory_mb: Option<u64>,
    max_time_ms: Option<u64>,
    max_output_kb: Option<u64>,
}

/// Ceilings of the maxima themselves: a script step is a data transformation, and one
/// that needs more belongs elsewhere.
const SCRIPT_CEILING: ScriptLimitsCeiling = ScriptLimitsCeiling {
    memory_mb: 2_048,
    time_ms: 300_000,
    output_kb: 65_536,
};
type ScriptLimitsCeiling = stockade_workflows::exec::ScriptLimits;

/// One limit: its value and its maximum, from the file or the defaults, checked.
struct OneLimit {
    name: &'static str,
    max_name: &'static str,
    value: Option<u64>,
    max: Option<u64>,
    default: u64,
    default_max: u64,
    ceiling: u64,
}

impl OneLimit {
    fn resolve(
        &self,
        provenance: &mut Vec<(&'static str, String, &'static str)>,
    ) -> Result<(u64, u64), AppError> {
        let src = |set: bool| if set { "config file" } else { "default" };
        let max = self.max.unwrap_or(self.default_max);
        if max == 0 || max > self.ceiling {
            return Err(AppError::config(format!(
                "{} must be from 1 to {}",
                self.max_name, self.ceiling
            )));
        }
        let value = self.value.unwrap_or(self.default.min(max));
        if value == 0 || value > max {
            return Err(AppError::config(format!(
                "{} must be from 1 to {} ({max})",
                self.name, self.max_name
            )));
        }
        provenance.push((self.name, value.to_string(), src(self.value.is_some())));
        provenance.push((self.max_name, max.to_string(), src(self.max.is_some())));
        Ok((value, max))
    }
}

pub(super) fn script_settings(
    f: &ScriptFileConfig,
    provenance: &mut Vec<(&'static str, String, &'static str)>,
) -> Result<stockade_workflows::exec::ScriptSettings, AppError> {
    use stockade_workflows::exec::{ScriptLimits, ScriptSettings};
    let d = ScriptSettings::default();
    let (memory_mb, max_memory_mb) = OneLimit {
        name: "workflows.script.memory_mb",
        max_name: "workflows.script.max_memory_mb",
        value: f.memory_mb,
        max: f.max_memory_mb,
        default: d.default.memory_mb,
        default_max: d.max.memory_mb,
        ceiling: SCRIPT_CEILING.memory_mb,
    }
    .resolve(provenance)?;
    let (time_ms, max_time_ms) = OneLimit {
        name: "workflows.script.time_ms",
        max_name: "workflows.script.max_time_ms",
        value: f.time_ms,
        max: f.max_time_ms,
        default: d.default.time_ms,
        default_max: d.max.time_ms,
        ceiling: SCRIPT_CEILING.time_ms,
    }
    .resolve(provenance)?;
    let (output_kb, max_output_kb) = OneLimit {
        name: "workflows.script.output_kb",
        max_name: "workflows.script.max_output_kb",
        value: f.output_kb,
        max: f.max_output_kb,
        default: d.default.output_kb,
        default_max: d.max.output_kb,
        ceiling: SCRIPT_CEILING.output_kb,
    }
    .resolve(provenance)?;
    Ok(ScriptSettings {
        default: ScriptLimits {
            memory_mb,
            time_ms,
            output_kb,
        },
        max: ScriptLimits {
            memory_mb: max_memory_mb,
            time_ms: max_time_ms,
            output_kb: max_output_kb,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn script(text: &str) -> Result<stockade_workflows::exec::ScriptSettings, AppError> {
        let f: ScriptFileConfig = toml::from_str(text).expect("parses");
        script_settings(&f, &mut Vec::new())
    }

    #[test]
    fn script_limits_default_configure_and_stay_under_their_maxima() {
        let d = script("").unwrap();
        assert_eq!(d, stockade_workflows::exec::ScriptSettings::default());
        assert_eq!(
            (d.default.memory_mb, d.default.time_ms, d.default.output_kb),
            (32, 1_000, 256)
        );
        assert_eq!(
            (d.max.memory_mb, d.max.time_ms, d.max.output_kb),
            (256, 30_000, 4_096)
        );
        let s = script("memory_mb = 64\nmax_time_ms = 500\n").unwrap();
        assert_eq!(
            (s.default.memory_mb, s.default.time_ms, s.max.time_ms),
            (64, 500, 500)
        );
        assert!(script("memory_mb = 512\n").is_err(), "above the maximum");
        assert!(
            script("max_time_ms = 600000\n").is_err(),
            "above the ceiling"
        );
        assert!(script("time_ms = 0\n").is_err());
        assert!(
            toml::from_str::<ScriptFileConfig>("cpu = 1\n").is_err(),
            "unknown key"
        );
    }
}
