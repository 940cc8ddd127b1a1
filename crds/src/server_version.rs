//! What `SELECT VERSION()` (and `@@version_comment`) say about a server: its
//! flavor and release. The one parser both binaries use: the operator to pick
//! the account statements a server knows, the agent to pick its lock and
//! position statements and to compare a backup's server with a restore target.

use crate::Flavor;

/// The prefix MariaDB 10.x adds to `VERSION()` on some builds and over
/// replication (`5.5.5-10.11.6-MariaDB`), so that old MySQL clients that
/// compare the first number accept it. Not part of the release.
const MARIADB_COMPAT_PREFIX: &str = "5.5.5-";

/// A server's flavor and release, parsed from `VERSION()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerVersion {
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// Major version (`10` of `10.11.6`).
    pub major: u32,
    /// Minor version (`11` of `10.11.6`).
    pub minor: u32,
    /// Patch version (`6` of `10.11.6`); `0` when the server prints none.
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `VERSION()` together with `@@version_comment` (pass `""` when
    /// it was not read): MariaDB names itself in one or the other depending
    /// on the build. `None` when the version does not start with
    /// `<major>.<minor>` (after MariaDB's `5.5.5-` prefix).
    pub fn parse(version: &str, version_comment: &str) -> Option<ServerVersion> {
        let core = version
            .strip_prefix(MARIADB_COMPAT_PREFIX)
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or(version);
        let mut parts = core.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(ServerVersion {
            flavor: flavor_of(version, version_comment),
            major,
            minor,
            patch,
        })
    }

    /// Whether this release is `major.minor` or later.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// The flavor named by `VERSION()` or `@@version_comment`; MySQL unless
/// either says MariaDB.
pub fn flavor_of(version: &str, version_comment: &str) -> Flavor {
    let says_mariadb = |text: &str| text.to_ascii_lowercase().contains("mariadb");
    if says_mariadb(version) || says_mariadb(version_comment) {
        Flavor::Mariadb
    } else {
        Flavor::Mysql
    }
}

impl Flavor {
    /// The product's name as people write it, for messages.
    pub fn product_name(self) -> &'static str {
        match self {
            Flavor::Mysql => "MySQL",
            Flavor::Mariadb => "MariaDB",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(version: &str, comment: &str) -> ServerVersion {
        ServerVersion::parse(version, comment).expect("parses")
    }

    #[test]
    fn flavors_come_from_the_version_or_the_comment() {
        assert_eq!(parse("10.11.6-MariaDB-log", "").flavor, Flavor::Mariadb);
        assert_eq!(
            parse("11.4.2", "mariadb.org binary distribution").flavor,
            Flavor::Mariadb
        );
        assert_eq!(
            parse("8.4.3", "MySQL Community Server - GPL").flavor,
            Flavor::Mysql
        );
        assert_eq!(flavor_of("", "MariaDB Server"), Flavor::Mariadb);
        assert_eq!(flavor_of("8.0.39", ""), Flavor::Mysql);
    }

    #[test]
    fn releases_parse() {
        assert_eq!(
            parse("10.11.6-MariaDB-0+deb12u1-log", "Debian 12"),
            ServerVersion {
                flavor: Flavor::Mariadb,
                major: 10,
                minor: 11,
                patch: 6
            }
        );
        let my = parse("8.4.3", "");
        assert_eq!((my.major, my.minor, my.patch), (8, 4, 3));
        let no_patch = parse("9.1", "");
        assert_eq!((no_patch.major, no_patch.minor, no_patch.patch), (9, 1, 0));
        assert_eq!(parse("5.7.44-log", "").major, 5);
    }

    #[test]
    fn the_mariadb_compatibility_prefix_is_not_the_release() {
        let old = parse("5.5.5-10.3.39-MariaDB", "");
        assert_eq!(old.flavor, Flavor::Mariadb);
        assert_eq!((old.major, old.minor, old.patch), (10, 3, 39));
        // A MySQL 5.5.5 is still 5.5.5.
        for real in ["5.5.5", "5.5.5-log"] {
            let real = parse(real, "");
            assert_eq!((real.major, real.minor, real.patch), (5, 5, 5));
        }
    }

    #[test]
    fn text_that_is_no_release_is_refused() {
        assert_eq!(ServerVersion::parse("garbage", ""), None);
        assert_eq!(ServerVersion::parse("", "MariaDB"), None);
        assert_eq!(ServerVersion::parse("10", ""), None);
    }

    #[test]
    fn releases_compare_by_major_then_minor() {
        let v = parse("10.4.1-MariaDB", "");
        assert!(v.at_least(10, 4));
        assert!(v.at_least(5, 7));
        assert!(!v.at_least(10, 5));
        assert!(!v.at_least(11, 0));
    }

    #[test]
    fn product_names() {
        assert_eq!(Flavor::Mysql.product_name(), "MySQL");
        assert_eq!(Flavor::Mariadb.product_name(), "MariaDB");
    }
}
