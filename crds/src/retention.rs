//! Retention: which backups to delete.
//!
//! The rule (DESIGN): a backup is kept when *any* rule keeps it, and the newest
//! Succeeded backup is always kept. With no rule set nothing expires. The agent
//! applies it to `MySQLBackup` objects in Kubernetes and to folders in storage
//! (`keeper-agent prune`), so it is one pure function used by both.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use thiserror::Error;

use crate::backup::BackupPhase;

/// Largest number accepted in a max age, so a typo cannot overflow the
/// duration (999999 weeks is already about 19,000 years).
const MAX_AGE_NUMBER: i64 = 999_999;

/// Why a retention setting was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetentionError {
    /// `maxAge` is not a number followed by one unit.
    #[error(
        "maxAge {value:?} is not a duration: use a whole number and one unit, m (minutes), h (hours), d (days) or w (weeks), e.g. \"30d\""
    )]
    InvalidMaxAge {
        /// The rejected text.
        value: String,
    },
    /// `maxAge` is zero, which would expire every backup but the newest.
    #[error("maxAge {value:?} must be greater than zero")]
    ZeroMaxAge {
        /// The rejected text.
        value: String,
    },
    /// `maxAge` is absurdly long.
    #[error("maxAge {value:?} is too long (the number may be at most {MAX_AGE_NUMBER})")]
    MaxAgeTooLong {
        /// The rejected text.
        value: String,
    },
    /// `keepLast` is zero.
    #[error("keepLast must be at least 1 (the newest successful backup is always kept)")]
    ZeroKeepLast,
}

/// A parsed `maxAge` such as `30d`: a whole number of minutes, hours, days or
/// weeks. Months and years are not offered because their length varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MaxAge {
    number: i64,
    unit: char,
}

impl MaxAge {
    /// The age as a duration.
    pub fn duration(self) -> Duration {
        match self.unit {
            'm' => Duration::minutes(self.number),
            'h' => Duration::hours(self.number),
            'd' => Duration::days(self.number),
            _ => Duration::weeks(self.number),
        }
    }
}

impl FromStr for MaxAge {
    type Err = RetentionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = || RetentionError::InvalidMaxAge {
            value: value.to_owned(),
        };
        let unit = value.chars().last().ok_or_else(invalid)?;
        if !matches!(unit, 'm' | 'h' | 'd' | 'w') {
            return Err(invalid());
        }
        let digits = &value[..value.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let number = match digits.parse::<i64>() {
            Ok(n) if n > MAX_AGE_NUMBER => {
                return Err(RetentionError::MaxAgeTooLong {
                    value: value.to_owned(),
                });
            }
            Ok(n) => n,
            Err(_) => {
                return Err(RetentionError::MaxAgeTooLong {
                    value: value.to_owned(),
                });
            }
        };
        if number == 0 {
            return Err(RetentionError::ZeroMaxAge {
                value: value.to_owned(),
            });
        }
        Ok(MaxAge { number, unit })
    }
}

impl fmt::Display for MaxAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.number, self.unit)
    }
}

/// Parses a `maxAge` string into a duration.
///
/// # Errors
/// See [`RetentionError`].
pub fn parse_max_age(value: &str) -> Result<Duration, RetentionError> {
    value.parse::<MaxAge>().map(MaxAge::duration)
}

/// One backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// The backup's name (object name, or folder name in storage).
    pub name: String,
    /// When the backup was taken (its snapshot time); ages are measured from it.
    pub time: DateTime<Utc>,
    /// Its state. Outside Kubernetes: Succeeded when the folder has a manifest.
    pub phase: BackupPhase,
}

impl BackupRecord {
    /// A record; see the field docs.
    pub fn new(name: impl Into<String>, time: DateTime<Utc>, phase: BackupPhase) -> Self {
        Self {
            name: name.into(),
            time,
            phase,
        }
    }
}

