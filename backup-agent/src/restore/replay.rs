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
        }
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
    for statement in statements::split(&text) {
        let statement = statement.map_err(|e| RestoreError::MemberCorrupt {
            backup: backup.describe(),
            member: describe_member(index, member),
            problem: format!("its SQL cannot be split into statements: {e}"),
        })?;
        if let Err(e) = conn.query_drop(statement.text).await {
            return Err(statement_error(
                describe_member(index, member),
                statement.text,
                e,
            ));
        }
        tracker.statements.fetch_add(1, Ordering::Relaxed);
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
    tracker.member_done(compressed_len);
    Ok(())
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
