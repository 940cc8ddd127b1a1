//! What a database holds, as facts two servers can be compared on: every
//! table with its engine, exact row count, `CHECKSUM TABLE` and full
//! definition (`SHOW CREATE TABLE`, which carries keys, foreign keys,
//! partitions and the `AUTO_INCREMENT` counter), and every sequence, view,
//! routine, trigger and event with its `SHOW CREATE` text (and a sequence's
//! next value). The demo prints the comparison; tests assert on it.

use std::collections::BTreeMap;
use std::fmt;

use mysql_async::prelude::Queryable;

use crate::{HarnessError, MariaDb};

/// One base table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    pub name: String,
    pub engine: String,
    pub rows: u64,
    /// `CHECKSUM TABLE`; `None` when the engine cannot compute one.
    pub checksum: Option<u64>,
    /// `SHOW CREATE TABLE`.
    pub definition: String,
}

/// The kinds of object besides tables, in the order a dump restores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Sequence,
    Function,
    Procedure,
    View,
    Trigger,
    Event,
}

impl ObjectKind {
    /// Every kind, in restore order.
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::Sequence,
        ObjectKind::Function,
        ObjectKind::Procedure,
        ObjectKind::View,
        ObjectKind::Trigger,
        ObjectKind::Event,
    ];

    /// The SQL keyword (`SHOW CREATE <keyword>`).
    pub fn keyword(self) -> &'static str {
        match self {
            ObjectKind::Sequence => "SEQUENCE",
            ObjectKind::Function => "FUNCTION",
            ObjectKind::Procedure => "PROCEDURE",
            ObjectKind::View => "VIEW",
            ObjectKind::Trigger => "TRIGGER",
            ObjectKind::Event => "EVENT",
        }
    }

    /// Lower case and plural, for people: `views`, `triggers`.
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::Sequence => "sequences",
            ObjectKind::Function => "functions",
            ObjectKind::Procedure => "procedures",
            ObjectKind::View => "views",
            ObjectKind::Trigger => "triggers",
            ObjectKind::Event => "events",
        }
    }

    /// Names of this kind in `db`, from `information_schema`.
    fn list_query(self) -> &'static str {
        match self {
            ObjectKind::Sequence => {
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'SEQUENCE' ORDER BY TABLE_NAME"
            }
            ObjectKind::Function => {
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = 'FUNCTION' ORDER BY ROUTINE_NAME"
            }
            ObjectKind::Procedure => {
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES \
                 WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY ROUTINE_NAME"
            }
            ObjectKind::View => {
                "SELECT TABLE_NAME FROM information_schema.VIEWS \
                 WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME"
            }
            ObjectKind::Trigger => {
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME"
            }
            ObjectKind::Event => {
                "SELECT EVENT_NAME FROM information_schema.EVENTS \
                 WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME"
            }
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// A view, routine, trigger, event or sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFacts {
    pub kind: ObjectKind,
    pub name: String,
    /// `SHOW CREATE …` (for a sequence, followed by its next value).
    pub definition: String,
}

/// Everything in one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub database: String,
    /// By name.
    pub tables: Vec<TableFacts>,
    /// By kind (restore order), then name.
    pub objects: Vec<ObjectFacts>,
}

/// How an item of the source compares with the restored server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Same,
    /// Present on both, with a different checksum, row count or definition.
    Differs,
    /// In the source only.
    Missing,
    /// In the restored server only.
    Extra,
}

impl Match {
    /// `✓` or `✗`.
    pub fn mark(self) -> &'static str {
        if self == Match::Same { "✓" } else { "✗" }
    }
}

impl Inventory {
    /// Reads `db` on `server` as root.
    pub async fn read(server: &MariaDb, db: &str) -> Result<Self, HarnessError> {
        let mut conn = server.connect().await?;
        let result = read_with(&mut conn, db).await;
        let _ = conn.disconnect().await;
        result.map_err(|e| HarnessError::Client {
            service: "MariaDB",
            message: format!("reading what `{db}` holds: {e}"),
        })
    }

    /// The objects of one kind.
    pub fn of_kind(&self, kind: ObjectKind) -> impl Iterator<Item = &ObjectFacts> {
        self.objects.iter().filter(move |o| o.kind == kind)
    }

