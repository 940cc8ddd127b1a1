//! `keeper-agent verify --restore`: a backup proven restorable. The backup
//! is restored into a server that holds no user database (a throwaway one),
//! then every digest the dump recorded ([`crate::digest`]) is computed again
//! from what came back — by the same code the dump used: the same catalog
//! reading, the same SELECT and row encoding, the same definition queries —
//! and compared. Every difference is one line naming the table or object,
//! expected against found.
//!
//! This room sits above both engines: it calls the restore to load and the
//! dump's readers to read back; neither engine knows it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use crate::cli::VerifyArgs;
use crate::context::AgentContext;
use crate::digest::RowsDigest;
use crate::dump::catalog::{Catalog, Table};
use crate::dump::data::{DataUnit, encode_row, select_sql};
use crate::dump::definitions;
use crate::dump::error::{BackupError, SqlContext};
use crate::manifest::{
    DatabaseEntry, Difference, Manifest, VERIFICATION_FILE, VerificationRecord, VerificationResult,
};
use crate::mysql::{self, ConnectionError, ident};
use crate::restore::{self, Backup, RestoreError, RestoreOptions};
use crate::storage::Store;

/// Why a backup could not be proven restorable.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// `--restore` without a server to restore into.
    #[error(
        "verify --restore needs the server to restore into: --host (and --port) or --socket, and --user"
    )]
    NoTarget,
    /// The connection settings cannot be used.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The target holds user databases: verification only restores into an
    /// empty server, and changed nothing.
    #[error(
        "{target} holds user databases ({names}): verify --restore restores into an empty, throwaway server only; nothing was changed"
    )]
    TargetNotEmpty { target: String, names: String },
    /// Reading the backup or restoring it failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Reading the restored server back failed.
    #[error("reading the restored data back: {0}")]
    ReadBack(#[from] BackupError),
    /// The restored data differs from what the backup recorded.
    #[error("{backup} did not restore exactly: {count} difference(s), first: {first}")]
    Differs {
        backup: String,
        count: usize,
        first: String,
    },
}

/// What a verification compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofReport {
    pub backup: String,
    pub tables: usize,
    pub rows: u64,
    pub definitions: usize,
    /// False for backups written before digests: only row counts and the
    /// restore itself were checked.
    pub complete: bool,
    /// What the backup recorded it cannot bring back exactly, and that
    /// indeed differed.
    pub known: Vec<String>,
    /// One line per difference; empty when everything matched.
    pub differences: Vec<String>,
    pub duration: Duration,
}

impl ProofReport {
    /// The lines printed: one per difference or known difference, then the
    /// verdict.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.differences.clone();
        lines.extend(self.known.iter().map(|k| format!("known difference: {k}")));
        let checked = if self.complete {
            format!(
                "{} tables, {} rows and {} definitions match their digests",
                self.tables, self.rows, self.definitions
            )
        } else {
            format!(
                "{} tables and {} rows match their counts (partial check: the backup predates digests)",
                self.tables, self.rows
            )
        };
        if self.differences.is_empty() {
            lines.push(format!(
                "{} restored and verified in {:.1}s: {checked}",
                self.backup,
                self.duration.as_secs_f64()
            ));
        }
        lines
    }
}

/// `keeper-agent verify --restore`.
///
/// # Errors
/// [`ProofError::Differs`] when anything differs (after the lines were
/// printed by the caller from [`ProofReport::lines`] — see [`run`]); the
/// others when the proof could not be made.
pub async fn prove(args: &VerifyArgs, ctx: &AgentContext) -> Result<ProofReport, ProofError> {
    let connect = args.connect().ok_or(ProofError::NoTarget)?;
    let opts = connect.opts(ctx)?;
    let store = restore::open_store(&args.from, &args.s3, ctx).await?;
    let started = Instant::now();
    let backup = Backup::open(&store, "nothing was restored").await?;
    let target = mysql::describe(&opts);
    let cx = SqlContext {
        target: target.clone(),
    };

    let (mut conn, server) = session(&opts, &cx).await?;
    let present: Vec<String> = database_names(&mut conn, &cx)
        .await?
        .into_iter()
        .filter(|d| !server.system_databases().contains(&d.as_str()))
        .filter(|d| d != mysql::MARKER_SCHEMA)
        .collect();
    if !present.is_empty() {
        return Err(ProofError::TargetNotEmpty {
            target,
            names: present.join(", "),
        });
    }
    let _ = conn.disconnect().await;

    let options = RestoreOptions {
        parallel: args.parallel.max(1),
        overwrite: false,
        load_data: true,
    };
    restore::restore_backup(&store, &opts, options, &|_| {}).await?;

    let (mut conn, _) = session(&opts, &cx).await?;
    let restored = database_names(&mut conn, &cx).await?;
    let mut report = ProofReport {
        backup: store.location().to_string(),
        tables: 0,
        rows: 0,
        definitions: 0,
        complete: true,
        known: Vec::new(),
        differences: Vec::new(),
        duration: Duration::ZERO,
    };
    let known = Known::of(&backup.manifest);
    for database in &backup.manifest.databases {
        if restored.contains(&database.name) {
            compare_database(&mut conn, &cx, database, &known, &mut report).await?;
        } else {
            report.differences.push(format!(
                "database {}: missing after the restore",
                ident(&database.name)
            ));
        }
    }
    let _ = conn.disconnect().await;
    report.duration = started.elapsed();
    record(&store, &report).await;
    Ok(report)
}

