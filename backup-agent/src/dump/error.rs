//! Why a backup failed, one line each: what, on which object, what to do.

use crate::message::one_line;
use crate::mysql::{ConnectionError, Failure};
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(
        "cannot log in to {target}: access denied; check the user and the password in its Secret (MYSQL_PWD or --password-file)"
    )]
    AccessDenied { target: String },
    #[error(
        "cannot reach the server at {target}: {reason}; check the host, the port and that the server is running"
    )]
    Unreachable { target: String, reason: String },
    #[error(
        "lost the connection to {target} while {during}: {reason}; the backup was discarded, run it again"
    )]
    ConnectionLost {
        target: String,
        during: String,
        reason: String,
    },
    #[error("{during} failed on {target}: {reason}")]
    Sql {
        target: String,
        during: String,
        reason: String,
    },
    #[error("database `{name}` does not exist on {target} (it has: {available}); fix --databases")]
    UnknownDatabase {
        name: String,
        target: String,
        available: String,
    },
    #[error("no database to back up on {target}: it holds only system databases")]
    NothingToDump { target: String },
    #[error(
        "a row of `{database}`.`{table}` needs a {size}-byte statement, more than the server's max_allowed_packet ({max}); raise max_allowed_packet on the server and on restore targets"
    )]
    RowTooLarge {
        database: String,
        table: String,
        size: u64,
        max: u64,
    },
    #[error(transparent)]
    Owner(#[from] crate::owner::OwnerError),
    #[error(
        "--keep-last/--max-age need an owner: give --instance [NAMESPACE/]NAME (retention only ever acts on one owner's backups)"
    )]
    RetentionNeedsOwner,
    #[error("invalid retention: {0}")]
    Retention(String),
    #[error("the backup {location} already has a manifest; choose another --name")]
    AlreadyExists { location: String },
    #[error("storage failed for the backup {location}: {source}")]
    Storage {
        location: String,
        #[source]
        source: StorageError,
    },
    #[error("the backup's name `{0}` is not a valid folder name (letters, digits, `-`, `_`, `.`)")]
    BadName(String),
    #[error("internal error in the dump engine: {0}; please report it")]
    Internal(String),
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
            Failure::Server {
                code,
                state,
                message,
            } => BackupError::Sql {
                target,
                during,
                reason: one_line(&format!("error {code} ({state}): {message}")),
            },
            Failure::Network(reason) => BackupError::ConnectionLost {
                target,
                during,
                reason,
            },
            Failure::Driver(reason) => BackupError::Sql {
                target,
                during,
                reason,
            },
        }
    }

    /// A failed login: access denied, or the server cannot be reached.
    pub fn connect_err(&self, e: mysql_async::Error) -> BackupError {
        match Failure::of(&e) {
            Failure::Network(reason) => BackupError::Unreachable {
                target: self.target.clone(),
                reason,
            },
            _ => self.err("logging in", e),
        }
    }
}
