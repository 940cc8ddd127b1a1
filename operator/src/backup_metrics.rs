//! Backup metrics per instance: what an on-call engineer asks at 3 a.m.
//! (does last night's backup exist, how big, how long, did runs fail, when
//! is the next one, by when must one succeed).
//!
//! The values are computed at scrape time from the controllers' caches —
//! the `MySQLInstance` objects and the `MySQLBackup` objects — by a pure
//! function, [`figures`]. So they survive the Jobs and an operator restart
//! (nothing is counted in memory), a deleted instance's series go with it
//! (it is no longer in the cache), and a standby replica, which runs no
//! controllers, exports none.
//!
//! Every series is labelled `namespace` and `mysqlinstance` (the
//! kube-state-metrics convention of naming the label after the kind; plain
//! `instance` would collide with Prometheus' target label), never by backup
//! name, so there are at most eight series per instance.
//!
//! Failures are a gauge of the failed runs since the last success, not a
//! counter: a counter needs every failure seen exactly once, but the
//! operator restarts, hands over the lease and only ever sees the objects
//! that exist now (retention deletes old ones), so a counter rebuilt from
//! them would go down and break `rate()`. "Failed since the last success" is
//! also what pages: it resolves by itself when a backup succeeds.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use keeper_crds::condition::{
    BACKUP_SCHEDULED, BACKUPS_HEALTHY, REASON_BACKUP_CANNOT_START, find_condition, from_k8s_time,
};
use keeper_crds::{BackupPhase, MySQLBackup, MySQLInstance, VerificationPhase};
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// The labels of every backup series: the instance, nothing else.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// The instance's namespace.
    pub namespace: String,
    /// The instance's name.
    pub mysqlinstance: String,
}

/// The last successful backup, as far as it is known.
#[derive(Clone, Debug, PartialEq)]
pub struct LastSuccess {
    /// When its snapshot was taken (the run's start).
    pub time: DateTime<Utc>,
    /// How long the run took, in seconds.
    pub duration_seconds: Option<f64>,
    /// Size of the compressed dump, in bytes.
    pub size_bytes: Option<u64>,
    /// How long the snapshot's global lock was held, in seconds (`None`
    /// without a lock, or from an agent that does not report it).
    pub lock_seconds: Option<f64>,
}

/// The backup figures of one instance; `None` is no series at all (a value
/// that is not known is not exported as 0).
///
/// Planned, once the agent reports them (docs/design.md): the last
/// verification's result and time (`MySQLBackup.status.verification`), and
/// the binary log archive's lag and gaps. They belong here, derived from the
/// same objects, with an alert each in `deploy/monitoring/`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupFigures {
    /// The newest successful backup.
    pub last_success: Option<LastSuccess>,
    /// Runs that failed since the last success (all of them when none
    /// succeeded): Failed `MySQLBackup` objects that started after it, plus
    /// one for a scheduled run that could not start (it has no object; the
    /// instance's `BackupsHealthy` says `BackupCannotStart`).
    pub consecutive_failures: u64,
    /// When the newest failed backup ended (any, also before a success).
    pub last_failure: Option<DateTime<Utc>>,
    /// When the next scheduled run is due (`status.nextBackupTime`).
    pub next_run: Option<DateTime<Utc>>,
    /// When backups become overdue unless one succeeds first: the
    /// `BackupsHealthy` rule (twice the schedule's interval after the last
    /// success, or after the schedule was set up). Only while scheduled
    /// backups run (`BackupScheduled` is True).
    pub deadline: Option<DateTime<Utc>>,
    /// When the newest backup proven restorable (`status.verification`
    /// Verified) was taken.
    pub last_verified: Option<DateTime<Utc>>,
    /// Whether the newest proof (of any backup) failed; `None` before any.
    pub verification_failed: Option<bool>,
}

/// When a backup run started, for ordering runs: its start, else when its
/// object was created, else when it ended.
fn run_time(backup: &MySQLBackup) -> Option<DateTime<Utc>> {
    let status = backup.status.as_ref();
    status
        .and_then(|s| s.start_time)
        .or_else(|| {
            backup
                .metadata
                .creation_timestamp
                .as_ref()
                .map(from_k8s_time)
        })
        .or_else(|| status.and_then(|s| s.completion_time))
}

