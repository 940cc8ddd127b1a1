//! Conditions in the shape of Kubernetes `metav1.Condition`, and helpers that
//! keep `lastTransitionTime` meaningful and avoid needless status writes.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The server accepts connections and the instance is not failing.
pub const READY: &str = "Ready";
/// The data volume is bound (and has the requested size).
pub const STORAGE_READY: &str = "StorageReady";
/// The backup CronJob exists and matches `spec.backup` (False when the schedule
/// or time zone is invalid, or the instance has no schedule).
pub const BACKUP_SCHEDULED: &str = "BackupScheduled";
/// The last successful backup is recent: False when it is older than twice the
/// schedule's interval (see [`crate::Schedule::interval_hint`]).
pub const BACKUPS_HEALTHY: &str = "BackupsHealthy";
/// `BackupsHealthy=False` (and the Event) when a backup's agent pod did not
/// start in time: shared by the operator's backup controller, its schedule
/// and its metrics.
pub const REASON_BACKUP_CANNOT_START: &str = "BackupCannotStart";
/// Backups are proven restorable (`spec.backup.verification`): False when
/// the newest successful backup failed its proof, or when no backup was
/// verified within twice the verification interval.
pub const BACKUPS_VERIFIED: &str = "BackupsVerified";
/// The restore from `spec.restoreFrom` succeeded.
pub const RESTORED: &str = "Restored";
/// The data volume has the size `spec.storage.size` asks for. Present once a
/// larger size was asked for; False while it grows, waits, or was refused.
/// Growing is not essential to the instance: it stays Ready meanwhile.
pub const STORAGE_RESIZED: &str = "StorageResized";

/// Every condition type an instance reports.
pub const INSTANCE_CONDITION_TYPES: [&str; 7] = [
    READY,
    STORAGE_READY,
    BACKUP_SCHEDULED,
    BACKUPS_HEALTHY,
    BACKUPS_VERIFIED,
    RESTORED,
    STORAGE_RESIZED,
];

/// The three values of `condition.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (e.g. the server has not started).
    Unknown,
}

impl ConditionStatus {
    /// The string used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Converts a chrono time (what the binaries compute with) into `metav1.Time`.
///
/// Kubernetes serializes `metav1.Time` with whole seconds, so sub-second parts
/// are dropped here: otherwise a condition read back from the API would never
/// compare equal to the one just built.
pub fn to_k8s_time(time: DateTime<Utc>) -> Time {
    // Whole seconds since the epoch are always within jiff's range for any
    // time chrono can represent in practice; fall back to the epoch rather than
    // panic on a nonsensical clock.
    Time(Timestamp::from_second(time.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Converts `metav1.Time` into a chrono time.
pub fn from_k8s_time(time: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp(
        time.0.as_second(),
        time.0.subsec_nanosecond().unsigned_abs(),
    )
    .unwrap_or_default()
}

/// Builds a condition. `reason` must be CamelCase (it doubles as the Event
/// reason); `observed_generation` is the instance's `metadata.generation`.
pub fn new_condition(
    type_: &str,
    status: impl Into<ConditionStatus>,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.into().as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: to_k8s_time(now),
    }
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type exists and is `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Sets `new` in `conditions`, replacing a condition of the same type.
///
/// When the status does not change, the existing `lastTransitionTime` is kept
/// (that is what the field means: the last time the status flipped). Returns
/// whether anything changed, so a reconcile that changes nothing can skip the
/// status write altogether.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            if *existing == new {
                false
            } else {
                *existing = new;
                true
            }
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Removes the condition of this type; returns whether one was removed.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, hour, 0, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn same_status_keeps_transition_time() {
        let mut conditions = vec![new_condition(
            READY,
            true,
            "ServerReady",
            "ok",
            Some(1),
            at(1),
        )];
        let changed = set_condition(
            &mut conditions,
            new_condition(READY, true, "ServerReady", "ok", Some(1), at(2)),
        );
        assert!(!changed, "an identical condition is not a change");
        assert_eq!(from_k8s_time(&conditions[0].last_transition_time), at(1));

        let changed = set_condition(
            &mut conditions,
            new_condition(READY, true, "ServerReady", "still ok", Some(2), at(3)),
        );
        assert!(changed);
        assert_eq!(from_k8s_time(&conditions[0].last_transition_time), at(1));
        assert_eq!(conditions[0].message, "still ok");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn status_flip_updates_transition_time() {
        let mut conditions = vec![new_condition(
            READY,
            true,
            "ServerReady",
            "ok",
            Some(1),
            at(1),
        )];
        assert!(set_condition(
            &mut conditions,
            new_condition(READY, false, "ServerDown", "gone", Some(1), at(4)),
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(from_k8s_time(&conditions[0].last_transition_time), at(4));
    }

    #[test]
    fn new_type_is_appended_and_can_be_removed() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            new_condition(RESTORED, true, "RestoreSucceeded", "", None, at(1))
        ));
        assert!(set_condition(
            &mut conditions,
            new_condition(
                BACKUPS_HEALTHY,
                ConditionStatus::Unknown,
                "NoBackupYet",
                "",
                None,
                at(1)
            ),
        ));
        assert_eq!(conditions.len(), 2);
        assert!(is_condition_true(&conditions, RESTORED));
        assert!(!is_condition_true(&conditions, BACKUPS_HEALTHY));
        assert!(remove_condition(&mut conditions, RESTORED));
        assert!(!remove_condition(&mut conditions, RESTORED));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn k8s_time_drops_subseconds() {
        let t = at(1) + chrono::Duration::milliseconds(1500);
        assert_eq!(
            from_k8s_time(&to_k8s_time(t)),
            at(1) + chrono::Duration::seconds(1)
        );
    }
}
