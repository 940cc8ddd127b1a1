//! A progress line every few seconds while a backup runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::data::Counters;
use super::writer::WriterProgress;

const EVERY: Duration = Duration::from_secs(5);

pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
}

impl Ticker {
    pub fn start(counters: Arc<Counters>, writer: Arc<WriterProgress>, tables: usize) -> Ticker {
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rows = counters.rows.load(Ordering::Relaxed);
                let sql = counters.sql_bytes.load(Ordering::Relaxed);
                let written = writer.compressed_bytes.load(Ordering::Relaxed);
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
        Ticker { task }
    }

    pub fn stop(self) {
        self.task.abort();
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
