//! The dump engine behind `keeper-agent backup`.
//!
//! A run: log in on a control connection, read the catalog, open `--parallel`
//! worker snapshots under a brief global lock ([`snapshot`]), then stream
//! the dump file (`dump.sql.gz`, `.zst` or plain `dump.sql`:
//! [`crate::compression`]) into the store while workers turn tables into
//! compressed members ([`data`]) and one writer appends them in a fixed
//! order ([`writer`]). The manifest is written only after the upload
//! finished; any failure aborts the upload and leaves neither the dump file
//! nor `manifest.json`.
//!
//! Member order (= file order = replay order):
//! 1. `header`: a comment naming the agent, server and time, and the session
//!    settings;
//! 2. `sequences` per database that has any: `CREATE DATABASE IF NOT
//!    EXISTS`, `CREATE SEQUENCE` + `SETVAL`; all before any table, since a
//!    column DEFAULT may call `NEXTVAL()` of a sequence of any database;
//! 3. `schema` per database: `CREATE DATABASE IF NOT EXISTS`, tables;
//! 4. `data`: non-transactional tables (MyISAM, Aria) first — read while the
//!    global lock is still held, so they are consistent with the snapshot —
//!    then the rest, database by database, table by table, chunk by chunk.
//!    Tables whose engine does not own its rows (MERGE, FEDERATED, SPIDER,
//!    CONNECT, BLACKHOLE) have no data members; the manifest says why
//!    ([`catalog::data_skipped`]);
//! 5. `routines` per database (functions, procedures);
//! 6. `views` in dependency order across databases (a member per run of one
//!    database's views), after the routines so a view may call a function
//!    of any database;
//! 7. `triggers` per database (after the data, so they do not fire on
//!    restored rows); 8. `events` per database.
//!
//! Every member starts with `SET NAMES utf8mb4`, `time_zone = '+00:00'`,
//! checks off (foreign keys, unique, and on MariaDB CHECK constraints), the
//! data `sql_mode` and (except the header) a `USE`, so
//! members replay alone on separate connections or in sequence through
//! `gunzip -c | mysql` (`zstd -dc | mysql`). Statements end with `;\n`; stored programs are
//! wrapped in `DELIMITER ;;` … `;;` / `DELIMITER ;`, each under its own
//! `sql_mode` and creation context (client character set, connection
//! collation, database collation; views too: see [`sql::CreationContext`]). In data members each statement is exactly one line. Binary
//! values are `_binary'…'` literals holding raw bytes, and text in character
//! sets other than utf8mb4, utf8mb3 and latin1 is written as its stored bytes
//! in hex with the set's introducer (see [`sql`]), so readers treat the SQL
//! as bytes, not UTF-8.

pub(crate) mod catalog;
pub(crate) mod data;
pub(crate) mod definitions;
pub(crate) mod error;
mod layout;
mod member;
mod progress;
mod snapshot;
pub mod sql;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

pub use error::BackupError;

use self::catalog::{Catalog, Database};
use self::data::{Counters, DataUnit, Limits};
use self::error::SqlContext;
use self::member::EncodedMember;
pub use self::progress::ProgressSink;
use self::writer::DumpWriter;
use crate::cli::BackupArgs;
use crate::compression::{Codec, Compression};
use crate::context::AgentContext;
use crate::digest::RowsDigest;
use crate::manifest::{
    self, DatabaseEntry, DefinitionDigest, IN_PROGRESS_FILE, InProgress, MANIFEST_FILE, Manifest,
    ServerInfo, TableKind,
};
use crate::mysql::{self, Server};
use crate::storage::{Location, S3Settings, StorageError, Store};

/// What a successful backup produced, for reporting (Kubernetes status).
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub manifest: Manifest,
    /// The backup's folder: `URL/NAME`.
    pub location: Location,
    /// What `--keep-last`/`--max-age` removed after the backup succeeded.
    pub retention: Option<crate::repository::prune::PruneOutcome>,
    /// Retention failed after a good backup: the backup stands (its exit
    /// code is 0), the failure is logged and reported here.
    pub retention_error: Option<String>,
}

