//! What a restore checks on the target before it executes anything, and the
//! one thing `--overwrite` changes before the replay.
//!
//! Rules (documented here because DESIGN leaves them to the restore):
//! - Flavor: a backup restores only into the flavor it came from. MySQL and
//!   MariaDB dumps differ in collations (`utf8mb4_0900_ai_ci`), JSON, sequences
//!   and system versioning, so a cross-flavor replay would fail halfway; the
//!   restore refuses it before touching the target. An older target version of
//!   the same flavor is allowed with a warning (the dump's DDL may use newer
//!   syntax, and then the failing statement is named).
//! - History: a backup whose manifest marks system-versioned tables as
//!   dumped with their history needs a MariaDB 10.11+ target
//!   (`system_versioning_insert_history`) whose `secure_timestamp` lets the
//!   restoring user set the session's clock; another is refused before
//!   anything changes, rather than failing at the first history row.
//! - `max_allowed_packet` of the target must hold the largest statement plus
//!   a small allowance for the packet header.
//! - Emptiness: the target must hold no table, view, sequence, routine or event
//!   in the backup's databases. Anything there would either collide with the
//!   replay or silently mix with the restored data.
//! - `--overwrite` drops the backup's databases (only those) that exist on the
//!   target, so each comes back exactly as in the backup; other databases are
//!   untouched. Before dropping anything the whole backup is verified (every
//!   member's sha256 and length, the file's sha256), so a corrupt backup never
//!   costs the data it was meant to replace.
//! - Keeper's record of applied restores ([`crate::mysql::MARKER_SCHEMA`]) is
//!   never one of "the backup's databases": a dump never holds it, and a
//!   manifest that names it anyway (made by hand or by another tool) still
//!   neither counts it for emptiness nor lets `--overwrite` drop it.

use keeper_crds::ServerVersion;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use super::RestoreError;
use crate::manifest::{Flavor, Manifest};
use crate::mysql::{self, Failure, ServerFacts, ident};

/// Room on top of the largest statement for the packet's own header.
const PACKET_ALLOWANCE: u64 = 1024;

/// Opens a connection, turning the common failures into one clear line.
pub async fn connect(opts: &Opts) -> Result<Conn, RestoreError> {
    mysql::connect(opts).await.map_err(|e| {
        let target = mysql::describe(opts);
        match Failure::of(&e) {
            Failure::AccessDenied => RestoreError::AccessDenied { target },
            reason => RestoreError::Connect { target, reason },
        }
    })
}

/// The target's flavor, version and `max_allowed_packet`.
pub async fn inspect(conn: &mut Conn, target: &str) -> Result<ServerFacts, RestoreError> {
    mysql::inspect(conn)
        .await
        .map_err(|e| RestoreError::Query {
            target: target.to_owned(),
            what: "reading the server's version and max_allowed_packet",
            reason: Failure::of(&e),
        })?
        .ok_or_else(|| RestoreError::NoServerFacts {
            target: target.to_owned(),
        })
}

/// Refuses a cross-flavor restore; returns a warning for an older target.
pub fn check_server(
    manifest: &Manifest,
    target: &ServerFacts,
    target_name: &str,
) -> Result<Option<String>, RestoreError> {
    let source = &manifest.server;
    let target = &target.server;
    let target_flavor = target.flavor();
    if source.flavor != target_flavor {
        return Err(RestoreError::WrongFlavor {
            target: target_name.to_owned(),
            source_server: format!("{} {}", source.flavor.product_name(), source.version),
            target_server: format!("{} {}", target_flavor.product_name(), target.version),
            wanted: source.flavor.product_name(),
        });
    }
    // The manifest records the flavor apart from the version: the version
    // alone says only the release.
    let release = |version: &str| ServerVersion::parse(version, "").map(|v| (v.major, v.minor));
    match (release(&source.version), release(&target.version)) {
        (Some(s), Some(t)) if t < s => Ok(Some(format!(
            "the target runs {} {}, older than the backup's {}: DDL the older server does not know will fail and be named",
            target_flavor.product_name(),
            target.version,
            source.version
        ))),
        _ => Ok(None),
    }
}