/// How many differences `verification.json` keeps (the command prints all).
const RECORDED_DIFFERENCES: usize = 20;

/// Writes `verification.json` beside the artifact, so that retention outside
/// Kubernetes knows which backups were proven. A failed write is logged:
/// the proof itself stands, and the command's output and status say it.
async fn record(store: &Store, report: &ProofReport) {
    let record = VerificationRecord {
        result: if report.differences.is_empty() {
            VerificationResult::Verified
        } else {
            VerificationResult::Failed
        },
        verified_at: chrono::Utc::now(),
        tables: report.tables,
        rows: report.rows,
        definitions: report.definitions,
        duration_seconds: report.duration.as_secs_f64(),
        complete: report.complete,
        differences: report
            .differences
            .iter()
            .take(RECORDED_DIFFERENCES)
            .cloned()
            .collect(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let written = match serde_json::to_vec_pretty(&record) {
        Ok(json) => store
            .put(VERIFICATION_FILE, bytes::Bytes::from(json))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = written {
        tracing::warn!(backup = %store.location(), %error, "could not write {VERIFICATION_FILE}");
    }
}

/// Runs [`prove`], prints its lines, and fails when anything differed.
///
/// # Errors
/// As [`prove`], and [`ProofError::Differs`].
pub async fn run(args: &VerifyArgs, ctx: &AgentContext) -> Result<ProofReport, ProofError> {
    let report = prove(args, ctx).await?;
    for line in report.lines() {
        println!("{line}");
    }
    verdict(report)
}

/// `report` when everything matched, else [`ProofError::Differs`].
///
/// # Errors
/// [`ProofError::Differs`] naming the first difference.
pub fn verdict(report: ProofReport) -> Result<ProofReport, ProofError> {
    match report.differences.first() {
        None => Ok(report),
        Some(first) => Err(ProofError::Differs {
            backup: report.backup.clone(),
            count: report.differences.len(),
            first: first.clone(),
        }),
    }
}

/// A connection with the dump's own session settings (time zone, names,
/// `sql_mode`): values read back render exactly as the dump read them; and
/// what the server is.
async fn session(opts: &Opts, cx: &SqlContext) -> Result<(Conn, mysql::Server), BackupError> {
    let mut conn = mysql::connect(opts).await.map_err(|e| cx.connect_err(e))?;
    let facts = mysql::inspect(&mut conn)
        .await
        .map_err(|e| cx.err("reading the server's version", e))?
        .ok_or_else(|| BackupError::NoVersion {
            target: cx.target.clone(),
        })?;
    for statement in facts.server.session_statements() {
        conn.query_drop(statement)
            .await
            .map_err(|e| cx.err("setting up the session", e))?;
    }
    Ok((conn, facts.server))
}

async fn database_names(conn: &mut Conn, cx: &SqlContext) -> Result<Vec<String>, BackupError> {
    Catalog { conn, cx }.database_names().await
}

/// The objects the backup says it cannot bring back exactly, by the name
/// the manifest gives them (`PROCEDURE `db`.`name``, `TABLE `db`.`t``).
struct Known<'a>(HashMap<String, &'a Difference>);

impl<'a> Known<'a> {
    fn of(manifest: &'a Manifest) -> Self {
        Self(
            manifest
                .differences
                .iter()
                .map(|d| (d.object.to_ascii_uppercase(), d))
                .collect(),
        )
    }

    fn get(&self, kind: &str, database: &str, name: &str) -> Option<&'a Difference> {
        let object = format!("{} {}.{}", kind, ident(database), ident(name));
        self.0.get(&object.to_ascii_uppercase()).copied()
    }
}

async fn compare_database(
    conn: &mut Conn,
    cx: &SqlContext,
    expected: &DatabaseEntry,
    known: &Known<'_>,
    report: &mut ProofReport,
) -> Result<(), ProofError> {
    let db = &expected.name;
    let differ = |kind: &str, name: &str, what: String, report: &mut ProofReport| match known
        .get(kind, db, name)
    {
        Some(k) => report.known.push(format!("{}: {}", k.object, k.difference)),
        None => report.differences.push(format!(
            "{} {}.{}: {what}",
            kind.to_ascii_lowercase(),
            ident(db),
            ident(name)
        )),
    };
    let found = Catalog {
        conn: &mut *conn,
        cx,
    }
    .database(db)
    .await?;
    let tables: HashMap<&str, &Table> = found.tables.iter().map(|t| (t.name.as_str(), t)).collect();
    for entry in &expected.tables {
        if entry.kind == crate::manifest::TableKind::Table {
            report.tables += 1;
        }
        let Some(table) = tables.get(entry.name.as_str()) else {
            differ(
                "TABLE",
                &entry.name,
                "missing after the restore".into(),
                report,
            );
            continue;
        };
        if entry.data_skipped.is_some() || entry.kind != crate::manifest::TableKind::Table {
            continue;
        }
        let read = rows_digest(conn, cx, table).await?;
        report.rows += read.rows;
        match &entry.digest {
            Some(digest) if *digest != read.to_text() || read.rows != entry.rows => differ(
                "TABLE",
                &entry.name,
                format!(
                    "rows differ: expected {} rows with digest {digest}, found {} rows with digest {}",
                    entry.rows,
                    read.rows,
                    read.to_text()
                ),
                report,
            ),
            Some(_) => {}
            None => {
                report.complete = false;
                if read.rows != entry.rows {
                    differ(
                        "TABLE",
                        &entry.name,
                        format!("expected {} rows, found {}", entry.rows, read.rows),
                        report,
                    );
                }
            }
        }
    }
    if expected.definitions.is_empty() {
        report.complete = false;
        return Ok(());
    }
    let found = definitions::digests(conn, cx, &found).await?;
    let found: BTreeMap<(&str, &str), &str> = found
        .iter()
        .map(|d| ((d.kind.as_str(), d.name.as_str()), d.digest.as_str()))
        .collect();
    let mut seen = 0;
    for object in &expected.definitions {
        report.definitions += 1;
        let kind = object.kind.to_ascii_uppercase();
        match found.get(&(object.kind.as_str(), object.name.as_str())) {
            None => differ(
                &kind,
                &object.name,
                "missing after the restore".into(),
                report,
            ),
            Some(digest) => {
                seen += 1;
                if *digest != object.digest {
                    differ(
                        &kind,
                        &object.name,
                        format!(
                            "definition differs: expected {}, found {digest}",
                            object.digest
                        ),
                        report,
                    );
                }
            }
        }
    }
    if seen < found.len() {
        for (kind, name) in found.keys() {
            let recorded = expected
                .definitions
                .iter()
                .any(|d| d.kind == *kind && d.name == *name);
            if !recorded {
                differ(
                    &kind.to_ascii_uppercase(),
                    name,
                    "present after the restore but not in the backup".into(),
                    report,
                );
            }
        }
    }
    Ok(())
}

/// The digest of every row of `table` as it is now, read and encoded the
/// way the dump reads and encodes it.
async fn rows_digest(
    conn: &mut Conn,
    cx: &SqlContext,
    table: &Table,
) -> Result<RowsDigest, BackupError> {
    let mut digest = RowsDigest::default();
    if table.columns.is_empty() {
        return Ok(digest);
    }
    let unit = DataUnit {
        table: Arc::new(table.clone()),
        range: None,
    };
    let during = format!("reading back `{}`.`{}`", table.database, table.name);
    let classes: Vec<_> = table.columns.iter().map(|c| c.class).collect();
    let mut result = conn
        .query_iter(select_sql(&unit))
        .await
        .map_err(|e| cx.err(&during, e))?;
    let mut buf = Vec::new();
    while let Some(row) = result.next().await.map_err(|e| cx.err(&during, e))? {
        encode_row(&row, &classes, &mut buf);
        digest.add_row(&buf);
    }
    Ok(digest)
}
