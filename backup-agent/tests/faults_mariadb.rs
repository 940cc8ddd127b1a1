//! Faults on the database side (issue 12): the server killed, restarted or
//! cut off (through the harness proxy) in the middle of a dump and of a
//! restore, and `max_allowed_packet` smaller than a row. Each must give one
//! clear error line, leave the earlier good backup complete and verifying,
//! leave nothing that looks complete, and leave a restore target either
//! untouched (the restore had not begun) or refusable and recoverable with
//! `--overwrite`.

#![allow(clippy::unwrap_used)]

mod faults_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use faults_common::*;
use keeper_agent::restore::{RestoreError, RestoreOptions, restore_backup};
use keeper_tests::{Garage, MariaDb, MariaDbOptions, Proxy};

/// `server`'s connection options, through `port` (a proxy) when given.
fn opts_via(server: &MariaDb, port: Option<u16>) -> mysql_async::Opts {
    let builder = mysql_async::OptsBuilder::from_opts(server.opts());
    match port {
        Some(port) => builder.tcp_port(port).into(),
        None => builder.into(),
    }
}

fn proxy_to(server: &MariaDb) -> Proxy {
    Proxy::tcp(([127, 0, 0, 1], server.port()).into()).unwrap()
}

/// A dump reads faster than it writes (rows are compressed into whole
/// members), so a fault must land while the server is still sending: the
/// agent reaches the server through a throttled proxy.
const THROTTLE: u64 = 4 << 20;

