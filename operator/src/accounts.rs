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
//! * **The application account** (`spec.user`, password in
//!   `<name>-credentials`) is created by the server image at first start,
//!   except when the instance restores (`spec.restoreFrom`, or a restore is
//!   recorded in `status.restoredFrom`): then the image is not told about it
//!   (an image-created account would be open the moment the server listens,
//!   before the restore) and the operator creates it over SQL, *locked*
//!   (`CREATE USER … ACCOUNT LOCK`), before the restore Job starts, and
//!   unlocks it once the restore has succeeded ([`app_account_statements`],
//!   [`ensure_app_account`]). Locking also ends the account's open sessions.
//!   This holds for every route to the server — the client Service, the
//!   headless Service, the pod's IP. `ACCOUNT LOCK` needs MariaDB 10.4 or
//!   MySQL 5.7 (5.7.6; the earlier 5.7 releases were milestones);
//!   [`supports_account_lock`] refuses older servers with a clear error.
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

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use keeper_crds::agent::BACKUP_USER;
use keeper_crds::{Flavor, ServerVersion};
use mysql_async::prelude::Queryable;
use thiserror::Error;

/// The administrative account: the operator ensures accounts as it, and
/// restore Jobs log in as it (see the module docs).
pub const ROOT_USER: &str = "root";

/// How long connecting to the server may take before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The global privileges of the dump account on `server` (see the module
/// docs): read-only, and nothing a restore needs.
pub fn backup_privileges(server: ServerVersion) -> Vec<&'static str> {
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
pub fn backup_user_statements(server: ServerVersion, password: &str) -> Vec<String> {
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
    /// The server cannot lock accounts (MariaDB before 10.4, MySQL before 5.7).
    #[error(
        "{host}:{port} runs {version}, which cannot lock the application account ({account}) while a restore runs; use MariaDB 10.4+ or MySQL 5.7+"
    )]
    NoAccountLock {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// What `VERSION()` returned.
        version: String,
        /// The account.
        account: String,
    },
    /// A statement failed (which one, by its purpose; not its text).
    #[error("{host}:{port}: {step} for {account}: {source}")]
    Statement {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The account the statement is about.
        account: String,
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

/// A root session on the server, with the server's kind.
struct RootSession {
    conn: mysql_async::Conn,
    server: ServerVersion,
    version: String,
    host: String,
    port: u16,
}

impl RootSession {
    /// Connects as `user` to `host:port` (bounded by [`CONNECT_TIMEOUT`]),
    /// sets a known `sql_mode` and reads the server's version.
    async fn open(
        host: &str,
        port: u16,
        user: &str,
        password: &str,
    ) -> Result<Self, AccountsError> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(host.to_owned())
            .tcp_port(port)
            .user(Some(user.to_owned()))
            .pass(Some(password.to_owned()))
            .prefer_socket(false);
        let connect_error = |source| AccountsError::Connect {
            host: host.to_owned(),
            port,
            source,
        };
        let mut conn =
            match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts)).await {
                Ok(result) => result.map_err(connect_error)?,
                Err(_) => {
                    return Err(connect_error(mysql_async::Error::Other(
                        format!("no connection within {}s", CONNECT_TIMEOUT.as_secs()).into(),
                    )));
                }
            };
        let failed = |step: &'static str| {
            move |source| AccountsError::Statement {
                host: host.to_owned(),
                port,
                account: user.to_owned(),
                step,
                source,
            }
        };
        // Known escaping rules for the quoted password (no NO_BACKSLASH_ESCAPES).
        conn.query_drop("SET SESSION sql_mode = ''")
            .await
            .map_err(failed("setting sql_mode"))?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(failed("reading the server version"))?;
        let version = version.unwrap_or_default();
        let server =
            ServerVersion::parse(&version, "").ok_or_else(|| AccountsError::UnknownServer {
                host: host.to_owned(),
                port,
                version: version.clone(),
            })?;
        Ok(Self {
            conn,
            server,
            version,
            host: host.to_owned(),
            port,
        })
    }

    fn failed<'a>(
        &'a self,
        step: &'static str,
        account: &'a str,
    ) -> impl Fn(mysql_async::Error) -> AccountsError + 'a {
        move |source| AccountsError::Statement {
            host: self.host.clone(),
            port: self.port,
            account: account.to_owned(),
            step,
            source,
        }
    }

    async fn run(
        &mut self,
        statement: &str,
        step: &'static str,
        account: &str,
    ) -> Result<(), AccountsError> {
        let result = self.conn.query_drop(statement).await;
        result.map_err(self.failed(step, account))
    }

    async fn close(self) {
        // A clean disconnect; an error here changes nothing that was done.
        let _ = self.conn.disconnect().await;
    }
}

