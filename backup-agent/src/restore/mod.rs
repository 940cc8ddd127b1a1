//! The restore engine and the commands that read backups: `restore`,
//! `verify` and `list`.
//!
//! A restore reads `manifest.json`, checks the dump's size and the target
//! (flavor, `max_allowed_packet`, emptiness — see [`preflight`]) before it
//! executes anything, then replays members: each is fetched with a ranged
//! read and checked against its sha256 before it is decompressed, split into
//! statements ([`statements`]) and executed ([`replay`]).
//!
//! With `--request-id` a restore runs at most once against the same data:
//! the server itself records applied requests ([`marker`]), checked before
//! anything else and written after the last member.

pub mod indexes;
pub mod load_data;
pub mod marker;
pub mod preflight;
pub mod replay;
pub mod source;
pub mod statements;
pub mod verify;

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use keeper_crds::agent::FailureCode;

use crate::cli::{ListArgs, RestoreArgs, S3Args, VerifyArgs};
use crate::context::AgentContext;
use crate::manifest::{Difference, ManifestError, MemberKind};
use crate::mysql::{ConnectionError, Failure};
use crate::repository::{self, BackupListing};
use crate::storage::{Location, S3Settings, StorageError, Store};

pub use marker::{AppliedRestore, MARKER_SCHEMA};
pub use source::Backup;
pub use verify::{VerifyReport, verify_backup};

