//! A restore request runs at most once against the same data, remembered in
//! the server itself (`backup-agent/src/restore/marker.rs`), against real
//! MariaDB servers through the agent's CLI:
//! - a second run of the same `--request-id`, even with `--overwrite`, drops
//!   and loads nothing: rows written after the first restore survive, and the
//!   run says "already restored";
//! - a new request id restores (and with `--overwrite` replaces the data);
//! - a restore that failed is not recorded, so its retry runs; also one that
//!   failed after the data, while building the indexes it defers: it says
//!   which table lacks them, and its retry restores them;
//! - dumps never include the record's schema, even when it is named.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use keeper_agent::AgentContext;
use keeper_agent::restore::MARKER_SCHEMA;
use keeper_tests::MariaDb;
use mysql_async::prelude::Queryable;

fn ctx(server: &MariaDb) -> AgentContext {
    AgentContext {
        env: HashMap::from([("MYSQL_PWD".to_owned(), server.root_password().to_owned())]),
        kube: None,
    }
}

fn command(verb: &str, server: &MariaDb, rest: &[&str]) -> Vec<String> {
    let mut args = vec!["keeper-agent".to_owned(), verb.to_owned()];
    args.extend([
        "--host".into(),
        server.host().into(),
        "--port".into(),
        server.port().to_string(),
        "--user".into(),
        server.root_user().into(),
    ]);
    args.extend(rest.iter().map(|s| (*s).to_owned()));
    args
}

async fn backup(server: &MariaDb, url: &str, name: &str, databases: &str) {
    keeper_agent::run(
        command(
            "backup",
            server,
            &["--databases", databases, "--to", url, "--name", name],
        ),
        ctx(server),
    )
    .await
    .unwrap();
}

async fn restore(
    server: &MariaDb,
    from: &str,
    request: &str,
    overwrite: bool,
) -> Result<(), keeper_agent::AgentError> {
    let mut rest = vec!["--from", from, "--request-id", request];
    if overwrite {
        rest.push("--overwrite");
    }
    keeper_agent::run(command("restore", server, &rest), ctx(server)).await
}

async fn scalar(server: &MariaDb, sql: &str) -> u64 {
    let mut conn = server.connect().await.unwrap();
    let value: u64 = conn.query_first(sql).await.unwrap().unwrap();
    conn.disconnect().await.unwrap();
    value
}

async fn applied(server: &MariaDb) -> Vec<(String, String)> {
    let mut conn = server.connect().await.unwrap();
    let rows = conn
        .query(format!(
            "SELECT request_id, backup_name FROM `{MARKER_SCHEMA}`.applied_restores ORDER BY request_id"
        ))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    rows
}