/// Connects as root and ensures the backup user (see the module docs).
///
/// # Errors
/// [`AccountsError`] naming the server and the step that failed.
pub async fn ensure_backup_user(target: &AccountTarget) -> Result<(), AccountsError> {
    let mut session = RootSession::open(
        &target.host,
        target.port,
        &target.root_user,
        &target.root_password,
    )
    .await?;
    let steps = [
        "creating the account",
        "setting its password",
        "revoking its privileges",
        "granting",
    ];
    for (statement, step) in backup_user_statements(session.server, &target.backup_password)
        .into_iter()
        .zip(steps)
    {
        session.run(&statement, step, BACKUP_USER).await?;
    }
    session.close().await;
    Ok(())
}

/// Whether applications may log in as the application account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppAccess {
    /// Locked: a restore holds the server (logins fail with "account is
    /// locked"; open sessions are ended).
    Held,
    /// Unlocked.
    Open,
}

/// Whether `server` has `ACCOUNT LOCK` (MariaDB 10.4.2, MySQL 5.7.6; the
/// MySQL 5.7 releases before 5.7.9 were development milestones, so 5.7 counts).
pub fn supports_account_lock(server: ServerVersion) -> bool {
    match server.flavor {
        Flavor::Mariadb => server.at_least(10, 4),
        Flavor::Mysql => server.at_least(5, 7),
    }
}