/// Everything the dump engine ([`dump`]) works from, read from the command
/// line and the environment by [`backup`]; the engine reads nothing else.
/// Its `Debug` is written by hand: the server's options hold the password.
#[derive(Clone)]
pub struct DumpOptions {
    /// How to reach the server (with its password).
    pub server: mysql_async::Opts,
    /// `--databases`; empty: every database but the server's own.
    pub databases: Vec<String>,
    /// Worker connections (`--parallel`).
    pub parallel: usize,
    /// The codec and level of every member.
    pub codec: Codec,
    /// The location the backup folder goes below (`--to`).
    pub root: Location,
    /// How to reach S3, when the location is there.
    pub s3: S3Settings,
    /// The backup folder's name.
    pub name: String,
    /// Whose backup it is, recorded in the marker and the manifest.
    pub owner: Option<crate::owner::Owner>,
    /// This machine, recorded in the in-progress marker.
    pub host: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Record row and definition digests ([`crate::digest`]); off only to
    /// measure their cost.
    pub digests: bool,
    /// Where progress is reported besides the log.
    pub progress: Option<ProgressSink>,
}

impl std::fmt::Debug for DumpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            server,
            databases,
            parallel,
            codec,
            root,
            s3,
            name,
            owner,
            host,
            started_at,
            digests,
            progress,
        } = self;
        f.debug_struct("DumpOptions")
            .field("server", &mysql::describe(server))
            .field("databases", databases)
            .field("parallel", parallel)
            .field("codec", codec)
            .field("root", root)
            .field("s3", s3)
            .field("name", name)
            .field("owner", owner)
            .field("host", host)
            .field("started_at", started_at)
            .field("digests", digests)
            .field("progress", &progress.is_some())
            .finish()
    }
}

/// A complete backup: its manifest is in storage.
#[derive(Debug, Clone)]
pub struct Dumped {
    pub manifest: Manifest,
    /// The backup's folder: `URL/NAME`.
    pub location: Location,
    /// The store of the location the folder is in, for what runs after the
    /// dump (retention).
    pub root: Store,
}

/// Runs `keeper-agent backup`: reads the command line and the environment,
/// runs the dump engine, then (with `--keep-last`/`--max-age`) retention.
/// Returns only when the dump file and its manifest are both in storage.
pub async fn backup(args: BackupArgs, ctx: &AgentContext) -> Result<BackupOutcome, BackupError> {
    backup_with_progress(args, ctx, None).await
}

/// [`backup`], reporting progress to `progress` every few seconds.
pub async fn backup_with_progress(
    args: BackupArgs,
    ctx: &AgentContext,
    progress: Option<ProgressSink>,
) -> Result<BackupOutcome, BackupError> {
    let started_at = Utc::now();
    let name = backup_name(&args, ctx, started_at)?;
    let owner = crate::owner::Owner::of_run(args.owner.instance.as_deref(), ctx)?;
    // Retention settings are checked before anything is dumped.
    let policy = crate::repository::prune::policy_from_args(&args.retention)
        .map_err(BackupError::Retention)?;
    if policy.has_rule() && owner.is_none() {
        return Err(BackupError::RetentionNeedsOwner);
    }
    crate::compression::check_level(args.compression, args.compression_level)
        .map_err(BackupError::Level)?;
    let root = Location::parse(&args.to).map_err(|source| BackupError::Storage {
        location: args.to.clone(),
        source,
    })?;
    let options = DumpOptions {
        server: args.connect.opts(ctx)?,
        databases: args.databases,
        parallel: args.parallel,
        codec: Codec {
            compression: args.compression,
            level: args.compression_level,
        },
        root,
        s3: S3Settings {
            env: ctx.env.clone(),
            force_path_style: args.s3.s3_force_path_style,
            ca_bundle: args.s3.s3_ca_bundle.clone(),
        },
        name,
        owner,
        host: ctx.var("HOSTNAME").map_or_else(hostname, str::to_owned),
        started_at,
        digests: !args.no_digests,
        progress,
    };
    let Dumped {
        manifest,
        location,
        root,
    } = dump(&options).await?;
    let (retention, retention_error) = match options.owner.filter(|_| policy.has_rule()) {
        Some(owner) => {
            match crate::repository::prune::after_backup(&root, policy, owner, ctx).await {
                Ok(outcome) => (Some(outcome), None),
                Err(e) => {
                    tracing::warn!("the backup {location} is complete, but retention failed: {e}");
                    (None, Some(e.to_string()))
                }
            }
        }
        None => (None, None),
    };
    Ok(BackupOutcome {
        manifest,
        location,
        retention,
        retention_error,
    })
}

