//! The dump engine against real MariaDB servers: file layout and checksums,
//! round trips through plain `gunzip -c | mariadb` (no Keeper on the way
//! back), consistency under a concurrent writer, and failures that must
//! leave nothing behind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use keeper_agent::cli::{BackupArgs, Command as AgentCommand};
use keeper_agent::dump::{BackupError, BackupOutcome};
use keeper_agent::manifest::{Compression, Consistency, Manifest, MemberKind};
use keeper_agent::{AgentContext, Cli};
use keeper_tests::{MariaDb, MariaDbOptions};
use mysql_async::prelude::Queryable;
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ctx(password: &str) -> AgentContext {
    AgentContext {
        env: [("MYSQL_PWD".to_owned(), password.to_owned())].into(),
        kube: None,
    }
}

fn backup_args(server: &MariaDb, to: &Path, extra: &[&str]) -> BackupArgs {
    let mut argv = vec![
        "keeper-agent".to_owned(),
        "backup".into(),
        "--host".into(),
        server.host().into(),
        "--port".into(),
        server.port().to_string(),
        "--user".into(),
        "root".into(),
        "--to".into(),
        format!("file://{}", to.display()),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    match Cli::try_parse_from(argv).unwrap().command {
        AgentCommand::Backup(a) => a,
        _ => unreachable!(),
    }
}

async fn backup(server: &MariaDb, to: &Path, extra: &[&str]) -> Result<BackupOutcome, BackupError> {
    keeper_agent::dump::backup(backup_args(server, to, extra), &ctx(server.root_password())).await
}

fn folder(outcome: &BackupOutcome) -> PathBuf {
    match &outcome.location {
        keeper_agent::storage::Location::File(p) => p.clone(),
        other => panic!("not a file location: {other}"),
    }
}

/// What a restore through the plain client sees: `gunzip -c dump.sql.gz |
/// mariadb`, `zstd -dc dump.sql.zst | mariadb` or `mariadb < dump.sql`:
/// the codec's own tool, no Keeper.
fn restore_with_client(dump: &Path, target: &MariaDb) {
    let tool = match dump.extension().and_then(|e| e.to_str()) {
        Some("gz") => Some(("gunzip", "-c")),
        Some("zst") => Some(("zstd", "-dc")),
        Some("sql") => None,
        other => panic!("not a dump file: {other:?}"),
    };
    let Some((tool, flag)) = tool else {
        target.run_sql_file(dump, None).unwrap();
        return;
    };
    let sql = dump.with_extension("plain.sql");
    let out = Command::new(tool)
        .arg(flag)
        .arg(dump)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is not installed ({e}): cargo xtask deps installs it"));
    assert!(out.status.success(), "{tool} failed");
    std::fs::write(&sql, out.stdout).unwrap();
    target.run_sql_file(&sql, None).unwrap();
}

async fn query_strings(server: &MariaDb, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut conn = server.connect().await.unwrap();
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.unwrap();
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| match r.as_ref(i).unwrap() {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(hex_or_text(b)),
                    other => Some(other.as_sql(true)),
                })
                .collect()
        })
        .collect()
}

fn hex_or_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("0x{}", hex::encode(b)),
    }
}

