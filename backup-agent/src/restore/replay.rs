//! Executing members on the target: schema first, in order; data members in
//! parallel over several connections; then routines, views, triggers and
//! events in manifest order (a view may use a function; triggers come after
//! the data so they do not fire on restored rows).
//!
//! Each member is fetched, checked against its sha256, decompressed and
//! executed before the next one is fetched on that connection, so memory is
//! bounded by `parallel` × (compressed + uncompressed member).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::indexes::{Deferral, PendingTable};
use super::load_data::{self, Batch, Loaded, Loading};
use super::source::{Backup, describe_member};
use super::statements::{self, preview};
use super::{RestoreError, RestoreProgress};
use crate::manifest::MemberKind;
use crate::mysql::Failure;

/// How often the progress line is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Characters of a failing statement quoted in an error.
const PREVIEW_CHARS: usize = 80;

/// Shared counters of a running replay.
pub struct Tracker<'a> {
    members_total: usize,
    members_done: AtomicUsize,
    bytes_done: AtomicU64,
    statements: AtomicU64,
    started: Instant,
    last_log: Mutex<Instant>,
    progress: &'a (dyn Fn(RestoreProgress) + Send + Sync),
    /// Server warnings on code objects (e.g. a missing DEFINER account), kept short.
    pub warnings: Mutex<Vec<String>>,
    /// Indexes the schema leaves out and [`build_indexes`] adds after the data.
    pub deferral: Deferral,
    /// Tables whose rows go by `LOAD DATA`, set once the schema exists.
    pub loading: std::sync::OnceLock<Loading>,
}

impl<'a> Tracker<'a> {
    pub fn new(
        members_total: usize,
        progress: &'a (dyn Fn(RestoreProgress) + Send + Sync),
    ) -> Self {
        let now = Instant::now();
        Self {
            members_total,
            members_done: AtomicUsize::new(0),
            bytes_done: AtomicU64::new(0),
            statements: AtomicU64::new(0),
            started: now,
            last_log: Mutex::new(now),
            progress,
            warnings: Mutex::new(Vec::new()),
            deferral: Deferral::none(),
            loading: std::sync::OnceLock::new(),
        }
    }

    /// The same tracker, creating tables without the indexes `deferral`
    /// plans (see [`super::indexes`]).
    pub fn deferring(self, deferral: Deferral) -> Self {
        Self { deferral, ..self }
    }

    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn member_done(&self, compressed: u64) {
        let done = self.members_done.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = self.bytes_done.fetch_add(compressed, Ordering::Relaxed) + compressed;
        let snapshot = RestoreProgress {
            members_done: done,
            members_total: self.members_total,
            bytes_done: bytes,
        };
        (self.progress)(snapshot);
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= LOG_EVERY || done == self.members_total {
            *last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                members_done = done,
                members_total = self.members_total,
                bytes_done = bytes,
                mib_per_sec = format!("{:.1}", bytes as f64 / secs / 1048576.0),
                "restoring"
            );
        }
    }

    fn warn(&self, message: String) {
        tracing::warn!("{message}");
        let mut w = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() < 100 {
            w.push(message);
        }
    }
}

/// Replays `indices` one after the other on `conn`.
pub async fn replay_in_order(
    conn: &mut Conn,
    backup: &Backup,
    indices: &[usize],
    tracker: &Tracker<'_>,
    target: &str,
) -> Result<(), RestoreError> {
    for &index in indices {
        replay_member(conn, backup, index, tracker, target).await?;
    }
    Ok(())
}

/// Replays `indices` over `conns`, each connection taking the next member
/// when it is free; the first error stops the others.
pub async fn replay_parallel(
    conns: &mut [Conn],
    backup: &Backup,
    indices: &[usize],
    tracker: &Tracker<'_>,
    target: &str,
) -> Result<(), RestoreError> {
    let next = AtomicUsize::new(0);
    let workers = conns.iter_mut().map(|conn| {
        let next = &next;
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&index) = indices.get(i) else {
                    return Ok::<(), RestoreError>(());
                };
                replay_member(conn, backup, index, tracker, target).await?;
            }
        }
    });
    futures::future::try_join_all(workers).await.map(|_| ())
}

