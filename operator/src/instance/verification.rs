//! The instance's view of its backups' proofs (`spec.backup.verification`;
//! the proofs themselves are [`crate::backup_controller::verification`]'s):
//! `status.lastVerifiedBackup` and the `BackupsVerified` condition, derived
//! from the instance's `MySQLBackup`s.
//!
//! Observe (the backups, listed only when verification is on) → [`decide`]
//! (pure) → the status fields. `BackupsVerified` is:
//!
//! * False, reason `VerificationFailed`, when the newest successful backup
//!   failed its proof: the backup people would restore from is not proven
//!   to restore;
//! * False, reason `VerificationOverdue`, when no backup was verified within
//!   twice the verification interval (the verification schedule's, else the
//!   backup schedule's): proofs stopped happening. Without either schedule
//!   (on-demand backups only) there is no interval and no overdue;
//! * True, reason `Verified`, naming the newest verified backup;
//! * Unknown, reason `NotVerifiedYet`, before the first proof.
//!
//! Turning False publishes a Warning Event with the condition's reason
//! (`status::transitions`). Without `spec.backup.verification` the condition
//! goes; `lastVerifiedBackup` stays, a fact about a backup.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keeper_crds::condition::{
    self, BACKUPS_VERIFIED, ConditionStatus, find_condition, from_k8s_time,
};
use keeper_crds::{
    Condition, LastVerifiedBackup, MySQLBackup, MySQLInstance, MySQLInstanceStatus, Schedule,
    VerificationPhase,
};

use super::validate::Valid;
use crate::backup_controller::{self, verification::newest_succeeded};
use crate::context::Context;
use crate::error::Result;

/// `BackupsVerified=True`.
pub const REASON_VERIFIED: &str = "Verified";
/// `BackupsVerified=False`: the newest successful backup failed its proof.
pub const REASON_FAILED: &str = "VerificationFailed";
/// `BackupsVerified=False`: no proof within twice the interval.
pub const REASON_OVERDUE: &str = "VerificationOverdue";
/// `BackupsVerified=Unknown`: no proof yet.
pub const REASON_NOT_YET: &str = "NotVerifiedYet";

/// What the step changes in the status.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedPlan {
    /// `BackupsVerified`; `None` removes it.
    pub condition: Option<Condition>,
    /// `status.lastVerifiedBackup`.
    pub last_verified: Option<LastVerifiedBackup>,
    /// When to look again (the moment it would become overdue).
    pub requeue: Option<Duration>,
}

