//! The keep policy: the one rule that decides which of one owner's backups
//! retention keeps, and why.
//!
//! A backup is kept when at least one [`KeepReason`] holds; otherwise it is
//! deleted for a [`DeleteReason`]. Each reason is one small function in
//! [`REASONS`]; a feature that protects more backups (the newest verified
//! one, the backups point-in-time recovery still needs) adds a variant and a
//! function there, not a new rule elsewhere. Storage retention (`prune`,
//! `backup --keep-last/--max-age`) and the `MySQLBackup` objects it removes
//! both follow this one decision: objects are deleted only for the folders
//! deleted here.
//!
//! The policy is pure: it sees candidates that the caller has already
//! restricted to one owner (see [`crate::owner`]).

use std::fmt;

use chrono::{DateTime, Utc};
use keeper_crds::MaxAge;

use super::BackupStatus;

/// The rules a user sets: `keepLast` / `--keep-last` and `maxAge` /
/// `--max-age`. With neither, nothing expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepPolicy {
    pub keep_last: Option<u32>,
    pub max_age: Option<MaxAge>,
}

/// One backup of the owner retention acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// The snapshot time (good backups) or the newest write; ages count from it.
    pub time: DateTime<Utc>,
    /// Its state; [`BackupStatus::InProgress`] also for a folder a run may
    /// still be writing.
    pub state: BackupStatus,
    /// A pin (`keep.json` beside the artifact, or `spec.keep` on its
    /// `MySQLBackup`) protects it from every rule.
    pub pinned: bool,
    /// Proven restorable (`verify --restore`, `verification.json`).
    pub verified: bool,
}

/// Why a backup is kept. More than one may hold; all are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepReason {
    /// Pinned by the user: never deleted by retention.
    Pinned,
    /// Still being written.
    Running,
    /// The newest good backup, kept whatever the rules say.
    NewestGood,
    /// The newest backup proven restorable, kept whatever the rules say
    /// (it may be older than the newest good one, which is not yet proven).
    NewestVerified,
    /// Among the newest `keep_last` good backups (`rank` counts from 1).
    WithinCount { rank: usize, keep_last: u32 },
    /// Younger than `max_age`.
    WithinAge { max_age: MaxAge },
    /// Failed after the newest good backup: the failures since the last
    /// success stay visible until a success replaces them.
    FailedSinceNewestGood,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Pinned => f.write_str("pinned"),
            KeepReason::Running => f.write_str("still running"),
            KeepReason::NewestGood => f.write_str("the newest good backup"),
            KeepReason::NewestVerified => f.write_str("the newest verified backup"),
            KeepReason::WithinCount { rank, keep_last } => {
                write!(f, "good backup {rank} of the {keep_last} kept by keep-last")
            }
            KeepReason::WithinAge { max_age } => write!(f, "younger than max-age {max_age}"),
            KeepReason::FailedSinceNewestGood => {
                f.write_str("failed after the newest good backup (kept to stay visible)")
            }
        }
    }
}

/// Why a backup is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// No reason to keep it holds.
    Expired,
    /// The leftovers of a failed or killed run (no manifest, not running).
    Incomplete,
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeleteReason::Expired => "expired: no rule keeps it (pin, keep-last, max-age)",
            DeleteReason::Incomplete => "incomplete: a failed or killed run's leftovers",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep(Vec<KeepReason>),
    Delete(DeleteReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub verdict: Verdict,
}

/// What a reason may look at for one backup.
struct Facts<'a> {
    policy: &'a KeepPolicy,
    backup: &'a Candidate,
    now: DateTime<Utc>,
    /// 1 for the newest good backup, 2 for the next…; `None` if not good.
    good_rank: Option<usize>,
    /// Whether a good backup is newer than this one.
    newer_good_exists: bool,
    /// Whether this is the newest good backup proven restorable.
    newest_verified: bool,
}

