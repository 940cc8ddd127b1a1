//! Restore, verify and list against real MariaDB servers from the harness.
//!
//! Backups here are written by a small helper from SQL text that follows the
//! dump format (gzip members + manifest), which tests the reader against the
//! format itself; the round trip through the real dump engine lives in
//! `restore_roundtrip.rs`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use keeper_agent::AgentContext;
use keeper_agent::manifest::{
    Consistency, DatabaseEntry, FORMAT_VERSION, FileInfo, Flavor, InProgress, Manifest, Member,
    MemberKind, ServerInfo, Snapshot, TableEntry, TableKind,
};
use keeper_agent::repository::{BackupStatus, list_backups};
use keeper_agent::restore::{RestoreError, RestoreOptions, restore_backup, verify_backup};
use keeper_agent::storage::{Location, S3Settings, Store};
use keeper_tests::MariaDb;
use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};

const SESSION: &str = "SET NAMES utf8mb4;\nSET time_zone='+00:00';\nSET foreign_key_checks=0;\nSET unique_checks=0;\n";
const DATA_SESSION: &str = "SET sql_mode='NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES';\n";

struct Part {
    kind: MemberKind,
    db: Option<&'static str>,
    table: Option<&'static str>,
    chunk: Option<u32>,
    rows: u64,
    sql: Vec<u8>,
}

fn part(kind: MemberKind, db: &'static str, sql: &str) -> Part {
    Part {
        kind,
        db: Some(db),
        table: None,
        chunk: None,
        rows: 0,
        sql: sql.as_bytes().to_vec(),
    }
}

/// The header member every dump starts with.
fn header() -> Part {
    Part {
        kind: MemberKind::Header,
        db: None,
        table: None,
        chunk: None,
        rows: 0,
        sql: format!("-- MySQL Keeper dump (test)\n{SESSION}").into_bytes(),
    }
}

fn data(db: &'static str, table: &'static str, chunk: u32, rows: u64, body: &[u8]) -> Part {
    let mut sql =
        format!("-- data {db}.{table} chunk {chunk}\n{SESSION}{DATA_SESSION}USE `{db}`;\n")
            .into_bytes();
    sql.extend_from_slice(body);
    Part {
        kind: MemberKind::Data,
        db: Some(db),
        table: Some(table),
        chunk: Some(chunk),
        rows,
        sql,
    }
}

/// Writes `dir/name/{dump.sql.gz,manifest.json}` as the dump engine would.
fn write_backup(dir: &Path, name: &str, parts: &[Part], largest_statement: u64) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let mut file = Vec::new();
    let mut members = Vec::new();
    for p in parts {
        let mut enc = GzEncoder::new(Vec::new(), Compression::new(6));
        enc.write_all(&p.sql).unwrap();
        let gz = enc.finish().unwrap();
        members.push(Member {
            kind: p.kind,
            database: p.db.map(str::to_owned),
            table: p.table.map(str::to_owned),
            chunk: p.chunk,
            offset: file.len() as u64,
            length: gz.len() as u64,
            uncompressed_length: p.sql.len() as u64,
            rows: p.rows,
            sha256: hex::encode(Sha256::digest(&gz)),
        });
        file.extend_from_slice(&gz);
    }
    let mut dbs: Vec<DatabaseEntry> = Vec::new();
    for p in parts {
        let Some(db) = p.db else { continue };
        if !dbs.iter().any(|d| d.name == db) {
            dbs.push(DatabaseEntry {
                name: db.to_owned(),
                charset: "utf8mb4".into(),
                collation: "utf8mb4_general_ci".into(),
                tables: vec![],
                definitions: Vec::new(),
            });
        }
        if let (Some(t), MemberKind::Data) = (p.table, p.kind) {
            let entry = dbs.iter_mut().find(|d| d.name == db).unwrap();
            match entry.tables.iter_mut().find(|e| e.name == t) {
                Some(e) => e.rows += p.rows,
                None => entry.tables.push(TableEntry {
                    name: t.to_owned(),
                    kind: TableKind::Table,
                    engine: "InnoDB".into(),
                    rows: p.rows,
                    transactional: true,
                    read_under_lock: false,
                    data_skipped: None,
                    history: false,
                    digest: None,
                    deferred_indexes: Vec::new(),
                }),
            }
        }
    }
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        agent_version: "test".into(),
        name: name.into(),
        owner: None,
        server: ServerInfo {
            flavor: Flavor::Mariadb,
            version: "10.11.6-MariaDB-log".into(),
        },
        started_at: Utc::now(),
        finished_at: Utc::now(),
        snapshot: Snapshot {
            consistency: Consistency::GlobalLock,
            lock_held_ms: Some(3),
            gtid_executed: None,
            binlog: None,
            note: None,
        },
        max_allowed_packet: 16 << 20,
        largest_statement,
        databases: dbs,
        members,
        compression: None,
        file: FileInfo {
            name: "dump.sql.gz".into(),
            size: file.len() as u64,
            sha256: hex::encode(Sha256::digest(&file)),
        },
        differences: vec![],
    };
    std::fs::write(folder.join("dump.sql.gz"), &file).unwrap();
    std::fs::write(folder.join("manifest.json"), manifest.to_json().unwrap()).unwrap();
    folder
}

