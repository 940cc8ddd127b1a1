//! `verify --restore` against real MariaDB servers: a backup restored into
//! an empty server and compared with the digests it recorded. A backup whose
//! members were altered and whose checksums were recomputed to match (so the
//! bytes verify) is caught by its digests, naming the table or object.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use keeper_agent::manifest::{
    Manifest, Member, MemberKind, TableKind, VerificationRecord, VerificationResult,
};
use keeper_agent::proof::ProofError;
use keeper_agent::{AgentContext, AgentError};
use keeper_tests::MariaDb;
use keeper_tests::sample::DATABASE;
use sha2::{Digest, Sha256};

fn ctx(server: &MariaDb) -> AgentContext {
    AgentContext {
        env: [("MYSQL_PWD".to_owned(), server.root_password().to_owned())].into(),
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

/// The sample database backed up into a new folder under `dir`.
async fn sample_backup(dir: &Path) -> PathBuf {
    let source = MariaDb::start().unwrap();
    keeper_tests::sample::load(&source).unwrap();
    let url = format!("file://{}", dir.display());
    let mut argv = vec!["keeper-agent".to_owned(), "backup".to_owned()];
    argv.extend(connect_args(&source));
    argv.extend(["--to", &url, "--name", "b"].map(str::to_owned));
    keeper_agent::run(argv, ctx(&source)).await.unwrap();
    dir.join("b")
}

async fn verify(folder: &Path, target: &MariaDb, restore: bool) -> Result<(), AgentError> {
    let mut argv = vec![
        "keeper-agent".to_owned(),
        "verify".to_owned(),
        "--from".to_owned(),
        format!("file://{}", folder.display()),
    ];
    if restore {
        argv.push("--restore".to_owned());
        argv.extend(connect_args(target));
    }
    keeper_agent::run(argv, ctx(target)).await
}

fn manifest(folder: &Path) -> Manifest {
    Manifest::from_json(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap()
}

/// What [`tampered`] does with a member.
enum Edit {
    Keep,
    Drop,
    Replace(Vec<u8>),
}

/// `sql` with the first `from` replaced by `to`, and the text around it
/// kept byte for byte (members may hold binary literals).
fn replace_once(sql: &[u8], from: &str, to: &str) -> Vec<u8> {
    let at = sql
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} is in the member"));
    [&sql[..at], to.as_bytes(), &sql[at + from.len()..]].concat()
}

/// `sql` without the bytes from the last `start` before `marker` up to
/// and including the first `end` after it.
fn cut_around(sql: &[u8], start: &str, marker: &str, end: &str) -> Vec<u8> {
    let find = |hay: &[u8], needle: &str| {
        hay.windows(needle.len())
            .position(|w| w == needle.as_bytes())
    };
    let at = find(sql, marker).unwrap_or_else(|| panic!("{marker} is in the member"));
    let from = sql[..at + marker.len()]
        .windows(start.len())
        .rposition(|w| w == start.as_bytes())
        .unwrap();
    let to = from + find(&sql[from..], end).unwrap() + end.len();
    [&sql[..from], &sql[to..]].concat()
}

/// Copies `folder` and rewrites, in the copy, the members as `edit` says
/// (given each member and its SQL), recompressing them and recomputing
/// every checksum and offset of the manifest: the copy's bytes verify, only
/// its content differs.
fn tampered(folder: &Path, into: &Path, edit: impl Fn(&Member, &[u8]) -> Edit) -> PathBuf {
    let copy = into.join("b");
    std::fs::create_dir_all(&copy).unwrap();
    let mut manifest = manifest(folder);
    let dump = std::fs::read(folder.join("dump.sql.gz")).unwrap();
    let mut out = Vec::new();
    let mut edits = 0;
    let mut members = Vec::new();
    for mut member in manifest.members {
        let start = usize::try_from(member.offset).unwrap();
        let end = start + usize::try_from(member.length).unwrap();
        let mut bytes = dump[start..end].to_vec();
        let mut raw = Vec::new();
        GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        match edit(&member, &raw) {
            Edit::Keep => {}
            Edit::Drop => {
                edits += 1;
                continue;
            }
            Edit::Replace(changed) => {
                assert_ne!(changed, raw, "the edit changes the member");
                let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
                gz.write_all(&changed).unwrap();
                bytes = gz.finish().unwrap();
                member.uncompressed_length = changed.len() as u64;
                member.sha256 = hex::encode(Sha256::digest(&bytes));
                edits += 1;
            }
        }
        member.offset = out.len() as u64;
        member.length = bytes.len() as u64;
        out.extend_from_slice(&bytes);
        members.push(member);
    }
    assert!(edits > 0, "a member was edited");
    manifest.members = members;
    manifest.file.size = out.len() as u64;
    manifest.file.sha256 = hex::encode(Sha256::digest(&out));
    std::fs::write(copy.join("dump.sql.gz"), &out).unwrap();
    std::fs::write(copy.join("manifest.json"), manifest.to_json().unwrap()).unwrap();
    copy
}

/// Replaces the SQL of the first member `pick` chooses.
fn replace_first(
    pick: impl Fn(&Member) -> bool,
    edit: impl Fn(&[u8]) -> Vec<u8>,
) -> impl Fn(&Member, &[u8]) -> Edit {
    let done = std::sync::atomic::AtomicBool::new(false);
    move |member, sql| {
        if pick(member) && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Edit::Replace(edit(sql))
        } else {
            Edit::Keep
        }
    }
}

/// The differences a failed proof names.
fn differs(result: Result<(), AgentError>) -> String {
    match result {
        Err(AgentError::Proof(ProofError::Differs { first, count, .. })) => {
            format!("{count}: {first}")
        }
        other => panic!("expected a difference, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_backup_is_proven_restorable_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_backup(dir.path()).await;
    let recorded = manifest(&folder);
    let shop = &recorded.databases[0];
    let tables = shop.tables.iter().filter(|t| t.kind == TableKind::Table);
    assert!(tables.clone().all(|t| t.digest.is_some()), "{shop:?}");
    for kind in ["table", "view", "procedure", "function", "trigger", "event"] {
        assert!(
            shop.definitions.iter().any(|d| d.kind == kind),
            "{kind}: {:?}",
            shop.definitions
        );
    }

    // The real backup: restored into an empty server, every digest matches,
    // and the proof is recorded beside the artifact.
    let target = MariaDb::start().unwrap();
    verify(&folder, &target, true).await.unwrap();
    let record: VerificationRecord =
        serde_json::from_slice(&std::fs::read(folder.join("verification.json")).unwrap()).unwrap();
    assert_eq!(record.result, VerificationResult::Verified);
    assert!(record.complete);
    assert_eq!(record.rows, shop.tables.iter().map(|t| t.rows).sum::<u64>());

    // Each copy has one member altered and its checksums recomputed: the
    // bytes verify, the restore runs, and only the digests can tell; the
    // proof names the table or object and records its failure.
    type Pick = Box<dyn Fn(&Member) -> bool>;
    type Change = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: [(&str, Pick, Change, &[&str]); 3] = [
        (
            "a row changed inside a data member",
            Box::new(|m| m.kind == MemberKind::Data && m.table.as_deref() == Some("books")),
            Box::new(|sql| replace_once(sql, "'hardcover'", "'ebook'")),
            &["table `bookshop`.`books`: rows differ"],
        ),
        (
            "a trigger left out of the triggers member",
            Box::new(|m| m.kind == MemberKind::Triggers),
            Box::new(|sql| cut_around(sql, "CREATE", "TRIGGER reviews_reward", "\n;;\n")),
            &["trigger `bookshop`.`reviews_reward`: missing after the restore"],
        ),
        (
            "a routine whose body was changed",
            Box::new(|m| m.kind == MemberKind::Routines),
            Box::new(|sql| replace_once(sql, "RETURN ", "RETURN 0 + ")),
            &["function `bookshop`.", "definition differs"],
        ),
    ];
    for (case, pick, change, expected) in cases {
        let copy_dir = tempfile::tempdir().unwrap();
        let copy = tampered(&folder, copy_dir.path(), replace_first(pick, change));
        verify(&copy, &MariaDb::start().unwrap(), false)
            .await
            .unwrap_or_else(|e| panic!("{case}: the bytes still verify: {e}"));
        let found = differs(verify(&copy, &MariaDb::start().unwrap(), true).await);
        for words in expected {
            assert!(found.contains(words), "{case}: {found}");
        }
        let record: VerificationRecord =
            serde_json::from_slice(&std::fs::read(copy.join("verification.json")).unwrap())
                .unwrap();
        assert_eq!(record.result, VerificationResult::Failed, "{case}");
        assert!(
            record.differences[0].contains(expected[0]),
            "{case}: {record:?}"
        );
    }
}

/// `verify --restore` of `url` into `target`, as the command line gives it.
fn verify_args(url: String, target: &MariaDb) -> keeper_agent::cli::VerifyArgs {
    keeper_agent::cli::VerifyArgs {
        from: url,
        restore: true,
        host: Some(target.host().to_owned()),
        port: target.port(),
        socket: None,
        user: Some(target.root_user().to_owned()),
        password_file: None,
        parallel: 2,
        s3: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_fails_and_an_old_manifest_is_checked_by_counts() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_backup(dir.path()).await;

    // A backup that lost a table whole: its CREATE TABLE and its rows.
    let lost = tempfile::tempdir().unwrap();
    let copy = tampered(&folder, lost.path(), |member, sql| match member.kind {
        MemberKind::Data if member.table.as_deref() == Some("reviews") => Edit::Drop,
        MemberKind::Schema if member.database.as_deref() == Some(DATABASE) => Edit::Replace(
            cut_around(sql, "CREATE TABLE", "CREATE TABLE `reviews`", ";\n"),
        ),
        _ => Edit::Keep,
    });
    let target = MariaDb::start().unwrap();
    let result = verify(&copy, &target, true).await;
    match result {
        // The restore itself may refuse (the triggers of the lost table name
        // it): either way the proof fails and says which table.
        Err(AgentError::Proof(ProofError::Differs { first, .. })) => {
            assert!(first.contains("`reviews`"), "{first}");
        }
        Err(error) => assert!(error.to_string().contains("reviews"), "{error}"),
        Ok(()) => panic!("a backup without `reviews` verified"),
    }

    // A manifest from before digests: counts only, said to be partial.
    let old = tempfile::tempdir().unwrap();
    let copy = old.path().join("b");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(folder.join("dump.sql.gz"), copy.join("dump.sql.gz")).unwrap();
    let mut before = manifest(&folder);
    for database in &mut before.databases {
        database.definitions.clear();
        for table in &mut database.tables {
            table.digest = None;
        }
    }
    std::fs::write(copy.join("manifest.json"), before.to_json().unwrap()).unwrap();
    let target = MariaDb::start().unwrap();
    let args = verify_args(format!("file://{}", copy.display()), &target);
    let report = keeper_agent::proof::prove(&args, &ctx(&target))
        .await
        .unwrap();
    assert!(!report.complete);
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert!(report.rows > 0);
    let lines = report.lines();
    assert!(lines.last().unwrap().contains("partial check"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_data_is_refused_and_a_wrong_password_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let folder = sample_backup(dir.path()).await;
    let target = MariaDb::start().unwrap();
    target
        .run_sql(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT); INSERT INTO app.t VALUES (1);",
            None,
        )
        .unwrap();
    let error = verify(&folder, &target, true).await.unwrap_err();
    assert!(
        matches!(error, AgentError::Proof(ProofError::TargetNotEmpty { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("(app)"), "{error}");
    assert_eq!(
        error.failure_code(),
        keeper_crds::agent::FailureCode::TargetNotEmpty
    );
    // Nothing was changed: the sample was not restored.
    let mut conn = target.connect().await.unwrap();
    let databases: Vec<String> = mysql_async::prelude::Queryable::query(
        &mut conn,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA",
    )
    .await
    .unwrap();
    assert!(!databases.contains(&DATABASE.to_owned()), "{databases:?}");

    let empty = MariaDb::start().unwrap();
    let mut argv = vec![
        "keeper-agent".to_owned(),
        "verify".to_owned(),
        "--from".to_owned(),
        format!("file://{}", folder.display()),
        "--restore".to_owned(),
    ];
    argv.extend(connect_args(&empty));
    let wrong = AgentContext {
        env: [("MYSQL_PWD".to_owned(), "not-the-password".to_owned())].into(),
        kube: None,
    };
    let error = keeper_agent::run(argv, wrong).await.unwrap_err();
    let line = error.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.to_lowercase().contains("access denied"), "{line}");
    assert!(!line.contains("not-the-password"), "{line}");
}

/// Every fidelity fixture (`tests/fixtures/fidelity/`: FLOAT, invalid and
/// zero dates, BIT, JSON, generated and invisible columns, every character
/// set, partitions, sequences, system-versioned history, routines, triggers
/// and events in their creation contexts, …) backed up and proven
/// restorable: the digests computed from the restored server equal the
/// dump's. `merge.sql` needs a FEDERATED source and engine plugins; its
/// tables' rows are not dumped, and the fidelity tests cover it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fidelity_fixture_is_proven_restorable() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fidelity");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .filter(|p| !p.ends_with("merge.sql"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 7, "{fixtures:?}");
    for fixture in fixtures {
        let source = MariaDb::start().unwrap();
        source.run_sql_file(&fixture, None).unwrap();
        let backups = tempfile::tempdir().unwrap();
        let url = format!("file://{}", backups.path().display());
        let mut argv = vec!["keeper-agent".to_owned(), "backup".to_owned()];
        argv.extend(connect_args(&source));
        argv.extend(["--to", &url, "--name", "b"].map(str::to_owned));
        keeper_agent::run(argv, ctx(&source)).await.unwrap();
        let target = MariaDb::start().unwrap();
        let args = verify_args(format!("{url}/b"), &target);
        let report = keeper_agent::proof::prove(&args, &ctx(&target))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        assert!(
            report.differences.is_empty() && report.complete,
            "{}: {:?}",
            fixture.display(),
            report.lines()
        );
        assert!(report.definitions > 0, "{}", fixture.display());
    }
}