/// Every way reading or restoring a backup fails; each is one line naming
/// the object and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The connection settings cannot be used (no password, unreadable file).
    #[error(transparent)]
    Password(#[from] ConnectionError),
    /// Reading the backup's location failed.
    #[error("reading the backup at {backup}: {source}")]
    Storage {
        backup: String,
        #[source]
        source: StorageError,
    },
    /// The folder has no manifest: an unfinished or foreign backup.
    #[error(
        "{backup} has no manifest.json: it is incomplete or not a Keeper backup; {consequence}"
    )]
    NoManifest {
        backup: String,
        consequence: &'static str,
    },
    /// The manifest cannot be read, or is of a format this agent does not know.
    #[error("{backup}/manifest.json cannot be used: {source}")]
    BadManifest {
        backup: String,
        #[source]
        source: ManifestError,
    },
    /// The dump file's size is not the one in the manifest.
    #[error(
        "{backup}/{file} is {} bytes but the manifest says {expected}: the backup is truncated or damaged; nothing was changed",
        found.map_or_else(|| "missing".to_owned(), |f| f.to_string())
    )]
    FileSize {
        backup: String,
        file: &'static str,
        expected: u64,
        found: Option<u64>,
    },
    /// A member does not match its checksum, or does not decompress or
    /// split into statements.
    #[error(
        "{member} of {backup} is corrupt: {problem}; the backup cannot be trusted, restore another one"
    )]
    MemberCorrupt {
        backup: String,
        member: String,
        problem: String,
    },
    /// A whole file does not match its checksum.
    #[error("{backup}/{file} does not match the sha256 in its manifest: the backup is corrupt")]
    FileCorrupt { backup: String, file: &'static str },
    /// The target refused the login.
    #[error(
        "access denied for {target}: check the user and its password (MYSQL_PWD, --password-file or the Secret)"
    )]
    AccessDenied { target: String },
    /// The target cannot be reached, or the connection broke.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: Failure },
    /// A query of the restore's own (not one of the backup's) failed.
    #[error("{what} on {target} failed: {reason}")]
    Query {
        target: String,
        what: &'static str,
        reason: Failure,
    },
    /// The target answered the version query with no row.
    #[error(
        "{target} answered the query for its version and max_allowed_packet with no row: it does not behave as a MySQL or MariaDB server"
    )]
    NoServerFacts { target: String },
    /// The backup is of the other flavor (MySQL vs MariaDB).
    #[error(
        "the backup comes from {source_server} but {target} runs {target_server}: Keeper restores only into the same flavor; restore into a {wanted} server"
    )]
    WrongFlavor {
        target: String,
        source_server: String,
        target_server: String,
        wanted: &'static str,
    },
    /// The backup holds system-versioned tables with their history and the
    /// target cannot take history rows (MariaDB before 10.11 has no
    /// `system_versioning_insert_history`).
    #[error(
        "the backup holds the history of system-versioned tables ({tables}), but {target} runs MariaDB {target_version}, which cannot insert history rows (system_versioning_insert_history needs MariaDB 10.11 or later): restore into MariaDB 10.11 or later; nothing was changed"
    )]
    HistoryUnsupported {
        target: String,
        target_version: String,
        tables: String,
    },
    /// The backup holds system-versioned history and the target does not
    /// let the restoring user set the session's clock (`secure_timestamp`),
    /// which writing history rows needs.
    #[error(
        "the backup holds the history of system-versioned tables ({tables}), but {target} does not let this user set the session's clock (secure_timestamp), which writing history rows needs: restart it with secure_timestamp=NO (or SUPER, restoring as a user with SUPER) or restore elsewhere; nothing was changed"
    )]
    HistoryClockLocked { target: String, tables: String },
    /// The target's `max_allowed_packet` is smaller than the backup's largest statement.
    #[error(
        "{target} has max_allowed_packet={found} but the backup's largest statement is {largest} bytes: run SET GLOBAL max_allowed_packet={suggest} (or set it in the server's config) and retry; nothing was restored"
    )]
    PacketTooSmall {
        target: String,
        found: u64,
        largest: u64,
        suggest: u64,
    },
    /// The target already holds objects of the backup's databases, and
    /// `--overwrite` was not given.
    #[error(
        "{target} already has {count} objects of the backup's databases ({names}); restore into an empty server or pass --overwrite; nothing was changed"
    )]
    NotEmpty {
        target: String,
        count: usize,
        names: String,
    },
    /// `--overwrite` could not drop a database.
    #[error("--overwrite could not drop database `{database}` on {target}: {reason}")]
    Overwrite {
        target: String,
        database: String,
        reason: Failure,
    },
    /// The backup was loaded, but its request could not be recorded as applied.
    #[error(
        "the backup was restored into {target} but recording request {request} as applied failed ({reason}); the restore is reported failed, because a rerun of the request would not know it ran: check the server, then retry"
    )]
    MarkerNotRecorded {
        target: String,
        request: String,
        reason: Failure,
    },
    /// The record of the request was written but cannot be read back.
    #[error(
        "the backup was restored into {target} and request {request} was recorded as applied, but the record is not there when read back; the restore is reported failed: check the server's `mysql_keeper` schema, then retry"
    )]
    MarkerMissing { target: String, request: String },
    /// Adding back the secondary indexes a restore builds after the data failed.
    #[error(
        "building the secondary indexes of {table} after its rows (`{statement}`) failed: {reason}; the table holds its rows without those indexes: fix the cause and rerun the restore with --overwrite"
    )]
    IndexBuild {
        table: String,
        statement: String,
        reason: Failure,
    },
    /// A statement of the backup failed on the target.
    #[error("{member}: `{statement}` failed: {reason}")]
    Statement {
        member: String,
        statement: String,
        reason: Failure,
    },
    /// A code object names a `DEFINER` account the target does not have.
    #[error(
        "{member}: `{statement}` failed: the definer account does not exist on the target ({reason}); create that account, then retry"
    )]
    MissingDefiner {
        member: String,
        statement: String,
        /// The server's message.
        reason: String,
    },
    /// The restoring user may not create objects for another `DEFINER`.
    #[error(
        "{member}: `{statement}` failed: creating an object for another DEFINER needs more privilege ({reason}); restore as a user with SET USER (MariaDB) / SET_ANY_DEFINER or SET_USER_ID (MySQL), or as root"
    )]
    DefinerPrivilege {
        member: String,
        statement: String,
        /// The server's message.
        reason: String,
    },
}

