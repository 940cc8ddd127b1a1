//! Secondary indexes built after the data: the restore's side of
//! [`crate::table_ddl`].
//!
//! The schema members create each table without the index clauses its
//! manifest entry lists in `deferredIndexes`; after the last data member
//! the indexes of every such table are added back with one `ALTER TABLE …
//! ADD KEY …, ADD KEY …` per table (InnoDB builds each by sorting the rows
//! once instead of inserting every key into a B-tree as rows arrive), the
//! tables spread over the restore's connections.
//!
//! A table is created without an index only when its `CREATE TABLE` parses
//! and holds every listed clause exactly once; otherwise it is created as
//! the dump wrote it (and logged), so a mismatch can cost speed, never an
//! index.
//!
//! A restore that fails or is killed between a table's `CREATE` and its
//! index build leaves that table with its rows but without those indexes.
//! Such a restore has failed — it is never reported done, and with
//! `--request-id` never recorded as applied — and a rerun finds the
//! target not empty and refuses until `--overwrite`, which drops and
//! restores everything again, indexes included; the failure's log line
//! names the tables still waiting for their indexes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::manifest::Manifest;
use crate::table_ddl;

/// A table created without some of its indexes, which it still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTable {
    pub database: String,
    pub table: String,
    /// The index clauses cut from its `CREATE`, in their order.
    pub clauses: Vec<String>,
}

impl PendingTable {
    /// `ALTER TABLE \`db\`.\`t\` ADD KEY …, ADD KEY …`.
    pub fn statement(&self) -> String {
        table_ddl::add_indexes(&self.database, &self.table, &self.clauses)
    }

    /// `` `db`.`t` `` for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}.{}",
            crate::mysql::ident(&self.database),
            crate::mysql::ident(&self.table)
        )
    }
}

/// What a restore defers: planned from the manifest, then the tables
/// actually created without their indexes, until each is built.
#[derive(Debug, Default)]
pub struct Deferral {
    planned: HashMap<(String, String), Vec<String>>,
    /// In the order the tables were created.
    pending: Mutex<Vec<PendingTable>>,
}

impl Deferral {
    /// Nothing deferred: every index comes with its `CREATE`.
    pub fn none() -> Self {
        Self::default()
    }

    /// The deferrals the manifest lists (none for a manifest written before
    /// `deferredIndexes` existed).
    pub fn plan(manifest: &Manifest) -> Self {
        let planned = manifest
            .databases
            .iter()
            .flat_map(|db| {
                db.tables
                    .iter()
                    .filter(|t| !t.deferred_indexes.is_empty())
                    .map(|t| {
                        (
                            (db.name.clone(), t.name.clone()),
                            t.deferred_indexes.clone(),
                        )
                    })
            })
            .collect();
        Self {
            planned,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The statement of a schema member of `database` to execute: a planned
    /// table's `CREATE TABLE` without its deferred clauses (and the table
    /// recorded as pending), anything else as it is.
    pub fn rewrite<'s>(&self, database: Option<&str>, statement: &'s [u8]) -> Cow<'s, [u8]> {
        let (Some(database), false) = (database, self.planned.is_empty()) else {
            return Cow::Borrowed(statement);
        };
        if !statement
            .get(..12)
            .is_some_and(|head| head.eq_ignore_ascii_case(b"CREATE TABLE"))
        {
            return Cow::Borrowed(statement);
        }
        let Some(parsed) = table_ddl::parse_create_table(statement) else {
            return Cow::Borrowed(statement);
        };
        let key = (database.to_owned(), parsed.name);
        let Some(clauses) = self.planned.get(&key) else {
            return Cow::Borrowed(statement);
        };
        match table_ddl::without_clauses(statement, clauses) {
            Some(cut) => {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.push(PendingTable {
                    database: key.0,
                    table: key.1,
                    clauses: clauses.clone(),
                });
                Cow::Owned(cut)
            }
            None => {
                tracing::warn!(
                    table = %format!("{}.{}", crate::mysql::ident(&key.0), crate::mysql::ident(&key.1)),
                    "the manifest lists indexes to build after the data that its CREATE TABLE does not hold as listed; creating it with every index"
                );
                Cow::Borrowed(statement)
            }
        }
    }

    /// The tables still waiting for their indexes, in creation order.
    pub fn pending(&self) -> Vec<PendingTable> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `table`'s indexes are built.
    pub fn built(&self, table: &PendingTable) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t| t != table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DatabaseEntry, TableEntry, TableKind};

    fn entry(name: &str, deferred: &[&str]) -> TableEntry {
        TableEntry {
            name: name.into(),
            kind: TableKind::Table,
            engine: "InnoDB".into(),
            rows: 1,
            transactional: true,
            read_under_lock: false,
            data_skipped: None,
            history: false,
            digest: None,
            deferred_indexes: deferred.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn deferral() -> Deferral {
        let databases = [DatabaseEntry {
            name: "shop".into(),
            charset: "utf8mb4".into(),
            collation: "utf8mb4_general_ci".into(),
            tables: vec![entry("t", &["KEY `k` (`k`)"]), entry("plain", &[])],
            definitions: Vec::new(),
        }];
        Deferral {
            planned: databases[0]
                .tables
                .iter()
                .filter(|t| !t.deferred_indexes.is_empty())
                .map(|t| (("shop".into(), t.name.clone()), t.deferred_indexes.clone()))
                .collect(),
            pending: Mutex::new(Vec::new()),
        }
    }

    #[test]
    fn a_planned_table_is_created_without_its_keys_and_waits_for_them() {
        let d = deferral();
        let create = b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `k` int,\n  PRIMARY KEY (`id`),\n  KEY `k` (`k`)\n) ENGINE=InnoDB";
        let cut = d.rewrite(Some("shop"), create);
        assert_eq!(
            &*cut,
            &b"CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `k` int,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"[..]
        );
        let pending = d.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].statement(),
            "ALTER TABLE `shop`.`t` ADD KEY `k` (`k`)"
        );
        d.built(&pending[0]);
        assert!(d.pending().is_empty());
    }

    #[test]
    fn anything_else_runs_as_written() {
        let d = deferral();
        let other_db = b"CREATE TABLE `t` (\n  `k` int,\n  KEY `k` (`k`)\n)";
        assert!(matches!(
            d.rewrite(Some("other"), other_db),
            Cow::Borrowed(_)
        ));
        // The CREATE no longer holds the clause as listed.
        let changed = b"CREATE TABLE `t` (\n  `k` int,\n  KEY `k` (`k`) COMMENT 'x'\n)";
        assert!(matches!(d.rewrite(Some("shop"), changed), Cow::Borrowed(_)));
        assert!(matches!(
            d.rewrite(Some("shop"), b"SET NAMES utf8mb4"),
            Cow::Borrowed(_)
        ));
        assert!(d.pending().is_empty());
        assert!(Deferral::none().pending().is_empty());
    }
}