/// The decision, pure: from the instance, the interval's schedule, its
/// backups, the status built so far and now.
pub fn decide(
    instance: &MySQLInstance,
    interval_of: Option<&Schedule>,
    backups: &[MySQLBackup],
    status: &MySQLInstanceStatus,
    now: DateTime<Utc>,
) -> VerifiedPlan {
    let generation = instance.metadata.generation;
    let enabled = instance
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.verification.is_some());
    if !enabled {
        return VerifiedPlan {
            condition: None,
            last_verified: status.last_verified_backup.clone(),
            requeue: None,
        };
    }
    let verified = backups
        .iter()
        .filter_map(|b| {
            let proof = b.status.as_ref()?.verification.as_ref()?;
            (proof.phase == VerificationPhase::Verified).then(|| LastVerifiedBackup {
                name: b.metadata.name.clone().unwrap_or_default(),
                time: proof.time,
                tables: proof.tables,
                rows: proof.rows,
            })
        })
        .max_by_key(|v| (v.time, v.name.clone()))
        // A backup deleted since keeps its place until a newer one is proven.
        .into_iter()
        .chain(status.last_verified_backup.clone())
        .max_by_key(|v| (v.time, v.name.clone()));

    let newest_failed = newest_succeeded(backups).and_then(|b| {
        let proof = b.status.as_ref()?.verification.as_ref()?;
        (proof.phase == VerificationPhase::Failed).then(|| {
            format!(
                "the newest successful backup, MySQLBackup {}, failed its proof at {}: {}",
                b.metadata.name.as_deref().unwrap_or_default(),
                proof.time.to_rfc3339(),
                proof.message.as_deref().unwrap_or("no reason given")
            )
        })
    });
    // Since when a proof has been expected: the last one, else since
    // verification was set up (the condition's first appearance).
    let since = verified.as_ref().map(|v| v.time).or_else(|| {
        find_condition(&status.conditions, BACKUPS_VERIFIED)
            .map(|c| from_k8s_time(&c.last_transition_time))
    });
    let interval = interval_of
        .zip(since)
        .and_then(|(s, since)| s.interval_hint(since));
    let overdue_at = since.zip(interval).map(|(since, i)| since + i * 2);
    let mut requeue = None;
    let (state, reason, message) = if let Some(message) = newest_failed {
        (ConditionStatus::False, REASON_FAILED, message)
    } else if let Some(at) = overdue_at.filter(|at| *at <= now) {
        let message = match &verified {
            Some(v) => format!(
                "the last proof, of MySQLBackup {} at {}, is older than twice the verification interval (due by {}); check the verification Jobs and Events of this instance's MySQLBackups",
                v.name,
                v.time.to_rfc3339(),
                at.to_rfc3339()
            ),
            None => format!(
                "no backup was proven restorable since verification was set up (due by {}); check the verification Jobs and Events of this instance's MySQLBackups",
                at.to_rfc3339()
            ),
        };
        (ConditionStatus::False, REASON_OVERDUE, message)
    } else {
        if let Some(at) = overdue_at {
            requeue = (at - now).to_std().ok().map(|d| d + Duration::from_secs(1));
        }
        match &verified {
            Some(v) => (
                ConditionStatus::True,
                REASON_VERIFIED,
                format!(
                    "MySQLBackup {} was restored into a throwaway server at {} and matched its digests: {} tables, {} rows",
                    v.name,
                    v.time.to_rfc3339(),
                    v.tables,
                    v.rows
                ),
            ),
            None => (
                ConditionStatus::Unknown,
                REASON_NOT_YET,
                "no backup has been proven restorable yet".to_owned(),
            ),
        }
    };
    VerifiedPlan {
        condition: Some(condition::new_condition(
            BACKUPS_VERIFIED,
            state,
            reason,
            message,
            generation,
            now,
        )),
        last_verified: verified,
        requeue,
    }
}

/// The step: lists the backups when verification is on, decides, fills
/// `status`. Returns when to look again.
///
/// # Errors
/// The list's failure.
pub async fn reconcile(
    ctx: &Context,
    instance: &MySQLInstance,
    valid: &Valid,
    status: &mut MySQLInstanceStatus,
    now: DateTime<Utc>,
) -> Result<Option<Duration>> {
    let enabled = instance
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.verification.is_some());
    let backups = if enabled {
        backup_controller::of_instance(ctx, &valid.namespace, &valid.meta.name).await?
    } else {
        Vec::new()
    };
    let interval_of = valid
        .verification_schedule
        .as_ref()
        .or(valid.schedule.as_ref());
    let VerifiedPlan {
        condition,
        last_verified,
        requeue,
    } = decide(instance, interval_of, &backups, status, now);
    match condition {
        Some(c) => {
            condition::set_condition(&mut status.conditions, c);
        }
        None => {
            condition::remove_condition(&mut status.conditions, BACKUPS_VERIFIED);
        }
    }
    status.last_verified_backup = last_verified;
    Ok(requeue)
}

#[cfg(test)]
mod tests {
    use keeper_crds::{BackupPhase, BackupVerification, MySQLBackupStatus};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn instance(verification: bool) -> MySQLInstance {
        let mut backup = serde_json::json!({"schedule": "0 3 * * *",
            "destination": {"s3": {"bucket": "b"}}});
        if verification {
            backup["verification"] = serde_json::json!({});
        }
        let spec = serde_json::from_value(serde_json::json!({"backup": backup})).expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        instance
    }

    fn backup(name: &str, done: &str, proof: Option<(VerificationPhase, &str)>) -> MySQLBackup {
        let mut b = MySQLBackup::for_instance(name, "shop", "orders", None);
        b.status = Some(MySQLBackupStatus {
            phase: Some(BackupPhase::Succeeded),
            completion_time: Some(at(done)),
            verification: proof.map(|(phase, time)| BackupVerification {
                phase,
                time: at(time),
                tables: 14,
                rows: 1000,
                duration_seconds: 3,
                message: (phase == VerificationPhase::Failed)
                    .then(|| "table shop.orders: 1000 rows expected, 999 found".to_owned()),
            }),
            ..Default::default()
        });
        b
    }