/// Everything that must survive a round trip, per database: every table's
/// CHECKSUM TABLE and SHOW CREATE (AUTO_INCREMENT included), and the
/// definitions of views, routines, triggers and events.
async fn fingerprint(server: &MariaDb, databases: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for db in databases {
        let lit = format!("'{}'", db.replace('\'', "''"));
        let q = format!("`{}`", db.replace('`', "``"));
        for row in query_strings(
            server,
            &format!(
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = {lit} ORDER BY TABLE_NAME"
            ),
        )
        .await
        {
            let name = row[0].clone().unwrap();
            let kind = row[1].clone().unwrap();
            let t = format!("{q}.`{}`", name.replace('`', "``"));
            match kind.as_str() {
                "VIEW" => {
                    let create = query_strings(server, &format!("SHOW CREATE VIEW {t}")).await;
                    out.insert(format!("{db}.{name} view"), format!("{:?}", create[0][1]));
                    let rows = query_strings(server, &format!("SELECT * FROM {t}")).await;
                    out.insert(format!("{db}.{name} view rows"), format!("{rows:?}"));
                }
                "SEQUENCE" => {
                    let next = query_strings(server, &format!("SELECT NEXTVAL({t})")).await;
                    out.insert(format!("{db}.{name} nextval"), format!("{next:?}"));
                }
                _ => {
                    let sum = query_strings(server, &format!("CHECKSUM TABLE {t}")).await;
                    out.insert(format!("{db}.{name} checksum"), format!("{:?}", sum[0][1]));
                    let create = query_strings(server, &format!("SHOW CREATE TABLE {t}")).await;
                    out.insert(format!("{db}.{name} create"), format!("{:?}", create[0][1]));
                }
            }
        }
        for (kind, list) in [
            (
                "PROCEDURE",
                format!(
                    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {lit} AND ROUTINE_TYPE = 'PROCEDURE'"
                ),
            ),
            (
                "FUNCTION",
                format!(
                    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {lit} AND ROUTINE_TYPE = 'FUNCTION'"
                ),
            ),
            (
                "TRIGGER",
                format!(
                    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {lit}"
                ),
            ),
            (
                "EVENT",
                format!(
                    "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {lit}"
                ),
            ),
        ] {
            for row in query_strings(server, &list).await {
                let name = row[0].clone().unwrap();
                let create = query_strings(
                    server,
                    &format!("SHOW CREATE {kind} {q}.`{}`", name.replace('`', "``")),
                )
                .await;
                // Name, sql_mode and the statement; the rest is client charset noise.
                let idx = if kind == "EVENT" { 3 } else { 2 };
                out.insert(
                    format!("{db}.{name} {kind}"),
                    format!("{:?} {:?}", create[0][1], create[0][idx]),
                );
            }
        }
    }
    out
}

fn assert_same(source: &BTreeMap<String, String>, target: &BTreeMap<String, String>) {
    assert!(!source.is_empty());
    for (k, v) in source {
        assert_eq!(target.get(k), Some(v), "{k} differs after the round trip");
    }
    assert_eq!(
        source.len(),
        target.len(),
        "objects differ: {:?}",
        target.keys()
    );
}

