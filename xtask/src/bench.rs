//! `cargo xtask bench`: the same data, the same server, every contender in one run.
//!
//! Times, output sizes and peak RSS come from GNU time (`/usr/bin/time -f`),
//! whose figures for a shell pipeline cover every process in it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use keeper_tests::{Garage, MariaDb, MariaDbOptions};

use crate::sh;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// sysbench tables.
    #[arg(long, default_value_t = 4)]
    pub tables: u32,
    /// Rows per sysbench table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Threads for every parallel contender.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Only dump, skip the restore contenders.
    #[arg(long)]
    pub skip_restore: bool,
    /// Skip the S3 (Garage) destination.
    #[arg(long)]
    pub skip_s3: bool,
}

/// One contender's measured run.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub name: String,
    pub kind: &'static str,
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub output_bytes: Option<u64>,
}

const BENCH_USER: &str = "bench";
// A throwaway server on loopback: this password protects nothing.
const BENCH_PASSWORD: &str = "bench-password";
const DB: &str = "sbtest";
/// The environment `Dockerfile.agent` sets for the agent.
const MALLOC_ENV: &str = "MALLOC_TRIM_THRESHOLD_=1048576";

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    crate::deps::install(crate::deps::Purpose::Bench)?;
    let work = tempfile::Builder::new()
        .prefix("keeper-bench-")
        .tempdir()
        .context("creating the bench work dir")?;
    eprintln!(
        "bench: starting MariaDB, preparing sysbench {} tables x {} rows",
        args.tables, args.rows
    );
    let server = MariaDb::start_with(MariaDbOptions {
        buffer_pool_bytes: 1 << 30,
        ..MariaDbOptions::default()
    })?;
    server.run_sql(
        &format!(
            "CREATE DATABASE {DB}; CREATE USER '{BENCH_USER}'@'127.0.0.1' IDENTIFIED BY '{BENCH_PASSWORD}'; \
             GRANT ALL ON *.* TO '{BENCH_USER}'@'127.0.0.1';"
        ),
        None,
    )?;
    sh::run(
        Command::new("sysbench")
            .arg("oltp_read_write")
            .args(sysbench_conn(&server))
            .arg(format!("--tables={}", args.tables))
            .arg(format!("--table-size={}", args.rows))
            .arg(format!("--threads={}", args.threads.min(args.tables)))
            .arg("prepare")
            .stdout(std::process::Stdio::null()),
    )?;

    let agent = build_agent()?;
    let garage = if args.skip_s3 {
        None
    } else {
        Some(Garage::start().context("starting Garage")?)
    };

    let mut results = Vec::new();
    let dir = work.path();
    let t = args.threads;
    let port = server.port();
    let conn = format!("--host 127.0.0.1 --port {port} --user {BENCH_USER}");
    let dump = format!(
        "mariadb-dump --no-defaults -h127.0.0.1 -P{port} -u{BENCH_USER} --single-transaction --databases {DB}"
    );
    // The dump's memory target holds without the malloc setting of
    // Dockerfile.agent (issue 24), so the dumps run without it; one more run
    // as the image runs it shows what the setting still buys.
    let plain_agent = agent.display().to_string();
    let agent = format!("{MALLOC_ENV} {plain_agent}");
    let backup_args = format!(
        "backup --host 127.0.0.1 --port {port} --user {BENCH_USER} --databases {DB} --parallel {t}"
    );
    let keeper = format!("env -u MALLOC_TRIM_THRESHOLD_ {plain_agent} {backup_args}");
    let mut contenders: Vec<(&str, String, PathBuf)> = vec![
        (
            "keeper-agent backup (file)",
            format!("{keeper} --to file://{}/keeper --name bench", dir.display()),
            dir.join("keeper/bench/dump.sql.gz"),
        ),
        (
            "keeper-agent backup (file, zstd)",
            format!(
                "{keeper} --compression zstd --to file://{}/keeper-zstd --name bench",
                dir.display()
            ),
            dir.join("keeper-zstd/bench/dump.sql.zst"),
        ),
        (
            "keeper-agent backup (file, none)",
            format!(
                "{keeper} --compression none --to file://{}/keeper-none --name bench",
                dir.display()
            ),
            dir.join("keeper-none/bench/dump.sql"),
        ),
        (
            "keeper-agent backup (file, image malloc)",
            format!(
                "{agent} {backup_args} --to file://{}/keeper-malloc --name bench",
                dir.display()
            ),
            dir.join("keeper-malloc/bench/dump.sql.gz"),
        ),
        // The same dump without its row and definition digests: what
        // verified backups cost (issue 23: within 5%).
        (
            "keeper-agent backup (file, no digests)",
            format!(
                "{keeper} --no-digests --to file://{}/keeper-nd --name bench",
                dir.display()
            ),
            dir.join("keeper-nd/bench/dump.sql.gz"),
        ),
        (
            "mydumper (raw, no compression)",
            format!(
                "mydumper {conn} --password {BENCH_PASSWORD} -B {DB} -t {t} -o {}/raw",
                dir.display()
            ),
            dir.join("raw"),
        ),
        (
            "mydumper -c",
            format!(
                "mydumper {conn} --password {BENCH_PASSWORD} -B {DB} -t {t} -c -o {}/myd",
                dir.display()
            ),
            dir.join("myd"),
        ),
        (
            "mariadb-dump | gzip -6",
            format!("{dump} | gzip -6 > {}/dump6.sql.gz", dir.display()),
            dir.join("dump6.sql.gz"),
        ),
        (
            "mariadb-dump | gzip -1",
            format!("{dump} | gzip -1 > {}/dump1.sql.gz", dir.display()),
            dir.join("dump1.sql.gz"),
        ),
        (
            "mariadb-dump | pigz -1 -p 2",
            format!("{dump} | pigz -1 -p 2 > {}/dumpp.sql.gz", dir.display()),
            dir.join("dumpp.sql.gz"),
        ),
    ];
    if garage.is_some() {
        contenders.push((
            "keeper-agent backup (s3, Garage)",
            format!("{keeper} --to s3://keeper-test/bench --name bench --s3-force-path-style"),
            PathBuf::new(),
        ));
    }
    let s3_env = garage.as_ref().map(Garage::env).unwrap_or_default();
    // One unmeasured dump first, for the same reason as the restores' warm-up
    // below: the first contender read the tables and wrote the files first
    // (the same agent dump measured 0-14% slower in first place than later).
    eprintln!("bench: warm-up dump (not measured)");
    let warm_up = dir.join("warm-up");
    measure(
        "warm-up",
        "dump",
        &format!(
            "{keeper} --compression none --to file://{} --name bench",
            warm_up.display()
        ),
        BENCH_PASSWORD,
        &s3_env,
    )?;
    std::fs::remove_dir_all(&warm_up).context("removing the warm-up dump")?;
    for (name, script, output) in contenders {
        let mut m = measure(name, "dump", &script, BENCH_PASSWORD, &s3_env)?;
        m.output_bytes = (!output.as_os_str().is_empty()).then(|| size_of(&output));
        eprintln!("bench: {name}: {:.2}s", m.seconds);
        results.push(m);
    }

    if !args.skip_restore {
        // Every restore goes into the same empty database of a second server.
        let target = MariaDb::start_with(MariaDbOptions {
            buffer_pool_bytes: 1 << 30,
            ..MariaDbOptions::default()
        })?;
        target.run_sql(
            &format!(
                "CREATE USER '{BENCH_USER}'@'127.0.0.1' IDENTIFIED BY '{BENCH_PASSWORD}'; \
                 GRANT ALL ON *.* TO '{BENCH_USER}'@'127.0.0.1';"
            ),
            None,
        )?;
        let tport = target.port();
        let tconn = format!("--host 127.0.0.1 --port {tport} --user {BENCH_USER}");
        copy_without_deferred_indexes(&dir.join("keeper/bench"), &dir.join("keeper-old/bench"))?;
        let mut restores = vec![
            (
                "keeper-agent restore (file)",
                format!(
                    "{agent} restore {tconn} --parallel {t} --from file://{}/keeper/bench",
                    dir.display()
                ),
            ),
            // The same backup, every row as the dump's INSERTs (the agent
            // before LOAD DATA; issue 24's "before", in the same run).
            (
                "keeper-agent restore (file, --insert-only)",
                format!(
                    "{agent} restore {tconn} --parallel {t} --insert-only --from file://{}/keeper/bench",
                    dir.display()
                ),
            ),
            // The same backup as an agent before deferredIndexes wrote it:
            // every index built with its table, row by row (issue 24's
            // "before", measured in the same run).
            (
                "keeper-agent restore (file, indexes in CREATE)",
                format!(
                    "{agent} restore {tconn} --parallel {t} --from file://{}/keeper-old/bench",
                    dir.display()
                ),
            ),
            (
                "myloader",
                format!(
                    "myloader {tconn} --password {BENCH_PASSWORD} -d {}/myd -t {t} -o",
                    dir.display()
                ),
            ),
            (
                "gunzip | mariadb",
                format!(
                    "gunzip -c {}/dump6.sql.gz | mariadb --no-defaults -h127.0.0.1 -P{tport} -u{BENCH_USER}",
                    dir.display()
                ),
            ),
        ];
        if garage.is_some() {
            restores.insert(
                1,
                (
                    "keeper-agent restore (s3, Garage)",
                    format!(
                        "{agent} restore {tconn} --parallel {t} --from s3://keeper-test/bench/bench --s3-force-path-style"
                    ),
                ),
            );
        }
        // A proof: the same restore, then every row and definition read
        // back and compared with the digests (verify --restore).
        restores.push((
            "keeper-agent verify --restore (file)",
            format!(
                "{agent} verify --restore {tconn} --parallel {t} --from file://{}/keeper/bench",
                dir.display()
            ),
        ));
        // One unmeasured load first: a fresh server's buffer pool and
        // tablespaces are touched for the first time by whichever restore
        // runs first, which would bias the order against that contender.
        if let Some((_, warm_up)) = restores.first() {
            eprintln!("bench: warm-up restore (not measured)");
            measure("warm-up", "restore", warm_up, BENCH_PASSWORD, &s3_env)?;
        }
        for (name, script) in restores {
            target.run_sql(&format!("DROP DATABASE IF EXISTS {DB};"), None)?;
            let m = measure(name, "restore", &script, BENCH_PASSWORD, &s3_env)?;
            eprintln!("bench: {name}: {:.2}s", m.seconds);
            results.push(m);
        }
    }

    let sql_bytes = results
        .iter()
        .find(|m| m.name.starts_with("mydumper (raw"))
        .and_then(|m| m.output_bytes)
        .unwrap_or(0);
    print_table(&args, sql_bytes, &results);
    print_ratios(&results);
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&args, sql_bytes, &results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: results written to {}", path.display());
    }
    Ok(())
}