    fn daily() -> Schedule {
        Schedule::parse("0 3 * * *", None).expect("schedule")
    }

    #[test]
    fn the_newest_proof_is_reported() {
        let backups = [
            backup(
                "a",
                "2025-01-01T03:05:00Z",
                Some((VerificationPhase::Verified, "2025-01-01T03:09:00Z")),
            ),
            backup(
                "b",
                "2025-01-02T03:05:00Z",
                Some((VerificationPhase::Verified, "2025-01-02T03:09:00Z")),
            ),
            backup("c", "2025-01-03T03:05:00Z", None),
        ];
        let plan = decide(
            &instance(true),
            Some(&daily()),
            &backups,
            &Default::default(),
            at("2025-01-03T03:06:00Z"),
        );
        let last = plan.last_verified.expect("verified");
        assert_eq!(
            (last.name.as_str(), last.tables, last.rows),
            ("b", 14, 1000)
        );
        let condition = plan.condition.expect("condition");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("True", REASON_VERIFIED)
        );
        assert!(
            condition.message.contains("MySQLBackup b"),
            "{}",
            condition.message
        );
        // Overdue two days after b's proof, so look again then.
        let wait = plan.requeue.expect("requeue");
        assert_eq!(
            wait.as_secs(),
            (at("2025-01-04T03:09:00Z") - at("2025-01-03T03:06:00Z")).num_seconds() as u64 + 1
        );
    }

    #[test]
    fn a_failed_proof_of_the_newest_backup_turns_it_false() {
        let backups = [
            backup(
                "a",
                "2025-01-01T03:05:00Z",
                Some((VerificationPhase::Verified, "2025-01-01T03:09:00Z")),
            ),
            backup(
                "b",
                "2025-01-02T03:05:00Z",
                Some((VerificationPhase::Failed, "2025-01-02T03:09:00Z")),
            ),
        ];
        let plan = decide(
            &instance(true),
            Some(&daily()),
            &backups,
            &Default::default(),
            at("2025-01-02T03:10:00Z"),
        );
        let condition = plan.condition.expect("condition");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", REASON_FAILED)
        );
        assert!(
            condition.message.contains("MySQLBackup b") && condition.message.contains("999 found"),
            "{}",
            condition.message
        );
        assert_eq!(plan.last_verified.map(|v| v.name), Some("a".to_owned()));
    }

    #[test]
    fn no_proof_within_twice_the_interval_is_overdue() {
        let backups = [
            backup(
                "a",
                "2025-01-01T03:05:00Z",
                Some((VerificationPhase::Verified, "2025-01-01T03:09:00Z")),
            ),
            backup("b", "2025-01-04T03:05:00Z", None),
        ];
        let plan = decide(
            &instance(true),
            Some(&daily()),
            &backups,
            &Default::default(),
            at("2025-01-04T03:10:00Z"),
        );
        let condition = plan.condition.expect("condition");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", REASON_OVERDUE)
        );
        // Without any schedule there is no interval: only a failure counts.
        let plan = decide(
            &instance(true),
            None,
            &backups,
            &Default::default(),
            at("2025-01-04T03:10:00Z"),
        );
        assert_eq!(plan.condition.expect("condition").status, "True");
    }

    #[test]
    fn before_the_first_proof_it_is_unknown_and_without_the_setting_it_goes() {
        let backups = [backup("a", "2025-01-01T03:05:00Z", None)];
        let plan = decide(
            &instance(true),
            Some(&daily()),
            &backups,
            &Default::default(),
            at("2025-01-01T03:06:00Z"),
        );
        let condition = plan.condition.expect("condition");
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("Unknown", REASON_NOT_YET)
        );
        let kept = LastVerifiedBackup {
            name: "old".into(),
            time: at("2024-12-01T00:00:00Z"),
            tables: 1,
            rows: 1,
        };
        let status = MySQLInstanceStatus {
            last_verified_backup: Some(kept.clone()),
            ..Default::default()
        };
        let plan = decide(
            &instance(false),
            Some(&daily()),
            &backups,
            &status,
            at("2025-01-01T03:06:00Z"),
        );
        assert_eq!(
            plan,
            VerifiedPlan {
                condition: None,
                last_verified: Some(kept),
                requeue: None
            }
        );
    }
}
