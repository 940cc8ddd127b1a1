//! Fidelity of upstream's hard cases, one class per test, each against real
//! MariaDB servers through both restore paths: the agent's own restore and
//! `gunzip -c dump.sql.gz | mariadb --comments` (no Keeper on the way back),
//! and for a zstd backup of the same source likewise, with `zstd -dc`.
//! After each, every table's CHECKSUM TABLE, row count and SHOW CREATE TABLE
//! (AUTO_INCREMENT included), every sequence's definition and state, and
//! every view, routine, trigger and event definition equal the source's.
//!
//! The fixtures are in `tests/fixtures/fidelity/`, one file per class.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keeper_agent::AgentContext;
use keeper_agent::manifest::{DataSkipped, Manifest, MemberKind};
use keeper_tests::MariaDb;
use mysql_async::prelude::Queryable;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fidelity")
        .join(name)
}

fn ctx(server: &MariaDb) -> AgentContext {
    AgentContext {
        env: [("MYSQL_PWD".to_owned(), server.root_password().to_owned())].into(),
        kube: None,
    }
}

fn connect_args(server: &MariaDb) -> Vec<String> {
    vec![
        "--host".into(),
        server.host().into(),
        "--port".into(),
        server.port().to_string(),
        "--user".into(),
        server.root_user().into(),
    ]
}

/// Every fidelity case runs for each of these: the dump's bytes differ,
/// what comes back must not.
const CODECS: [&str; 2] = ["gzip", "zstd"];

/// A backup of everything on `source` into a new folder, compressed with
/// `compression`: (folder, manifest).
async fn back_up(source: &MariaDb, dir: &Path, compression: &str) -> (PathBuf, Manifest) {
    let url = format!("file://{}", dir.display());
    // The gzip backup keeps the folder name tests look for (`fid`).
    let name = match compression {
        "gzip" => "fid".to_owned(),
        other => format!("fid-{other}"),
    };
    let mut argv = vec!["keeper-agent".to_owned(), "backup".to_owned()];
    argv.extend(connect_args(source));
    argv.extend(
        [
            "--parallel",
            "3",
            "--to",
            &url,
            "--name",
            &name,
            "--compression",
            compression,
        ]
        .map(str::to_owned),
    );
    keeper_agent::run(argv, ctx(source)).await.unwrap();
    let folder = dir.join(&name);
    let manifest =
        Manifest::from_json(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    (folder, manifest)
}

/// Restores with the agent's CLI; returns how many `LOAD DATA` statements
/// the target ran meanwhile (the restore sends rows that way where they
/// store the same values, so the comparisons cover that path too).
async fn restore_with_agent(folder: &Path, target: &MariaDb) -> u64 {
    let before = load_statements(target).await;
    let mut argv = vec!["keeper-agent".to_owned(), "restore".to_owned()];
    argv.extend(connect_args(target));
    argv.extend(
        [
            "--from",
            &format!("file://{}", folder.display()),
            "--parallel",
            "3",
        ]
        .map(str::to_owned),
    );
    keeper_agent::run(argv, ctx(target)).await.unwrap();
    load_statements(target).await - before
}

/// The server's count of `LOAD DATA` statements so far.
async fn load_statements(server: &MariaDb) -> u64 {
    let mut conn = server.connect().await.unwrap();
    let n: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Com_load'")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    n.map_or(0, |(_, n)| n)
}

/// `gunzip -c dump.sql.gz | mariadb --comments` (or `zstd -dc
/// dump.sql.zst`), as a user without Keeper would restore (`--comments`
/// keeps comments inside routine bodies).
fn restore_with_client(folder: &Path, manifest: &Manifest, target: &MariaDb) {
    let (tool, flag) = match manifest.dump_file() {
        "dump.sql.gz" => ("gunzip", "-c"),
        "dump.sql.zst" => ("zstd", "-dc"),
        other => panic!("no tool for {other}"),
    };
    let sql = Command::new(tool)
        .arg(flag)
        .arg(folder.join(manifest.dump_file()))
        .output()
        .unwrap_or_else(|e| panic!("{tool} is not installed ({e}): cargo xtask deps installs it"));
    assert!(sql.status.success(), "{tool} failed");
    let client = ["/usr/bin/mariadb", "/usr/local/bin/mariadb"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("mariadb"));
    let mut child = Command::new(client)
        .arg("--no-defaults")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", target.host()))
        .arg(format!("--port={}", target.port()))
        .arg(format!("--user={}", target.root_user()))
        .arg("--comments")
        .arg("--max-allowed-packet=64M")
        .env("MYSQL_PWD", target.root_password())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mariadb client is installed");
    let mut stdin = child.stdin.take().unwrap();
    // A client that stops early closes its end: its error says why.
    let _ = stdin.write_all(&sql.stdout);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {flag} {} | mariadb failed: {}",
        manifest.dump_file(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn rows(conn: &mut mysql_async::Conn, sql: &str) -> Vec<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i).unwrap() {
                    mysql_async::Value::NULL => "NULL".to_owned(),
                    mysql_async::Value::Bytes(b) => match std::str::from_utf8(b) {
                        Ok(s) => s.to_owned(),
                        Err(_) => format!("0x{}", hex::encode(b)),
                    },
                    other => other.as_sql(true),
                })
                .collect()
        })
        .collect()
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Everything that must come back, by object, as comparable text.
async fn fingerprint(server: &MariaDb, databases: &[&str]) -> BTreeMap<String, String> {
    let mut conn = server.connect().await.unwrap();
    let mut out = BTreeMap::new();
    for &db in databases {
        let objects = rows(
            &mut conn,
            &format!(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} ORDER BY TABLE_NAME",
                lit(db)
            ),
        )
        .await;
        assert!(!objects.is_empty(), "{db} is empty");
        for o in objects {
            let (name, kind) = (&o[0], &o[1]);
            let q = format!("{}.{}", ident(db), ident(name));
            let key = format!("{db}.{name}");
            match kind.as_str() {
                "VIEW" => {
                    let create = rows(&mut conn, &format!("SHOW CREATE VIEW {q}")).await;
                    // The definition and its creation context (client
                    // character set, connection collation).
                    out.insert(format!("{key} view"), create[0][1..=3].join(" | "));
                    let data = rows(&mut conn, &format!("SELECT * FROM {q}")).await;
                    out.insert(format!("{key} view rows"), format!("{data:?}"));
                }
                "SEQUENCE" => {
                    let create = rows(&mut conn, &format!("SHOW CREATE SEQUENCE {q}")).await;
                    out.insert(format!("{key} sequence"), create[0][1].clone());
                    let state = rows(&mut conn, &format!("SELECT * FROM {q}")).await;
                    out.insert(format!("{key} sequence state"), format!("{state:?}"));
                }
                _ => {
                    let sum = rows(&mut conn, &format!("CHECKSUM TABLE {q}")).await;
                    out.insert(format!("{key} checksum"), sum[0][1].clone());
                    let count = rows(&mut conn, &format!("SELECT COUNT(*) FROM {q}")).await;
                    out.insert(format!("{key} rows"), count[0][0].clone());
                    let create = rows(&mut conn, &format!("SHOW CREATE TABLE {q}")).await;
                    out.insert(format!("{key} create"), create[0][1].clone());
                    let versioned = kind == "SYSTEM VERSIONED";
                    if versioned {
                        // Every row version with its own row start and end.
                        let query = history_query(&mut conn, db, name).await;
                        let history = rows(&mut conn, &query).await;
                        out.insert(format!("{key} history"), format!("{history:?}"));
                    }
                    // Which rows each partition holds (exact counts, not
                    // the statistics' estimates; a SYSTEM_TIME partition
                    // named this way shows its history rows).
                    for p in rows(
                        &mut conn,
                        &format!(
                            "SELECT COALESCE(SUBPARTITION_NAME, PARTITION_NAME) FROM information_schema.PARTITIONS \
                             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND PARTITION_NAME IS NOT NULL",
                            lit(db),
                            lit(name)
                        ),
                    )
                    .await
                    {
                        let n = rows(
                            &mut conn,
                            &format!("SELECT COUNT(*) FROM {q} PARTITION ({})", ident(&p[0])),
                        )
                        .await;
                        out.insert(format!("{key} partition {}", p[0]), n[0][0].clone());
                    }
                }
            }
        }
        for (kind, list, body) in [
            (
                "PROCEDURE",
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'PROCEDURE' AND ROUTINE_SCHEMA = ",
                2,
            ),
            (
                "FUNCTION",
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' AND ROUTINE_SCHEMA = ",
                2,
            ),
            (
                "TRIGGER",
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ",
                2,
            ),
            (
                "EVENT",
                "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ",
                3,
            ),
        ] {
            for r in rows(&mut conn, &format!("{list}{}", lit(db))).await {
                if kind == "TRIGGER" {
                    // The order among triggers of one table, event and time
                    // (FOLLOWS / PRECEDES), which SHOW CREATE does not show.
                    let order = rows(
                        &mut conn,
                        &format!(
                            "SELECT EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER \
                             FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {} AND TRIGGER_NAME = {}",
                            lit(db),
                            lit(&r[0])
                        ),
                    )
                    .await;
                    out.insert(format!("{db}.{} trigger order", r[0]), order[0].join(" "));
                }
                let create = rows(
                    &mut conn,
                    &format!("SHOW CREATE {kind} {}.{}", ident(db), ident(&r[0])),
                )
                .await;
                // sql_mode, the statement, and its creation context: the
                // client character set, the connection collation and the
                // database's collation when it was created.
                out.insert(
                    format!("{db}.{} {kind}", r[0]),
                    format!(
                        "{} {} | {}",
                        create[0][1],
                        create[0][body],
                        create[0][body + 1..=body + 3].join(" | ")
                    ),
                );
            }
        }
    }
    conn.disconnect().await.unwrap();
    out
}