/// Copies the backup folder `from` to `to` with a manifest without
/// `deferredIndexes` (the dump and other files are hard links, not copies).
fn copy_without_deferred_indexes(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_name() == "manifest.json" {
            let mut manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.path())?)
                    .context("reading the bench backup's manifest")?;
            let databases = manifest
                .get_mut("databases")
                .and_then(serde_json::Value::as_array_mut)
                .into_iter()
                .flatten();
            for table in databases
                .filter_map(|db| {
                    db.get_mut("tables")
                        .and_then(serde_json::Value::as_array_mut)
                })
                .flatten()
            {
                if let Some(table) = table.as_object_mut() {
                    table.remove("deferredIndexes");
                }
            }
            std::fs::write(&dest, serde_json::to_vec_pretty(&manifest)?)?;
        } else if std::fs::hard_link(entry.path(), &dest).is_err() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

fn sysbench_conn(server: &MariaDb) -> Vec<String> {
    vec![
        "--db-driver=mysql".into(),
        "--mysql-host=127.0.0.1".into(),
        format!("--mysql-port={}", server.port()),
        format!("--mysql-user={BENCH_USER}"),
        format!("--mysql-password={BENCH_PASSWORD}"),
        format!("--mysql-db={DB}"),
    ]
}

/// Runs `script` under bash and GNU time; returns wall time and peak RSS.
fn measure(
    name: &str,
    kind: &'static str,
    script: &str,
    password: &str,
    env: &[(&'static str, String)],
) -> anyhow::Result<Measurement> {
    let stats = tempfile::NamedTempFile::new()?;
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(stats.path())
        .args(["bash", "-o", "pipefail", "-c", script])
        .env("MYSQL_PWD", password)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {name}"))?;
    if !status.success() {
        bail!("{name} failed with {status}");
    }
    let text = std::fs::read_to_string(stats.path())?;
    let last = text.lines().last().unwrap_or_default();
    let mut parts = last.split_whitespace();
    let seconds: f64 = parts.next().unwrap_or("0").parse().unwrap_or(0.0);
    let peak_rss_kib: u64 = parts.next().unwrap_or("0").parse().unwrap_or(0);
    Ok(Measurement {
        name: name.to_owned(),
        kind,
        seconds: seconds.max(Duration::from_millis(10).as_secs_f64()),
        peak_rss_kib,
        output_bytes: None,
    })
}

fn size_of(path: &Path) -> u64 {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| size_of(&e.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }
}

fn print_table(args: &BenchArgs, sql_bytes: u64, results: &[Measurement]) {
    println!(
        "\n{} tables x {} rows, {} threads, {:.0} MB of uncompressed export",
        args.tables,
        args.rows,
        args.threads,
        sql_bytes as f64 / 1e6
    );
    println!(
        "{:<8} {:<34} {:>9} {:>10} {:>11} {:>10}",
        "kind", "contender", "seconds", "MB/s", "output MB", "peak RSS MiB"
    );
    for m in results {
        let rate = sql_bytes as f64 / 1e6 / m.seconds;
        println!(
            "{:<8} {:<34} {:>9.2} {:>10.1} {:>11} {:>10.1}",
            m.kind,
            m.name,
            m.seconds,
            rate,
            m.output_bytes
                .map(|b| format!("{:.1}", b as f64 / 1e6))
                .unwrap_or_else(|| "-".into()),
            m.peak_rss_kib as f64 / 1024.0
        );
    }
}

fn to_json(args: &BenchArgs, sql_bytes: u64, results: &[Measurement]) -> anyhow::Result<String> {
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|m| {
            serde_json::json!({
                "kind": m.kind,
                "name": m.name,
                "seconds": m.seconds,
                "peakRssKiB": m.peak_rss_kib,
                "outputBytes": m.output_bytes,
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "tables": args.tables,
        "rowsPerTable": args.rows,
        "threads": args.threads,
        "uncompressedBytes": sql_bytes,
        "results": rows,
    }))?)
}

/// The agent as users run it: a release build. The same package set as
/// CI's manifest step, so features unify the same way and CI's smoke run
/// reuses that build instead of compiling the agent again.
fn build_agent() -> anyhow::Result<PathBuf> {
    sh::run(sh::cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "keeper-operator",
        "-p",
        "keeper-agent",
    ]))?;
    Ok(sh::workspace_root().join("target/release/keeper-agent"))
}

