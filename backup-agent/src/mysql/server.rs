//! What differs between MySQL and MariaDB (and between their releases) for
//! the agent: how the global lock is taken and released, how the binary log
//! position is read, which databases are the server's own. Kept here, as
//! data, so every flavor's statements are unit-tested even though only
//! MariaDB can run on the test machines. The version itself is parsed by
//! [`keeper_crds::server_version`], which the operator uses too.

use keeper_crds::ServerVersion;
use keeper_crds::server_version::flavor_of;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::manifest::Flavor;

/// A server: what it says it is, and what that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `SELECT VERSION()`, verbatim (recorded in manifests, shown in messages).
    pub version: String,
    /// Flavor and release, parsed from the version and its comment.
    pub release: ServerVersion,
}

/// What both engines read from a server before they start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// Flavor and version.
    pub server: Server,
    /// `@@max_allowed_packet`: the largest statement it accepts.
    pub max_allowed_packet: u64,
}

/// Reads the server's version, its comment and `max_allowed_packet` in one
/// query. `None` when the server answers with no row.
pub async fn inspect(conn: &mut Conn) -> Result<Option<ServerFacts>, mysql_async::Error> {
    let row: Option<(String, String, u64)> = conn
        .query_first("SELECT VERSION(), @@version_comment, @@max_allowed_packet")
        .await?;
    Ok(
        row.map(|(version, comment, max_allowed_packet)| ServerFacts {
            server: Server::detect(&version, &comment),
            max_allowed_packet,
        }),
    )
}

/// How to read the binary log position under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionQuery {
    /// A statement whose first row has the file in column 0 and the position in column 1.
    BinlogStatus(&'static str),
}

impl Server {
    /// Parses `SELECT VERSION()` together with `@@version_comment` (MariaDB
    /// names itself in one or the other depending on the build). A version
    /// that names no release counts as the oldest server (0.0.0), so only
    /// statements every release knows are used.
    pub fn detect(version: &str, version_comment: &str) -> Server {
        let release = ServerVersion::parse(version, version_comment).unwrap_or(ServerVersion {
            flavor: flavor_of(version, version_comment),
            major: 0,
            minor: 0,
            patch: 0,
        });
        Server {
            version: version.to_owned(),
            release,
        }
    }

    /// MySQL or MariaDB.
    pub fn flavor(&self) -> Flavor {
        self.release.flavor
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        self.release.at_least(major, minor)
    }

