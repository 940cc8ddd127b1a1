//! Backups through S3 end to end: a real MariaDB dumped by the agent into a
//! real Garage store, verified and restored into a second server; and the
//! built binary stopped by SIGTERM mid-upload leaving nothing behind.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keeper_agent::AgentContext;
use keeper_tests::{Garage, MariaDb};
use mysql_async::prelude::Queryable;

fn agent_env(garage: &Garage, server: &MariaDb) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    env.insert("MYSQL_PWD".into(), server.root_password().to_owned());
    env
}

/// A table of random (incompressible) rows: `rows` KiB of data, so the dump
/// needs a real multipart upload.
fn fill(server: &MariaDb, rows: u32) {
    server
        .run_sql(
            &format!(
                "CREATE DATABASE shop;
                 CREATE TABLE shop.items (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40), payload BLOB) ENGINE=InnoDB;
                 USE shop;
                 INSERT INTO items (note, payload) SELECT CONCAT('item ', seq), RANDOM_BYTES(1024) FROM seq_1_to_{rows};"
            ),
            None,
        )
        .unwrap();
}

async fn checksum(server: &MariaDb) -> (String, u64) {
    let mut conn = server.connect().await.unwrap();
    let row: (String, Option<u64>) = conn
        .query_first("CHECKSUM TABLE shop.items")
        .await
        .unwrap()
        .unwrap();
    let count: u64 = conn
        .query_first("SELECT COUNT(*) FROM shop.items")
        .await
        .unwrap()
        .unwrap();
    (format!("{:?}", row.1), count)
}

