//! Hostile input (issue 12): database, table, column, view, routine and
//! trigger names and comments holding SQL, quotes, backticks, newlines,
//! `*/`, `DELIMITER` and `;;`, and data holding non-UTF-8 bytes and SQL
//! text. The round trip must be exact (names, comments, definitions, every
//! byte of every row, CHECKSUM TABLE), through the agent and through plain
//! `gunzip -c | mariadb`, and a restore must execute nothing the dump did not
//! write: a canary that any injected statement would drop (or a `pwned`
//! table it would create) must be untouched.

#![allow(clippy::unwrap_used)]

mod faults_common;

use std::process::Command;

use faults_common::*;
use keeper_tests::MariaDb;
use mysql_async::prelude::Queryable;

const DB: &str = "evil`db'\"\n;; DELIMITER ; */ -- #";
const TABLE: &str = "t`'\";\nUSE canary; DROP TABLE t; -- */";
const COLUMN: &str = "c`'\"\n;;DELIMITER ;*/ #";
const VIEW: &str = "v`'\n;; */ DROP";
const PROCEDURE: &str = "p`'\"\n;;DELIMITER ;";
const FUNCTION: &str = "f`'\n*/;;";
const TRIGGER: &str = "tr`'\"\n;;*/";
const ALIAS: &str = "a`;;*/\nDELIMITER ;";
/// What an injection would try, in comments, bodies and data.
const INJECT: &str = "'); DROP TABLE canary.t; CREATE TABLE canary.pwned (x INT); -- */ ;;\nDELIMITER ;\nDROP TABLE canary.t;\n/* \\'; DROP DATABASE canary; #\n";

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

fn setup_statements() -> Vec<String> {
    let (db, t, c) = (ident(DB), ident(TABLE), ident(COLUMN));
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    let high_bytes: String = (0x80..=0xFFu8).map(|b| format!("{b:02X}")).collect();
    vec![
        format!("CREATE DATABASE {db}"),
        format!("USE {db}"),
        format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, {c} TEXT CHARACTER SET utf8mb4 COMMENT {i}, \
             b BLOB, l VARCHAR(200) CHARACTER SET latin1 COMMENT {i}) COMMENT {i}",
            i = literal(INJECT)
        ),
        format!(
            "INSERT INTO {t} VALUES (1, {i}, X'{all_bytes}', X'{high_bytes}'), \
             (2, {odd}, X'00275C0A3B3B2A2F', X'E9272722'), (3, NULL, '', '')",
            i = literal(INJECT),
            odd = literal("*/ ;; \\ \" ` \n\r\t\0 DELIMITER ;;\nDELIMITER ;\n😀"),
        ),
        format!(
            "CREATE VIEW {v} AS SELECT id, {c} AS {a}, {i} AS x FROM {t}",
            v = ident(VIEW),
            a = ident(ALIAS),
            i = literal(INJECT)
        ),
        format!(
            "CREATE PROCEDURE {p}() COMMENT {i} BEGIN SET @x = {i}; /* ;; */ SELECT COUNT(*) INTO @y FROM {t}; END",
            p = ident(PROCEDURE),
            i = literal(INJECT)
        ),
        format!(
            "CREATE FUNCTION {f}() RETURNS TEXT DETERMINISTIC COMMENT {i} RETURN {i}",
            f = ident(FUNCTION),
            i = literal(INJECT)
        ),
        format!(
            "CREATE TRIGGER {tr} BEFORE INSERT ON {t} FOR EACH ROW SET NEW.{c} = CONCAT(NEW.{c}, {s})",
            tr = ident(TRIGGER),
            s = literal(";; */ DELIMITER ;")
        ),
    ]
}

fn canary_statements() -> Vec<&'static str> {
    vec![
        "CREATE DATABASE canary",
        "CREATE TABLE canary.t (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO canary.t VALUES (1, 'alive')",
    ]
}