/// The dump engine: one consistent backup of `options.server` into
/// `options.root/options.name`. The server is checked first (a wrong
/// password or an unknown database touches no storage); the in-progress
/// marker lives exactly as long as the writing.
pub async fn dump(options: &DumpOptions) -> Result<Dumped, BackupError> {
    let location = options.root.join(&options.name);
    let storage_err = |source: StorageError| BackupError::Storage {
        location: location.to_string(),
        source,
    };
    let cx = SqlContext {
        target: mysql::describe(&options.server),
    };
    let prepared = prepare(options, &cx).await?;

    let root = Store::open(&options.root, &options.s3)
        .await
        .map_err(storage_err)?;
    let store = root.child(&options.name);
    if store
        .size(MANIFEST_FILE)
        .await
        .map_err(storage_err)?
        .is_some()
    {
        return Err(BackupError::AlreadyExists {
            location: location.to_string(),
        });
    }
    let marker = Marker::start(
        store.clone(),
        options.started_at,
        options.host.clone(),
        options.owner.clone(),
    )
    .await
    .map_err(storage_err)?;
    tracing::info!(
        backup = %location,
        server = %prepared.server.version,
        databases = prepared.databases.len(),
        "backup started"
    );
    // The one place the marker stops: after the writing, whatever its end.
    let written = write(options, &cx, prepared, &store).await;
    marker.stop().await;
    let manifest = written.map_err(|e| match e {
        Written::Storage(source) => storage_err(source),
        Written::Backup(e) => e,
    })?;
    tracing::info!(
        backup = %location,
        tables = manifest.table_count(),
        rows = manifest.row_count(),
        members = manifest.members.len(),
        compressed_bytes = manifest.file.size,
        uncompressed_bytes = manifest.uncompressed_bytes(),
        lock_held_ms = manifest.snapshot.lock_held_ms,
        seconds = (manifest.finished_at - manifest.started_at).num_milliseconds() as f64 / 1000.0,
        // Each one was logged when it was found; the manifest lists them.
        differences = manifest.differences.len(),
        "backup complete"
    );
    Ok(Dumped {
        manifest,
        location,
        root,
    })
}

/// Why [`write`] failed: a storage call of the backup folder itself, or
/// anything else.
enum Written {
    Storage(StorageError),
    Backup(BackupError),
}

/// Streams the dump into `store` and then its manifest. On failure nothing
/// that looks complete is left: the upload is aborted, or the dump removed
/// when its manifest cannot be written.
async fn write(
    options: &DumpOptions,
    cx: &SqlContext,
    prepared: Prepared,
    store: &Store,
) -> Result<Manifest, Written> {
    let dump_file = manifest::dump_file(options.codec.compression);
    let upload = store
        .create_upload(dump_file)
        .await
        .map_err(Written::Storage)?;
    let mut writer = DumpWriter::new(upload, dump_file);
    let parts = match run(options, cx, prepared, &mut writer).await {
        Ok(parts) => parts,
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!("could not remove the partial dump: {abort}");
            }
            return Err(Written::Backup(e));
        }
    };
    let file = writer.finish().await.map_err(Written::Storage)?;
    let mut manifest = parts.into_manifest(file, &options.name, options.codec.compression);
    manifest.owner = options.owner.clone();
    let json = match manifest.to_json() {
        Ok(j) => j,
        Err(e) => {
            let _ = store.delete(dump_file).await;
            return Err(Written::Backup(BackupError::ManifestJson {
                location: store.location().to_string(),
                source: e,
            }));
        }
    };
    if let Err(e) = store.put(MANIFEST_FILE, Bytes::from(json)).await {
        // Without its manifest the dump is not a backup: remove it.
        let _ = store.delete(dump_file).await;
        return Err(Written::Storage(e));
    }
    Ok(manifest)
}

