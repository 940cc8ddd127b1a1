//! Table data: a worker reads one unit (a table, or a primary-key range of
//! one) from its snapshot and turns it into data members of multi-row
//! INSERTs, cut every `chunk_bytes` of SQL, each sent as soon as it is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::mpsc;

use super::catalog::Table;
use super::error::{BackupError, SqlContext};
use super::member::{EncodedMember, MemberEncoder};
use super::sql::{self, ColumnClass};
use crate::compression::{Codec, CompressionError, Encoder};
use crate::digest::RowsDigest;
use crate::manifest::MemberKind;
use crate::mysql::ident;

/// Uncompressed SQL per data member: big enough to keep the member count
/// low (deflate's window is 32 KiB, so the ratio does not depend on it),
/// small enough that the members in flight stay modest. 8 MiB let peak RSS
/// reach 47-61 MiB at 1M sysbench rows per table; see docs/benchmarks.md.
pub const DEFAULT_CHUNK_BYTES: u64 = 4 << 20;
/// Statements stop growing here even when the server would take more:
/// bigger statements only cost the restore memory.
pub const MAX_STATEMENT_BYTES: u64 = 1 << 20;

/// A half-open primary-key range `[from, to)`; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange {
    pub from: Option<i128>,
    pub to: Option<i128>,
}

/// One unit of work for a worker.
#[derive(Debug, Clone)]
pub struct DataUnit {
    pub table: Arc<Table>,
    pub range: Option<KeyRange>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub chunk_bytes: u64,
    pub statement_bytes: u64,
    pub max_allowed_packet: u64,
    pub codec: Codec,
    /// Hash every row ([`crate::digest`]); rows are counted either way.
    pub digests: bool,
}

/// Counters the progress line reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows: AtomicU64,
    pub sql_bytes: AtomicU64,
}

/// Splits a table with an integer key into about `bytes / chunk_bytes`
/// ranges between `min` and `max`. The first and last range are open, so
/// rows written after these bounds were read are still covered.
pub fn split_ranges(min: i128, max: i128, estimated_bytes: u64, chunk_bytes: u64) -> Vec<KeyRange> {
    let wanted = estimated_bytes
        .div_ceil(chunk_bytes.max(1))
        .clamp(1, 10_000) as i128;
    let span = max - min + 1;
    if wanted <= 1 || span <= 1 {
        return vec![KeyRange {
            from: None,
            to: None,
        }];
    }
    let pieces = wanted.min(span);
    let step = span / pieces;
    let mut bounds: Vec<i128> = (1..pieces).map(|i| min + i * step).collect();
    bounds.dedup();
    let mut out = Vec::with_capacity(bounds.len() + 1);
    let mut from = None;
    for b in bounds {
        out.push(KeyRange { from, to: Some(b) });
        from = Some(b);
    }
    out.push(KeyRange { from, to: None });
    out
}

/// The SELECT that reads a unit: explicit columns (invisible ones
/// included, generated ones left out), in key order for ranges.
pub fn select_sql(unit: &DataUnit) -> String {
    let t = &unit.table;
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| c.class.select_expr(&c.name))
        .collect();
    let mut q = format!(
        "SELECT {} FROM {}.{}{}",
        cols.join(", "),
        ident(&t.database),
        ident(&t.name),
        if t.history {
            " FOR SYSTEM_TIME ALL"
        } else {
            ""
        }
    );
    if let (Some(range), Some(pk)) = (unit.range, t.int_pk.as_deref()) {
        let pk = ident(pk);
        let mut conds = Vec::new();
        if let Some(from) = range.from {
            conds.push(format!("{pk} >= {from}"));
        }
        if let Some(to) = range.to {
            conds.push(format!("{pk} < {to}"));
        }
        if !conds.is_empty() {
            q.push_str(" WHERE ");
            q.push_str(&conds.join(" AND "));
        }
        q.push_str(&format!(" ORDER BY {pk}"));
    }
    q
}

fn insert_prefix(t: &Table) -> Vec<u8> {
    let cols: Vec<String> = t.columns.iter().map(|c| ident(&c.name)).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ",
        ident(&t.name),
        cols.join(",")
    )
    .into_bytes()
}

