//! What is in the databases to dump, read from `information_schema` and the
//! `SHOW CREATE …` statements, and rendered as the schema, routines, views,
//! triggers and events members' SQL.

use std::collections::{BTreeMap, HashMap};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use super::error::{BackupError, SqlContext};
use super::sql::{self, ColumnClass, string_literal};
use crate::manifest::{DataSkipped, Difference, TableKind};
use crate::mysql::ident;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub class: ColumnClass,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub database: String,
    pub name: String,
    pub kind: TableKind,
    pub engine: String,
    pub transactional: bool,
    /// Set when the engine does not own its rows: the definition is dumped,
    /// the data is not.
    pub data_skipped: Option<DataSkipped>,
    /// Columns that take values on INSERT: generated columns are left out,
    /// invisible ones are in (the list is explicit).
    pub columns: Vec<Column>,
    /// A single-column integer primary key, used to split the table into
    /// ranges that workers dump in parallel.
    pub int_pk: Option<String>,
    pub estimated_bytes: u64,
    /// A system-versioned table (MariaDB): its rows are read with their
    /// history (`FOR SYSTEM_TIME ALL`), its row start and end among the
    /// columns, and written back with `system_versioning_insert_history`.
    pub history: bool,
    /// `CREATE TABLE`/`CREATE SEQUENCE`, plus a sequence's `SETVAL`.
    pub create: String,
    /// Secondary index clauses of `create` a restore may build after the
    /// rows ([`crate::table_ddl`]), for the manifest.
    pub deferred_indexes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct View {
    pub database: String,
    pub name: String,
    pub create: String,
    /// The client character set and connection collation it was created under.
    pub context: sql::CreationContext,
}

#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub charset: String,
    pub collation: String,
    pub create: String,
    pub tables: Vec<Table>,
    pub views: Vec<View>,
    /// Rendered `CREATE FUNCTION/PROCEDURE` blocks, each under its sql_mode.
    pub routines: Vec<String>,
    pub triggers: Vec<String>,
    pub events: Vec<String>,
    /// What a restore cannot bring back exactly, for the manifest.
    pub differences: Vec<Difference>,
}

/// Engines whose tables have no MVCC snapshot: read under the lock.
fn is_transactional(engine: &str) -> bool {
    matches!(
        engine.to_ascii_lowercase().as_str(),
        "innodb" | "xtradb" | "rocksdb" | "tokudb" | "ndbcluster" | "ndb"
    )
}

/// Engines that do not own their rows, by the name `information_schema`
/// reports (MariaDB says `MRG_MyISAM`, MySQL `MRG_MYISAM`). Their data is
/// never dumped: a MERGE table's rows are its MyISAM children's, which are
/// dumped themselves (restoring both stores them twice); FEDERATED, SPIDER
/// and CONNECT read another server or a file (restoring would write into
/// it); BLACKHOLE keeps nothing.
pub fn data_skipped(engine: &str) -> Option<DataSkipped> {
    match engine.to_ascii_uppercase().as_str() {
        "MRG_MYISAM" | "MERGE" => Some(DataSkipped::UnderlyingTables),
        "FEDERATED" | "SPIDER" | "CONNECT" => Some(DataSkipped::ExternalSource),
        "BLACKHOLE" => Some(DataSkipped::NoStorage),
        _ => None,
    }
}

fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

/// A definition from a `SHOW CREATE` row (`statement`): its text (column
/// `text_at`) and its creation context (columns from `context_at`). What
/// cannot be created again exactly is logged and added to `differences`
/// ([`client_difference`]).
fn definition(
    row: &Row,
    statement: &str,
    text_at: usize,
    context_at: usize,
    with_database: bool,
    differences: &mut Vec<Difference>,
) -> Result<(String, sql::CreationContext), BackupError> {
    let create = strict_text(row, text_at, statement)?;
    let context = creation_context(row, context_at, with_database);
    if let Some(difference) = client_difference(statement, &context, &create) {
        tracing::warn!(
            object = %difference.object,
            "{}", difference.difference
        );
        differences.push(difference);
    }
    Ok((create, context))
}