/// A small shop database exercising the format: quotes and delimiters in
/// strings, odd binary bytes, utf8mb4 beyond the BMP, several chunks,
/// AUTO_INCREMENT, and every kind of code object under DELIMITER ;;.
fn shop_parts() -> Vec<Part> {
    let schema = format!(
        "-- schema shop\n{SESSION}CREATE DATABASE IF NOT EXISTS `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\nUSE `shop`;\n\
         /* the tables */\n\
         CREATE TABLE `items` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `name` varchar(100) NOT NULL,\n  `bin` varbinary(64),\n  `d` date,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=1000 DEFAULT CHARSET=utf8mb4;\n\
         CREATE TABLE `audit` (\n  `id` int NOT NULL AUTO_INCREMENT PRIMARY KEY,\n  `msg` varchar(200)\n) ENGINE=InnoDB;\n\
         CREATE TABLE `we;ird``name` (`k` int) ENGINE=InnoDB;\n"
    );
    let mut items0 =
        b"INSERT INTO `items` (`id`,`name`,`bin`,`d`) VALUES (1,'semi;colon',_binary'".to_vec();
    items0.extend_from_slice(&[
        0xff, 0x00, b';', b'\\', b'\\', b'\\', b'\'', 0x80, b'"', b'`', 0xfe,
    ]);
    items0.extend_from_slice(
        "',NULL),(2,'it''s \\'quoted\\' -- not a comment','\\0\\n\\r\\Z','0000-00-00'),(3,'😀 𝄞 日本',X'00FF3B27','2024-02-30');\n"
            .as_bytes(),
    );
    let items1 = b"# chunk two\nINSERT INTO `items` (`id`,`name`,`bin`,`d`) VALUES (4,'four /* not a comment */',NULL,'2024-01-01'),(5,'five',X'',NULL);\n".to_vec();
    let audit = b"INSERT INTO `audit` VALUES (1,'restored row');\n".to_vec();
    let weird = b"INSERT INTO `we;ird``name` VALUES (7);\n".to_vec();
    let routines = format!(
        "{SESSION}USE `shop`;\nSET SESSION sql_mode='STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION';\n\
         DELIMITER ;;\n\
         CREATE DEFINER=`root`@`localhost` FUNCTION `label`(n int) RETURNS varchar(50) CHARSET utf8mb4 DETERMINISTIC\nBEGIN\n  DECLARE s varchar(50);\n  SET s = CONCAT('item;', n);\n  RETURN s;\nEND;;\n\
         DELIMITER ;\n\
         SET SESSION sql_mode='';\n\
         DELIMITER ;;\n\
         CREATE DEFINER=`root`@`localhost` PROCEDURE `touch`()\nBEGIN\n  SELECT 'a;b' INTO @x;\n  SELECT \"c;;d\" INTO @y;\nEND;;\n\
         DELIMITER ;\n"
    );
    let views = format!(
        "{SESSION}USE `shop`;\nCREATE DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `labels` AS select `label`(`items`.`id`) AS `l` from `items`;\n\
         CREATE DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `labels2` AS select `labels`.`l` AS `l` from `labels`;\n"
    );
    let triggers = format!(
        "{SESSION}USE `shop`;\nSET SESSION sql_mode='STRICT_TRANS_TABLES';\n\
         DELIMITER ;;\n\
         /*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `items_ai` AFTER INSERT ON `items` FOR EACH ROW BEGIN\n  INSERT INTO audit (msg) VALUES (CONCAT('new;', NEW.id));\nEND */;;\n\
         DELIMITER ;\n"
    );
    let events = format!(
        "{SESSION}USE `shop`;\nSET SESSION sql_mode='';\n\
         DELIMITER ;;\n\
         CREATE DEFINER=`root`@`localhost` EVENT `nightly` ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE DO BEGIN\n  DELETE FROM audit WHERE msg = 'x;y';\nEND;;\n\
         DELIMITER ;\n"
    );
    vec![
        header(),
        part(MemberKind::Schema, "shop", &schema),
        data("shop", "items", 0, 3, &items0),
        data("shop", "items", 1, 2, &items1),
        data("shop", "audit", 0, 1, &audit),
        data("shop", "we;ird`name", 0, 1, &weird),
        part(MemberKind::Routines, "shop", &routines),
        part(MemberKind::Views, "shop", &views),
        part(MemberKind::Triggers, "shop", &triggers),
        part(MemberKind::Events, "shop", &events),
    ]
}

