//! The MySQL accounts the operator owns: the backup user `keeper_backup`@`%`,
//! which backup and restore Jobs log in as, with only the privileges a dump
//! and a restore need.
//!
//! [`backup_user_statements`] is pure (the SQL for a server flavor and
//! version), [`ensure_backup_user`] runs it over a root connection. Both are
//! idempotent: `CREATE USER IF NOT EXISTS`, `ALTER USER … IDENTIFIED BY` (so
//! the password always matches the `<name>-backup` Secret) and `GRANT`.
//!
//! # Privileges
//!
//! Dump (a consistent snapshot with its binlog position):
//! `SELECT`, `SHOW VIEW`, `TRIGGER`, `EVENT`, `LOCK TABLES`, `RELOAD`
//! (`FLUSH TABLES WITH READ LOCK`; on MariaDB also what `BACKUP STAGE` needs),
//! `PROCESS`, and the binlog position: `BINLOG MONITOR` on MariaDB 10.5+
//! (`REPLICATION CLIENT` before), `REPLICATION CLIENT` plus `BACKUP_ADMIN`
//! (`LOCK INSTANCE FOR BACKUP`, `performance_schema.log_status`) on MySQL 8.
//!
//! Restore: `CREATE`, `ALTER`, `DROP` (`--overwrite` drops the backup's
//! databases), `INSERT`, `INDEX`, `CREATE VIEW`, `CREATE ROUTINE`,
//! `ALTER ROUTINE`, `EXECUTE`, `REFERENCES`, `CREATE TEMPORARY TABLES`.
//!
//! DEFINER: a dump keeps `DEFINER` clauses (DESIGN), and creating a view,
//! routine, trigger or event for another definer needs one more privilege.
//! Rather than `SUPER`, the operator grants the narrow one that exists for
//! exactly this: `SET USER` on MariaDB 10.5+, `SET_USER_ID` on MySQL 8.0 and
//! `SET_ANY_DEFINER` + `ALLOW_NONEXISTENT_DEFINER` on MySQL 8.2+. This is
//! unavoidable for a faithful restore, and it means the `<name>-backup`
//! Secret must be guarded like the root password: an object with a
//! `SQL SECURITY DEFINER` of a powerful account runs with that account's rights.
//!
//! Account management itself (`CREATE USER`, `GRANT OPTION`, `SUPER`,
//! `SHUTDOWN`, `FILE`, …) is never granted.
//!
//! Grants are only ever added: a privilege dropped from this list in a later
//! release is not revoked from existing accounts (revoking and re-granting
//! would make a running backup fail).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use keeper_crds::Flavor;
use keeper_crds::agent::BACKUP_USER;
use mysql_async::prelude::Queryable;
use thiserror::Error;

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

/// The global privileges of the backup user on `server` (see the module docs).
pub fn backup_privileges(server: ServerKind) -> Vec<&'static str> {
    let mut privileges = vec![
        // Dump.
        "SELECT",
        "SHOW VIEW",
        "TRIGGER",
        "EVENT",
        "LOCK TABLES",
        "RELOAD",
        "PROCESS",
        // Restore.
        "CREATE",
        "ALTER",
        "DROP",
        "INSERT",
        "INDEX",
        "CREATE VIEW",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
        "EXECUTE",
        "REFERENCES",
        "CREATE TEMPORARY TABLES",
    ];
    match server.flavor {
        Flavor::Mariadb if server.at_least(10, 5) => {
            privileges.extend(["BINLOG MONITOR", "SET USER"]);
        }
        // Before 10.5 the DEFINER of another account needs SUPER: not granted.
        Flavor::Mariadb => privileges.push("REPLICATION CLIENT"),
        Flavor::Mysql => {
            privileges.push("REPLICATION CLIENT");
            if server.major >= 8 {
                privileges.push("BACKUP_ADMIN");
                if server.at_least(8, 2) {
                    privileges.extend(["SET_ANY_DEFINER", "ALLOW_NONEXISTENT_DEFINER"]);
                } else {
                    privileges.push("SET_USER_ID");
                }
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

/// The statements that ensure the backup user on `server` with `password`.
///
/// They contain the password: never log them (the executor does not).
pub fn backup_user_statements(server: ServerKind, password: &str) -> Vec<String> {
    let account = format!("'{BACKUP_USER}'@'%'");
    let password = quote(password);
    vec![
        format!("CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {password}"),
        format!("ALTER USER {account} IDENTIFIED BY {password}"),
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
    let steps = ["creating the account", "setting its password", "granting"];
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
                "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS, CREATE, ALTER, DROP, INSERT, INDEX, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, REFERENCES, CREATE TEMPORARY TABLES, BINLOG MONITOR, SET USER ON *.* TO 'keeper_backup'@'%'",
            ]
        );
    }

    #[test]
    fn mysql_privileges_follow_the_version() {
        let p84 = backup_privileges(kind("8.4.3"));
        assert!(p84.contains(&"BACKUP_ADMIN"));
        assert!(p84.contains(&"SET_ANY_DEFINER"));
        assert!(!p84.contains(&"SET_USER_ID"));
        let p80 = backup_privileges(kind("8.0.40"));
        assert!(p80.contains(&"SET_USER_ID"));
        assert!(p80.contains(&"REPLICATION CLIENT"));
        let old_maria = backup_privileges(kind("10.4.30-MariaDB"));
        assert!(old_maria.contains(&"REPLICATION CLIENT"));
        assert!(!old_maria.contains(&"SET USER"));
    }

    #[test]
    fn nothing_administrative_is_granted() {
        for version in ["11.4.4-MariaDB", "10.4.1-MariaDB", "8.4.3", "8.0.36"] {
            let privileges = backup_privileges(kind(version));
            for forbidden in [
                "SUPER",
                "CREATE USER",
                "GRANT OPTION",
                "FILE",
                "SHUTDOWN",
                "ALL",
                "ALL PRIVILEGES",
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
