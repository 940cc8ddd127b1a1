//! Validation that needs code: what the CRD schema and its CEL rules cannot
//! check (cron expressions, IANA time zones, retention ages, image references),
//! plus the schema's one-of rules again.
//!
//! The one-of rules are repeated here on purpose: the in-memory API used by the
//! operator's tests runs no CEL, and code that builds a Job from a destination
//! must not guess which member was meant. The operator calls
//! [`MySQLInstanceSpec::validate`] at the start of every reconcile and reports
//! each error as a condition and an Event with [`ValidationError::reason`].

use thiserror::Error;

use crate::backup::MySQLBackupSpec;
use crate::destination::BackupDestination;
use crate::instance::MySQLInstanceSpec;
use crate::retention::{RetentionError, parse_max_age};
use crate::schedule::{Schedule, ScheduleError, parse_time_zone};

/// One problem with a spec, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// `spec.backup.schedule` is not a valid CronJob schedule.
    #[error("spec.backup.schedule: {0}")]
    InvalidSchedule(ScheduleError),

    /// `spec.backup.verification.schedule` is not a valid CronJob schedule.
    #[error("spec.backup.verification.schedule: {0}")]
    InvalidVerificationSchedule(ScheduleError),

    /// `spec.backup.timeZone` is not an IANA time zone.
    #[error("spec.backup.timeZone: {0}")]
    InvalidTimeZone(ScheduleError),

    /// `spec.backup.retention` cannot be applied.
    #[error("spec.backup.retention: {0}")]
    InvalidRetention(RetentionError),

    /// `spec.image` is not an image reference.
    #[error(
        "spec.image: {image:?} is not a valid image reference: {problem}; expected [registry[:port]/]path[:tag][@sha256:digest]"
    )]
    InvalidImage {
        /// The image as given.
        image: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A destination with both or neither of `s3` and `pvc`.
    #[error("{field}: exactly one of s3 or pvc must be set")]
    InvalidDestination {
        /// JSON path of the destination.
        field: &'static str,
    },

    /// `spec.restoreFrom` with both or neither of `backupName` and `location`.
    #[error("spec.restoreFrom: exactly one of backupName or location must be set")]
    InvalidRestoreSource,

    /// A `spec.config` entry that cannot be written to my.cnf safely.
    #[error("spec.config: {key:?}: {problem}")]
    InvalidConfig {
        /// The option name.
        key: String,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// `spec.backupOnDelete` without a destination to write the final backup to.
    #[error("spec.backupOnDelete: needs spec.backup, whose destination receives the final backup")]
    BackupOnDeleteWithoutBackup,
}

impl ValidationError {
    /// A CamelCase reason for a condition or an Event (`InvalidSchedule`,
    /// `InvalidVerificationSchedule`, `InvalidTimeZone`, `InvalidRetention`, `InvalidImage`,
    /// `InvalidDestination`, `InvalidRestoreSource`, `InvalidConfig`,
    /// `InvalidBackupOnDelete`).
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::InvalidSchedule(_) => "InvalidSchedule",
            ValidationError::InvalidVerificationSchedule(_) => "InvalidVerificationSchedule",
            ValidationError::InvalidTimeZone(_) => "InvalidTimeZone",
            ValidationError::InvalidRetention(_) => "InvalidRetention",
            ValidationError::InvalidImage { .. } => "InvalidImage",
            ValidationError::InvalidDestination { .. } => "InvalidDestination",
            ValidationError::InvalidRestoreSource => "InvalidRestoreSource",
            ValidationError::InvalidConfig { .. } => "InvalidConfig",
            ValidationError::BackupOnDeleteWithoutBackup => "InvalidBackupOnDelete",
        }
    }

    /// JSON path of the field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ValidationError::InvalidSchedule(_) => "spec.backup.schedule",
            ValidationError::InvalidVerificationSchedule(_) => "spec.backup.verification.schedule",
            ValidationError::InvalidTimeZone(_) => "spec.backup.timeZone",
            ValidationError::InvalidRetention(_) => "spec.backup.retention",
            ValidationError::InvalidImage { .. } => "spec.image",
            ValidationError::InvalidDestination { field } => field,
            ValidationError::InvalidRestoreSource => "spec.restoreFrom",
            ValidationError::InvalidConfig { .. } => "spec.config",
            ValidationError::BackupOnDeleteWithoutBackup => "spec.backupOnDelete",
        }
    }
}