async fn file_store(dir: &Path) -> Store {
    Store::open(&Location::File(dir.to_path_buf()), &S3Settings::default())
        .await
        .unwrap()
}

fn opts() -> RestoreOptions {
    RestoreOptions {
        parallel: 3,
        overwrite: false,
        load_data: true,
    }
}

fn ctx(server: &MariaDb) -> AgentContext {
    AgentContext {
        env: HashMap::from([("MYSQL_PWD".to_owned(), server.root_password().to_owned())]),
        kube: None,
    }
}

fn restore_args(server: &MariaDb, from: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "keeper-agent",
        "restore",
        "--host",
        server.host(),
        "--port",
        &server.port().to_string(),
        "--user",
        server.root_user(),
        "--from",
        &format!("file://{}", from.display()),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

async fn query_strings(conn: &mut mysql_async::Conn, sql: &str) -> Vec<String> {
    conn.query(sql).await.unwrap()
}

/// Everything a restore of `shop_parts` must have put back.
async fn assert_shop_restored(server: &MariaDb) {
    let mut conn = server.connect().await.unwrap();
    let rows: Vec<(u32, String, Option<String>, Option<String>)> = conn
        .query("SELECT id, name, HEX(bin), CAST(d AS CHAR) FROM shop.items ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                1,
                "semi;colon".to_owned(),
                Some("FF003B5C27802260FE".to_owned()),
                None
            ),
            (
                2,
                "it's 'quoted' -- not a comment".to_owned(),
                Some("000A0D1A".to_owned()),
                Some("0000-00-00".to_owned())
            ),
            (
                3,
                "😀 𝄞 日本".to_owned(),
                Some("00FF3B27".to_owned()),
                Some("2024-02-30".to_owned())
            ),
            (
                4,
                "four /* not a comment */".to_owned(),
                None,
                Some("2024-01-01".to_owned())
            ),
            (5, "five".to_owned(), Some(String::new()), None),
        ]
    );
    let auto: Option<u64> = conn
        .query_first("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='items'")
        .await
        .unwrap();
    assert_eq!(auto, Some(1000), "AUTO_INCREMENT counter kept");
    // The trigger came after the data: it did not fire on restored rows.
    assert_eq!(
        query_strings(&mut conn, "SELECT msg FROM shop.audit ORDER BY id").await,
        ["restored row"]
    );
    let weird: Option<u32> = conn
        .query_first("SELECT k FROM shop.`we;ird``name`")
        .await
        .unwrap();
    assert_eq!(weird, Some(7));
    assert_eq!(
        query_strings(&mut conn, "SELECT l FROM shop.labels2 ORDER BY l").await,
        ["item;1", "item;2", "item;3", "item;4", "item;5"]
    );
    let routine: Vec<(String, String)> = conn
        .query("SELECT ROUTINE_NAME, SQL_MODE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA='shop' ORDER BY ROUTINE_NAME")
        .await
        .unwrap();
    assert_eq!(
        routine,
        vec![
            (
                "label".to_owned(),
                "STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION".to_owned()
            ),
            ("touch".to_owned(), String::new()),
        ],
        "routines exist, each under its own sql_mode"
    );
    conn.query_drop("CALL shop.touch()").await.unwrap();
    let xy: Option<(String, String)> = conn.query_first("SELECT @x, @y").await.unwrap();
    assert_eq!(xy, Some(("a;b".to_owned(), "c;;d".to_owned())));
    let trigger: Option<String> = conn
        .query_first("SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='shop' AND TRIGGER_NAME='items_ai'")
        .await
        .unwrap();
    assert!(
        trigger.is_some_and(|t| t.contains("CONCAT('new;', NEW.id)")),
        "trigger body kept whole"
    );
    let event: Option<String> = conn
        .query_first("SELECT EVENT_DEFINITION FROM information_schema.EVENTS WHERE EVENT_SCHEMA='shop' AND EVENT_NAME='nightly'")
        .await
        .unwrap();
    assert!(event.is_some_and(|e| e.contains("'x;y'")));
    // And the trigger works for new rows.
    conn.query_drop("INSERT INTO shop.items (name) VALUES ('new')")
        .await
        .unwrap();
    assert_eq!(
        query_strings(&mut conn, "SELECT msg FROM shop.audit ORDER BY id").await,
        ["restored row", "new;1000"]
    );
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_every_kind_of_member_and_refuses_a_non_empty_target() {
    let server = MariaDb::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = write_backup(dir.path(), "b1", &shop_parts(), 400);

    let seen = std::sync::Mutex::new(Vec::new());
    let outcome = restore_backup(&file_store(&folder).await, &server.opts(), opts(), &|p| {
        seen.lock().unwrap().push(p)
    })
    .await
    .unwrap();
    assert_eq!(outcome.members, 10);
    assert_eq!(outcome.rows, 7);
    assert!(outcome.dropped_databases.is_empty());
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 10, "progress after every member");
    assert_eq!(seen.last().unwrap().members_done, 10);
    assert_eq!(
        seen.last().unwrap().bytes_done,
        std::fs::metadata(folder.join("dump.sql.gz")).unwrap().len()
    );
    assert_shop_restored(&server).await;

    // A second restore into the now non-empty target is refused and changes nothing.
    let mut conn = server.connect().await.unwrap();
    conn.query_drop("INSERT INTO shop.audit (msg) VALUES ('keep me')")
        .await
        .unwrap();
    let before: Vec<String> = conn
        .query("SELECT msg FROM shop.audit ORDER BY id")
        .await
        .unwrap();
    let err = keeper_agent::run(restore_args(&server, &folder, &[]), ctx(&server))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("already has 8 objects of the backup's databases (shop.audit, shop.items, shop.label, shop.labels, shop.labels2, … and 3 more)"),
        "{msg}"
    );
    assert!(msg.contains("--overwrite"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    let after: Vec<String> = conn
        .query("SELECT msg FROM shop.audit ORDER BY id")
        .await
        .unwrap();
    assert_eq!(before, after, "a refused restore changes nothing");

    // --overwrite replaces the database with the backup's content.
    keeper_agent::run(
        restore_args(&server, &folder, &["--overwrite", "--parallel", "2"]),
        ctx(&server),
    )
    .await
    .unwrap();
    assert_shop_restored(&server).await;
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_member_is_refused_before_any_of_it_runs() {
    let server = MariaDb::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = write_backup(dir.path(), "b1", &shop_parts(), 400);
    let manifest =
        Manifest::from_json(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    // Flip one byte inside the second chunk of `items` (member 3).
    let victim = &manifest.members[3];
    let mut file = std::fs::read(folder.join("dump.sql.gz")).unwrap();
    file[(victim.offset + victim.length / 2) as usize] ^= 0x01;
    std::fs::write(folder.join("dump.sql.gz"), &file).unwrap();

    let err = restore_backup(&file_store(&folder).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::MemberCorrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("member 3 (data shop.items chunk 1)")
            && msg.contains("its sha256 does not match the manifest"),
        "{msg}"
    );
    // Chunk 0 may have run in parallel; none of chunk 1's rows did.
    let mut conn = server.connect().await.unwrap();
    let ids: Vec<u32> = conn.query("SELECT id FROM shop.items").await.unwrap();
    assert!(!ids.contains(&4) && !ids.contains(&5), "{ids:?}");

    // With --overwrite the whole backup is verified before anything is dropped.
    conn.query_drop("INSERT INTO shop.audit (msg) VALUES ('precious')")
        .await
        .unwrap();
    let err = restore_backup(
        &file_store(&folder).await,
        &server.opts(),
        RestoreOptions {
            parallel: 2,
            overwrite: true,
            load_data: true,
        },
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RestoreError::MemberCorrupt { .. }), "{err}");
    let kept: Vec<String> = conn
        .query("SELECT msg FROM shop.audit WHERE msg = 'precious'")
        .await
        .unwrap();
    assert_eq!(kept, ["precious"], "nothing dropped for a corrupt backup");

    // A corrupt schema member: nothing at all is created.
    let other = tempfile::tempdir().unwrap();
    let folder = write_backup(other.path(), "b2", &shop_parts(), 400);
    let manifest =
        Manifest::from_json(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    let schema = &manifest.members[1];
    let mut file = std::fs::read(folder.join("dump.sql.gz")).unwrap();
    file[(schema.offset + schema.length - 3) as usize] ^= 0x80;
    std::fs::write(folder.join("dump.sql.gz"), &file).unwrap();
    conn.query_drop("DROP DATABASE shop").await.unwrap();
    let err = restore_backup(&file_store(&folder).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("member 1 (schema shop)"), "{err}");
    let dbs: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='shop'")
        .await
        .unwrap();
    assert!(dbs.is_empty(), "nothing of a corrupt schema member ran");
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_problems_are_clear_one_line_errors() {
    let server = MariaDb::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = write_backup(dir.path(), "b1", &shop_parts(), 400);

    // Wrong password: says who, never the password.
    let wrong = "not-the-password-42";
    let err = keeper_agent::run(
        restore_args(&server, &folder, &[]),
        AgentContext {
            env: HashMap::from([("MYSQL_PWD".to_owned(), wrong.to_owned())]),
            kube: None,
        },
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "access denied for root@127.0.0.1:{}",
            server.port()
        )),
        "{msg}"
    );
    assert!(
        !msg.contains(wrong) && !msg.contains(server.root_password()),
        "{msg}"
    );

    // Missing manifest.
    let empty = dir.path().join("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let err = keeper_agent::run(restore_args(&server, &empty, &[]), ctx(&server))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "has no manifest.json: it is incomplete or not a Keeper backup; nothing was restored"
        ),
        "{err}"
    );

    // Too small a max_allowed_packet on the target.
    let big = write_backup(dir.path(), "big", &shop_parts(), 1 << 30);
    let err = restore_backup(&file_store(&big).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("largest statement is 1073741824 bytes"),
        "{msg}"
    );
    assert!(msg.contains("SET GLOBAL max_allowed_packet="), "{msg}");

    // A MySQL backup is refused by a MariaDB target.
    let mysql = write_backup(dir.path(), "mysql", &shop_parts(), 400);
    let path = mysql.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"mariadb\"", "\"mysql\"")
            .replace("10.11.6-MariaDB-log", "8.4.3"),
    )
    .unwrap();
    let err = restore_backup(&file_store(&mysql).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::WrongFlavor { .. }), "{err}");

    // None of that touched the target.
    let mut conn = server.connect().await.unwrap();
    let dbs: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='shop'")
        .await
        .unwrap();
    assert!(dbs.is_empty());

    // A failing statement names the member and the statement.
    let bad = write_backup(
        dir.path(),
        "bad",
        &[
            part(
                MemberKind::Schema,
                "shop",
                &format!(
                    "{SESSION}CREATE DATABASE IF NOT EXISTS `shop`;\nUSE `shop`;\nCREATE TABLE t (a int);\n"
                ),
            ),
            data(
                "shop",
                "t",
                0,
                1,
                b"INSERT INTO t VALUES (1);\nINSERT INTO nowhere VALUES (2);\n",
            ),
        ],
        100,
    );
    let err = restore_backup(&file_store(&bad).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "member 1 (data shop.t chunk 0): `INSERT INTO nowhere VALUES (2)` failed: error 1146 (42S02): Table 'shop.nowhere' doesn't exist"
        ),
        "{msg}"
    );

    // A definer that does not exist: MariaDB creates the view with a warning, the restore reports it.
    conn.query_drop("DROP DATABASE shop").await.unwrap();
    let definer = write_backup(
        dir.path(),
        "definer",
        &[
            part(
                MemberKind::Schema,
                "shop",
                &format!(
                    "{SESSION}CREATE DATABASE IF NOT EXISTS `shop`;\nUSE `shop`;\nCREATE TABLE t (a int);\n"
                ),
            ),
            part(
                MemberKind::Views,
                "shop",
                &format!(
                    "{SESSION}USE `shop`;\nCREATE DEFINER=`ghost`@`%` SQL SECURITY DEFINER VIEW v AS SELECT a FROM t;\n"
                ),
            ),
        ],
        100,
    );
    let outcome = restore_backup(&file_store(&definer).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap();
    assert!(
        outcome
            .warnings
            .iter()
            .any(|w| w.contains("1449") && w.contains("definer account does not exist")),
        "{:?}",
        outcome.warnings
    );
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn verify_finds_every_kind_of_damage() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_backup(dir.path(), "b1", &shop_parts(), 400);
    let store = file_store(&folder).await;
    let report = verify_backup(&store).await.unwrap();
    assert_eq!(report.members, 10);
    assert_eq!(report.rows, 7);
    let good_file = std::fs::read(folder.join("dump.sql.gz")).unwrap();
    let good_manifest = std::fs::read_to_string(folder.join("manifest.json")).unwrap();
    let manifest = Manifest::from_json(good_manifest.as_bytes()).unwrap();

    // Through the CLI too.
    keeper_agent::run(
        [
            "keeper-agent",
            "verify",
            "--from",
            &format!("file://{}", folder.display()),
        ],
        AgentContext::default(),
    )
    .await
    .unwrap();

    // A flipped byte in every member in turn is caught and named.
    for (i, m) in manifest.members.iter().enumerate() {
        let mut file = good_file.clone();
        file[(m.offset + m.length / 2) as usize] ^= 0x10;
        std::fs::write(folder.join("dump.sql.gz"), &file).unwrap();
        let err = verify_backup(&store).await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("member {i} (")),
            "member {i}: {err}"
        );
    }

    // Truncated.
    std::fs::write(
        folder.join("dump.sql.gz"),
        &good_file[..good_file.len() - 10],
    )
    .unwrap();
    let err = verify_backup(&store).await.unwrap_err();
    assert!(matches!(err, RestoreError::FileSize { .. }), "{err}");
    std::fs::write(folder.join("dump.sql.gz"), &good_file).unwrap();

    // An edited manifest: a wrong uncompressed length (checksums still fine).
    let mut edited = manifest.clone();
    edited.members[2].uncompressed_length += 1;
    std::fs::write(folder.join("manifest.json"), edited.to_json().unwrap()).unwrap();
    let err = verify_backup(&store).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("member 2 (data shop.items chunk 0)")
            && err.to_string().contains("decompresses to"),
        "{err}"
    );
    // An edited manifest: a member's checksum replaced.
    let mut edited = manifest.clone();
    edited.members[4].sha256 = "ab".repeat(32);
    std::fs::write(folder.join("manifest.json"), edited.to_json().unwrap()).unwrap();
    let err = verify_backup(&store).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("member 4 (data shop.audit chunk 0)"),
        "{err}"
    );
    // An edited manifest: the file's checksum.
    let mut edited = manifest.clone();
    edited.file.sha256 = "cd".repeat(32);
    std::fs::write(folder.join("manifest.json"), edited.to_json().unwrap()).unwrap();
    let err = verify_backup(&store).await.unwrap_err();
    assert!(matches!(err, RestoreError::FileCorrupt { .. }), "{err}");
    // An edited manifest that no longer tiles the file.
    std::fs::write(
        folder.join("manifest.json"),
        good_manifest.replace(
            &format!("\"length\": {}", manifest.members[0].length),
            &format!("\"length\": {}", manifest.members[0].length + 1),
        ),
    )
    .unwrap();
    let err = verify_backup(&store).await.unwrap_err();
    assert!(matches!(err, RestoreError::BadManifest { .. }), "{err}");
    // Missing manifest.
    std::fs::remove_file(folder.join("manifest.json")).unwrap();
    let err = verify_backup(&store).await.unwrap_err();
    assert!(err.to_string().contains("has no manifest.json"), "{err}");
}