/// The difference of a definition that cannot be created again under its
/// own client character set (its text is not ASCII and the set is not
/// UTF-8): it comes back with utf8mb4 as that set, the rest of its context
/// kept. `statement` is the `SHOW CREATE …` that read it.
pub fn client_difference(
    statement: &str,
    context: &sql::CreationContext,
    create: &str,
) -> Option<Difference> {
    if context.keeps_client(create) {
        return None;
    }
    Some(Difference {
        object: statement
            .strip_prefix("SHOW CREATE ")
            .unwrap_or(statement)
            .to_owned(),
        difference: format!(
            "created under character_set_client {}, restored under utf8mb4: its definition is not ASCII and the dump is UTF-8 (connection and database collations kept)",
            context.client.as_deref().unwrap_or_default()
        ),
    })
}

/// The creation context in the columns of a `SHOW CREATE` row from `first`
/// on: `character_set_client`, `collation_connection` and (for stored
/// programs, `with_database`) `Database Collation`.
fn creation_context(row: &Row, first: usize, with_database: bool) -> sql::CreationContext {
    // Names of character sets and collations: anything else is not used.
    let name = |i| {
        text(row, i)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    };
    sql::CreationContext {
        client: name(first),
        connection: name(first + 1),
        database: if with_database { name(first + 2) } else { None },
    }
}

fn number(row: &Row, i: usize) -> u64 {
    text(row, i).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Reads catalog text strictly: DDL that is not valid UTF-8 would be
/// corrupted by a lossy conversion, so it is an error, unless only literals
/// with a character set introducer are not UTF-8 (a view's definition holds
/// them as raw bytes): those are written as hex
/// ([`sql::introduced_literals_as_hex`]).
fn strict_text(row: &Row, i: usize, what: &str) -> Result<String, BackupError> {
    match row.as_ref(i) {
        Some(Value::Bytes(b)) => match std::str::from_utf8(b) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => sql::introduced_literals_as_hex(b).ok_or_else(|| BackupError::NotUtf8 {
                what: what.to_owned(),
            }),
        },
        Some(Value::NULL) | None => Err(BackupError::NoDefinition {
            what: what.to_owned(),
        }),
        Some(other) => Ok(other.as_sql(true)),
    }
}

pub struct Catalog<'a> {
    pub conn: &'a mut Conn,
    pub cx: &'a SqlContext,
}