/// `--name`, else the Kubernetes backup's name, else a UTC stamp (prefixed by
/// the instance inside Kubernetes, in the form of a valid object name).
fn backup_name(
    args: &BackupArgs,
    ctx: &AgentContext,
    now: DateTime<Utc>,
) -> Result<String, BackupError> {
    let name = if let Some(n) = &args.name {
        n.clone()
    } else if let Some(n) = ctx.var("KEEPER_BACKUP") {
        n.to_owned()
    } else if let Some(instance) = ctx.var("KEEPER_INSTANCE") {
        // The operator's rule: a valid object name however long the instance's.
        keeper_crds::names::backup_name(instance, now)
    } else {
        keeper_crds::names::agent_stamp(now)
    };
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(name)
    } else {
        Err(BackupError::BadName(name))
    }
}

/// What is known before any storage is touched.
struct Prepared {
    control: Conn,
    server: Server,
    max_allowed_packet: u64,
    databases: Vec<Database>,
    /// The definition digests of each database, by name.
    definitions: HashMap<String, Vec<DefinitionDigest>>,
}

async fn prepare(options: &DumpOptions, cx: &SqlContext) -> Result<Prepared, BackupError> {
    let mut control = mysql::connect(&options.server)
        .await
        .map_err(|e| cx.connect_err(e))?;
    let mysql::ServerFacts {
        server,
        max_allowed_packet: packet,
    } = mysql::inspect(&mut control)
        .await
        .map_err(|e| cx.err("reading the server version", e))?
        .ok_or_else(|| BackupError::NoVersion {
            target: cx.target.clone(),
        })?;
    for stmt in server.session_statements() {
        control
            .query_drop(stmt)
            .await
            .map_err(|e| cx.err("setting up the session", e))?;
    }
    let mut catalog = Catalog {
        conn: &mut control,
        cx,
    };
    let all = catalog.database_names().await?;
    // Keeper's record of applied restores is never dumped, even when named:
    // restored elsewhere it would claim restores that data never received.
    let is_marker = |d: &str| d == mysql::MARKER_SCHEMA;
    let user_dbs: Vec<String> = all
        .iter()
        .filter(|d| !server.system_databases().contains(&d.as_str()) && !is_marker(d))
        .cloned()
        .collect();
    let chosen: Vec<String> = if options.databases.is_empty() {
        user_dbs.clone()
    } else {
        let mut chosen = Vec::new();
        for d in &options.databases {
            let d = d.trim();
            if d.is_empty() || chosen.iter().any(|c| c == d) {
                continue;
            }
            if is_marker(d) {
                tracing::warn!(
                    database = d,
                    "not dumped: Keeper's own record of applied restores is never part of a backup"
                );
                continue;
            }
            if !all.iter().any(|a| a == d) {
                return Err(BackupError::UnknownDatabase {
                    name: d.to_owned(),
                    target: cx.target.clone(),
                    available: if user_dbs.is_empty() {
                        "no user databases".into()
                    } else {
                        user_dbs.join(", ")
                    },
                });
            }
            chosen.push(d.to_owned());
        }
        chosen
    };
    if chosen.is_empty() {
        return Err(BackupError::NothingToDump {
            target: cx.target.clone(),
        });
    }
    let mut databases = Vec::with_capacity(chosen.len());
    for d in &chosen {
        databases.push(catalog.database(d).await?);
    }
    let mut definitions = HashMap::new();
    for database in databases.iter().filter(|_| options.digests) {
        let digests = definitions::digests(&mut control, cx, database).await?;
        definitions.insert(database.name.clone(), digests);
    }
    Ok(Prepared {
        control,
        server,
        max_allowed_packet: packet,
        databases,
        definitions,
    })
}

/// What the run learned, for the manifest.
struct Parts {
    server: Server,
    started_at: DateTime<Utc>,
    snapshot: manifest::Snapshot,
    max_allowed_packet: u64,
    databases: Vec<DatabaseEntry>,
    members: Vec<manifest::Member>,
    largest_statement: u64,
    differences: Vec<manifest::Difference>,
}