    /// Statements that take the brief global lock under which every worker
    /// opens its snapshot. MariaDB's backup stages block commits without
    /// closing every open table (cheaper than FTWRL on a busy server);
    /// MySQL has no such stage, so it flushes first (so FTWRL waits less
    /// behind long statements) and then takes the read lock.
    pub fn lock_statements(&self) -> Vec<&'static str> {
        match self.flavor() {
            Flavor::Mariadb if self.at_least(10, 4) => {
                vec!["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"]
            }
            _ => vec!["FLUSH LOCAL TABLES", "FLUSH TABLES WITH READ LOCK"],
        }
    }

    pub fn unlock_statements(&self) -> Vec<&'static str> {
        match self.flavor() {
            Flavor::Mariadb if self.at_least(10, 4) => vec!["BACKUP STAGE END"],
            _ => vec!["UNLOCK TABLES"],
        }
    }

    /// On MySQL 8 `LOCK INSTANCE FOR BACKUP` keeps DDL out for the whole
    /// dump (it does not line up snapshots: the global lock still does). It
    /// needs BACKUP_ADMIN, so failing to take it only costs that protection.
    pub fn ddl_guard_statement(&self) -> Option<&'static str> {
        match self.flavor() {
            Flavor::Mysql if self.release.major >= 8 => Some("LOCK INSTANCE FOR BACKUP"),
            _ => None,
        }
    }

    /// The binary log file and position. MySQL 8.4 removed `SHOW MASTER STATUS`.
    pub fn position_query(&self) -> PositionQuery {
        match self.flavor() {
            Flavor::Mysql if self.at_least(8, 4) || self.release.major >= 9 => {
                PositionQuery::BinlogStatus("SHOW BINARY LOG STATUS")
            }
            _ => PositionQuery::BinlogStatus("SHOW MASTER STATUS"),
        }
    }

    /// The GTID set of everything in the snapshot.
    pub fn gtid_query(&self) -> &'static str {
        match self.flavor() {
            Flavor::Mariadb => "SELECT @@GLOBAL.gtid_binlog_pos",
            Flavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
        }
    }

    /// Without the global lock, a position that matches a lone snapshot:
    /// MariaDB reports it per transaction; MySQL has no equivalent.
    pub fn snapshot_position_query(&self) -> Option<&'static str> {
        match self.flavor() {
            Flavor::Mariadb => Some("SHOW STATUS LIKE 'binlog_snapshot_%'"),
            Flavor::Mysql => None,
        }
    }

    /// Session settings of every dump connection: UTC timestamps, utf8mb4
    /// text, and timeouts long enough for a worker whose streaming result
    /// waits while the writer drains earlier members.
    pub fn session_statements(&self) -> Vec<&'static str> {
        vec![
            "SET NAMES utf8mb4",
            "SET SESSION time_zone = '+00:00'",
            "SET SESSION sql_mode = ''",
            "SET SESSION net_write_timeout = 86400",
            "SET SESSION net_read_timeout = 86400",
            "SET SESSION wait_timeout = 86400",
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        ]
    }

    /// Databases that are never dumped: the server's own.
    pub fn system_databases(&self) -> &'static [&'static str] {
        &["mysql", "information_schema", "performance_schema", "sys"]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detects_flavors_and_versions() {
        let m = Server::detect("10.11.6-MariaDB-0+deb12u1-log", "Debian 12");
        assert_eq!(m.flavor(), Flavor::Mariadb);
        assert_eq!(m.version, "10.11.6-MariaDB-0+deb12u1-log");
        let r = m.release;
        assert_eq!((r.major, r.minor, r.patch), (10, 11, 6));
        let old = Server::detect("5.5.5-10.3.39-MariaDB", "");
        assert_eq!(old.flavor(), Flavor::Mariadb);
        assert_eq!((old.release.major, old.release.minor), (10, 3));
        let by_comment = Server::detect("11.4.2", "mariadb.org binary distribution");
        assert_eq!(by_comment.flavor(), Flavor::Mariadb);
        let my = Server::detect("8.4.3", "MySQL Community Server - GPL");
        assert_eq!(my.flavor(), Flavor::Mysql);
        let r = my.release;
        assert_eq!((r.major, r.minor, r.patch), (8, 4, 3));
    }

    #[test]
    fn an_unreadable_version_is_the_oldest_server() {
        let m = Server::detect("custom build", "MariaDB");
        assert_eq!(m.flavor(), Flavor::Mariadb);
        assert_eq!(
            m.lock_statements().last(),
            Some(&"FLUSH TABLES WITH READ LOCK")
        );
        assert_eq!(Server::detect("", "").ddl_guard_statement(), None);
    }

    #[test]
    fn mariadb_uses_backup_stages() {
        let m = Server::detect("10.11.6-MariaDB", "");
        assert_eq!(
            m.lock_statements(),
            ["BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"]
        );
        assert_eq!(m.unlock_statements(), ["BACKUP STAGE END"]);
        assert_eq!(m.ddl_guard_statement(), None);
        assert_eq!(m.gtid_query(), "SELECT @@GLOBAL.gtid_binlog_pos");
        assert_eq!(
            m.position_query(),
            PositionQuery::BinlogStatus("SHOW MASTER STATUS")
        );
        assert!(m.snapshot_position_query().is_some());
    }

    #[test]
    fn old_mariadb_falls_back_to_ftwrl() {
        let m = Server::detect("10.3.39-MariaDB", "");
        assert_eq!(
            m.lock_statements().last(),
            Some(&"FLUSH TABLES WITH READ LOCK")
        );
        assert_eq!(m.unlock_statements(), ["UNLOCK TABLES"]);
    }

    #[test]
    fn mysql_80_and_84_differ_in_the_position_statement() {
        let m80 = Server::detect("8.0.39", "MySQL Community Server - GPL");
        let m84 = Server::detect("8.4.3", "MySQL Community Server - GPL");
        let m9 = Server::detect("9.1.0", "MySQL Community Server - GPL");
        for m in [&m80, &m84, &m9] {
            assert_eq!(
                m.lock_statements(),
                ["FLUSH LOCAL TABLES", "FLUSH TABLES WITH READ LOCK"]
            );
            assert_eq!(m.unlock_statements(), ["UNLOCK TABLES"]);
            assert_eq!(m.ddl_guard_statement(), Some("LOCK INSTANCE FOR BACKUP"));
            assert_eq!(m.gtid_query(), "SELECT @@GLOBAL.gtid_executed");
            assert_eq!(m.snapshot_position_query(), None);
        }
        assert_eq!(
            m80.position_query(),
            PositionQuery::BinlogStatus("SHOW MASTER STATUS")
        );
        assert_eq!(
            m84.position_query(),
            PositionQuery::BinlogStatus("SHOW BINARY LOG STATUS")
        );
        assert_eq!(
            m9.position_query(),
            PositionQuery::BinlogStatus("SHOW BINARY LOG STATUS")
        );
    }

    #[test]
    fn mysql_57_has_no_instance_lock() {
        let m = Server::detect("5.7.44-log", "MySQL Community Server (GPL)");
        assert_eq!(m.ddl_guard_statement(), None);
    }
}
