//! `cargo xtask demo`: what Keeper does, shown step by step against
//! throwaway servers (a MariaDB loaded with the project's sample database,
//! a Garage S3 store, and a second, empty MariaDB to restore into).
//!
//! Each capability is one entry of [`STEPS`]: a feature that lands (a
//! verified restore, point-in-time recovery, encryption) adds its step there,
//! and the demo prints what each step proved.

use anyhow::Context;
use keeper_tests::{Garage, Inventory, MariaDb, Match, ObjectKind, sample};

use crate::deps::{self, Purpose};

/// The backup's name in the bucket.
const BACKUP: &str = "demo";
/// Whose backups these are (`--instance`): what a Job records as
/// `NAMESPACE/NAME` of its MySQLInstance.
const OWNER: &str = "demo/bookshop";
/// The restore's request id: the operator passes the fingerprint of the
/// instance's `restoreFrom`; the server remembers the ids it has applied.
const REQUEST: &str = "demo-restore-1";

type Step = fn(&mut Demo) -> anyhow::Result<()>;

/// The demo, in order: a title and what runs.
const STEPS: &[(&str, Step)] = &[
    ("load the sample database into MariaDB", load_sample),
    ("back it up to S3", backup),
    ("list the backups in the bucket", list),
    (
        "check every byte of the backup against its manifest",
        verify,
    ),
    (
        "prove it restorable: restore into a throwaway MariaDB, compare every digest",
        prove,
    ),
    (
        "the same backup as zstd: smaller, checked and proven the same way",
        zstd,
    ),
    ("restore it into a second, empty MariaDB", restore),
    ("compare the restored server with the source", compare),
    (
        "run the same restore again: the data already has it",
        restore_once,
    ),
    (
        "retention: one owner's rule, pinned backups kept, others untouched",
        retention,
    ),
];

/// What the steps share.
struct Demo {
    runtime: tokio::runtime::Runtime,
    source: MariaDb,
    garage: Garage,
    target: Option<MariaDb>,
    /// What the source holds, read after loading.
    source_inventory: Option<Inventory>,
    /// What the demo proved, one line per step, printed at the end.
    proved: Vec<String>,
}

pub fn run() -> anyhow::Result<()> {
    deps::install(Purpose::Demo)?;
    eprintln!("demo: starting MariaDB and Garage");
    let mut demo = Demo {
        runtime: tokio::runtime::Runtime::new()?,
        source: MariaDb::start().context("starting MariaDB")?,
        garage: Garage::start().context("starting Garage")?,
        target: None,
        source_inventory: None,
        proved: Vec::new(),
    };
    println!(
        "MariaDB listens on {}:{}; Garage S3 on {} (region {}, bucket {})",
        demo.source.host(),
        demo.source.port(),
        demo.garage.endpoint(),
        demo.garage.region(),
        demo.garage.bucket()
    );
    for (number, (title, step)) in STEPS.iter().enumerate() {
        println!("\n== {}/{} {title} ==", number + 1, STEPS.len());
        step(&mut demo).with_context(|| format!("demo step {}: {title}", number + 1))?;
    }
    println!("\nWhat this demo proved:");
    for line in &demo.proved {
        println!("  ✓ {line}");
    }
    Ok(())
}

impl Demo {
    fn location(&self) -> String {
        format!("s3://{}/demo", self.garage.bucket())
    }

    fn backup_folder(&self) -> String {
        format!("{}/{BACKUP}", self.location())
    }

    fn target(&self) -> anyhow::Result<&MariaDb> {
        self.target
            .as_ref()
            .context("the restore step has not run yet")
    }

    /// Runs the agent in-process, as a Job would run it: with `garage` as its
    /// S3 store and, for `server`, that server's address and root login.
    fn agent(&self, args: &[&str], server: Option<&MariaDb>) -> anyhow::Result<()> {
        let port = server.map(|s| s.port().to_string());
        let mut argv = vec!["keeper-agent", args[0]];
        if let (Some(server), Some(port)) = (server, port.as_deref()) {
            argv.extend(["--host", server.host(), "--port", port]);
            argv.extend(["--user", server.root_user()]);
        }
        argv.extend(&args[1..]);
        argv.push("--s3-force-path-style");
        let mut env: std::collections::HashMap<String, String> = self
            .garage
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if let Some(server) = server {
            env.insert("MYSQL_PWD".to_owned(), server.root_password().to_owned());
        }
        let ctx = keeper_agent::AgentContext { env, kube: None };
        self.runtime
            .block_on(keeper_agent::run(argv, ctx))
            .with_context(|| format!("keeper-agent {}", args[0]))
    }
}

