//! Prometheus metrics of the operator, served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `keeper_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error's reason, e.g. `InvalidSchedule` or `ApplyFailed`.
    pub reason: String,
}

/// Every metric the operator exports, and their registry.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that failed, by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// How long reconciles take.
    pub duration: Histogram,
    /// 1 while this replica holds the leader lease (or runs without election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keeper");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let leader = Gauge::default();
        registry.register(
            "reconciles",
            "MySQLInstance reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "MySQLInstance reconciles that failed, by reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of MySQLInstance reconciles",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader and reconciles",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            leader,
        }
    }
}

impl Metrics {
    /// Records the outcome of one reconcile.
    pub fn record(&self, elapsed: Duration, error_reason: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(reason) = error_reason {
            self.errors
                .get_or_create(&ErrorLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// The metrics in the Prometheus text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reconciles_errors_and_durations() {
        let metrics = Metrics::default();
        metrics.record(Duration::from_millis(20), None);
        metrics.record(Duration::from_millis(20), Some("InvalidSchedule"));
        metrics.leader.set(1);
        let text = metrics.encode();
        assert!(text.contains("keeper_reconciles_total 2"), "{text}");
        assert!(
            text.contains("keeper_reconcile_errors_total{reason=\"InvalidSchedule\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keeper_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("keeper_leader 1"), "{text}");
    }
}
