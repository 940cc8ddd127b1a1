//! Rows by `LOAD DATA LOCAL INFILE`: the restore's cheaper path for the
//! rows of a data member (issue 24).
//!
//! The server parses every literal of a multi-row `INSERT` into an item
//! tree before it stores a row; `LOAD DATA` stores each field from its
//! text directly. On a sysbench table (MariaDB 10.11, binary log on) the
//! same 200 MB of rows loaded in 4 MiB pieces took 3.5 s against 7.7 s
//! as the dump's `INSERT`s (docs/benchmarks.md). The dump format stays
//! SQL (`gunzip | mysql` keeps working); only the agent's own restore
//! sends a member's rows this way, and only where the result is provably
//! the same as the `INSERT`s would give:
//!
//! - The tuples the dump writes, `(1,'a\'b',NULL),(2,…)`, are already
//!   valid `LOAD DATA` input under `FIELDS TERMINATED BY ','
//!   OPTIONALLY ENCLOSED BY '\'' ESCAPED BY '\\' LINES STARTING BY '('
//!   TERMINATED BY '),'`: the escapes the dump writes (`\0 \n \r \\ \'
//!   \Z`, [`crate::dump::sql`]) mean the same byte in both, an unquoted
//!   `NULL` is NULL, and a line terminator inside a quoted field is data.
//!   So the member's bytes are sent as they are (a `,` after each
//!   statement's last tuple), never rewritten. [`count_rows`] accepts a
//!   statement only when every field is `NULL`, a plain number or a quoted
//!   string with those escapes; anything else (`_binary'…'`, `b'…'`,
//!   `X'…'`, an escape it does not know) keeps the member on `INSERT`.
//! - Only tables whose every column is of a type where a field's text and
//!   the `INSERT`'s literal become the same value ([`loadable_column`]):
//!   integers, DECIMAL and DOUBLE (the server converts the same digits),
//!   character strings in the sets the dump writes as plain text (the
//!   `CHARACTER SET utf8mb4` of the load is the member's `SET NAMES`),
//!   ENUM/SET by name, dates and times (strings in both). InnoDB base
//!   tables only: the load runs in a transaction it can take back.
//! - `LOAD DATA LOCAL` turns errors into warnings (the server cannot stop
//!   the client's stream), so a load that reports any warning, or a row
//!   count other than the tuples sent, is rolled back and the member's
//!   `INSERT` statements run instead, exactly as before: whatever the
//!   server would have said about a row, it says it to the `INSERT`.
//! - The server must allow it: `local_infile` (MariaDB's default ON;
//!   MySQL 8's default OFF, where every row goes by `INSERT`). The
//!   connection answers a file request only with the bytes of the load it
//!   is running (a one-shot handler); a request at any other time finds
//!   no handler and fails, so a server can never read a local file.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::RestoreError;
use crate::dump::sql::enum_members;
use crate::mysql::Failure;

/// Which tables a restore loads with `LOAD DATA`, and what it did.
#[derive(Debug, Default)]
pub struct Loading {
    /// `(database, table)` of the tables whose rows may be loaded, with
    /// the one character set of all their text columns when it is not
    /// utf8mb4 (see [`Batch::statement`]).
    tables: HashMap<(String, String), Option<&'static str>>,
    /// The server refused `LOAD DATA LOCAL` once: the rest go by INSERT.
    refused: AtomicBool,
    /// Members loaded, and members that fell back to their INSERTs.
    pub loaded: AtomicU64,
    pub fell_back: AtomicU64,
}

/// Server errors that mean `LOAD DATA LOCAL` is not allowed at all
/// (1148: not allowed with this version; 3948: disabled on one side).
const LOCAL_INFILE_REFUSED: &[u16] = &[1148, 3948];

impl Loading {
    /// Every row by INSERT.
    pub fn off() -> Loading {
        Loading::default()
    }