fn load_sample(demo: &mut Demo) -> anyhow::Result<()> {
    eprintln!(
        "demo: loading {} from {}",
        sample::DATABASE,
        sample::dir().display()
    );
    sample::load(&demo.source)?;
    let inventory = demo
        .runtime
        .block_on(Inventory::read(&demo.source, sample::DATABASE))?;
    println!(
        "{}: {} tables with {} rows, and {}",
        sample::DATABASE,
        inventory.tables.len(),
        inventory.row_count(),
        object_counts(&inventory)
    );
    for table in &inventory.tables {
        println!(
            "  {:<14} {:<7} {:>8} rows",
            table.name, table.engine, table.rows
        );
    }
    demo.source_inventory = Some(inventory);
    Ok(())
}

fn backup(demo: &mut Demo) -> anyhow::Result<()> {
    let location = demo.location();
    eprintln!("demo: backing up {} to {location}", sample::DATABASE);
    demo.agent(
        &[
            "backup",
            "--databases",
            sample::DATABASE,
            "--parallel",
            "2",
            "--to",
            &location,
            "--name",
            BACKUP,
            "--instance",
            OWNER,
        ],
        Some(&demo.source),
    )?;
    let manifest = demo.runtime.block_on(read_manifest(
        &demo.garage,
        &format!("demo/{BACKUP}/manifest.json"),
    ))?;
    print_manifest(&manifest);
    demo.proved.push(format!(
        "a consistent backup ({:?}) of {} tables and {} rows, streamed to S3 as {} gzip members with a manifest of sha256 sums",
        manifest.snapshot.consistency,
        manifest.table_count(),
        manifest.row_count(),
        manifest.members.len()
    ));
    Ok(())
}

fn list(demo: &mut Demo) -> anyhow::Result<()> {
    let location = demo.location();
    demo.agent(&["list", "--from", &location], None)?;
    demo.proved
        .push("the bucket lists the backup as complete (it has its manifest)".to_owned());
    Ok(())
}

fn verify(demo: &mut Demo) -> anyhow::Result<()> {
    let folder = demo.backup_folder();
    demo.agent(&["verify", "--from", &folder], None)?;
    demo.proved.push(
        "every member and the whole file match their sha256 in the manifest, read back from S3"
            .to_owned(),
    );
    Ok(())
}

fn prove(demo: &mut Demo) -> anyhow::Result<()> {
    eprintln!("demo: starting a throwaway MariaDB for the proof");
    let throwaway = MariaDb::start().context("starting the throwaway server")?;
    let folder = demo.backup_folder();
    demo.agent(
        &["verify", "--restore", "--from", &folder, "--parallel", "2"],
        Some(&throwaway),
    )?;
    demo.proved.push(
        "the backup restores, and every table's rows and every definition read back match the digests recorded at backup time (verification.json written beside it)"
            .to_owned(),
    );
    Ok(())
}

/// `--compression zstd`, into its own prefix (the retention step counts
/// the backups under `demo/`): one zstd frame per member, `dump.sql.zst`.
fn zstd(demo: &mut Demo) -> anyhow::Result<()> {
    let location = format!("s3://{}/demo-zstd", demo.garage.bucket());
    let folder = format!("{location}/{BACKUP}");
    demo.agent(
        &[
            "backup",
            "--databases",
            sample::DATABASE,
            "--compression",
            "zstd",
            "--to",
            &location,
            "--name",
            BACKUP,
            "--instance",
            OWNER,
        ],
        Some(&demo.source),
    )?;
    demo.agent(&["verify", "--from", &folder], None)?;
    let throwaway = MariaDb::start().context("starting a throwaway server for the zstd proof")?;
    demo.agent(
        &["verify", "--restore", "--from", &folder],
        Some(&throwaway),
    )?;
    let read = |key: String| {
        let garage = &demo.garage;
        demo.runtime.block_on(read_manifest(garage, &key))
    };
    let gzip = read(format!("demo/{BACKUP}/manifest.json"))?;
    let zstd = read(format!("demo-zstd/{BACKUP}/manifest.json"))?;
    println!(
        "{}: {} bytes as gzip ({}), {} bytes as zstd ({}): {:.2}x",
        sample::DATABASE,
        gzip.file.size,
        gzip.file.name,
        zstd.file.size,
        zstd.file.name,
        zstd.file.size as f64 / gzip.file.size.max(1) as f64
    );
    demo.proved.push(format!(
        "--compression zstd writes {} ({} bytes, {:.2}x the gzip dump), which verifies and restores exactly like gzip (`zstd -dc {} | mariadb --comments` works by hand)",
        zstd.file.name,
        zstd.file.size,
        zstd.file.size as f64 / gzip.file.size.max(1) as f64,
        zstd.file.name
    ));
    Ok(())
}

