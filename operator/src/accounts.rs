//! The MySQL accounts the operator owns, and who logs in as what.
//!
//! * **Backups** (on-demand Jobs and the CronJob) log in as `keeper_backup`@`%`,
//!   a *read-only dump account* whose password is in the `<name>-backup`
//!   Secret. It can read every table and take a consistent snapshot with its
//!   binlog position, and nothing else: it cannot write, create, drop, grant
//!   or manage accounts. Backup Secrets travel (CronJobs, Jobs in every
//!   namespace, copies for monitoring), so a leaked backup Secret must not
//!   hand out the server.
//! * **Restores** log in as `root`, with `MYSQL_PWD` from the instance's root
//!   password Secret ([`keeper_crds::MySQLInstance::root_password_secret`]).
//!   A restore is root-equivalent by nature: it recreates any object under any
//!   `DEFINER` (DESIGN keeps `DEFINER` clauses), and the privilege that allows
//!   that (`SET USER` / `SET_USER_ID` / `SET_ANY_DEFINER`) lets its holder
//!   create a `SQL SECURITY DEFINER` routine as root and call it; on MariaDB
//!   global `INSERT` also covers the grant tables (no partial revokes). A
//!   "restore account" would therefore be root under another name, with a
//!   second Secret to guard; running as root says what it is.
//!
//! This deliberately departs from DESIGN's first wording ("a backup user with
//! only the privileges a dump and a restore need"): one account holding both
//! was root-equivalent, so the roles are split.
//!
//! [`backup_user_statements`] is pure (the SQL for a server flavor and
//! version), [`ensure_backup_user`] runs it over a root connection. Both are
//! idempotent: `CREATE USER IF NOT EXISTS`, `ALTER USER … IDENTIFIED BY` (so
//! the password always matches the `<name>-backup` Secret), then
//! `REVOKE ALL PRIVILEGES, GRANT OPTION` and `GRANT` of the dump set.
//!
//! # Privileges (dump only)
//!
//! `SELECT`, `SHOW VIEW`, `TRIGGER`, `EVENT`, `LOCK TABLES`, `RELOAD`
//! (`FLUSH TABLES WITH READ LOCK`; on MariaDB `BACKUP STAGE`), `PROCESS`, and
//! the binlog position: `BINLOG MONITOR` on MariaDB 10.5+ (`REPLICATION
//! CLIENT` before), `REPLICATION CLIENT` plus `BACKUP_ADMIN`
//! (`LOCK INSTANCE FOR BACKUP`, `performance_schema.log_status`) on MySQL 8.
//! The catalog lists schemas from `information_schema.SCHEMATA`, where global
//! `SELECT` shows them all: `SHOW DATABASES` is not needed.
//!
//! Known limitation: the grants are `ON *.*`, and on MariaDB (no partial
//! revokes) global `SELECT` includes the `mysql` schema, so the dump account
//! can read `mysql.global_priv` (password hashes). It cannot change anything
//! there. Per-database grants the operator keeps current would close this;
//! MySQL 8 with `partial_revokes` could `REVOKE SELECT ON mysql.*`.
//!
//! # Narrowing an existing account
//!
//! Earlier releases granted the restore privileges too (`INSERT`, `CREATE`,
//! `DROP`, …, `SET USER`). Every ensure therefore first revokes everything
//! (`REVOKE ALL PRIVILEGES, GRANT OPTION`, which also drops database- and
//! table-level grants) and then grants the dump set: the account ends up with
//! exactly the dump set whatever it had, with no `SHOW GRANTS` parsing. This
//! does not disturb a dump that is running: MySQL and MariaDB apply changes of
//! global privileges to *new* logins only, so connected sessions keep theirs.
//! Only a login that lands between the two statements (sent back to back on
//! one connection, when the operator starts or a password changes) would get
//! no privileges, and that backup run fails cleanly and is retried by the
//! next run.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use keeper_crds::Flavor;
use keeper_crds::agent::BACKUP_USER;
use mysql_async::prelude::Queryable;
use thiserror::Error;

/// The administrative account: the operator ensures accounts as it, and
/// restore Jobs log in as it (see the module docs).
pub const ROOT_USER: &str = "root";

/// How long connecting to the server may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server the statements are for: flavor and version, read from `VERSION()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerKind {
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ServerKind {
    /// Parses `SELECT VERSION()`: `8.4.3`, `11.4.4-MariaDB-log`, … `None`
    /// when it does not start with `<major>.<minor>`.
    pub fn parse(version: &str) -> Option<Self> {
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::Mariadb
        } else {
            Flavor::Mysql
        };
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self {
            flavor,
            major,
            minor,
        })
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// The global privileges of the dump account on `server` (see the module
/// docs): read-only, and nothing a restore needs.
pub fn backup_privileges(server: ServerKind) -> Vec<&'static str> {
    let mut privileges = vec![
        "SELECT",
        "SHOW VIEW",
        "TRIGGER",
        "EVENT",
        "LOCK TABLES",
        "RELOAD",
        "PROCESS",
    ];
    match server.flavor {
        Flavor::Mariadb if server.at_least(10, 5) => privileges.push("BINLOG MONITOR"),
        Flavor::Mariadb => privileges.push("REPLICATION CLIENT"),
        Flavor::Mysql => {
            privileges.push("REPLICATION CLIENT");
            if server.major >= 8 {
                privileges.push("BACKUP_ADMIN");
            }
        }
    }
    privileges
}