impl Parts {
    fn into_manifest(
        self,
        file: writer::FileSummary,
        name: &str,
        compression: Compression,
    ) -> Manifest {
        Manifest {
            format_version: Manifest::needed_format_version(&self.members, compression),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            name: name.to_owned(),
            owner: None,
            server: ServerInfo {
                flavor: self.server.flavor(),
                version: self.server.version,
            },
            started_at: self.started_at,
            finished_at: Utc::now(),
            snapshot: self.snapshot,
            max_allowed_packet: self.max_allowed_packet,
            largest_statement: self.largest_statement,
            databases: self.databases,
            members: self.members,
            compression: Some(compression),
            file: manifest::FileInfo {
                name: manifest::dump_file(compression).to_owned(),
                size: file.size,
                sha256: file.sha256,
            },
            differences: self.differences,
        }
    }
}

/// A slot of the file, in order: a member known up front, or the members a
/// worker streams for one data unit.
enum Slot {
    Ready(EncodedMember),
    Data(
        mpsc::Receiver<Result<EncodedMember, BackupError>>,
        Arc<AtomicBool>,
    ),
}

struct Job {
    unit: DataUnit,
    tx: mpsc::Sender<Result<EncodedMember, BackupError>>,
    /// Set when the unit is complete, before its sender is dropped.
    done: Arc<AtomicBool>,
    /// Position among the data units, in file order.
    ordinal: usize,
}

