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

    let url = format!("s3://{}/demo", garage.bucket());
    eprintln!("demo: backing up sakila to {url}");
    runtime.block_on(agent(
        &source,
        &garage,
        &[
            "backup",
            "--s3-force-path-style",
            "--databases",
            "sakila",
            "--to",
            &url,
            "--name",
            "demo",
        ],
    ))?;

    let manifest = runtime.block_on(read_manifest(&garage, "demo/demo/manifest.json"))?;
    print_manifest(&manifest);

    eprintln!("demo: restoring it into a second MariaDB");
    let target = MariaDb::start().context("starting the restore target")?;
    let from = format!("{url}/demo");
    runtime.block_on(agent(
        &target,
        &garage,
        &[
            "restore",
            "--s3-force-path-style",
            "--from",
            &from,
            "--parallel",
            "2",
        ],
    ))?;
    let source_sums = runtime.block_on(table_checksums(&source, "sakila"))?;
    let target_sums = runtime.block_on(table_checksums(&target, "sakila"))?;
    println!("CHECKSUM TABLE, source vs restored:");
    let mut differ = 0;
    for (table, sum) in &source_sums {
        let restored = target_sums
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, s)| *s);
        let ok = restored == Some(*sum);
        differ += usize::from(!ok);
        let show = |s: Option<u64>| s.map_or_else(|| "-".to_owned(), |s| s.to_string());
        println!(
            "  {} {table:<28} {:>12} {:>12}",
            if ok { "✓" } else { "✗" },
            show(*sum),
            show(restored.flatten())
        );
    }
    anyhow::ensure!(
        differ == 0 && source_sums.len() == target_sums.len(),
        "{differ} of {} tables differ after the restore",
        source_sums.len()
    );
    println!("restore: all {} tables match", source_sums.len());
    Ok(())
}

/// Runs the agent in-process against `server` with `garage` as its S3 store,
/// as a Job would run it.
async fn agent(server: &MariaDb, garage: &Garage, args: &[&str]) -> anyhow::Result<()> {
    let port = server.port().to_string();
    let mut argv = vec![
        "keeper-agent",
        args[0],
        "--host",
        server.host(),
        "--port",
        &port,
    ];
    argv.extend(["--user", server.root_user()]);
    argv.extend(&args[1..]);
    let mut env: std::collections::HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert("MYSQL_PWD".to_owned(), server.root_password().to_owned());
    let ctx = keeper_agent::AgentContext { env, kube: None };
    keeper_agent::run(argv, ctx)
        .await
        .with_context(|| format!("keeper-agent {}", args[0]))
}

/// `CHECKSUM TABLE` of every base table in `db`, by name.
async fn table_checksums(server: &MariaDb, db: &str) -> anyhow::Result<Vec<(String, Option<u64>)>> {
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
        let row: Option<(String, Option<u64>)> = conn
            .query_first(format!(
                "CHECKSUM TABLE `{}`.`{}`",
                db.replace('`', "``"),
                table.replace('`', "``")
            ))
            .await?;
        out.push((table, row.and_then(|(_, sum)| sum)));
    }
    conn.disconnect().await?;
    Ok(out)
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

/// The manifest as the agent wrote it, read back from the bucket.
async fn read_manifest(
    garage: &Garage,
    key: &str,
) -> anyhow::Result<keeper_agent::manifest::Manifest> {
    let body = garage
        .client()
        .get_object()
        .bucket(garage.bucket())
        .key(key)
        .send()
        .await
        .with_context(|| format!("reading {key} from the bucket"))?
        .body
        .collect()
        .await
        .context("reading the manifest's body")?
        .into_bytes();
    Ok(keeper_agent::manifest::Manifest::from_json(&body)?)
}

fn print_manifest(m: &keeper_agent::manifest::Manifest) {
    let position = match (&m.snapshot.gtid_executed, &m.snapshot.binlog) {
        (Some(gtid), _) if !gtid.is_empty() => format!("GTID {gtid}"),
        (_, Some(b)) => format!("binlog {}:{}", b.file, b.position),
        _ => "no binary log position".to_owned(),
    };
    println!("backup {} (manifest.json):", m.name);
    println!(
        "  server            {:?} {}",
        m.server.flavor, m.server.version
    );
    println!(
        "  snapshot          {:?}, global lock held {} ms, {position}",
        m.snapshot.consistency,
        m.snapshot.lock_held_ms.unwrap_or(0)
    );
    println!(
        "  content           {} databases, {} tables, {} rows",
        m.databases.len(),
        m.table_count(),
        m.row_count()
    );
    println!(
        "  dump.sql.gz       {} members, {} bytes ({} uncompressed), sha256 {}",
        m.members.len(),
        m.file.size,
        m.uncompressed_bytes(),
        m.file.sha256
    );
    println!(
        "  took              {:.1} s",
        (m.finished_at - m.started_at).num_milliseconds() as f64 / 1000.0
    );
}