#[tokio::test]
async fn list_tells_complete_in_progress_and_incomplete_apart() {
    let dir = tempfile::tempdir().unwrap();
    write_backup(dir.path(), "20250101T000000Z", &shop_parts(), 400);
    let bad = write_backup(dir.path(), "20250102T000000Z", &shop_parts(), 400);
    let mut file = std::fs::read(bad.join("dump.sql.gz")).unwrap();
    file[40] ^= 1;
    std::fs::write(bad.join("dump.sql.gz"), file).unwrap();
    let marker = |age_minutes: i64| {
        let t = Utc::now() - chrono::Duration::minutes(age_minutes);
        serde_json::to_vec(&InProgress {
            started_at: t - chrono::Duration::minutes(30),
            refreshed_at: t,
            host: "agent".into(),
            owner: None,
        })
        .unwrap()
    };
    for (name, age) in [("20250103T000000Z", 1), ("20250104T000000Z", 20)] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dump.sql.gz.partial"), b"xx").unwrap();
        std::fs::write(d.join("in-progress.json"), marker(age)).unwrap();
    }
    let orphan = dir.path().join("20250105T000000Z");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("dump.sql.gz"), b"xx").unwrap();

    let listed = list_backups(&file_store(dir.path()).await).await.unwrap();
    let got: Vec<(&str, &BackupStatus, Option<u64>)> = listed
        .iter()
        .map(|l| (l.name.as_str(), &l.status, l.rows))
        .collect();
    assert_eq!(
        got,
        vec![
            ("20250101T000000Z", &BackupStatus::Complete, Some(7)),
            ("20250102T000000Z", &BackupStatus::Complete, Some(7)),
            ("20250103T000000Z", &BackupStatus::InProgress, None),
            ("20250104T000000Z", &BackupStatus::Incomplete, None),
            ("20250105T000000Z", &BackupStatus::Incomplete, None),
        ]
    );
    assert_eq!(listed[0].tables, Some(3));
    assert!(listed[0].size > 0);
    // The CLI prints the table (and --verify reads every byte of the complete ones).
    keeper_agent::run(
        [
            "keeper-agent",
            "list",
            "--verify",
            "--from",
            &format!("file://{}", dir.path().display()),
        ],
        AgentContext::default(),
    )
    .await
    .unwrap();
    let rows: Vec<_> = {
        let store = file_store(dir.path()).await;
        let mut v = Vec::new();
        for l in &listed {
            v.push(keeper_agent::restore::verify::verify_listing(&store, l).await);
        }
        v
    };
    assert_eq!(rows[0], "ok");
    assert!(
        rows[1].starts_with("FAILED: member 0 (header)"),
        "{}",
        rows[1]
    );
    assert_eq!(rows[2], "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_verifies_and_lists_from_s3_with_ranged_reads() {
    let garage = keeper_tests::Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = write_backup(dir.path(), "b1", &shop_parts(), 400);

    let mut ctx = ctx(&server);
    ctx.env
        .extend(garage.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let root = format!("s3://{}/keeper/shop", garage.bucket());
    let s3_args = keeper_agent::cli::S3Args {
        s3_force_path_style: true,
        s3_ca_bundle: None,
    };
    let store = Store::open(
        &Location::parse(&root).unwrap(),
        &S3Settings::from_ctx(&ctx, &s3_args),
    )
    .await
    .unwrap();
    for file in ["dump.sql.gz", "manifest.json"] {
        let body = std::fs::read(folder.join(file)).unwrap();
        store
            .child("b1")
            .put(file, bytes::Bytes::from(body))
            .await
            .unwrap();
    }

    let listed = list_backups(&store).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_complete());
    verify_backup(&store.child("b1")).await.unwrap();

    let mut args = restore_args(&server, Path::new("/unused"), &["--s3-force-path-style"]);
    let from = args.iter().position(|a| a == "--from").unwrap() + 1;
    args[from] = format!("{root}/b1");
    keeper_agent::run(args, ctx).await.unwrap();
    assert_shop_restored(&server).await;
}

