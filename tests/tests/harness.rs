//! The harness itself: real servers answer real clients.

use keeper_tests::{Garage, MariaDb};
use mysql_async::prelude::Queryable;

#[tokio::test]
async fn mariadb_answers_sql_with_binlog_on() -> Result<(), Box<dyn std::error::Error>> {
    let server = MariaDb::start()?;
    let mut conn = server.connect().await?;
    conn.query_drop(
        "CREATE DATABASE harness; CREATE TABLE harness.t (id INT PRIMARY KEY, v VARCHAR(10))",
    )
    .await?;
    conn.exec_drop("INSERT INTO harness.t VALUES (?, ?)", (1, "one"))
        .await?;
    let v: Option<String> = conn
        .query_first("SELECT v FROM harness.t WHERE id = 1")
        .await?;
    assert_eq!(v.as_deref(), Some("one"));
    let log_bin: Option<(String, String)> =
        conn.query_first("SHOW VARIABLES LIKE 'log_bin'").await?;
    assert_eq!(log_bin.map(|(_, v)| v).as_deref(), Some("ON"));
    conn.disconnect().await?;

    // Root logs in with the generated password only.
    let wrong = mysql_async::Conn::new(server.opts_for("root", "not-the-password", None)).await;
    assert!(wrong.is_err(), "a wrong root password must be refused");
    Ok(())
}

#[tokio::test]
async fn two_mariadb_servers_run_side_by_side() -> Result<(), Box<dyn std::error::Error>> {
    let a = MariaDb::start()?;
    let b = MariaDb::start()?;
    assert_ne!(a.port(), b.port());
    let mut ca = a.connect().await?;
    let mut cb = b.connect().await?;
    ca.query_drop("CREATE DATABASE only_on_a").await?;
    let on_b: Vec<String> = cb.query("SHOW DATABASES LIKE 'only_on_a'").await?;
    assert!(on_b.is_empty());
    ca.disconnect().await?;
    cb.disconnect().await?;
    Ok(())
}

#[test]
fn mariadb_client_runs_scripts_with_delimiters() -> Result<(), Box<dyn std::error::Error>> {
    let server = MariaDb::start()?;
    server.run_sql(
        "CREATE DATABASE d;\nDELIMITER ;;\nCREATE FUNCTION d.f() RETURNS INT DETERMINISTIC BEGIN RETURN 7; END;;\nDELIMITER ;\n",
        None,
    )?;
    let runtime = tokio::runtime::Runtime::new()?;
    let seven: Option<i64> = runtime.block_on(async {
        let mut conn = server.connect().await?;
        let v = conn.query_first("SELECT d.f()").await?;
        conn.disconnect().await?;
        Ok::<_, Box<dyn std::error::Error>>(v)
    })?;
    assert_eq!(seven, Some(7));
    Ok(())
}

#[test]
fn mariadb_survives_kill_and_restart() -> Result<(), Box<dyn std::error::Error>> {
    let mut server = MariaDb::start()?;
    server.run_sql("CREATE DATABASE kept; CREATE TABLE kept.t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO kept.t VALUES (1);", None)?;
    let port = server.port();
    server.kill();
    server.restart()?;
    assert_eq!(server.port(), port);
    server.run_sql("INSERT INTO kept.t VALUES (2);", None)?;
    Ok(())
}

#[tokio::test]
async fn garage_puts_and_gets_an_object() -> Result<(), Box<dyn std::error::Error>> {
    let garage = Garage::start()?;
    let s3 = garage.client();
    let body = b"hello from the keeper harness".to_vec();
    s3.put_object()
        .bucket(garage.bucket())
        .key("greeting.txt")
        .body(body.clone().into())
        .send()
        .await?;
    let got = s3
        .get_object()
        .bucket(garage.bucket())
        .key("greeting.txt")
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());

    // Another store's keys are not valid here.
    let other = keeper_tests::s3_client_for(
        &garage.endpoint(),
        "GK000000000000000000000000",
        &"0".repeat(64),
    );
    let denied = other
        .get_object()
        .bucket(garage.bucket())
        .key("greeting.txt")
        .send()
        .await;
    assert!(denied.is_err(), "unknown keys must be refused");
    Ok(())
}
