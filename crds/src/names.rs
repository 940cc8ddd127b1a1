//! Names derived from times: `MySQLBackup` object names and the agent's folder
//! stamps. Both binaries must produce the same names, so they live here.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Longest backup object name. Object names may be 253 characters, but a
/// backup name is also used as a label value, in Job names and as a storage
/// folder, and 63 (a DNS-1123 label) fits all of them.
pub const MAX_BACKUP_NAME_LEN: usize = 63;

/// Time format of the suffix of a backup object name (`yyyymmdd-hhmmss`, UTC).
const OBJECT_STAMP: &str = "%Y%m%d-%H%M%S";
/// Time format of the agent's folder names outside Kubernetes (`yyyymmddThhmmssZ`).
const AGENT_STAMP: &str = "%Y%m%dT%H%M%SZ";

/// Default name of a backup of `instance` taken at `at`:
/// `<instance>-<UTC yyyymmdd-hhmmss>`.
///
/// The result is a valid DNS-1123 label (lower case, letters, digits and `-`,
/// at most 63 characters): the instance part is lower-cased, characters a
/// label cannot hold (such as the dots an object name may contain) become `-`,
/// and the instance part is shortened when needed. The time suffix is never
/// shortened, so names of one instance still sort by time.
pub fn backup_name(instance: &str, at: DateTime<Utc>) -> String {
    let stamp = at.format(OBJECT_STAMP).to_string();
    let budget = MAX_BACKUP_NAME_LEN - stamp.len() - 1;
    let mut prefix: String = instance
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(budget)
        .collect();
    // A label must start with an alphanumeric; the stamp supplies the end.
    let trimmed = prefix.trim_matches('-').len();
    if trimmed != prefix.len() {
        prefix = prefix.trim_matches('-').to_owned();
    }
    if prefix.is_empty() {
        stamp
    } else {
        format!("{prefix}-{stamp}")
    }
}

/// The agent's default folder name for a backup taken at `at` outside
/// Kubernetes: `yyyymmddThhmmssZ`.
pub fn agent_stamp(at: DateTime<Utc>) -> String {
    at.format(AGENT_STAMP).to_string()
}

/// Reads the time back from a name made by [`agent_stamp`] or
/// [`backup_name`] (the stamp at the end of the name). `None` when the name
/// does not end in a stamp, e.g. a user-chosen name.
pub fn parse_stamp(name: &str) -> Option<DateTime<Utc>> {
    // `yyyymmddThhmmssZ` is 16 characters, `yyyymmdd-hhmmss` 15.
    let try_parse = |len: usize, format: &str| {
        let start = name.len().checked_sub(len)?;
        let tail = name.get(start..)?;
        NaiveDateTime::parse_from_str(tail, format)
            .ok()
            .map(|t| t.and_utc())
    };
    try_parse(16, AGENT_STAMP).or_else(|| try_parse(15, OBJECT_STAMP))
}

/// Whether `name` is a DNS-1123 label (what Service names, label-safe object
/// names and our backup names must be).
pub fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 9, 4, 5, 6)
            .single()
            .expect("valid time")
    }

    #[test]
    fn default_backup_name() {
        assert_eq!(backup_name("orders", t()), "orders-20250309-040506");
        assert!(is_dns1123_label(&backup_name("orders", t())));
    }

    #[test]
    fn backup_name_is_a_label_for_any_instance_name() {
        assert_eq!(
            backup_name("Shop.Orders", t()),
            "shop-orders-20250309-040506"
        );
        let long = "a".repeat(253);
        let name = backup_name(&long, t());
        assert_eq!(name.len(), MAX_BACKUP_NAME_LEN);
        assert!(name.ends_with("-20250309-040506"));
        assert!(is_dns1123_label(&name));

        // Truncation that ends on a '-' must not leave "--" before the stamp.
        let awkward = format!("{}-tail", "b".repeat(46));
        let name = backup_name(&awkward, t());
        assert!(is_dns1123_label(&name), "{name}");
        assert!(!name.contains("--"), "{name}");
        assert_eq!(backup_name("---", t()), "20250309-040506");
    }

    #[test]
    fn stamps() {
        assert_eq!(agent_stamp(t()), "20250309T040506Z");
        assert_eq!(parse_stamp("20250309T040506Z"), Some(t()));
        assert_eq!(parse_stamp("orders-20250309-040506"), Some(t()));
        assert_eq!(parse_stamp(&backup_name("orders", t())), Some(t()));
        assert_eq!(parse_stamp("nightly"), None);
        assert_eq!(parse_stamp(""), None);
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns1123_label("a"));
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("a-"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