fn shop(server: &MariaDb, rows: u32) {
    let values: Vec<String> = (1..=rows).map(|i| format!("({i}, 'order {i}')")).collect();
    server
        .run_sql(
            &format!(
                "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB;
                 INSERT INTO shop.orders VALUES {};",
                values.join(", ")
            ),
            None,
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_request_never_runs_twice_even_with_overwrite() {
    let source = MariaDb::start().unwrap();
    shop(&source, 3);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    backup(&source, &url, "b1", "shop").await;
    source
        .run_sql("INSERT INTO shop.orders VALUES (4, 'order 4');", None)
        .unwrap();
    backup(&source, &url, "b2", "shop").await;

    let target = MariaDb::start().unwrap();
    let b1 = format!("{url}/b1");
    restore(&target, &b1, "req-1", true).await.unwrap();
    assert_eq!(scalar(&target, "SELECT COUNT(*) FROM shop.orders").await, 3);
    assert_eq!(applied(&target).await, [("req-1".into(), "b1".into())]);

    // The application writes after the restore.
    target
        .run_sql(
            "INSERT INTO shop.orders VALUES (100, 'written later');",
            None,
        )
        .unwrap();

    // The same request again (a re-created instance), with overwrite: a no-op.
    restore(&target, &b1, "req-1", true).await.unwrap();
    assert_eq!(
        scalar(&target, "SELECT COUNT(*) FROM shop.orders WHERE id = 100").await,
        1,
        "the row written after the restore survives"
    );
    assert_eq!(scalar(&target, "SELECT COUNT(*) FROM shop.orders").await, 4);

    // Even when the backup is gone: the record is checked before the backup is read.
    std::fs::remove_dir_all(dir.path().join("b1")).unwrap();
    restore(&target, &b1, "req-1", true).await.unwrap();
    assert_eq!(applied(&target).await, [("req-1".into(), "b1".into())]);

    // A new request restores: overwrite replaces the data with b2's.
    restore(&target, &format!("{url}/b2"), "req-2", true)
        .await
        .unwrap();
    assert_eq!(scalar(&target, "SELECT COUNT(*) FROM shop.orders").await, 4);
    assert_eq!(
        scalar(&target, "SELECT COUNT(*) FROM shop.orders WHERE id = 100").await,
        0,
        "a new request with overwrite replaces the data"
    );
    assert_eq!(
        applied(&target).await,
        [("req-1".into(), "b1".into()), ("req-2".into(), "b2".into())],
        "overwrite never drops the record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_not_recorded_and_its_retry_runs() {
    let source = MariaDb::start().unwrap();
    shop(&source, 2);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    backup(&source, &url, "b1", "shop").await;

    let target = MariaDb::start().unwrap();
    target
        .run_sql(
            "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY);",
            None,
        )
        .unwrap();
    // Refused: the target holds the backup's tables and overwrite is off.
    let err = restore(&target, &format!("{url}/b1"), "req-1", false)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(
        scalar(
            &target,
            &format!(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{MARKER_SCHEMA}'"
            )
        )
        .await,
        0,
        "nothing recorded for a failed run"
    );
    // The retry of the same request runs.
    restore(&target, &format!("{url}/b1"), "req-1", true)
        .await
        .unwrap();
    assert_eq!(scalar(&target, "SELECT COUNT(*) FROM shop.orders").await, 2);
    assert_eq!(applied(&target).await, [("req-1".into(), "b1".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_never_include_the_record_of_applied_restores() {
    let source = MariaDb::start().unwrap();
    shop(&source, 2);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    backup(&source, &url, "b1", "shop").await;
    let server = MariaDb::start().unwrap();
    restore(&server, &format!("{url}/b1"), "req-1", false)
        .await
        .unwrap();
    assert_eq!(applied(&server).await.len(), 1);

    // Every user database, then the record's schema named explicitly.
    keeper_agent::run(
        command("backup", &server, &["--to", &url, "--name", "all"]),
        ctx(&server),
    )
    .await
    .unwrap();
    backup(&server, &url, "named", &format!("shop,{MARKER_SCHEMA}")).await;
    for name in ["all", "named"] {
        let manifest =
            std::fs::read_to_string(dir.path().join(name).join("manifest.json")).unwrap();
        assert!(manifest.contains("\"shop\""), "{name}: {manifest}");
        assert!(!manifest.contains(MARKER_SCHEMA), "{name}: {manifest}");
        let mut dump = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(
                std::fs::File::open(dir.path().join(name).join("dump.sql.gz")).unwrap(),
            ),
            &mut dump,
        )
        .unwrap();
        assert!(!dump.contains(MARKER_SCHEMA), "{name}");
    }
    // Naming only the record dumps nothing, and says so.
    let err = keeper_agent::run(
        command(
            "backup",
            &server,
            &["--databases", MARKER_SCHEMA, "--to", &url, "--name", "only"],
        ),
        ctx(&server),
    )
    .await
    .expect_err("nothing to dump");
    assert!(!err.to_string().is_empty());
}

async fn show_create(server: &MariaDb, table: &str) -> String {
    let mut conn = server.connect().await.unwrap();
    let row: (String, String) = conn
        .query_first(format!("SHOW CREATE TABLE {table}"))
        .await
        .unwrap()
        .unwrap();
    conn.disconnect().await.unwrap();
    row.1
}

/// The secondary indexes a restore builds after the data: when that build
/// fails, the restore fails with the table named (it holds its rows
/// without the index), is not recorded, and its retry with `--overwrite`
/// brings the table back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_index_build_fails_loudly_and_its_retry_restores_the_index() {
    let source = MariaDb::start().unwrap();
    source
        .run_sql(
            "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(40), KEY k_note (note)) ENGINE=InnoDB;
             USE shop; INSERT INTO orders SELECT seq, CONCAT('order ', seq) FROM seq_1_to_1000;",
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    backup(&source, &url, "b1", "shop").await;
    let manifest = keeper_agent::manifest::Manifest::from_json(
        &std::fs::read(dir.path().join("b1/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest.databases[0].tables[0].deferred_indexes,
        ["KEY `k_note` (`note`)"]
    );

    // A restoring account that may create and fill tables but not alter
    // them: the index build after the data is what fails.
    let target = MariaDb::start().unwrap();
    target
        .run_sql(
            "CREATE USER 'loader'@'%' IDENTIFIED BY 'loader-password';
             GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, REFERENCES, CREATE VIEW, SHOW VIEW,
                   TRIGGER, EVENT, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, LOCK TABLES ON *.* TO 'loader'@'%';",
            None,
        )
        .unwrap();
    let from = format!("{url}/b1");
    let mut args = command(
        "restore",
        &target,
        &["--from", &from, "--request-id", "req-1"],
    );
    let user = args.iter().position(|a| a == "--user").unwrap() + 1;
    args[user] = "loader".into();
    let loader = AgentContext {
        env: HashMap::from([("MYSQL_PWD".to_owned(), "loader-password".to_owned())]),
        kube: None,
    };
    let err = keeper_agent::run(args, loader)
        .await
        .expect_err("the index build is refused");
    let message = err.to_string();
    assert!(
        message.contains("secondary indexes of `shop`.`orders`")
            && message.contains("without those indexes")
            && message.contains("--overwrite"),
        "{message}"
    );
    assert_eq!(
        scalar(&target, "SELECT COUNT(*) FROM shop.orders").await,
        1000,
        "the rows came before the index build"
    );
    assert!(!show_create(&target, "shop.orders").await.contains("k_note"));
    assert_eq!(
        scalar(
            &target,
            &format!(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{MARKER_SCHEMA}'"
            )
        )
        .await,
        0,
        "nothing recorded for a failed run"
    );

    // A retry without --overwrite refuses the partial target; with it, the
    // table comes back whole.
    let refused = restore(&target, &from, "req-1", false)
        .await
        .expect_err("a partial target is refused");
    assert!(refused.to_string().contains("--overwrite"), "{refused}");
    restore(&target, &from, "req-1", true).await.unwrap();
    assert_eq!(
        show_create(&target, "shop.orders").await,
        show_create(&source, "shop.orders").await
    );
    assert_eq!(applied(&target).await, [("req-1".into(), "b1".into())]);
}