fn check_destination(
    destination: &BackupDestination,
    field: &'static str,
    errors: &mut Vec<ValidationError>,
) {
    if destination.s3.is_some() == destination.pvc.is_some() {
        errors.push(ValidationError::InvalidDestination { field });
    }
}

impl MySQLInstanceSpec {
    /// Checks what the API server cannot: the schedule and time zone (CronJob
    /// semantics), the retention age, the image reference; and the one-of rules
    /// the schema also enforces. Returns every problem, not just the first.
    ///
    /// # Errors
    /// The list of problems, in field order.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        if let Some(image) = &self.image
            && let Err(problem) = check_image_reference(image)
        {
            errors.push(ValidationError::InvalidImage {
                image: image.clone(),
                problem,
            });
        }
        if let Some(backup) = &self.backup {
            let zone_ok = match backup.time_zone.as_deref().map(parse_time_zone) {
                Some(Err(e)) => {
                    errors.push(ValidationError::InvalidTimeZone(e));
                    false
                }
                _ => true,
            };
            if let Some(schedule) = &backup.schedule {
                // With a bad zone, still check the expression on its own.
                let zone = if zone_ok {
                    backup.time_zone.as_deref()
                } else {
                    None
                };
                if let Err(e) = Schedule::parse(schedule, zone) {
                    errors.push(ValidationError::InvalidSchedule(e));
                }
            }
            if let Some(schedule) = backup
                .verification
                .as_ref()
                .and_then(|v| v.schedule.as_ref())
            {
                let zone = if zone_ok {
                    backup.time_zone.as_deref()
                } else {
                    None
                };
                if let Err(e) = Schedule::parse(schedule, zone) {
                    errors.push(ValidationError::InvalidVerificationSchedule(e));
                }
            }
            check_destination(&backup.destination, "spec.backup.destination", &mut errors);
            if let Some(retention) = &backup.retention {
                if retention.keep_last == Some(0) {
                    errors.push(ValidationError::InvalidRetention(
                        RetentionError::ZeroKeepLast,
                    ));
                }
                if let Some(Err(e)) = retention.max_age.as_deref().map(parse_max_age) {
                    errors.push(ValidationError::InvalidRetention(e));
                }
            }
        }
        if let Some(restore) = &self.restore_from {
            if restore.backup_name.is_some() == restore.location.is_some() {
                errors.push(ValidationError::InvalidRestoreSource);
            }
            if let Some(location) = &restore.location {
                check_destination(
                    &location.destination,
                    "spec.restoreFrom.location.destination",
                    &mut errors,
                );
            }
        }
        for (key, value) in &self.config {
            if let Err(problem) = check_config_entry(key, value) {
                errors.push(ValidationError::InvalidConfig {
                    key: key.clone(),
                    problem,
                });
            }
        }
        if self.backup_on_delete && self.backup.is_none() {
            errors.push(ValidationError::BackupOnDeleteWithoutBackup);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The parsed verification schedule (`spec.backup.verification.schedule`),
    /// when one is configured and valid; `None` without one (verification
    /// after every backup, or none).
    ///
    /// # Errors
    /// The schedule's or time zone's [`ValidationError`].
    pub fn verification_schedule(&self) -> Result<Option<Schedule>, ValidationError> {
        let Some(backup) = &self.backup else {
            return Ok(None);
        };
        let Some(expression) = backup
            .verification
            .as_ref()
            .and_then(|v| v.schedule.as_ref())
        else {
            return Ok(None);
        };
        if let Some(zone) = &backup.time_zone {
            parse_time_zone(zone).map_err(ValidationError::InvalidTimeZone)?;
        }
        Schedule::parse(expression, backup.time_zone.as_deref())
            .map(Some)
            .map_err(ValidationError::InvalidVerificationSchedule)
    }

    /// The parsed schedule, when scheduled backups are configured and valid.
    /// `None` when there is no `spec.backup.schedule`.
    ///
    /// # Errors
    /// The schedule's or time zone's [`ValidationError`].
    pub fn schedule(&self) -> Result<Option<Schedule>, ValidationError> {
        let Some(backup) = &self.backup else {
            return Ok(None);
        };
        let Some(expression) = &backup.schedule else {
            return Ok(None);
        };
        if let Some(zone) = &backup.time_zone {
            parse_time_zone(zone).map_err(ValidationError::InvalidTimeZone)?;
        }
        Schedule::parse(expression, backup.time_zone.as_deref())
            .map(Some)
            .map_err(ValidationError::InvalidSchedule)
    }
}

/// A my.cnf option: the name must be an option name (no spaces, `=` or
/// brackets that would start another section), the value a single line (a
/// newline would let a value inject further options or sections).
fn check_config_entry(key: &str, value: &str) -> Result<(), &'static str> {
    let name_ok = key.len() <= 64
        && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(
            "option names are a letter followed by letters, digits, '_' or '-' (at most 64)",
        );
    }
    if value.contains(['\n', '\r']) {
        return Err("values must be a single line");
    }
    Ok(())
}

