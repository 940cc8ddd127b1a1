//! Prometheus metrics of the operator, served on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backup_metrics::BackupMetrics;

/// Labels of `keeper_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error's reason, e.g. `InvalidSchedule` or `ApplyFailed`.
    pub reason: String,
}

/// The reconcile metrics of one controller: started, failed by reason, and
/// how long they take.
#[derive(Clone)]
pub struct ReconcileMetrics {
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that failed, by reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// How long reconciles take.
    pub duration: Histogram,
}

impl ReconcileMetrics {
    /// New metrics registered as `<prefix>reconciles`,
    /// `<prefix>reconcile_errors` and `<prefix>reconcile_duration_seconds`;
    /// `kind` names the reconciled objects in the help texts.
    fn register(registry: &mut Registry, prefix: &str, kind: &str) -> Self {
        let metrics = Self {
            reconciles: Counter::default(),
            errors: Family::<ErrorLabels, Counter>::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        };
        registry.register(
            format!("{prefix}reconciles"),
            format!("{kind} reconciles started"),
            metrics.reconciles.clone(),
        );
        registry.register(
            format!("{prefix}reconcile_errors"),
            format!("{kind} reconciles that failed, by reason"),
            metrics.errors.clone(),
        );
        registry.register(
            format!("{prefix}reconcile_duration_seconds"),
            format!("Duration of {kind} reconciles"),
            metrics.duration.clone(),
        );
        metrics
    }

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
}

/// Every metric the operator exports, and their registry: each controller
/// has its own reconcile metrics.
pub struct Metrics {
    registry: Registry,
    /// The `MySQLInstance` controller's: `keeper_reconciles_total`,
    /// `keeper_reconcile_errors_total`, `keeper_reconcile_duration_seconds`.
    pub instances: ReconcileMetrics,
    /// The `MySQLBackup` controller's: `keeper_backup_reconciles_total`,
    /// `keeper_backup_reconcile_errors_total`,
    /// `keeper_backup_reconcile_duration_seconds`.
    pub backups: ReconcileMetrics,
    /// 1 while this replica holds the leader lease (or runs without election).
    pub leader: Gauge,
    /// Per instance, from the controllers' caches: `keeper_backup_last_success_*`,
    /// `keeper_backup_consecutive_failures`, … ([`crate::backup_metrics`]).
    pub instance_backups: Arc<BackupMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keeper");
        let instances = ReconcileMetrics::register(&mut registry, "", "MySQLInstance");
        let backups = ReconcileMetrics::register(&mut registry, "backup_", "MySQLBackup");
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the leader and reconciles",
            leader.clone(),
        );
        let instance_backups = Arc::new(BackupMetrics::default());
        registry.register_collector(Box::new(instance_backups.clone()));
        Self {
            registry,
            instances,
            backups,
            leader,
            instance_backups,
        }
    }
}

impl Metrics {
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
        metrics.instances.record(Duration::from_millis(20), None);
        metrics
            .instances
            .record(Duration::from_millis(20), Some("InvalidSchedule"));
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

    #[test]
    fn each_controller_has_its_own_metrics() {
        let metrics = Metrics::default();
        metrics
            .backups
            .record(Duration::from_millis(20), Some("InstanceNotFound"));
        let text = metrics.encode();
        assert!(text.contains("keeper_backup_reconciles_total 1"), "{text}");
        assert!(
            text.contains("keeper_backup_reconcile_errors_total{reason=\"InstanceNotFound\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keeper_backup_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        // The instances' own are untouched.
        assert!(text.contains("keeper_reconciles_total 0"), "{text}");
    }
}