fn lock_seconds(backup: &MySQLBackup) -> Option<f64> {
    let ms = backup.status.as_ref()?.lock_held_ms?;
    // Milliseconds fit an f64 exactly far beyond any lock.
    Some(ms as f64 / 1000.0)
}

/// The last success: `status.lastBackup` (the agent's record), unless a
/// Succeeded `MySQLBackup` is newer (the agent could not write the
/// instance's status); the lock time comes from the backup object.
fn last_success(instance: &MySQLInstance, backups: &[&MySQLBackup]) -> Option<LastSuccess> {
    let recorded = instance
        .status
        .as_ref()
        .and_then(|s| s.last_backup.as_ref());
    let newest_object = backups
        .iter()
        .filter(|b| b.phase() == Some(BackupPhase::Succeeded))
        .filter_map(|b| run_time(b).map(|t| (t, *b)))
        .max_by_key(|(t, _)| *t);
    let recorded_is_newest = match (recorded, newest_object) {
        (Some(last), Some((time, _))) => time <= last.time,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if recorded_is_newest {
        let last = recorded?;
        let object = backups
            .iter()
            .find(|b| b.metadata.name.as_deref() == Some(last.name.as_str()));
        return Some(LastSuccess {
            time: last.time,
            duration_seconds: Some(last.duration_seconds as f64),
            size_bytes: Some(last.compressed_bytes),
            lock_seconds: object.and_then(|b| lock_seconds(b)),
        });
    }
    let (time, backup) = newest_object?;
    let status = backup.status.as_ref();
    let duration = status
        .and_then(|s| Some(s.completion_time? - s.start_time?))
        .map(|d| d.num_milliseconds() as f64 / 1000.0);
    Some(LastSuccess {
        time,
        duration_seconds: duration,
        size_bytes: status.and_then(|s| s.compressed_bytes),
        lock_seconds: lock_seconds(backup),
    })
}

/// The backup figures of `instance` from its status and `backups` (its
/// `MySQLBackup` objects: those whose `spec.instanceRef` names it, in its
/// namespace).
pub fn figures(instance: &MySQLInstance, backups: &[&MySQLBackup]) -> BackupFigures {
    let status = instance.status.as_ref();
    let conditions = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let last_success = last_success(instance, backups);
    let success_time = last_success.as_ref().map(|s| s.time);

    let failed: Vec<&MySQLBackup> = backups
        .iter()
        .copied()
        .filter(|b| b.phase() == Some(BackupPhase::Failed))
        .collect();
    let failed_since_success = failed
        .iter()
        .filter(|b| match (success_time, run_time(b)) {
            (Some(success), Some(run)) => run > success,
            // No success yet: every failure counts.
            (None, _) => true,
            // A failure without any time cannot be placed; it is not
            // counted against a success that exists.
            (Some(_), None) => false,
        })
        .count() as u64;
    let cannot_start = find_condition(conditions, BACKUPS_HEALTHY)
        .is_some_and(|c| c.status == "False" && c.reason == REASON_BACKUP_CANNOT_START);
    let last_failure = failed
        .iter()
        .filter_map(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.completion_time)
                .or_else(|| run_time(b))
        })
        .max();

    // The deadline by the same rule as BackupsHealthy
    // (keeper_crds::Schedule::is_overdue), only while scheduled backups run.
    let scheduled = find_condition(conditions, BACKUP_SCHEDULED).filter(|c| c.status == "True");
    let deadline = scheduled.and_then(|condition| {
        let schedule = instance.spec.schedule().ok()??;
        let since = success_time.unwrap_or_else(|| from_k8s_time(&condition.last_transition_time));
        Some(since + schedule.interval_hint(since)? * 2)
    });

    // Proofs (`verify --restore`): the newest verified backup, and whether
    // the newest proof made failed.
    let proofs = backups.iter().filter_map(|b| {
        let verification = b.status.as_ref()?.verification.as_ref()?;
        Some((b, verification))
    });
    let last_verified = proofs
        .clone()
        .filter(|(_, v)| v.phase == VerificationPhase::Verified)
        .filter_map(|(b, _)| run_time(b))
        .max();
    let verification_failed = proofs
        .max_by_key(|(_, v)| v.time)
        .map(|(_, v)| v.phase == VerificationPhase::Failed);

    BackupFigures {
        last_success,
        consecutive_failures: failed_since_success + u64::from(cannot_start),
        last_failure,
        next_run: status.and_then(|s| s.next_backup_time),
        deadline,
        last_verified,
        verification_failed,
    }
}

