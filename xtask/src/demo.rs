//! `cargo xtask demo`: the main job, locally, against throwaway servers.

use anyhow::Context;
use keeper_tests::{Garage, MariaDb};
use mysql_async::prelude::Queryable;

pub fn run() -> anyhow::Result<()> {
    crate::deps::install()?;
    eprintln!("demo: starting MariaDB and Garage");
    let source = MariaDb::start().context("starting MariaDB")?;
    let garage = Garage::start().context("starting Garage")?;

    let sakila = keeper_tests::sakila_dir();
    eprintln!("demo: loading the sakila sample from {}", sakila.display());
    source.run_sql_file(&sakila.join("sakila-mv-schema.sql"), None)?;
    source.run_sql_file(&sakila.join("sakila-mv-data.sql"), None)?;

    let runtime = tokio::runtime::Runtime::new()?;
    let tables = runtime.block_on(table_rows(&source, "sakila"))?;
    println!("MariaDB {}:{} holds sakila:", source.host(), source.port());
    for (table, rows) in &tables {
        println!("  {table:<28} {rows:>8} rows");
    }
    println!(
        "Garage S3 listens on {} (region {}, bucket {})",
        garage.endpoint(),
        garage.region(),
        garage.bucket()
    );
    Ok(())
}

/// Exact row counts of every base table in `db`, by name.
pub async fn table_rows(server: &MariaDb, db: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut conn = server.connect().await?;
    let tables: Vec<String> = conn
        .exec(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = ? AND table_type = 'BASE TABLE' ORDER BY table_name",
            (db,),
        )
        .await?;
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let count: Option<u64> = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM `{}`.`{}`",
                db.replace('`', "``"),
                table.replace('`', "``")
            ))
            .await?;
        out.push((table, count.unwrap_or(0)));
    }
    conn.disconnect().await?;
    Ok(out)
}
