//! Retention across the parts: two instances backing up into ONE bucket with
//! no prefix (real MariaDB, real Garage), each agent run in-process as its
//! Job runs it, reporting into the in-memory Kubernetes API. One instance's
//! retention never touches the other's backups or `MySQLBackup` objects, and
//! pinned backups (`spec.keep`) survive retention in the cluster and by hand.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{Duration, Utc};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use keeper_agent::AgentContext;
use keeper_agent::manifest::{
    Consistency, FORMAT_VERSION, FileInfo, Flavor, Manifest, Pin, PinSource, ServerInfo, Snapshot,
};
use keeper_agent::report::{ENV_BACKUP, ENV_DESTINATION, ENV_INSTANCE, ENV_NAMESPACE};
use keeper_agent::storage::{Location, S3Settings, Store};
use keeper_crds::{BackupPhase, INSTANCE_LABEL, MySQLBackup};
use keeper_tests::kube::FakeCluster;
use keeper_tests::{Garage, MariaDb};

const NS: &str = "shop";

fn instance(name: &str) -> Value {
    json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLInstance",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"storage": {"size": "1Gi"}},
        "status": {"phase": "Ready"},
    })
}

fn backup_object(name: &str, instance: &str, keep: bool, phase: Option<&str>) -> Value {
    let mut b = json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": name, "namespace": NS, "labels": {INSTANCE_LABEL: instance}},
        "spec": {"instanceRef": {"name": instance}, "keep": keep},
    });
    if let Some(phase) = phase {
        b["status"] = json!({"phase": phase});
    }
    b
}

/// The in-memory API, checking every call against the shipped RBAC: each
/// agent run talks to it as that instance's own identity.
async fn fake_api(objects: Vec<Value>) -> FakeCluster {
    FakeCluster::builder()
        .with_runtime_objects(objects)
        .build()
        .await
}

/// The environment of `instance`'s agent Job.
fn job_env(
    base: &HashMap<String, String>,
    instance: &str,
    destination: &Value,
) -> HashMap<String, String> {
    let mut env = base.clone();
    env.insert(ENV_NAMESPACE.into(), NS.into());
    env.insert(ENV_INSTANCE.into(), instance.into());
    env.insert(ENV_DESTINATION.into(), destination.to_string());
    env
}

async fn agent(args: &[&str], env: &HashMap<String, String>, kube: Option<&kube::Client>) {
    let mut argv = vec!["keeper-agent"];
    argv.extend_from_slice(args);
    keeper_agent::run(
        argv,
        AgentContext {
            env: env.clone(),
            kube: kube.cloned(),
        },
    )
    .await
    .unwrap();
}

