//! The backup user against a real server: the operator's account manager
//! (the one the instance reconcile calls) ensures `keeper_backup` on a harness
//! MariaDB, twice; that read-only dump account then takes a backup with the
//! agent of a database with a table, a view, a function and a trigger, which
//! root restores into a second server (restores run as root,
//! `operator/src/accounts.rs`). The dump account can change nothing: no
//! accounts, no grants, no writes, no DDL, no routines; an account created
//! with the wider grants of earlier releases is narrowed. The application
//! account is created locked for a restore, and unlocked after it.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use keeper_agent::AgentContext;
use keeper_operator::accounts::{
    AccountManager, AccountTarget, AppAccess, AppAccountTarget, SqlAccountManager,
};
use keeper_tests::{MariaDb, MariaDbOptions};
use mysql_async::prelude::Queryable;

const BACKUP_USER: &str = "keeper_backup";
/// The operator's generated password stands in as a value with characters
/// that need quoting in SQL.
const BACKUP_PASSWORD: &str = "b4ck'up\\pw-7Qz";

/// Mirrors the operator's my.cnf (`log_bin_trust_function_creators = 1`):
/// the harness server runs with the binary log, as MySQL 8 does by default.
fn server() -> MariaDb {
    MariaDb::start_with(MariaDbOptions {
        extra_args: vec!["--log-bin-trust-function-creators=1".into()],
        ..MariaDbOptions::default()
    })
    .unwrap()
}

fn target(server: &MariaDb, cache_key: &str) -> AccountTarget {
    AccountTarget {
        host: server.host().to_owned(),
        port: server.port(),
        root_user: server.root_user().to_owned(),
        root_password: server.root_password().to_owned(),
        backup_password: BACKUP_PASSWORD.to_owned(),
        cache_key: cache_key.to_owned(),
    }
}

/// Ensures the account the way the reconcile does; each call is a fresh
/// manager (like a restarted operator), so both runs really reach the server.
async fn ensure(server: &MariaDb, cache_key: &str) {
    SqlAccountManager::default()
        .ensure_backup_user(&target(server, cache_key))
        .await
        .unwrap_or_else(|e| panic!("ensuring the backup user: {e}"));
}

async fn grants(server: &MariaDb) -> Vec<String> {
    let mut conn = mysql_async::Conn::new(server.opts()).await.unwrap();
    let grants: Vec<String> = conn
        .query(format!("SHOW GRANTS FOR '{BACKUP_USER}'@'%'"))
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    grants
}

async fn as_backup_user(server: &MariaDb, db: Option<&str>) -> mysql_async::Conn {
    mysql_async::Conn::new(server.opts_for(BACKUP_USER, BACKUP_PASSWORD, db))
        .await
        .unwrap_or_else(|e| panic!("the backup user cannot log in: {e}"))
}

fn agent_env() -> HashMap<String, String> {
    HashMap::from([("MYSQL_PWD".to_owned(), BACKUP_PASSWORD.to_owned())])
}

const SCHEMA: &str = "
CREATE DATABASE shop;
USE shop;
CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, item VARCHAR(40) NOT NULL,
  qty INT NOT NULL, total INT NOT NULL DEFAULT 0);
CREATE TABLE audit (order_id INT NOT NULL, note VARCHAR(80) NOT NULL);
CREATE VIEW big_orders AS SELECT id, item, qty FROM orders WHERE qty >= 10;
DELIMITER ;;
CREATE FUNCTION price(q INT) RETURNS INT DETERMINISTIC RETURN q * 7;;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
  INSERT INTO audit VALUES (NEW.id, CONCAT('new ', NEW.item));;