/// A string literal for `password` under `sql_mode = ''` (which the executor
/// sets): backslash and quote escaped, so any Secret value is safe.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The statements that ensure the backup user on `server` with `password`,
/// with exactly the dump privileges (the revoke narrows an account created
/// by an earlier release; see the module docs).
///
/// They contain the password: never log them (the executor does not).
pub fn backup_user_statements(server: ServerKind, password: &str) -> Vec<String> {
    let account = format!("'{BACKUP_USER}'@'%'");
    let password = quote(password);
    vec![
        format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"),
        format!("ALTER USER {account} IDENTIFIED BY {password}"),
        format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"),
        format!(
            "GRANT {} ON *.* TO {account}",
            backup_privileges(server).join(", ")
        ),
    ]
}

/// Why ensuring an account failed. Never holds a password.
#[derive(Debug, Error)]
pub enum AccountsError {
    /// The server could not be reached or refused the root login.
    #[error("connecting to {host}:{port} as root: {source}")]
    Connect {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server's version string was not understood.
    #[error("{host}:{port}: cannot tell the server flavor from VERSION() = {version:?}")]
    UnknownServer {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What `VERSION()` returned.
        version: String,
    },
    /// A statement failed (which one, by its purpose; not its text).
    #[error("{host}:{port}: {step} for {BACKUP_USER}: {source}")]
    Statement {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What the statement does.
        step: &'static str,
        /// The server's error.
        #[source]
        source: mysql_async::Error,
    },
}

/// Where and how to ensure the backup user.
#[derive(Clone)]
pub struct AccountTarget {
    /// Server host (the instance's client Service).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The administrative user (`root`).
    pub root_user: String,
    /// Its password.
    pub root_password: String,
    /// The backup user's password (from `<name>-backup`).
    pub backup_password: String,
    /// Identifies the server's data and the passwords: when it is unchanged
    /// since the last success, nothing needs to be done.
    pub cache_key: String,
}

impl std::fmt::Debug for AccountTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("root_user", &self.root_user)
            .finish_non_exhaustive()
    }
}

/// Connects as root and ensures the backup user (see the module docs).
///
/// # Errors
/// [`AccountsError`] naming the server and the step that failed.
pub async fn ensure_backup_user(target: &AccountTarget) -> Result<(), AccountsError> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(target.host.clone())
        .tcp_port(target.port)
        .user(Some(target.root_user.clone()))
        .pass(Some(target.root_password.clone()))
        .prefer_socket(false);
    let connect = mysql_async::Conn::new(opts);
    let connect_error = |source| AccountsError::Connect {
        host: target.host.clone(),
        port: target.port,
        source,
    };
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(result) => result.map_err(connect_error)?,
        Err(_) => {
            return Err(connect_error(mysql_async::Error::Other(
                format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()).into(),
            )));
        }
    };
    let statement_error = |step: &'static str| {
        move |source| AccountsError::Statement {
            host: target.host.clone(),
            port: target.port,
            step,
            source,
        }
    };
    // Known escaping rules for the quoted password (no NO_BACKSLASH_ESCAPES),
    // and no binary logging of a password hash change is needed either way.
    conn.query_drop("SET SESSION sql_mode = ''")
        .await
        .map_err(statement_error("setting sql_mode"))?;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(statement_error("reading the server version"))?;
    let version = version.unwrap_or_default();
    let server = ServerKind::parse(&version).ok_or_else(|| AccountsError::UnknownServer {
        host: target.host.clone(),
        port: target.port,
        version: version.clone(),
    })?;
    let steps = [
        "creating the account",
        "setting its password",
        "revoking its privileges",
        "granting",
    ];
    for (statement, step) in backup_user_statements(server, &target.backup_password)
        .into_iter()
        .zip(steps)
    {
        conn.query_drop(statement)
            .await
            .map_err(statement_error(step))?;
    }
    // A clean disconnect; an error here changes nothing that was done.
    let _ = conn.disconnect().await;
    Ok(())
}

/// Ensures accounts on a server; a trait so reconcile tests can run without
/// a server.
pub trait AccountManager: Send + Sync {
    /// Ensures the backup user described by `target`.
    fn ensure_backup_user<'a>(
        &'a self,
        target: &'a AccountTarget,
    ) -> BoxFuture<'a, Result<(), AccountsError>>;
}

