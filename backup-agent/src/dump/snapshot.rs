//! One consistent point in time for every worker: a brief global lock on the
//! control connection while each worker opens its snapshot and the binary
//! log position is read. Without the privilege for the lock: one worker, one
//! snapshot, said in the manifest.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};

use super::error::{BackupError, SqlContext};
use crate::manifest::{BinlogPosition, Consistency, Snapshot};
use crate::message::one_line;
use crate::mysql::{self, Failure, PositionQuery, Server};

/// Server errors that mean "you may not take this lock".
const PRIVILEGE_ERRORS: [u16; 4] = [1044, 1142, 1227, 1370];

/// The workers' connections, each inside its snapshot, and whether the
/// global lock is still held on the control connection.
pub struct Taken {
    pub workers: Vec<Conn>,
    pub snapshot: Snapshot,
    pub locked_at: Option<Instant>,
}

pub async fn connect(opts: &Opts, cx: &SqlContext, server: &Server) -> Result<Conn, BackupError> {
    let mut conn = mysql::connect(opts).await.map_err(|e| cx.connect_err(e))?;
    for stmt in server.session_statements() {
        conn.query_drop(stmt)
            .await
            .map_err(|e| cx.err("setting up the session", e))?;
    }
    Ok(conn)
}

/// Opens `parallel` worker snapshots lined up under the global lock, or
/// one lone snapshot when the lock is not allowed.
pub async fn take(
    control: &mut Conn,
    opts: &Opts,
    cx: &SqlContext,
    server: &Server,
    parallel: usize,
) -> Result<Taken, BackupError> {
    // Connect before locking: logins are the slow part and must not
    // lengthen the lock. The first worker is the lone one without the lock.
    let first = connect(opts, cx, server).await?;
    let mut others = Vec::with_capacity(parallel.saturating_sub(1));
    for _ in 1..parallel.max(1) {
        others.push(connect(opts, cx, server).await?);
    }
    control
        .query_drop("SET SESSION lock_wait_timeout = 600")
        .await
        .map_err(|e| cx.err("setting up the session", e))?;

    let mut denied = None;
    for stmt in server.lock_statements() {
        match control.query_drop(stmt).await {
            Ok(()) => {}
            Err(e) if Failure::server_code(&e).is_some_and(|c| PRIVILEGE_ERRORS.contains(&c)) => {
                denied = Some(one_line(&e.to_string()));
                break;
            }
            Err(e) => return Err(cx.err(format!("taking the global lock ({stmt})"), e)),
        }
    }
    if let Some(reason) = denied {
        // The other workers' connections close: one snapshot, one connection.
        return lone_snapshot(control, first, cx, server, reason).await;
    }
    let mut workers = others;
    workers.insert(0, first);
    let locked_at = Instant::now();
    for w in &mut workers {
        open_snapshot(w, cx).await?;
    }
    let (binlog, gtid) = read_position(control, cx, server).await?;
    Ok(Taken {
        workers,
        snapshot: Snapshot {
            consistency: Consistency::GlobalLock,
            lock_held_ms: None,
            gtid_executed: gtid,
            binlog,
            note: None,
        },
        locked_at: Some(locked_at),
    })
}

async fn open_snapshot(conn: &mut Conn, cx: &SqlContext) -> Result<(), BackupError> {
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| cx.err("opening a consistent snapshot", e))
}

async fn lone_snapshot(
    control: &mut Conn,
    mut worker: Conn,
    cx: &SqlContext,
    server: &Server,
    reason: String,
) -> Result<Taken, BackupError> {
    // Leave a failed BACKUP STAGE / FTWRL attempt in a clean state.
    for stmt in server.unlock_statements() {
        let _ = control.query_drop(stmt).await;
    }
    let note = format!(
        "no privilege for the global lock ({reason}): one connection dumped everything from one snapshot; non-transactional tables (MyISAM, Aria) were not locked"
    );
    tracing::warn!(
        "{note}; grant RELOAD (and BACKUP_ADMIN on MySQL 8) to the backup user for parallel dumps"
    );
    open_snapshot(&mut worker, cx).await?;
    let mut binlog = None;
    let mut gtid = None;
    if let Some(q) = server.snapshot_position_query() {
        let rows: Vec<Row> = worker
            .query(q)
            .await
            .map_err(|e| cx.err("reading the snapshot's binlog position", e))?;
        let mut file = None;
        let mut pos = None;
        for r in &rows {
            match (text(r, 0).as_deref(), text(r, 1)) {
                (Some("Binlog_snapshot_file"), Some(v)) if !v.is_empty() => file = Some(v),
                (Some("Binlog_snapshot_position"), Some(v)) => pos = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        if let (Some(file), Some(position)) = (file, pos) {
            let q = format!(
                "SELECT BINLOG_GTID_POS({}, {position})",
                super::sql::string_literal(&file)
            );
            if let Ok(rows) = worker.query::<Row, _>(q).await {
                gtid = rows
                    .first()
                    .and_then(|r| text(r, 0))
                    .filter(|g| !g.is_empty());
            }
            binlog = Some(BinlogPosition { file, position });
        }
    }
    Ok(Taken {
        workers: vec![worker],
        snapshot: Snapshot {
            consistency: Consistency::SingleTransaction,
            lock_held_ms: None,
            gtid_executed: gtid,
            binlog,
            note: Some(note),
        },
        locked_at: None,
    })
}

async fn read_position(
    control: &mut Conn,
    cx: &SqlContext,
    server: &Server,
) -> Result<(Option<BinlogPosition>, Option<String>), BackupError> {
    let PositionQuery::BinlogStatus(q) = server.position_query();
    let rows: Vec<Row> = control
        .query(q)
        .await
        .map_err(|e| cx.err("reading the binlog position", e))?;
    let binlog = rows.first().and_then(|r| {
        Some(BinlogPosition {
            file: text(r, 0).filter(|f| !f.is_empty())?,
            position: text(r, 1)?.parse().ok()?,
        })
    });
    let rows: Vec<Row> = control
        .query(server.gtid_query())
        .await
        .map_err(|e| cx.err("reading the GTID position", e))?;
    // MySQL prints long GTID sets over several lines.
    let gtid = rows
        .first()
        .and_then(|r| text(r, 0))
        .map(|g| g.split_whitespace().collect::<String>())
        .filter(|g| !g.is_empty());
    Ok((binlog, gtid))
}

/// Releases the global lock; returns how long it was held.
pub async fn release(
    control: &mut Conn,
    cx: &SqlContext,
    server: &Server,
    locked_at: Instant,
) -> Result<u64, BackupError> {
    for stmt in server.unlock_statements() {
        control
            .query_drop(stmt)
            .await
            .map_err(|e| cx.err(format!("releasing the global lock ({stmt})"), e))?;
    }
    let held = u64::try_from(locked_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    if let Some(stmt) = server.ddl_guard_statement()
        && let Err(e) = control.query_drop(stmt).await
    {
        tracing::warn!(
            "could not take `{stmt}` ({}); DDL during the dump may fail it",
            one_line(&e.to_string())
        );
    }
    Ok(held)
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::NULL => None,
        other => Some(other.as_sql(true)),
    }
}
