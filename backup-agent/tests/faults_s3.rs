//! Faults on the S3 side (issue 12), against a real Garage store: the store
//! killed mid-upload, answering 500/503 (a few: retried; always: a clear
//! failure and an aborted upload), slow and dropping connections (still
//! succeeds, and a live upload is never taken for an orphan), and the agent
//! binary killed with SIGKILL (an orphan that cleanup aborts only once it is
//! old, never before).

#![allow(clippy::unwrap_used)]

mod faults_common;

use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use faults_common::*;
use keeper_agent::repository::keep_policy::KeepPolicy;
use keeper_agent::repository::orphans::abort_orphaned_uploads;
use keeper_agent::repository::prune::{Retention, apply_at};
use keeper_agent::repository::{BackupStatus, list_backups};
use keeper_tests::{Garage, MariaDb, Proxy};

fn garage_addr(garage: &Garage) -> std::net::SocketAddr {
    garage
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

/// `--keep-last n` for the owner every backup of these tests records.
fn keep_last(n: u32) -> Retention {
    Retention {
        policy: KeepPolicy {
            keep_last: Some(n),
            max_age: None,
        },
        owner: Some(owner()),
        object_pins: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_500_and_503_are_retried_and_a_persistent_503_fails_and_aborts() {
    let garage = Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    fill(&server, 12_000);
    let proxy = Proxy::http(garage_addr(&garage)).unwrap();
    let env = env(Some(&server), Some(&garage), Some(&proxy.endpoint()));
    let url = format!("s3://{}/flaky", garage.bucket());
    let app = ["--databases", "app"];

    // A few errors: the agent retries with backoff and succeeds.
    proxy.fail_next(2, 503);
    backup(&server, server.port(), &url, "good", &app, &env)
        .await
        .unwrap();
    assert_eq!(proxy.failed_requests(), 2);
    proxy.fail_next(2, 500);
    backup(&server, server.port(), &url, "good2", &app, &env)
        .await
        .unwrap();
    assert_eq!(proxy.failed_requests(), 4);

    // Every part answered 503: a clear failure, and the upload is aborted
    // (the abort itself gets through).
    proxy.fail_matching(u64::MAX, 503, "partNumber=");
    let message = backup(
        &server,
        server.port(),
        &url,
        "faulty",
        &["--compression-level", "1"],
        &env,
    )
    .await
    .expect_err("a store that rejects every part must fail the backup");
    assert!(proxy.failed_requests() > 4);
    assert_one_line(
        &message,
        &[garage.bucket(), &proxy.endpoint(), "faulty/dump.sql.gz"],
        &[garage.secret_access_key(), server.root_password()],
    );
    assert!(
        message.contains("503") || message.contains("SlowDown"),
        "{message}"
    );
    proxy.pass_through();
    assert_eq!(pending_uploads(&garage).await, Vec::<String>::new());
    assert_eq!(keys(&garage, "flaky/faulty/").await, Vec::<String>::new());
    assert_good_backups_intact(&url, &["good", "good2"], &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garage_killed_mid_upload_fails_clearly_and_cleanup_finishes_the_job() {
    let mut garage = Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    fill(&server, 16_000);
    let env = env(Some(&server), Some(&garage), None);
    let url = format!("s3://{}/crash", garage.bucket());
    backup(
        &server,
        server.port(),
        &url,
        "good",
        &["--databases", "app"],
        &env,
    )
    .await
    .unwrap();

    let run = backup(
        &server,
        server.port(),
        &url,
        "faulty",
        &["--compression-level", "1", "--parallel", "1"],
        &env,
    );
    let killer = async {
        let started = wait_for(Duration::from_secs(60), async || {
            !pending_uploads(&garage).await.is_empty()
        })
        .await;
        garage.kill();
        started
    };
    let (result, started) = tokio::join!(run, killer);
    assert!(started, "the backup finished before its upload began");
    let message = result.expect_err("a backup into a dead store must fail");
    assert_one_line(
        &message,
        &[garage.bucket(), &garage.endpoint()],
        &[garage.secret_access_key(), server.root_password()],
    );

    // The store comes back. The dead run could not abort its upload nor
    // remove its marker while the store was down: it is not a backup, and
    // cleanup aborts what is left once it is old enough.
    garage.restart().unwrap();
    assert_good_backups_intact(&url, &["good"], &env).await;
    let store = open(&url, &env).await;
    let outcome = apply_at(
        &store,
        &keep_last(5),
        Utc::now() + chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    assert!(
        outcome.kept_names().contains(&"good".to_owned()),
        "{outcome:?}"
    );
    assert_eq!(pending_uploads(&garage).await, Vec::<String>::new());
    assert_eq!(keys(&garage, "crash/faulty/").await, Vec::<String>::new());
    assert_good_backups_intact(&url, &["good"], &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_that_drops_connections_still_gets_a_good_backup() {
    let garage = Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    fill(&server, 8_000);
    let proxy = Proxy::http(garage_addr(&garage)).unwrap();
    let env_proxied = env(Some(&server), Some(&garage), Some(&proxy.endpoint()));
    let env_direct = env(Some(&server), Some(&garage), None);
    let url = format!("s3://{}/slow", garage.bucket());
    proxy.set_latency(Duration::from_millis(20));
    proxy.throttle(Some(8 << 20));

    let run = backup(
        &server,
        server.port(),
        &url,
        "slow",
        &["--compression-level", "1", "--parallel", "1"],
        &env_proxied,
    );
    let meddler = async {
        let uploading = wait_for(Duration::from_secs(60), async || {
            !pending_uploads(&garage).await.is_empty()
        })
        .await;
        // Cleanup running meanwhile never touches a live upload, even with
        // no minimum age, and retention keeps the running backup.
        let store = open(&url, &env_direct).await;
        let aborted =
            abort_orphaned_uploads(&store, &owner(), chrono::Duration::zero(), Utc::now())
                .await
                .unwrap();
        let pruned = apply_at(&store, &keep_last(1), Utc::now()).await.unwrap();
        let still_pending = pending_uploads(&garage).await;
        // The network drops the connections once mid-upload: retried.
        proxy.drop_connections();
        (uploading, aborted, pruned, still_pending)
    };
    let (result, (uploading, aborted, pruned, still_pending)) = tokio::join!(run, meddler);
    assert!(uploading, "the backup finished before its upload began");
    assert!(aborted.is_empty(), "a live upload was aborted: {aborted:?}");
    assert!(pruned.removed.is_empty(), "{pruned:?}");
    assert!(pruned.aborted_uploads.is_empty(), "{pruned:?}");
    assert_eq!(still_pending, ["slow/slow/dump.sql.gz"]);
    result.unwrap();

    assert_eq!(pending_uploads(&garage).await, Vec::<String>::new());
    assert_good_backups_intact(&url, &["slow"], &env_direct).await;
    assert_eq!(
        checksums(&server, &["shop.big"]).await.len(),
        1,
        "the source is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_leaves_an_orphan_that_only_old_age_lets_cleanup_abort() {
    let garage = Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    fill(&server, 16_000);
    let env = env(Some(&server), Some(&garage), None);
    let url = format!("s3://{}/sigkill", garage.bucket());
    backup(
        &server,
        server.port(),
        &url,
        "good",
        &["--databases", "app"],
        &env,
    )
    .await
    .unwrap();

    // The server is reached through a throttled proxy, so the agent is
    // surely mid-upload when it dies.
    let proxy = Proxy::tcp(([127, 0, 0, 1], server.port()).into()).unwrap();
    proxy.throttle(Some(8 << 20));
    let mut child = Command::new(env!("CARGO_BIN_EXE_keeper-agent"))
        .args([
            "backup",
            "--host",
            server.host(),
            "--port",
            &proxy.port().to_string(),
            "--user",
            server.root_user(),
            "--to",
            &url,
            "--name",
            "killed",
            "--instance",
            OWNER,
            "--parallel",
            "1",
            "--compression-level",
            "1",
            "--s3-force-path-style",
        ])
        .env_clear()
        .envs(&env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = wait_for(Duration::from_secs(60), async || {
        !pending_uploads(&garage).await.is_empty()
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent exited before its upload could be interrupted"
    );
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(started && !status.success());

    // No manifest; listed as not good; the orphaned upload is pending.
    let stored = keys(&garage, "sigkill/killed/").await;
    assert_eq!(stored, ["sigkill/killed/in-progress.json"]);
    assert_eq!(
        pending_uploads(&garage).await,
        ["sigkill/killed/dump.sql.gz"]
    );
    let store = open(&url, &env).await;
    let listed = list_backups(&store).await.unwrap();
    let killed = listed.iter().find(|l| l.name == "killed").unwrap();
    assert_eq!(killed.status, BackupStatus::InProgress, "{killed:?}");
    assert_good_backups_intact(&url, &["good"], &env).await;

    // Cleanup now: its marker is fresh, so it may still be alive; nothing is
    // aborted, by the CLI or with no minimum age.
    run(
        &[
            "keeper-agent",
            "prune",
            "--from",
            &url,
            "--keep-last",
            "5",
            "--instance",
            OWNER,
            "--s3-force-path-style",
        ],
        &env,
    )
    .await
    .unwrap();
    let aborted = abort_orphaned_uploads(&store, &owner(), chrono::Duration::zero(), Utc::now())
        .await
        .unwrap();
    assert!(aborted.is_empty(), "{aborted:?}");
    assert_eq!(
        pending_uploads(&garage).await,
        ["sigkill/killed/dump.sql.gz"]
    );

    // An hour later (the marker is stale, the upload old): the orphan is
    // aborted and its folder removed; the good backup stays.
    let later = Utc::now() + chrono::Duration::hours(1);
    let outcome = apply_at(&store, &keep_last(5), later).await.unwrap();
    assert_eq!(outcome.removed_names(), ["killed"], "{outcome:?}");
    assert_eq!(pending_uploads(&garage).await, Vec::<String>::new());
    assert_eq!(keys(&garage, "sigkill/killed/").await, Vec::<String>::new());
    assert_good_backups_intact(&url, &["good"], &env).await;
}

/// An upload dropped while its CreateMultipartUpload is on its way (SIGTERM
/// or a failure elsewhere at that moment): the store has made the upload but
/// the agent never got its id. The drop still aborts it, by its key, so a
/// stopped run leaves no pending upload behind (it used to stay until the
/// orphan cleanup of a later run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_dropped_before_its_id_came_back_is_still_aborted() {
    use bytes::Bytes;
    use keeper_agent::storage::{Location, S3Settings, Store};
    let garage = Garage::start().unwrap();
    let proxy = Proxy::http(garage_addr(&garage)).unwrap();
    let settings = S3Settings {
        env: env(None, Some(&garage), Some(&proxy.endpoint())),
        force_path_style: true,
        ca_bundle: None,
    };
    let location = Location::parse(&format!("s3://{}/dropped", garage.bucket())).unwrap();
    let store = Store::open(&location, &settings).await.unwrap();
    // Every chunk waits: the request reaches the store after 1.5 s, its
    // answer comes back 1.5 s later.
    proxy.set_latency(Duration::from_millis(1500));
    let writer = tokio::spawn(async move {
        let mut upload = store.create_upload("b/dump.sql.gz").await.unwrap();
        // More than one part: the first part starts the multipart upload.
        upload.write(Bytes::from(vec![7u8; 6 << 20])).await.unwrap();
        upload.finish().await.unwrap();
    });
    // Wait until the store has the upload, then stop the run before the
    // answer with its id can have come back.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pending_uploads(&garage).await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no upload started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.abort();
    let _ = writer.await;
    proxy.set_latency(Duration::ZERO);
    keeper_agent::storage::s3::wait_for_pending_aborts(Duration::from_secs(20)).await;
    assert_eq!(pending_uploads(&garage).await, Vec::<String>::new());
}
