//! The restore Job the operator builds, run for real: the sample database
//! (`tests/fixtures/sample`) is backed up
//! from a harness MariaDB into a harness Garage by the agent; a new instance
//! with `restoreFrom.backupName` is reconciled against the in-memory API
//! until it creates its Job; that Job's arguments and environment are
//! resolved the way the kubelet would (secretKeyRef → the Secrets' values,
//! the downward API → the Job's name; the Service host → a second harness
//! MariaDB) and the agent runs them in-process, reporting into the same
//! in-memory API. Every table's checksum must match, `status.restore` must
//! show the run, the instance must end Ready and Restored, and the
//! instance's own Secrets must still log in. The restore logs in as root with
//! the instance's root Secret (`operator/src/accounts.rs`); the backup user's
//! `<name>-backup` Secret is not in the cluster and not needed.
#![allow(clippy::unwrap_used)]

// The operator tests' fixtures: one place for both crates' tests.
#[path = "../../operator/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use keeper_agent::AgentContext;
use keeper_crds::{MySQLBackup, MySQLInstance, MySQLInstanceSpec};
use keeper_operator::context::{Context, OperatorConfig};
use keeper_operator::metrics::Metrics;
use keeper_operator::reconcile;
use keeper_tests::kube::FakeCluster;
use keeper_tests::{Garage, MariaDb};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use mysql_async::prelude::Queryable;
use serde_json::json;

use common::{NoAccounts, secret_value};