/// Refuses a backup that holds the history of system-versioned tables
/// (the manifest's `history`) when the target is a MariaDB that cannot
/// insert history rows: `system_versioning_insert_history` came with
/// MariaDB 10.11, and without it the first data member of such a table
/// fails mid-restore. Refused before anything is changed, naming the
/// tables. Manifests written before `history` existed say nothing, and
/// keep the server's own error.
///
/// History rows are written with their own row start and end, which the
/// server takes only from a session that may set its clock: a target whose
/// `secure_timestamp` forbids it to this user (`clock_settable` false, see
/// [`clock_settable`]) is refused too, before anything changes.
pub fn check_history(
    manifest: &Manifest,
    target: &ServerFacts,
    target_name: &str,
    clock_settable: bool,
) -> Result<(), RestoreError> {
    let tables = history_tables(manifest);
    let server = &target.server;
    // Another flavor is refused by check_server, with its own message.
    if tables.is_empty() || server.flavor() != Flavor::Mariadb {
        return Ok(());
    }
    if !server.release.at_least(10, 11) {
        return Err(RestoreError::HistoryUnsupported {
            target: target_name.to_owned(),
            target_version: server.version.clone(),
            tables: summarize(&tables, 5),
        });
    }
    if !clock_settable {
        return Err(RestoreError::HistoryClockLocked {
            target: target_name.to_owned(),
            tables: summarize(&tables, 5),
        });
    }
    Ok(())
}

/// `db.table` of every table the manifest says was dumped with its history.
pub fn history_tables(manifest: &Manifest) -> Vec<String> {
    manifest
        .databases
        .iter()
        .flat_map(|d| {
            d.tables
                .iter()
                .filter(|t| t.history)
                .map(move |t| format!("{}.{}", d.name, t.name))
        })
        .collect()
}

/// Whether this session may set its clock (`SET TIMESTAMP`), which
/// `secure_timestamp` may forbid: tried, not inferred from the setting, so
/// the answer is the server's own for this user. The clock is given back
/// at once; nothing else changes.
pub async fn clock_settable(conn: &mut Conn) -> bool {
    let settable = conn
        .query_drop("SET TIMESTAMP = UNIX_TIMESTAMP()")
        .await
        .is_ok();
    // A session whose clock could not be set has its own clock still.
    let _ = conn.query_drop("SET TIMESTAMP = DEFAULT").await;
    settable
}

pub fn check_packet(
    manifest: &Manifest,
    target: &ServerFacts,
    target_name: &str,
) -> Result<(), RestoreError> {
    let needed = manifest.largest_statement.saturating_add(PACKET_ALLOWANCE);
    if target.max_allowed_packet < needed {
        // Round up to whole MiB: the value people will type.
        let suggest = needed.div_ceil(1 << 20) << 20;
        return Err(RestoreError::PacketTooSmall {
            target: target_name.to_owned(),
            found: target.max_allowed_packet,
            largest: manifest.largest_statement,
            suggest,
        });
    }
    Ok(())
}

/// The backup's databases, in manifest order, never Keeper's own record
/// of applied restores.
pub fn databases(manifest: &Manifest) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let names = manifest
        .databases
        .iter()
        .map(|d| &d.name)
        .chain(manifest.members.iter().filter_map(|m| m.database.as_ref()));
    for db in names {
        if db != mysql::MARKER_SCHEMA && !out.contains(db) {
            out.push(db.clone());
        }
    }
    out
}

/// `db.name` of every table, view, sequence, routine and event already in
/// the given databases on the target, sorted.
pub async fn existing_objects(
    conn: &mut Conn,
    target: &str,
    databases: &[String],
) -> Result<Vec<String>, RestoreError> {
    let mut found = Vec::new();
    for db in databases {
        let names: Vec<String> = conn
            .exec(
                "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                 UNION ALL SELECT CONCAT(ROUTINE_SCHEMA, '.', ROUTINE_NAME) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? \
                 UNION ALL SELECT CONCAT(EVENT_SCHEMA, '.', EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?",
                (db, db, db),
            )
            .await
            .map_err(|e| RestoreError::Query {
                target: target.to_owned(),
                what: "listing what the target already holds",
                reason: Failure::of(&e),
            })?;
        found.extend(names);
    }
    found.sort();
    Ok(found)
}

/// `a.b, a.c, a.d, … and 12 more`.
pub fn summarize(names: &[String], shown: usize) -> String {
    let mut s = names
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > shown {
        s.push_str(&format!(", … and {} more", names.len() - shown));
    }
    s
}