type Reason = fn(&Facts<'_>) -> Option<KeepReason>;

/// Every reason to keep a backup, in the order they are reported.
const REASONS: &[Reason] = &[
    |f| f.backup.pinned.then_some(KeepReason::Pinned),
    |f| (f.backup.state == BackupStatus::InProgress).then_some(KeepReason::Running),
    |f| (f.good_rank == Some(1)).then_some(KeepReason::NewestGood),
    |f| f.newest_verified.then_some(KeepReason::NewestVerified),
    |f| {
        let keep_last = f.policy.keep_last?;
        let rank = f.good_rank?;
        (rank <= usize::try_from(keep_last).unwrap_or(usize::MAX))
            .then_some(KeepReason::WithinCount { rank, keep_last })
    },
    |f| {
        let max_age = f.policy.max_age?;
        (f.backup.state != BackupStatus::Incomplete && f.now - f.backup.time < max_age.duration())
            .then_some(KeepReason::WithinAge { max_age })
    },
    |f| {
        (matches!(f.backup.state, BackupStatus::Invalid(_)) && !f.newer_good_exists)
            .then_some(KeepReason::FailedSinceNewestGood)
    },
];

impl KeepPolicy {
    /// Whether any rule is set (without one, `prune` has nothing to do).
    pub fn has_rule(&self) -> bool {
        self.keep_last.is_some() || self.max_age.is_some()
    }

    /// The verdict on every candidate, newest first (ties broken by name, so
    /// the result is deterministic). An incomplete backup is deleted unless
    /// pinned; any other is deleted only when no reason keeps it, and with
    /// no rule set nothing expires.
    pub fn decide(&self, candidates: &[Candidate], now: DateTime<Utc>) -> Vec<Decision> {
        let mut sorted: Vec<&Candidate> = candidates.iter().collect();
        sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
        let mut goods_seen = 0usize;
        let mut verified_seen = false;
        let mut decisions = Vec::with_capacity(sorted.len());
        for backup in sorted {
            let newer_good_exists = goods_seen > 0;
            let good_rank = (backup.state == BackupStatus::Complete).then(|| {
                goods_seen += 1;
                goods_seen
            });
            let newest_verified = good_rank.is_some()
                && backup.verified
                && !std::mem::replace(&mut verified_seen, true);
            let facts = Facts {
                policy: self,
                backup,
                now,
                good_rank,
                newer_good_exists,
                newest_verified,
            };
            let reasons: Vec<KeepReason> = REASONS.iter().filter_map(|r| r(&facts)).collect();
            let verdict = if !reasons.is_empty() {
                Verdict::Keep(reasons)
            } else if backup.state == BackupStatus::Incomplete {
                Verdict::Delete(DeleteReason::Incomplete)
            } else if self.has_rule() {
                Verdict::Delete(DeleteReason::Expired)
            } else {
                // Unreachable for good backups (rank 1 at least is kept);
                // with no rule nothing expires.
                Verdict::Keep(Vec::new())
            };
            decisions.push(Decision {
                name: backup.name.clone(),
                verdict,
            });
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, d, 3, 0, 0)
            .single()
            .expect("valid time")
    }

    fn backup(name: &str, d: u32, state: BackupStatus) -> Candidate {
        Candidate {
            name: name.into(),
            time: day(d),
            state,
            pinned: false,
            verified: false,
        }
    }

    fn ok(name: &str, d: u32) -> Candidate {
        backup(name, d, BackupStatus::Complete)
    }

    fn failed(name: &str, d: u32) -> Candidate {
        backup(name, d, BackupStatus::Invalid("unreadable".into()))
    }

    fn policy(keep_last: Option<u32>, max_age: Option<&str>) -> KeepPolicy {
        KeepPolicy {
            keep_last,
            max_age: max_age.map(|a| a.parse().expect("valid age")),
        }
    }

    /// The deleted names, oldest first.
    fn deleted(policy: KeepPolicy, backups: &[Candidate], now: DateTime<Utc>) -> Vec<String> {
        let mut names: Vec<String> = policy
            .decide(backups, now)
            .into_iter()
            .filter(|d| matches!(d.verdict, Verdict::Delete(_)))
            .map(|d| d.name)
            .collect();
        names.reverse();
        names
    }

    fn reasons(
        policy: KeepPolicy,
        backups: &[Candidate],
        now: DateTime<Utc>,
        name: &str,
    ) -> Verdict {
        policy
            .decide(backups, now)
            .into_iter()
            .find(|d| d.name == name)
            .expect("decided")
            .verdict
    }

    #[test]
    fn no_rule_expires_nothing_but_removes_leftovers() {
        let backups = [
            ok("a", 1),
            ok("b", 2),
            failed("c", 3),
            backup("dead", 1, BackupStatus::Incomplete),
        ];
        assert_eq!(deleted(policy(None, None), &backups, day(30)), ["dead"]);
    }

    #[test]
    fn keep_last_counts_good_backups_only() {
        let backups = [
            ok("a", 1),
            ok("b", 2),
            ok("c", 3),
            failed("d", 4),
            failed("e", 5),
        ];
        assert_eq!(deleted(policy(Some(2), None), &backups, day(30)), ["a"]);
        assert_eq!(
            deleted(policy(Some(1), None), &backups, day(30)),
            ["a", "b"]
        );
        assert!(deleted(policy(Some(10), None), &backups, day(30)).is_empty());
        assert_eq!(
            reasons(policy(Some(2), None), &backups, day(30), "b"),
            Verdict::Keep(vec![KeepReason::WithinCount {
                rank: 2,
                keep_last: 2
            }])
        );
        assert_eq!(
            reasons(policy(Some(2), None), &backups, day(30), "e"),
            Verdict::Keep(vec![KeepReason::FailedSinceNewestGood])
        );
    }

    #[test]
    fn failures_before_the_newest_good_backup_expire() {
        let backups = [ok("a", 1), failed("b", 2), ok("c", 3)];
        assert_eq!(deleted(policy(Some(5), None), &backups, day(30)), ["b"]);
    }

    #[test]
    fn max_age_keeps_young_backups_of_any_state() {
        let backups = [ok("a", 1), failed("b", 10), ok("c", 20), ok("d", 25)];
        assert_eq!(
            deleted(policy(None, Some("7d")), &backups, day(28)),
            ["a", "b", "c"]
        );
        assert_eq!(deleted(policy(None, Some("20d")), &backups, day(28)), ["a"]);
        // Exactly max-age old is expired.
        assert_eq!(
            deleted(policy(None, Some("7d")), &[ok("x", 1), ok("y", 8)], day(8)),
            ["x"]
        );
    }

    #[test]
    fn any_reason_keeps_and_all_are_reported() {
        let backups = [ok("a", 1), ok("b", 2), ok("c", 3), ok("d", 27)];
        assert_eq!(
            deleted(policy(Some(2), Some("27d")), &backups, day(28)),
            ["a"]
        );
        let age: MaxAge = "27d".parse().expect("age");
        assert_eq!(
            reasons(policy(Some(2), Some("27d")), &backups, day(28), "d"),
            Verdict::Keep(vec![
                KeepReason::NewestGood,
                KeepReason::WithinCount {
                    rank: 1,
                    keep_last: 2
                },
                KeepReason::WithinAge { max_age: age },
            ])
        );
        assert_eq!(
            reasons(policy(Some(2), Some("27d")), &backups, day(28), "a"),
            Verdict::Delete(DeleteReason::Expired)
        );
    }

    #[test]
    fn the_newest_good_backup_survives_every_rule() {
        let backups = [failed("f0", 1), ok("old", 2), ok("older", 1)];
        assert_eq!(
            deleted(policy(None, Some("1h")), &backups, day(28)),
            ["f0", "older"]
        );
        assert_eq!(
            deleted(policy(Some(1), Some("1h")), &backups, day(28)),
            ["f0", "older"]
        );
        let backups = [ok("old", 1), failed("f1", 20), failed("f2", 21)];
        assert!(deleted(policy(None, Some("1h")), &backups, day(28)).is_empty());
    }

    #[test]
    fn without_any_good_backup_failures_stay() {
        let backups = [failed("a", 1), failed("b", 2)];
        assert!(deleted(policy(Some(1), None), &backups, day(28)).is_empty());
        assert!(deleted(policy(None, Some("1d")), &backups, day(28)).is_empty());
    }

    #[test]
    fn pinned_backups_survive_count_age_and_incompleteness() {
        let mut backups = [
            ok("a", 1),
            ok("b", 2),
            ok("c", 3),
            backup("dead", 1, BackupStatus::Incomplete),
        ];
        backups[0].pinned = true;
        backups[3].pinned = true;
        assert_eq!(
            deleted(policy(Some(1), Some("1h")), &backups, day(28)),
            ["b"]
        );
        assert_eq!(
            reasons(policy(Some(1), None), &backups, day(28), "a"),
            Verdict::Keep(vec![KeepReason::Pinned])
        );
        // A pin does not count towards keep-last: c is still the newest.
        assert_eq!(
            reasons(policy(Some(1), None), &backups, day(28), "c"),
            Verdict::Keep(vec![
                KeepReason::NewestGood,
                KeepReason::WithinCount {
                    rank: 1,
                    keep_last: 1
                }
            ])
        );
    }

    #[test]
    fn running_backups_never_expire() {
        let backups = [
            backup("running", 1, BackupStatus::InProgress),
            ok("a", 2),
            ok("b", 3),
        ];
        assert_eq!(
            deleted(policy(Some(1), Some("1h")), &backups, day(28)),
            ["a"]
        );
    }

    #[test]
    fn order_and_ties_are_deterministic() {
        let backups = [ok("b", 1), ok("a", 1), ok("c", 1), ok("z", 2)];
        assert_eq!(
            deleted(policy(Some(1), None), &backups, day(28)),
            ["a", "b", "c"]
        );
        let mut reversed = backups.to_vec();
        reversed.reverse();
        assert_eq!(
            deleted(policy(Some(1), None), &reversed, day(28)),
            ["a", "b", "c"]
        );
        assert_eq!(
            deleted(policy(Some(1), None), &backups[..3], day(28)),
            ["a", "b"]
        );
    }

    #[test]
    fn the_newest_verified_backup_is_kept_beside_the_newest_good() {
        let mut proven = ok("b2", 2);
        proven.verified = true;
        let mut older_proven = ok("b1", 1);
        older_proven.verified = true;
        let backups = [older_proven, proven, ok("b3", 3), ok("b4", 4)];
        // keep-last 1 keeps only b4 by count; b2 is the newest verified.
        assert_eq!(
            deleted(policy(Some(1), None), &backups, day(10)),
            ["b1", "b3"]
        );
        let decisions = policy(Some(1), None).decide(&backups, day(10));
        let b2 = decisions.iter().find(|d| d.name == "b2").expect("b2");
        assert_eq!(b2.verdict, Verdict::Keep(vec![KeepReason::NewestVerified]));
        assert_eq!(
            KeepReason::NewestVerified.to_string(),
            "the newest verified backup"
        );
        // A verified record on a backup that is not good does not count.
        let mut broken = failed("b5", 5);
        broken.verified = true;
        let decisions = policy(Some(1), None).decide(&[broken, ok("b6", 6)], day(10));
        assert!(decisions.iter().all(
            |d| !matches!(&d.verdict, Verdict::Keep(r) if r.contains(&KeepReason::NewestVerified))
        ));
    }
}