fn secret(name: &str, data: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Secret {
    common::secret(NS, name, data)
}

async fn resolve(
    client: &Client,
    job: &Job,
    target: &MariaDb,
) -> (Vec<String>, HashMap<String, String>) {
    let job_name = job.metadata.name.clone().unwrap();
    common::resolve(
        client,
        NS,
        &job_name,
        job.spec.as_ref().unwrap(),
        // The restore reaches the server through the headless Service: the
        // client Service routes nowhere until the restore succeeded.
        &format!("{NAME}-0.{NAME}-headless.{NS}.svc"),
        target,
    )
    .await
}

const NS: &str = "shop";
const DB: &str = keeper_tests::sample::DATABASE;
const NAME: &str = "orders-copy";
const BACKUP: &str = "orders-20250101-030000";
const BACKUP_PASSWORD: &str = "backup-pw-5f1e2d3c";
const APP_PASSWORD: &str = "app-pw-9a8b7c6d";

/// Every base table of `db` with its `CHECKSUM TABLE`, and the row count.
async fn checksums(server: &MariaDb, db: &str) -> BTreeMap<String, (Option<u64>, u64)> {
    let mut conn = server.connect().await.unwrap();
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for table in tables {
        let sum: (String, Option<u64>) = conn
            .query_first(format!("CHECKSUM TABLE `{db}`.`{table}`"))
            .await
            .unwrap()
            .unwrap();
        let rows: u64 = conn
            .query_first(format!("SELECT COUNT(*) FROM `{db}`.`{table}`"))
            .await
            .unwrap()
            .unwrap();
        out.insert(table, (sum.1, rows));
    }
    conn.disconnect().await.unwrap();
    out
}

/// The accounts the operator keeps on a server (DESIGN: it owns them): the
/// application user and the read-only dump account with its MariaDB grants
/// (`operator/src/accounts.rs`). The harness server's root is the root, and
/// the restore logs in as it.
fn operator_accounts(server: &MariaDb) {
    server
        .run_sql(
            &format!(
                "CREATE USER 'keeper_backup'@'%' IDENTIFIED BY '{BACKUP_PASSWORD}';
                 GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS,
                   BINLOG MONITOR ON *.* TO 'keeper_backup'@'%';
                 CREATE USER 'app'@'%' IDENTIFIED BY '{APP_PASSWORD}';
                 GRANT ALL PRIVILEGES ON `bookshop`.* TO 'app'@'%';"
            ),
            None,
        )
        .unwrap();
}

async fn logs_in(server: &MariaDb, user: &str, password: &str) -> u64 {
    let mut conn = mysql_async::Conn::new(server.opts_for(user, password, Some(DB)))
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in after the restore: {e}"));
    let books: u64 = conn
        .query_first("SELECT COUNT(*) FROM books")
        .await
        .unwrap()
        .unwrap();
    conn.disconnect().await.unwrap();
    books
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_restore_job_restores_the_sample_and_reports_it() {
    let garage = Garage::start().unwrap();
    let source = MariaDb::start().unwrap();
    let target = MariaDb::start().unwrap();
    keeper_tests::sample::load(&source).unwrap();
    operator_accounts(&target);

    // 1. The backup, taken by the agent outside Kubernetes.
    let to = format!("s3://{}/prod/orders", garage.bucket());
    let mut backup_env: HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    backup_env.insert("MYSQL_PWD".into(), source.root_password().to_owned());
    let port = source.port().to_string();
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
            DB,
            "--to",
            &to,
            "--name",
            BACKUP,
            "--s3-force-path-style",
        ],
        AgentContext {
            env: backup_env,
            kube: None,
        },
    )
    .await
    .unwrap();

    // 2. The cluster: the backup's object as the agent records it, the S3
    //    Secret, the new instance and the Secrets the operator keeps for it.
    let mut backup = MySQLBackup::for_instance(BACKUP, NS, "orders", None);
    backup.status = Some(
        serde_json::from_value(json!({
            "phase": "Succeeded",
            "destination": {"s3": {"bucket": garage.bucket(), "prefix": "prod/orders",
                "endpoint": garage.endpoint(), "region": garage.region(), "forcePathStyle": true,
                "credentialsSecretRef": {"name": "orders-s3"}}},
            "location": format!("{to}/{BACKUP}"),
        }))
        .unwrap(),
    );
    let spec: MySQLInstanceSpec = serde_json::from_value(json!({
        "flavor": "mariadb", "version": "10.11", "user": "app",
        "restoreFrom": {"backupName": BACKUP}
    }))
    .unwrap();
    let mut instance = MySQLInstance::new(NAME, spec);
    instance.metadata.namespace = Some(NS.into());
    instance.metadata.generation = Some(1);
    instance.metadata.uid = Some("uid-orders-copy".into());
    let fake = FakeCluster::builder()
        .with_object(instance)
        .with_object(backup)
        .with_object(secret(
            "orders-s3",
            &[
                ("AWS_ACCESS_KEY_ID", garage.access_key_id()),
                ("AWS_SECRET_ACCESS_KEY", garage.secret_access_key()),
            ],
        ))
        .with_object(secret(
            &format!("{NAME}-credentials"),
            &[
                ("root-password", target.root_password()),
                ("username", "app"),
                ("password", APP_PASSWORD),
            ],
        ))
        .build()
        .await;
    // The test's own client (the kubelet's part, reading results).
    let client = fake.admin();
    let ctx = Arc::new(
        Context::new(
            fake.operator(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(Arc::new(NoAccounts)),
    );
    let instances = Api::<MySQLInstance>::namespaced(client.clone(), NS);
    let reconcile_once = || async {
        let instance = instances.get(NAME).await.unwrap();
        reconcile(Arc::new(instance), ctx.clone()).await.unwrap();
    };

    // 3. The operator brings the server up, then creates the restore Job.
    reconcile_once().await;
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    reconcile_once().await;
    let jobs = Api::<Job>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    let job_name = job.metadata.name.clone().unwrap();
    let status = instances.get(NAME).await.unwrap().status.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Restoring"));

    // 4. The Job's pod: the agent in-process with the Job's args and env.
    let (args, env) = resolve(&client, job, &target).await;
    assert!(
        args.iter().all(|a| !a.contains(target.root_password())
            && !a.contains(BACKUP_PASSWORD)
            && !a.contains(garage.secret_access_key())),
        "no secret in the arguments: {args:?}"
    );
    let user = args
        .iter()
        .position(|a| a == "--user")
        .map(|i| &args[i + 1]);
    assert_eq!(
        user.map(String::as_str),
        Some("root"),
        "a restore runs as root"
    );
    assert_eq!(
        env.get("MYSQL_PWD").map(String::as_str),
        Some(target.root_password()),
        "MYSQL_PWD from the instance's root Secret"
    );
    keeper_agent::run(
        args,
        AgentContext {
            env,
            kube: Some(fake.agent(NS, NAME)),
        },
    )
    .await
    .unwrap();

    // Every table came back.
    let before = checksums(&source, DB).await;
    assert!(before.len() >= 14, "{before:?}");
    assert_eq!(checksums(&target, DB).await, before);

    // The agent reported the run into status.restore.
    let restore = instances
        .get(NAME)
        .await
        .unwrap()
        .status
        .unwrap()
        .restore
        .unwrap();
    assert_eq!(restore.phase.as_str(), "Succeeded");
    assert_eq!(restore.source, BACKUP);
    assert_eq!(restore.job_name.as_deref(), Some(job_name.as_str()));
    assert!(restore.members_total.unwrap() > 0);
    assert_eq!(restore.members_done, restore.members_total);
    assert!(restore.bytes_done.unwrap() > 0);
    assert!(restore.completion_time.is_some());

    // 5. The Job completes: the instance is Ready and Restored.
    Api::<Job>::namespaced(client.clone(), NS)
        .patch(
            &job_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True"}]}})),
        )
        .await
        .unwrap();
    reconcile_once().await;
    let status = instances.get(NAME).await.unwrap().status.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    let restored = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Restored")
        .unwrap();
    assert_eq!(restored.status, "True");
    assert!(
        status
            .restored_from
            .as_deref()
            .unwrap()
            .starts_with(&format!("{BACKUP} [")),
        "{:?}",
        status.restored_from
    );
    assert_eq!(
        status.restore.unwrap().members_done,
        restore.members_done,
        "the agent's progress is untouched"
    );

    // 6. The instance's own Secrets still log in: a restore has no accounts.
    let root = secret_value(&client, NS, &format!("{NAME}-credentials"), "root-password").await;
    let app = secret_value(&client, NS, &format!("{NAME}-credentials"), "password").await;
    let books = before["books"].1;
    assert_eq!(logs_in(&target, "root", &root).await, books);
    assert_eq!(logs_in(&target, "app", &app).await, books);
    assert_eq!(
        logs_in(&target, "keeper_backup", BACKUP_PASSWORD).await,
        books
    );
}

/// One life of the instance: created with `spec`, reconciled until its
/// restore Job exists, that Job run by the agent in-process against
/// `target`, then completed and reconciled once more. Returns the agent's
/// result, the Job's name and the final status.
async fn one_life(
    fake: &FakeCluster,
    ctx: &Arc<Context>,
    spec: &serde_json::Value,
    uid: &str,
    target: &MariaDb,
) -> (
    Result<(), keeper_agent::AgentError>,
    String,
    keeper_crds::MySQLInstanceStatus,
) {
    let client = &fake.admin();
    let mut instance = MySQLInstance::new(NAME, serde_json::from_value(spec.clone()).unwrap());
    instance.metadata.namespace = Some(NS.into());
    instance.metadata.generation = Some(1);
    instance.metadata.uid = Some(uid.into());
    let instances = Api::<MySQLInstance>::namespaced(client.clone(), NS);
    instances
        .create(&kube::api::PostParams::default(), &instance)
        .await
        .unwrap();
    let reconcile_once = || async {
        let instance = instances.get(NAME).await.unwrap();
        reconcile(Arc::new(instance), ctx.clone()).await.unwrap();
    };
    reconcile_once().await;
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    reconcile_once().await;
    let jobs = Api::<Job>::namespaced(client.clone(), NS);
    let job = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(job.len(), 1, "one restore Job per life");
    let job = &job[0];
    let job_name = job.metadata.name.clone().unwrap();
    let (args, env) = resolve(client, job, target).await;
    let result = keeper_agent::run(
        args,
        AgentContext {
            env,
            kube: Some(fake.agent(NS, NAME)),
        },
    )
    .await;
    jobs.patch(
        &job_name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}]}})),
    )
    .await
    .unwrap();
    reconcile_once().await;
    let status = instances.get(NAME).await.unwrap().status.unwrap();
    (result, job_name, status)
}

