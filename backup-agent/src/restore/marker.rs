//! The record of applied restores, kept in the restored server itself.
//!
//! A restore asked for by a *request* (`--request-id`, which the operator
//! sets to the fingerprint of `spec.restoreFrom`) runs at most once against
//! the same data. Whether it ran is remembered with the data, in the schema
//! [`MARKER_SCHEMA`], table [`MARKER_TABLE`]: one row per applied request
//! (its id, the backup's location and folder name, the dump's sha256 from the
//! manifest, when, and the agent's version). Kept in the server, the record
//! survives everything the data survives — deleting and re-creating the
//! `MySQLInstance` (the claim and the Secrets stay), a GitOps re-creation, a
//! cluster restored from a snapshot of its volumes — where a record in the
//! instance's status would be lost, and the restore (with `--overwrite`, its
//! drop) would run again.
//!
//! Rules:
//! - The record is checked before anything else: an applied request ends the
//!   run at once with "already restored" and success, without reading the
//!   backup, dropping or loading anything.
//! - A new request runs as any restore does, and is recorded in the same
//!   server only after the last member replayed: a restore that was killed or
//!   failed is not recorded, and its next attempt runs.
//! - The schema is Keeper's own: the dump engine never dumps it (even when
//!   named in `--databases`), a restore never drops it (`--overwrite` drops
//!   the backup's databases, never this one) and ignores it when it checks
//!   that the target is empty.
//! - The restore runs as root; the read-only dump account needs nothing more
//!   (it never reads the record, and the dump skips the schema by name).
//! - A restore without `--request-id` (by hand) is neither checked nor
//!   recorded: running it twice is what its user asked for.
//!
//! The SQL is plain DDL and DML that MySQL 5.7+, 8.x and MariaDB 10.x+ all
//! accept (`DATETIME(6)`, `utf8mb4_bin`, `UTC_TIMESTAMP(6)`).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::RestoreError;
use crate::mysql::Failure;

pub use crate::mysql::{MARKER_SCHEMA, MAX_REQUEST_ID, parse_request_id};
/// The table of applied restore requests.
pub const MARKER_TABLE: &str = "applied_restores";

/// A restore request already applied to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRestore {
    /// The request's id (`--request-id`).
    pub request_id: String,
    /// The backup folder's location (the `--from` URL).
    pub backup: String,
    /// The backup's name from its manifest.
    pub backup_name: String,
    /// The dump file's sha256, as its manifest records it.
    pub dump_sha256: String,
    /// When the restore finished, UTC, RFC 3339.
    pub restored_at: String,
    /// The agent version that restored it.
    pub agent_version: String,
}

impl AppliedRestore {
    /// The line a run prints (and reports) when it finds its request applied.
    pub fn already_restored_line(&self, target: &str) -> String {
        format!(
            "already restored: request {} ({}, dump sha256 {}) was restored into {target} at {} by keeper-agent {}; nothing was changed",
            self.request_id,
            self.backup,
            short(&self.dump_sha256),
            self.restored_at,
            self.agent_version
        )
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The statements that create the record's schema and table if missing.
pub fn create_statements() -> [String; 2] {
    [
        format!(
            "CREATE DATABASE IF NOT EXISTS `{MARKER_SCHEMA}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{MARKER_SCHEMA}`.`{MARKER_TABLE}` (\
             request_id VARCHAR({MAX_REQUEST_ID}) NOT NULL, \
             backup VARCHAR(2048) NOT NULL, \
             backup_name VARCHAR(255) NOT NULL, \
             dump_sha256 CHAR(64) NOT NULL, \
             restored_at DATETIME(6) NOT NULL, \
             agent_version VARCHAR(64) NOT NULL, \
             PRIMARY KEY (request_id)\
             ) ENGINE=InnoDB COMMENT='MySQL Keeper: restores applied to this data; never dumped, never dropped by a restore'"
        ),
    ]
}

/// MySQL and MariaDB: the schema or the table does not exist (yet).
const ER_BAD_DB_ERROR: u16 = 1049;
const ER_NO_SUCH_TABLE: u16 = 1146;

/// The record of `request_id` on the server behind `conn`, if it was applied.
pub async fn find(
    conn: &mut Conn,
    target: &str,
    request_id: &str,
) -> Result<Option<AppliedRestore>, RestoreError> {
    let query = format!(
        "SELECT backup, backup_name, dump_sha256, \
         DATE_FORMAT(restored_at, '%Y-%m-%dT%H:%i:%s.%fZ'), agent_version \
         FROM `{MARKER_SCHEMA}`.`{MARKER_TABLE}` WHERE request_id = ?"
    );
    let row: Option<(String, String, String, String, String)> =
        match conn.exec_first(query, (request_id,)).await {
            Ok(row) => row,
            Err(mysql_async::Error::Server(e))
                if e.code == ER_BAD_DB_ERROR || e.code == ER_NO_SUCH_TABLE =>
            {
                None
            }
            Err(e) => {
                return Err(RestoreError::Query {
                    target: target.to_owned(),
                    what: "reading the record of applied restores",
                    reason: Failure::of(&e),
                });
            }
        };
    Ok(row.map(
        |(backup, backup_name, dump_sha256, restored_at, agent_version)| AppliedRestore {
            request_id: request_id.to_owned(),
            backup,
            backup_name,
            dump_sha256,
            restored_at,
            agent_version,
        },
    ))
}

/// Records `request_id` as applied (creating the schema and table first).
/// Returns the record as stored.
pub async fn record(
    conn: &mut Conn,
    target: &str,
    applied: &AppliedRestore,
) -> Result<AppliedRestore, RestoreError> {
    let failed = |e: mysql_async::Error| RestoreError::MarkerNotRecorded {
        target: target.to_owned(),
        request: applied.request_id.clone(),
        reason: Failure::of(&e),
    };
    for statement in create_statements() {
        conn.query_drop(statement).await.map_err(failed)?;
    }
    conn.exec_drop(
        format!(
            "INSERT INTO `{MARKER_SCHEMA}`.`{MARKER_TABLE}` \
             (request_id, backup, backup_name, dump_sha256, restored_at, agent_version) \
             VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6), ?)"
        ),
        (
            &applied.request_id,
            &applied.backup,
            &applied.backup_name,
            &applied.dump_sha256,
            &applied.agent_version,
        ),
    )
    .await
    .map_err(failed)?;
    find(conn, target, &applied.request_id)
        .await?
        .ok_or_else(|| RestoreError::MarkerMissing {
            target: target.to_owned(),
            request: applied.request_id.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_keepers_own_and_keyed_by_request() {
        let [schema, table] = create_statements();
        assert!(schema.contains("IF NOT EXISTS `mysql_keeper`"), "{schema}");
        assert!(
            table.contains("`mysql_keeper`.`applied_restores`"),
            "{table}"
        );
        assert!(table.contains("PRIMARY KEY (request_id)"), "{table}");
    }

    #[test]
    fn the_line_says_nothing_changed() {
        let applied = AppliedRestore {
            request_id: "0123456789".into(),
            backup: "s3://b/orders-1".into(),
            backup_name: "orders-1".into(),
            dump_sha256: "ab".repeat(32),
            restored_at: "2026-01-02T03:04:05.000000Z".into(),
            agent_version: "0.1.0".into(),
        };
        let line = applied.already_restored_line("root@db:3306");
        assert!(
            line.starts_with("already restored: request 0123456789"),
            "{line}"
        );
        assert!(line.contains("s3://b/orders-1"), "{line}");
        assert!(line.ends_with("nothing was changed"), "{line}");
    }
}