fn check_file(folder: &Path) -> Manifest {
    let manifest =
        Manifest::from_json(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    let bytes = std::fs::read(folder.join(manifest.dump_file())).unwrap();
    assert_eq!(manifest.file.size, bytes.len() as u64);
    assert_eq!(manifest.file.sha256, hex::encode(Sha256::digest(&bytes)));
    for m in &manifest.members {
        let slice = &bytes[m.offset as usize..(m.offset + m.length) as usize];
        assert_eq!(m.sha256, hex::encode(Sha256::digest(slice)), "member {m:?}");
        // Each member is a complete gzip member or zstd frame (read here
        // by the codecs' crates, not the agent's reader) that replays alone.
        let mut text = Vec::new();
        match manifest.compression() {
            Compression::Gzip => {
                flate2::read::GzDecoder::new(slice)
                    .read_to_end(&mut text)
                    .unwrap();
            }
            Compression::Zstd => text = zstd::decode_all(slice).unwrap(),
            Compression::None => text = slice.to_vec(),
        }
        assert_eq!(text.len() as u64, m.uncompressed_length);
        let text = String::from_utf8_lossy(&text);
        match m.kind {
            MemberKind::Header => assert!(text.contains("SET NAMES utf8mb4;\n")),
            _ => assert!(text.starts_with("SET NAMES utf8mb4;\n"), "{m:?}"),
        }
        if m.kind != MemberKind::Header && m.kind != MemberKind::Schema {
            let db = m.database.as_deref().unwrap();
            assert!(
                text.contains(&format!("USE `{}`;\n", db.replace('`', "``"))),
                "{m:?} has no USE"
            );
        }
    }
    assert!(!folder.join("in-progress.json").exists());
    assert!(
        !folder
            .join(format!("{}.partial", manifest.dump_file()))
            .exists()
    );
    manifest
}

fn assert_nothing_left(dir: &Path) {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("dump.sql") || name == "manifest.json" || name == "in-progress.json" {
            found.push(entry);
        }
    }
    assert!(found.is_empty(), "a failed backup left {found:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_backup_has_members_that_tile_the_file() {
    let server = MariaDb::start().unwrap();
    server
        .run_sql(
            "CREATE DATABASE shop; USE shop;
             CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20)) AUTO_INCREMENT=42;
             INSERT INTO items (name) VALUES ('a'), ('b'), ('c');
             CREATE TABLE empty_one (x INT);",
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = backup(&server, dir.path(), &["--name", "first"])
        .await
        .unwrap();
    assert_eq!(folder(&outcome), dir.path().join("first"));
    let manifest = check_file(&folder(&outcome));
    assert_eq!(manifest, outcome.manifest);
    assert_eq!(manifest.name, "first");
    assert_eq!(manifest.snapshot.consistency, Consistency::GlobalLock);
    assert!(manifest.snapshot.lock_held_ms.is_some());
    assert!(
        manifest.snapshot.binlog.is_some(),
        "the harness runs with the binlog on"
    );
    assert_eq!(manifest.databases.len(), 1);
    assert_eq!(manifest.row_count(), 3);
    let kinds: Vec<_> = manifest.members.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [MemberKind::Header, MemberKind::Schema, MemberKind::Data]
    );
    let data = &manifest.members[2];
    assert_eq!(
        (data.table.as_deref(), data.chunk, data.rows),
        (Some("items"), Some(0), 3)
    );
    assert!(manifest.largest_statement > 0);
    assert_eq!(manifest.max_allowed_packet, 64 << 20);

    // The same name again is refused: a good backup is never overwritten.
    let again = backup(&server, dir.path(), &["--name", "first"])
        .await
        .unwrap_err();
    assert!(
        matches!(again, BackupError::AlreadyExists { .. }),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases_round_trip_through_gunzip_and_the_mariadb_client() {
    let source = MariaDb::start().unwrap();
    source
        .run_sql_file(&fixture("edge_cases.sql"), None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = backup(&source, dir.path(), &["--parallel", "3", "--name", "edge"])
        .await
        .unwrap();
    let manifest = check_file(&folder(&outcome));

    let dbs = ["edge db", "other"];
    let before = fingerprint(&source, &dbs).await;
    let target = MariaDb::start().unwrap();
    restore_with_client(&folder(&outcome).join("dump.sql.gz"), &target);
    let after = fingerprint(&target, &dbs).await;
    assert_same(&before, &after);

    // Invisible columns come back with their values.
    let hidden = query_strings(
        &target,
        "SELECT id, hidden FROM `edge db`.types ORDER BY id",
    )
    .await;
    let hidden_src = query_strings(
        &source,
        "SELECT id, hidden FROM `edge db`.types ORDER BY id",
    )
    .await;
    assert_eq!(hidden, hidden_src);
    // The trigger did not fire on restored rows.
    let audit = query_strings(&target, "SELECT COUNT(*) FROM `edge db`.audit").await;
    assert_eq!(audit[0][0].as_deref(), Some("1"));

    // Non-transactional tables were read under the lock.
    let edge = manifest
        .databases
        .iter()
        .find(|d| d.name == "edge db")
        .unwrap();
    for t in &edge.tables {
        if t.engine == "MyISAM" || t.engine == "Aria" {
            assert!(!t.transactional && t.read_under_lock, "{t:?}");
        }
    }
    let kinds: Vec<_> = manifest.members.iter().map(|m| m.kind).collect();
    let last_data = kinds.iter().rposition(|k| *k == MemberKind::Data).unwrap();
    for k in [
        MemberKind::Routines,
        MemberKind::Views,
        MemberKind::Triggers,
        MemberKind::Events,
    ] {
        let at = kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k:?} member"));
        assert!(at > last_data, "{k:?} before the data");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chosen_databases_are_dumped() {
    let source = MariaDb::start().unwrap();
    source
        .run_sql("CREATE DATABASE a; CREATE TABLE a.t (x INT); CREATE DATABASE b; CREATE TABLE b.t (x INT);", None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = backup(&source, dir.path(), &["--databases", "b"])
        .await
        .unwrap();
    let names: Vec<_> = outcome
        .manifest
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["b"]);
    let all = backup(&source, dir.path(), &["--name", "all"])
        .await
        .unwrap();
    let names: Vec<_> = all
        .manifest
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "system databases are never dumped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_database_round_trips_with_every_checksum_equal() {
    let source = MariaDb::start().unwrap();
    keeper_tests::sample::load(&source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = backup(&source, dir.path(), &["--parallel", "4"])
        .await
        .unwrap();
    check_file(&folder(&outcome));
    let before = fingerprint(&source, &[keeper_tests::sample::DATABASE]).await;
    let target = MariaDb::start().unwrap();
    restore_with_client(&folder(&outcome).join("dump.sql.gz"), &target);
    assert_same(
        &before,
        &fingerprint(&target, &[keeper_tests::sample::DATABASE]).await,
    );
}

/// `--compression zstd` and `none`: the dump is `dump.sql.zst` (a zstd
/// frame per member) or plain `dump.sql`, the manifest says which, and each
/// restores through its own tool (`zstd -dc | mariadb`, `mariadb <`), through
/// the agent, and proves itself with `verify` and `verify --restore`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_plain_dumps_round_trip_through_their_tools_and_the_agent() {
    let source = MariaDb::start().unwrap();
    keeper_tests::sample::load(&source).unwrap();
    let dbs = [keeper_tests::sample::DATABASE];
    let dir = tempfile::tempdir().unwrap();
    let codecs = [
        ("gzip", "dump.sql.gz"),
        ("zstd", "dump.sql.zst"),
        ("none", "dump.sql"),
    ];
    for (compression, _) in codecs {
        let argv = [
            "--parallel",
            "3",
            "--name",
            compression,
            "--compression",
            compression,
        ];
        backup(&source, dir.path(), &argv).await.unwrap();
    }
    // Read after the backups: the fingerprint moves the sequences on.
    let before = fingerprint(&source, &dbs).await;
    let mut gzip_size = 0;
    for (compression, file) in codecs {
        let folder = dir.path().join(compression);
        let manifest = check_file(&folder);
        assert_eq!(manifest.compression().as_str(), compression);
        assert_eq!(
            (manifest.dump_file(), manifest.file.name.as_str()),
            (file, file)
        );
        let mut names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [file, "manifest.json"]);
        // Old agents read gzip backups; only the new codecs need format 3.
        let expected_format = if compression == "gzip" { 2 } else { 3 };
        assert_eq!(manifest.format_version, expected_format);
        match compression {
            "gzip" => gzip_size = manifest.file.size,
            "zstd" => assert!(manifest.file.size < manifest.uncompressed_bytes()),
            _ => {
                assert_eq!(manifest.file.size, manifest.uncompressed_bytes());
                assert!(manifest.file.size > gzip_size);
            }
        }

        let target = MariaDb::start().unwrap();
        restore_with_client(&folder.join(file), &target);
        assert_same(&before, &fingerprint(&target, &dbs).await);

        let from = format!("file://{}", folder.display());
        let verified = keeper_agent::run(
            ["keeper-agent", "verify", "--from", &from],
            ctx(source.root_password()),
        )
        .await;
        assert!(verified.is_ok(), "{compression}: {verified:?}");

        let restored = MariaDb::start().unwrap();
        let port = restored.port().to_string();
        let connect = ["--host", restored.host(), "--port", &port, "--user", "root"];
        let proof: Vec<&str> = ["keeper-agent", "verify", "--restore", "--from", &from]
            .into_iter()
            .chain(connect)
            .collect();
        let proved = keeper_agent::run(proof, ctx(restored.root_password())).await;
        assert!(proved.is_ok(), "{compression}: {proved:?}");
        assert_same(&before, &fingerprint(&restored, &dbs).await);
        let again: Vec<&str> = ["keeper-agent", "restore", "--overwrite", "--from", &from]
            .into_iter()
            .chain(connect)
            .collect();
        let replayed = keeper_agent::run(again, ctx(restored.root_password())).await;
        assert!(replayed.is_ok(), "{compression}: {replayed:?}");
        assert_same(&before, &fingerprint(&restored, &dbs).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_outside_the_codecs_range_is_refused_before_anything_is_written() {
    let source = MariaDb::start().unwrap();
    source.run_sql("CREATE DATABASE shop;", None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = backup(&source, dir.path(), &["--compression-level", "12"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--compression-level: gzip takes levels 1 to 9, not 12"
    );
    assert_nothing_left(dir.path());
    backup(
        &source,
        dir.path(),
        &["--compression", "zstd", "--compression-level", "12"],
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_backup_is_one_point_in_time_under_a_concurrent_writer() {
    let source = MariaDb::start().unwrap();
    source
        .run_sql(
            "CREATE DATABASE bank; USE bank;
             CREATE TABLE a (id INT PRIMARY KEY, amount BIGINT NOT NULL, pad VARCHAR(200));
             CREATE TABLE b (id INT PRIMARY KEY, amount BIGINT NOT NULL, pad VARCHAR(200));
             INSERT INTO a SELECT seq, 1000, REPEAT('x', 200) FROM seq_1_to_50000;
             INSERT INTO b SELECT seq, 1000, REPEAT('y', 200) FROM seq_1_to_50000;
             ANALYZE TABLE a, b;",
            None,
        )
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let opts = source.opts();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let mut moves = 0u64;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = (i * 7919) % 50000 + 1;
                let mut tx = conn.start_transaction(Default::default()).await.unwrap();
                tx.query_drop(format!(
                    "UPDATE bank.a SET amount = amount - 7 WHERE id = {id}"
                ))
                .await
                .unwrap();
                tx.query_drop(format!(
                    "UPDATE bank.b SET amount = amount + 7 WHERE id = {id}"
                ))
                .await
                .unwrap();
                tx.commit().await.unwrap();
                moves += 1;
            }
            moves
        })
    };
    // Let the writer get going, then back up while it runs.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let outcome = backup(
        &source,
        dir.path(),
        &["--parallel", "4", "--compression-level", "1"],
    )
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moves = writer.await.unwrap();
    assert!(moves > 0, "the writer never ran");

    let target = MariaDb::start().unwrap();
    restore_with_client(&folder(&outcome).join("dump.sql.gz"), &target);
    let sums = query_strings(
        &target,
        "SELECT (SELECT SUM(amount) FROM bank.a) + (SELECT SUM(amount) FROM bank.b), (SELECT COUNT(*) FROM bank.a)",
    )
    .await;
    assert_eq!(
        sums[0][0].as_deref(),
        Some("100000000"),
        "the snapshot tore a transfer"
    );
    assert_eq!(sums[0][1].as_deref(), Some("50000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly_and_leaves_nothing() {
    let server = MariaDb::start().unwrap();
    server
        .run_sql("CREATE DATABASE app; CREATE TABLE app.t (x INT);", None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let wrong = keeper_agent::dump::backup(
        backup_args(&server, dir.path(), &[]),
        &ctx("not-the-password"),
    )
    .await
    .unwrap_err();
    assert!(matches!(wrong, BackupError::AccessDenied { .. }), "{wrong}");
    let msg = wrong.to_string();
    assert!(
        msg.contains("root@127.0.0.1") && msg.contains("Secret"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password"));

    let unknown = backup(&server, dir.path(), &["--databases", "app,nope"])
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, BackupError::UnknownDatabase { ref name, .. } if name == "nope"),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("app"), "{unknown}");

    let mut args = backup_args(&server, dir.path(), &[]);
    args.connect.port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = keeper_agent::dump::backup(args, &ctx(server.root_password()))
        .await
        .unwrap_err();
    assert!(
        matches!(unreachable, BackupError::Unreachable { .. }),
        "{unreachable}"
    );

    for e in [&wrong, &unknown, &unreachable] {
        assert!(!e.to_string().contains('\n'), "not one line: {e}");
    }
    assert_nothing_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_too_large_for_max_allowed_packet_fails_the_backup() {
    let server = MariaDb::start_with(MariaDbOptions {
        max_allowed_packet: 1 << 20,
        ..MariaDbOptions::default()
    })
    .unwrap();
    // 700 KB of zero bytes escape to 1.4 MB: more than the 1 MiB packet.
    server
        .run_sql(
            "CREATE DATABASE big; CREATE TABLE big.t (id INT PRIMARY KEY, b LONGBLOB);
             INSERT INTO big.t VALUES (1, REPEAT(X'00', 700000)), (2, REPEAT('a', 900000));",
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = backup(&server, dir.path(), &[]).await.unwrap_err();
    assert!(
        matches!(err, BackupError::RowTooLarge { ref table, .. } if table == "t"),
        "{err}"
    );
    assert_nothing_left(dir.path());

    // A row near the limit that fits is fine (and comes back whole).
    server
        .run_sql("DELETE FROM big.t WHERE id = 1;", None)
        .unwrap();
    let ok = backup(&server, dir.path(), &[]).await.unwrap();
    assert!(ok.manifest.largest_statement > 900000);
    assert!(ok.manifest.largest_statement < 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_dump_leaves_no_dump_and_no_manifest() {
    let mut server = MariaDb::start().unwrap();
    server
        .run_sql(
            "CREATE DATABASE big; USE big;
             CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v LONGBLOB);
             INSERT INTO t (v) SELECT RANDOM_BYTES(1000) FROM seq_1_to_100000;",
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("killed/dump.sql.gz.partial");
    let args = backup_args(
        &server,
        dir.path(),
        &[
            "--name",
            "killed",
            "--compression-level",
            "9",
            "--parallel",
            "1",
        ],
    );
    let agent_ctx = ctx(server.root_password());
    // The backup future runs in this task (joined with the killer below), so
    // it need not be Send.
    let run = keeper_agent::dump::backup(args, &agent_ctx);
    let killer = async {
        // Kill the server once data is flowing into the upload.
        for _ in 0..20000 {
            // Random bytes compress slowly at level 9: the table is still
            // streaming when the header and schema reach the file.
            if std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0) {
                server.kill();
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        false
    };
    let (result, killed) = tokio::join!(run, killer);
    assert!(
        killed,
        "the dump finished before the server could be killed; make the table larger"
    );
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::ConnectionLost { .. } | BackupError::Sql { .. }
        ),
        "{err}"
    );
    assert_nothing_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_last_prunes_older_backups_after_a_success() {
    let server = MariaDb::start().unwrap();
    server
        .run_sql("CREATE DATABASE app; CREATE TABLE app.t (x INT);", None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Another instance's backup in the same folder, older than all: not ours.
    backup(
        &server,
        dir.path(),
        &["--name", "other", "--instance", "dev/other"],
    )
    .await
    .unwrap();
    for name in ["b1", "b2"] {
        backup(
            &server,
            dir.path(),
            &["--name", name, "--instance", "dev/app"],
        )
        .await
        .unwrap();
    }
    // --keep-last needs an owner, and says so before anything is dumped.
    let err = backup(&server, dir.path(), &["--name", "b3", "--keep-last", "2"])
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::RetentionNeedsOwner), "{err}");
    assert!(!dir.path().join("b3").exists());

    let third = backup(
        &server,
        dir.path(),
        &["--name", "b3", "--keep-last", "2", "--instance", "dev/app"],
    )
    .await
    .unwrap();
    assert_eq!(third.retention_error, None);
    assert_eq!(
        third
            .manifest
            .owner
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("dev/app")
    );
    assert!(!dir.path().join("b1/manifest.json").exists(), "b1 was kept");
    assert!(dir.path().join("b2/manifest.json").exists());
    assert!(dir.path().join("b3/manifest.json").exists());
    assert!(
        dir.path().join("other/manifest.json").exists(),
        "another owner's backup was deleted"
    );
}

/// `--socket` instead of `--host`/`--port` (DESIGN, "Agent CLI"): a backup
/// and a restore over the server's Unix socket; the two ways to name the
/// server exclude each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_over_the_unix_socket() {
    let server = MariaDb::start().unwrap();
    server
        .run_sql(
            "CREATE DATABASE app; CREATE TABLE app.t (x INT PRIMARY KEY, s TEXT); \
             INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, NULL);",
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = server.socket().display().to_string();
    let to = format!("file://{}", dir.path().display());
    let agent = |args: &[&str]| {
        let argv: Vec<String> = ["keeper-agent"]
            .iter()
            .chain(args)
            .map(|s| (*s).to_owned())
            .collect();
        keeper_agent::run(argv, ctx(server.root_password()))
    };
    let on_socket = ["--socket", socket.as_str(), "--user", "root"];

    agent(
        &[
            &["backup"],
            &on_socket[..],
            &["--to", &to, "--name", "sock"],
        ]
        .concat(),
    )
    .await
    .unwrap();
    let manifest = check_file(&dir.path().join("sock"));
    assert!(manifest.databases.iter().any(|d| d.name == "app"));
    let before = fingerprint(&server, &["app"]).await;

    server.run_sql("DROP DATABASE app;", None).unwrap();
    let from = format!("{to}/sock");
    agent(&[&["restore"], &on_socket[..], &["--from", &from]].concat())
        .await
        .unwrap();
    assert_same(&before, &fingerprint(&server, &["app"]).await);

    let both = agent(
        &[
            &["backup"],
            &on_socket[..],
            &["--host", "127.0.0.1", "--to", &to],
        ]
        .concat(),
    )
    .await
    .unwrap_err();
    assert!(matches!(both, keeper_agent::AgentError::Usage(_)), "{both}");
    let neither = agent(&["backup", "--user", "root", "--to", &to])
        .await
        .unwrap_err();
    assert!(
        matches!(neither, keeper_agent::AgentError::Usage(_)),
        "{neither}"
    );
}

/// Without the privilege for the global lock (no RELOAD), `--parallel 2`
/// falls back to one connection and one snapshot, the manifest says so, and
/// the dump is still whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lock_privilege_one_snapshot_dumps_everything() {
    let source = MariaDb::start().unwrap();
    source
        .run_sql(
            "CREATE DATABASE app; CREATE TABLE app.t (x INT PRIMARY KEY); \
             INSERT INTO app.t VALUES (1), (2), (3); CREATE TABLE app.u (y TEXT); \
             INSERT INTO app.u VALUES ('seven'); \
             CREATE USER 'dumper'@'%' IDENTIFIED BY 'dumper-pw'; \
             GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, PROCESS ON *.* TO 'dumper'@'%';",
            None,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = source.port().to_string();
    let to = format!("file://{}", dir.path().display());
    let argv = [
        "keeper-agent",
        "backup",
        "--host",
        source.host(),
        "--port",
        &port,
        "--user",
        "dumper",
        "--parallel",
        "2",
        "--to",
        &to,
        "--name",
        "lone",
    ];
    let args = match Cli::try_parse_from(argv).unwrap().command {
        AgentCommand::Backup(a) => a,
        _ => unreachable!(),
    };
    let outcome = keeper_agent::dump::backup(args, &ctx("dumper-pw"))
        .await
        .unwrap();
    let snapshot = &outcome.manifest.snapshot;
    assert_eq!(snapshot.consistency, Consistency::SingleTransaction);
    assert!(
        snapshot
            .note
            .as_deref()
            .is_some_and(|n| n.contains("no privilege for the global lock")),
        "{snapshot:?}"
    );
    check_file(&folder(&outcome));
    let before = fingerprint(&source, &["app"]).await;
    let target = MariaDb::start().unwrap();
    restore_with_client(&folder(&outcome).join("dump.sql.gz"), &target);
    assert_same(&before, &fingerprint(&target, &["app"]).await);
}