/// What the garbage collector and the StatefulSet controller do when the
/// instance is deleted: its owned Job and StatefulSet go; the claim and the
/// Secrets (and the server's data) stay.
async fn delete_instance(client: &Client) {
    Api::<MySQLInstance>::namespaced(client.clone(), NS)
        .delete(NAME, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    // The in-memory API may already have collected the owned objects itself:
    // what matters is that they are gone afterwards.
    let gone = |result: Result<_, kube::Error>| match result {
        Ok(()) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => panic!("deleting an owned object: {error}"),
    };
    let jobs = Api::<Job>::namespaced(client.clone(), NS);
    for job in jobs.list(&ListParams::default()).await.unwrap().items {
        gone(
            jobs.delete(
                &job.metadata.name.unwrap(),
                &kube::api::DeleteParams::default(),
            )
            .await
            .map(|_| ()),
        );
    }
    gone(
        Api::<StatefulSet>::namespaced(client.clone(), NS)
            .delete(NAME, &kube::api::DeleteParams::default())
            .await
            .map(|_| ()),
    );
    assert!(
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_created_instance_does_not_restore_its_data_again() {
    let garage = Garage::start().unwrap();
    let source = MariaDb::start().unwrap();
    let target = MariaDb::start().unwrap();
    source
        .run_sql(
            "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(40));
             INSERT INTO shop.orders VALUES (1, 'one'), (2, 'two');",
            None,
        )
        .unwrap();
    let to = format!("s3://{}/prod/orders", garage.bucket());
    let mut backup_env: HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    backup_env.insert("MYSQL_PWD".into(), source.root_password().to_owned());
    let port = source.port().to_string();
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
            &to,
            "--name",
            BACKUP,
            "--s3-force-path-style",
        ],
        AgentContext {
            env: backup_env,
            kube: None,
        },
    )
    .await
    .unwrap();

    let mut backup = MySQLBackup::for_instance(BACKUP, NS, "orders", None);
    backup.status = Some(
        serde_json::from_value(json!({
            "phase": "Succeeded",
            "destination": {"s3": {"bucket": garage.bucket(), "prefix": "prod/orders",
                "endpoint": garage.endpoint(), "region": garage.region(), "forcePathStyle": true,
                "credentialsSecretRef": {"name": "orders-s3"}}},
            "location": format!("{to}/{BACKUP}"),
        }))
        .unwrap(),
    );
    let fake = FakeCluster::builder()
        .with_object(backup)
        .with_object(secret(
            "orders-s3",
            &[
                ("AWS_ACCESS_KEY_ID", garage.access_key_id()),
                ("AWS_SECRET_ACCESS_KEY", garage.secret_access_key()),
            ],
        ))
        .with_object(secret(
            &format!("{NAME}-credentials"),
            &[("root-password", target.root_password())],
        ))
        .build()
        .await;
    let client = fake.admin();
    let ctx = Arc::new(
        Context::new(
            fake.operator(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(Arc::new(NoAccounts)),
    );
    // GitOps keeps applying the same manifest, overwrite included.
    let spec = json!({"flavor": "mariadb", "version": "10.11",
        "restoreFrom": {"backupName": BACKUP, "overwrite": true}});

    // First life: the restore loads the backup.
    let (result, first_job, status) = one_life(&fake, &ctx, &spec, "uid-1", &target).await;
    result.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    let count = |server: &MariaDb| {
        let opts = server.opts();
        async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let n: u64 = conn
                .query_first("SELECT COUNT(*) FROM shop.orders")
                .await
                .unwrap()
                .unwrap();
            conn.disconnect().await.unwrap();
            n
        }
    };
    assert_eq!(count(&target).await, 2);

    // The application writes; then the instance is deleted and re-created
    // (same claim, same Secrets, same data; a new object with no status).
    target
        .run_sql(
            "INSERT INTO shop.orders VALUES (3, 'written after the restore');",
            None,
        )
        .unwrap();
    delete_instance(&client).await;
    let (result, second_job, status) = one_life(&fake, &ctx, &spec, "uid-2", &target).await;

    // The second Job ran and succeeded without dropping or loading anything.
    result.unwrap();
    assert_eq!(second_job, first_job, "the same request, by name too");
    assert_eq!(
        count(&target).await,
        3,
        "the row written after the restore survives"
    );
    let restore = status.restore.clone().unwrap();
    assert_eq!(restore.phase.as_str(), "Succeeded");
    let note = restore.message.unwrap_or_default();
    assert!(note.starts_with("already restored"), "{note}");
    assert!(restore.members_done.is_none(), "nothing was replayed");
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    let restored = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Restored")
        .unwrap();
    assert_eq!(restored.status, "True");
    assert!(
        restored.message.contains("already restored"),
        "{}",
        restored.message
    );
    assert!(
        status
            .restored_from
            .as_deref()
            .unwrap()
            .starts_with(&format!("{BACKUP} [")),
        "{:?}",
        status.restored_from
    );
}