    /// Reads, after the schema is created, which of `databases`' tables
    /// may be loaded on this server.
    pub async fn plan(
        conn: &mut Conn,
        databases: &[String],
        target: &str,
    ) -> Result<Loading, RestoreError> {
        let query = |what: &'static str| {
            move |e: mysql_async::Error| RestoreError::Query {
                target: target.to_owned(),
                what,
                reason: Failure::of(&e),
            }
        };
        if databases.is_empty() {
            return Ok(Loading::off());
        }
        let local_infile: Option<i64> = conn
            .query_first("SELECT @@local_infile")
            .await
            .map_err(query("reading local_infile"))?;
        if local_infile != Some(1) {
            tracing::info!(
                target = %target,
                "the server's local_infile is OFF: rows are restored with INSERT statements (LOAD DATA is about twice as fast; see docs/benchmarks.md)"
            );
            return Ok(Loading::off());
        }
        let list = databases
            .iter()
            .map(|d| crate::dump::sql::string_literal(d))
            .collect::<Vec<_>>()
            .join(",");
        let rows: Vec<ColumnRow> = conn
            .query(format!(
                "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, t.ENGINE, t.TABLE_TYPE, c.DATA_TYPE, \
                 c.COLUMN_TYPE, c.CHARACTER_SET_NAME \
                 FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
                 ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                 WHERE c.TABLE_SCHEMA IN ({list})"
            ))
            .await
            .map_err(query("reading the restored tables' columns"))?;
        Ok(Loading {
            tables: loadable_tables(&rows),
            ..Loading::default()
        })
    }

    /// Whether the rows of `database`.`table` may go by `LOAD DATA`:
    /// `Some` with the table's one text character set other than utf8mb4,
    /// if it has one.
    pub fn allows(
        &self,
        database: Option<&str>,
        table: Option<&str>,
    ) -> Option<Option<&'static str>> {
        let (Some(d), Some(t)) = (database, table) else {
            return None;
        };
        if self.refused.load(Ordering::Relaxed) {
            return None;
        }
        self.tables.get(&(d.to_owned(), t.to_owned())).copied()
    }
}

/// `(schema, table, engine, table type, data type, column type, charset)`.
type ColumnRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
);

fn loadable_tables(rows: &[ColumnRow]) -> HashMap<(String, String), Option<&'static str>> {
    // Per table: loadable so far, and the character sets of its text columns.
    let mut tables: HashMap<(String, String), (bool, HashSet<String>)> = HashMap::new();
    for (schema, table, engine, table_type, data_type, column_type, charset) in rows {
        let entry = tables
            .entry((schema.clone(), table.clone()))
            .or_insert_with(|| (true, HashSet::new()));
        entry.0 &= engine
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("InnoDB"))
            && table_type == "BASE TABLE"
            && loadable_column(data_type, column_type, charset.as_deref());
        if let Some(charset) = charset {
            entry.1.insert(charset.to_ascii_lowercase());
        }
    }
    tables
        .into_iter()
        .filter(|(_, (loadable, _))| *loadable)
        .map(|(key, (_, charsets))| {
            let one = match charsets.iter().collect::<Vec<_>>().as_slice() {
                [only] => ASCII_SETS.iter().copied().find(|s| s == only),
                _ => None,
            };
            (key, one)
        })
        .collect()
}

/// Sets a load may be declared in instead of utf8mb4 when every byte sent
/// is ASCII, which each of them reads as the same characters: the server
/// then stores the field without converting it (a latin1 sysbench table
/// loaded 4.7 s against 5.5-6.4 s declared utf8mb4, MariaDB 10.11).
const ASCII_SETS: &[&str] = &["latin1", "utf8mb3", "utf8"];