impl Catalog<'_> {
    async fn rows(&mut self, query: String, during: &str) -> Result<Vec<Row>, BackupError> {
        self.conn
            .query::<Row, _>(query)
            .await
            .map_err(|e| self.cx.err(during, e))
    }

    /// Every database name on the server, in order.
    pub async fn database_names(&mut self) -> Result<Vec<String>, BackupError> {
        let rows = self
            .rows(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME".into(),
                "listing databases",
            )
            .await?;
        Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
    }

    pub async fn database(&mut self, name: &str) -> Result<Database, BackupError> {
        let lit = string_literal(name);
        let q = ident(name);
        let during = format!("reading the schema of `{name}`");

        let row = self
            .rows(
                format!(
                    "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {lit}"
                ),
                &during,
            )
            .await?;
        let charset = row.first().and_then(|r| text(r, 0)).unwrap_or_default();
        let collation = row.first().and_then(|r| text(r, 1)).unwrap_or_default();
        let create_db = self
            .rows(format!("SHOW CREATE DATABASE {q}"), &during)
            .await?;
        let create_db = match create_db.first() {
            Some(r) => strict_text(r, 1, &format!("SHOW CREATE DATABASE {q}"))?,
            None => format!("CREATE DATABASE {q}"),
        };
        let create = create_db.replacen("CREATE DATABASE ", "CREATE DATABASE IF NOT EXISTS ", 1);

        let mut differences = Vec::new();
        let mut columns: HashMap<String, Vec<Column>> = HashMap::new();
        // Each table's AUTO_INCREMENT column, whose key a restore never defers.
        let mut auto_increment: HashMap<String, String> = HashMap::new();
        // The row start and end columns of system-versioned tables that name them.
        let mut periods: HashMap<String, [Option<String>; 2]> = HashMap::new();
        // System-versioned tables whose period is by transaction id.
        let mut by_transaction: Vec<String> = Vec::new();
        for r in self
            .rows(
                format!(
                    "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COALESCE(GENERATION_EXPRESSION, ''), EXTRA, CHARACTER_SET_NAME, COLUMN_TYPE \
                     FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {lit} ORDER BY TABLE_NAME, ORDINAL_POSITION"
                ),
                &during,
            )
            .await?
        {
            let (Some(table), Some(column)) = (text(&r, 0), text(&r, 1)) else {
                continue;
            };
            let data_type = text(&r, 2).unwrap_or_default();
            let generation = text(&r, 3).unwrap_or_default();
            let extra = text(&r, 4).unwrap_or_default().to_ascii_uppercase();
            let charset = text(&r, 5);
            if extra.contains("AUTO_INCREMENT") {
                auto_increment.insert(table.clone(), column.clone());
            }
            // MySQL marks expression defaults DEFAULT_GENERATED: those are
            // ordinary columns; only VIRTUAL/STORED/PERSISTENT ones are computed.
            let generated = !generation.is_empty()
                || extra.contains("VIRTUAL GENERATED")
                || extra.contains("STORED GENERATED")
                || extra.contains("PERSISTENT GENERATED");
            if generated {
                // A system-versioned table's explicit row start and end:
                // written back as the history's own times, not computed.
                let period = generation.to_ascii_uppercase();
                if period == "ROW START" || period == "ROW END" {
                    let slot = usize::from(period == "ROW END");
                    if slot == 0 && data_type.eq_ignore_ascii_case("bigint") {
                        by_transaction.push(table.clone());
                    }
                    periods.entry(table.clone()).or_default()[slot] = Some(column);
                }
                columns.entry(table).or_default();
                continue;
            }
            columns.entry(table).or_default().push(Column {
                name: column,
                class: ColumnClass::of_column(
                    &data_type,
                    &text(&r, 6).unwrap_or_default(),
                    charset.as_deref(),
                ),
            });
        }

        let mut pk: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self
            .rows(
                format!(
                    "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                     WHERE TABLE_SCHEMA = {lit} AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION"
                ),
                &during,
            )
            .await?
        {
            if let (Some(t), Some(c)) = (text(&r, 0), text(&r, 1)) {
                pk.entry(t).or_default().push(c);
            }
        }
        let mut data_types: HashMap<(String, String), String> = HashMap::new();
        for r in self
            .rows(
                format!(
                    "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {lit}"
                ),
                &during,
            )
            .await?
        {
            if let (Some(t), Some(c), Some(d)) = (text(&r, 0), text(&r, 1), text(&r, 2)) {
                data_types.insert((t, c), d.to_ascii_lowercase());
            }
        }

        // Tables on either side of a foreign key, whose indexes all stay in
        // their CREATE (a referenced table needs an index on the referenced
        // columns from the moment a child exists; the parent may be in
        // another database, which only the catalog tells).
        let mut in_foreign_keys: std::collections::HashSet<String> = Default::default();
        for r in self
            .rows(
                format!(
                    "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME \
                     FROM information_schema.REFERENTIAL_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA = {lit} OR UNIQUE_CONSTRAINT_SCHEMA = {lit}"
                ),
                &during,
            )
            .await?
        {
            for (schema, table) in [(0, 1), (2, 3)] {
                if let (Some(s), Some(t)) = (text(&r, schema), text(&r, table))
                    && s == name
                {
                    in_foreign_keys.insert(t);
                }
            }
        }

        let mut tables = Vec::new();
        let mut views = Vec::new();
        for r in self
            .rows(
                format!(
                    "SELECT TABLE_NAME, TABLE_TYPE, COALESCE(ENGINE, ''), COALESCE(DATA_LENGTH, 0) \
                     FROM information_schema.TABLES WHERE TABLE_SCHEMA = {lit} ORDER BY TABLE_NAME"
                ),
                &during,
            )
            .await?
        {
            let Some(tname) = text(&r, 0) else { continue };
            let ttype = text(&r, 1).unwrap_or_default().to_ascii_uppercase();
            let qualified = format!("{q}.{}", ident(&tname));
            if ttype == "VIEW" || ttype == "SYSTEM VIEW" {
                let rows = self
                    .rows(format!("SHOW CREATE VIEW {qualified}"), &during)
                    .await?;
                let Some(row) = rows.first() else { continue };
                let statement = format!("SHOW CREATE VIEW {qualified}");
                let (create, context) = definition(row, &statement, 1, 2, false, &mut differences)?;
                views.push(View {
                    database: name.to_owned(),
                    name: tname,
                    create,
                    context,
                });
                continue;
            }
            let engine = text(&r, 2).unwrap_or_default();
            if ttype == "SEQUENCE" {
                let rows = self
                    .rows(format!("SHOW CREATE SEQUENCE {qualified}"), &during)
                    .await?;
                let Some(row) = rows.first() else { continue };
                let create_seq = strict_text(row, 1, &format!("SHOW CREATE SEQUENCE {qualified}"))?;
                let state = self
                    .rows(
                        format!("SELECT next_not_cached_value, cycle_count FROM {qualified}"),
                        &during,
                    )
                    .await?;
                let next = state.first().and_then(|r| text(r, 0)).unwrap_or_default();
                let round = state.first().and_then(|r| text(r, 1)).unwrap_or_default();
                let mut create = format!("{create_seq};\n");
                create.push_str(&sql::sequence_state(&ident(&tname), &next, &round));
                tables.push(Table {
                    database: name.to_owned(),
                    name: tname,
                    kind: TableKind::Sequence,
                    transactional: is_transactional(&engine),
                    data_skipped: None,
                    engine,
                    columns: Vec::new(),
                    int_pk: None,
                    estimated_bytes: 0,
                    history: false,
                    create,
                    deferred_indexes: Vec::new(),
                });
                continue;
            }
            let rows = self
                .rows(format!("SHOW CREATE TABLE {qualified}"), &during)
                .await?;
            let Some(row) = rows.first() else { continue };
            let create = format!(
                "{};\n",
                strict_text(row, 1, &format!("SHOW CREATE TABLE {qualified}"))?
            );
            let int_pk = match pk.get(&tname).map(Vec::as_slice) {
                Some([only]) => data_types
                    .get(&(tname.clone(), only.clone()))
                    .filter(|t| {
                        matches!(
                            t.as_str(),
                            "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
                        )
                    })
                    .map(|_| only.clone()),
                _ => None,
            };
            let versioned = ttype == "SYSTEM VERSIONED";
            // A period by transaction id holds ids of this server's
            // transaction_registry, and no server takes such rows on
            // insert (system_versioning_insert_history refuses them):
            // only the current rows are dumped, and the backup says so.
            let history = versioned && !by_transaction.contains(&tname);
            if versioned && !history {
                let difference = Difference {
                    object: format!("TABLE {qualified}"),
                    difference: "system-versioned by transaction id: no server can insert its history (row start and end are this server's transaction ids), so only its current rows come back, with new row start and end".to_owned(),
                };
                tracing::warn!(object = %difference.object, "{}", difference.difference);
                differences.push(difference);
            }
            if history && sql::history_partitions_by_limit(&create) {
                let difference = Difference {
                    object: format!("TABLE {qualified}"),
                    difference: "its history is partitioned by SYSTEM_TIME LIMIT: every row version comes back, but the server files restored history rows in its history partitions itself, so each partition may hold other rows than the source's".to_owned(),
                };
                tracing::warn!(object = %difference.object, "{}", difference.difference);
                differences.push(difference);
            }
            let mut table_columns = columns.remove(&tname).unwrap_or_default();
            let deferred_indexes = if engine.eq_ignore_ascii_case("InnoDB")
                && !versioned
                && !in_foreign_keys.contains(&tname)
            {
                // Generated columns are not among the insertable ones.
                crate::table_ddl::deferrable_indexes(
                    &create,
                    &|c| table_columns.iter().any(|col| col.name == c),
                    auto_increment.get(&tname).map(String::as_str),
                )
            } else {
                Vec::new()
            };
            if history {
                // Implicit ones are the hidden ROW_START and ROW_END.
                let [start, end] = periods.remove(&tname).unwrap_or_default();
                for (column, implicit) in [(start, "ROW_START"), (end, "ROW_END")] {
                    table_columns.push(Column {
                        name: column.unwrap_or_else(|| implicit.to_owned()),
                        class: ColumnClass::Text,
                    });
                }
            }
            tables.push(Table {
                database: name.to_owned(),
                columns: table_columns,
                history,
                name: tname,
                kind: TableKind::Table,
                transactional: is_transactional(&engine),
                data_skipped: data_skipped(&engine),
                engine,
                int_pk,
                estimated_bytes: number(&r, 3),
                create,
                deferred_indexes,
            });
        }

        let mut routines = Vec::new();
        for r in self
            .rows(
                format!(
                    "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES \
                     WHERE ROUTINE_SCHEMA = {lit} ORDER BY ROUTINE_TYPE, ROUTINE_NAME"
                ),
                &during,
            )
            .await?
        {
            let (Some(rname), Some(rtype)) = (text(&r, 0), text(&r, 1)) else {
                continue;
            };
            let rtype = rtype.to_ascii_uppercase();
            if !matches!(
                rtype.as_str(),
                "FUNCTION" | "PROCEDURE" | "PACKAGE" | "PACKAGE BODY"
            ) {
                continue;
            }
            let stmt = format!("SHOW CREATE {rtype} {q}.{}", ident(&rname));
            let rows = self.rows(stmt.clone(), &during).await?;
            let Some(row) = rows.first() else { continue };
            let mode = text(row, 1).unwrap_or_default();
            let (create, context) = definition(row, &stmt, 2, 3, true, &mut differences)?;
            routines.push(sql::stored_program(
                &mode,
                &context,
                (name, &collation),
                &create,
            ));
        }

        let mut triggers = Vec::new();
        for r in self
            .rows(
                format!(
                    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                     WHERE TRIGGER_SCHEMA = {lit} ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER"
                ),
                &during,
            )
            .await?
        {
            let Some(tname) = text(&r, 0) else { continue };
            let stmt = format!("SHOW CREATE TRIGGER {q}.{}", ident(&tname));
            let rows = self.rows(stmt.clone(), &during).await?;
            let Some(row) = rows.first() else { continue };
            let mode = text(row, 1).unwrap_or_default();
            let (create, context) = definition(row, &stmt, 2, 3, true, &mut differences)?;
            triggers.push(sql::stored_program(
                &mode,
                &context,
                (name, &collation),
                &create,
            ));
        }

        let mut events = Vec::new();
        // Whether an event's one time (AT) or end (ENDS) has passed, read in
        // the event's own time zone (a zone the server cannot convert
        // counts as passed), and the moment it was last created or altered.
        for r in self
            .rows(
                format!(
                    "SELECT EVENT_NAME, UNIX_TIMESTAMP(LAST_ALTERED), \
                     CASE WHEN COALESCE(EXECUTE_AT, ENDS) IS NULL THEN 0 \
                     ELSE COALESCE(CONVERT_TZ(COALESCE(EXECUTE_AT, ENDS), TIME_ZONE, '+00:00') <= UTC_TIMESTAMP(), 1) END \
                     FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {lit} ORDER BY EVENT_NAME"
                ),
                &during,
            )
            .await?
        {
            let Some(ename) = text(&r, 0) else { continue };
            let altered = text(&r, 1);
            let passed = text(&r, 2).is_some_and(|p| p != "0");
            let stmt = format!("SHOW CREATE EVENT {q}.{}", ident(&ename));
            let rows = self.rows(stmt.clone(), &during).await?;
            let Some(row) = rows.first() else { continue };
            let mode = text(row, 1).unwrap_or_default();
            let tz = text(row, 2).unwrap_or_else(|| "SYSTEM".into());
            let (create, context) = definition(row, &stmt, 3, 4, true, &mut differences)?;
            let (clock, clock_back) = sql::event_clock(passed, altered.as_deref());
            // An event's schedule is read in its own time zone.
            events.push(format!(
                "SET SESSION time_zone = {};\n{clock}{}{clock_back}SET SESSION time_zone = '+00:00';\n",
                string_literal(&tz),
                sql::stored_program(&mode, &context, (name, &collation), &create)
            ));
        }

        Ok(Database {
            name: name.to_owned(),
            charset,
            collation,
            create,
            tables,
            views,
            routines,
            triggers,
            events,
            differences,
        })
    }
}

