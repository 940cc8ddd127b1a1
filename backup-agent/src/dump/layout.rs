//! The file's layout around the data: the catalog members that come before
//! the data (header, sequences, schema) and after it (routines, views,
//! triggers, events), and the manifest's database entries. Pure: it works
//! from the catalog already read, so the order and the text of every member
//! can be tested without a server (see the module docs of [`super`] for why
//! this order).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::catalog::{self, Database};
use super::error::BackupError;
use super::member::{EncodedMember, encode_text};
use super::sql;
use crate::compression::{Codec, Encoder};
use crate::digest::RowsDigest;
use crate::manifest::{DatabaseEntry, DefinitionDigest, MemberKind, TableEntry, TableKind};
use crate::mysql::{self, Server};

/// One catalog member: `text` compressed by `encoder`.
fn member(
    kind: MemberKind,
    database: Option<&str>,
    text: &str,
    encoder: &mut Encoder,
) -> Result<EncodedMember, BackupError> {
    encode_text(kind, database, text, encoder).map_err(|source| BackupError::Compress {
        member: match database {
            Some(db) => format!("the {} member of `{db}`", kind.name()),
            None => "the header".to_owned(),
        },
        source,
    })
}

/// The encoder of the catalog members.
fn encoder(codec: Codec) -> Result<Encoder, BackupError> {
    codec.encoder().map_err(|source| BackupError::Compress {
        member: "the header".to_owned(),
        source,
    })
}

/// The members before the data, in order: the header, then the sequences of
/// every database that has any, then every database's schema.
pub fn leading_members(
    name: &str,
    server: &Server,
    started_at: &DateTime<Utc>,
    databases: &[Database],
    codec: Codec,
) -> Result<Vec<EncodedMember>, BackupError> {
    let enc = &mut encoder(codec)?;
    let header = format!(
        "-- MySQL Keeper dump {name}\n-- agent {} | server {} | started {}\n{}",
        env!("CARGO_PKG_VERSION"),
        server.version,
        started_at.to_rfc3339(),
        sql::preamble(None)
    );
    let mut members = vec![member(MemberKind::Header, None, &header, enc)?];
    for kind in [MemberKind::Sequences, MemberKind::Schema] {
        let wanted = if kind == MemberKind::Sequences {
            TableKind::Sequence
        } else {
            TableKind::Table
        };
        for db in databases {
            let mut objects = db.tables.iter().filter(|t| t.kind == wanted).peekable();
            if kind == MemberKind::Sequences && objects.peek().is_none() {
                continue;
            }
            let mut text = sql::preamble(None);
            text.push_str(&format!(
                "{};\nUSE {};\n",
                db.create,
                mysql::ident(&db.name)
            ));
            for t in objects {
                text.push_str(&t.create);
            }
            members.push(member(kind, Some(&db.name), &text, enc)?);
        }
    }
    Ok(members)
}

/// The members after the data, in order: routines per database, views in
/// dependency order across databases (a member per run of one database's
/// views), triggers per database, events per database.
pub fn trailing_members(
    databases: &[Database],
    codec: Codec,
) -> Result<Vec<EncodedMember>, BackupError> {
    let enc = &mut encoder(codec)?;
    let mut members = Vec::new();
    let per_database =
        |kind, pick: fn(&Database) -> &Vec<String>, members: &mut Vec<_>, enc: &mut Encoder| {
            for db in databases {
                let blocks = pick(db);
                if !blocks.is_empty() {
                    let text = format!("{}{}", sql::preamble(Some(&db.name)), blocks.concat());
                    members.push(member(kind, Some(&db.name), &text, enc)?);
                }
            }
            Ok::<(), BackupError>(())
        };
    per_database(MemberKind::Routines, |d| &d.routines, &mut members, enc)?;
    let views = catalog::order_views(databases.iter().flat_map(|d| d.views.clone()).collect());
    let mut run_start = 0;
    while run_start < views.len() {
        let db = &views[run_start].database;
        let run_end = views[run_start..]
            .iter()
            .position(|v| &v.database != db)
            .map_or(views.len(), |p| run_start + p);
        let mut text = sql::preamble(Some(db));
        for v in &views[run_start..run_end] {
            text.push_str(&sql::view(&v.context, &v.create));
        }
        members.push(member(MemberKind::Views, Some(db), &text, enc)?);
        run_start = run_end;
    }
    per_database(MemberKind::Triggers, |d| &d.triggers, &mut members, enc)?;
    per_database(MemberKind::Events, |d| &d.events, &mut members, enc)?;
    Ok(members)
}