/// `` `db` `` for a database-level grant, with `_` and `%` escaped: in a
/// `GRANT … ON db.*` they are wildcards (as the server images escape them).
fn grant_database(database: &str) -> String {
    let mut out = String::from("`");
    for c in database.chars() {
        match c {
            '`' => out.push_str("``"),
            '_' | '%' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// The statements that ensure the application account `user`@`%` with
/// `password` exists in state `access`, with all privileges on `database`
/// (what the server images grant). A new account is created in its final
/// state (`CREATE USER … ACCOUNT LOCK` when held), so it is never open for a
/// moment; an existing one keeps its password (the user may have changed
/// it) and only has its lock state set. Both flavors, MariaDB 10.4+ and
/// MySQL 5.7+, accept every statement.
///
/// They contain the password: never log them (the executor does not).
pub fn app_account_statements(
    user: &str,
    password: &str,
    database: Option<&str>,
    access: AppAccess,
) -> Vec<String> {
    let account = format!("{}@'%'", quote(user));
    let lock = match access {
        AppAccess::Held => "ACCOUNT LOCK",
        AppAccess::Open => "ACCOUNT UNLOCK",
    };
    let mut statements = vec![
        format!(
            "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {} {lock}",
            quote(password)
        ),
        format!("ALTER USER {account} {lock}"),
    ];
    if let Some(database) = database {
        statements.push(format!(
            "GRANT ALL PRIVILEGES ON {}.* TO {account}",
            grant_database(database)
        ));
    }
    statements
}

/// Where and how to ensure the application account.
#[derive(Clone)]
pub struct AppAccountTarget {
    /// Server host (the server pod's own address: the client Service does
    /// not route while a restore holds the server).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The administrative user (`root`).
    pub root_user: String,
    /// Its password.
    pub root_password: String,
    /// `spec.user`.
    pub user: String,
    /// Its password (from `<name>-credentials`), used only to create it.
    pub password: String,
    /// `spec.database`, on which it gets all privileges.
    pub database: Option<String>,
    /// Locked or not.
    pub access: AppAccess,
    /// `namespace/name` of the instance.
    pub instance: String,
    /// Identifies the server's data, the account and `access`: when it is
    /// what was last ensured for `instance`, nothing needs to be done.
    pub cache_key: String,
}

impl std::fmt::Debug for AppAccountTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppAccountTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Connects as root and ensures the application account in its state (see
/// [`app_account_statements`]); when held, also ends the account's open
/// sessions, which a lock alone leaves running.
///
/// # Errors
/// [`AccountsError`] naming the server and the step that failed;
/// [`AccountsError::NoAccountLock`] for a server without `ACCOUNT LOCK`.
pub async fn ensure_app_account(target: &AppAccountTarget) -> Result<(), AccountsError> {
    let mut session = RootSession::open(
        &target.host,
        target.port,
        &target.root_user,
        &target.root_password,
    )
    .await?;
    if !supports_account_lock(session.server) {
        let error = AccountsError::NoAccountLock {
            host: target.host.clone(),
            port: target.port,
            version: session.version.clone(),
            account: target.user.clone(),
        };
        session.close().await;
        return Err(error);
    }
    let steps = [
        "creating the account",
        "locking or unlocking it",
        "granting",
    ];
    let statements = app_account_statements(
        &target.user,
        &target.password,
        target.database.as_deref(),
        target.access,
    );
    for (statement, step) in statements.into_iter().zip(steps) {
        session.run(&statement, step, &target.user).await?;
    }
    if target.access == AppAccess::Held {
        let sessions: Vec<u64> = session
            .conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                (&target.user,),
            )
            .await
            .map_err(session.failed("listing its sessions", &target.user))?;
        for id in sessions {
            // Gone meanwhile is as good as ended.
            let _ = session
                .conn
                .query_drop(format!("KILL CONNECTION {id}"))
                .await;
        }
    }
    session.close().await;
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

    /// Ensures the application account described by `target`, locked or
    /// unlocked.
    fn ensure_app_account<'a>(
        &'a self,
        target: &'a AppAccountTarget,
    ) -> BoxFuture<'a, Result<(), AccountsError>>;
}

/// The real manager: connects over SQL, and remembers which
/// [`AccountTarget::cache_key`]s succeeded so an unchanged server is not
/// contacted on every reconcile (a restart of the operator ensures once more).
#[derive(Default)]
pub struct SqlAccountManager {
    done: Mutex<HashSet<String>>,
    /// Per instance, the [`AppAccountTarget::cache_key`] last ensured: only
    /// the *last* state counts (held, open, then held again must lock again).
    app_done: Mutex<HashMap<String, String>>,
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

    fn ensure_app_account<'a>(
        &'a self,
        target: &'a AppAccountTarget,
    ) -> BoxFuture<'a, Result<(), AccountsError>> {
        Box::pin(async move {
            let last = || {
                self.app_done
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            if last().get(&target.instance) == Some(&target.cache_key) {
                return Ok(());
            }
            // Forget the old state first: a failure must not leave it cached.
            last().remove(&target.instance);
            ensure_app_account(target).await?;
            last().insert(target.instance.clone(), target.cache_key.clone());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(version: &str) -> ServerVersion {
        ServerVersion::parse(version, "").expect("parses")
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            kind("11.4.4-MariaDB-log"),
            ServerVersion {
                flavor: Flavor::Mariadb,
                major: 11,
                minor: 4,
                patch: 4
            }
        );
        assert_eq!(kind("8.4.3").flavor, Flavor::Mysql);
        assert_eq!(kind("10.11.6-MariaDB-0+deb12u1").minor, 11);
        assert_eq!(ServerVersion::parse("garbage", ""), None);
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
    fn the_app_account_is_created_in_its_final_state() {
        let held = app_account_statements("app", "p'w", Some("shop_db"), AppAccess::Held);
        assert_eq!(
            held,
            [
                "CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'p''w' ACCOUNT LOCK",
                "ALTER USER 'app'@'%' ACCOUNT LOCK",
                "GRANT ALL PRIVILEGES ON `shop\\_db`.* TO 'app'@'%'",
            ]
        );
        let open = app_account_statements("o'neil", "pw", None, AppAccess::Open);
        assert_eq!(
            open,
            [
                "CREATE USER IF NOT EXISTS 'o''neil'@'%' IDENTIFIED BY 'pw' ACCOUNT UNLOCK",
                "ALTER USER 'o''neil'@'%' ACCOUNT UNLOCK",
            ]
        );
        assert_eq!(grant_database("a`b%c"), "`a``b\\%c`");
    }

    #[test]
    fn account_lock_needs_mariadb_10_4_or_mysql_5_7() {
        assert!(supports_account_lock(kind("10.4.1-MariaDB")));
        assert!(supports_account_lock(kind("11.4.4-MariaDB")));
        assert!(!supports_account_lock(kind("10.3.39-MariaDB")));
        assert!(supports_account_lock(kind("5.7.44")));
        assert!(supports_account_lock(kind("8.4.3")));
        assert!(!supports_account_lock(kind("5.6.51")));
        // MariaDB 10.x builds that print the 5.5.5- compatibility prefix are
        // MariaDB 10.x, not a 5.5 server.
        assert!(supports_account_lock(kind("5.5.5-10.4.1-MariaDB")));
        assert!(backup_privileges(kind("5.5.5-10.5.8-MariaDB")).contains(&"BINLOG MONITOR"));
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
        let app = AppAccountTarget {
            host: "h".into(),
            port: 3306,
            root_user: "root".into(),
            root_password: "rootpw".into(),
            user: "app".into(),
            password: "apppw".into(),
            database: None,
            access: AppAccess::Held,
            instance: "ns/x".into(),
            cache_key: "k".into(),
        };
        let printed = format!("{app:?}");
        assert!(!printed.contains("rootpw") && !printed.contains("apppw"));
    }
}
