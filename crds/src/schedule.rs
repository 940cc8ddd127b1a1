//! Backup schedules with Kubernetes CronJob semantics.
//!
//! The operator hands `spec.backup.schedule` and `spec.backup.timeZone` to a
//! CronJob, so the Kubernetes CronJob controller decides when backups really
//! run. This module must therefore agree with it exactly, both to reject what
//! the API server would reject (as a condition and an Event, not a failed
//! apply) and to compute `status.nextBackupTime` and the `BackupsHealthy`
//! interval that match the real runs.
//!
//! # Why a hand-written matcher and not `cron` or `croner`
//!
//! The CronJob controller uses `robfig/cron/v3`'s standard parser. Checked
//! against it:
//!
//! * `cron` (0.17) needs a seconds field, numbers Sunday as 1, ANDs the two day
//!   fields and lacks `@midnight`. Measured (issue 21) with a wrapper that
//!   keeps this module's parser and hands the search to `cron` (explicit
//!   lists, seconds = 0, weekdays shifted, the union of two schedules when
//!   both day fields are restricted): the parser cannot go, because `cron`
//!   accepts what a CronJob rejects (`MONDAY`, `thursday`, a 6th/7th field),
//!   rejects what it accepts (`Mon/2`) and its messages say neither; the
//!   search needs two fix-ups of its own (started at the first instant of a
//!   fall-back overlap it skips the second, and inside an overlap it yields
//!   runs out of order, so a start a day early and a reordering buffer); and
//!   its calendar ends in 2100. The wrapper came to 462 code lines against
//!   479 here, and `cron` added 8 crates to `Cargo.lock`, five of them second
//!   versions (phf/phf_shared 0.11, rand 0.8, rand_core 0.6, winnow 0.7).
//!   17 lines saved do not pay for that, so the search stays here too.
//! * `croner` (3.0) gets the 5 fields, 0/7 = Sunday and the day-of-month OR
//!   day-of-week rule right, but (a) it also accepts 6- and 7-field patterns
//!   and the Quartz extensions `L`, `W`, `#` and `+`, which a CronJob rejects,
//!   (b) it has no `@midnight`, and (c) its daylight-saving rules follow the
//!   OCPS draft: a run in a spring-forward gap is moved to just after the gap and
//!   a run in a fall-back overlap fires once. robfig (hence Kubernetes) skips a
//!   run whose local time does not exist and fires at both instants of a local
//!   time that occurs twice. (c) cannot be fixed from outside croner: its
//!   search is where the gap handling lives.
//!
//! Wrapping croner would have meant re-parsing every field to reject (a),
//! rewriting (b), and reimplementing the search for (c) — that is the whole
//! of a 5-field matcher, so the matcher is written here (about 480 lines of code) and
//! tested against robfig's and Kubernetes' own examples.
//!
//! # Semantics (robfig/cron v3 standard parser, as Kubernetes uses it)
//!
//! * Exactly 5 fields: minute (0-59), hour (0-23), day of month (1-31), month
//!   (1-12 or `JAN`-`DEC`), day of week (0-6 from Sunday or `SUN`-`SAT`). Names
//!   are case-insensitive.
//! * Each field is a comma list of `*`, `?` (day fields, same as `*`), `N`,
//!   `N-M`, optionally followed by `/step`; `N/step` means `N-max/step`.
//! * When both day fields are restricted (neither is `*` or `?`), a day matches
//!   if *either* matches (Vixie cron); otherwise both must match. `*/2` counts as
//!   restricted, as in robfig.
//! * Macros: `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//!   `@midnight`, `@hourly`.
//! * `TZ=` / `CRON_TZ=` prefixes are refused (the CronJob API refuses them);
//!   the time zone is a separate field.
//!
//! One deliberate extension, as DESIGN asks: 7 is accepted as Sunday (robfig
//! rejects it). [`Schedule::cronjob_schedule`] rewrites it to 0, so the CronJob
//! the operator creates always passes API validation.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use thiserror::Error;

/// How far ahead [`Schedule::next_after`] looks before deciding a schedule
/// never runs. Eight years always contains a 29 February (the longest gap is
/// 2096 to 2104).
const SEARCH_DAYS: u32 = 366 * 8 + 2;

/// Window over which [`Schedule::interval_hint`] measures gaps: one week, so
/// weekday-only schedules report the weekend gap.
const INTERVAL_WINDOW_DAYS: i64 = 7;