/// The manifest's entries of `databases`: every table with the rows dumped
/// and their digest (`rows`, by database and table), how it was read
/// (`locked`: the non-transactional tables were read under the global
/// lock), and each database's definition digests.
pub fn database_entries(
    databases: &[Database],
    rows: &HashMap<(String, String), RowsDigest>,
    definitions: &HashMap<String, Vec<DefinitionDigest>>,
    locked: bool,
) -> Vec<DatabaseEntry> {
    databases
        .iter()
        .map(|db| DatabaseEntry {
            name: db.name.clone(),
            charset: db.charset.clone(),
            collation: db.collation.clone(),
            tables: db
                .tables
                .iter()
                .map(|t| {
                    let read = rows
                        .get(&(db.name.clone(), t.name.clone()))
                        .copied()
                        .unwrap_or_default();
                    TableEntry {
                        name: t.name.clone(),
                        kind: t.kind,
                        engine: t.engine.clone(),
                        rows: read.rows,
                        transactional: t.transactional,
                        read_under_lock: !t.transactional && locked && t.data_skipped.is_none(),
                        data_skipped: t.data_skipped,
                        history: t.history,
                        // Rows are dumped (and digested) only for tables that own them.
                        digest: (t.kind == TableKind::Table && t.data_skipped.is_none())
                            .then(|| read.to_text()),
                        deferred_indexes: t.deferred_indexes.clone(),
                    }
                })
                .collect(),
            definitions: definitions.get(&db.name).cloned().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dump::catalog::{Table, View};

    fn table(database: &str, name: &str, kind: TableKind) -> Table {
        Table {
            database: database.into(),
            name: name.into(),
            kind,
            engine: "InnoDB".into(),
            transactional: true,
            data_skipped: None,
            columns: vec![],
            int_pk: None,
            estimated_bytes: 0,
            history: false,
            create: format!("CREATE TABLE `{name}` (id INT);\n"),
            deferred_indexes: Vec::new(),
        }
    }

    fn database(name: &str, tables: Vec<Table>, views: Vec<View>) -> Database {
        Database {
            name: name.into(),
            charset: "utf8mb4".into(),
            collation: "utf8mb4_general_ci".into(),
            create: format!("CREATE DATABASE IF NOT EXISTS `{name}`"),
            tables,
            views,
            routines: vec![],
            triggers: vec![],
            events: vec![],
            differences: vec![],
        }
    }

    fn view(database: &str, name: &str, body: &str) -> View {
        View {
            database: database.into(),
            name: name.into(),
            create: format!("CREATE VIEW `{database}`.`{name}` AS {body}"),
            context: sql::CreationContext::default(),
        }
    }

    fn order(members: &[EncodedMember]) -> Vec<(MemberKind, Option<&str>)> {
        members
            .iter()
            .map(|m| (m.kind, m.database.as_deref()))
            .collect()
    }

    #[test]
    fn sequences_of_every_database_come_before_any_schema() {
        let databases = [
            database(
                "shop",
                vec![table("shop", "orders", TableKind::Table)],
                vec![],
            ),
            database(
                "billing",
                vec![
                    table("billing", "invoices", TableKind::Table),
                    table("billing", "invoice_no", TableKind::Sequence),
                ],
                vec![],
            ),
        ];
        let server = Server::detect("11.4.2-MariaDB", "mariadb.org binary distribution");
        let members = leading_members(
            "b",
            &server,
            &DateTime::UNIX_EPOCH,
            &databases,
            Codec::DEFAULT,
        )
        .unwrap();
        assert_eq!(
            order(&members),
            [
                (MemberKind::Header, None),
                (MemberKind::Sequences, Some("billing")),
                (MemberKind::Schema, Some("shop")),
                (MemberKind::Schema, Some("billing")),
            ]
        );
    }

    #[test]
    fn views_follow_what_they_read_across_databases() {
        let mut shop = database(
            "shop",
            vec![],
            vec![view("shop", "v_top", "SELECT * FROM `billing`.`v_sum`")],
        );
        shop.routines = vec!["CREATE FUNCTION f() RETURNS INT RETURN 1;\n".into()];
        let billing = database(
            "billing",
            vec![],
            vec![view("billing", "v_sum", "SELECT 1")],
        );
        let members = trailing_members(&[shop, billing], Codec::DEFAULT).unwrap();
        assert_eq!(
            order(&members),
            [
                (MemberKind::Routines, Some("shop")),
                (MemberKind::Views, Some("billing")),
                (MemberKind::Views, Some("shop")),
            ]
        );
    }

    #[test]
    fn entries_count_rows_and_say_how_tables_were_read() {
        let mut myisam = table("shop", "log", TableKind::Table);
        myisam.transactional = false;
        myisam.engine = "MyISAM".into();
        let databases = [database(
            "shop",
            vec![table("shop", "orders", TableKind::Table), myisam],
            vec![],
        )];
        let mut read = RowsDigest::default();
        for id in 1..=7 {
            read.add_row(format!("({id})").as_bytes());
        }
        let rows = HashMap::from([(("shop".to_owned(), "orders".to_owned()), read)]);
        let definitions = HashMap::from([(
            "shop".to_owned(),
            vec![DefinitionDigest {
                kind: "table".into(),
                name: "orders".into(),
                digest: "xxh3-128:0".into(),
            }],
        )]);
        let entries = database_entries(&databases, &rows, &definitions, true);
        let tables = &entries[0].tables;
        assert_eq!((tables[0].rows, tables[0].read_under_lock), (7, false));
        assert_eq!(tables[0].digest, Some(read.to_text()));
        assert_eq!((tables[1].rows, tables[1].read_under_lock), (0, true));
        // An empty table has the digest of no rows, not none.
        assert_eq!(tables[1].digest, Some(RowsDigest::default().to_text()));
        assert_eq!(entries[0].definitions.len(), 1);
    }
}