/// A query of every version of a system-versioned table's rows, period
/// columns included (named or the implicit `ROW_START`/`ROW_END`), sorted.
async fn history_query(conn: &mut mysql_async::Conn, db: &str, table: &str) -> String {
    let columns = rows(
        conn,
        &format!(
            "SELECT COLUMN_NAME, GENERATION_EXPRESSION FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            lit(db),
            lit(table)
        ),
    )
    .await;
    let mut names: Vec<String> = columns.iter().map(|c| ident(&c[0])).collect();
    if !columns
        .iter()
        .any(|c| c[1].eq_ignore_ascii_case("ROW START"))
    {
        names.extend(["ROW_START".to_owned(), "ROW_END".to_owned()]);
    }
    format!(
        "SELECT {cols} FROM {}.{} FOR SYSTEM_TIME ALL ORDER BY {cols}",
        ident(db),
        ident(table),
        cols = names.join(", ")
    )
}

fn assert_same(what: &str, source: &BTreeMap<String, String>, got: &BTreeMap<String, String>) {
    for (k, v) in source {
        assert_eq!(got.get(k), Some(v), "{what}: {k} differs");
    }
    assert_eq!(
        source.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{what}: the objects differ"
    );
}

async fn drop_databases(server: &MariaDb, databases: &[&str]) {
    let mut conn = server.connect().await.unwrap();
    for db in databases {
        conn.query_drop(format!("DROP DATABASE {}", ident(db)))
            .await
            .unwrap();
    }
    conn.disconnect().await.unwrap();
}

/// Loads `file` into a fresh source, backs it up, restores it into a fresh
/// target with the agent, then (after dropping the databases again) with
/// `gunzip | mariadb`, and checks that both restores equal the source.
/// Returns the manifest and the servers for checks of the class.
async fn round_trip(file: &str, databases: &[&str]) -> RoundTrip {
    round_trip_with(file, databases, &[], |_| String::new()).await
}

/// [`round_trip`] with server plugins loaded on both servers first, and SQL
/// that depends on the source (its port) run after the fixture.
async fn round_trip_with(
    file: &str,
    databases: &[&str],
    plugins: &[&str],
    source_sql: impl Fn(&MariaDb) -> String,
) -> RoundTrip {
    let install: String = plugins
        .iter()
        .map(|p| format!("INSTALL SONAME '{p}';\n"))
        .collect();
    let source = MariaDb::start().unwrap();
    if !install.is_empty() {
        source.run_sql(&install, None).unwrap();
    }
    source.run_sql_file(&fixture(file), None).unwrap();
    let extra = source_sql(&source);
    if !extra.is_empty() {
        source.run_sql(&extra, None).unwrap();
    }
    round_trip_loaded(source, databases, &install).await
}

/// [`round_trip`] of a source loaded by the test itself (with `install`
/// run on the target first).
async fn round_trip_loaded(source: MariaDb, databases: &[&str], install: &str) -> RoundTrip {
    round_trip_except(source, databases, install, &[]).await
}