/// Why a schedule or time zone was rejected. Every message quotes the input
/// and says what a valid value looks like.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// The schedule is empty.
    #[error(
        "schedule is empty; a Kubernetes CronJob schedule has 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\""
    )]
    Empty,

    /// A `TZ=` or `CRON_TZ=` prefix.
    #[error(
        "schedule {schedule:?} sets a time zone inside the expression, which Kubernetes CronJobs reject; remove the {prefix} prefix and set spec.backup.timeZone instead"
    )]
    EmbeddedTimeZone {
        /// The schedule as given.
        schedule: String,
        /// `TZ=` or `CRON_TZ=`.
        prefix: &'static str,
    },

    /// Not 5 fields.
    #[error(
        "schedule {schedule:?} has {count} field{plural}; a Kubernetes CronJob schedule has 5 (minute hour day-of-month month day-of-week){hint}",
        plural = if *count == 1 { "" } else { "s" },
        hint = if *count == 6 { " and no seconds field" } else { "" }
    )]
    WrongFieldCount {
        /// The schedule as given.
        schedule: String,
        /// How many fields it has.
        count: usize,
    },

    /// An `@` word that is not a supported macro.
    #[error(
        "schedule {schedule:?} is not a supported macro; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, or 5 fields"
    )]
    UnknownMacro {
        /// The schedule as given.
        schedule: String,
    },

    /// One field is malformed or out of range.
    #[error("schedule {schedule:?}: {field} field {value:?}: {problem}")]
    InvalidField {
        /// The schedule as given.
        schedule: String,
        /// Which field: minute, hour, day-of-month, month or day-of-week.
        field: &'static str,
        /// The offending field text.
        value: String,
        /// What is wrong with it.
        problem: String,
    },

    /// Valid syntax, but no date ever matches (e.g. 30 February).
    #[error("schedule {schedule:?} never runs: no date matches its day-of-month and month fields")]
    NeverRuns {
        /// The schedule as given.
        schedule: String,
    },

    /// Not an IANA time zone name.
    #[error(
        "time zone {zone:?} is not an IANA time zone name{}",
        match suggestion {
            Some(s) => format!(" (did you mean {s:?}?)"),
            None => "; use a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"".to_owned(),
        }
    )]
    UnknownTimeZone {
        /// The zone as given.
        zone: String,
        /// The correctly spelled zone when only the case was wrong.
        suggestion: Option<String>,
    },

    /// `Local`, which Kubernetes refuses because it depends on the controller's host.
    #[error(
        "time zone {zone:?} means the controller's local zone, which Kubernetes CronJobs reject; use an explicit IANA name such as \"Europe/Berlin\" or \"UTC\""
    )]
    LocalTimeZone {
        /// The zone as given.
        zone: String,
    },
}

impl ScheduleError {
    /// Whether the error is about the time zone rather than the expression.
    pub fn is_time_zone_error(&self) -> bool {
        matches!(
            self,
            ScheduleError::UnknownTimeZone { .. } | ScheduleError::LocalTimeZone { .. }
        )
    }
}

/// Parses an IANA time zone name the way a CronJob's `timeZone` accepts it.
///
/// # Errors
/// [`ScheduleError::UnknownTimeZone`] (with a suggestion when only the case is
/// wrong) or [`ScheduleError::LocalTimeZone`].
pub fn parse_time_zone(zone: &str) -> Result<Tz, ScheduleError> {
    if zone.eq_ignore_ascii_case("local") {
        return Err(ScheduleError::LocalTimeZone {
            zone: zone.to_owned(),
        });
    }
    Tz::from_str(zone).map_err(|_| ScheduleError::UnknownTimeZone {
        zone: zone.to_owned(),
        suggestion: chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(zone.trim()))
            .map(|tz| tz.name().to_owned()),
    })
}

/// A parsed, validated schedule in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expression: String,
    cronjob_expression: String,
    time_zone: Option<Tz>,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// Whether the day-of-month / day-of-week field was `*` or `?` (robfig's
    /// "star bit"), which switches the day rule from OR to AND.
    dom_star: bool,
    dow_star: bool,
}

/// Static description of one field.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// The range `*` stands for (differs from `min..=max` only for the day of
    /// week, where 7 is accepted but `*` means 0-6).
    star_max: u32,
    names: &'static [&'static str],
    /// Value of `names[0]`.
    names_base: u32,
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    star_max: 59,
    names: &[],
    names_base: 0,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    star_max: 23,
    names: &[],
    names_base: 0,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    star_max: 31,
    names: &[],
    names_base: 0,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    star_max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    names_base: 1,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    star_max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    names_base: 0,
};