struct Chunker<'a> {
    table: &'a Table,
    limits: Limits,
    tx: &'a mpsc::Sender<Result<EncodedMember, BackupError>>,
    counters: &'a Counters,
    encoder: Option<MemberEncoder>,
    scratch: &'a mut Scratch,
    classes: &'a [ColumnClass],
    /// `INSERT INTO … VALUES `, which starts every statement.
    prefix: &'a [u8],
    /// Where the open statement starts in the member's SQL (`None`: no
    /// statement is open). Statements are built in place in the member's
    /// buffer, each row encoded straight into it: no copy per row.
    stmt_start: Option<usize>,
    stmt_rows: u64,
    /// The rows of the open statement, then of the member being built.
    stmt_digest: RowsDigest,
    member_digest: RowsDigest,
}

/// A worker's buffers and compressor, kept from unit to unit: units are
/// about one chunk each, so allocating them per unit would allocate and free
/// several MiB per member, which glibc does not return to the system
/// promptly (peak RSS grew with the data without `MALLOC_TRIM_THRESHOLD_`).
pub struct Scratch {
    /// Compresses the worker's members, one after the other.
    encoder: Encoder,
    /// The SQL of the member being built; handed to the member and back.
    sql: Vec<u8>,
    /// A row that did not fit its statement, on its way to the next one.
    row: Vec<u8>,
}

impl Scratch {
    pub fn new(limits: &Limits) -> Result<Scratch, CompressionError> {
        Ok(Scratch {
            encoder: limits.codec.encoder()?,
            // A chunk, the statement that crosses it and the preamble, so
            // the buffer never doubles past the chunk.
            sql: Vec::with_capacity(Self::sql_capacity(limits)),
            row: Vec::new(),
        })
    }

    fn sql_capacity(limits: &Limits) -> usize {
        usize::try_from(limits.chunk_bytes + limits.statement_bytes + 4096).unwrap_or(usize::MAX)
    }
}

/// The writer has gone (it failed or was cancelled): stop quietly.
struct Closed;

/// The member being built, started (with its preamble, in the worker's
/// SQL buffer `sql`) if there is none.
fn open_member<'e>(
    encoder: &'e mut Option<MemberEncoder>,
    table: &Table,
    sql: &mut Vec<u8>,
) -> &'e mut MemberEncoder {
    encoder.get_or_insert_with(|| {
        let mut enc = MemberEncoder::new(
            MemberKind::Data,
            Some(&table.database),
            Some(&table.name),
            std::mem::take(sql),
        );
        enc.write(sql::preamble(Some(&table.database)).as_bytes());
        if table.history {
            enc.write(sql::INSERT_HISTORY.as_bytes());
        }
        enc
    })
}