fn seconds(time: DateTime<Utc>) -> f64 {
    time.timestamp_millis() as f64 / 1000.0
}

/// A gauge family of one metric, filled per scrape.
type Series = Family<InstanceLabels, Gauge<f64, AtomicU64>>;

/// The metrics: name (after the registry's `keeper_` prefix), help, and how
/// to read the value from an instance's figures.
type Reader = fn(&BackupFigures) -> Option<f64>;
const METRICS: [(&str, &str, Reader); 10] = [
    (
        "backup_last_success_timestamp_seconds",
        "When the last successful backup's snapshot was taken (Unix time)",
        |f| f.last_success.as_ref().map(|s| seconds(s.time)),
    ),
    (
        "backup_last_success_duration_seconds",
        "How long the last successful backup ran",
        |f| f.last_success.as_ref().and_then(|s| s.duration_seconds),
    ),
    (
        "backup_last_success_size_bytes",
        "Compressed size of the last successful backup",
        |f| {
            f.last_success
                .as_ref()
                .and_then(|s| s.size_bytes)
                .map(|b| b as f64)
        },
    ),
    (
        "backup_last_success_lock_seconds",
        "How long the last successful backup held the global lock for its snapshot",
        |f| f.last_success.as_ref().and_then(|s| s.lock_seconds),
    ),
    (
        "backup_consecutive_failures",
        "Backup runs that failed since the last successful backup",
        |f| Some(f.consecutive_failures as f64),
    ),
    (
        "backup_last_failure_timestamp_seconds",
        "When the newest failed backup ended (Unix time)",
        |f| f.last_failure.map(seconds),
    ),
    (
        "backup_next_run_timestamp_seconds",
        "When the next scheduled backup is due (Unix time)",
        |f| f.next_run.map(seconds),
    ),
    (
        "backup_deadline_timestamp_seconds",
        "When backups become overdue unless one succeeds first: twice the schedule's interval after the last success (Unix time)",
        |f| f.deadline.map(seconds),
    ),
    (
        "backup_last_verified_timestamp_seconds",
        "When the newest backup proven restorable (verify --restore) was taken (Unix time)",
        |f| f.last_verified.map(seconds),
    ),
    (
        "backup_verification_failed",
        "1 when the newest proof of a backup (verify --restore) failed, 0 when it passed",
        |f| {
            f.verification_failed
                .map(|failed| f64::from(u8::from(failed)))
        },
    ),
];

/// The caches the figures are read from, registered by the controllers
/// while they run.
#[derive(Debug, Default)]
struct Caches {
    next_id: u64,
    instances: Vec<(u64, Store<MySQLInstance>)>,
    backups: Vec<(u64, Store<MySQLBackup>)>,
}

/// The collector of the backup metrics, registered in the operator's
/// registry ([`crate::metrics::Metrics`]).
#[derive(Debug, Default)]
pub struct BackupMetrics {
    caches: Mutex<Caches>,
}

/// Keeps a cache registered with [`BackupMetrics`]; dropping it (the
/// controller stopped, e.g. on losing the lease) removes the cache and its
/// series.
#[must_use = "the cache is unregistered when this is dropped"]
#[derive(Debug)]
pub struct CacheGuard {
    metrics: Arc<BackupMetrics>,
    id: u64,
}

impl Drop for CacheGuard {
    fn drop(&mut self) {
        let mut caches = self.metrics.lock();
        caches.instances.retain(|(id, _)| *id != self.id);
        caches.backups.retain(|(id, _)| *id != self.id);
    }
}