impl RestoreError {
    /// The kind of failure the operator decides on: the checks that run
    /// before anything is changed (the backup's files and manifest, the
    /// target's flavor, `max_allowed_packet`, a non-empty target) changed
    /// nothing; every other error may have come mid-replay.
    pub fn failure_code(&self) -> FailureCode {
        match self {
            RestoreError::NoManifest { .. }
            | RestoreError::FileSize { .. }
            | RestoreError::WrongFlavor { .. }
            | RestoreError::HistoryUnsupported { .. }
            | RestoreError::HistoryClockLocked { .. }
            | RestoreError::PacketTooSmall { .. } => FailureCode::PreflightFailed,
            RestoreError::NotEmpty { .. } => FailureCode::TargetNotEmpty,
            RestoreError::Password(_)
            | RestoreError::Storage { .. }
            | RestoreError::BadManifest { .. }
            | RestoreError::MemberCorrupt { .. }
            | RestoreError::FileCorrupt { .. }
            | RestoreError::AccessDenied { .. }
            | RestoreError::Connect { .. }
            | RestoreError::Query { .. }
            | RestoreError::NoServerFacts { .. }
            | RestoreError::Overwrite { .. }
            | RestoreError::MarkerNotRecorded { .. }
            | RestoreError::MarkerMissing { .. }
            | RestoreError::Statement { .. }
            | RestoreError::IndexBuild { .. }
            | RestoreError::MissingDefiner { .. }
            | RestoreError::DefinerPrivilege { .. } => FailureCode::RunFailed,
        }
    }
}

/// How to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Connections replaying data members at once (at least 1).
    pub parallel: usize,
    /// Drop the backup's databases on the target first (after verifying the whole backup).
    pub overwrite: bool,
    /// Send rows by `LOAD DATA LOCAL INFILE` where that stores the same
    /// values ([`load_data`]); otherwise every row by the dump's INSERTs.
    pub load_data: bool,
}

/// Reported after every member, for Kubernetes status and progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    pub members_done: usize,
    pub members_total: usize,
    /// Compressed bytes of the members done.
    pub bytes_done: u64,
}

/// What a finished restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOutcome {
    pub backup: String,
    pub target: String,
    pub members: usize,
    pub statements: u64,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub tables: usize,
    pub rows: u64,
    /// Loads of rows by `LOAD DATA` ([`load_data`]; one per data member
    /// unless an INSERT in it had to stay one), and loads rolled back
    /// whose INSERTs ran instead.
    pub loads: u64,
    pub loads_rolled_back: u64,
    /// Databases `--overwrite` dropped before the replay.
    pub dropped_databases: Vec<String>,
    /// The backup's name from its manifest.
    pub backup_name: String,
    /// The dump file's sha256 from the manifest.
    pub dump_sha256: String,
    /// Server warnings on code objects (missing definers and the like) and preflight warnings.
    pub warnings: Vec<String>,
    /// What the backup's manifest says it could not bring back exactly.
    pub differences: Vec<Difference>,
    pub duration: Duration,
}

/// What `keeper-agent restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The backup was loaded (and, with a request id, recorded as applied).
    Loaded(RestoreOutcome),
    /// The request had already been applied to this server: nothing was
    /// read, dropped or loaded. The line says so.
    AlreadyApplied {
        /// The record found in the server.
        applied: AppliedRestore,
        /// What the run prints and reports.
        line: String,
    },
}