/// Drops the backup's databases that exist on the target (`--overwrite`).
pub async fn drop_databases(
    conn: &mut Conn,
    target: &str,
    databases: &[String],
) -> Result<Vec<String>, RestoreError> {
    let mut dropped = Vec::new();
    for db in databases {
        let exists: Option<String> = conn
            .exec_first(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                (db,),
            )
            .await
            .map_err(|e| RestoreError::Query {
                target: target.to_owned(),
                what: "looking for the backup's databases",
                reason: Failure::of(&e),
            })?;
        if exists.is_none() {
            continue;
        }
        tracing::warn!(database = %db, "--overwrite: dropping the database before restoring it");
        conn.query_drop(format!("DROP DATABASE {}", ident(db)))
            .await
            .map_err(|e| RestoreError::Overwrite {
                target: target.to_owned(),
                database: db.clone(),
                reason: Failure::of(&e),
            })?;
        dropped.push(db.clone());
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DatabaseEntry, ServerInfo, TableEntry, TableKind};

    fn manifest(flavor: Flavor, version: &str, largest: u64) -> Manifest {
        let mut manifest = crate::manifest::sample(
            ServerInfo {
                flavor,
                version: version.into(),
            },
            vec![DatabaseEntry {
                name: "a`b".into(),
                charset: "utf8mb4".into(),
                collation: "utf8mb4_general_ci".into(),
                tables: vec![],
                definitions: Vec::new(),
            }],
        );
        manifest.largest_statement = largest;
        manifest
    }

    /// A target of `flavor` printing `version` (the flavor in the comment,
    /// as servers whose version does not name it do).
    fn target(flavor: Flavor, version: &str, packet: u64) -> ServerFacts {
        ServerFacts {
            server: mysql::Server::detect(version, flavor.product_name()),
            max_allowed_packet: packet,
        }
    }

    #[test]
    fn the_target_flavor_comes_from_version_or_comment() {
        let m = manifest(Flavor::Mariadb, "11.4.2", 100);
        let by_comment = target(Flavor::Mariadb, "11.4.2", 1 << 24);
        assert_eq!(check_server(&m, &by_comment, "t").expect("same"), None);
        let err = check_server(&m, &target(Flavor::Mysql, "11.4.2", 1 << 24), "t")
            .expect_err("cross-flavor");
        assert!(matches!(err, RestoreError::WrongFlavor { .. }), "{err}");
    }

    #[test]
    fn the_mariadb_compatibility_prefix_is_not_the_release() {
        // A MariaDB 10.11 that printed `5.5.5-10.11.6-MariaDB` made the
        // backup: a 10.6 target is older.
        let m = manifest(Flavor::Mariadb, "5.5.5-10.11.6-MariaDB", 100);
        let older = check_server(&m, &target(Flavor::Mariadb, "10.6.1-MariaDB", 1 << 24), "t")
            .expect("allowed");
        assert!(older.is_some_and(|w| w.contains("older")));
        // And a target printing the prefix is not a 5.5 server.
        let m = manifest(Flavor::Mariadb, "10.11.6-MariaDB", 100);
        let same = target(Flavor::Mariadb, "5.5.5-10.11.6-MariaDB", 1 << 24);
        assert_eq!(check_server(&m, &same, "t").expect("allowed"), None);
    }

    #[test]
    fn cross_flavor_is_refused() {
        let m = manifest(Flavor::Mysql, "8.4.3", 100);
        let err = check_server(
            &m,
            &target(Flavor::Mariadb, "10.11.6-MariaDB", 1 << 24),
            "t",
        )
        .expect_err("refused");
        let msg = err.to_string();
        assert!(msg.contains("MySQL 8.4.3"), "{msg}");
        assert!(msg.contains("MariaDB 10.11.6"), "{msg}");
    }

    #[test]
    fn older_target_warns_newer_is_fine() {
        let m = manifest(Flavor::Mariadb, "10.11.6-MariaDB", 100);
        let older = check_server(&m, &target(Flavor::Mariadb, "10.6.1-MariaDB", 1 << 24), "t")
            .expect("allowed");
        assert!(older.is_some_and(|w| w.contains("older")));
        let newer = check_server(&m, &target(Flavor::Mariadb, "11.4.2-MariaDB", 1 << 24), "t")
            .expect("allowed");
        assert_eq!(newer, None);
    }

    #[test]
    fn packet_check_names_both_values_and_the_fix() {
        let m = manifest(Flavor::Mariadb, "10.11.6", 5 << 20);
        let err = check_packet(&m, &target(Flavor::Mariadb, "10.11.6", 4 << 20), "t")
            .expect_err("too small");
        let msg = err.to_string();
        assert!(msg.contains(&(4u64 << 20).to_string()), "{msg}");
        assert!(msg.contains(&(5u64 << 20).to_string()), "{msg}");
        assert!(
            msg.contains("SET GLOBAL max_allowed_packet=6291456"),
            "{msg}"
        );
        check_packet(&m, &target(Flavor::Mariadb, "10.11.6", 6 << 20), "t").expect("fits");
    }

    #[test]
    fn summary_and_quoting() {
        let names: Vec<String> = (0..5).map(|i| format!("db.t{i}")).collect();
        assert_eq!(summarize(&names, 3), "db.t0, db.t1, db.t2, … and 2 more");
        assert_eq!(summarize(&names[..2], 3), "db.t0, db.t1");
        assert_eq!(databases(&manifest(Flavor::Mysql, "8.4", 1)), ["a`b"]);
        let mut with_marker = manifest(Flavor::Mysql, "8.4", 1);
        let mut marker = with_marker.databases[0].clone();
        marker.name = mysql::MARKER_SCHEMA.into();
        with_marker.databases.push(marker);
        assert_eq!(databases(&with_marker), ["a`b"], "never dropped");
    }

    fn with_tables(m: &mut Manifest, history: &[bool]) {
        m.databases[0].tables = history
            .iter()
            .enumerate()
            .map(|(i, &history)| TableEntry {
                name: format!("t{i}"),
                kind: TableKind::Table,
                engine: "InnoDB".into(),
                rows: 1,
                transactional: true,
                read_under_lock: false,
                data_skipped: None,
                history,
                digest: None,
                deferred_indexes: Vec::new(),
            })
            .collect();
    }

    #[test]
    fn history_needs_a_target_that_can_insert_it() {
        let mut m = manifest(Flavor::Mariadb, "11.4.2-MariaDB", 100);
        with_tables(&mut m, &[false, true, true]);
        let old = target(Flavor::Mariadb, "10.6.18-MariaDB-log", 1 << 24);
        let err = check_history(&m, &old, "t:3306", true).expect_err("refused");
        assert!(
            matches!(err, RestoreError::HistoryUnsupported { .. }),
            "{err}"
        );
        assert_eq!(
            err.failure_code(),
            keeper_crds::agent::FailureCode::PreflightFailed
        );
        let msg = err.to_string();
        for part in [
            "a`b.t1, a`b.t2",
            "10.6.18-MariaDB-log",
            "10.11",
            "nothing was changed",
        ] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
        // The compatibility prefix does not make 10.10 a 5.5.
        let prefixed = target(Flavor::Mariadb, "5.5.5-10.10.2-MariaDB", 1 << 24);
        assert!(check_history(&m, &prefixed, "t", true).is_err());
        for fine in [
            "10.11.0-MariaDB",
            "10.11.14-MariaDB-0+deb12u2",
            "11.4.2-MariaDB",
        ] {
            check_history(&m, &target(Flavor::Mariadb, fine, 1 << 24), "t", true).expect(fine);
        }
        // A release that could, with a clock this user may not set.
        let locked = check_history(
            &m,
            &target(Flavor::Mariadb, "11.4.2-MariaDB", 1 << 24),
            "t",
            false,
        )
        .expect_err("refused");
        assert!(
            matches!(locked, RestoreError::HistoryClockLocked { .. }),
            "{locked}"
        );
        assert_eq!(
            locked.failure_code(),
            keeper_crds::agent::FailureCode::PreflightFailed
        );
        let msg = locked.to_string();
        for part in ["a`b.t1, a`b.t2", "secure_timestamp", "nothing was changed"] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
        // Without history (or from a manifest that predates the field),
        // any release and any clock will do.
        with_tables(&mut m, &[false]);
        check_history(&m, &old, "t", false).expect("no history");
        assert!(history_tables(&m).is_empty());
    }
}