async fn run(
    options: &DumpOptions,
    cx: &SqlContext,
    prepared: Prepared,
    writer: &mut DumpWriter,
) -> Result<Parts, BackupError> {
    let DumpOptions {
        server: opts,
        name,
        started_at,
        ..
    } = options;
    let Prepared {
        mut control,
        server,
        max_allowed_packet,
        databases,
        definitions,
    } = prepared;
    let codec = options.codec;
    let limits = Limits {
        chunk_bytes: data::DEFAULT_CHUNK_BYTES,
        statement_bytes: data::MAX_STATEMENT_BYTES
            .min(max_allowed_packet.saturating_sub(1024))
            .max(4096),
        max_allowed_packet,
        codec,
        digests: options.digests,
    };
    // Key ranges are planned before the snapshot: they are only boundaries
    // (open at both ends), so rows written meanwhile are still covered.
    let (units_locked, units_rest) =
        plan_units(&mut control, cx, &databases, limits.chunk_bytes).await?;

    let taken = snapshot::take(&mut control, opts, cx, &server, options.parallel).await?;
    let locked = taken.locked_at.is_some();
    let mut snapshot_info = taken.snapshot;

    let mut slots: Vec<Slot> = Vec::new();
    let mut jobs: VecDeque<Job> = VecDeque::new();
    for member in layout::leading_members(name, &server, started_at, &databases, codec)? {
        slots.push(Slot::Ready(member));
    }
    let locked_units = units_locked.len();
    for unit in units_locked.into_iter().chain(units_rest) {
        let (tx, rx) = mpsc::channel(1);
        let done = Arc::new(AtomicBool::new(false));
        slots.push(Slot::Data(rx, done.clone()));
        let ordinal = jobs.len();
        jobs.push_back(Job {
            unit,
            tx,
            done,
            ordinal,
        });
    }
    for member in layout::trailing_members(&databases, codec)? {
        slots.push(Slot::Ready(member));
    }

    // Workers claim units in file order, so the writer always waits on a
    // unit that a running worker holds: no deadlock. A worker that finished
    // its unit early leaves that unit's last member waiting for the writer;
    // without a bound it would race ahead and leave one such member per
    // unit (peak RSS grew from 38 to 62 MiB between 250k and 1M rows per
    // sysbench table). So a worker starts unit k only once the writer has
    // reached unit k - window + 1: at most `window` units are open, each
    // holding at most one finished member and one being built. The unit
    // the writer waits on is always inside the window, so this cannot
    // deadlock. One unit of slack beyond the workers keeps them busy when
    // units differ in size.
    let window = options.parallel.max(1) + 1;
    let (writer_at_tx, writer_at_rx) = tokio::sync::watch::channel(0usize);
    let counters = Arc::new(Counters::default());
    let jobs = Arc::new(Mutex::new(jobs));
    let (fail_tx, mut fail_rx) = mpsc::channel::<BackupError>(1);
    let (locked_done_tx, mut locked_done_rx) = mpsc::unbounded_channel::<()>();
    let mut tasks: JoinSet<()> = JoinSet::new();
    for (index, mut conn) in taken.workers.into_iter().enumerate() {
        let jobs = jobs.clone();
        let cx = cx.clone();
        let counters = counters.clone();
        let fail_tx = fail_tx.clone();
        let locked_done_tx = locked_done_tx.clone();
        let mut writer_at = writer_at_rx.clone();
        let mut scratch = data::Scratch::new(&limits).map_err(|source| BackupError::Compress {
            member: "the data".to_owned(),
            source,
        })?;
        tasks.spawn(async move {
            loop {
                let Some(job) = jobs.lock().await.pop_front() else {
                    break;
                };
                if writer_at
                    .wait_for(|&at| job.ordinal < at + window)
                    .await
                    .is_err()
                {
                    // The writer has gone: the run is over.
                    return;
                }
                let transactional = job.unit.table.transactional;
                let dumped = data::dump_unit(
                    &mut conn,
                    &cx,
                    &job.unit,
                    limits,
                    &job.tx,
                    &counters,
                    &mut scratch,
                )
                .await;
                match dumped {
                    Ok(()) => {
                        job.done.store(true, Ordering::Release);
                        drop(job.tx);
                        if !transactional {
                            let _ = locked_done_tx.send(());
                        }
                    }
                    Err(e) => {
                        let _ = fail_tx.try_send(e);
                        return;
                    }
                }
            }
            // Close the snapshot; errors are moot once the data is read.
            let _ = conn.query_drop("COMMIT").await;
            let _ = conn.disconnect().await;
            tracing::debug!(worker = index, "worker finished");
        });
    }
    drop(fail_tx);
    drop(locked_done_tx);

    // The lock is released once every non-transactional table is read.
    let locked_at = taken.locked_at;
    let release_server = server.clone();
    let release_cx = cx.clone();
    let release = tokio::spawn(async move {
        let mut held_ms = None;
        if let Some(at) = locked_at {
            for _ in 0..locked_units {
                if locked_done_rx.recv().await.is_none() {
                    return (
                        control,
                        Err(BackupError::TaskStopped {
                            task: "a dump worker",
                            detail: None,
                        }),
                    );
                }
            }
            match snapshot::release(&mut control, &release_cx, &release_server, at).await {
                Ok(ms) => held_ms = Some(ms),
                Err(e) => return (control, Err(e)),
            }
        }
        (control, Ok(held_ms))
    });

    let ticker = progress::Ticker::start(
        counters.clone(),
        writer.progress(),
        databases.iter().map(|d| d.tables.len()).sum(),
        options.progress.clone(),
    );
    let mut rows: HashMap<(String, String), RowsDigest> = HashMap::new();
    let outcome: Result<(), BackupError> = async {
        let mut data_slot = 0usize;
        for slot in slots {
            match slot {
                Slot::Ready(m) => writer.append(m).await.map_err(storage(name))?,
                Slot::Data(mut rx, done) => loop {
                    // Lets workers start units up to `window` ahead of this one.
                    writer_at_tx.send_if_modified(|at| {
                        let moved = *at != data_slot;
                        *at = data_slot;
                        moved
                    });
                    let next = tokio::select! {
                        biased;
                        m = rx.recv() => m,
                        Some(e) = fail_rx.recv() => return Err(e),
                    };
                    match next {
                        // A worker that fails reports on `fail_rx` and then
                        // drops the unit's sender, so a closed channel can
                        // mean "failed", not "done": never take a failed
                        // unit for a complete one. Only the worker's own
                        // `done` flag (set before it drops the sender) says
                        // the table is whole; a panicked worker sets neither.
                        None if done.load(Ordering::Acquire) => {
                            data_slot += 1;
                            break;
                        }
                        None => {
                            return Err(fail_rx.try_recv().unwrap_or_else(|_| {
                                BackupError::TaskStopped {
                                    task: "a dump worker",
                                    detail: Some("mid-table".to_owned()),
                                }
                            }));
                        }
                        Some(Err(e)) => return Err(e),
                        Some(Ok(m)) => {
                            if let (Some(d), Some(t)) = (&m.database, &m.table) {
                                rows.entry((d.clone(), t.clone()))
                                    .or_default()
                                    .merge(m.digest);
                            }
                            writer.append(m).await.map_err(storage(name))?;
                        }
                    }
                },
            }
        }
        Ok(())
    }
    .await;
    ticker.stop();
    if let Err(e) = outcome {
        tasks.abort_all();
        release.abort();
        return Err(e);
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            return Err(BackupError::TaskStopped {
                task: "a dump worker",
                detail: Some(e.to_string()),
            });
        }
    }
    let (control, held) = release.await.map_err(|e| BackupError::TaskStopped {
        task: "the task holding the global lock",
        detail: Some(e.to_string()),
    })?;
    snapshot_info.lock_held_ms = held?;
    let _ = control.disconnect().await;
    if locked {
        tracing::info!(
            lock_held_ms = snapshot_info.lock_held_ms,
            "global lock released"
        );
    }

    let mut entries = layout::database_entries(&databases, &rows, &definitions, locked);
    if !options.digests {
        for table in entries.iter_mut().flat_map(|d| d.tables.iter_mut()) {
            table.digest = None;
        }
    }
    let differences = databases
        .iter()
        .flat_map(|d| d.differences.iter().cloned())
        .collect();
    let (members, largest_statement) = writer.members();
    Ok(Parts {
        server,
        started_at: *started_at,
        snapshot: snapshot_info,
        max_allowed_packet,
        databases: entries,
        members,
        largest_statement,
        differences,
    })
}