async fn execute(server: &MariaDb, statements: &[String]) {
    let mut conn = server.connect().await.unwrap();
    for s in statements {
        conn.query_drop(s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.disconnect().await.unwrap();
}

/// Everything about the hostile database, as exact bytes (hex).
async fn fingerprint(server: &MariaDb) -> Vec<String> {
    let mut conn = server.connect().await.unwrap();
    let queries = [
        "SELECT CONCAT_WS('|', HEX(SCHEMA_NAME), DEFAULT_CHARACTER_SET_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        "SELECT CONCAT_WS('|', HEX(TABLE_NAME), TABLE_TYPE, HEX(TABLE_COMMENT)) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
        "SELECT CONCAT_WS('|', HEX(TABLE_NAME), HEX(COLUMN_NAME), HEX(COLUMN_COMMENT), COLUMN_TYPE, IFNULL(CHARACTER_SET_NAME, '-')) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
        "SELECT CONCAT_WS('|', HEX(ROUTINE_NAME), ROUTINE_TYPE, HEX(ROUTINE_DEFINITION), HEX(ROUTINE_COMMENT)) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_NAME",
        "SELECT CONCAT_WS('|', HEX(TRIGGER_NAME), HEX(EVENT_OBJECT_TABLE), ACTION_TIMING, HEX(ACTION_STATEMENT)) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME",
        "SELECT CONCAT_WS('|', HEX(TABLE_NAME), HEX(VIEW_DEFINITION)) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
    ];
    let mut out = Vec::new();
    for q in queries {
        let rows: Vec<String> = conn.exec(q, (DB,)).await.unwrap();
        assert!(!rows.is_empty(), "nothing for {q}");
        out.extend(rows);
    }
    let table = format!("{}.{}", ident(DB), ident(TABLE));
    let rows: Vec<String> = conn
        .query(format!(
            "SELECT CONCAT_WS('|', id, IFNULL(HEX({c}), 'NULL'), HEX(b), HEX(l)) FROM {table} ORDER BY id",
            c = ident(COLUMN)
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    out.extend(rows);
    let sum: Option<(String, Option<u64>)> = conn
        .query_first(format!("CHECKSUM TABLE {table}"))
        .await
        .unwrap();
    out.push(format!("checksum {:?}", sum.map(|s| s.1)));
    conn.disconnect().await.unwrap();
    out
}

/// The canary is as it was and nothing was created beside it.
async fn assert_canary_alive(server: &MariaDb) {
    let mut conn = server.connect().await.unwrap();
    let rows: Vec<(i32, String)> = conn.query("SELECT id, v FROM canary.t").await.unwrap();
    assert_eq!(rows, [(1, "alive".to_owned())]);
    let pwned: u64 = conn
        .query_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'pwned' OR TABLE_SCHEMA = 'canary' AND TABLE_NAME <> 't'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pwned, 0);
    conn.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_comments_and_data_round_trip_exactly_and_inject_nothing() {
    let source = MariaDb::start().unwrap();
    let target = MariaDb::start().unwrap();
    let plain = MariaDb::start().unwrap();
    let canary: Vec<String> = canary_statements().into_iter().map(str::to_owned).collect();
    execute(&source, &canary).await;
    execute(&source, &setup_statements()).await;
    let expected = fingerprint(&source).await;

    let env = env(Some(&source), None, None);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    backup(
        &source,
        source.port(),
        &url,
        "hostile",
        &["--databases", DB],
        &env,
    )
    .await
    .unwrap();
    assert_canary_alive(&source).await;
    assert_good_backups_intact(&url, &["hostile"], &env).await;

    // Through the agent, into a server that has its own canary.
    execute(&target, &canary).await;
    let port = target.port().to_string();
    let from = format!("{url}/hostile");
    let mut target_env = env.clone();
    target_env.insert("MYSQL_PWD".into(), target.root_password().into());
    run(
        &[
            "keeper-agent",
            "restore",
            "--host",
            target.host(),
            "--port",
            &port,
            "--user",
            target.root_user(),
            "--from",
            &from,
        ],
        &target_env,
    )
    .await
    .unwrap();
    assert_eq!(fingerprint(&target).await, expected);
    assert_canary_alive(&target).await;

    // Through the plain client, which reads DELIMITER lines itself.
    execute(&plain, &canary).await;
    let dump = dir.path().join("hostile/dump.sql.gz");
    let sql = dir.path().join("plain.sql");
    let out = Command::new("gunzip")
        .arg("-c")
        .arg(&dump)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&sql, &out.stdout).unwrap();
    // `--comments`: without it the client strips `/* … */` from the
    // statements it sends, routine bodies included (its default, not the
    // dump's doing); with it every byte must come back.
    let status = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "--comments",
            "--host=127.0.0.1",
            &format!("--port={}", plain.port()),
            "--user=root",
        ])
        .env("MYSQL_PWD", plain.root_password())
        .stdin(std::fs::File::open(&sql).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(fingerprint(&plain).await, expected);
    assert_canary_alive(&plain).await;
}

/// The checks of the `fuzz/` targets (`manifest`, `statements`) on a few
/// hostile seeds, so the functions they drive stay covered in CI, where the
/// fuzzer does not run.
#[test]
fn fuzz_target_checks_hold_on_hostile_seeds() {
    let manifest_seeds: [&[u8]; 6] = [
        b"",
        b"{",
        b"{\"formatVersion\": 0}",
        b"[1,2,3]",
        b"{\"formatVersion\": 4294967295, \"members\": []}",
        &[0xff, 0xfe, b'{', b'}'],
    ];
    for seed in manifest_seeds {
        if let Ok(m) = keeper_agent::manifest::Manifest::from_json(seed) {
            let json = m.to_json().unwrap();
            keeper_agent::manifest::Manifest::from_json(&json).unwrap();
        }
    }
    let sql_seeds: [&[u8]; 8] = [
        b"",
        b"DELIMITER ;;\nCREATE PROCEDURE p() BEGIN SELECT 1; END;;\nDELIMITER ;\nSELECT 2;",
        b"SELECT '\\'; DROP TABLE t; --'; SELECT `a``;`;",
        b"/* ;; */ -- x;\n# y;\nSELECT 1 /*! ;*/;",
        b"SELECT 'unterminated",
        b"DELIMITER \n",
        b"/*",
        &[b'S', 0xff, 0x00, b'\'', 0x80, b'\'', b';', 0xc3],
    ];
    for seed in sql_seeds {
        let mut last = 0;
        for item in keeper_agent::restore::statements::split(seed).take(seed.len() + 1) {
            let Ok(s) = item else { break };
            assert!(s.offset >= last);
            assert_eq!(&seed[s.offset..s.offset + s.text.len()], s.text);
            last = s.offset;
        }
    }
}