fn restore(demo: &mut Demo) -> anyhow::Result<()> {
    eprintln!("demo: starting a second, empty MariaDB");
    demo.target = Some(MariaDb::start().context("starting the restore target")?);
    let folder = demo.backup_folder();
    let target = demo.target()?;
    println!(
        "restoring {folder} into MariaDB {}:{} with 2 connections",
        target.host(),
        target.port()
    );
    demo.agent(
        &[
            "restore",
            "--from",
            &folder,
            "--parallel",
            "2",
            "--request-id",
            REQUEST,
        ],
        Some(target),
    )?;
    // The agent sends rows by LOAD DATA where that stores what the dump's
    // INSERTs store; the server counts those statements.
    let loads: u64 = demo.runtime.block_on(async {
        use mysql_async::prelude::Queryable;
        let mut conn = target.connect().await?;
        let row: Option<(String, u64)> = conn
            .query_first("SHOW GLOBAL STATUS LIKE 'Com_load'")
            .await?;
        conn.disconnect().await?;
        Ok::<u64, anyhow::Error>(row.map_or(0, |(_, n)| n))
    })?;
    println!(
        "{loads} data members went by LOAD DATA (the server stores a field's text without parsing an INSERT: about twice as fast); the rest as the dump's INSERTs"
    );
    demo.proved.push(format!(
        "the backup restores into an empty server, members replayed in parallel, {loads} of them by LOAD DATA"
    ));
    Ok(())
}

fn compare(demo: &mut Demo) -> anyhow::Result<()> {
    let source = demo
        .source_inventory
        .as_ref()
        .context("the load step has not run yet")?;
    let restored = demo
        .runtime
        .block_on(Inventory::read(demo.target()?, sample::DATABASE))?;
    let mut differ = 0;

    println!(
        "tables: row count, CHECKSUM TABLE and SHOW CREATE TABLE (keys, AUTO_INCREMENT), source vs restored"
    );
    println!(
        "    {:<14} {:>8} {:>12} {:>12}",
        "table", "rows", "source", "restored"
    );
    let show = |sum: Option<u64>| sum.map_or_else(|| "-".to_owned(), |s| s.to_string());
    for (ours, theirs, verdict) in source.compare_tables(&restored) {
        differ += usize::from(verdict != Match::Same);
        println!(
            "  {} {:<14} {:>8} {:>12} {:>12}{}",
            verdict.mark(),
            ours.name,
            ours.rows,
            show(ours.checksum),
            show(theirs.and_then(|t| t.checksum)),
            explain(verdict)
        );
    }
    println!("code and other objects: SHOW CREATE text (with sql_mode), source vs restored");
    for kind in ObjectKind::ALL {
        let rows: Vec<_> = source
            .compare_objects(&restored)
            .into_iter()
            .filter(|(o, _)| o.kind == kind)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let names: Vec<String> = rows
            .iter()
            .map(|(o, verdict)| format!("{} {}{}", verdict.mark(), o.name, explain(*verdict)))
            .collect();
        differ += rows.iter().filter(|(_, v)| *v != Match::Same).count();
        println!("  {:<10} {}", kind.plural(), names.join("  "));
    }
    anyhow::ensure!(
        differ == 0,
        "{differ} tables or objects differ between the source and the restored server"
    );
    println!(
        "the restored server matches the source: {} tables ({} rows), {}",
        source.tables.len(),
        source.row_count(),
        object_counts(source)
    );
    demo.proved.push(format!(
        "the restored server holds the same {} tables (rows, checksums, definitions, AUTO_INCREMENT counters) and the same {}",
        source.tables.len(),
        object_counts(source)
    ));
    Ok(())
}