    /// Rows of all tables.
    pub fn row_count(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Each table of `self` (the source) and of `restored`, matched by name.
    pub fn compare_tables<'a>(
        &'a self,
        restored: &'a Inventory,
    ) -> Vec<(&'a TableFacts, Option<&'a TableFacts>, Match)> {
        let theirs: BTreeMap<&str, &TableFacts> = restored
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut out: Vec<_> = self
            .tables
            .iter()
            .map(|ours| {
                let other = theirs.get(ours.name.as_str()).copied();
                let verdict = match other {
                    None => Match::Missing,
                    Some(t) if t == ours => Match::Same,
                    Some(_) => Match::Differs,
                };
                (ours, other, verdict)
            })
            .collect();
        let ours: Vec<&str> = self.tables.iter().map(|t| t.name.as_str()).collect();
        out.extend(
            restored
                .tables
                .iter()
                .filter(|t| !ours.contains(&t.name.as_str()))
                .map(|t| (t, Some(t), Match::Extra)),
        );
        out
    }

    /// Each view, routine, trigger, event and sequence, matched by kind and name.
    pub fn compare_objects<'a>(&'a self, restored: &'a Inventory) -> Vec<(&'a ObjectFacts, Match)> {
        let find = |inv: &'a Inventory, o: &ObjectFacts| {
            inv.objects
                .iter()
                .find(|x| x.kind == o.kind && x.name == o.name)
        };
        let mut out: Vec<_> = self
            .objects
            .iter()
            .map(|ours| {
                let verdict = match find(restored, ours) {
                    None => Match::Missing,
                    Some(t) if t == ours => Match::Same,
                    Some(_) => Match::Differs,
                };
                (ours, verdict)
            })
            .collect();
        out.extend(
            restored
                .objects
                .iter()
                .filter(|t| find(self, t).is_none())
                .map(|t| (t, Match::Extra)),
        );
        out
    }
}

fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

async fn read_with(conn: &mut mysql_async::Conn, db: &str) -> mysql_async::Result<Inventory> {
    let listed: Vec<(String, String)> = conn
        .exec(
            "SELECT TABLE_NAME, COALESCE(ENGINE, '') FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (db,),
        )
        .await?;
    let mut tables = Vec::with_capacity(listed.len());
    for (name, engine) in listed {
        let qualified = format!("{}.{}", quote(db), quote(&name));
        let rows: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {qualified}"))
            .await?;
        let checksum: Option<(String, Option<u64>)> = conn
            .query_first(format!("CHECKSUM TABLE {qualified}"))
            .await?;
        let created: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE {qualified}"))
            .await?;
        tables.push(TableFacts {
            name,
            engine,
            rows: rows.unwrap_or(0),
            checksum: checksum.and_then(|(_, sum)| sum),
            definition: created.map(|(_, sql)| sql).unwrap_or_default(),
        });
    }
    let mut objects = Vec::new();
    for kind in ObjectKind::ALL {
        let names: Vec<String> = conn.exec(kind.list_query(), (db,)).await?;
        for name in names {
            let qualified = format!("{}.{}", quote(db), quote(&name));
            let row: Option<mysql_async::Row> = conn
                .query_first(format!("SHOW CREATE {} {qualified}", kind.keyword()))
                .await?;
            let text = |column: usize| {
                row.as_ref()
                    .and_then(|r| r.get_opt::<Option<String>, _>(column))
                    .and_then(Result::ok)
                    .flatten()
                    .unwrap_or_default()
            };
            // The columns of each SHOW CREATE: the statement, and for code
            // the sql_mode it runs under (events: and their time zone).
            let mut definition = match kind {
                ObjectKind::Sequence | ObjectKind::View => text(1),
                ObjectKind::Function | ObjectKind::Procedure | ObjectKind::Trigger => {
                    format!("-- sql_mode {}\n{}", text(1), text(2))
                }
                ObjectKind::Event => {
                    format!(
                        "-- sql_mode {}, time zone {}\n{}",
                        text(1),
                        text(2),
                        text(3)
                    )
                }
            };
            if kind == ObjectKind::Sequence {
                let next: Option<i64> = conn
                    .query_first(format!("SELECT next_not_cached_value FROM {qualified}"))
                    .await?;
                definition.push_str(&format!("\n-- next value {}", next.unwrap_or_default()));
            }
            objects.push(ObjectFacts {
                kind,
                name,
                definition,
            });
        }
    }
    Ok(Inventory {
        database: db.to_owned(),
        tables,
        objects,
    })
}