async fn replay_member(
    conn: &mut Conn,
    backup: &Backup,
    index: usize,
    tracker: &Tracker<'_>,
    target: &str,
) -> Result<(), RestoreError> {
    let member = &backup.manifest.members[index];
    let compressed = backup.fetch(index).await?;
    let text = backup.decompress(index, &compressed)?;
    let compressed_len = compressed.len() as u64;
    drop(compressed);

    // Members set their own session state (sql_mode, checks, USE); start each
    // from a clean session so nothing leaks from the member before it.
    conn.reset().await.map_err(|e| RestoreError::Query {
        target: target.to_owned(),
        what: "resetting the session",
        reason: Failure::of(&e),
    })?;

    let code = matches!(
        member.kind,
        MemberKind::Routines | MemberKind::Views | MemberKind::Triggers | MemberKind::Events
    );
    let schema = member.kind == MemberKind::Schema;
    // `Some` when this member's rows may go by LOAD DATA (with the table's
    // one text set other than utf8mb4, if any).
    let loadable = match member.kind {
        MemberKind::Data => tracker
            .loading
            .get()
            .and_then(|l| l.allows(member.database.as_deref(), member.table.as_deref())),
        _ => None,
    };
    let table_name = member.table.as_deref().map(crate::mysql::ident);
    let text = bytes::Bytes::from(text);
    let mut batch: Option<Batch<'_>> = None;
    let mut statements = statements::split(&text);
    while let Some(statement) = statements.next() {
        let statement = statement.map_err(|e| RestoreError::MemberCorrupt {
            backup: backup.describe(),
            member: describe_member(index, member),
            problem: format!("its SQL cannot be split into statements: {e}"),
        })?;
        if let Some(ascii_set) = loadable
            && statements.backslash_escapes()
        {
            let rows = load_data::parse_insert(statement.text).and_then(|insert| {
                let values = &statement.text[insert.values_at..];
                load_data::count_rows(values, insert.column_count).map(|rows| (insert, rows))
            });
            if let Some((insert, rows)) = rows
                && Some(insert.table) == table_name.as_deref().map(str::as_bytes)
            {
                if batch.as_ref().is_some_and(|b| !b.takes(&insert)) {
                    flush(conn, tracker, batch.take(), index, member).await?;
                }
                let start = statement.offset + insert.values_at;
                let end = statement.offset + statement.text.len();
                batch
                    .get_or_insert_with(|| Batch::new(&insert, ascii_set))
                    .push(statement.text, text.slice(start..end), rows);
                continue;
            }
        }
        flush(conn, tracker, batch.take(), index, member).await?;
        let sql = if schema {
            tracker
                .deferral
                .rewrite(member.database.as_deref(), statement.text)
        } else {
            std::borrow::Cow::Borrowed(statement.text)
        };
        run_statement(conn, tracker, statement.text, &sql, index, member).await?;
        if code && conn.get_warnings() > 0 {
            report_warnings(
                conn,
                tracker,
                &describe_member(index, member),
                statement.text,
            )
            .await;
        }
    }
    flush(conn, tracker, batch, index, member).await?;
    tracker.member_done(compressed_len);
    Ok(())
}

/// Runs `sql` (the member's `statement`, or its rewrite) on `conn`.
async fn run_statement(
    conn: &mut Conn,
    tracker: &Tracker<'_>,
    statement: &[u8],
    sql: &[u8],
    index: usize,
    member: &crate::manifest::Member,
) -> Result<(), RestoreError> {
    if let Err(e) = conn.query_drop(sql).await {
        return Err(statement_error(
            describe_member(index, member),
            statement,
            e,
        ));
    }
    tracker.statements.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Stores a batch of a member's rows: by `LOAD DATA`, or, when the server
/// refuses or warns about the load (rolled back), by the member's INSERTs
/// as they are.
async fn flush(
    conn: &mut Conn,
    tracker: &Tracker<'_>,
    batch: Option<Batch<'_>>,
    index: usize,
    member: &crate::manifest::Member,
) -> Result<(), RestoreError> {
    let Some(batch) = batch else {
        return Ok(());
    };
    let Some(loading) = tracker.loading.get() else {
        // Batches are only gathered under a load plan; without one the rows
        // still go, as INSERTs, never dropped.
        return run_inserts(conn, tracker, &batch, index, member).await;
    };
    let loaded =
        load_data::load(conn, loading, &batch)
            .await
            .map_err(|e| RestoreError::Statement {
                member: describe_member(index, member),
                statement: preview(batch.statement().as_bytes(), PREVIEW_CHARS),
                reason: Failure::of(&e),
            })?;
    match loaded {
        Loaded::Rows(_) => {
            loading.loaded.fetch_add(1, Ordering::Relaxed);
            tracker
                .statements
                .fetch_add(batch.statements.len() as u64, Ordering::Relaxed);
        }
        Loaded::Refused(why) => {
            loading.fell_back.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                member = %describe_member(index, member),
                "LOAD DATA was rolled back ({why}); running the member's INSERT statements instead"
            );
            run_inserts(conn, tracker, &batch, index, member).await?;
        }
    }
    Ok(())
}