/// The targets of issue 11, as ratios (higher is better for the agent).
fn print_ratios(results: &[Measurement]) {
    let find = |name: &str| results.iter().find(|m| m.name == name);
    let ratio =
        |agent: &str, other: &str, what: &str, f: &dyn Fn(&Measurement, &Measurement) -> f64| {
            if let (Some(a), Some(o)) = (find(agent), find(other)) {
                println!("  {what:<58} {:>6.2}", f(a, o));
            }
        };
    let speed = |a: &Measurement, o: &Measurement| o.seconds / a.seconds;
    let size = |a: &Measurement, o: &Measurement| {
        a.output_bytes.unwrap_or(0) as f64 / o.output_bytes.unwrap_or(1).max(1) as f64
    };
    println!("\nratios (agent, file destination):");
    // Issue 24's dump targets, agent defaults (gzip).
    let agent = "keeper-agent backup (file)";
    ratio(
        agent,
        "mydumper -c",
        "dump speed vs mydumper -c (target >= 5.0)",
        &speed,
    );
    ratio(
        agent,
        "mariadb-dump | pigz -1 -p 2",
        "dump speed vs mariadb-dump | pigz -1 -p 2 (target >= 2.0)",
        &speed,
    );
    ratio(
        agent,
        "mariadb-dump | gzip -6",
        "output size vs gzip -6 (target <= 1.00)",
        &size,
    );
    let zstd = "keeper-agent backup (file, zstd)";
    ratio(
        zstd,
        "keeper-agent backup (file, none)",
        "zstd dump time vs the agent's own none (target <= 1.5)",
        &|z: &Measurement, none: &Measurement| z.seconds / none.seconds,
    );
    ratio(
        zstd,
        "mariadb-dump | gzip -6",
        "zstd output size vs gzip -6 (target <= 1.00)",
        &size,
    );
    ratio(zstd, agent, "zstd dump speed vs gzip (agent)", &speed);
    ratio(
        zstd,
        "mariadb-dump | pigz -1 -p 2",
        "zstd dump speed vs mariadb-dump | pigz -1 -p 2",
        &speed,
    );
    ratio(
        zstd,
        "mydumper -c",
        "zstd dump speed vs mydumper -c",
        &speed,
    );
    ratio(
        "keeper-agent backup (file, image malloc)",
        agent,
        "dump speed with the image's malloc setting vs without",
        &speed,
    );
    ratio(
        "keeper-agent backup (file, no digests)",
        agent,
        "dump speed with digests vs without (target >= 0.95)",
        &|without: &Measurement, with: &Measurement| without.seconds / with.seconds,
    );
    let restore = "keeper-agent restore (file)";
    ratio(
        restore,
        "myloader",
        "restore speed vs myloader (target >= 2.0)",
        &speed,
    );
    ratio(
        restore,
        "gunzip | mariadb",
        "restore speed vs gunzip | mariadb (target >= 3.0)",
        &speed,
    );
    ratio(
        restore,
        "keeper-agent restore (file, indexes in CREATE)",
        "restore speed, indexes after the data vs in the CREATE",
        &speed,
    );
    ratio(
        restore,
        "keeper-agent restore (file, --insert-only)",
        "restore speed, rows by LOAD DATA vs by INSERT",
        &speed,
    );
    ratio(
        "keeper-agent verify --restore (file)",
        restore,
        "verify --restore time vs the restore alone (the read-back)",
        &|proof: &Measurement, alone: &Measurement| proof.seconds / alone.seconds,
    );
    for m in results
        .iter()
        .filter(|m| m.name.starts_with("keeper-agent"))
    {
        println!(
            "  peak RSS {:<50} {:>6.1} MiB",
            m.name,
            m.peak_rss_kib as f64 / 1024.0
        );
    }
}