/// Whether a column's `LOAD DATA` field and the dump's `INSERT` literal
/// store the same value (`information_schema.COLUMNS`' `DATA_TYPE`,
/// `COLUMN_TYPE`, `CHARACTER_SET_NAME`). Left out: FLOAT (a field goes
/// through DOUBLE differently than a decimal literal may), YEAR (`0` the
/// number and `'0'` the string differ), BIT, binary strings and spatial
/// values (written as `b'…'`/`_binary'…'`), JSON (MySQL's own type),
/// MariaDB's INET6/UUID/INET4, character sets the dump writes as hex, and
/// an ENUM with `''` as a member (the dump writes its index, which a field
/// would read as a name first).
pub fn loadable_column(data_type: &str, column_type: &str, charset: Option<&str>) -> bool {
    let data_type = data_type.to_ascii_lowercase();
    match data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
        | "numeric" | "double" | "real" => true,
        "date" | "datetime" | "timestamp" | "time" => true,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            let plain_set = charset.is_some_and(|c| {
                ["utf8mb4", "utf8mb3", "utf8", "latin1"].contains(&c.to_ascii_lowercase().as_str())
            });
            let empty_member = data_type == "enum"
                && enum_members(column_type).is_none_or(|m| m.iter().any(String::is_empty));
            plain_set && !empty_member
        }
        _ => false,
    }
}

/// An `INSERT INTO \`t\` (\`a\`,\`b\`) VALUES (…),(…)` of a data member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insert<'a> {
    /// `` `t` `` as the statement quotes it.
    pub table: &'a [u8],
    /// `` (`a`,`b`) `` as the statement lists them.
    pub columns: &'a [u8],
    pub column_count: usize,
    /// Where the tuples start in the statement.
    pub values_at: usize,
}

/// Reads the shape the dump writes ([`crate::dump::data`]); `None` for
/// any other statement.
pub fn parse_insert(statement: &[u8]) -> Option<Insert<'_>> {
    let rest = statement.strip_prefix(b"INSERT INTO ")?;
    let table_len = quoted_name_len(rest)?;
    let table = &rest[..table_len];
    let after = rest[table_len..].strip_prefix(b" ")?;
    if after.first() != Some(&b'(') {
        return None;
    }
    let mut at = 1;
    let mut column_count = 0;
    loop {
        at += quoted_name_len(&after[at..])?;
        column_count += 1;
        match after.get(at) {
            Some(b',') => at += 1,
            Some(b')') => {
                at += 1;
                break;
            }
            _ => return None,
        }
    }
    let columns = &after[..at];
    let tail = after[at..].strip_prefix(b" VALUES ")?;
    if tail.first() != Some(&b'(') {
        return None;
    }
    Some(Insert {
        table,
        columns,
        column_count,
        values_at: statement.len() - tail.len(),
    })
}