/// A restore runs once per data: the application writes after the restore,
/// then the same request comes again (a re-created instance, a GitOps
/// re-apply) with `--overwrite`; the server's record of applied requests
/// makes the agent change nothing.
fn restore_once(demo: &mut Demo) -> anyhow::Result<()> {
    let folder = demo.backup_folder();
    let target = demo.target()?;
    let written = "UPDATE orders SET status = 'returned' ORDER BY order_id LIMIT 1";
    target.run_sql(written, Some(sample::DATABASE))?;
    println!("the application writes after the restore: {written}");
    let returned = || -> anyhow::Result<u64> {
        demo.runtime.block_on(async {
            let mut conn = target.connect().await?;
            let n: Option<u64> = mysql_async::prelude::Queryable::query_first(
                &mut conn,
                "SELECT COUNT(*) FROM bookshop.orders WHERE status = 'returned'",
            )
            .await?;
            conn.disconnect().await?;
            Ok(n.unwrap_or(0))
        })
    };
    let before = returned()?;
    println!("restoring {folder} again with --overwrite and the same request id");
    demo.agent(
        &[
            "restore",
            "--from",
            &folder,
            "--overwrite",
            "--request-id",
            REQUEST,
        ],
        Some(target),
    )?;
    let after = returned()?;
    anyhow::ensure!(
        before == after,
        "the second restore changed the data: {before} returned orders before, {after} after"
    );
    println!("the application's write is still there ({after} returned orders)");
    demo.proved.push(
        "a restore runs once per data: the same request again, even with --overwrite, reads, drops and loads nothing"
            .to_owned(),
    );
    Ok(())
}

/// Retention (`prune`, as the backup Jobs run it) acts for one owner: it
/// keeps the newest good backup and pinned ones, and never looks at another
/// owner's folders in the same location.
fn retention(demo: &mut Demo) -> anyhow::Result<()> {
    let location = demo.location();
    let other_owner = "demo/billing";
    for (name, owner) in [
        ("demo-2", OWNER),
        ("demo-3", OWNER),
        ("billing-1", other_owner),
    ] {
        println!("backup {name} of {owner}");
        demo.agent(
            &[
                "backup",
                "--databases",
                sample::DATABASE,
                "--to",
                &location,
                "--name",
                name,
                "--instance",
                owner,
            ],
            Some(&demo.source),
        )?;
    }
    let pinned = demo.backup_folder();
    println!("pinning {pinned}");
    demo.agent(&["pin", "--from", &pinned], None)?;
    println!("prune --instance {OWNER} --keep-last 1");
    demo.agent(
        &[
            "prune",
            "--from",
            &location,
            "--instance",
            OWNER,
            "--keep-last",
            "1",
        ],
        None,
    )?;
    let left = demo.runtime.block_on(folders(&demo.garage, "demo/"))?;
    println!("left in {location}: {}", left.join(", "));
    let expected = ["billing-1", BACKUP, "demo-3"];
    anyhow::ensure!(
        left == expected,
        "retention left {left:?}, expected {expected:?}"
    );
    demo.proved.push(format!(
        "retention of {OWNER} deleted only its expired backup (demo-2): the pinned one ({BACKUP}), the newest (demo-3) and {other_owner}'s backup in the same location stay"
    ));
    Ok(())
}

/// The backup folders under `prefix` in the bucket, sorted.
async fn folders(garage: &Garage, prefix: &str) -> anyhow::Result<Vec<String>> {
    let listed = garage
        .client()
        .list_objects_v2()
        .bucket(garage.bucket())
        .prefix(prefix)
        .delimiter("/")
        .send()
        .await
        .context("listing the bucket")?;
    let mut names: Vec<String> = listed
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .filter_map(|p| p.strip_prefix(prefix))
        .map(|p| p.trim_end_matches('/').to_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn explain(verdict: Match) -> &'static str {
    match verdict {
        Match::Same => "",
        Match::Differs => "  (differs)",
        Match::Missing => "  (missing after the restore)",
        Match::Extra => "  (only in the restored server)",
    }
}

/// `1 sequences, 2 functions, …` for the kinds present.
fn object_counts(inventory: &Inventory) -> String {
    ObjectKind::ALL
        .iter()
        .map(|kind| (inventory.of_kind(*kind).count(), kind.plural()))
        .filter(|(count, _)| *count > 0)
        .map(|(count, plural)| format!("{count} {plural}"))
        .collect::<Vec<_>>()
        .join(", ")
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