impl BackupMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Caches> {
        // A panic elsewhere while holding the lock leaves the list usable.
        self.caches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_id(caches: &mut Caches) -> u64 {
        let id = caches.next_id;
        caches.next_id += 1;
        id
    }

    /// Reads instances from `store` (a `MySQLInstance` controller's cache)
    /// until the guard is dropped.
    pub fn watch_instances(self: &Arc<Self>, store: Store<MySQLInstance>) -> CacheGuard {
        let mut caches = self.lock();
        let id = Self::next_id(&mut caches);
        caches.instances.push((id, store));
        CacheGuard {
            metrics: self.clone(),
            id,
        }
    }

    /// Reads backups from `store` (a `MySQLBackup` controller's cache) until
    /// the guard is dropped.
    pub fn watch_backups(self: &Arc<Self>, store: Store<MySQLBackup>) -> CacheGuard {
        let mut caches = self.lock();
        let id = Self::next_id(&mut caches);
        caches.backups.push((id, store));
        CacheGuard {
            metrics: self.clone(),
            id,
        }
    }

    /// The figures of every cached instance.
    fn snapshot(&self) -> Vec<(InstanceLabels, BackupFigures)> {
        let (instance_stores, backup_stores) = {
            let caches = self.lock();
            (
                caches
                    .instances
                    .iter()
                    .map(|(_, s)| s.clone())
                    .collect::<Vec<_>>(),
                caches
                    .backups
                    .iter()
                    .map(|(_, s)| s.clone())
                    .collect::<Vec<_>>(),
            )
        };
        let backups: Vec<Arc<MySQLBackup>> = backup_stores.iter().flat_map(Store::state).collect();
        let instances: Vec<Arc<MySQLInstance>> =
            instance_stores.iter().flat_map(Store::state).collect();
        instance_figures(&instances, &backups)
    }
}

/// The figures of each of `instances`, each from its own backups among
/// `backups` (same namespace, `spec.instanceRef` naming it).
pub fn instance_figures(
    instances: &[Arc<MySQLInstance>],
    backups: &[Arc<MySQLBackup>],
) -> Vec<(InstanceLabels, BackupFigures)> {
    let mut by_instance: HashMap<(&str, &str), Vec<&MySQLBackup>> = HashMap::new();
    for backup in backups.iter().map(Arc::as_ref) {
        if let Some(namespace) = backup.metadata.namespace.as_deref() {
            by_instance
                .entry((namespace, backup.spec.instance_ref.name.as_str()))
                .or_default()
                .push(backup);
        }
    }
    instances
        .iter()
        .map(Arc::as_ref)
        .filter_map(|instance| {
            let namespace = instance.metadata.namespace.as_deref()?;
            let name = instance.metadata.name.as_deref()?;
            let own = by_instance
                .get(&(namespace, name))
                .map(Vec::as_slice)
                .unwrap_or_default();
            Some((
                InstanceLabels {
                    namespace: namespace.to_owned(),
                    mysqlinstance: name.to_owned(),
                },
                figures(instance, own),
            ))
        })
        .collect()
}

/// Encodes `figures` as the backup metrics (every metric's description,
/// also when no instance has a value).
fn encode(
    figures: &[(InstanceLabels, BackupFigures)],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    for (name, help, read) in METRICS {
        let series = Series::default();
        for (labels, figures) in figures {
            if let Some(value) = read(figures) {
                series.get_or_create(labels).set(value);
            }
        }
        let metric = encoder.encode_descriptor(name, help, None, series.metric_type())?;
        series.encode(metric)?;
    }
    Ok(())
}