/// Runs a batch's INSERT statements as the member wrote them.
async fn run_inserts(
    conn: &mut Conn,
    tracker: &Tracker<'_>,
    batch: &Batch<'_>,
    index: usize,
    member: &crate::manifest::Member,
) -> Result<(), RestoreError> {
    for statement in &batch.statements {
        run_statement(conn, tracker, statement, statement, index, member).await?;
    }
    Ok(())
}

/// Builds the indexes the schema left out, one `ALTER TABLE` per table,
/// the tables spread over `conns`; the first error stops the others. Runs
/// after the last data member (a table's index build reads all its rows).
pub async fn build_indexes(
    conns: &mut [Conn],
    tracker: &Tracker<'_>,
    target: &str,
) -> Result<(), RestoreError> {
    let tables = tracker.deferral.pending();
    if tables.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    tracing::info!(
        tables = tables.len(),
        "building secondary indexes after the data"
    );
    let next = AtomicUsize::new(0);
    let workers = conns.iter_mut().map(|conn| {
        let (next, tables) = (&next, &tables);
        async move {
            while let Some(table) = tables.get(next.fetch_add(1, Ordering::Relaxed)) {
                build_table_indexes(conn, table, target).await?;
                tracker.deferral.built(table);
                tracker.statements.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), RestoreError>(())
        }
    });
    futures::future::try_join_all(workers).await?;
    tracing::info!(
        tables = tables.len(),
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "secondary indexes built"
    );
    Ok(())
}

async fn build_table_indexes(
    conn: &mut Conn,
    table: &PendingTable,
    target: &str,
) -> Result<(), RestoreError> {
    let query = |what: &'static str| {
        move |e: mysql_async::Error| RestoreError::Query {
            target: target.to_owned(),
            what,
            reason: Failure::of(&e),
        }
    };
    conn.reset().await.map_err(query("resetting the session"))?;
    // The session a schema member runs under (names in utf8mb4, the data
    // sql_mode, checks off), so the clause reads as it did in the CREATE.
    for statement in statements::split(crate::dump::sql::preamble(None).as_bytes()) {
        let Ok(statement) = statement else { continue };
        conn.query_drop(statement.text)
            .await
            .map_err(query("setting the session for an index build"))?;
    }
    let alter = table.statement();
    conn.query_drop(&alter)
        .await
        .map_err(|e| RestoreError::IndexBuild {
            table: table.describe(),
            statement: preview(alter.as_bytes(), PREVIEW_CHARS),
            reason: Failure::of(&e),
        })
}

/// Logs the server's warnings about a code object (MariaDB creates a view,
/// trigger or routine whose DEFINER account is missing with only a warning;
/// it fails later, when used).
async fn report_warnings(conn: &mut Conn, tracker: &Tracker<'_>, member: &str, statement: &[u8]) {
    let rows: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await.unwrap_or_default();
    for (level, code, message) in rows {
        let hint = if code == 1449 {
            ": the definer account does not exist on the target; create it (the operator recreates its own accounts) or the object fails when used"
        } else {
            ""
        };
        tracker.warn(format!(
            "{member}: {level} {code} from `{}`: {message}{hint}",
            preview(statement, PREVIEW_CHARS)
        ));
    }
}

fn statement_error(member: String, statement: &[u8], error: mysql_async::Error) -> RestoreError {
    let statement = preview(statement, PREVIEW_CHARS);
    match error {
        mysql_async::Error::Server(s) if s.code == 1449 => RestoreError::MissingDefiner {
            member,
            statement,
            reason: s.message,
        },
        mysql_async::Error::Server(s)
            if s.code == 1227 && statement.to_ascii_uppercase().contains("DEFINER") =>
        {
            RestoreError::DefinerPrivilege {
                member,
                statement,
                reason: s.message,
            }
        }
        other => RestoreError::Statement {
            member,
            statement,
            reason: Failure::of(&other),
        },
    }
}