DELIMITER ;
INSERT INTO orders (item, qty, total) VALUES ('apple', 3, price(3)), ('pear', 12, price(12)),
  ('plum', 30, price(30));
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_user_dumps_and_root_restores() {
    let source = server();
    let target_server = server();
    source.run_sql(SCHEMA, None).unwrap();

    // Ensured twice: the second run succeeds and leaves the same grants.
    ensure(&source, "first").await;
    let first = grants(&source).await;
    ensure(&source, "second").await;
    assert_eq!(
        grants(&source).await,
        first,
        "the second run changes nothing"
    );
    let all = first.join("\n");
    assert!(!all.contains("ALL PRIVILEGES"), "{all}");
    assert!(!all.contains("GRANT OPTION"), "{all}");
    assert!(!all.contains("SUPER"), "{all}");

    // It logs in with the password the operator set, and reads the data.
    let mut conn = as_backup_user(&source, Some("shop")).await;
    let big: u64 = conn
        .query_first("SELECT COUNT(*) FROM big_orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big, 2);

    conn.disconnect().await.unwrap();

    // A backup as that user with the agent.
    let dir = std::env::temp_dir().join(format!("keeper-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let to = format!("file://{}", dir.display());
    let port = source.port().to_string();
    keeper_agent::run(
        [
            "keeper-agent",
            "backup",
            "--host",
            source.host(),
            "--port",
            &port,
            "--user",
            BACKUP_USER,
            "--databases",
            "shop",
            "--to",
            &to,
            "--name",
            "shop-1",
        ],
        AgentContext {
            env: agent_env(),
            kube: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("backup as {BACKUP_USER}: {e}"));

    // A restore as root (what the operator's restore Job does) into a second
    // server.
    let from = format!("{to}/shop-1");
    let port = target_server.port().to_string();
    keeper_agent::run(
        [
            "keeper-agent",
            "restore",
            "--host",
            target_server.host(),
            "--port",
            &port,
            "--user",
            target_server.root_user(),
            "--from",
            &from,
        ],
        AgentContext {
            env: HashMap::from([(
                "MYSQL_PWD".to_owned(),
                target_server.root_password().to_owned(),
            )]),
            kube: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("restore as root: {e}"));

    // Everything came back: rows, the view, the function, the trigger.
    let mut conn = mysql_async::Conn::new(target_server.opts()).await.unwrap();
    let rows: Vec<(i64, String, i64, i64)> = conn
        .query("SELECT id, item, qty, total FROM shop.orders ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            (1, "apple".to_owned(), 3, 21),
            (2, "pear".to_owned(), 12, 84),
            (3, "plum".to_owned(), 30, 210)
        ]
    );
    let big: u64 = conn
        .query_first("SELECT COUNT(*) FROM shop.big_orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big, 2);
    let price: i64 = conn
        .query_first("SELECT shop.price(5)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(price, 35);
    let audited: u64 = conn
        .query_first("SELECT COUNT(*) FROM shop.audit")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audited, 3, "the audit rows of the dump");
    conn.query_drop("INSERT INTO shop.orders (item, qty) VALUES ('fig', 1)")
        .await
        .unwrap();
    let audited: u64 = conn
        .query_first("SELECT COUNT(*) FROM shop.audit")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audited, 4, "the trigger was restored");
    conn.disconnect().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Statements the backup user must not be able to run, each with whether
/// the server refused it (the server has the `shop` schema).
async fn escalations(server: &MariaDb) -> Vec<(&'static str, bool)> {
    let mut conn = as_backup_user(server, None).await;
    let mut out = Vec::new();
    for statement in [
        // Accounts and grants.
        "CREATE USER 'intruder'@'%' IDENTIFIED BY 'x'",
        "GRANT ALL PRIVILEGES ON *.* TO 'keeper_backup'@'%'",
        "GRANT SELECT ON *.* TO 'intruder'@'%'",
        "ALTER USER 'root'@'localhost' IDENTIFIED BY 'x'",
        "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('x')",
        // The grant tables.
        "INSERT INTO mysql.global_priv (Host, User, Priv) VALUES ('%', 'intruder', '{}')",
        "UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'root'",
        "DELETE FROM mysql.global_priv WHERE User = 'root'",
        "INSERT INTO mysql.db (Host, Db, User, Select_priv) VALUES ('%', '%', 'intruder', 'Y')",
        // User data.
        "INSERT INTO shop.orders (item, qty) VALUES ('x', 1)",
        "UPDATE shop.orders SET qty = 0",
        "DELETE FROM shop.orders",
        // DDL.
        "CREATE DATABASE intruder",
        "DROP DATABASE shop",
        "CREATE TABLE shop.intruder (id INT)",
        "DROP TABLE shop.audit",
        "ALTER TABLE shop.orders ADD COLUMN x INT",
        // A routine (as itself, or as root via DEFINER).
        "CREATE FUNCTION shop.f() RETURNS INT RETURN 1",
        "CREATE DEFINER = 'root'@'localhost' PROCEDURE shop.p() SQL SECURITY DEFINER \
         CREATE USER 'intruder'@'%'",
        "CREATE DEFINER = 'root'@'localhost' VIEW shop.v AS SELECT 1",
    ] {
        out.push((statement, conn.query_drop(statement).await.is_err()));
    }
    conn.disconnect().await.unwrap();
    out
}

/// The dump account can change nothing on the server.
///
/// Documented limitation (`operator/src/accounts.rs`): its `SELECT` is
/// global, and on MariaDB (no partial revokes) that includes the `mysql`
/// schema, so it can *read* `mysql.global_priv` (password hashes). Asserted
/// here so a change of that is noticed, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_user_manages_no_accounts() {
    let source = server();
    source.run_sql(SCHEMA, None).unwrap();
    ensure(&source, "only").await;
    let allowed: Vec<&str> = escalations(&source)
        .await
        .into_iter()
        .filter(|(_, refused)| !refused)
        .map(|(statement, _)| statement)
        .collect();
    assert!(
        allowed.is_empty(),
        "the backup user may not run: {allowed:#?}"
    );
    // Nothing was changed behind a refusal.
    let mut root = mysql_async::Conn::new(source.opts()).await.unwrap();
    let intruders: u64 = root
        .query_first("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'intruder'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(intruders, 0);
    let orders: u64 = root
        .query_first("SELECT COUNT(*) FROM shop.orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(orders, 3);
    root.disconnect().await.unwrap();

    // The limitation: reading the grant tables still works on MariaDB.
    let mut conn = as_backup_user(&source, None).await;
    let readable = conn
        .query_drop("SELECT COUNT(*) FROM mysql.global_priv")
        .await
        .is_ok();
    conn.disconnect().await.unwrap();
    assert!(
        readable,
        "mysql.global_priv is no longer readable: update the limitation in accounts.rs"
    );
}

/// An account with the restore privileges of earlier releases (and a
/// database grant) is narrowed to the dump set by the next ensure, and a
/// session that was connected meanwhile (a running dump) keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_wider_account_is_narrowed() {
    let source = server();
    source.run_sql(SCHEMA, None).unwrap();
    source
        .run_sql(
            &format!(
                "CREATE USER '{BACKUP_USER}'@'%' IDENTIFIED BY 'old';
                 GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS, CREATE,
                   ALTER, DROP, INSERT, INDEX, CREATE VIEW, CREATE ROUTINE, ALTER ROUTINE, EXECUTE,
                   REFERENCES, CREATE TEMPORARY TABLES, BINLOG MONITOR, SET USER
                   ON *.* TO '{BACKUP_USER}'@'%';
                 GRANT ALL PRIVILEGES ON shop.* TO '{BACKUP_USER}'@'%';"
            ),
            None,
        )
        .unwrap();
    let mut running = mysql_async::Conn::new(source.opts_for(BACKUP_USER, "old", Some("shop")))
        .await
        .unwrap();
    ensure(&source, "upgrade").await;
    let all = grants(&source).await.join("\n");
    for gone in ["INSERT", "CREATE", "DROP", "SET USER", "ON `shop`"] {
        assert!(!all.contains(gone), "{gone} still granted: {all}");
    }
    assert!(all.contains("BINLOG MONITOR"), "{all}");
    // The connected session still reads (global privileges apply at login).
    let rows: u64 = running
        .query_first("SELECT COUNT(*) FROM orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, 3);
    running.disconnect().await.unwrap();
    let allowed: Vec<&str> = escalations(&source)
        .await
        .into_iter()
        .filter(|(_, refused)| !refused)
        .map(|(statement, _)| statement)
        .collect();
    assert!(allowed.is_empty(), "still allowed: {allowed:#?}");
}

fn app_target(server: &MariaDb, access: AppAccess) -> AppAccountTarget {
    AppAccountTarget {
        host: server.host().to_owned(),
        port: server.port(),
        root_user: server.root_user().to_owned(),
        root_password: server.root_password().to_owned(),
        user: "app".to_owned(),
        password: APP_PASSWORD.to_owned(),
        database: Some("shop_db".to_owned()),
        access,
        instance: "shop/orders".to_owned(),
        cache_key: format!("{access:?}"),
    }
}

const APP_PASSWORD: &str = "app'pw\\-9x";

/// The server's error code for a failed login as `app`, or `None` when it
/// logs in and can read `shop_db`.
async fn app_login(server: &MariaDb) -> Option<u16> {
    match mysql_async::Conn::new(server.opts_for("app", APP_PASSWORD, Some("shop_db"))).await {
        Ok(mut conn) => {
            let one: Option<u32> = conn.query_first("SELECT COUNT(*) FROM t").await.unwrap();
            assert_eq!(one, Some(1));
            conn.disconnect().await.unwrap();
            None
        }
        Err(mysql_async::Error::Server(e)) => Some(e.code),
        Err(other) => panic!("unexpected login failure: {other}"),
    }
}

/// MariaDB: "Access denied, this account is locked" (MySQL 8: 3118).
const ER_ACCOUNT_HAS_BEEN_LOCKED: u16 = 4151;
const ER_ACCESS_DENIED: u16 = 1045;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_account_is_locked_for_a_restore_then_unlocked() {
    let server = server();
    server
        .run_sql(
            "CREATE DATABASE shop_db; CREATE TABLE shop_db.t (id INT); INSERT INTO shop_db.t VALUES (1);",
            None,
        )
        .unwrap();
    assert_eq!(
        app_login(&server).await,
        Some(ER_ACCESS_DENIED),
        "no account yet"
    );

    // Held: created locked, so it is never open for a moment.
    let manager = SqlAccountManager::default();
    manager
        .ensure_app_account(&app_target(&server, AppAccess::Held))
        .await
        .unwrap();
    assert_eq!(app_login(&server).await, Some(ER_ACCOUNT_HAS_BEEN_LOCKED));

    // Open: the restore succeeded; the account logs in and has its database.
    manager
        .ensure_app_account(&app_target(&server, AppAccess::Open))
        .await
        .unwrap();
    assert_eq!(app_login(&server).await, None);

    // Held again (a new restore): locked again although the manager ensured
    // this state before, and the open session is ended.
    let mut session = mysql_async::Conn::new(server.opts_for("app", APP_PASSWORD, Some("shop_db")))
        .await
        .unwrap();
    manager
        .ensure_app_account(&app_target(&server, AppAccess::Held))
        .await
        .unwrap();
    assert_eq!(app_login(&server).await, Some(ER_ACCOUNT_HAS_BEEN_LOCKED));
    let after: Result<Option<u32>, _> = session.query_first("SELECT COUNT(*) FROM t").await;
    assert!(after.is_err(), "the open session was ended: {after:?}");

    // A fresh manager (a restarted operator) unlocks it again; the password
    // of an existing account is kept.
    SqlAccountManager::default()
        .ensure_app_account(&AppAccountTarget {
            password: "another".to_owned(),
            ..app_target(&server, AppAccess::Open)
        })
        .await
        .unwrap();
    assert_eq!(app_login(&server).await, None);
}