/// `keeper-agent restore`.
pub async fn restore(
    args: RestoreArgs,
    ctx: &AgentContext,
    progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<Restored, RestoreError> {
    let opts = args.connect.opts(ctx)?;
    let store = open_store(&args.from, &args.s3, ctx).await?;
    let options = RestoreOptions {
        parallel: args.parallel,
        overwrite: args.overwrite,
        load_data: !args.insert_only,
    };
    match &args.request_id {
        Some(request) => restore_request(&store, &opts, options, request, progress).await,
        None => Ok(Restored::Loaded(
            restore_backup(&store, &opts, options, progress).await?,
        )),
    }
}

impl Restored {
    /// What the command prints: what was restored and, when the backup
    /// could not bring everything back exactly, what differs.
    pub fn line(&self) -> String {
        match self {
            Restored::Loaded(outcome) => {
                let mut line = format!(
                    "restored {} into {}: {} tables, {} rows, {} members, {} statements in {:.1}s",
                    outcome.backup,
                    outcome.target,
                    outcome.tables,
                    outcome.rows,
                    outcome.members,
                    outcome.statements,
                    outcome.duration.as_secs_f64()
                );
                if let Some(note) = outcome.note() {
                    line.push_str("; ");
                    line.push_str(&note);
                }
                line
            }
            Restored::AlreadyApplied { line, .. } => line.clone(),
        }
    }

    /// What a succeeded restore reports as its status message (the
    /// operator shows it in the `Restored` condition): why nothing was
    /// changed, or what the restore could not bring back exactly; `None`
    /// when it is all there is to say that it succeeded.
    pub fn status_note(&self) -> Option<String> {
        match self {
            Restored::Loaded(outcome) => outcome.note(),
            Restored::AlreadyApplied { line, .. } => Some(line.clone()),
        }
    }
}

impl RestoreOutcome {
    /// What the summary adds to "restored …": what the backup could not
    /// bring back exactly, and the warnings the target gave (a definer
    /// account it does not have, an older server), each with its first
    /// entry; `None` when there is neither.
    pub fn note(&self) -> Option<String> {
        let warnings = self.warnings.split_first().map(|(first, rest)| {
            format!(
                "{} {} (all in the log), the first: {first}",
                self.warnings.len(),
                if rest.is_empty() {
                    "warning"
                } else {
                    "warnings"
                }
            )
        });
        let notes: Vec<String> = differences_note(&self.differences)
            .into_iter()
            .chain(warnings)
            .collect();
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// One line naming what a backup could not bring back exactly (from its
/// manifest), `None` when it brings back everything.
pub fn differences_note(differences: &[Difference]) -> Option<String> {
    let (first, rest) = differences.split_first()?;
    let others = match rest.len() {
        0 => String::new(),
        1 => "; and 1 more".to_owned(),
        n => format!("; and {n} more"),
    };
    Some(format!(
        "not exact: {} {} the source, listed in the backup's manifest (differences): {first}{others}",
        differences.len(),
        if differences.len() == 1 {
            "object differs from"
        } else {
            "objects differ from"
        },
    ))
}

/// Restores `store` into `target` as the request `request_id`, at most once
/// per server ([`marker`]): an applied request ends here with
/// [`Restored::AlreadyApplied`] before the backup is even opened (so
/// `overwrite` drops nothing); a new one is restored, then recorded in the
/// same server as its last step.
pub async fn restore_request(
    store: &Store,
    target: &mysql_async::Opts,
    options: RestoreOptions,
    request_id: &str,
    progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<Restored, RestoreError> {
    let target_name = crate::mysql::describe(target);
    let mut conn = preflight::connect(target).await?;
    if let Some(applied) = marker::find(&mut conn, &target_name, request_id).await? {
        let line = applied.already_restored_line(&target_name);
        tracing::info!(request = request_id, target = %target_name, "{line}");
        let _ = conn.disconnect().await;
        return Ok(Restored::AlreadyApplied { applied, line });
    }
    // The replay opens its own connections; this one waits for the record.
    let outcome = restore_backup(store, target, options, progress).await?;
    let applied = marker::AppliedRestore {
        request_id: request_id.to_owned(),
        backup: outcome.backup.clone(),
        backup_name: outcome.backup_name.clone(),
        dump_sha256: outcome.dump_sha256.clone(),
        restored_at: String::new(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // A connection idle through a long restore may have been closed.
    if conn.ping().await.is_err() {
        conn = preflight::connect(target).await?;
    }
    let stored = marker::record(&mut conn, &target_name, &applied).await?;
    tracing::info!(
        request = request_id,
        target = %target_name,
        restored_at = %stored.restored_at,
        "recorded the restore as applied"
    );
    let _ = conn.disconnect().await;
    Ok(Restored::Loaded(outcome))
}

/// Restores the backup folder `store` into the server `target`.
///
/// Nothing is executed until the manifest, the dump's size and the target
/// (flavor, `max_allowed_packet`, emptiness) check out; with `overwrite`,
/// nothing is dropped until every byte of the backup verifies.
pub async fn restore_backup(
    store: &Store,
    target: &mysql_async::Opts,
    options: RestoreOptions,
    progress: &(dyn Fn(RestoreProgress) + Send + Sync),
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    let backup = Backup::open(store, "nothing was restored").await?;
    backup.check_size().await?;
    let manifest = &backup.manifest;
    let target_name = crate::mysql::describe(target);

    let mut conn = preflight::connect(target).await?;
    let info = preflight::inspect(&mut conn, &target_name).await?;
    let mut warnings = Vec::new();
    if let Some(w) = preflight::check_server(manifest, &info, &target_name)? {
        tracing::warn!("{w}");
        warnings.push(w);
    }
    // Tried only when the backup needs it.
    let clock = preflight::history_tables(manifest).is_empty()
        || preflight::clock_settable(&mut conn).await;
    preflight::check_history(manifest, &info, &target_name, clock)?;
    preflight::check_packet(manifest, &info, &target_name)?;

    let databases = preflight::databases(manifest);
    let existing = preflight::existing_objects(&mut conn, &target_name, &databases).await?;
    let mut dropped = Vec::new();
    if !existing.is_empty() {
        if !options.overwrite {
            return Err(RestoreError::NotEmpty {
                target: target_name,
                count: existing.len(),
                names: preflight::summarize(&existing, 5),
            });
        }
        tracing::info!(
            backup = %backup.describe(),
            "--overwrite: verifying the whole backup before dropping anything"
        );
        verify::verify_opened(&backup).await?;
        dropped = preflight::drop_databases(&mut conn, &target_name, &databases).await?;
    }

    tracing::info!(
        backup = %backup.describe(),
        target = %target_name,
        members = manifest.members.len(),
        bytes = manifest.file.size,
        parallel = options.parallel,
        "restoring"
    );
    let tracker = replay::Tracker::new(manifest.members.len(), progress)
        .deferring(indexes::Deferral::plan(manifest));
    let (first, data, last) = phases(manifest);
    let result = async {
        replay::replay_in_order(&mut conn, &backup, &first, &tracker, &target_name).await?;
        let loading = if options.load_data {
            load_data::Loading::plan(&mut conn, &databases, &target_name).await?
        } else {
            load_data::Loading::off()
        };
        let _ = tracker.loading.set(loading);
        let workers = options.parallel.clamp(1, data.len().max(1));
        let mut conns = Vec::with_capacity(workers);
        conns.push(conn);
        for _ in 1..workers {
            conns.push(preflight::connect(target).await?);
        }
        replay::replay_parallel(&mut conns, &backup, &data, &tracker, &target_name).await?;
        replay::build_indexes(&mut conns, &tracker, &target_name).await?;
        let mut conns = conns.into_iter();
        let Some(mut conn) = conns.next() else {
            return Ok(());
        };
        replay::replay_in_order(&mut conn, &backup, &last, &tracker, &target_name).await?;
        for c in std::iter::once(conn).chain(conns) {
            // A failed goodbye does not undo a restore that completed.
            let _ = c.disconnect().await;
        }
        Ok::<(), RestoreError>(())
    }
    .await;
    if let Err(e) = result {
        let waiting: Vec<String> = tracker
            .deferral
            .pending()
            .iter()
            .map(indexes::PendingTable::describe)
            .collect();
        if !waiting.is_empty() {
            tracing::error!(
                target = %target_name,
                tables = %waiting.join(", "),
                "{} tables were created without secondary indexes that the restore builds after the data, and hold their rows without them",
                waiting.len()
            );
        }
        tracing::error!(
            target = %target_name,
            "the restore stopped: the target holds a partial restore of {}; fix the cause and rerun with --overwrite",
            databases.join(", ")
        );
        return Err(e);
    }

    warnings.extend(
        tracker
            .warnings
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default(),
    );
    let outcome = RestoreOutcome {
        backup: backup.describe(),
        target: target_name,
        members: manifest.members.len(),
        statements: tracker.statements(),
        compressed_bytes: manifest.file.size,
        uncompressed_bytes: manifest.uncompressed_bytes(),
        tables: manifest.table_count(),
        rows: manifest
            .members
            .iter()
            .filter(|m| m.kind == MemberKind::Data)
            .map(|m| m.rows)
            .sum(),
        loads: tracker
            .loading
            .get()
            .map_or(0, |l| l.loaded.load(std::sync::atomic::Ordering::Relaxed)),
        loads_rolled_back: tracker.loading.get().map_or(0, |l| {
            l.fell_back.load(std::sync::atomic::Ordering::Relaxed)
        }),
        dropped_databases: dropped,
        backup_name: manifest.name.clone(),
        dump_sha256: manifest.file.sha256.clone(),
        warnings,
        differences: manifest.differences.clone(),
        duration: started.elapsed(),
    };
    for difference in &outcome.differences {
        tracing::warn!(
            object = %difference.object,
            "not restored exactly: {}",
            difference.difference
        );
    }
    tracing::info!(
        backup = %outcome.backup,
        target = %outcome.target,
        tables = outcome.tables,
        rows = outcome.rows,
        members = outcome.members,
        statements = outcome.statements,
        loads = outcome.loads,
        loads_rolled_back = outcome.loads_rolled_back,
        seconds = format!("{:.1}", outcome.duration.as_secs_f64()),
        differences = outcome.differences.len(),
        "restore complete"
    );
    Ok(outcome)
}

/// Member indices of the three phases: header, sequences and schema (in order), data
/// (in parallel), and the code objects (in order, after all data).
///
/// Data members are interleaved across tables (every table's chunk 0, then
/// every chunk 1, …) rather than taken in file order. In file order the
/// parallel connections insert neighbouring key ranges of the same table at
/// once: each connection's rows land in front of the other's, so InnoDB
/// splits pages in the middle instead of appending, and the connections
/// contend for the same index pages. Interleaved, they load different tables
/// while there are several, and each table still receives its chunks in
/// key order. Measured (4 x 250k sysbench rows, 2 connections): the same
/// restore time, and tables as compact as the source's (228.9 MB of data
/// pages instead of 231-232 MB).
fn phases(manifest: &crate::manifest::Manifest) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut first, mut data, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for (i, m) in manifest.members.iter().enumerate() {
        match m.kind {
            MemberKind::Header | MemberKind::Sequences | MemberKind::Schema => first.push(i),
            MemberKind::Data => data.push(i),
            MemberKind::Routines
            | MemberKind::Views
            | MemberKind::Triggers
            | MemberKind::Events => last.push(i),
        }
    }
    // A stable sort: members of one chunk number keep their file order.
    data.sort_by_key(|&i| manifest.members[i].chunk.unwrap_or(0));
    (first, data, last)
}

pub(crate) async fn open_store(
    url: &str,
    s3: &S3Args,
    ctx: &AgentContext,
) -> Result<Store, RestoreError> {
    let storage = |source| RestoreError::Storage {
        backup: url.to_owned(),
        source,
    };
    let location = Location::parse(url).map_err(storage)?;
    let settings = S3Settings::from_ctx(ctx, s3);
    Store::open(&location, &settings).await.map_err(storage)
}

/// `keeper-agent verify`.
pub async fn verify(args: VerifyArgs, ctx: &AgentContext) -> Result<VerifyReport, RestoreError> {
    let store = open_store(&args.from, &args.s3, ctx).await?;
    verify_backup(&store).await
}

/// `keeper-agent list`: every backup, with (`--verify`) `ok` or the first
/// problem of each complete one.
pub async fn list(
    args: ListArgs,
    ctx: &AgentContext,
) -> Result<Vec<(BackupListing, Option<String>)>, RestoreError> {
    let store = open_store(&args.from, &args.s3, ctx).await?;
    let listings =
        repository::list_backups(&store)
            .await
            .map_err(|source| RestoreError::Storage {
                backup: store.location().to_string(),
                source,
            })?;
    let mut rows = Vec::with_capacity(listings.len());
    for l in &listings {
        let verified = if args.verify {
            Some(verify::verify_listing(&store, l).await)
        } else {
            None
        };
        rows.push((l.clone(), verified));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_before_any_change_say_so_by_their_code() {
        let target = || "127.0.0.1:3306".to_owned();
        let preflight = [
            RestoreError::NoManifest {
                backup: "b".into(),
                consequence: "nothing was restored",
            },
            RestoreError::FileSize {
                backup: "b".into(),
                file: "dump.sql.gz",
                expected: 10,
                found: None,
            },
            RestoreError::WrongFlavor {
                target: target(),
                source_server: "MySQL 8.0".into(),
                target_server: "MariaDB 11.4".into(),
                wanted: "MySQL",
            },
            RestoreError::PacketTooSmall {
                target: target(),
                found: 1,
                largest: 2,
                suggest: 4,
            },
            RestoreError::HistoryUnsupported {
                target: target(),
                target_version: "10.6.18-MariaDB".into(),
                tables: "shop.prices".into(),
            },
            RestoreError::HistoryClockLocked {
                target: target(),
                tables: "shop.prices".into(),
            },
        ];
        for error in preflight {
            assert_eq!(
                error.failure_code(),
                FailureCode::PreflightFailed,
                "{error}"
            );
        }
        let not_empty = RestoreError::NotEmpty {
            target: target(),
            count: 3,
            names: "sakila.actor".into(),
        };
        assert_eq!(not_empty.failure_code(), FailureCode::TargetNotEmpty);
        let mid_replay = [
            RestoreError::Statement {
                member: "data 3".into(),
                statement: "INSERT".into(),
                reason: Failure::Server {
                    code: 1021,
                    state: "HY000".into(),
                    message: "disk full; nothing was changed".into(),
                },
            },
            RestoreError::Overwrite {
                target: target(),
                database: "sakila".into(),
                reason: Failure::AccessDenied,
            },
        ];
        for error in mid_replay {
            // Words in a server's reason never make a failure look harmless.
            assert_eq!(error.failure_code(), FailureCode::RunFailed, "{error}");
        }
    }

    fn outcome(differences: Vec<Difference>) -> Restored {
        Restored::Loaded(RestoreOutcome {
            backup: "file:///b/x".into(),
            target: "t:3306".into(),
            members: 3,
            statements: 9,
            compressed_bytes: 1,
            uncompressed_bytes: 2,
            tables: 1,
            rows: 4,
            loads: 0,
            loads_rolled_back: 0,
            dropped_databases: vec![],
            backup_name: "x".into(),
            dump_sha256: "0".repeat(64),
            warnings: vec![],
            differences,
            duration: Duration::from_secs(1),
        })
    }

    /// Never a silent difference: a restore of a backup whose manifest
    /// lists differences says so in its line and its status message.
    #[test]
    fn the_summary_names_what_is_not_exact() {
        let exact = outcome(vec![]);
        assert!(!exact.line().contains("not exact"), "{}", exact.line());
        assert_eq!(exact.status_note(), None);

        let difference = |name: &str| Difference {
            object: format!("FUNCTION `shop`.`{name}`"),
            difference: "created under character_set_client sjis, restored under utf8mb4".into(),
        };
        let one = outcome(vec![difference("f")]);
        let note = one.status_note().expect("a note");
        assert_eq!(
            note,
            "not exact: 1 object differs from the source, listed in the backup's manifest (differences): FUNCTION `shop`.`f`: created under character_set_client sjis, restored under utf8mb4"
        );
        assert!(one.line().ends_with(&note), "{}", one.line());
        let mut warned = outcome(vec![difference("f")]);
        if let Restored::Loaded(o) = &mut warned {
            o.warnings = vec!["views 5: the definer `ghost`@`%` does not exist".into()];
        }
        let note = warned.status_note().expect("a note");
        assert!(
            note.ends_with("; 1 warning (all in the log), the first: views 5: the definer `ghost`@`%` does not exist"),
            "{note}"
        );
        let three = outcome(vec![difference("f"), difference("g"), difference("h")]);
        let note = three.status_note().expect("a note");
        assert!(note.starts_with("not exact: 3 objects differ"), "{note}");
        assert!(note.ends_with("; and 2 more"), "{note}");
    }
}