/// [`round_trip_loaded`], leaving out of the comparison the fingerprint
/// entries that start with one of `not_exact` (what the backup's manifest
/// lists as differences).
async fn round_trip_except(
    source: MariaDb,
    databases: &[&str],
    install: &str,
    not_exact: &[&str],
) -> RoundTrip {
    let known = |mut print: BTreeMap<String, String>| {
        print.retain(|k, _| !not_exact.iter().any(|n| k.starts_with(n)));
        print
    };
    let dir = tempfile::tempdir().unwrap();
    let mut backups = Vec::new();
    for compression in CODECS {
        backups.push(back_up(&source, dir.path(), compression).await);
    }
    // After the backups: reading a sequence's state moves it on.
    let want = known(fingerprint(&source, databases).await);

    let target = MariaDb::start().unwrap();
    if !install.is_empty() {
        target.run_sql(install, None).unwrap();
    }
    let mut loads = Vec::new();
    for (i, (folder, manifest)) in backups.iter().enumerate() {
        let codec = manifest.compression();
        if i > 0 {
            drop_databases(&target, databases).await;
            // What the manifest says of the data is the same whatever the codec.
            assert_eq!(manifest.databases, backups[0].1.databases, "{codec}");
            assert_eq!(manifest.differences, backups[0].1.differences, "{codec}");
        }
        loads.push(restore_with_agent(folder, &target).await);
        assert_same(
            &format!("the agent's restore ({codec})"),
            &want,
            &known(fingerprint(&target, databases).await),
        );
        drop_databases(&target, databases).await;
        restore_with_client(folder, manifest, &target);
        assert_same(
            &format!("{} | mariadb", manifest.dump_file()),
            &want,
            &known(fingerprint(&target, databases).await),
        );
    }
    let manifest = backups.swap_remove(0).1;
    // Every codec's restore loads the same rows the same way.
    assert!(loads.windows(2).all(|w| w[0] == w[1]), "{loads:?}");
    RoundTrip {
        manifest,
        source,
        target,
        loads: loads.first().copied().unwrap_or(0),
        _dir: dir,
    }
}

/// A fresh source loaded statement by statement over the protocol (the
/// text reaches the server as written: the `mariadb` client would strip
/// comments), with the connection that loaded it.
async fn loaded_over_protocol(statements: &[&str]) -> (MariaDb, mysql_async::Conn) {
    let source = MariaDb::start().unwrap();
    let mut conn = source.connect().await.unwrap();
    for statement in statements {
        conn.query_drop(*statement).await.unwrap();
    }
    (source, conn)
}