/// The real manager: connects over SQL, and remembers which
/// [`AccountTarget::cache_key`]s succeeded so an unchanged server is not
/// contacted on every reconcile (a restart of the operator ensures once more).
#[derive(Default)]
pub struct SqlAccountManager {
    done: Mutex<HashSet<String>>,
}

impl AccountManager for SqlAccountManager {
    fn ensure_backup_user<'a>(
        &'a self,
        target: &'a AccountTarget,
    ) -> BoxFuture<'a, Result<(), AccountsError>> {
        Box::pin(async move {
            let known = self
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(&target.cache_key);
            if known {
                return Ok(());
            }
            ensure_backup_user(target).await?;
            self.done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(target.cache_key.clone());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(version: &str) -> ServerKind {
        ServerKind::parse(version).expect("parses")
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            kind("11.4.4-MariaDB-log"),
            ServerKind {
                flavor: Flavor::Mariadb,
                major: 11,
                minor: 4
            }
        );
        assert_eq!(kind("8.4.3").flavor, Flavor::Mysql);
        assert_eq!(kind("10.11.6-MariaDB-0+deb12u1").minor, 11);
        assert_eq!(ServerKind::parse("garbage"), None);
    }

    #[test]
    fn mariadb_statements() {
        let statements = backup_user_statements(kind("11.4.4-MariaDB"), "s3cr'et\\");
        assert_eq!(
            statements,
            [
                "CREATE USER IF NOT EXISTS 'keeper_backup'@'%' IDENTIFIED BY 's3cr''et\\\\'",
                "ALTER USER 'keeper_backup'@'%' IDENTIFIED BY 's3cr''et\\\\'",
                "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'keeper_backup'@'%'",
                "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS, BINLOG MONITOR ON *.* TO 'keeper_backup'@'%'",
            ]
        );
    }

    #[test]
    fn the_position_privilege_follows_the_server() {
        let p84 = backup_privileges(kind("8.4.3"));
        assert!(p84.contains(&"BACKUP_ADMIN"));
        assert!(p84.contains(&"REPLICATION CLIENT"));
        let p57 = backup_privileges(kind("5.7.44"));
        assert!(p57.contains(&"REPLICATION CLIENT"));
        assert!(!p57.contains(&"BACKUP_ADMIN"));
        let old_maria = backup_privileges(kind("10.4.30-MariaDB"));
        assert!(old_maria.contains(&"REPLICATION CLIENT"));
        assert!(!old_maria.contains(&"BINLOG MONITOR"));
        let maria = backup_privileges(kind("10.11.6-MariaDB"));
        assert!(maria.contains(&"BINLOG MONITOR"));
        assert!(!maria.contains(&"REPLICATION CLIENT"));
    }

    #[test]
    fn the_revoke_comes_before_the_grant() {
        for version in ["11.4.4-MariaDB", "10.4.1-MariaDB", "8.4.3", "8.0.36"] {
            let statements = backup_user_statements(kind(version), "pw");
            let revoke = statements
                .iter()
                .position(|s| s.starts_with("REVOKE ALL PRIVILEGES, GRANT OPTION FROM"));
            let grant = statements.iter().position(|s| s.starts_with("GRANT "));
            assert!(
                matches!((revoke, grant), (Some(r), Some(g)) if r < g),
                "{version}"
            );
            assert_eq!(grant, Some(statements.len() - 1), "{version}");
        }
    }

    #[test]
    fn only_dump_privileges_are_granted() {
        for version in [
            "11.4.4-MariaDB",
            "10.4.1-MariaDB",
            "8.4.3",
            "8.0.36",
            "5.7.44",
        ] {
            let privileges = backup_privileges(kind(version));
            for forbidden in [
                // Administration.
                "SUPER",
                "CREATE USER",
                "GRANT OPTION",
                "FILE",
                "SHUTDOWN",
                "ALL",
                "ALL PRIVILEGES",
                // Writes and DDL (a restore runs as root).
                "INSERT",
                "UPDATE",
                "DELETE",
                "CREATE",
                "DROP",
                "ALTER",
                "INDEX",
                "CREATE VIEW",
                "CREATE ROUTINE",
                "ALTER ROUTINE",
                "EXECUTE",
                "CREATE TEMPORARY TABLES",
                // Acting as another account.
                "SET USER",
                "SET_USER_ID",
                "SET_ANY_DEFINER",
                "ALLOW_NONEXISTENT_DEFINER",
            ] {
                assert!(!privileges.contains(&forbidden), "{version}: {forbidden}");
            }
        }
    }

    #[test]
    fn the_target_never_prints_passwords() {
        let target = AccountTarget {
            host: "h".into(),
            port: 3306,
            root_user: "root".into(),
            root_password: "rootpw".into(),
            backup_password: "backuppw".into(),
            cache_key: "k".into(),
        };
        let printed = format!("{target:?}");
        assert!(!printed.contains("rootpw") && !printed.contains("backuppw"));
    }
}