/// Orders views so that each comes after the views it reads.
///
/// MariaDB 10.11 has no `VIEW_TABLE_USAGE` and mysqldump's placeholder
/// tables would leave extra objects to clean up on restore, so the order
/// comes from the definitions themselves: the server stores them
/// canonicalised, every name quoted with backticks (qualified by database on
/// MySQL, unqualified for the same database on MariaDB). A view depends on
/// another when its definition names it. A false match (a column with a
/// view's name) only adds an ordering constraint; a cycle, which real views
/// cannot have, is broken by name order.
pub fn order_views(views: Vec<View>) -> Vec<View> {
    let n = views.len();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, v) in views.iter().enumerate() {
        for (j, w) in views.iter().enumerate() {
            if i != j && mentions(v, w) {
                deps[i].push(j);
            }
        }
    }
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = (0..n).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
        // Stuck only on a cycle: take the first remaining view.
        let Some(next) = ready.or_else(|| (0..n).find(|&i| !done[i])) else {
            break;
        };
        done[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<View>> = views.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

fn mentions(v: &View, w: &View) -> bool {
    let body = v
        .create
        .split_once(" AS ")
        .map(|(_, b)| b)
        .unwrap_or(&v.create);
    let name = ident(&w.name);
    let qualified = format!("{}.{name}", ident(&w.database));
    if body.contains(&qualified) {
        return true;
    }
    if v.database != w.database {
        return false;
    }
    // Unqualified: the name not preceded by a `.` (that would be a column
    // of some other table or a name in another database).
    let mut start = 0;
    while let Some(pos) = body[start..].find(&name) {
        let at = start + pos;
        if !body[..at].ends_with('.') {
            return true;
        }
        start = at + name.len();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn view(db: &str, name: &str, body: &str) -> View {
        View {
            database: db.into(),
            name: name.into(),
            create: format!(
                "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `{name}` AS {body}"
            ),
            context: sql::CreationContext::default(),
        }
    }

    fn names(v: &[View]) -> Vec<&str> {
        v.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn views_follow_the_views_they_read() {
        let views = vec![
            view("d", "a_top", "select `b_mid`.`x` AS `x` from `b_mid`"),
            view("d", "b_mid", "select `c_base`.`x` AS `x` from `c_base`"),
            view("d", "c_base", "select `t`.`x` AS `x` from `t`"),
        ];
        assert_eq!(names(&order_views(views)), ["c_base", "b_mid", "a_top"]);
    }

    #[test]
    fn qualified_names_across_databases_count() {
        let views = vec![
            view("a", "v1", "select `b`.`v2`.`x` AS `x` from `b`.`v2`"),
            view("b", "v2", "select 1 AS `x`"),
        ];
        assert_eq!(names(&order_views(views)), ["v2", "v1"]);
    }

    #[test]
    fn a_column_of_another_table_named_like_a_view_is_not_a_dependency() {
        let views = vec![
            view("d", "a", "select `t`.`b` AS `y` from `t`"),
            view("d", "b", "select 1 AS `x`"),
        ];
        assert_eq!(names(&order_views(views)), ["a", "b"]);
    }

    #[test]
    fn cycles_do_not_lose_views() {
        let views = vec![
            view("d", "a", "select * from `b`"),
            view("d", "b", "select * from `a`"),
        ];
        assert_eq!(order_views(views).len(), 2);
    }

    #[test]
    fn engines() {
        assert!(is_transactional("InnoDB"));
        assert!(!is_transactional("MyISAM"));
        assert!(!is_transactional("Aria"));
        assert!(!is_transactional("MEMORY"));
    }

    #[test]
    fn engines_that_do_not_own_their_rows() {
        // MariaDB and MySQL spell MERGE differently in information_schema.
        for merge in ["MRG_MyISAM", "MRG_MYISAM", "MERGE"] {
            assert_eq!(data_skipped(merge), Some(DataSkipped::UnderlyingTables));
        }
        for external in ["FEDERATED", "SPIDER", "CONNECT", "Connect"] {
            assert_eq!(data_skipped(external), Some(DataSkipped::ExternalSource));
        }
        assert_eq!(data_skipped("BLACKHOLE"), Some(DataSkipped::NoStorage));
        for owns in [
            "InnoDB", "MyISAM", "Aria", "MEMORY", "CSV", "ARCHIVE", "ROCKSDB", "",
        ] {
            assert_eq!(data_skipped(owns), None, "{owns}");
        }
    }
}