/// The length of the `` `name` `` (backticks doubled inside) at the start.
fn quoted_name_len(text: &[u8]) -> Option<usize> {
    if text.first() != Some(&b'`') {
        return None;
    }
    let mut i = 1;
    loop {
        match text.get(i)? {
            b'`' if text.get(i + 1) == Some(&b'`') => i += 2,
            b'`' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The number of tuples in `values` when each has exactly `columns`
/// fields, and each field is `NULL`, a plain number or a `'…'` string with
/// only the escapes the dump writes; `None` otherwise.
pub fn count_rows(values: &[u8], columns: usize) -> Option<u64> {
    let mut i = 0;
    let mut rows = 0u64;
    loop {
        if values.get(i) != Some(&b'(') {
            return None;
        }
        i += 1;
        for field in 0..columns {
            if field > 0 {
                if values.get(i) != Some(&b',') {
                    return None;
                }
                i += 1;
            }
            i += field_len(&values[i..])?;
        }
        if values.get(i) != Some(&b')') {
            return None;
        }
        i += 1;
        rows += 1;
        match values.get(i) {
            None => return Some(rows),
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
}

/// The length of one field at the start of `text`.
fn field_len(text: &[u8]) -> Option<usize> {
    match text.first()? {
        b'\'' => {
            let mut i = 1;
            loop {
                // Runs without a quote or backslash, in one go.
                i += text[i..].iter().position(|&b| b == b'\'' || b == b'\\')?;
                if text[i] == b'\'' {
                    return Some(i + 1);
                }
                match text.get(i + 1)? {
                    b'0' | b'n' | b'r' | b'Z' | b'\\' | b'\'' => i += 2,
                    _ => return None,
                }
            }
        }
        b'N' => text.starts_with(b"NULL").then_some(4),
        _ => number_len(text),
    }
}

/// `-?digits(.digits)?([eE][+-]?digits)?`, as the server prints numbers.
fn number_len(text: &[u8]) -> Option<usize> {
    let digits = |from: usize| {
        text[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(text.first() == Some(&b'-'));
    let whole = digits(i);
    if whole == 0 {
        return None;
    }
    i += whole;
    if text.get(i) == Some(&b'.') {
        let fraction = digits(i + 1);
        if fraction == 0 {
            return None;
        }
        i += 1 + fraction;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exponent = digits(i);
        if exponent == 0 {
            return None;
        }
        i += exponent;
    }
    Some(i)
}

/// The rows of consecutive INSERTs into one table with one column list.
pub struct Batch<'a> {
    /// The table's one text character set other than utf8mb4, if any.
    ascii_set: Option<&'static str>,
    table: &'a [u8],
    columns: &'a [u8],
    /// The statements, to run as they are if the load is refused.
    pub statements: Vec<&'a [u8]>,
    /// Each statement's tuples, as slices of the member.
    pieces: Vec<Bytes>,
    rows: u64,
}

impl<'a> Batch<'a> {
    pub fn new(insert: &Insert<'a>, ascii_set: Option<&'static str>) -> Batch<'a> {
        Batch {
            ascii_set,
            table: insert.table,
            columns: insert.columns,
            statements: Vec::new(),
            pieces: Vec::new(),
            rows: 0,
        }
    }

    /// Whether `insert` goes into this batch's table and columns.
    pub fn takes(&self, insert: &Insert<'_>) -> bool {
        self.table == insert.table && self.columns == insert.columns
    }

    /// Adds a statement whose tuples are `values` (a slice of the member).
    pub fn push(&mut self, statement: &'a [u8], values: Bytes, rows: u64) {
        self.statements.push(statement);
        self.pieces.push(values);
        self.rows += rows;
    }

    /// The `LOAD DATA` statement for this batch. The member's text is
    /// utf8mb4 (its `SET NAMES`); when every byte is ASCII and the table's
    /// text is all in one other ASCII-compatible set, the load is declared
    /// in that set, which reads the same bytes as the same characters and
    /// spares the server a conversion per field.
    pub fn statement(&self) -> String {
        let charset = match self.ascii_set {
            Some(set) if self.pieces.iter().all(|p| p.is_ascii()) => set,
            _ => "utf8mb4",
        };
        format!(
            "LOAD DATA LOCAL INFILE 'keeper-member' INTO TABLE {} CHARACTER SET {charset} \
             FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\\'' ESCAPED BY '\\\\' \
             LINES STARTING BY '(' TERMINATED BY '),' {}",
            String::from_utf8_lossy(self.table),
            String::from_utf8_lossy(self.columns)
        )
    }
}

/// What became of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    /// Every row is stored, committed.
    Rows(u64),
    /// Nothing is stored (rolled back); run the INSERTs. Says why.
    Refused(String),
}

/// Loads `batch` in one transaction on `conn`; a load with any warning or
/// a different row count is rolled back. An error of the connection
/// itself is returned as it is.
pub async fn load(
    conn: &mut Conn,
    loading: &Loading,
    batch: &Batch<'_>,
) -> Result<Loaded, mysql_async::Error> {
    conn.query_drop("START TRANSACTION").await?;
    let mut pieces = Vec::with_capacity(batch.pieces.len() * 2);
    for piece in &batch.pieces {
        pieces.push(Ok(piece.clone()));
        pieces.push(Ok(Bytes::from_static(b",")));
    }
    conn.set_infile_handler(async move { Ok(futures::stream::iter(pieces).boxed()) });
    let outcome = match conn.query_drop(batch.statement()).await {
        Ok(()) => {
            let (stored, warnings) = (conn.affected_rows(), conn.get_warnings());
            if stored == batch.rows && warnings == 0 {
                conn.query_drop("COMMIT").await?;
                return Ok(Loaded::Rows(stored));
            }
            format!(
                "{stored} of {} rows stored with {warnings} warnings",
                batch.rows
            )
        }
        Err(mysql_async::Error::Server(e)) => {
            if LOCAL_INFILE_REFUSED.contains(&e.code) {
                loading.refused.store(true, Ordering::Relaxed);
            }
            format!("the server said {} ({})", e.code, e.message)
        }
        Err(other) => return Err(other),
    };
    conn.query_drop("ROLLBACK").await?;
    Ok(Loaded::Refused(outcome))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_dumps_insert_is_read_exactly() {
        let s = b"INSERT INTO `or``ders` (`id`,`n``ote`) VALUES (1,'a'),(2,NULL)";
        let insert = parse_insert(s).unwrap();
        assert_eq!(insert.table, b"`or``ders`");
        assert_eq!(insert.columns, b"(`id`,`n``ote`)");
        assert_eq!(insert.column_count, 2);
        assert_eq!(&s[insert.values_at..], b"(1,'a'),(2,NULL)");
        for other in [
            &b"INSERT INTO `t` VALUES (1)"[..],
            b"INSERT INTO t (`a`) VALUES (1)",
            b"INSERT INTO `t` (`a`) SELECT 1",
            b"INSERT INTO `t` (`a` VALUES (1)",
            b"REPLACE INTO `t` (`a`) VALUES (1)",
            b"SET NAMES utf8mb4",
        ] {
            assert_eq!(
                parse_insert(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn rows_are_counted_only_when_every_field_means_the_same_in_a_load() {
        assert_eq!(count_rows(b"(1,'a')", 2), Some(1));
        assert_eq!(
            count_rows(
                b"(-1.5e-7,'it\\'s'),(18446744073709551615,''),(0,NULL),(2,'\\0\\n\\r\\Z\\\\'),(3,'),(,\\'')",
                2
            ),
            Some(5)
        );
        // Not the dump's plain fields: binary, bit, hex, introducers, other escapes.
        for refused in [
            &b"(1,_binary'a')"[..],
            b"(1,b'0101')",
            b"(1,X'41')",
            b"(1,_latin1 X'e9')",
            b"(1,'\\%')",
            b"(1,'\\N')",
            b"(1,0x41)",
            b"(1,'a'",
            b"(1,'a)",
            b"(1,'a'),",
            b"(1)",
            b"(1,'a',3)",
            b"(1,'a') (2,'b')",
            b"(1.,'a')",
            b"(1e,'a')",
            b"(Null,'a')",
            b"(TRUE,'a')",
        ] {
            assert_eq!(
                count_rows(refused, 2),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn only_types_whose_text_stores_the_same_value_are_loadable() {
        for (data_type, column_type, charset) in [
            ("int", "int(11)", None),
            ("bigint", "bigint(20) unsigned", None),
            ("decimal", "decimal(10,2)", None),
            ("double", "double", None),
            ("datetime", "datetime(6)", None),
            ("timestamp", "timestamp", None),
            ("char", "char(120)", Some("latin1")),
            ("varchar", "varchar(10)", Some("utf8mb4")),
            ("enum", "enum('a','b')", Some("utf8mb4")),
            ("set", "set('a','b')", Some("utf8mb3")),
        ] {
            assert!(
                loadable_column(data_type, column_type, charset),
                "{data_type}"
            );
        }
        for (data_type, column_type, charset) in [
            ("float", "float", None),
            ("year", "year(4)", None),
            ("bit", "bit(3)", None),
            ("blob", "blob", None),
            ("varbinary", "varbinary(3)", None),
            ("geometry", "geometry", None),
            ("json", "json", Some("utf8mb4")),
            ("inet6", "inet6", None),
            ("char", "char(3)", Some("sjis")),
            ("varchar", "varchar(3)", Some("binary")),
            ("varchar", "varchar(3)", None),
            ("enum", "enum('','a')", Some("utf8mb4")),
        ] {
            assert!(
                !loadable_column(data_type, column_type, charset),
                "{data_type} {charset:?}"
            );
        }
    }

    #[test]
    fn a_table_is_loadable_only_when_every_column_is_and_it_is_innodb() {
        let column = |t: &str,
                      engine: &str,
                      kind: &str,
                      data_type: &str,
                      charset: Option<&str>|
         -> ColumnRow {
            (
                "db".into(),
                t.into(),
                Some(engine.into()),
                kind.into(),
                data_type.into(),
                data_type.into(),
                charset.map(Into::into),
            )
        };
        let col = |t: &str, engine: &str, kind: &str, data_type: &str| {
            column(t, engine, kind, data_type, None)
        };
        let rows = vec![
            col("plain", "InnoDB", "BASE TABLE", "int"),
            col("plain", "InnoDB", "BASE TABLE", "datetime"),
            col("mixed", "InnoDB", "BASE TABLE", "int"),
            col("mixed", "InnoDB", "BASE TABLE", "blob"),
            col("myisam", "MyISAM", "BASE TABLE", "int"),
            col("versioned", "InnoDB", "SYSTEM VERSIONED", "int"),
            col("seq", "InnoDB", "SEQUENCE", "bigint"),
        ];
        let tables = loadable_tables(&rows);
        assert_eq!(
            tables,
            HashMap::from([(("db".to_owned(), "plain".to_owned()), None)])
        );
        let text =
            |t: &str, charset: &str| column(t, "InnoDB", "BASE TABLE", "varchar", Some(charset));
        let rows = vec![
            text("latin", "latin1"),
            col("latin", "InnoDB", "BASE TABLE", "int"),
            text("both", "latin1"),
            text("both", "utf8mb4"),
            text("wide", "utf8mb4"),
        ];
        assert_eq!(
            loadable_tables(&rows),
            HashMap::from([
                (("db".to_owned(), "latin".to_owned()), Some("latin1")),
                (("db".to_owned(), "both".to_owned()), None),
                (("db".to_owned(), "wide".to_owned()), None),
            ])
        );
    }

    #[test]
    fn the_load_names_the_inserts_table_and_columns() {
        let s = b"INSERT INTO `t` (`a`,`b`) VALUES (1,2)";
        let insert = parse_insert(s).unwrap();
        let mut batch = Batch::new(&insert, Some("latin1"));
        batch.push(s, Bytes::from_static(b"(1,'\xc3\xa9')"), 1);
        assert_eq!(
            batch.statement(),
            "LOAD DATA LOCAL INFILE 'keeper-member' INTO TABLE `t` CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\\'' ESCAPED BY '\\\\' \
             LINES STARTING BY '(' TERMINATED BY '),' (`a`,`b`)",
            "é is not ASCII: the member's own utf8mb4"
        );
        let mut ascii = Batch::new(&insert, Some("latin1"));
        ascii.push(s, Bytes::from_static(b"(1,'e')"), 1);
        assert!(ascii.statement().contains(" CHARACTER SET latin1 "));
        let mut unknown = Batch::new(&insert, None);
        unknown.push(s, Bytes::from_static(b"(1,'e')"), 1);
        assert!(unknown.statement().contains(" CHARACTER SET utf8mb4 "));
    }
}
