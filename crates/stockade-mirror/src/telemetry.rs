//! The mirror's metrics, registered by the composition root for `/metrics`:
//! `stockade_audit_mirror_lag_rows{sink}`, `stockade_audit_mirror_lag_seconds{sink}`,
//! `stockade_audit_mirror_rows_total{sink}` (rows copied) and
//! `stockade_audit_mirror_failures_total{sink}`.
//!
//! Invariant: the only label is the sink's fixed name (`nocodb`, `file`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: &'static str,
}

/// The handles the sinks update.
#[derive(Debug, Clone, Default)]
pub struct MirrorTelemetry {
    pub lag_rows: Family<SinkLabels, Gauge>,
    pub lag_seconds: Family<SinkLabels, Gauge>,
    pub rows: Family<SinkLabels, Counter>,
    pub failures: Family<SinkLabels, Counter>,
}

impl MirrorTelemetry {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stockade_audit_mirror_lag_rows",
            "Audit rows not yet copied to the sink",
            self.lag_rows.clone(),
        );
        registry.register(
            "stockade_audit_mirror_lag_seconds",
            "Age in seconds of the oldest audit row not yet copied to the sink (0 when caught up)",
            self.lag_seconds.clone(),
        );
        registry.register(
            "stockade_audit_mirror_rows",
            "Audit rows copied to the sink by this process",
            self.rows.clone(),
        );
        registry.register(
            "stockade_audit_mirror_failures",
            "Failed attempts to copy audit rows to the sink",
            self.failures.clone(),
        );
    }

    pub(crate) fn lag(&self, sink: &'static str, rows: i64, seconds: i64) {
        self.lag_rows.get_or_create(&SinkLabels { sink }).set(rows);
        self.lag_seconds
            .get_or_create(&SinkLabels { sink })
            .set(seconds);
    }

    pub(crate) fn copied(&self, sink: &'static str, n: u64) {
        self.rows.get_or_create(&SinkLabels { sink }).inc_by(n);
    }

    pub(crate) fn failed(&self, sink: &'static str) {
        self.failures.get_or_create(&SinkLabels { sink }).inc();
    }
}
