//! The definition digests of a database's objects ([`crate::digest`]): the
//! same queries on the source, at backup time inside its snapshot, and on a
//! restored server (`verify --restore`), so that the two lists can be
//! compared object by object.
//!
//! Every object is described by what the server says of it: the catalog's
//! `SHOW CREATE TABLE` (a sequence's with its state) for tables and
//! sequences, read once for the dump itself, and `information_schema` for views,
//! routines (with their parameters), triggers and events, taking the
//! columns MySQL 8 and MariaDB both have and leaving out what a restore
//! changes by nature (creation and alteration times, the originating server
//! id). Creation context (`sql_mode`, client character set, collations) and
//! definer are part of each definition.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use super::catalog::Database;
use super::error::{BackupError, SqlContext};
use super::sql::string_literal;
use crate::digest;
use crate::manifest::DefinitionDigest;

const VIEWS: &str = "SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, IS_UPDATABLE, DEFINER, \
     SECURITY_TYPE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION \
     FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ";
const ROUTINES: &str = "SELECT ROUTINE_NAME, LOWER(ROUTINE_TYPE), ROUTINE_DEFINITION, DTD_IDENTIFIER, \
     IS_DETERMINISTIC, SQL_DATA_ACCESS, SECURITY_TYPE, SQL_MODE, ROUTINE_COMMENT, DEFINER, \
     CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION \
     FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ";
const PARAMETERS: &str = "SELECT SPECIFIC_NAME, LOWER(ROUTINE_TYPE), ORDINAL_POSITION, PARAMETER_MODE, \
     PARAMETER_NAME, DTD_IDENTIFIER, CHARACTER_SET_NAME, COLLATION_NAME \
     FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = ";
const TRIGGERS: &str = "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_ORDER, \
     ACTION_TIMING, ACTION_STATEMENT, SQL_MODE, DEFINER, CHARACTER_SET_CLIENT, \
     COLLATION_CONNECTION, DATABASE_COLLATION \
     FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ";
const EVENTS: &str = "SELECT EVENT_NAME, DEFINER, TIME_ZONE, EVENT_DEFINITION, EVENT_TYPE, EXECUTE_AT, \
     INTERVAL_VALUE, INTERVAL_FIELD, SQL_MODE, STARTS, ENDS, STATUS, ON_COMPLETION, \
     EVENT_COMMENT, CHARACTER_SET_CLIENT, COLLATION_CONNECTION, DATABASE_COLLATION \
     FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ";

/// A column as bytes (`NULL` as a marker no text can be).
fn column(row: &Row, i: usize) -> Vec<u8> {
    match row.as_ref(i) {
        Some(Value::Bytes(b)) => b.clone(),
        Some(Value::NULL) | None => b"\0NULL".to_vec(),
        Some(other) => other.as_sql(false).into_bytes(),
    }
}

fn name(row: &Row, i: usize) -> String {
    String::from_utf8_lossy(&column(row, i)).into_owned()
}

/// The digests of the tables and sequences of `database` (as the catalog
/// read them: no query of its own) and of its every view, routine, trigger
/// and event (one query per kind), sorted by kind and name.
///
/// # Errors
/// [`BackupError`] when a query fails.
pub async fn digests(
    conn: &mut Conn,
    cx: &SqlContext,
    database: &Database,
) -> Result<Vec<DefinitionDigest>, BackupError> {
    let during = format!("reading the definitions of `{}`", database.name);
    let lit = string_literal(&database.name);
    let mut out: Vec<DefinitionDigest> = database
        .tables
        .iter()
        .map(|t| entry("table", t.name.clone(), [t.create.as_bytes().to_vec()]))
        .collect();
    for row in fetch(conn, cx, format!("{VIEWS}{lit}"), &during).await? {
        out.push(entry(
            "view",
            name(&row, 0),
            (1..8).map(|i| column(&row, i)),
        ));
    }
    // A routine's parameters (their character sets included) belong to it.
    let mut parameters: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
    for row in fetch(conn, cx, format!("{PARAMETERS}{lit}"), &during).await? {
        let key = (name(&row, 1), name(&row, 0));
        let list = parameters.entry(key).or_default();
        list.extend((2..8).map(|i| column(&row, i)));
    }
    for row in fetch(conn, cx, format!("{ROUTINES}{lit}"), &during).await? {
        let (kind, routine) = (name(&row, 1), name(&row, 0));
        let mut parts: Vec<Vec<u8>> = (2..13).map(|i| column(&row, i)).collect();
        parts.extend(
            parameters
                .remove(&(kind.clone(), routine.clone()))
                .unwrap_or_default(),
        );
        out.push(entry_owned(kind, routine, parts));
    }
    for row in fetch(conn, cx, format!("{TRIGGERS}{lit}"), &during).await? {
        out.push(entry(
            "trigger",
            name(&row, 0),
            (1..11).map(|i| column(&row, i)),
        ));
    }
    for row in fetch(conn, cx, format!("{EVENTS}{lit}"), &during).await? {
        out.push(entry(
            "event",
            name(&row, 0),
            (1..17).map(|i| column(&row, i)),
        ));
    }
    out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    Ok(out)
}

async fn fetch(
    conn: &mut Conn,
    cx: &SqlContext,
    sql: String,
    during: &str,
) -> Result<Vec<Row>, BackupError> {
    conn.query(sql).await.map_err(|e| cx.err(during, e))
}

fn entry(kind: &str, name: String, parts: impl IntoIterator<Item = Vec<u8>>) -> DefinitionDigest {
    entry_owned(kind.to_owned(), name, parts.into_iter().collect())
}

fn entry_owned(kind: String, name: String, parts: Vec<Vec<u8>>) -> DefinitionDigest {
    DefinitionDigest {
        digest: digest::definition(parts.iter().map(Vec::as_slice)),
        kind,
        name,
    }
}