struct RoundTrip {
    manifest: Manifest,
    source: MariaDb,
    target: MariaDb,
    /// `LOAD DATA` statements of the agent's restore (per codec).
    loads: u64,
    _dir: tempfile::TempDir,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_used_by_column_defaults_come_first_across_databases() {
    let rt = round_trip("sequences.sql", &["fid_seq_a", "fid_seq_z"]).await;
    let kinds: Vec<_> = rt.manifest.members.iter().map(|m| m.kind).collect();
    let last_sequences = kinds
        .iter()
        .rposition(|k| *k == MemberKind::Sequences)
        .unwrap();
    let first_schema = kinds.iter().position(|k| *k == MemberKind::Schema).unwrap();
    assert!(last_sequences < first_schema, "{kinds:?}");
    assert_eq!(rt.manifest.format_version, 2);
    // The restored defaults still draw from the restored sequences.
    let mut conn = rt.target.connect().await.unwrap();
    conn.query_drop("INSERT INTO fid_seq_a.a_orders (note) VALUES ('after')")
        .await
        .unwrap();
    let ids = rows(
        &mut conn,
        "SELECT GROUP_CONCAT(id ORDER BY id) FROM fid_seq_a.a_orders",
    )
    .await;
    assert_eq!(ids[0][0], "100,105,110,115");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_violate_check_constraints_come_back() {
    let rt = round_trip("check_constraints.sql", &["fid_check"]).await;
    let mut conn = rt.target.connect().await.unwrap();
    let bad = rows(
        &mut conn,
        "SELECT (SELECT COUNT(*) FROM fid_check.prices WHERE amount < 0 OR low >= high), \
                (SELECT COUNT(*) FROM fid_check.codes WHERE code NOT REGEXP '^[A-Z]+$' OR CHAR_LENGTH(code) > 3)",
    )
    .await;
    assert_eq!(bad[0], ["3", "3"]);
    // The constraints themselves are back and enforced for new rows.
    let refused = conn
        .query_drop("INSERT INTO fid_check.prices (amount, low, high) VALUES (-1, 1, 2)")
        .await;
    assert!(refused.is_err(), "the CHECK constraint is not enforced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_whose_engine_does_not_own_its_rows_keep_only_their_definition() {
    // A FEDERATED table that reads a child on the source itself, through an
    // account that may only read: a restore that wrote its rows would write
    // into the source (and here fail).
    let rt = round_trip_with(
        "merge.sql",
        &["fid_merge"],
        &["ha_blackhole", "ha_federatedx"],
        |source| {
            format!(
                "CREATE USER 'fed'@'127.0.0.1' IDENTIFIED BY 'fed-reader';
                 GRANT SELECT ON fid_merge.* TO 'fed'@'127.0.0.1';
                 CREATE TABLE fid_merge.remote (id INT NOT NULL, note VARCHAR(20), KEY (id))
                   ENGINE=FEDERATED CONNECTION='mysql://fed:fed-reader@127.0.0.1:{}/fid_merge/part_2024';",
                source.port()
            )
        },
    )
    .await;
    let db = &rt.manifest.databases[0];
    let entry = |name: &str| db.tables.iter().find(|t| t.name == name).unwrap();
    for merge in ["all_parts", "read_only_parts"] {
        assert_eq!(entry(merge).engine, "MRG_MyISAM");
        assert_eq!(
            entry(merge).data_skipped,
            Some(DataSkipped::UnderlyingTables)
        );
        assert_eq!(entry(merge).rows, 0);
    }
    assert_eq!(entry("sink").data_skipped, Some(DataSkipped::NoStorage));
    assert_eq!(entry("remote").engine, "FEDERATED");
    assert_eq!(
        entry("remote").data_skipped,
        Some(DataSkipped::ExternalSource)
    );
    for child in ["part_2023", "part_2024"] {
        assert_eq!(entry(child).data_skipped, None);
    }
    assert_eq!(entry("part_2023").rows + entry("part_2024").rows, 6);
    let data_tables: Vec<_> = rt
        .manifest
        .members
        .iter()
        .filter(|m| m.kind == MemberKind::Data)
        .filter_map(|m| m.table.as_deref())
        .collect();
    assert_eq!(data_tables, ["part_2023", "part_2024"]);
    // The MERGE table reads its children's rows, each once.
    let mut conn = rt.target.connect().await.unwrap();
    let merged = rows(
        &mut conn,
        "SELECT GROUP_CONCAT(note ORDER BY note) FROM fid_merge.all_parts",
    )
    .await;
    assert_eq!(merged[0][0], "a,b,c,d,e,through merge");
}

/// Characters whose second byte is 0x5C (a backslash in ASCII), and the
/// codes that do not survive a conversion through Unicode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multibyte_text_with_backslash_bytes_comes_back_byte_for_byte() {
    let charsets = ["sjis", "cp932", "gbk", "big5"];
    let rt = round_trip("charsets.sql", &["fid_charset"]).await;
    let mut src = rt.source.connect().await.unwrap();
    let have = rows(
        &mut src,
        "SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS",
    )
    .await;
    for cs in charsets {
        assert!(have.iter().any(|r| r[0] == cs), "the server lacks {cs}");
    }
    let mut dst = rt.target.connect().await.unwrap();
    for cs in charsets {
        let q = format!(
            "SELECT id, HEX(v), HEX(c), HEX(t), HEX(e) FROM fid_charset.{cs}_text ORDER BY id"
        );
        let want = rows(&mut src, &q).await;
        assert!(
            want.iter().any(|r| r[1].contains("5C")),
            "{cs}: no 0x5C byte in the fixture"
        );
        assert_eq!(want, rows(&mut dst, &q).await, "{cs} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_follow_views_and_functions_of_other_databases() {
    let rt = round_trip("views.sql", &["fid_view_a", "fid_view_m", "fid_view_z"]).await;
    let views: Vec<_> = rt
        .manifest
        .members
        .iter()
        .filter(|m| m.kind == MemberKind::Views)
        .filter_map(|m| m.database.as_deref())
        .collect();
    assert_eq!(views, ["fid_view_z", "fid_view_m", "fid_view_a"]);
    let mut conn = rt.target.connect().await.unwrap();
    let report = rows(
        &mut conn,
        "SELECT total, twice, one FROM fid_view_a.a_report",
    )
    .await;
    // z_b keeps amounts 20 and 30; tax(x) = 2x + 1.
    assert_eq!(report[0], ["102", "204", "3"]);
}

/// Stored programs whose body ends in a `--` or `#` comment (legal, and the
/// server keeps the comment): the delimiter after the body must not become
/// part of the comment, or the restore stops there. Created over the
/// protocol, since the `mariadb` client strips comments from what it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_programs_ending_in_a_comment_keep_it_and_their_delimiter() {
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_comments",
        "CREATE TABLE fid_comments.t (id INT PRIMARY KEY, note VARCHAR(20))",
        "INSERT INTO fid_comments.t VALUES (1, 'a')",
        "CREATE PROCEDURE fid_comments.p_dash() BEGIN SELECT 1; END -- ends in a dash comment",
        "CREATE FUNCTION fid_comments.f_hash() RETURNS INT DETERMINISTIC RETURN 1 # ends in a hash comment",
        "CREATE TRIGGER fid_comments.t_bi BEFORE INSERT ON fid_comments.t FOR EACH ROW SET NEW.note = UPPER(NEW.note) -- upper case",
        "CREATE EVENT fid_comments.e_prune ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM fid_comments.t WHERE id < 0 # prune",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &["fid_comments"], "").await;
    // The restored trigger still runs, and the comment is still there.
    let mut conn = rt.target.connect().await.unwrap();
    conn.query_drop("INSERT INTO fid_comments.t VALUES (2, 'b')")
        .await
        .unwrap();
    let note = rows(&mut conn, "SELECT note FROM fid_comments.t WHERE id = 2").await;
    assert_eq!(note[0][0], "B");
    let body = rows(&mut conn, "SHOW CREATE PROCEDURE fid_comments.p_dash").await;
    assert!(
        body[0][2].ends_with("-- ends in a dash comment"),
        "{}",
        body[0][2]
    );
}

/// A routine created under `NO_BACKSLASH_ESCAPES` whose literals end in a
/// backslash: the agent's statement splitter reads the body under the
/// routine's own `sql_mode`, as the server does, and does not take a valid
/// backup for a corrupt one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routines_under_no_backslash_escapes_split_as_the_server_reads_them() {
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_escapes",
        "CREATE TABLE fid_escapes.t (id INT PRIMARY KEY, path VARCHAR(20))",
        "INSERT INTO fid_escapes.t VALUES (1, 'C:\\\\dir\\\\')",
        "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
        "CREATE FUNCTION fid_escapes.f_root() RETURNS VARCHAR(10) DETERMINISTIC RETURN 'C:\\'",
        "CREATE PROCEDURE fid_escapes.p_pair() SELECT 'a\\', 'b;c\\'",
        "CREATE VIEW fid_escapes.v_paths AS SELECT path, 'x\\' AS tail FROM fid_escapes.t",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &["fid_escapes"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    let root = rows(&mut conn, "SELECT fid_escapes.f_root()").await;
    assert_eq!(root[0][0], "C:\\");
    let tail = rows(&mut conn, "SELECT tail FROM fid_escapes.v_paths").await;
    assert_eq!(tail[0][0], "x\\");
}

/// A sequence that has cycled keeps its cycle count and its next value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycled_sequence_keeps_its_round() {
    let (source, mut conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_cycle",
        "CREATE SEQUENCE fid_cycle.s START WITH 1 MINVALUE 1 MAXVALUE 3 INCREMENT BY 1 NOCACHE CYCLE",
        "SELECT NEXTVAL(fid_cycle.s), NEXTVAL(fid_cycle.s), NEXTVAL(fid_cycle.s), NEXTVAL(fid_cycle.s), NEXTVAL(fid_cycle.s), NEXTVAL(fid_cycle.s), NEXTVAL(fid_cycle.s)",
    ])
    .await;
    let state = rows(&mut conn, "SELECT cycle_count FROM fid_cycle.s").await;
    assert_eq!(state[0][0], "2", "the fixture cycles twice");
    conn.disconnect().await.unwrap();
    // The fingerprint compares every column of the sequence, cycle_count included.
    let rt = round_trip_loaded(source, &["fid_cycle"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    let next = rows(&mut conn, "SELECT NEXTVAL(fid_cycle.s)").await;
    assert_eq!(next[0][0], "2");
}

/// Stored programs and views keep their creation context: the client
/// character set and connection collation they were created under (which
/// give their string literals a character set and a collation), and the
/// database collation of the time (which gives parameters and variables
/// without one their character set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_keep_their_creation_context() {
    let (source, mut conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_context CHARACTER SET latin1 COLLATE latin1_swedish_ci",
        "CREATE TABLE fid_context.t (id INT PRIMARY KEY, note VARCHAR(20))",
        "INSERT INTO fid_context.t VALUES (1, 'a')",
        // Created while the database is latin1: `p` and `v` are latin1.
        "CREATE FUNCTION fid_context.f_param(p VARCHAR(10)) RETURNS VARCHAR(10) DETERMINISTIC RETURN p",
        "SET NAMES latin1 COLLATE latin1_german1_ci",
        "CREATE PROCEDURE fid_context.p_literal() SELECT COLLATION('x') AS c",
        "CREATE TRIGGER fid_context.t_bi BEFORE INSERT ON fid_context.t FOR EACH ROW SET NEW.note = CONCAT(NEW.note, 'x')",
        "CREATE EVENT fid_context.e_noop ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' DISABLE DO DELETE FROM fid_context.t WHERE id < 0",
        "CREATE VIEW fid_context.v AS SELECT COLLATION('x') AS c",
        "SET NAMES utf8mb4",
        "ALTER DATABASE fid_context CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
    ])
    .await;
    let parameters = "SELECT PARAMETER_NAME, CHARACTER_SET_NAME FROM information_schema.PARAMETERS \
                      WHERE SPECIFIC_SCHEMA = 'fid_context' ORDER BY SPECIFIC_NAME, ORDINAL_POSITION";
    let want = rows(&mut conn, parameters).await;
    assert!(want.iter().all(|r| r[1] == "latin1"), "{want:?}");
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &["fid_context"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    assert_eq!(rows(&mut conn, parameters).await, want);
    let literal = rows(&mut conn, "SELECT c FROM fid_context.v").await;
    assert_eq!(literal[0][0], "latin1_german1_ci");
}

/// An ENUM that has `''` as a member holds two values that read as `''`:
/// the member, and the error value (index 0) that a non-strict insert of
/// an invalid value stores. Both come back as they were (CHECKSUM TABLE
/// sees the index), and so do SET values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_values_that_read_alike_come_back_apart() {
    let (source, mut conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_enum",
        "CREATE TABLE fid_enum.t (id INT PRIMARY KEY, e ENUM('', 'a', 'it''s') NULL, plain ENUM('x', 'y'), s SET('p', 'q', 'r'))",
        "SET SESSION sql_mode = ''",
        // id 1: the member ''; id 2: the error value; id 3: NULL.
        "INSERT INTO fid_enum.t VALUES (1, '', 'x', ''), (2, 'nope', 'nope', 'p,r'), (3, NULL, 'y', 'q'), (4, 'it''s', 'x', 'r,p,q')",
    ])
    .await;
    let indexes = "SELECT id, e + 0, plain + 0, s + 0 FROM fid_enum.t ORDER BY id";
    let want = rows(&mut conn, indexes).await;
    assert_eq!(want[0][1], "1");
    assert_eq!(want[1][1], "0");
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &["fid_enum"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    assert_eq!(rows(&mut conn, indexes).await, want);
}