impl Chunker<'_> {
    fn compress_err(&self, e: crate::compression::CompressionError) -> BackupError {
        BackupError::Compress {
            member: format!("`{}`.`{}`", self.table.database, self.table.name),
            source: e,
        }
    }

    /// Adds one row: encoded as its tuple at the end of the open statement,
    /// or of a new one when the open one would grow past `statement_bytes`.
    async fn row(&mut self, row: &Row) -> Result<Result<(), Closed>, BackupError> {
        let statement_bytes = self.limits.statement_bytes;
        let stmt_start = self.stmt_start;
        let (classes, prefix) = (self.classes, self.prefix);
        let buf = open_member(&mut self.encoder, self.table, &mut self.scratch.sql).sql_mut();
        let before = buf.len();
        match stmt_start {
            Some(_) => buf.push(b','),
            None => buf.extend_from_slice(prefix),
        }
        let at = buf.len();
        encode_row_into(row, classes, buf);
        let len = buf.len() - at;
        let Some(start) = stmt_start else {
            self.stmt_start = Some(before);
            self.add_to_statement(at);
            return Ok(Ok(()));
        };
        if ((before - start) + 1 + len + 2) as u64 <= statement_bytes {
            self.add_to_statement(at);
            return Ok(Ok(()));
        }
        // The open statement is full without this row: close it (which may
        // send the member) and start the next statement with the row.
        self.scratch.row.clear();
        self.scratch.row.extend_from_slice(&buf[at..]);
        buf.truncate(before);
        if let Err(c) = self.flush_statement().await? {
            return Ok(Err(c));
        }
        let row_bytes = std::mem::take(&mut self.scratch.row);
        let buf = open_member(&mut self.encoder, self.table, &mut self.scratch.sql).sql_mut();
        let start = buf.len();
        buf.extend_from_slice(prefix);
        let at = buf.len();
        buf.extend_from_slice(&row_bytes);
        self.scratch.row = row_bytes;
        self.stmt_start = Some(start);
        self.add_to_statement(at);
        Ok(Ok(()))
    }

    /// Counts (and hashes) the row just written at `at`, the end of the
    /// member's SQL, as part of the open statement.
    fn add_to_statement(&mut self, at: usize) {
        self.stmt_rows += 1;
        if self.limits.digests {
            if let Some(enc) = &self.encoder {
                self.stmt_digest.add_row(&enc.sql()[at..]);
            }
        } else {
            self.stmt_digest.count_row();
        }
    }

    async fn flush_statement(&mut self) -> Result<Result<(), Closed>, BackupError> {
        let Some(start) = self.stmt_start.take() else {
            return Ok(Ok(()));
        };
        let Some(enc) = self.encoder.as_mut() else {
            return Ok(Ok(()));
        };
        enc.write(b";\n");
        let size = enc.uncompressed() - start as u64;
        if size >= self.limits.max_allowed_packet {
            return Err(BackupError::RowTooLarge {
                database: self.table.database.clone(),
                table: self.table.name.clone(),
                size,
                max: self.limits.max_allowed_packet,
            });
        }
        let rows = std::mem::take(&mut self.stmt_rows);
        enc.statement_written(size, rows);
        self.member_digest
            .merge(std::mem::take(&mut self.stmt_digest));
        self.counters.rows.fetch_add(rows, Ordering::Relaxed);
        self.counters.sql_bytes.fetch_add(size, Ordering::Relaxed);
        if enc.uncompressed() >= self.limits.chunk_bytes {
            return self.send().await;
        }
        Ok(Ok(()))
    }

    async fn send(&mut self) -> Result<Result<(), Closed>, BackupError> {
        let Some(enc) = self.encoder.take() else {
            return Ok(Ok(()));
        };
        if enc.rows() == 0 {
            return Ok(Ok(()));
        }
        let capacity = Scratch::sql_capacity(&self.limits);
        let (mut member, spare) = enc
            .finish(&mut self.scratch.encoder, capacity)
            .map_err(|e| self.compress_err(e))?;
        self.scratch.sql = spare;
        member.digest = std::mem::take(&mut self.member_digest);
        Ok(self.tx.send(Ok(member)).await.map_err(|_| Closed))
    }
}

/// Encodes `row` (read with [`select_sql`]) as the tuple `(v1,v2,…)` the
/// dump writes, into `buf`. The row digests ([`crate::digest`]) hash this
/// same tuple, at backup time and when a restore is verified.
pub fn encode_row(row: &Row, classes: &[ColumnClass], buf: &mut Vec<u8>) {
    buf.clear();
    encode_row_into(row, classes, buf);
}

/// [`encode_row`], appended to what `buf` holds.
fn encode_row_into(row: &Row, classes: &[ColumnClass], buf: &mut Vec<u8>) {
    buf.push(b'(');
    for (i, class) in classes.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        match row.as_ref(i) {
            Some(Value::Bytes(b)) => sql::push_value(buf, *class, Some(b)),
            Some(Value::NULL) | None => sql::push_value(buf, *class, None),
            // The text protocol only returns bytes; anything else is
            // rendered by the driver as a literal of its own.
            Some(other) => buf.extend_from_slice(other.as_sql(false).as_bytes()),
        }
    }
    buf.push(b')');
}

