//! Shared helpers of the `faults_*` tests: run the agent like its CLI does,
//! and the checks every fault must pass (one error line, the good backup
//! still complete and verifying, nothing incomplete that looks complete, no
//! pending multipart upload).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keeper_agent::AgentContext;
use keeper_agent::repository::{BackupStatus, list_backups};
use keeper_agent::restore::verify_backup;
use keeper_agent::storage::{Location, S3Settings, Store};
use keeper_tests::{Garage, MariaDb};
use mysql_async::prelude::Queryable;

/// The agent's environment for `server`, plus `garage`'s S3 variables (with
/// the endpoint replaced by `endpoint`, e.g. a proxy's).
pub fn env(
    server: Option<&MariaDb>,
    garage: Option<&Garage>,
    endpoint: Option<&str>,
) -> HashMap<String, String> {
    let mut env = HashMap::new();
    if let Some(server) = server {
        env.insert("MYSQL_PWD".to_owned(), server.root_password().to_owned());
    }
    if let Some(garage) = garage {
        for (k, v) in garage.env() {
            env.insert(k.to_owned(), v);
        }
    }
    if let Some(endpoint) = endpoint {
        env.insert("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned());
    }
    env
}

/// The owner every backup of the fault tests records (`--instance`).
pub const OWNER: &str = "test/app";

pub fn owner() -> keeper_agent::owner::Owner {
    OWNER.parse().unwrap()
}

/// `keeper-agent backup` in-process against `server` (or `port`, e.g. a
/// proxy), owned by [`OWNER`]. The arguments are taken at once, so the future does not borrow
/// the server (a test may kill it meanwhile).
pub fn backup(
    server: &MariaDb,
    port: u16,
    to: &str,
    name: &str,
    extra: &[&str],
    env: &HashMap<String, String>,
) -> impl std::future::Future<Output = Result<(), String>> + use<> {
    let mut args: Vec<String> = [
        "keeper-agent",
        "backup",
        "--host",
        server.host(),
        "--port",
        &port.to_string(),
        "--user",
        server.root_user(),
        "--to",
        to,
        "--name",
        name,
        "--instance",
        OWNER,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if to.starts_with("s3://") {
        args.push("--s3-force-path-style".into());
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let env = env.clone();
    async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &env).await
    }
}

/// Runs the agent in-process; the error as the binary would print it.
pub async fn run(args: &[&str], env: &HashMap<String, String>) -> Result<(), String> {
    keeper_agent::run(
        args.iter().copied(),
        AgentContext {
            env: env.clone(),
            kube: None,
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// One line, naming what failed (each of `names`), no secret.
pub fn assert_one_line(message: &str, names: &[&str], secrets: &[&str]) {
    assert!(!message.is_empty());
    assert!(!message.contains('\n'), "not one line: {message:?}");
    for name in names {
        assert!(message.contains(name), "{name:?} not named in: {message}");
    }
    for secret in secrets {
        assert!(!message.contains(secret), "a secret leaked into: {message}");
    }
}

pub async fn open(url: &str, env: &HashMap<String, String>) -> Store {
    let ctx = AgentContext {
        env: env.clone(),
        kube: None,
    };
    let settings = S3Settings::from_ctx(
        &ctx,
        &keeper_agent::cli::S3Args {
            s3_force_path_style: true,
            s3_ca_bundle: None,
        },
    );
    Store::open(&Location::parse(url).unwrap(), &settings)
        .await
        .unwrap()
}

/// After a fault: `good` (every name in it) is still listed complete and
/// verifies, through the library and the CLI; every other backup at `url`
/// is not complete, and `list` says so for a `dump.sql.gz` without manifest.
pub async fn assert_good_backups_intact(url: &str, good: &[&str], env: &HashMap<String, String>) {
    let store = open(url, env).await;
    let listed = list_backups(&store).await.unwrap();
    for name in good {
        let entry = listed
            .iter()
            .find(|l| l.name == *name)
            .unwrap_or_else(|| panic!("{name} is no longer listed: {listed:?}"));
        assert_eq!(entry.status, BackupStatus::Complete, "{entry:?}");
        verify_backup(&store.child(name))
            .await
            .unwrap_or_else(|e| panic!("{name} no longer verifies: {e}"));
        let folder = format!("{url}/{name}");
        let mut args = vec!["keeper-agent", "verify", "--from", &folder];
        if url.starts_with("s3://") {
            args.push("--s3-force-path-style");
        }
        run(&args, env).await.unwrap();
    }
    let objects = store.list().await.unwrap();
    for entry in listed.iter().filter(|l| !good.contains(&l.name.as_str())) {
        assert_ne!(
            entry.status,
            BackupStatus::Complete,
            "a failed backup is listed complete: {entry:?}"
        );
        let has = |file: &str| {
            objects
                .iter()
                .any(|o| o.key == format!("{}/{file}", entry.name))
        };
        assert!(!has("manifest.json"), "{entry:?}");
    }
    let mut args = vec!["keeper-agent", "list", "--from", url];
    if url.starts_with("s3://") {
        args.push("--s3-force-path-style");
    }
    run(&args, env).await.unwrap();
}

/// The files below a failed file backup's folder: no dump, no partial, no manifest.
pub fn assert_no_dump_files(folder: &std::path::Path) {
    for file in ["dump.sql.gz", "dump.sql.gz.partial", "manifest.json"] {
        assert!(
            !folder.join(file).exists(),
            "{} was left behind",
            folder.join(file).display()
        );
    }
}

/// Multipart uploads still pending in the bucket, by key.
pub async fn pending_uploads(garage: &Garage) -> Vec<String> {
    garage
        .client()
        .list_multipart_uploads()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap()
        .uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_owned))
        .collect()
}

/// Keys in the bucket below `prefix`.
pub async fn keys(garage: &Garage, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = garage
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
        .collect();
    keys.sort();
    keys
}

/// Two databases: `app` with a small table (quick "good" backups with
/// `--databases app`) and `shop` with `rows` KiB of random, incompressible
/// rows in `shop.big` (twice that once written as hex or escaped).
pub fn fill(server: &MariaDb, rows: u32) {
    server
        .run_sql(
            &format!(
                "CREATE DATABASE app;
                 CREATE TABLE app.small (id INT PRIMARY KEY, note VARCHAR(40));
                 INSERT INTO app.small VALUES (1, 'one'), (2, 'two');
                 CREATE DATABASE shop;
                 USE shop;
                 CREATE TABLE big (id INT AUTO_INCREMENT PRIMARY KEY, payload BLOB) ENGINE=InnoDB;
                 INSERT INTO big (payload) SELECT RANDOM_BYTES(1024) FROM seq_1_to_{rows};"
            ),
            None,
        )
        .unwrap();
}

/// `CHECKSUM TABLE` and row count of each table, as text.
pub async fn checksums(server: &MariaDb, tables: &[&str]) -> Vec<String> {
    let mut conn = server.connect().await.unwrap();
    let mut out = Vec::new();
    for table in tables {
        let row: Option<(String, Option<u64>)> = conn
            .query_first(format!("CHECKSUM TABLE {table}"))
            .await
            .unwrap();
        out.push(format!("{table}: {row:?}"));
    }
    conn.disconnect().await.unwrap();
    out
}

/// The user databases of a server.
pub async fn user_databases(server: &MariaDb) -> Vec<String> {
    let mut conn = server.connect().await.unwrap();
    let dbs: Vec<String> = conn
        .query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN \
             ('mysql','information_schema','performance_schema','sys') ORDER BY 1",
        )
        .await
        .unwrap();
    conn.disconnect().await.unwrap();
    dbs
}

/// Polls `ready` every 10 ms for up to `timeout`; false when it never was.
pub async fn wait_for(timeout: Duration, mut ready: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