/// System-versioned tables keep their history: every row version with its
/// own row start and end, whether the period columns are implicit or named,
/// in a table partitioned by SYSTEM_TIME, and with an application-time
/// period beside (bitemporal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_versioned_tables_keep_their_history() {
    let (source, mut conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_history",
        "CREATE TABLE fid_history.implicit (id INT PRIMARY KEY, x INT) WITH SYSTEM VERSIONING",
        "CREATE TABLE fid_history.named (id INT PRIMARY KEY, x INT, \
           s TIMESTAMP(6) GENERATED ALWAYS AS ROW START, e TIMESTAMP(6) GENERATED ALWAYS AS ROW END, \
           PERIOD FOR SYSTEM_TIME(s, e)) WITH SYSTEM VERSIONING",
        "CREATE TABLE fid_history.parted (id INT, x INT) WITH SYSTEM VERSIONING \
           PARTITION BY SYSTEM_TIME (PARTITION p_hist HISTORY, PARTITION p_cur CURRENT)",
        "CREATE TABLE fid_history.bitemporal (id INT, x INT, valid_from DATE, valid_to DATE, \
           PERIOD FOR valid(valid_from, valid_to)) WITH SYSTEM VERSIONING",
        "INSERT INTO fid_history.implicit VALUES (1, 1), (2, 2)",
        "INSERT INTO fid_history.named (id, x) VALUES (1, 1), (2, 2)",
        "INSERT INTO fid_history.parted VALUES (1, 1), (2, 2)",
        "INSERT INTO fid_history.bitemporal VALUES (1, 1, '2026-01-01', '2027-01-01')",
        "UPDATE fid_history.implicit SET x = x + 10",
        "UPDATE fid_history.named SET x = x + 10",
        "UPDATE fid_history.parted SET x = x + 10",
        "UPDATE fid_history.bitemporal FOR PORTION OF valid FROM '2026-06-01' TO '2027-01-01' SET x = 5",
        "DELETE FROM fid_history.implicit WHERE id = 2",
        "DELETE FROM fid_history.named WHERE id = 2",
        "DELETE FROM fid_history.parted WHERE id = 2",
        // Partition statistics are estimates until analysed.
        "ANALYZE TABLE fid_history.parted",
    ])
    .await;
    let queries = [
        "SELECT id, x, ROW_START, ROW_END FROM fid_history.implicit FOR SYSTEM_TIME ALL ORDER BY id, ROW_START",
        "SELECT id, x, s, e FROM fid_history.named FOR SYSTEM_TIME ALL ORDER BY id, s",
        "SELECT id, x, ROW_START, ROW_END FROM fid_history.parted FOR SYSTEM_TIME ALL ORDER BY id, ROW_START",
        "SELECT id, x, valid_from, valid_to, ROW_START, ROW_END FROM fid_history.bitemporal FOR SYSTEM_TIME ALL ORDER BY id, valid_from, ROW_START",
        "SELECT PARTITION_NAME, TABLE_ROWS FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA = 'fid_history' AND TABLE_NAME = 'parted' ORDER BY PARTITION_NAME",
    ];
    let mut want = Vec::new();
    for q in queries {
        want.push(rows(&mut conn, q).await);
    }
    assert_eq!(want[0].len(), 4, "two versions of id 1, two of id 2");
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &["fid_history"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    conn.query_drop("ANALYZE TABLE fid_history.parted")
        .await
        .unwrap();
    for (q, want) in queries.iter().zip(&want) {
        assert_eq!(&rows(&mut conn, q).await, want, "{q}");
    }
}

/// Tables from MariaDB's own test suites (`upstream_tables.sql`): numeric
/// and temporal extremes, the type plugins, compressed columns, expression
/// defaults, invisible and generated columns, application-time periods,
/// CHECK constraints, every kind of partitioning, per-group MyISAM
/// counters, long unique keys, identifiers that need quoting and column
/// character sets. The fingerprint counts every partition's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tables_come_back_exactly() {
    let rt = round_trip("upstream_tables.sql", &["fid_up_tables"]).await;
    // Some of these tables' rows went by LOAD DATA (and came back the same).
    assert!(rt.loads > 0, "no table loaded by LOAD DATA");
    let mut conn = rt.target.connect().await.unwrap();
    // Counters go on where the source's would: per group, and above the rows.
    conn.query_drop("INSERT INTO fid_up_tables.per_group (grp) VALUES ('a'), ('b')")
        .await
        .unwrap();
    let next = rows(
        &mut conn,
        "SELECT GROUP_CONCAT(CONCAT(grp, n) ORDER BY grp, n) FROM fid_up_tables.per_group",
    )
    .await;
    assert_eq!(next[0][0], "a1,a2,a3,a4,b1,b2,b3");
    conn.query_drop("INSERT INTO fid_up_tables.counter_high () VALUES ()")
        .await
        .unwrap();
    let id = rows(&mut conn, "SELECT MAX(id) FROM fid_up_tables.counter_high").await;
    assert_eq!(id[0][0], "5000");
    // Invisible columns stay invisible and keep their values.
    let visible = rows(
        &mut conn,
        "SELECT * FROM fid_up_tables.invisible WHERE id = 1",
    )
    .await;
    assert_eq!(visible[0], ["1", "a"]);
    let hidden = rows(
        &mut conn,
        "SELECT hidden_key, hidden_default FROM fid_up_tables.invisible ORDER BY id",
    )
    .await;
    assert_eq!(hidden[0], ["10", "x"]);
    assert_eq!(hidden[2], ["30", "dflt"]);
}

