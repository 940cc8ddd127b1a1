//! The whole round trip through the agent's own CLI: the sample database
//! (`tests/fixtures/sample`) backed up from one
//! MariaDB with the dump engine and restored into a second one; every table's
//! CHECKSUM TABLE, AUTO_INCREMENT counter and every view, routine, trigger and
//! event definition must be equal.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use keeper_agent::AgentContext;
use keeper_tests::MariaDb;
use mysql_async::prelude::Queryable;

const DB: &str = keeper_tests::sample::DATABASE;

fn ctx(server: &MariaDb) -> AgentContext {
    AgentContext {
        env: HashMap::from([("MYSQL_PWD".to_owned(), server.root_password().to_owned())]),
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

/// Everything that must survive, as comparable text rows.
async fn fingerprint(server: &MariaDb, db: &str) -> Vec<String> {
    let mut conn = server.connect().await.unwrap();
    let mut out = Vec::new();
    let tables: Vec<(String, Option<u64>)> = conn
        .exec(
            "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .unwrap();
    for (table, auto) in &tables {
        let sum: Option<(String, Option<u64>)> = conn
            .query_first(format!("CHECKSUM TABLE `{db}`.`{table}`"))
            .await
            .unwrap();
        out.push(format!(
            "table {table} checksum {:?} auto_increment {auto:?}",
            sum.unwrap().1
        ));
    }
    let queries = [
        "SELECT CONCAT('view ', TABLE_NAME, ': ', VIEW_DEFINITION) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
        "SELECT CONCAT('routine ', ROUTINE_TYPE, ' ', ROUTINE_NAME, ' [', SQL_MODE, ']: ', ROUTINE_DEFINITION) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_NAME",
        "SELECT CONCAT('trigger ', TRIGGER_NAME, ' ', ACTION_TIMING, ' ', EVENT_MANIPULATION, ' ', EVENT_OBJECT_TABLE, ' [', SQL_MODE, ']: ', ACTION_STATEMENT) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME",
        "SELECT CONCAT('event ', EVENT_NAME, ': ', EVENT_DEFINITION) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
    ];
    for q in queries {
        let rows: Vec<String> = conn.exec(q, (db,)).await.unwrap();
        out.extend(rows);
    }
    conn.disconnect().await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_database_round_trips_through_backup_and_restore() {
    let source = MariaDb::start().unwrap();
    keeper_tests::sample::load(&source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());

    let mut backup = vec!["keeper-agent".to_owned(), "backup".to_owned()];
    backup.extend(connect_args(&source));
    backup.extend(
        [
            "--databases",
            DB,
            "--parallel",
            "2",
            "--to",
            &url,
            "--name",
            "rt",
        ]
        .map(str::to_owned),
    );
    keeper_agent::run(backup, ctx(&source)).await.unwrap();

    let target = MariaDb::start().unwrap();
    let mut restore = vec!["keeper-agent".to_owned(), "restore".to_owned()];
    restore.extend(connect_args(&target));
    restore.extend(["--from", &format!("{url}/rt"), "--parallel", "3"].map(str::to_owned));
    keeper_agent::run(restore.clone(), ctx(&target))
        .await
        .unwrap();

    let want = fingerprint(&source, DB).await;
    let got = fingerprint(&target, DB).await;
    assert!(
        want.iter().filter(|l| l.starts_with("table ")).count() >= 14,
        "{want:#?}"
    );
    assert!(want.iter().any(|l| l.starts_with("view ")));
    assert!(want.iter().any(|l| l.starts_with("routine ")));
    assert!(want.iter().any(|l| l.starts_with("trigger ")));
    assert!(want.iter().any(|l| l.starts_with("event ")));
    assert_eq!(want, got);

    // verify and list agree that the backup is good.
    keeper_agent::run(
        ["keeper-agent", "verify", "--from", &format!("{url}/rt")],
        AgentContext::default(),
    )
    .await
    .unwrap();
    let store = keeper_agent::storage::Store::open(
        &keeper_agent::storage::Location::parse(&url).unwrap(),
        &keeper_agent::storage::S3Settings::default(),
    )
    .await
    .unwrap();
    let listed = keeper_agent::repository::list_backups(&store)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].is_complete());

    // Restoring again is refused; with --overwrite it gives the same result.
    let err = keeper_agent::run(restore.clone(), ctx(&target))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--overwrite"), "{err}");
    restore.push("--overwrite".to_owned());
    keeper_agent::run(restore, ctx(&target)).await.unwrap();
    assert_eq!(want, fingerprint(&target, DB).await);
}