/// The data units of `databases`, planned on the control connection before
/// the snapshot: non-transactional tables (read under the global lock)
/// first, then the rest; a large transactional table with an integer key is
/// cut into key ranges of about `chunk_bytes`.
async fn plan_units(
    control: &mut Conn,
    cx: &SqlContext,
    databases: &[Database],
    chunk_bytes: u64,
) -> Result<(Vec<DataUnit>, Vec<DataUnit>), BackupError> {
    let mut units_locked = Vec::new();
    let mut units_rest = Vec::new();
    for db in databases {
        let with_data = db
            .tables
            .iter()
            .filter(|t| t.kind == TableKind::Table && t.data_skipped.is_none());
        for t in with_data {
            let table = Arc::new(t.clone());
            let ranges = match &t.int_pk {
                Some(pk) if t.transactional && t.estimated_bytes > chunk_bytes => {
                    key_ranges(control, cx, t, pk, chunk_bytes).await?
                }
                _ => vec![None],
            };
            let target = if t.transactional {
                &mut units_rest
            } else {
                &mut units_locked
            };
            for range in ranges {
                target.push(DataUnit {
                    table: table.clone(),
                    range,
                });
            }
        }
    }
    Ok((units_locked, units_rest))
}

fn storage(name: &str) -> impl Fn(StorageError) -> BackupError + '_ {
    move |source| BackupError::Storage {
        location: name.to_owned(),
        source,
    }
}

async fn key_ranges(
    control: &mut Conn,
    cx: &SqlContext,
    t: &catalog::Table,
    pk: &str,
    chunk_bytes: u64,
) -> Result<Vec<Option<data::KeyRange>>, BackupError> {
    let pk = mysql::ident(pk);
    let q = format!(
        "SELECT CAST(MIN({pk}) AS CHAR), CAST(MAX({pk}) AS CHAR) FROM {}.{}",
        mysql::ident(&t.database),
        mysql::ident(&t.name)
    );
    let row: Option<(Option<String>, Option<String>)> =
        control.query_first(q).await.map_err(|e| {
            cx.err(
                format!("reading the key range of `{}`.`{}`", t.database, t.name),
                e,
            )
        })?;
    let bounds =
        row.and_then(|(lo, hi)| Some((lo?.parse::<i128>().ok()?, hi?.parse::<i128>().ok()?)));
    Ok(match bounds {
        Some((lo, hi)) => data::split_ranges(lo, hi, t.estimated_bytes, chunk_bytes)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    })
}