/// Views, routines, triggers, events and sequences from MariaDB's own test
/// suites (`upstream_programs.sql`): view options, routine characteristics
/// and bodies under ANSI and ORACLE modes (a package too), triggers ordered
/// with FOLLOWS and PRECEDES, events of every schedule (ones whose time has
/// passed included), and sequences of every direction and engine. The
/// fingerprint compares every trigger's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_programs_come_back_exactly() {
    let odd = "fid_up `odd`.d/b ☃";
    let rt = round_trip("upstream_programs.sql", &["fid_up_programs", odd]).await;
    let mut conn = rt.target.connect().await.unwrap();
    // The triggers fire in the source's order.
    conn.query_drop("INSERT INTO fid_up_programs.t1 VALUES (9, 'z')")
        .await
        .unwrap();
    let fired = rows(
        &mut conn,
        "SELECT GROUP_CONCAT(what ORDER BY id) FROM fid_up_programs.log",
    )
    .await;
    assert_eq!(fired[0][0], "tr0 9,tr1 9,tr2 9,tr3 9");
    // Across databases, and the odd name's function still answers.
    let loud = rows(
        &mut conn,
        "SELECT GROUP_CONCAT(loud ORDER BY a) FROM fid_up_programs.v_other",
    )
    .await;
    assert_eq!(loud[0][0], "one!,two!");
    // Events whose time has passed are still there, as they were.
    let events = rows(
        &mut conn,
        "SELECT EVENT_NAME, STATUS, ON_COMPLETION FROM information_schema.EVENTS \
         WHERE EVENT_SCHEMA = 'fid_up_programs' AND EVENT_NAME LIKE 'ee\\_past%' OR EVENT_NAME = 'ee_ended' ORDER BY EVENT_NAME",
    )
    .await;
    assert_eq!(
        events,
        [
            ["ee_ended", "ENABLED", "NOT PRESERVE"],
            ["ee_past_drop", "DISABLED", "NOT PRESERVE"],
            ["ee_past_preserve", "ENABLED", "PRESERVE"],
        ]
    );
}

/// System-versioned tables from MariaDB's own test suites
/// (`upstream_history.sql`): a column without versioning, invisible named
/// period columns, history partitioned by interval and by limit, a MyISAM
/// table with history. The fingerprint compares every row version and the
/// rows of every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_history_comes_back_exactly() {
    let rt = round_trip("upstream_history.sql", &["fid_up_history"]).await;
    assert!(
        rt.manifest.databases[0].tables.iter().all(|t| t.history),
        "the manifest says which tables carry history"
    );
}

/// History partitioned by `SYSTEM_TIME LIMIT` over several partitions
/// (versioning/partition.test): every row version comes back, but the
/// server files restored history rows itself (an INSERT never moves on to
/// the next history partition), so the rows per partition may differ. The
/// backup says so in its manifest, and everything else is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_partitioned_by_limit_is_a_recorded_difference() {
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_limit",
        "SET TIMESTAMP = UNIX_TIMESTAMP('2024-01-01 00:00:00')",
        "CREATE TABLE fid_limit.by_limit (id INT, x INT) WITH SYSTEM VERSIONING \
           PARTITION BY SYSTEM_TIME LIMIT 2 (PARTITION h1 HISTORY, PARTITION h2 HISTORY, PARTITION cur CURRENT)",
        "INSERT INTO fid_limit.by_limit VALUES (1, 0)",
        "SET TIMESTAMP = UNIX_TIMESTAMP('2024-01-02 00:00:00')",
        "UPDATE fid_limit.by_limit SET x = 1",
        "SET TIMESTAMP = UNIX_TIMESTAMP('2024-01-03 00:00:00')",
        "UPDATE fid_limit.by_limit SET x = 2",
        "SET TIMESTAMP = UNIX_TIMESTAMP('2024-01-04 00:00:00')",
        "UPDATE fid_limit.by_limit SET x = 3",
        "CREATE TABLE fid_limit.plain (id INT PRIMARY KEY)",
        "INSERT INTO fid_limit.plain VALUES (1)",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let rt = round_trip_except(
        source,
        &["fid_limit"],
        "",
        &["fid_limit.by_limit partition h"],
    )
    .await;
    assert_eq!(
        rt.manifest.differences.len(),
        1,
        "{:?}",
        rt.manifest.differences
    );
    let difference = &rt.manifest.differences[0];
    assert_eq!(difference.object, "TABLE `fid_limit`.`by_limit`");
    assert!(
        difference.difference.contains("SYSTEM_TIME LIMIT"),
        "{difference}"
    );
    // What differs is only where the history rows are filed.
    let mut src = rt.source.connect().await.unwrap();
    let mut dst = rt.target.connect().await.unwrap();
    let all = "SELECT COUNT(*) FROM fid_limit.by_limit FOR SYSTEM_TIME ALL";
    assert_eq!(rows(&mut src, all).await, rows(&mut dst, all).await);
    assert_eq!(rows(&mut src, all).await[0][0], "4");
}