/// The names of the backups that retention deletes, oldest first.
///
/// * `keep_last` keeps the newest N **Succeeded** backups: failures do not
///   count, so a run of failures never pushes good backups out.
/// * `max_age` keeps every backup younger than the age (measured from `now`).
/// * The newest Succeeded backup is always kept, whatever the rules say.
/// * A failed backup newer than the newest success is kept, so the failures
///   since the last good backup stay visible until a success replaces them.
/// * Pending and Running backups are never expired: they are still being written.
/// * With neither `keep_last` nor `max_age`, nothing expires.
///
/// Ties in time are broken by name, so the result is deterministic.
pub fn select_expired(
    backups: &[BackupRecord],
    keep_last: Option<u32>,
    max_age: Option<Duration>,
    now: DateTime<Utc>,
) -> Vec<String> {
    if keep_last.is_none() && max_age.is_none() {
        return Vec::new();
    }
    let mut sorted: Vec<&BackupRecord> = backups.iter().collect();
    // Newest first.
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));

    let newest_success = sorted
        .iter()
        .position(|b| b.phase == BackupPhase::Succeeded);
    let keep_last = keep_last.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));

    let mut successes_seen = 0usize;
    let mut expired = Vec::new();
    for (index, backup) in sorted.iter().enumerate() {
        let kept = match backup.phase {
            BackupPhase::Pending | BackupPhase::Running => true,
            BackupPhase::Succeeded => {
                successes_seen += 1;
                Some(index) == newest_success
                    || successes_seen <= keep_last
                    || max_age.is_some_and(|age| now - backup.time < age)
            }
            BackupPhase::Failed => {
                newest_success.is_none_or(|newest| index < newest)
                    || max_age.is_some_and(|age| now - backup.time < age)
            }
        };
        if !kept {
            expired.push(backup.name.clone());
        }
    }
    expired.reverse();
    expired
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

    fn ok(name: &str, d: u32) -> BackupRecord {
        BackupRecord::new(name, day(d), BackupPhase::Succeeded)
    }

    fn failed(name: &str, d: u32) -> BackupRecord {
        BackupRecord::new(name, day(d), BackupPhase::Failed)
    }

    #[test]
    fn max_age_parsing() {
        assert_eq!(parse_max_age("90m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_max_age("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_max_age("30d"), Ok(Duration::days(30)));
        assert_eq!(parse_max_age("2w"), Ok(Duration::weeks(2)));
        assert_eq!(
            "30d".parse::<MaxAge>().map(|a| a.to_string()),
            Ok("30d".to_owned())
        );
        for bad in [
            "", "d", "30", "30s", "3.5d", "-1d", "30 d", " 30d", "1y", "30D", "٣d",
        ] {
            assert!(
                matches!(
                    parse_max_age(bad),
                    Err(RetentionError::InvalidMaxAge { .. })
                ),
                "{bad:?} should be rejected"
            );
        }
        assert!(matches!(
            parse_max_age("0d"),
            Err(RetentionError::ZeroMaxAge { .. })
        ));
        assert!(matches!(
            parse_max_age("1000000w"),
            Err(RetentionError::MaxAgeTooLong { .. })
        ));
        assert!(matches!(
            parse_max_age("99999999999999999999999w"),
            Err(RetentionError::MaxAgeTooLong { .. })
        ));
        let message = parse_max_age("30s").expect_err("rejected").to_string();
        assert!(
            message.contains("\"30s\"") && message.contains("e.g. \"30d\""),
            "{message}"
        );
    }

    #[test]
    fn no_rule_expires_nothing() {
        let backups = [ok("a", 1), ok("b", 2), failed("c", 3)];
        assert!(select_expired(&backups, None, None, day(30)).is_empty());
    }

    #[test]
    fn keep_last_counts_successes_only() {
        let backups = [
            ok("a", 1),
            ok("b", 2),
            ok("c", 3),
            failed("d", 4),
            failed("e", 5),
        ];
        // Two newest successes are b and c; d and e failed after the newest success.
        assert_eq!(select_expired(&backups, Some(2), None, day(30)), ["a"]);
        assert_eq!(select_expired(&backups, Some(1), None, day(30)), ["a", "b"]);
        assert!(select_expired(&backups, Some(10), None, day(30)).is_empty());
    }

    #[test]
    fn failures_before_the_newest_success_expire() {
        let backups = [ok("a", 1), failed("b", 2), ok("c", 3)];
        assert_eq!(select_expired(&backups, Some(5), None, day(30)), ["b"]);
    }

    #[test]
    fn max_age_keeps_young_backups_of_any_state() {
        let backups = [ok("a", 1), failed("b", 10), ok("c", 20), ok("d", 25)];
        // now = day 28, maxAge 7d keeps c? 8 days old: no. d: 3 days: yes.
        assert_eq!(
            select_expired(&backups, None, Some(Duration::days(7)), day(28)),
            ["a", "b", "c"]
        );
        assert_eq!(
            select_expired(&backups, None, Some(Duration::days(20)), day(28)),
            ["a"]
        );
        // Exactly maxAge old is expired.
        assert_eq!(
            select_expired(
                &[ok("x", 1), ok("y", 8)],
                None,
                Some(Duration::days(7)),
                day(8)
            ),
            ["x"]
        );
    }

    #[test]
    fn any_rule_keeps() {
        let backups = [ok("a", 1), ok("b", 2), ok("c", 3), ok("d", 27)];
        // keepLast 2 keeps c, d; maxAge 27d from day 28 keeps b (26 days old), c, d.
        assert_eq!(
            select_expired(&backups, Some(2), Some(Duration::days(27)), day(28)),
            ["a"]
        );
    }

    #[test]
    fn newest_success_survives_every_rule() {
        let backups = [failed("f0", 1), ok("old", 2), ok("older", 1)];
        assert_eq!(
            select_expired(&backups, None, Some(Duration::hours(1)), day(28)),
            ["f0", "older"]
        );
        assert_eq!(
            select_expired(&backups, Some(1), Some(Duration::hours(1)), day(28)),
            ["f0", "older"]
        );
        // Failures since the newest success stay visible, however old.
        let backups = [ok("old", 1), failed("f1", 20), failed("f2", 21)];
        assert!(select_expired(&backups, None, Some(Duration::hours(1)), day(28)).is_empty());
        assert!(select_expired(&backups, Some(1), None, day(28)).is_empty());
    }

    #[test]
    fn without_any_success_only_age_expires() {
        let backups = [failed("a", 1), failed("b", 2)];
        assert!(select_expired(&backups, Some(1), None, day(28)).is_empty());
        assert!(select_expired(&backups, None, Some(Duration::days(1)), day(28)).is_empty());
    }

    #[test]
    fn in_flight_backups_never_expire() {
        let backups = [
            BackupRecord::new("running", day(1), BackupPhase::Running),
            BackupRecord::new("pending", day(1), BackupPhase::Pending),
            ok("a", 2),
            ok("b", 3),
        ];
        assert_eq!(
            select_expired(&backups, Some(1), Some(Duration::hours(1)), day(28)),
            ["a"]
        );
    }

    #[test]
    fn order_and_ties_are_deterministic() {
        let backups = [ok("b", 1), ok("a", 1), ok("c", 1), ok("z", 2)];
        assert_eq!(
            select_expired(&backups, Some(1), None, day(28)),
            ["a", "b", "c"]
        );
        // Same input in another order gives the same answer.
        let mut reversed = backups.to_vec();
        reversed.reverse();
        assert_eq!(
            select_expired(&reversed, Some(1), None, day(28)),
            ["a", "b", "c"]
        );
        // With a tie on time, the name breaks it: "c" counts as newest.
        assert_eq!(
            select_expired(&backups[..3], Some(1), None, day(28)),
            ["a", "b"]
        );
    }
}