/// Dumps one unit on a worker connection inside its snapshot. Returns when
/// the unit is done or the writer went away.
pub async fn dump_unit(
    conn: &mut Conn,
    cx: &SqlContext,
    unit: &DataUnit,
    limits: Limits,
    tx: &mpsc::Sender<Result<EncodedMember, BackupError>>,
    counters: &Counters,
    scratch: &mut Scratch,
) -> Result<(), BackupError> {
    let table = &unit.table;
    if table.columns.is_empty() {
        return Ok(());
    }
    let during = || format!("reading `{}`.`{}`", table.database, table.name);
    let classes: Vec<_> = table.columns.iter().map(|c| c.class).collect();
    let prefix = insert_prefix(table);
    let mut chunker = Chunker {
        table,
        limits,
        tx,
        counters,
        encoder: None,
        scratch,
        classes: &classes,
        prefix: &prefix,
        stmt_start: None,
        stmt_rows: 0,
        stmt_digest: RowsDigest::default(),
        member_digest: RowsDigest::default(),
    };
    let mut result = conn
        .query_iter(select_sql(unit))
        .await
        .map_err(|e| cx.err(during(), e))?;
    loop {
        let row = match result.next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => return Err(cx.err(during(), e)),
        };
        if chunker.row(&row).await?.is_err() {
            return Ok(());
        }
    }
    drop(result);
    if chunker.flush_statement().await?.is_err() {
        return Ok(());
    }
    let _ = chunker.send().await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dump::catalog::Column;
    use crate::dump::sql::ColumnClass;
    use crate::manifest::TableKind;

    fn table() -> Arc<Table> {
        Arc::new(Table {
            database: "shop".into(),
            name: "or`ders".into(),
            kind: TableKind::Table,
            engine: "InnoDB".into(),
            transactional: true,
            data_skipped: None,
            columns: vec![
                Column {
                    name: "id".into(),
                    class: ColumnClass::Number,
                },
                Column {
                    name: "note".into(),
                    class: ColumnClass::Text,
                },
            ],
            int_pk: Some("id".into()),
            estimated_bytes: 0,
            history: false,
            create: String::new(),
            deferred_indexes: Vec::new(),
        })
    }

    #[test]
    fn ranges_cover_every_key_and_are_open_at_the_ends() {
        let r = split_ranges(1, 1000, 40 << 20, 8 << 20);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].from, None);
        assert_eq!(r[4].to, None);
        for w in r.windows(2) {
            assert_eq!(w[0].to, w[1].from);
        }
        assert_eq!(split_ranges(1, 1000, 1 << 20, 8 << 20).len(), 1);
        // Never more ranges than keys.
        assert_eq!(split_ranges(5, 7, 1 << 40, 8 << 20).len(), 3);
        // Unsigned BIGINT extremes do not overflow.
        let wide = split_ranges(0, u64::MAX as i128, 1 << 30, 8 << 20);
        assert_eq!(wide.len(), 128);
    }

    #[test]
    fn select_names_columns_and_bounds() {
        let unit = DataUnit {
            table: table(),
            range: Some(KeyRange {
                from: Some(10),
                to: Some(20),
            }),
        };
        assert_eq!(
            select_sql(&unit),
            "SELECT `id`, `note` FROM `shop`.`or``ders` WHERE `id` >= 10 AND `id` < 20 ORDER BY `id`"
        );
        let whole = DataUnit {
            table: table(),
            range: None,
        };
        assert_eq!(
            select_sql(&whole),
            "SELECT `id`, `note` FROM `shop`.`or``ders`"
        );
        assert_eq!(
            String::from_utf8(insert_prefix(&table())).unwrap(),
            "INSERT INTO `or``ders` (`id`,`note`) VALUES "
        );
    }

    #[test]
    fn a_system_versioned_table_is_read_with_its_history() {
        let mut versioned = (*table()).clone();
        versioned.history = true;
        let unit = DataUnit {
            table: Arc::new(versioned),
            range: Some(KeyRange {
                from: Some(10),
                to: None,
            }),
        };
        assert_eq!(
            select_sql(&unit),
            "SELECT `id`, `note` FROM `shop`.`or``ders` FOR SYSTEM_TIME ALL WHERE `id` >= 10 ORDER BY `id`"
        );
    }
}