/// A definition whose text is not ASCII, created under a client character
/// set other than UTF-8, is created again under utf8mb4 (its text is the
/// same, its literals' set is not): the one difference the dump cannot
/// avoid. The backup lists it in its manifest, the rest is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_definition_of_a_latin1_client_is_a_recorded_difference() {
    let source = MariaDb::start().unwrap();
    let mut conn = source.connect().await.unwrap();
    conn.query_drop("CREATE DATABASE fid_client").await.unwrap();
    conn.query_drop("CREATE TABLE fid_client.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("CREATE PROCEDURE fid_client.p_ascii() SELECT 'e' AS e")
        .await
        .unwrap();
    conn.query_drop("SET NAMES latin1").await.unwrap();
    // 'é' in latin1: one byte, 0xE9.
    conn.query_drop(&b"CREATE PROCEDURE fid_client.p_latin1() SELECT '\xe9' AS e"[..])
        .await
        .unwrap();
    conn.query_drop("CREATE PROCEDURE fid_client.p_plain() SELECT 'x' AS x")
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let rt = round_trip_except(source, &["fid_client"], "", &["fid_client.p_latin1 "]).await;
    assert_eq!(
        rt.manifest
            .differences
            .iter()
            .map(|d| d.object.as_str())
            .collect::<Vec<_>>(),
        ["PROCEDURE `fid_client`.`p_latin1`"]
    );
    assert!(
        rt.manifest.differences[0]
            .difference
            .contains("character_set_client latin1"),
        "{}",
        rt.manifest.differences[0]
    );
    // The text is the same; only the recorded client set differs.
    let mut conn = rt.target.connect().await.unwrap();
    let create = rows(&mut conn, "SHOW CREATE PROCEDURE fid_client.p_latin1").await;
    assert!(
        create[0][2].ends_with("SELECT 'é' AS e"),
        "{}",
        create[0][2]
    );
    assert_eq!(create[0][3], "utf8mb4");
    let e = rows(&mut conn, "SELECT HEX(CONVERT('é' USING latin1))").await;
    assert_eq!(e[0][0], "E9");
}

/// A table versioned by transaction id (versioning/trx_id.test): its row
/// start and end are transaction ids of the source's transaction_registry,
/// which no server takes on insert. Only its current rows come back (a
/// restore used to fail on the first history row, or make history rows
/// current), and the backup lists it as a difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_by_transaction_id_is_a_recorded_difference() {
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_trx",
        "CREATE TABLE fid_trx.tv (id INT PRIMARY KEY, v INT, \
           s BIGINT UNSIGNED GENERATED ALWAYS AS ROW START, e BIGINT UNSIGNED GENERATED ALWAYS AS ROW END, \
           PERIOD FOR SYSTEM_TIME (s, e)) ENGINE=InnoDB WITH SYSTEM VERSIONING",
        "INSERT INTO fid_trx.tv (id, v) VALUES (1, 1), (2, 2)",
        "UPDATE fid_trx.tv SET v = v + 10 WHERE id = 1",
        "DELETE FROM fid_trx.tv WHERE id = 2",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let rt = round_trip_except(
        source,
        &["fid_trx"],
        "",
        &["fid_trx.tv checksum", "fid_trx.tv history"],
    )
    .await;
    let differences: Vec<_> = rt.manifest.differences.iter().map(|d| &d.object).collect();
    assert_eq!(differences, ["TABLE `fid_trx`.`tv`"]);
    assert!(!rt.manifest.databases[0].tables[0].history);
    let mut conn = rt.target.connect().await.unwrap();
    let current = rows(&mut conn, "SELECT id, v FROM fid_trx.tv ORDER BY id").await;
    assert_eq!(current, [["1", "11"]]);
}

/// The restore's summary (its printed line and the status message the
/// operator shows) says what is not exact: the differences the manifest
/// lists and the warnings the target gave, here a definer account the
/// target does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restore_summary_says_what_is_not_exact() {
    let source = MariaDb::start().unwrap();
    let mut conn = source.connect().await.unwrap();
    for statement in [
        "CREATE DATABASE fid_summary",
        "CREATE TABLE fid_summary.t (id INT PRIMARY KEY)",
        "CREATE USER 'ghost'@'%'",
        "CREATE DEFINER = 'ghost'@'%' VIEW fid_summary.v AS SELECT id FROM fid_summary.t",
        "SET NAMES latin1",
    ] {
        conn.query_drop(statement).await.unwrap();
    }
    conn.query_drop(&b"CREATE PROCEDURE fid_summary.p() SELECT '\xe9' AS e"[..])
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (folder, manifest) = back_up(&source, dir.path(), "gzip").await;
    assert_eq!(manifest.differences.len(), 1, "{:?}", manifest.differences);

    // The target has no account `ghost`: the view is created with a warning.
    let target = MariaDb::start().unwrap();
    let mut argv = vec!["keeper-agent".to_owned(), "restore".to_owned()];
    argv.extend(connect_args(&target));
    argv.extend(["--from".to_owned(), format!("file://{}", folder.display())]);
    let cli = <keeper_agent::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let keeper_agent::cli::Command::Restore(args) = cli.command else {
        panic!("parsed as another command");
    };
    let restored = keeper_agent::restore::restore(args, &ctx(&target), &|_| {})
        .await
        .unwrap();
    let note = restored.status_note().expect("the summary has a note");
    assert!(
        note.starts_with("not exact: 1 object differs from the source, listed in the backup's manifest (differences): PROCEDURE `fid_summary`.`p`: created under character_set_client latin1"),
        "{note}"
    );
    assert!(note.contains("1 warning (all in the log)"), "{note}");
    assert!(note.contains("1449"), "{note}");
    assert!(restored.line().ends_with(&note), "{}", restored.line());
}

/// Bodies that hold what the splitters look for (sp.test, mysqldump.test):
/// `;;` in names, strings and comments, a string with a line that reads
/// `DELIMITER`, a `#` comment with a quote. Created over the protocol, so
/// the text is exactly this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_delimiter_lookalikes_split_as_the_server_reads_them() {
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_split",
        "CREATE TABLE fid_split.t (id INT PRIMARY KEY, note TEXT)",
        "CREATE PROCEDURE fid_split.`p;;x`() SELECT ';;' AS `;;`, 'a\n;;\nb' AS multi",
        "CREATE PROCEDURE fid_split.p_delim() BEGIN\n  SELECT 'line one\nDELIMITER //\nend' AS s;\n  /* ;; in a block comment */\n  SELECT 1; # it's a hash comment ;;\nEND",
        "CREATE FUNCTION fid_split.f_nested() RETURNS TEXT DETERMINISTIC RETURN CONCAT('\\';;', \"\\\";;\", '--', '#')",
        "CREATE TRIGGER fid_split.t_bi BEFORE INSERT ON fid_split.t FOR EACH ROW SET NEW.note = CONCAT(NEW.note, ';;\nDELIMITER ;\n')",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &["fid_split"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    let nested = rows(&mut conn, "SELECT fid_split.f_nested()").await;
    assert_eq!(nested[0][0], "';;\";;--#");
    conn.query_drop("INSERT INTO fid_split.t VALUES (1, 'x')")
        .await
        .unwrap();
    let note = rows(&mut conn, "SELECT note FROM fid_split.t").await;
    assert_eq!(note[0][0], "x;;\nDELIMITER ;\n");
}