impl MySQLBackupSpec {
    /// Checks the destination override's one-of rule (also in the schema).
    ///
    /// # Errors
    /// The list of problems.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut errors = Vec::new();
        if let Some(destination) = &self.destination {
            check_destination(destination, "spec.destination", &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Checks that `image` is a well-formed container image reference:
/// `[registry[:port]/]path[:tag][@algorithm:digest]`, following the grammar of
/// the distribution reference (what container runtimes accept). It does not
/// check that the image exists.
///
/// # Errors
/// What is wrong, in a few words.
pub fn check_image_reference(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("it is empty".to_owned());
    }
    if image.chars().any(char::is_whitespace) {
        return Err("it contains whitespace".to_owned());
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A tag is a ':' after the last '/' (a ':' before it belongs to a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_owned());
    }
    let components: Vec<&str> = name.split('/').collect();
    let (domain, path) = match components.split_first() {
        Some((first, path))
            if !path.is_empty()
                && (first.contains('.') || first.contains(':') || *first == "localhost") =>
        {
            (Some(*first), path)
        }
        _ => (None, &components[..]),
    };
    if let Some(domain) = domain {
        check_domain(domain)?;
    }
    for component in path {
        check_path_component(component)?;
    }
    Ok(())
}

fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} is not algorithm:hex"));
    };
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest algorithm {algorithm:?} is not sha256, sha384 or sha512"
            ));
        }
    };
    if hex.len() != expected
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "a {algorithm} digest is {expected} lower-case hex digits"
        ));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err())
    {
        return Err(format!("registry port {port:?} is not a port number"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("registry {domain:?} is not a host name"))
    }
}

fn check_path_component(component: &str) -> Result<(), String> {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut valid = bytes.first().is_some_and(alnum) && bytes.last().is_some_and(alnum);
    let mut i = 0;
    while valid && i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
    }
    if valid {
        Ok(())
    } else {
        Err(format!(
            "repository path component {component:?} must be lower-case letters and digits separated by '.', '_', '__' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_images() {
        for image in [
            "mysql",
            "mysql:8.4",
            "mariadb:11.4.4-noble",
            "library/mysql:8.4",
            "docker.io/library/mysql:8.4",
            "registry.example.com:5000/db/mysql:8.4",
            "localhost/mysql",
            "localhost:5000/mysql:latest",
            "ghcr.io/some_org/my-sql__x.y/mysql:v1.0_rc-1",
            "mysql@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "mysql:8.4@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.COM/mysql",
        ] {
            assert_eq!(check_image_reference(image), Ok(()), "{image}");
        }
    }

    #[test]
    fn bad_images() {
        for (image, problem) in [
            ("", "it is empty"),
            ("my sql", "it contains whitespace"),
            ("MySQL:8.4", "repository path component \"MySQL\""),
            ("mysql:", "tag \"\""),
            ("mysql:-8", "tag \"-8\""),
            ("mysql:8.4:1", "repository path component \"mysql:8.4\""),
            (
                "mysql@sha256:abc",
                "a sha256 digest is 64 lower-case hex digits",
            ),
            ("mysql@md5:abc", "digest algorithm \"md5\""),
            ("mysql@", "digest \"\" is not algorithm:hex"),
            ("registry:99999/mysql", "registry port \"99999\""),
            ("bad_host.com/mysql", "registry \"bad_host.com\""),
            ("/mysql", "repository path component \"\""),
            ("db//mysql", "repository path component \"\""),
            ("db/mysql-", "repository path component \"mysql-\""),
            ("db/my..sql", "repository path component \"my..sql\""),
            ("db/my___sql", "repository path component \"my___sql\""),
        ] {
            let error = check_image_reference(image).expect_err(image);
            assert!(error.contains(problem), "{image}: {error}");
        }
    }
}