/// A parsed field: the set of values (bit n = value n) and whether it was a star.
struct Field {
    bits: u64,
    star: bool,
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value: u32 = text
            .parse()
            .map_err(|_| format!("{text} is out of range {}-{}", spec.min, spec.max))?;
        if value < spec.min || value > spec.max {
            return Err(format!("{value} is out of range {}-{}", spec.min, spec.max));
        }
        return Ok(value);
    }
    if let Some(index) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Name tables are at most 12 long, so the index always fits.
        return Ok(spec.names_base + u32::try_from(index).unwrap_or(0));
    }
    if text.is_empty() {
        return Err("a value is missing".to_owned());
    }
    if spec.names.is_empty() {
        Err(format!("{text:?} is not a number"))
    } else {
        Err(format!(
            "{text:?} is not a number or one of {}",
            spec.names.join(", ")
        ))
    }
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<Field, String> {
    let mut field = Field {
        bits: 0,
        star: false,
    };
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty item in a comma-separated list".to_owned());
        }
        let mut parts = item.split('/');
        let range = parts.next().unwrap_or_default();
        let step = parts.next();
        if parts.next().is_some() {
            return Err(format!("{item:?} has more than one '/'"));
        }
        let step = match step {
            None => None,
            Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                match s.parse::<u32>() {
                    Ok(0) | Err(_) => return Err(format!("step {s:?} must be a positive number")),
                    Ok(n) => Some(n),
                }
            }
            Some(s) => return Err(format!("step {s:?} must be a positive number")),
        };
        let (start, end, star) = if range == "*" || range == "?" {
            if range == "?" && spec.name != DAY_OF_MONTH.name && spec.name != DAY_OF_WEEK.name {
                return Err(
                    "'?' is only allowed in the day-of-month and day-of-week fields".to_owned(),
                );
            }
            (spec.min, spec.star_max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(a, spec)?, parse_value(b, spec)?);
            if a > b {
                return Err(format!("range {range:?} starts after it ends"));
            }
            (a, b, false)
        } else {
            let value = parse_value(range, spec)?;
            // robfig: "N/step" means "N-max/step".
            let end = if step.is_some() {
                spec.star_max.max(value)
            } else {
                value
            };
            (value, end, false)
        };
        let step = step.unwrap_or(1);
        let mut value = start;
        while value <= end {
            field.bits |= 1 << value;
            value += step;
        }
        // robfig keeps the star bit only for an unstepped (or /1) star.
        field.star |= star && step == 1;
    }
    Ok(field)
}

/// Renders a set of day-of-week bits (0-6) as a compact list, e.g. `0,5-6`.
fn render_days_of_week(bits: u64) -> String {
    let mut out = Vec::new();
    let mut day = 0;
    while day <= 6 {
        if bits & (1 << day) != 0 {
            let start = day;
            while day < 6 && bits & (1 << (day + 1)) != 0 {
                day += 1;
            }
            out.push(if start == day {
                start.to_string()
            } else {
                format!("{start}-{day}")
            });
        }
        day += 1;
    }
    out.join(",")
}

