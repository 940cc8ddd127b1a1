//! Why a backup failed, one line each: what, on which object, what to do.

use crate::mysql::{ConnectionError, Failure};
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The connection settings cannot be used (no password, unreadable file).
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The server refused the login.
    #[error(
        "cannot log in to {target}: access denied; check the user and the password in its Secret (MYSQL_PWD or --password-file)"
    )]
    AccessDenied { target: String },
    /// The server cannot be reached at all.
    #[error(
        "cannot reach the server at {target}: {reason}; check the host, the port and that the server is running"
    )]
    Unreachable { target: String, reason: Failure },
    /// The connection broke during the dump.
    #[error(
        "lost the connection to {target} while {during}: {reason}; the backup was discarded, run it again"
    )]
    ConnectionLost {
        target: String,
        during: String,
        reason: Failure,
    },
    /// A statement failed; `during` names the step.
    #[error("{during} failed on {target}: {reason}")]
    Sql {
        target: String,
        during: String,
        reason: Failure,
    },
    /// The server showed no definition of an object it listed: the
    /// backup user may see the object but not its DDL.
    #[error(
        "the server returned no definition of {what} (the backup user may lack the privilege to see it); the backup was discarded"
    )]
    NoDefinition { what: String },
    /// The server answered `SELECT VERSION()` with no row.
    #[error(
        "{target} answered SELECT VERSION() with no row: it does not behave as a MySQL or MariaDB server"
    )]
    NoVersion { target: String },
    /// `--databases` names a database the server does not have.
    #[error("database `{name}` does not exist on {target} (it has: {available}); fix --databases")]
    UnknownDatabase {
        name: String,
        target: String,
        available: String,
    },
    /// The server holds only its own databases.
    #[error("no database to back up on {target}: it holds only system databases")]
    NothingToDump { target: String },
    /// Catalog text (DDL, a name) that is not valid UTF-8: converting it
    /// would change it, so it is not dumped at all.
    #[error("{what} is not valid UTF-8: a dump cannot carry it exactly; the backup was discarded")]
    NotUtf8 { what: String },
    /// One row needs a statement larger than the server accepts.
    #[error(
        "a row of `{database}`.`{table}` needs a {size}-byte statement, more than the server's max_allowed_packet ({max}); raise max_allowed_packet on the server and on restore targets"
    )]
    RowTooLarge {
        database: String,
        table: String,
        size: u64,
        max: u64,
    },
    /// `--compression-level` is outside the codec's levels.
    #[error("--compression-level: {0}")]
    Level(crate::compression::CompressionError),
    /// Compressing a member failed.
    #[error("compressing {member} failed: {source}; the backup was discarded")]
    Compress {
        /// `the header`, `` `db`.`table` ``…
        member: String,
        #[source]
        source: crate::compression::CompressionError,
    },
    /// A task of the dump (a worker, the lock holder) ended without saying
    /// why: it panicked or was cancelled.
    #[error("{task} stopped before it finished{}; the backup was discarded, run it again", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TaskStopped {
        task: &'static str,
        detail: Option<String>,
    },
    /// `--instance` or the Kubernetes owner is not valid.
    #[error(transparent)]
    Owner(#[from] crate::owner::OwnerError),
    /// Retention was asked for without an owner to act for.
    #[error(
        "--keep-last/--max-age need an owner: give --instance [NAMESPACE/]NAME (retention only ever acts on one owner's backups)"
    )]
    RetentionNeedsOwner,
    /// `--keep-last`/`--max-age` are not valid.
    #[error("invalid retention: {0}")]
    Retention(#[source] crate::repository::prune::PruneError),
    /// A backup of that name is already complete.
    #[error("the backup {location} already has a manifest; choose another --name")]
    AlreadyExists { location: String },
    /// Storage failed for the backup's folder.
    #[error("storage failed for the backup {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: StorageError,
    },
    /// The manifest cannot be written as JSON.
    #[error("cannot write the manifest of {location} as JSON: {source}; the dump was removed")]
    ManifestJson {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    /// The backup's name cannot be a folder name.
    #[error("the backup's name `{0}` is not a valid folder name (letters, digits, `-`, `_`, `.`)")]
    BadName(String),
}

/// Where a SQL error happened, to turn it into a [`BackupError`].
#[derive(Debug, Clone)]
pub struct SqlContext {
    pub target: String,
}

impl SqlContext {
    /// A failed step: lost connections and refused logins get their own
    /// messages; everything else names the step that failed.
    pub fn err(&self, during: impl Into<String>, e: mysql_async::Error) -> BackupError {
        let target = self.target.clone();
        let during = during.into();
        match Failure::of(&e) {
            Failure::AccessDenied => BackupError::AccessDenied { target },
            reason @ Failure::Network(_) => BackupError::ConnectionLost {
                target,
                during,
                reason,
            },
            reason @ (Failure::Server { .. } | Failure::Driver(_)) => BackupError::Sql {
                target,
                during,
                reason,
            },
        }
    }

    /// A failed login: access denied, or the server cannot be reached.
    pub fn connect_err(&self, e: mysql_async::Error) -> BackupError {
        match Failure::of(&e) {
            reason @ Failure::Network(_) => BackupError::Unreachable {
                target: self.target.clone(),
                reason,
            },
            _ => self.err("logging in", e),
        }
    }
}