impl Collector for BackupMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode(&self.snapshot(), &mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keeper_crds::condition::{new_condition, to_k8s_time};
    use keeper_crds::{Condition, LastBackup, MySQLBackupStatus, MySQLInstanceStatus};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// `orders` in `shop`, backed up daily at 03:00 UTC.
    fn instance(status: MySQLInstanceStatus) -> MySQLInstance {
        let spec = serde_json::from_value(serde_json::json!({"backup": {
            "schedule": "0 3 * * *", "destination": {"s3": {"bucket": "b"}}}}))
        .expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        instance.status = Some(status);
        instance
    }

    fn condition(type_: &str, ok: bool, reason: &str, since: &str) -> Condition {
        new_condition(type_, ok, reason, "", None, at(since))
    }

    fn backup(name: &str, phase: BackupPhase, start: &str, end: &str) -> MySQLBackup {
        let mut backup = MySQLBackup::for_instance(name, "shop", "orders", None);
        backup.metadata.creation_timestamp = Some(to_k8s_time(at(start)));
        backup.status = Some(MySQLBackupStatus {
            phase: Some(phase),
            start_time: Some(at(start)),
            completion_time: Some(at(end)),
            compressed_bytes: (phase == BackupPhase::Succeeded).then_some(4096),
            lock_held_ms: (phase == BackupPhase::Succeeded).then_some(250),
            ..MySQLBackupStatus::default()
        });
        backup
    }

    fn proven(mut backup: MySQLBackup, phase: VerificationPhase, at_time: &str) -> MySQLBackup {
        if let Some(status) = backup.status.as_mut() {
            status.verification = Some(keeper_crds::BackupVerification {
                phase,
                time: at(at_time),
                tables: 1,
                rows: 1,
                duration_seconds: 1,
                message: None,
            });
        }
        backup
    }

    #[test]
    fn proofs_give_the_newest_verified_backup_and_whether_the_newest_proof_failed() {
        let instance = instance(MySQLInstanceStatus::default());
        let none = figures(&instance, &[]);
        assert_eq!((none.last_verified, none.verification_failed), (None, None));

        let older = proven(
            backup(
                "orders-1",
                BackupPhase::Succeeded,
                "2026-01-01T03:00:00Z",
                "2026-01-01T03:01:00Z",
            ),
            VerificationPhase::Verified,
            "2026-01-01T04:00:00Z",
        );
        let newer = proven(
            backup(
                "orders-2",
                BackupPhase::Succeeded,
                "2026-01-02T03:00:00Z",
                "2026-01-02T03:01:00Z",
            ),
            VerificationPhase::Failed,
            "2026-01-02T04:00:00Z",
        );
        let unproven = backup(
            "orders-3",
            BackupPhase::Succeeded,
            "2026-01-03T03:00:00Z",
            "2026-01-03T03:01:00Z",
        );
        let f = figures(&instance, &[&older, &newer, &unproven]);
        assert_eq!(f.last_verified, Some(at("2026-01-01T03:00:00Z")));
        assert_eq!(f.verification_failed, Some(true));
        // A later proof that passed clears the failure.
        let again = proven(newer, VerificationPhase::Verified, "2026-01-02T05:00:00Z");
        let f = figures(&instance, &[&older, &again, &unproven]);
        assert_eq!(f.last_verified, Some(at("2026-01-02T03:00:00Z")));
        assert_eq!(f.verification_failed, Some(false));
    }

    fn last_backup(name: &str, time: &str) -> LastBackup {
        LastBackup {
            name: name.into(),
            time: at(time),
            location: format!("s3://b/shop/orders/{name}"),
            compressed_bytes: 1_000_000,
            duration_seconds: 95,
        }
    }

    fn scheduled_status(since: &str) -> MySQLInstanceStatus {
        MySQLInstanceStatus {
            conditions: vec![condition(BACKUP_SCHEDULED, true, "Scheduled", since)],
            next_backup_time: Some(at("2026-01-03T03:00:00Z")),
            ..MySQLInstanceStatus::default()
        }
    }

    #[test]
    fn the_last_success_comes_from_last_backup_with_its_objects_lock_time() {
        let mut status = scheduled_status("2025-12-01T00:00:00Z");
        status.last_backup = Some(last_backup("orders-2", "2026-01-02T03:00:00Z"));
        let instance = instance(status);
        let one = backup(
            "orders-1",
            BackupPhase::Succeeded,
            "2026-01-01T03:00:00Z",
            "2026-01-01T03:01:00Z",
        );
        let two = backup(
            "orders-2",
            BackupPhase::Succeeded,
            "2026-01-02T03:00:00Z",
            "2026-01-02T03:01:35Z",
        );
        let figures = figures(&instance, &[&one, &two]);
        assert_eq!(
            figures.last_success,
            Some(LastSuccess {
                time: at("2026-01-02T03:00:00Z"),
                duration_seconds: Some(95.0),
                size_bytes: Some(1_000_000),
                lock_seconds: Some(0.25),
            })
        );
        assert_eq!(figures.consecutive_failures, 0);
        assert_eq!(figures.last_failure, None);
        assert_eq!(figures.next_run, Some(at("2026-01-03T03:00:00Z")));
        // Daily: overdue two days after the last success.
        assert_eq!(figures.deadline, Some(at("2026-01-04T03:00:00Z")));
    }

    #[test]
    fn a_newer_succeeded_object_wins_over_a_stale_last_backup() {
        let mut status = scheduled_status("2025-12-01T00:00:00Z");
        status.last_backup = Some(last_backup("orders-1", "2026-01-01T03:00:00Z"));
        let instance = instance(status);
        let two = backup(
            "orders-2",
            BackupPhase::Succeeded,
            "2026-01-02T03:00:00Z",
            "2026-01-02T03:00:30Z",
        );
        let success = figures(&instance, &[&two]).last_success.expect("success");
        assert_eq!(success.time, at("2026-01-02T03:00:00Z"));
        assert_eq!(success.duration_seconds, Some(30.0));
        assert_eq!(success.size_bytes, Some(4096));
        assert_eq!(success.lock_seconds, Some(0.25));
    }

    #[test]
    fn failures_count_only_since_the_last_success() {
        let mut status = scheduled_status("2025-12-01T00:00:00Z");
        status.last_backup = Some(last_backup("orders-2", "2026-01-02T03:00:00Z"));
        let instance = instance(status);
        let before = backup(
            "orders-1",
            BackupPhase::Failed,
            "2026-01-01T03:00:00Z",
            "2026-01-01T03:00:10Z",
        );
        let after = backup(
            "orders-3",
            BackupPhase::Failed,
            "2026-01-03T03:00:00Z",
            "2026-01-03T03:00:10Z",
        );
        let again = backup(
            "orders-4",
            BackupPhase::Failed,
            "2026-01-04T03:00:00Z",
            "2026-01-04T03:00:20Z",
        );
        let running = backup(
            "orders-5",
            BackupPhase::Running,
            "2026-01-05T03:00:00Z",
            "2026-01-05T03:00:20Z",
        );
        let figures = figures(&instance, &[&before, &after, &again, &running]);
        assert_eq!(figures.consecutive_failures, 2);
        assert_eq!(figures.last_failure, Some(at("2026-01-04T03:00:20Z")));
        // Failures do not move the deadline: only a success does.
        assert_eq!(figures.deadline, Some(at("2026-01-04T03:00:00Z")));
    }

    #[test]
    fn without_any_success_every_failure_counts_and_the_clock_starts_with_the_schedule() {
        let instance = instance(scheduled_status("2026-01-01T12:00:00Z"));
        let failed = backup(
            "orders-1",
            BackupPhase::Failed,
            "2026-01-02T03:00:00Z",
            "2026-01-02T03:00:10Z",
        );
        let figures = figures(&instance, &[&failed]);
        assert_eq!(figures.last_success, None);
        assert_eq!(figures.consecutive_failures, 1);
        // Set up at noon: the next runs are 03:00 daily, so one day's
        // interval measured from there, twice.
        assert_eq!(figures.deadline, Some(at("2026-01-03T12:00:00Z")));
    }

    #[test]
    fn a_scheduled_run_that_could_not_start_is_a_failure() {
        let mut status = scheduled_status("2025-12-01T00:00:00Z");
        status.last_backup = Some(last_backup("orders-2", "2026-01-02T03:00:00Z"));
        status.conditions.push(condition(
            BACKUPS_HEALTHY,
            false,
            REASON_BACKUP_CANNOT_START,
            "2026-01-03T03:10:00Z",
        ));
        assert_eq!(figures(&instance(status), &[]).consecutive_failures, 1);
    }

    #[test]
    fn no_deadline_or_next_run_while_scheduled_backups_do_not_run() {
        // Suspended (or restoring): BackupScheduled is False, nextBackupTime unset.
        let status = MySQLInstanceStatus {
            conditions: vec![condition(
                BACKUP_SCHEDULED,
                false,
                "Suspended",
                "2026-01-01T00:00:00Z",
            )],
            last_backup: Some(last_backup("orders-2", "2026-01-02T03:00:00Z")),
            ..MySQLInstanceStatus::default()
        };
        let figures = figures(&instance(status), &[]);
        assert_eq!(figures.deadline, None);
        assert_eq!(figures.next_run, None);
        assert!(figures.last_success.is_some(), "history stays visible");
        // A new instance with no status at all: nothing but the zero count.
        let mut bare = instance(MySQLInstanceStatus::default());
        bare.status = None;
        assert_eq!(
            super::figures(&bare, &[]),
            BackupFigures::default(),
            "nothing known, nothing exported but the zero count"
        );
    }

    #[test]
    fn backups_go_to_their_own_instance_and_series_carry_only_namespace_and_name() {
        let mut status = scheduled_status("2025-12-01T00:00:00Z");
        status.last_backup = Some(last_backup("orders-2", "2026-01-02T03:00:00Z"));
        let orders = instance(status);
        let mut other = instance(MySQLInstanceStatus::default());
        other.metadata.name = Some("billing".into());
        // The same instance name in another namespace is another instance.
        let mut elsewhere = backup(
            "orders-9",
            BackupPhase::Failed,
            "2026-01-05T03:00:00Z",
            "2026-01-05T03:00:10Z",
        );
        elsewhere.metadata.namespace = Some("staging".into());
        let own = backup(
            "orders-3",
            BackupPhase::Failed,
            "2026-01-03T03:00:00Z",
            "2026-01-03T03:00:10Z",
        );
        let all = instance_figures(
            &[Arc::new(orders), Arc::new(other)],
            &[Arc::new(elsewhere), Arc::new(own)],
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.consecutive_failures, 1);
        assert_eq!(all[1].1.consecutive_failures, 0);

        let mut registry = prometheus_client::registry::Registry::with_prefix("keeper");
        #[derive(Debug)]
        struct Fixed(Vec<(InstanceLabels, BackupFigures)>);
        impl Collector for Fixed {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                super::encode(&self.0, &mut encoder)
            }
        }
        registry.register_collector(Box::new(Fixed(all)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            r#"keeper_backup_last_success_timestamp_seconds{namespace="shop",mysqlinstance="orders"} 1767322800.0"#,
            r#"keeper_backup_last_success_duration_seconds{namespace="shop",mysqlinstance="orders"} 95.0"#,
            r#"keeper_backup_last_success_size_bytes{namespace="shop",mysqlinstance="orders"} 1000000.0"#,
            r#"keeper_backup_consecutive_failures{namespace="shop",mysqlinstance="orders"} 1.0"#,
            r#"keeper_backup_consecutive_failures{namespace="shop",mysqlinstance="billing"} 0.0"#,
            r#"keeper_backup_deadline_timestamp_seconds{namespace="shop",mysqlinstance="orders"} 1767495600.0"#,
            // Described even with no value anywhere.
            "# TYPE keeper_backup_last_success_lock_seconds gauge",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("orders-3"), "never a backup's name: {text}");
    }

    #[test]
    fn a_dropped_guard_takes_its_cache_and_series_away() {
        let metrics = Arc::new(BackupMetrics::default());
        let (reader, mut writer) = kube::runtime::reflector::store::<MySQLInstance>();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(instance(
            MySQLInstanceStatus::default(),
        )));
        let guard = metrics.watch_instances(reader);
        assert_eq!(metrics.snapshot().len(), 1);
        drop(guard);
        assert!(metrics.snapshot().is_empty());
    }
}