async fn pending_uploads(garage: &Garage) -> usize {
    garage
        .client()
        .list_multipart_uploads()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

async fn keys(garage: &Garage, prefix: &str) -> Vec<String> {
    garage
        .client()
        .list_objects_v2()
        .bucket(garage.bucket())
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_and_restore_through_s3() {
    let garage = Garage::start().unwrap();
    let source = MariaDb::start().unwrap();
    let target = MariaDb::start().unwrap();
    // ~12 MiB of random bytes: written as hex or escaped, the dump needs
    // several 5 MiB parts even compressed.
    fill(&source, 12_000);
    let url = format!("s3://{}/e2e", garage.bucket());
    let port = source.port().to_string();
    let ctx = AgentContext {
        env: agent_env(&garage, &source),
        kube: None,
    };
    keeper_agent::run(
        [
            "keeper-agent",
            "backup",
            "--host",
            source.host(),
            "--port",
            &port,
            "--user",
            source.root_user(),
            "--databases",
            "shop",
            "--to",
            &url,
            "--name",
            "b1",
            "--s3-force-path-style",
        ],
        ctx.clone(),
    )
    .await
    .unwrap();
    let mut stored = keys(&garage, "e2e/b1/").await;
    stored.sort();
    assert_eq!(stored, ["e2e/b1/dump.sql.gz", "e2e/b1/manifest.json"]);
    let head = garage
        .client()
        .head_object()
        .bucket(garage.bucket())
        .key("e2e/b1/dump.sql.gz")
        .send()
        .await
        .unwrap();
    assert!(
        head.content_length().unwrap() > 10 << 20,
        "{:?}",
        head.content_length()
    );
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    assert!(
        etag.rsplit_once('-')
            .is_some_and(|(_, parts)| parts.parse::<u32>().unwrap_or(0) >= 2),
        "a multipart ETag, got {etag}"
    );
    assert_eq!(pending_uploads(&garage).await, 0);

    let backup = format!("{url}/b1");
    keeper_agent::run(
        [
            "keeper-agent",
            "verify",
            "--from",
            &backup,
            "--s3-force-path-style",
        ],
        ctx.clone(),
    )
    .await
    .unwrap();

    let target_port = target.port().to_string();
    keeper_agent::run(
        [
            "keeper-agent",
            "restore",
            "--host",
            target.host(),
            "--port",
            &target_port,
            "--user",
            target.root_user(),
            "--from",
            &backup,
            "--s3-force-path-style",
        ],
        AgentContext {
            env: agent_env(&garage, &target),
            kube: None,
        },
    )
    .await
    .unwrap();
    let expected = checksum(&source).await;
    assert_eq!(expected.1, 12_000);
    assert_eq!(checksum(&target).await, expected);
}

/// zstd and plain dumps through S3: stored as `dump.sql.zst` / `dump.sql`,
/// checked by `verify`, proven by `verify --restore`, restored, listed,
/// and pruned whole by retention (with a gzip backup of the same owner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_plain_backups_verify_restore_list_and_prune_through_s3() {
    let garage = Garage::start().unwrap();
    let source = MariaDb::start().unwrap();
    fill(&source, 3_000);
    let expected = checksum(&source).await;
    let url = format!("s3://{}/codecs", garage.bucket());
    let port = source.port().to_string();
    let ctx = |server: &MariaDb| AgentContext {
        env: agent_env(&garage, server),
        kube: None,
    };
    for (name, compression) in [("a-gzip", "gzip"), ("b-zstd", "zstd"), ("c-none", "none")] {
        keeper_agent::run(
            [
                "keeper-agent",
                "backup",
                "--host",
                source.host(),
                "--port",
                &port,
                "--user",
                source.root_user(),
                "--databases",
                "shop",
                "--to",
                &url,
                "--name",
                name,
                "--instance",
                "shop/orders",
                "--compression",
                compression,
                "--s3-force-path-style",
            ],
            ctx(&source),
        )
        .await
        .unwrap();
    }
    let mut stored = keys(&garage, "codecs/").await;
    stored.sort();
    assert_eq!(
        stored,
        [
            "codecs/a-gzip/dump.sql.gz",
            "codecs/a-gzip/manifest.json",
            "codecs/b-zstd/dump.sql.zst",
            "codecs/b-zstd/manifest.json",
            "codecs/c-none/dump.sql",
            "codecs/c-none/manifest.json",
        ]
    );
    for name in ["b-zstd", "c-none"] {
        let backup = format!("{url}/{name}");
        keeper_agent::run(
            [
                "keeper-agent",
                "verify",
                "--from",
                &backup,
                "--s3-force-path-style",
            ],
            ctx(&source),
        )
        .await
        .unwrap();
        let proof = MariaDb::start().unwrap();
        let proof_port = proof.port().to_string();
        keeper_agent::run(
            [
                "keeper-agent",
                "verify",
                "--restore",
                "--host",
                proof.host(),
                "--port",
                &proof_port,
                "--user",
                proof.root_user(),
                "--from",
                &backup,
                "--s3-force-path-style",
            ],
            ctx(&proof),
        )
        .await
        .unwrap();
        assert_eq!(checksum(&proof).await, expected, "{name}");
        let target = MariaDb::start().unwrap();
        let target_port = target.port().to_string();
        keeper_agent::run(
            [
                "keeper-agent",
                "restore",
                "--host",
                target.host(),
                "--port",
                &target_port,
                "--user",
                target.root_user(),
                "--from",
                &backup,
                "--s3-force-path-style",
            ],
            ctx(&target),
        )
        .await
        .unwrap();
        assert_eq!(checksum(&target).await, expected, "{name}");
    }
    keeper_agent::run(
        [
            "keeper-agent",
            "list",
            "--from",
            &url,
            "--verify",
            "--s3-force-path-style",
        ],
        ctx(&source),
    )
    .await
    .unwrap();
    // Retention sees all three as complete backups of the owner and
    // removes every file of the expired ones, whatever their codec.
    keeper_agent::run(
        [
            "keeper-agent",
            "prune",
            "--from",
            &url,
            "--instance",
            "shop/orders",
            "--keep-last",
            "1",
            "--s3-force-path-style",
        ],
        ctx(&source),
    )
    .await
    .unwrap();
    let mut left = keys(&garage, "codecs/").await;
    left.sort();
    assert_eq!(
        left,
        [
            "codecs/c-none/dump.sql",
            "codecs/c-none/manifest.json",
            "codecs/c-none/verification.json",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_upload_aborts_and_leaves_no_backup() {
    let garage = Garage::start().unwrap();
    let source = MariaDb::start().unwrap();
    // ~150 MiB: long enough to still be uploading when the signal arrives.
    fill(&source, 150_000);
    let url = format!("s3://{}/term", garage.bucket());
    let mut child = Command::new(env!("CARGO_BIN_EXE_keeper-agent"))
        .args([
            "backup",
            "--host",
            source.host(),
            "--port",
            &source.port().to_string(),
            "--user",
            source.root_user(),
            "--databases",
            "shop",
            "--to",
            &url,
            "--name",
            "killed",
            "--s3-force-path-style",
        ])
        .env_clear()
        .envs(agent_env(&garage, &source))
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until the multipart upload exists (a part is on its way).
    let deadline = Instant::now() + Duration::from_secs(120);
    while pending_uploads(&garage).await == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent exited before its upload started"
        );
        assert!(Instant::now() < deadline, "no multipart upload started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the agent ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!exit.success(), "{stderr}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    assert!(!stderr.contains(garage.secret_access_key()));

    assert_eq!(pending_uploads(&garage).await, 0, "{stderr}");
    let stored = keys(&garage, "term/").await;
    assert!(
        !stored
            .iter()
            .any(|k| k.ends_with("dump.sql.gz") || k.ends_with("manifest.json")),
        "{stored:?}"
    );
}