fn expand_macro(expression: &str) -> Option<&'static str> {
    Some(match expression.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

impl Schedule {
    /// Parses and validates a schedule and its optional IANA time zone.
    ///
    /// # Errors
    /// A [`ScheduleError`] whose message quotes the bad input and says what is
    /// expected. Schedules that can never run (`0 0 30 2 *`) are rejected too:
    /// the CronJob would be accepted and silently never fire.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = time_zone.map(parse_time_zone).transpose()?;
        let trimmed = expression.trim();
        if trimmed.is_empty() {
            return Err(ScheduleError::Empty);
        }
        for prefix in ["CRON_TZ=", "TZ="] {
            if trimmed
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            {
                return Err(ScheduleError::EmbeddedTimeZone {
                    schedule: expression.to_owned(),
                    prefix,
                });
            }
        }

        let (fields_text, cronjob_macro) = if trimmed.starts_with('@') {
            match expand_macro(trimmed) {
                Some(fields) => (fields, Some(trimmed.to_ascii_lowercase())),
                None => {
                    return Err(ScheduleError::UnknownMacro {
                        schedule: expression.to_owned(),
                    });
                }
            }
        } else {
            (trimmed, None)
        };

        let fields: Vec<&str> = fields_text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(ScheduleError::WrongFieldCount {
                schedule: expression.to_owned(),
                count: fields.len(),
            });
        };
        let field = |text: &str, spec: &FieldSpec| {
            parse_field(text, spec).map_err(|problem| ScheduleError::InvalidField {
                schedule: expression.to_owned(),
                field: spec.name,
                value: text.to_owned(),
                problem,
            })
        };
        let minutes = field(minute, &MINUTE)?;
        let hours = field(hour, &HOUR)?;
        let days_of_month = field(dom, &DAY_OF_MONTH)?;
        let months = field(month, &MONTH)?;
        let mut days_of_week = field(dow, &DAY_OF_WEEK)?;

        // 7 is Sunday too; the CronJob API only knows 0.
        let uses_seven = days_of_week.bits & (1 << 7) != 0;
        if uses_seven {
            days_of_week.bits = (days_of_week.bits & !(1 << 7)) | 1;
        }
        let cronjob_expression = match cronjob_macro {
            Some(m) => m,
            None if uses_seven => {
                format!(
                    "{minute} {hour} {dom} {month} {}",
                    render_days_of_week(days_of_week.bits)
                )
            }
            None => fields.join(" "),
        };

        let schedule = Schedule {
            expression: trimmed.to_owned(),
            cronjob_expression,
            time_zone: tz,
            minutes: minutes.bits,
            hours: hours.bits,
            days_of_month: days_of_month.bits,
            months: months.bits,
            days_of_week: days_of_week.bits,
            dom_star: days_of_month.star,
            dow_star: days_of_week.star,
        };
        if !schedule.can_match_some_day() {
            return Err(ScheduleError::NeverRuns {
                schedule: expression.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression as given (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The expression to put in a CronJob's `spec.schedule`: the same schedule,
    /// spelled so that the CronJob API accepts it (7 for Sunday becomes 0,
    /// macros lower case, single spaces).
    pub fn cronjob_schedule(&self) -> &str {
        &self.cronjob_expression
    }

    /// The time zone, `None` meaning UTC.
    pub fn time_zone(&self) -> Option<Tz> {
        self.time_zone
    }

    /// Whether some (month, day) pair can ever match, checked statically so that
    /// `0 0 30 2 *` is reported at parse time.
    fn can_match_some_day(&self) -> bool {
        // With an OR of restricted day fields, or a restricted weekday, some day
        // of every month matches (every weekday occurs in every month).
        if !self.dom_star && !self.dow_star {
            return true;
        }
        if !self.dow_star {
            // AND with a star day-of-month: any month has every weekday.
            return true;
        }
        const MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12u32).any(|month| {
            self.months & (1 << month) != 0
                && (1..=MAX_DAYS[(month - 1) as usize])
                    .any(|day| self.days_of_month & (1 << day) != 0)
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// All run instants on one local date, sorted. A local time that does not
    /// exist (spring forward) yields nothing; one that occurs twice (fall back)
    /// yields both instants — as robfig/cron and so the CronJob controller do.
    fn runs_on(&self, date: NaiveDate) -> Vec<DateTime<Utc>> {
        let tz = self.time_zone.unwrap_or(Tz::UTC);
        let mut runs = Vec::new();
        for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
            for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                let Some(local) = date.and_hms_opt(hour, minute, 0) else {
                    continue;
                };
                match tz.from_local_datetime(&local) {
                    LocalResult::Single(t) => runs.push(t.with_timezone(&Utc)),
                    LocalResult::Ambiguous(a, b) => {
                        runs.push(a.with_timezone(&Utc));
                        runs.push(b.with_timezone(&Utc));
                    }
                    LocalResult::None => {}
                }
            }
        }
        runs.sort_unstable();
        runs
    }

    /// The first run strictly after `after`, or `None` if there is none within
    /// eight years (which a parsed schedule always has; `None` only near the end
    /// of chrono's calendar).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.runs_after(after).next()
    }

    /// The runs strictly after `after`, in order.
    pub fn runs_after(&self, after: DateTime<Utc>) -> Runs<'_> {
        let tz = self.time_zone.unwrap_or(Tz::UTC);
        // Start a day early: in a fall-back overlap around midnight, an instant
        // after `after` can carry the previous local date.
        let date = after.with_timezone(&tz).date_naive().pred_opt();
        Runs {
            schedule: self,
            date,
            buffer: Vec::new(),
            last: after,
            idle_days: 0,
        }
    }

    /// The interval for the `BackupsHealthy` rule: the longest gap between
    /// consecutive runs in the week after `from` (at least one gap is always
    /// measured).
    ///
    /// For a regular schedule this is simply the gap between the next two runs.
    /// Taking the longest gap over a week means `0 3 * * 1-5` (weekdays) reports
    /// three days, so a weekend without backups is not mistaken for a problem,
    /// and a run skipped by a daylight-saving gap widens the interval rather
    /// than raising an alarm.
    pub fn interval_hint(&self, from: DateTime<Utc>) -> Option<Duration> {
        let mut runs = self.runs_after(from);
        let first = runs.next()?;
        let window_end = first + Duration::days(INTERVAL_WINDOW_DAYS);
        let mut previous = first;
        let mut longest: Option<Duration> = None;
        for run in runs {
            let gap = run - previous;
            longest = Some(longest.map_or(gap, |l| l.max(gap)));
            if run >= window_end {
                break;
            }
            previous = run;
        }
        longest
    }

    /// The `BackupsHealthy` rule: whether the last successful backup, taken at
    /// `last_success`, is older than twice the schedule's interval at `now`.
    ///
    /// The interval is measured from `last_success` (not from `now`), so the
    /// answer does not flap as time passes. `false` when the schedule has no
    /// runs to measure.
    pub fn is_overdue(&self, last_success: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.interval_hint(last_success)
            .is_some_and(|interval| now - last_success > interval * 2)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.time_zone {
            Some(tz) => write!(f, "{} ({})", self.expression, tz.name()),
            None => write!(f, "{} (UTC)", self.expression),
        }
    }
}

/// Iterator over the runs of a [`Schedule`]; see [`Schedule::runs_after`].
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    schedule: &'a Schedule,
    /// Next local date to expand; `None` past the end of the calendar.
    date: Option<NaiveDate>,
    /// Runs of the last expanded date not yet returned, in reverse order.
    buffer: Vec<DateTime<Utc>>,
    last: DateTime<Utc>,
    idle_days: u32,
}

impl Iterator for Runs<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            while let Some(run) = self.buffer.pop() {
                if run > self.last {
                    self.last = run;
                    self.idle_days = 0;
                    return Some(run);
                }
            }
            if self.idle_days > SEARCH_DAYS {
                return None;
            }
            let date = self.date?;
            self.date = date.succ_opt();
            self.idle_days += 1;
            if self.schedule.day_matches(date) {
                let mut runs = self.schedule.runs_on(date);
                runs.reverse();
                self.buffer = runs;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid RFC 3339")
            .with_timezone(&Utc)
    }

    fn next(expr: &str, tz: Option<&str>, after: &str) -> String {
        let schedule = Schedule::parse(expr, tz).expect("valid schedule");
        schedule
            .next_after(utc(after))
            .expect("a next run")
            .to_rfc3339()
    }

    fn runs(expr: &str, tz: Option<&str>, after: &str, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(expr, tz).expect("valid schedule");
        schedule
            .runs_after(utc(after))
            .take(n)
            .map(|t| t.to_rfc3339())
            .collect()
    }

    fn error(expr: &str, tz: Option<&str>) -> ScheduleError {
        Schedule::parse(expr, tz).expect_err("invalid schedule")
    }

    #[test]
    fn weekdays_are_monday_to_friday() {
        // 2025-01-03 is a Friday.
        assert_eq!(
            runs("0 3 * * 1-5", None, "2025-01-03T00:00:00Z", 3),
            [
                "2025-01-03T03:00:00+00:00",
                "2025-01-06T03:00:00+00:00",
                "2025-01-07T03:00:00+00:00"
            ]
        );
        assert_eq!(
            runs("0 3 * * MON-FRI", None, "2025-01-03T00:00:00Z", 3),
            runs("0 3 * * 1-5", None, "2025-01-03T00:00:00Z", 3)
        );
    }

    #[test]
    fn every_fifteen_minutes() {
        assert_eq!(
            runs("*/15 * * * *", None, "2025-01-01T10:07:00Z", 4),
            [
                "2025-01-01T10:15:00+00:00",
                "2025-01-01T10:30:00+00:00",
                "2025-01-01T10:45:00+00:00",
                "2025-01-01T11:00:00+00:00"
            ]
        );
        // Strictly after: a run exactly at `after` is not returned.
        assert_eq!(
            next("*/15 * * * *", None, "2025-01-01T10:15:00Z"),
            "2025-01-01T10:30:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", None, "2025-01-01T10:14:59.5Z"),
            "2025-01-01T10:15:00+00:00"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 1st of the month OR any Sunday. 2025-06-01 is a Sunday; June has
        // Sundays on 1, 8, 15, 22, 29; July 1st is a Tuesday.
        assert_eq!(
            runs("0 0 1 * 0", None, "2025-05-31T12:00:00Z", 6),
            [
                "2025-06-01T00:00:00+00:00",
                "2025-06-08T00:00:00+00:00",
                "2025-06-15T00:00:00+00:00",
                "2025-06-22T00:00:00+00:00",
                "2025-06-29T00:00:00+00:00",
                "2025-07-01T00:00:00+00:00"
            ]
        );
        // A star in either day field means AND: a star day-of-month and Friday
        // is every Friday.
        assert_eq!(
            next("0 0 * * 5", None, "2025-06-01T00:00:00Z"),
            "2025-06-06T00:00:00+00:00"
        );
        // ...and '?' is a star too.
        assert_eq!(
            next("0 0 ? * 5", None, "2025-06-01T00:00:00Z"),
            "2025-06-06T00:00:00+00:00"
        );
        // A stepped star is restricted (robfig): the 1st/3rd/... OR Mondays.
        assert_eq!(
            next("0 0 */2 * 1", None, "2025-06-01T12:00:00Z"),
            "2025-06-02T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 */2 * 1", None, "2025-06-02T12:00:00Z"),
            "2025-06-03T00:00:00+00:00"
        );
    }

    #[test]
    fn robfig_reference_cases() {
        // From robfig/cron v3 spec_test.go (TestActivation / TestNext), read in UTC.
        assert_eq!(
            next("0 0 29 2 *", None, "2012-07-09T23:35:00Z"),
            "2016-02-29T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * 2 1", None, "2012-07-09T23:35:00Z"),
            "2013-02-04T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 */5 10 1", None, "2012-07-09T23:35:00Z"),
            "2012-10-01T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 9 4-10 *", None, "2012-07-09T23:35:00Z"),
            "2012-08-09T00:00:00+00:00"
        );
        assert_eq!(
            next("* * * * *", None, "2012-12-31T23:59:45Z"),
            "2013-01-01T00:00:00+00:00"
        );
        // "Mon/2" means Monday to Saturday in steps of 2: Mon, Wed, Fri.
        assert_eq!(
            next("0 0 * 2 Mon/2", None, "2012-07-09T23:35:00Z"),
            "2013-02-01T00:00:00+00:00"
        );
    }

    #[test]
    fn macros() {
        assert_eq!(
            next("@daily", None, "2025-01-01T10:00:00Z"),
            "2025-01-02T00:00:00+00:00"
        );
        assert_eq!(
            next("@midnight", None, "2025-01-01T10:00:00Z"),
            "2025-01-02T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", None, "2025-01-01T10:00:00Z"),
            "2025-01-01T11:00:00+00:00"
        );
        assert_eq!(
            next("@weekly", None, "2025-01-01T10:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", None, "2025-01-01T10:00:00Z"),
            "2025-02-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@yearly", None, "2025-01-01T10:00:00Z"),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@annually", None, "2025-01-01T10:00:00Z"),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@Daily", None, "2025-01-01T10:00:00Z"),
            "2025-01-02T00:00:00+00:00"
        );
        assert!(matches!(
            error("@every 1h", None),
            ScheduleError::UnknownMacro { .. }
        ));
        assert!(matches!(
            error("@reboot", None),
            ScheduleError::UnknownMacro { .. }
        ));
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        // 2025-01-05 is a Sunday.
        assert_eq!(
            next("0 0 * * 7", None, "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 0", None, "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * SUN", None, "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * sun", None, "2025-01-01T00:00:00Z"),
            "2025-01-05T00:00:00+00:00"
        );
        // Saturday and Sunday through the 7.
        assert_eq!(
            runs("0 0 * * 6-7", None, "2025-01-01T00:00:00Z", 3),
            [
                "2025-01-04T00:00:00+00:00",
                "2025-01-05T00:00:00+00:00",
                "2025-01-11T00:00:00+00:00"
            ]
        );
    }

    #[test]
    fn cronjob_spelling() {
        let p = |e: &str| {
            Schedule::parse(e, None)
                .expect("valid")
                .cronjob_schedule()
                .to_owned()
        };
        assert_eq!(p("0 0 * * 7"), "0 0 * * 0");
        assert_eq!(p("0 0 * * 5-7"), "0 0 * * 0,5-6");
        assert_eq!(p("0 0 * * 0-7"), "0 0 * * 0-6");
        assert_eq!(p("  0   3 * *   1-5 "), "0 3 * * 1-5");
        assert_eq!(p("0 3 * * MON-FRI"), "0 3 * * MON-FRI");
        assert_eq!(p("@Midnight"), "@midnight");
    }

    #[test]
    fn daylight_saving_in_berlin() {
        // Spring forward: 2025-03-30 02:00 CET jumps to 03:00 CEST. A 02:30 run
        // does not exist that day and is skipped (robfig), not moved.
        assert_eq!(
            runs(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2025-03-29T00:00:00Z",
                2
            ),
            ["2025-03-29T01:30:00+00:00", "2025-03-31T00:30:00+00:00"]
        );
        // Fall back: 2025-10-26 03:00 CEST goes back to 02:00 CET. 02:30 happens
        // twice and runs twice.
        assert_eq!(
            runs(
                "30 2 * * *",
                Some("Europe/Berlin"),
                "2025-10-25T12:00:00Z",
                3
            ),
            [
                "2025-10-26T00:30:00+00:00",
                "2025-10-26T01:30:00+00:00",
                "2025-10-27T01:30:00+00:00"
            ]
        );
        // A daily 03:00 run keeps its wall-clock time across both changes.
        assert_eq!(
            runs(
                "0 3 * * *",
                Some("Europe/Berlin"),
                "2025-03-29T00:00:00Z",
                3
            ),
            [
                "2025-03-29T02:00:00+00:00",
                "2025-03-30T01:00:00+00:00",
                "2025-03-31T01:00:00+00:00"
            ]
        );
        // Hourly runs: the missing hour is skipped, the repeated hour runs twice.
        assert_eq!(
            runs(
                "0 * * * *",
                Some("Europe/Berlin"),
                "2025-03-30T00:00:00Z",
                2
            ),
            ["2025-03-30T01:00:00+00:00", "2025-03-30T02:00:00+00:00"]
        );
        assert_eq!(
            runs(
                "0 * * * *",
                Some("Europe/Berlin"),
                "2025-10-26T00:00:00Z",
                3
            ),
            [
                "2025-10-26T01:00:00+00:00",
                "2025-10-26T02:00:00+00:00",
                "2025-10-26T03:00:00+00:00"
            ]
        );
    }

    #[test]
    fn robfig_new_york_dst_cases() {
        let ny = Some("America/New_York");
        // Spring forward, 2012-03-11: 02:30 does not exist; next is a year later.
        assert_eq!(
            next("30 2 11 Mar ?", ny, "2012-03-11T05:00:00Z"),
            "2013-03-11T06:30:00+00:00"
        );
        // Nightly 2am job is skipped that day.
        assert_eq!(
            next("0 2 * * ?", ny, "2012-03-11T05:00:00Z"),
            "2012-03-12T06:00:00+00:00"
        );
        // Fall back, 2012-11-04: the 1am job runs twice.
        assert_eq!(
            next("0 1 * * ?", ny, "2012-11-04T04:00:00Z"),
            "2012-11-04T05:00:00+00:00"
        );
        assert_eq!(
            next("0 1 * * ?", ny, "2012-11-04T05:00:00Z"),
            "2012-11-04T06:00:00+00:00"
        );
        assert_eq!(
            next("0 1 * * ?", ny, "2012-11-04T06:00:00Z"),
            "2012-11-05T06:00:00+00:00"
        );
        // 01:30 on the repeated hour, starting from 01:45 EDT, is 01:30 EST.
        assert_eq!(
            next("30 1 04 Nov ?", ny, "2012-11-04T05:45:00Z"),
            "2012-11-04T06:30:00+00:00"
        );
    }

    #[test]
    fn time_zone_shifts_runs() {
        assert_eq!(
            next("0 3 * * *", Some("UTC"), "2025-01-01T00:00:00Z"),
            "2025-01-01T03:00:00+00:00"
        );
        assert_eq!(
            next("0 3 * * *", Some("Asia/Tokyo"), "2025-01-01T00:00:00Z"),
            "2025-01-01T18:00:00+00:00"
        );
        assert_eq!(
            next("0 3 * * *", Some("Asia/Kolkata"), "2025-01-01T00:00:00Z"),
            "2025-01-01T21:30:00+00:00"
        );
    }

    #[test]
    fn bad_time_zones() {
        let e = error("0 3 * * *", Some("Europe/Berlinn"));
        assert!(e.is_time_zone_error());
        assert_eq!(
            e.to_string(),
            "time zone \"Europe/Berlinn\" is not an IANA time zone name; use a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
        );
        let e = error("0 3 * * *", Some("europe/berlin"));
        assert_eq!(
            e.to_string(),
            "time zone \"europe/berlin\" is not an IANA time zone name (did you mean \"Europe/Berlin\"?)"
        );
        assert!(matches!(
            error("0 3 * * *", Some("Local")),
            ScheduleError::LocalTimeZone { .. }
        ));
        assert!(matches!(
            error("0 3 * * *", Some("")),
            ScheduleError::UnknownTimeZone { .. }
        ));
        assert!(matches!(
            error("0 3 * * *", Some("+02:00")),
            ScheduleError::UnknownTimeZone { .. }
        ));
    }

    #[test]
    fn wrong_field_counts() {
        assert_eq!(
            error("0 3 * *", None).to_string(),
            "schedule \"0 3 * *\" has 4 fields; a Kubernetes CronJob schedule has 5 (minute hour day-of-month month day-of-week)"
        );
        assert_eq!(
            error("0 0 3 * * *", None).to_string(),
            "schedule \"0 0 3 * * *\" has 6 fields; a Kubernetes CronJob schedule has 5 (minute hour day-of-month month day-of-week) and no seconds field"
        );
        assert!(matches!(
            error("0 0 3 * * * 2025", None),
            ScheduleError::WrongFieldCount { count: 7, .. }
        ));
        assert!(matches!(
            error("daily", None),
            ScheduleError::WrongFieldCount { count: 1, .. }
        ));
        assert_eq!(error("   ", None), ScheduleError::Empty);
    }

    #[test]
    fn embedded_time_zones_are_refused() {
        let e = error("TZ=Europe/Berlin 0 3 * * *", None);
        assert!(matches!(
            e,
            ScheduleError::EmbeddedTimeZone { prefix: "TZ=", .. }
        ));
        assert!(e.to_string().contains("spec.backup.timeZone"));
        assert!(matches!(
            error("CRON_TZ=UTC 0 3 * * *", None),
            ScheduleError::EmbeddedTimeZone {
                prefix: "CRON_TZ=",
                ..
            }
        ));
    }

    #[test]
    fn bad_fields() {
        let cases = [
            ("60 * * * *", "minute", "60 is out of range 0-59"),
            ("* 24 * * *", "hour", "24 is out of range 0-23"),
            ("* * 0 * *", "day-of-month", "0 is out of range 1-31"),
            ("* * 32 * *", "day-of-month", "32 is out of range 1-31"),
            ("* * * 13 *", "month", "13 is out of range 1-12"),
            ("* * * 0 *", "month", "0 is out of range 1-12"),
            ("* * * * 8", "day-of-week", "8 is out of range 0-7"),
            (
                "* * * * XYZ",
                "day-of-week",
                "\"XYZ\" is not a number or one of SUN, MON, TUE, WED, THU, FRI, SAT",
            ),
            (
                "* * * FOO *",
                "month",
                "\"FOO\" is not a number or one of JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC",
            ),
            (
                "59-2 * * * *",
                "minute",
                "range \"59-2\" starts after it ends",
            ),
            ("*/5/5 * * * *", "minute", "\"*/5/5\" has more than one '/'"),
            (
                "*/0 * * * *",
                "minute",
                "step \"0\" must be a positive number",
            ),
            (
                "*/x * * * *",
                "minute",
                "step \"x\" must be a positive number",
            ),
            ("0-0-0 * * * *", "minute", "\"0-0\" is not a number"),
            (
                "1,,2 * * * *",
                "minute",
                "empty item in a comma-separated list",
            ),
            ("-1 * * * *", "minute", "a value is missing"),
            (
                "? * * * *",
                "minute",
                "'?' is only allowed in the day-of-month and day-of-week fields",
            ),
            // Quartz/croner extensions that a CronJob rejects.
            ("0 0 L * *", "day-of-month", "\"L\" is not a number"),
            ("0 0 15W * *", "day-of-month", "\"15W\" is not a number"),
            (
                "0 0 * * 5#2",
                "day-of-week",
                "\"5#2\" is not a number or one of SUN, MON, TUE, WED, THU, FRI, SAT",
            ),
            (
                "0 0 * * +MON",
                "day-of-week",
                "\"+MON\" is not a number or one of SUN, MON, TUE, WED, THU, FRI, SAT",
            ),
            (
                "0 0 * * MONDAY",
                "day-of-week",
                "\"MONDAY\" is not a number or one of SUN, MON, TUE, WED, THU, FRI, SAT",
            ),
        ];
        for (expr, field_name, problem_text) in cases {
            match error(expr, None) {
                ScheduleError::InvalidField {
                    field,
                    problem,
                    schedule,
                    ..
                } => {
                    assert_eq!(field, field_name, "{expr}");
                    assert_eq!(problem, problem_text, "{expr}");
                    assert_eq!(schedule, expr);
                }
                other => panic!("{expr}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            error("0 25 * * *", None).to_string(),
            "schedule \"0 25 * * *\": hour field \"25\": 25 is out of range 0-23"
        );
    }

    #[test]
    fn schedules_that_never_run() {
        assert!(matches!(
            error("0 0 30 2 *", None),
            ScheduleError::NeverRuns { .. }
        ));
        assert!(matches!(
            error("0 0 31 4,6,9,11 *", None),
            ScheduleError::NeverRuns { .. }
        ));
        // A restricted weekday ORs in, so this runs on Mondays.
        assert_eq!(
            next("0 0 30 2 1", None, "2025-01-01T00:00:00Z"),
            "2025-02-03T00:00:00+00:00"
        );
        // 29 February exists in leap years.
        assert_eq!(
            next("0 0 29 2 *", None, "2025-01-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn ranges_lists_and_steps() {
        assert_eq!(
            runs("5,10-12,50/5 8 * * *", None, "2025-01-01T00:00:00Z", 7),
            [
                "2025-01-01T08:05:00+00:00",
                "2025-01-01T08:10:00+00:00",
                "2025-01-01T08:11:00+00:00",
                "2025-01-01T08:12:00+00:00",
                "2025-01-01T08:50:00+00:00",
                "2025-01-01T08:55:00+00:00",
                "2025-01-02T08:05:00+00:00"
            ]
        );
        assert_eq!(
            runs("0 0 1 jan-mar/2 *", None, "2025-01-01T00:00:00Z", 2),
            ["2025-03-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]
        );
    }

    #[test]
    fn intervals() {
        let hourly = Schedule::parse("0 * * * *", None).expect("valid");
        assert_eq!(
            hourly.interval_hint(utc("2025-01-01T00:30:00Z")),
            Some(Duration::hours(1))
        );
        let quarter = Schedule::parse("*/15 * * * *", None).expect("valid");
        assert_eq!(
            quarter.interval_hint(utc("2025-01-01T00:30:00Z")),
            Some(Duration::minutes(15))
        );
        // Weekdays: the weekend gap counts, whatever day we ask on.
        let weekdays = Schedule::parse("0 3 * * 1-5", None).expect("valid");
        assert_eq!(
            weekdays.interval_hint(utc("2025-01-01T00:00:00Z")),
            Some(Duration::days(3))
        );
        assert_eq!(
            weekdays.interval_hint(utc("2025-01-04T00:00:00Z")),
            Some(Duration::days(3))
        );
        let monthly = Schedule::parse("@monthly", None).expect("valid");
        assert_eq!(
            monthly.interval_hint(utc("2025-01-15T00:00:00Z")),
            Some(Duration::days(28))
        );
        // The skipped Berlin run on the spring-forward day widens the interval.
        let berlin = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).expect("valid");
        assert_eq!(
            berlin.interval_hint(utc("2025-03-28T00:00:00Z")),
            Some(Duration::hours(47))
        );
    }

    #[test]
    fn overdue_is_twice_the_interval() {
        let daily = Schedule::parse("0 3 * * *", None).expect("valid");
        let last = utc("2025-01-01T03:05:00Z");
        assert!(!daily.is_overdue(last, utc("2025-01-03T03:05:00Z")));
        assert!(daily.is_overdue(last, utc("2025-01-03T03:06:00Z")));
        // Friday's backup is still fine on Monday evening for a weekday schedule.
        let weekdays = Schedule::parse("0 3 * * 1-5", None).expect("valid");
        let friday = utc("2025-01-03T03:05:00Z");
        assert!(!weekdays.is_overdue(friday, utc("2025-01-06T20:00:00Z")));
        assert!(weekdays.is_overdue(friday, utc("2025-01-09T04:00:00Z")));
    }

    #[test]
    fn display() {
        let s = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).expect("valid");
        assert_eq!(s.to_string(), "0 3 * * * (Europe/Berlin)");
        assert_eq!(s.time_zone(), Some(Tz::Europe__Berlin));
        assert_eq!(s.expression(), "0 3 * * *");
        let s = Schedule::parse("@daily", None).expect("valid");
        assert_eq!(s.to_string(), "@daily (UTC)");
    }
}
