//! Progress while a backup runs: a log line every few seconds, or, when
//! stderr is a terminal, a bar redrawn in place (log lines would scroll the
//! screen full; a Job's log has no terminal and keeps the lines).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keeper_crds::BackupProgress;

use super::data::Counters;
use super::writer::WriterProgress;

/// Where the dump's progress goes besides the log (the `MySQLBackup`'s
/// status inside Kubernetes), every [`EVERY`].
pub type ProgressSink = Arc<dyn Fn(BackupProgress) + Send + Sync>;

const EVERY: Duration = Duration::from_secs(5);
/// How often the terminal bar is redrawn.
const BAR_EVERY: Duration = Duration::from_millis(250);
const BAR_WIDTH: usize = 24;

pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl Ticker {
    pub fn start(
        counters: Arc<Counters>,
        writer: Arc<WriterProgress>,
        tables: usize,
        sink: Option<ProgressSink>,
    ) -> Ticker {
        let started = Instant::now();
        let mut reported = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(if tty { BAR_EVERY } else { EVERY });
            tick.tick().await;
            loop {
                tick.tick().await;
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rows = counters.rows.load(Ordering::Relaxed);
                let sql = counters.sql_bytes.load(Ordering::Relaxed);
                let written = writer.compressed_bytes.load(Ordering::Relaxed);
                if let Some(sink) = &sink
                    && reported.elapsed() >= EVERY
                {
                    reported = Instant::now();
                    let done = writer.tables_done.load(Ordering::Relaxed);
                    sink(BackupProgress::new(done, tables as u64, rows, sql));
                }
                if tty {
                    let done = writer.tables_done.load(Ordering::Relaxed);
                    eprint!("\r{}", bar_line(done, tables, rows, sql, secs));
                    continue;
                }
                tracing::info!(
                    tables_started = writer.tables_done.load(Ordering::Relaxed),
                    tables,
                    rows,
                    sql_mib = mib(sql),
                    written_mib = mib(written),
                    mib_per_s = mib(sql) / secs,
                    rows_per_s = (rows as f64 / secs).round(),
                    "backup progress"
                );
            }
        });
        Ticker { task, tty }
    }

    pub fn stop(self) {
        self.task.abort();
        if self.tty {
            // Clear the bar so the summary line starts on a clean line.
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / 1048576.0 * 10.0).round() / 10.0
}

/// `[#########...............]  3/16 tables  12345 rows  12.3 MiB  4.1 MiB/s`
fn bar_line(done: u64, total: usize, rows: u64, sql_bytes: u64, secs: f64) -> String {
    let done_tables = usize::try_from(done).unwrap_or(usize::MAX).min(total);
    let filled = (done_tables * BAR_WIDTH)
        .checked_div(total)
        .unwrap_or(BAR_WIDTH);
    format!(
        "[{}{}] {done}/{total} tables  {rows} rows  {} MiB  {} MiB/s ",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        mib(sql_bytes),
        (mib(sql_bytes) / secs * 10.0).round() / 10.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_tables_done() {
        let line = bar_line(4, 16, 1000, 3 * 1048576, 2.0);
        assert!(
            line.starts_with(&format!("[{}{}]", "#".repeat(6), ".".repeat(18))),
            "{line}"
        );
        assert!(line.contains("4/16 tables"), "{line}");
        assert!(line.contains("1000 rows"), "{line}");
        assert!(line.contains("3 MiB"), "{line}");
        assert!(line.contains("1.5 MiB/s"), "{line}");
    }

    #[test]
    fn the_bar_never_overflows() {
        assert!(bar_line(20, 16, 0, 0, 1.0).starts_with(&format!("[{}]", "#".repeat(BAR_WIDTH))));
        assert!(bar_line(0, 0, 0, 0, 1.0).starts_with(&format!("[{}]", "#".repeat(BAR_WIDTH))));
    }
}
