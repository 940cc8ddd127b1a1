//! Retention settings: parsing and checking `maxAge`.
//!
//! Which backups retention keeps is decided in one place, the agent's keep
//! policy (`keeper_agent::keep_policy`), which applies `keepLast` and
//! `maxAge` to storage and the `MySQLBackup` objects alike; the operator only
//! validates the settings (here) and passes them to the agent's Job.

use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use thiserror::Error;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