/// Rows of `ld.plain` as text, every value in hex or as the server prints it.
async fn plain_rows(server: &MariaDb) -> Vec<String> {
    let mut conn = server.connect().await.unwrap();
    let rows = query_strings(
        &mut conn,
        "SELECT CONCAT_WS('|', id, IFNULL(HEX(u),'NULL'), IFNULL(HEX(l),'NULL'), IFNULL(d,'NULL'), \
         IFNULL(ts,'NULL'), IFNULL(n,'NULL'), IFNULL(CAST(f AS CHAR),'NULL'), IFNULL(e,'NULL'), \
         IFNULL(s,'NULL'), IFNULL(t,'NULL')) FROM ld.plain ORDER BY id",
    )
    .await;
    conn.disconnect().await.unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_go_by_load_data_where_they_store_the_same_values_as_the_inserts() {
    let server = MariaDb::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = format!(
        "-- schema ld\n{SESSION}CREATE DATABASE IF NOT EXISTS `ld` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\nUSE `ld`;\n\
         CREATE TABLE `plain` (`id` int NOT NULL PRIMARY KEY, `u` varchar(100) CHARACTER SET utf8mb4, \
         `l` varchar(100) CHARACTER SET latin1, `d` datetime(6), `ts` timestamp NULL, `n` decimal(20,6), \
         `f` double, `e` enum('a','b'), `s` set('x','y'), `t` tinyint) ENGINE=InnoDB;\n\
         CREATE TABLE `bin` (`id` int NOT NULL PRIMARY KEY, `b` varbinary(10)) ENGINE=InnoDB;\n\
         CREATE TABLE `latin` (`id` int NOT NULL PRIMARY KEY, `v` varchar(10) CHARACTER SET latin1) ENGINE=InnoDB;\n\
         CREATE TABLE `mine` (`id` int NOT NULL PRIMARY KEY, `v` varchar(10)) ENGINE=MyISAM;\n"
    );
    const COLS: &str = "INSERT INTO `plain` (`id`,`u`,`l`,`d`,`ts`,`n`,`f`,`e`,`s`,`t`) VALUES ";
    // Two statements: quotes, escapes, a tuple separator and `\N` inside
    // strings, the string 'NULL' beside NULL, latin1 and 4-byte UTF-8,
    // invalid dates the data sql_mode allows, exponents, negatives.
    let chunk0 = format!(
        "{COLS}(1,'it\\'s','é','2024-02-29 12:34:56.123456','2024-01-01 00:00:00',-123.450000,-1.5e-7,'a','x,y',-128),\
         (2,'a),(b\\\\N','NULL','0000-00-00 00:00:00',NULL,0.000001,1e300,'b','',127),\
         (3,NULL,'\\\\','2024-02-30 00:00:00.000000',NULL,NULL,NULL,NULL,NULL,NULL);\n\
         {COLS}(4,'\\0\\n\\r\\Z','','2024-01-01 00:00:00',NULL,1,0,'a','y',0),(5,'😀 𝄞 日本',' x ','1999-12-31 23:59:59.999999',NULL,-0.5,2.5e-308,'b','x',1);\n"
    );
    // A value that is not UTF-8 (written `_binary'…'`) keeps its statement an INSERT.
    let mut chunk1 = format!(
        "{COLS}(6,'six','six',NULL,NULL,NULL,NULL,NULL,NULL,NULL);\n{COLS}(7,'seven',_binary'"
    )
    .into_bytes();
    chunk1.extend_from_slice(&[0xff, 0xfe]);
    chunk1.extend_from_slice(b"',NULL,NULL,NULL,NULL,NULL,NULL,NULL);\n");
    // Out of range for TINYINT: the load warns and is rolled back; the
    // INSERT stores what the non-strict data sql_mode stores (127).
    let chunk2 = format!("{COLS}(8,'eight','eight',NULL,NULL,NULL,NULL,NULL,NULL,300);\n");
    let parts = vec![
        header(),
        part(MemberKind::Schema, "ld", &schema),
        data("ld", "plain", 0, 5, chunk0.as_bytes()),
        data("ld", "plain", 1, 2, &chunk1),
        data("ld", "plain", 2, 1, chunk2.as_bytes()),
        data(
            "ld",
            "bin",
            0,
            1,
            b"INSERT INTO `bin` (`id`,`b`) VALUES (1,_binary'\\0x');\n",
        ),
        // A latin1 table: all-ASCII rows are declared latin1 (no conversion
        // on the server), others the member's utf8mb4; both store the same.
        data(
            "ld",
            "latin",
            0,
            2,
            b"INSERT INTO `latin` (`id`,`v`) VALUES (1,'plain'),(2,'\\\\');\n",
        ),
        data(
            "ld",
            "latin",
            1,
            1,
            "INSERT INTO `latin` (`id`,`v`) VALUES (3,'café');\n".as_bytes(),
        ),
        data(
            "ld",
            "mine",
            0,
            1,
            b"INSERT INTO `mine` (`id`,`v`) VALUES (1,'m');\n",
        ),
    ];
    let folder = write_backup(dir.path(), "ld", &parts, 600);

    let loaded = restore_backup(&file_store(&folder).await, &server.opts(), opts(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (loaded.loads, loaded.loads_rolled_back),
        (4, 1),
        "plain's chunk 0 and chunk 1's first statement and both of latin's loaded, plain's chunk 2 rolled back"
    );
    let by_load = plain_rows(&server).await;
    let latin = "SELECT GROUP_CONCAT(HEX(v) ORDER BY id) FROM ld.latin";
    let mut conn = server.connect().await.unwrap();
    let latin_by_load: Vec<String> = conn.query(latin).await.unwrap();
    assert_eq!(latin_by_load, vec!["706C61696E,5C,636166E9".to_owned()]);
    conn.disconnect().await.unwrap();

    let inserted = restore_backup(
        &file_store(&folder).await,
        &server.opts(),
        RestoreOptions {
            overwrite: true,
            load_data: false,
            ..opts()
        },
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!((inserted.loads, inserted.loads_rolled_back), (0, 0));
    let by_insert = plain_rows(&server).await;
    assert_eq!(
        by_load, by_insert,
        "LOAD DATA stores what the INSERTs store"
    );
    let mut conn = server.connect().await.unwrap();
    let latin_by_insert: Vec<String> = conn.query(latin).await.unwrap();
    assert_eq!(latin_by_load, latin_by_insert);
    conn.disconnect().await.unwrap();

    assert_eq!(by_load.len(), 8);
    assert_eq!(
        by_load[1].split('|').nth(1),
        Some(hex::encode_upper("a),(b\\N").as_str())
    );
    assert_eq!(
        by_load[1].split('|').nth(2),
        Some(hex::encode_upper("NULL").as_str())
    );
    assert_eq!(by_load[2].split('|').nth(1), Some("NULL"));
    assert_eq!(by_load[3].split('|').nth(1), Some("000A0D1A"));
    assert_eq!(by_load[4].split('|').nth(2), Some("207820"), "spaces kept");
    assert_eq!(by_load[6].split('|').nth(2), Some("FFFE"));
    assert_eq!(by_load[7].split('|').next_back(), Some("127"));
    assert_eq!(by_load[0].split('|').nth(2), Some("E9"), "é in latin1");
    let mut conn = server.connect().await.unwrap();
    let others: Vec<String> = conn
        .query("SELECT CONCAT(HEX(b), '/', (SELECT v FROM ld.mine)) FROM ld.bin")
        .await
        .unwrap();
    assert_eq!(others, vec!["0078/m".to_owned()]);
    conn.disconnect().await.unwrap();

    // A server that refuses local loads (MySQL 8's default) gets INSERTs.
    let refusing = MariaDb::start_with(keeper_tests::MariaDbOptions {
        extra_args: vec!["--local-infile=0".into()],
        ..keeper_tests::MariaDbOptions::default()
    })
    .unwrap();
    let outcome = restore_backup(
        &file_store(&folder).await,
        &refusing.opts(),
        opts(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!((outcome.loads, outcome.loads_rolled_back), (0, 0));
    assert_eq!(plain_rows(&refusing).await, by_insert);
}