/// `in-progress.json`, refreshed every minute while the backup runs, so
/// cleanup can tell a live upload from an orphaned one.
struct Marker {
    store: Store,
    refresher: tokio::task::JoinHandle<()>,
}

impl Marker {
    async fn start(
        store: Store,
        started_at: DateTime<Utc>,
        host: String,
        owner: Option<crate::owner::Owner>,
    ) -> Result<Marker, StorageError> {
        let body = move || {
            let marker = InProgress {
                started_at,
                refreshed_at: Utc::now(),
                host: host.clone(),
                owner: owner.clone(),
            };
            Bytes::from(serde_json::to_vec(&marker).unwrap_or_default())
        };
        store.put(IN_PROGRESS_FILE, body()).await?;
        let refresh_store = store.clone();
        let refresher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = refresh_store.put(IN_PROGRESS_FILE, body()).await {
                    tracing::warn!("could not refresh {IN_PROGRESS_FILE}: {e}");
                }
            }
        });
        Ok(Marker { store, refresher })
    }

    async fn stop(mut self) {
        self.refresher.abort();
        let _ = (&mut self.refresher).await;
        if let Err(e) = self.store.delete(IN_PROGRESS_FILE).await {
            tracing::warn!("could not remove {IN_PROGRESS_FILE}: {e}");
        }
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        // Cancelled mid-run: stop refreshing so the marker ages out.
        self.refresher.abort();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args() -> BackupArgs {
        let cli = Cli::try_parse_from([
            "keeper-agent",
            "backup",
            "--host",
            "db",
            "--user",
            "root",
            "--to",
            "file:///backups",
        ])
        .expect("parses");
        match cli.command {
            Command::Backup(args) => args,
            _ => panic!("expected backup"),
        }
    }

    #[test]
    fn the_options_debug_output_holds_no_password() {
        let server = mysql_async::OptsBuilder::default()
            .ip_or_hostname("db")
            .user(Some("root"))
            .pass(Some("s3cr3t-pw"));
        let options = DumpOptions {
            server: server.into(),
            databases: vec![],
            parallel: 2,
            codec: Codec::DEFAULT,
            root: Location::parse("file:///backups").expect("location"),
            s3: S3Settings::default(),
            name: "b".into(),
            owner: None,
            host: "h".into(),
            started_at: DateTime::UNIX_EPOCH,
            digests: true,
            progress: None,
        };
        let printed = format!("{options:?}");
        assert!(!printed.contains("s3cr3t-pw"), "{printed}");
        assert!(printed.contains("root@db:3306"), "{printed}");
    }

    /// A scheduled run names its `MySQLBackup` object after the instance:
    /// the name must be one the API server accepts (at most 63 characters)
    /// and the same the operator would choose.
    #[test]
    fn a_scheduled_run_of_a_long_named_instance_gets_a_valid_object_name() {
        let instance = "orders-".repeat(10);
        let ctx = AgentContext {
            env: [("KEEPER_INSTANCE".to_owned(), instance.clone())].into(),
            kube: None,
        };
        let now = DateTime::parse_from_rfc3339("2026-12-07T03:04:05Z")
            .expect("time")
            .with_timezone(&Utc);
        let name = backup_name(&args(), &ctx, now).expect("a name");
        assert!(
            name.len() <= keeper_crds::names::MAX_BACKUP_NAME_LEN,
            "{name}"
        );
        assert_eq!(name, keeper_crds::names::backup_name(&instance, now));
        assert!(name.ends_with("-20261207-030405"), "{name}");

        let outside = AgentContext {
            env: HashMap::new(),
            kube: None,
        };
        assert_eq!(
            backup_name(&args(), &outside, now).expect("a name"),
            "20261207T030405Z"
        );
    }
}