/// A target whose `secure_timestamp` forbids setting the session's clock
/// cannot take history rows (system_versioning_insert_history needs it):
/// a backup with history is refused there before anything changes, rather
/// than failing at its first history row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_into_a_target_whose_clock_is_locked_is_refused_first() {
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE fid_clock",
        "CREATE TABLE fid_clock.v (id INT PRIMARY KEY, x INT) WITH SYSTEM VERSIONING",
        "INSERT INTO fid_clock.v VALUES (1, 1)",
        "UPDATE fid_clock.v SET x = 2",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (folder, manifest) = back_up(&source, dir.path(), "gzip").await;
    assert!(manifest.databases[0].tables[0].history);

    let target = MariaDb::start_with(keeper_tests::MariaDbOptions {
        extra_args: vec!["--secure-timestamp=YES".into()],
        ..Default::default()
    })
    .unwrap();
    let mut argv = vec!["keeper-agent".to_owned(), "restore".to_owned()];
    argv.extend(connect_args(&target));
    argv.extend(["--from".to_owned(), format!("file://{}", folder.display())]);
    let err = keeper_agent::run(argv, ctx(&target)).await.unwrap_err();
    let keeper_agent::AgentError::Restore(err) = err else {
        panic!("not a restore error: {err}");
    };
    assert!(
        matches!(
            err,
            keeper_agent::restore::RestoreError::HistoryClockLocked { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("fid_clock.v"), "{err}");
    // Nothing was changed.
    let mut conn = target.connect().await.unwrap();
    let there = rows(
        &mut conn,
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'fid_clock'",
    )
    .await;
    assert_eq!(there[0][0], "0");
}

/// Names the splitters must read as the server does: a database named
/// with a newline, a backslash before a backtick and a client command on a
/// line of its own (mysqldump-nl.test: the dump must not let the `mariadb`
/// client run `\!`), and a routine under ANSI_QUOTES whose double-quoted
/// name ends in a backslash (no escape inside it, as the server reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_newlines_and_ansi_quotes_split_as_the_server_reads_them() {
    let odd = "fid_nl\n1\\`\n\\! echo injected\n#";
    let (source, conn) = loaded_over_protocol(&[
        "CREATE DATABASE `fid_nl\n1\\``\n\\! echo injected\n#`",
        "CREATE TABLE `fid_nl\n1\\``\n\\! echo injected\n#`.`t\n1` (`a\nb` INT PRIMARY KEY)",
        "INSERT INTO `fid_nl\n1\\``\n\\! echo injected\n#`.`t\n1` VALUES (1)",
        "CREATE VIEW `fid_nl\n1\\``\n\\! echo injected\n#`.`v\n1` AS SELECT * FROM `fid_nl\n1\\``\n\\! echo injected\n#`.`t\n1`",
        "CREATE DATABASE fid_ansi",
        "CREATE TABLE fid_ansi.t (id INT PRIMARY KEY)",
        "SET SESSION sql_mode = 'ANSI_QUOTES'",
        "CREATE PROCEDURE fid_ansi.p() SELECT 1 AS \"a\\\", 'b\"' AS \"c\"\"d\"",
        "CREATE VIEW fid_ansi.v AS SELECT 1 AS \"x\\\"",
    ])
    .await;
    conn.disconnect().await.unwrap();
    let rt = round_trip_loaded(source, &[odd, "fid_ansi"], "").await;
    let mut conn = rt.target.connect().await.unwrap();
    let names = rows(&mut conn, "SELECT `x\\` FROM fid_ansi.v").await;
    assert_eq!(names, [["1"]]);
}

/// Secondary indexes the restore builds after the data (one ALTER TABLE
/// per table) come back exactly — definitions and their order in SHOW
/// CREATE TABLE — through both restore paths; what the dump must not defer
/// (keys before a FULLTEXT or SPATIAL key, on generated columns, IGNORED,
/// either side of a foreign key, not InnoDB) stays in the CREATE; and a
/// backup whose manifest predates `deferredIndexes` restores as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_indexes_built_after_the_data_come_back_in_their_order() {
    let databases = ["fid_idx"];
    let source = MariaDb::start().unwrap();
    source.run_sql_file(&fixture("indexes.sql"), None).unwrap();
    // Its rows are compared below instead (see the fixture).
    let gen_checksum = "fid_idx.gen checksum";
    let rt = round_trip_except(source, &databases, "", &[gen_checksum]).await;
    let gen_rows = "SELECT GROUP_CONCAT(CONCAT_WS(':', id, a, v, s) ORDER BY id) FROM fid_idx.gen";
    let mut conn = rt.source.connect().await.unwrap();
    let want_gen = rows(&mut conn, gen_rows).await;
    let mut conn = rt.target.connect().await.unwrap();
    assert_eq!(rows(&mut conn, gen_rows).await, want_gen);
    let deferred: BTreeMap<&str, Vec<&str>> = rt.manifest.databases[0]
        .tables
        .iter()
        .filter(|t| !t.deferred_indexes.is_empty())
        .map(|t| {
            (
                t.name.as_str(),
                t.deferred_indexes.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let want: BTreeMap<&str, Vec<&str>> = [
        (
            "plain",
            vec![
                "KEY `k_a` (`a`)",
                "KEY `k_ab` (`a`,`b`(10)) COMMENT 'two columns, (one a prefix)'",
                "KEY `k_c` (`c`(20)) USING BTREE",
                "KEY `k_d` (`d` DESC)",
            ],
        ),
        ("no_pk", vec!["KEY `k_y` (`y`)"]),
        ("heap", vec!["KEY `k_x` (`x`)"]),
        ("ft", vec!["KEY `k_n` (`n`)", "KEY `k_m` (`m`)"]),
        ("part", vec!["KEY `k_a` (`a`)"]),
        ("altered", vec!["KEY `k_b` (`b`)", "KEY `k_a` (`a`)"]),
        ("we`ird, (name", vec!["KEY `k``ey, (1` (`c,ol)`)"]),
    ]
    .into_iter()
    .collect();
    assert_eq!(deferred, want);

    // The same backup with a manifest from before deferredIndexes.
    let folder = rt._dir.path().join("fid");
    let mut old = rt.manifest.clone();
    for db in &mut old.databases {
        for t in &mut db.tables {
            t.deferred_indexes.clear();
        }
    }
    let json = old.to_json().unwrap();
    assert!(!String::from_utf8_lossy(&json).contains("deferredIndexes"));
    std::fs::write(folder.join("manifest.json"), json).unwrap();
    drop_databases(&rt.target, &databases).await;
    let _ = restore_with_agent(&folder, &rt.target).await;
    let known = |mut print: BTreeMap<String, String>| {
        print.remove(gen_checksum);
        print
    };
    assert_same(
        "the agent's restore of an old manifest",
        &known(fingerprint(&rt.source, &databases).await),
        &known(fingerprint(&rt.target, &databases).await),
    );
    assert_eq!(rows(&mut conn, gen_rows).await, want_gen);
}