/// Waits until the server has sent `bytes` through `proxy`.
async fn server_sent(proxy: &Proxy, bytes: u64) -> bool {
    wait_for(Duration::from_secs(60), async || {
        proxy.bytes_to_clients() > bytes
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_dump_to_s3_leaves_no_upload_and_the_good_backup() {
    let garage = Garage::start().unwrap();
    let mut server = MariaDb::start().unwrap();
    // ~16 MiB of random bytes: a multipart upload of several parts.
    fill(&server, 16_000);
    let env = env(Some(&server), Some(&garage), None);
    let url = format!("s3://{}/killed", garage.bucket());
    let port = server.port();
    backup(&server, port, &url, "good", &["--databases", "app"], &env)
        .await
        .unwrap();

    // Throttled, so the kill lands while the server is still sending: with
    // whole-member libdeflate the unthrottled dump could read every row
    // between the first part's upload and the kill, and succeed.
    let proxy = proxy_to(&server);
    proxy.throttle(Some(THROTTLE));
    let port = proxy.port();
    let run = backup(
        &server,
        port,
        &url,
        "faulty",
        &["--compression-level", "1", "--parallel", "1"],
        &env,
    );
    let killer = async {
        // In progress and uploading: the marker exists and a part is on its way.
        let started = wait_for(Duration::from_secs(60), async || {
            !pending_uploads(&garage).await.is_empty()
        })
        .await;
        let marker = keys(&garage, "killed/faulty/").await;
        server.kill();
        (started, marker)
    };
    let (result, (started, marker)) = tokio::join!(run, killer);
    assert!(
        started,
        "the dump finished before its upload began; make it larger"
    );
    assert!(
        marker.contains(&"killed/faulty/in-progress.json".to_owned()),
        "{marker:?}"
    );
    let message = result.expect_err("a dump from a killed server must fail");
    assert_one_line(
        &message,
        &[&format!("127.0.0.1:{port}")],
        &[server.root_password(), garage.secret_access_key()],
    );
    assert!(
        message.contains("run it again") || message.contains("failed"),
        "{message}"
    );

    assert!(pending_uploads(&garage).await.is_empty());
    assert_eq!(
        keys(&garage, "killed/faulty/").await,
        Vec::<String>::new(),
        "nothing of the failed backup may stay"
    );
    assert_good_backups_intact(&url, &["good"], &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_mid_dump_fails_cleanly_and_the_next_backup_works() {
    let server = MariaDb::start().unwrap();
    fill(&server, 12_000);
    let env = env(Some(&server), None, None);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let proxy = proxy_to(&server);
    let port = proxy.port();
    backup(&server, port, &url, "good", &["--databases", "app"], &env)
        .await
        .unwrap();

    proxy.throttle(Some(THROTTLE));
    let run = backup(
        &server,
        port,
        &url,
        "faulty",
        &["--compression-level", "1", "--parallel", "1"],
        &env,
    );
    let restarter = async {
        let started = server_sent(&proxy, 4 << 20).await;
        // A clean shutdown and start on the same port and datadir, as a
        // rolling restart of the StatefulSet would do; on another thread,
        // so the agent keeps running meanwhile.
        let server = tokio::task::spawn_blocking(move || {
            let mut server = server;
            server.restart().unwrap();
            server
        })
        .await
        .unwrap();
        (started, server)
    };
    let (result, (started, server)) = tokio::join!(run, restarter);
    assert!(
        started,
        "the dump finished before the restart; make it larger"
    );
    let message = result.expect_err("a dump across a restart must fail");
    assert_one_line(
        &message,
        &[&format!("127.0.0.1:{port}")],
        &[server.root_password()],
    );
    assert_no_dump_files(&dir.path().join("faulty"));

    // The server is back: the next run succeeds and both good backups stand.
    proxy.pass_through();
    backup(&server, port, &url, "after", &[], &env)
        .await
        .unwrap();
    assert_good_backups_intact(&url, &["after", "good"], &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_mid_dump_and_mid_restore() {
    let source = MariaDb::start().unwrap();
    let target = MariaDb::start().unwrap();
    fill(&source, 12_000);
    let env = env(Some(&source), None, None);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let proxy = proxy_to(&source);

    // Through the proxy, passing through: a whole good backup.
    backup(&source, proxy.port(), &url, "good", &[], &env)
        .await
        .unwrap();
    assert!(proxy.connections() >= 2 && proxy.bytes_to_upstream() > 0);

    // The network drops every connection while data flows.
    proxy.throttle(Some(THROTTLE));
    let sent = proxy.bytes_to_clients();
    let run = backup(
        &source,
        proxy.port(),
        &url,
        "faulty",
        &["--parallel", "2"],
        &env,
    );
    let cutter = async {
        let started = server_sent(&proxy, sent + (4 << 20)).await;
        proxy.drop_connections();
        proxy.refuse_new(true);
        started
    };
    let (result, started) = tokio::join!(run, cutter);
    assert!(started, "the dump finished before the cut; make it larger");
    let message = result.expect_err("a dump whose connections drop must fail");
    assert_one_line(
        &message,
        &[&format!("127.0.0.1:{}", proxy.port())],
        &[source.root_password()],
    );
    assert!(message.contains("lost the connection"), "{message}");
    assert_no_dump_files(&dir.path().join("faulty"));
    assert_good_backups_intact(&url, &["good"], &env).await;

    // A restore whose connections drop half way: one line, and the partial
    // target is then refused without --overwrite and repaired with it.
    let store = open(&format!("{url}/good"), &env).await;
    let to_target = proxy_to(&target);
    let done = Arc::new(AtomicUsize::new(0));
    let seen = done.clone();
    let cut = Arc::new(std::sync::Mutex::new(Some(to_target)));
    let cut_in_callback = cut.clone();
    let opts = opts_via(&target, cut.lock().unwrap().as_ref().map(Proxy::port));
    let progress = move |p: keeper_agent::restore::RestoreProgress| {
        seen.store(p.members_done, Ordering::SeqCst);
        // After the schema, while data members replay.
        if p.members_done >= 3
            && let Some(proxy) = cut_in_callback.lock().unwrap().as_ref()
        {
            proxy.refuse_new(true);
            proxy.drop_connections();
        }
    };
    let err = restore_backup(
        &store,
        &opts,
        RestoreOptions {
            parallel: 2,
            overwrite: false,
            load_data: true,
        },
        &progress,
    )
    .await
    .expect_err("a restore whose connections drop must fail");
    let message = err.to_string();
    assert_one_line(&message, &["127.0.0.1"], &[target.root_password()]);
    let total =
        keeper_agent::manifest::Manifest::from_json(&store.get("manifest.json").await.unwrap())
            .unwrap()
            .members
            .len();
    assert!(
        done.load(Ordering::SeqCst) < total,
        "the restore finished first"
    );
    drop(cut.lock().unwrap().take());

    repair_partial_restore(&source, &target, &url, &env).await;
}

/// A target left half-restored: a plain restore refuses it and changes
/// nothing; `--overwrite` restores it whole.
async fn repair_partial_restore(
    source: &MariaDb,
    target: &MariaDb,
    url: &str,
    env: &std::collections::HashMap<String, String>,
) {
    let port = target.port().to_string();
    let from = format!("{url}/good");
    let restore = |extra: &'static [&'static str]| {
        let mut args = vec![
            "keeper-agent".to_owned(),
            "restore".into(),
            "--host".into(),
            target.host().into(),
            "--port".into(),
            port.clone(),
            "--user".into(),
            target.root_user().into(),
            "--from".into(),
            from.clone(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut env = env.clone();
        env.insert("MYSQL_PWD".into(), target.root_password().into());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args, &env).await
        }
    };
    let before = checksums(target, &["app.small", "shop.big"]).await;
    let message = restore(&[])
        .await
        .expect_err("a partial target must be refused");
    assert_one_line(&message, &["--overwrite", "nothing was changed"], &[]);
    assert_eq!(checksums(target, &["app.small", "shop.big"]).await, before);

    restore(&["--overwrite"]).await.unwrap();
    assert_eq!(
        checksums(target, &["app.small", "shop.big"]).await,
        checksums(source, &["app.small", "shop.big"]).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_killed_mid_restore() {
    let source = MariaDb::start().unwrap();
    let mut target = MariaDb::start().unwrap();
    fill(&source, 12_000);
    let env = env(Some(&source), None, None);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    backup(&source, source.port(), &url, "good", &[], &env)
        .await
        .unwrap();
    let store = open(&format!("{url}/good"), &env).await;
    let total =
        keeper_agent::manifest::Manifest::from_json(&store.get("manifest.json").await.unwrap())
            .unwrap()
            .members
            .len();

    let done = Arc::new(AtomicUsize::new(0));
    let seen = done.clone();
    let progress = move |p: keeper_agent::restore::RestoreProgress| {
        seen.store(p.members_done, Ordering::SeqCst);
    };
    let opts = target.opts();
    let target_port = target.port();
    let run = restore_backup(
        &store,
        &opts,
        RestoreOptions {
            parallel: 2,
            overwrite: false,
            load_data: true,
        },
        &progress,
    );
    let killer = async {
        let started = wait_for(Duration::from_secs(60), async || {
            done.load(Ordering::SeqCst) >= 3
        })
        .await;
        target.kill();
        started
    };
    let (result, started) = tokio::join!(run, killer);
    assert!(started, "the restore never got to its data");
    let err = result.expect_err("a restore into a killed server must fail");
    assert!(
        done.load(Ordering::SeqCst) < total,
        "the restore finished first"
    );
    assert!(
        matches!(
            err,
            RestoreError::Statement { .. }
                | RestoreError::Connect { .. }
                | RestoreError::Query { .. }
        ),
        "{err}"
    );
    assert_one_line(
        &err.to_string(),
        &[],
        &[target.root_password(), source.root_password()],
    );
    // Reading the backup never changes it.
    assert_good_backups_intact(&url, &["good"], &env).await;

    target.restart().unwrap();
    assert_eq!(target.port(), target_port);
    repair_partial_restore(&source, &target, &url, &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_allowed_packet_smaller_than_a_row() {
    // The source writes rows of 2 MB; the small server allows 1 MiB.
    let source = MariaDb::start().unwrap();
    let small = MariaDb::start_with(MariaDbOptions {
        max_allowed_packet: 1 << 20,
        ..MariaDbOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());

    // A row that does not fit the dumping server's own packet: the dump
    // engine refuses it (a statement the server could not take back), and the
    // earlier good backup stands.
    small
        .run_sql(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, b LONGBLOB);
             INSERT INTO app.t VALUES (1, 'fits');",
            None,
        )
        .unwrap();
    let small_env = env(Some(&small), None, None);
    backup(&small, small.port(), &url, "good", &[], &small_env)
        .await
        .unwrap();
    small
        .run_sql("INSERT INTO app.t VALUES (2, REPEAT(X'00', 700000));", None)
        .unwrap();
    let message = backup(&small, small.port(), &url, "too-big", &[], &small_env)
        .await
        .expect_err("a row over max_allowed_packet must fail the dump");
    assert_one_line(
        &message,
        &["`app`.`t`", "max_allowed_packet"],
        &[small.root_password()],
    );
    assert_no_dump_files(&dir.path().join("too-big"));
    assert_good_backups_intact(&url, &["good"], &small_env).await;

    // A backup whose largest statement exceeds the target's packet: refused
    // before anything runs; the target is unchanged.
    source
        .run_sql(
            "CREATE DATABASE wide; CREATE TABLE wide.t (id INT PRIMARY KEY, b LONGTEXT);
             INSERT INTO wide.t VALUES (1, REPEAT('x', 2000000)), (2, 'small');",
            None,
        )
        .unwrap();
    let source_env = env(Some(&source), None, None);
    backup(
        &source,
        source.port(),
        &url,
        "wide",
        &["--databases", "wide"],
        &source_env,
    )
    .await
    .unwrap();
    let before = user_databases(&small).await;
    let from = format!("{url}/wide");
    let port = small.port().to_string();
    let message = run(
        &[
            "keeper-agent",
            "restore",
            "--host",
            small.host(),
            "--port",
            &port,
            "--user",
            small.root_user(),
            "--from",
            &from,
        ],
        &small_env,
    )
    .await
    .expect_err("a target with a too-small max_allowed_packet must be refused");
    assert_one_line(
        &message,
        &["max_allowed_packet=1048576", "nothing was restored"],
        &[small.root_password()],
    );
    assert_eq!(user_databases(&small).await, before);
    assert_eq!(checksums(&small, &["app.t"]).await.len(), 1);
    assert_good_backups_intact(&url, &["good", "wide"], &source_env).await;
}