async fn object_names(client: &kube::Client) -> Vec<String> {
    let api: Api<MySQLBackup> = Api::namespaced(client.clone(), NS);
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_bucket_keep_to_their_own_backups() {
    let garage = Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    server
        .run_sql(
            "CREATE DATABASE app; CREATE TABLE app.t (x INT); INSERT INTO app.t VALUES (1),(2);",
            None,
        )
        .unwrap();
    let mut base: HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    base.insert("MYSQL_PWD".into(), server.root_password().into());
    // Both instances write to the bucket's root: no prefix, as in the old
    // default layout.
    let url = format!("s3://{}", garage.bucket());
    let destination = json!({"s3": {"bucket": garage.bucket(), "forcePathStyle": true}});
    let orders = job_env(&base, "orders", &destination);
    let billing = job_env(&base, "billing", &destination);
    let fake = fake_api(vec![
        instance("orders"),
        instance("billing"),
        // An on-demand backup of orders, pinned.
        backup_object("orders-2", "orders", true, None),
    ])
    .await;
    let port = server.port().to_string();
    let backup = |name: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "backup",
            "--host",
            server.host(),
            "--port",
            &port,
            "--user",
            server.root_user(),
            "--to",
            &url,
            "--name",
            name,
            "--s3-force-path-style",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, env: HashMap<String, String>| {
        let client = fake.agent(NS, &env[ENV_INSTANCE]);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            agent(&args, &env, Some(&client)).await;
        }
    };

    // B backs up twice, with a rule that keeps both.
    run(backup("billing-1", &[]), billing.clone()).await;
    run(backup("billing-2", &["--keep-last", "2"]), billing.clone()).await;
    // A: a scheduled run, its pinned on-demand backup, then a scheduled run
    // with keepLast 1.
    run(backup("orders-1", &[]), orders.clone()).await;
    let mut on_demand = orders.clone();
    on_demand.insert(ENV_BACKUP.into(), "orders-2".into());
    run(backup("orders-2", &[]), on_demand).await;
    let store = Store::open(
        &Location::parse(&url).unwrap(),
        &S3Settings::from_ctx(
            &AgentContext {
                env: base.clone(),
                kube: None,
            },
            &keeper_agent::cli::S3Args {
                s3_force_path_style: true,
                s3_ca_bundle: None,
            },
        ),
    )
    .await
    .unwrap();
    // The on-demand run pinned its backup beside the artifact.
    let pin: Pin = serde_json::from_slice(&store.get("orders-2/keep.json").await.unwrap()).unwrap();
    assert_eq!(pin.source, PinSource::Object);
    run(backup("orders-3", &["--keep-last", "1"]), orders.clone()).await;

    // A's retention removed only A's unpinned old backup, artifact and object.
    assert_eq!(
        store.folders().await.unwrap(),
        ["billing-1", "billing-2", "orders-2", "orders-3"]
    );
    assert_eq!(
        object_names(&fake.admin()).await,
        ["billing-1", "billing-2", "orders-2", "orders-3"]
    );
    // Every manifest names its owner.
    for (folder, owner) in [("billing-1", "shop/billing"), ("orders-3", "shop/orders")] {
        let manifest =
            Manifest::from_json(&store.get(&format!("{folder}/manifest.json")).await.unwrap())
                .unwrap();
        assert_eq!(manifest.owner.unwrap().to_string(), owner);
    }
    // B's backups still restore-able: their objects say Succeeded and point
    // at folders that exist.
    let api: Api<MySQLBackup> = Api::namespaced(fake.admin(), NS);
    for name in ["billing-1", "billing-2"] {
        let b = api.get(name).await.unwrap();
        assert_eq!(b.phase(), Some(BackupPhase::Succeeded));
        assert!(
            store
                .size(&format!("{name}/manifest.json"))
                .await
                .unwrap()
                .is_some()
        );
    }

    // B's own retention in the cluster takes only B's.
    agent(
        &[
            "prune",
            "--from",
            url.as_str(),
            "--keep-last",
            "1",
            "--s3-force-path-style",
        ],
        &billing,
        Some(&fake.agent(NS, "billing")),
    )
    .await;
    assert_eq!(
        store.folders().await.unwrap(),
        ["billing-2", "orders-2", "orders-3"]
    );
    assert_eq!(
        object_names(&fake.admin()).await,
        ["billing-2", "orders-2", "orders-3"]
    );

    // By hand, outside Kubernetes, with no owner: refused, there are two.
    let err = keeper_agent::run(
        [
            "keeper-agent",
            "prune",
            "--from",
            url.as_str(),
            "--keep-last",
            "1",
            "--s3-force-path-style",
        ],
        AgentContext {
            env: base.clone(),
            kube: None,
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("several owners"), "{err}");
    assert_eq!(store.folders().await.unwrap().len(), 3);
}

fn owned_manifest(name: &str, days_old: i64) -> Bytes {
    let started = Utc::now() - Duration::days(days_old);
    let m = Manifest {
        format_version: FORMAT_VERSION,
        agent_version: "test".into(),
        name: name.into(),
        owner: Some("shop/orders".parse().unwrap()),
        server: ServerInfo {
            flavor: Flavor::Mariadb,
            version: "11.4".into(),
        },
        started_at: started,
        finished_at: started + Duration::minutes(1),
        snapshot: Snapshot {
            consistency: Consistency::GlobalLock,
            lock_held_ms: Some(1),
            gtid_executed: None,
            binlog: None,
            note: None,
        },
        max_allowed_packet: 1 << 24,
        largest_statement: 0,
        databases: vec![],
        members: vec![],
        compression: None,
        file: FileInfo {
            name: "dump.sql.gz".into(),
            size: 0,
            sha256: "0".repeat(64),
        },
        differences: vec![],
    };
    Bytes::from(m.to_json().unwrap())
}

#[tokio::test]
async fn pins_of_objects_reach_storage_and_hold_in_and_out_of_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&Location::parse(&url).unwrap(), &S3Settings::default())
        .await
        .unwrap();
    for (name, days) in [("orders-a", 40), ("orders-b", 20), ("orders-c", 1)] {
        store
            .put(&format!("{name}/manifest.json"), owned_manifest(name, days))
            .await
            .unwrap();
    }
    let fake = fake_api(vec![
        instance("orders"),
        backup_object("orders-a", "orders", true, Some("Succeeded")),
        backup_object("orders-b", "orders", false, Some("Succeeded")),
        backup_object("orders-c", "orders", false, Some("Succeeded")),
    ])
    .await;
    let destination = json!({"pvc": {"claimName": "backups"}});
    let env = job_env(&HashMap::new(), "orders", &destination);
    let rules = ["--keep-last", "1", "--max-age", "1d"];
    let prune_args: Vec<&str> = ["prune", "--from", url.as_str()]
        .into_iter()
        .chain(rules)
        .collect();

    // In the cluster: the object's pin is written beside the artifact, and
    // the pinned backup survives keepLast and maxAge.
    agent(&prune_args, &env, Some(&fake.agent(NS, "orders"))).await;
    assert_eq!(store.folders().await.unwrap(), ["orders-a", "orders-c"]);
    assert_eq!(object_names(&fake.admin()).await, ["orders-a", "orders-c"]);
    let pin: Pin = serde_json::from_slice(&store.get("orders-a/keep.json").await.unwrap()).unwrap();
    assert_eq!(pin.source, PinSource::Object);

    // By hand, outside Kubernetes: the pin beside the artifact holds.
    let mut by_hand = prune_args.clone();
    by_hand.extend(["--instance", "shop/orders"]);
    agent(&by_hand, &HashMap::new(), None).await;
    assert_eq!(store.folders().await.unwrap(), ["orders-a", "orders-c"]);

    // keep set back to false: the next retention run lifts the pin, and the
    // backup expires like any other.
    let api: Api<MySQLBackup> = Api::namespaced(fake.admin(), NS);
    api.patch(
        "orders-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"keep": false}})),
    )
    .await
    .unwrap();
    agent(&prune_args, &env, Some(&fake.agent(NS, "orders"))).await;
    assert_eq!(store.folders().await.unwrap(), ["orders-c"]);
    assert_eq!(object_names(&fake.admin()).await, ["orders-c"]);

    // A pin set by hand is not lifted by the cluster: only unpin lifts it.
    for (name, days) in [("orders-d", 30), ("orders-e", 0)] {
        store
            .put(&format!("{name}/manifest.json"), owned_manifest(name, days))
            .await
            .unwrap();
    }
    agent(
        &["pin", "--from", format!("{url}/orders-d").as_str()],
        &HashMap::new(),
        None,
    )
    .await;
    let fake = fake_api(vec![
        instance("orders"),
        backup_object("orders-c", "orders", false, Some("Succeeded")),
        backup_object("orders-d", "orders", false, Some("Succeeded")),
        backup_object("orders-e", "orders", false, Some("Succeeded")),
    ])
    .await;
    agent(&prune_args, &env, Some(&fake.agent(NS, "orders"))).await;
    assert_eq!(store.folders().await.unwrap(), ["orders-d", "orders-e"]);
    assert_eq!(object_names(&fake.admin()).await, ["orders-d", "orders-e"]);
}
