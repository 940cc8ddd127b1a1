//! Backups against the in-memory API: the schedule's CronJob, status
//! (nextBackupTime, BackupScheduled, BackupsHealthy), on-demand MySQLBackup →
//! one Job, a failed Job → Failed with the agent's line, and backupOnDelete.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use http::Method;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::Role;
use keeper_crds::condition::find_condition;
use keeper_crds::{MySQLBackup, MySQLInstance};
use keeper_operator::context::{Context, OperatorConfig};
use keeper_operator::metrics::Metrics;
use keeper_tests::kube::FakeCluster;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde_json::json;

mod common;

use common::NoAccounts;

#[path = "common/refusals.rs"]
mod refusals;

const NS: &str = "shop";

struct Cluster {
    fake: FakeCluster,
    /// The test's own client (the scene, the Job controller, a user's edits).
    client: Client,
    ctx: Arc<Context>,
}

async fn cluster(objects: Vec<serde_json::Value>, timeout: Duration) -> Cluster {
    let fake = FakeCluster::builder()
        .with_runtime_objects(objects)
        .build()
        .await;
    let ctx = Context::new(
        fake.operator(),
        OperatorConfig::default(),
        Arc::new(Metrics::default()),
        None,
    )
    .with_accounts(Arc::new(NoAccounts))
    .with_final_backup_timeout(timeout);
    Cluster {
        client: fake.admin(),
        fake,
        ctx: Arc::new(ctx),
    }
}

impl Cluster {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn instance(&self) -> MySQLInstance {
        self.api::<MySQLInstance>().get("orders").await.unwrap()
    }

    async fn reconcile(&self) {
        let instance = self.instance().await;
        keeper_operator::reconcile(Arc::new(instance), self.ctx.clone())
            .await
            .expect("reconciles");
    }

    async fn reconcile_backup(&self, name: &str) -> Result<(), keeper_operator::Error> {
        let backup = self.api::<MySQLBackup>().get(name).await.unwrap();
        keeper_operator::backup_controller::reconcile(Arc::new(backup), self.ctx.clone())
            .await
            .map(|_| ())
    }

    async fn set_spec(&self, spec: serde_json::Value) {
        self.api::<MySQLInstance>()
            .patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    fn take_writes(&self) -> Vec<String> {
        self.fake.take_writes()
    }

    async fn event_reasons(&self) -> Vec<String> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    async fn jobs(&self) -> Vec<Job> {
        self.api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }
}

fn s3() -> serde_json::Value {
    json!({"s3": {"bucket": "backups", "credentialsSecretRef": {"name": "s3-creds"}}})
}

fn instance(spec: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": keeper_crds::API_GROUP_VERSION,
        "kind": "MySQLInstance",
        "metadata": {"name": "orders", "namespace": NS, "uid": "inst-uid", "generation": 1},
        "spec": spec,
    })
}

#[tokio::test]
async fn schedule_add_change_remove() {
    let cluster = cluster(vec![instance(json!({}))], Duration::from_secs(3600)).await;
    cluster.reconcile().await;
    assert!(
        cluster
            .api::<CronJob>()
            .get_opt("orders-backup")
            .await
            .unwrap()
            .is_none()
    );
    let role = cluster
        .api::<Role>()
        .get("orders-backup-agent")
        .await
        .unwrap();
    assert_eq!(role.rules.unwrap().len(), 4);

    cluster
        .set_spec(
            json!({"backup": {"schedule": "0 3 * * 7", "timeZone": "Europe/Berlin",
            "destination": s3(), "retention": {"keepLast": 5}}}),
        )
        .await;
    cluster.reconcile().await;
    let cron = cluster.api::<CronJob>().get("orders-backup").await.unwrap();
    let spec = cron.spec.clone().unwrap();
    assert_eq!(spec.schedule, "0 3 * * 0", "7 is written as 0");
    assert_eq!(spec.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let owner = &cron.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("MySQLInstance", "orders")
    );
    let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert!(
        args.windows(2).any(|w| w == ["--keep-last", "5"]),
        "{args:?}"
    );
    assert!(!args.contains(&"--name".to_owned()));
    let env = container.env.clone().unwrap();
    assert!(env.iter().all(|e| e.name != "KEEPER_BACKUP"));

    let status = cluster.instance().await.status.unwrap();
    let next = status.next_backup_time.expect("nextBackupTime");
    assert!(next > Utc::now());
    let scheduled = find_condition(&status.conditions, "BackupScheduled").unwrap();
    assert_eq!(
        (scheduled.status.as_str(), scheduled.reason.as_str()),
        ("True", "Scheduled")
    );
    let healthy = find_condition(&status.conditions, "BackupsHealthy").unwrap();
    assert_eq!(healthy.status, "True");

    cluster.take_writes();
    cluster.reconcile().await;
    assert_eq!(
        cluster.take_writes(),
        Vec::<String>::new(),
        "idle reconcile"
    );

    cluster
        .set_spec(json!({"backup": {"schedule": "@hourly", "destination": s3(), "suspend": true}}))
        .await;
    cluster.reconcile().await;
    let spec = cluster
        .api::<CronJob>()
        .get("orders-backup")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        (spec.schedule.as_str(), spec.suspend),
        ("@hourly", Some(true))
    );
    let status = cluster.instance().await.status.unwrap();
    assert_eq!(status.next_backup_time, None);
    let scheduled = find_condition(&status.conditions, "BackupScheduled").unwrap();
    assert_eq!(
        (scheduled.status.as_str(), scheduled.reason.as_str()),
        ("False", "Suspended")
    );

    cluster
        .set_spec(json!({"backup": {"schedule": null, "destination": s3()}}))
        .await;
    cluster.reconcile().await;
    assert!(
        cluster
            .api::<CronJob>()
            .get_opt("orders-backup")
            .await
            .unwrap()
            .is_none()
    );
    let status = cluster.instance().await.status.unwrap();
    assert_eq!(status.next_backup_time, None, "no schedule, no next run");
    let scheduled = find_condition(&status.conditions, "BackupScheduled").unwrap();
    assert_eq!(scheduled.reason, "NoSchedule");
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"Deleted".to_owned())
    );
}

#[tokio::test]
async fn an_old_last_backup_makes_backups_unhealthy_with_an_event() {
    let cluster = cluster(
        vec![instance(
            json!({"backup": {"schedule": "@daily", "destination": s3()}}),
        )],
        Duration::from_secs(3600),
    )
    .await;
    let old = (Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    cluster
        .api::<MySQLInstance>()
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastBackup": {"name": "orders-old", "time": old,
                "location": "s3://backups/orders-old", "compressedBytes": 1, "durationSeconds": 1}}})),
        )
        .await
        .unwrap();
    cluster.reconcile().await;
    let status = cluster.instance().await.status.unwrap();
    let healthy = find_condition(&status.conditions, "BackupsHealthy").unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("False", "BackupsOverdue")
    );
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"BackupsOverdue".to_owned())
    );
    assert_eq!(status.last_backup.unwrap().name, "orders-old", "untouched");
}

fn backup(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": keeper_crds::API_GROUP_VERSION,
        "kind": "MySQLBackup",
        "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid"),
            "labels": {"mysql.keeper.dev/instance": "orders"}},
        "spec": {"instanceRef": {"name": "orders"}},
    })
}

/// `object` (an instance) as the operator reports it once its server is ready.
fn ready(mut object: serde_json::Value) -> serde_json::Value {
    object["status"] = json!({"phase": "Ready", "conditions": [{"type": "Ready",
        "status": "True", "reason": "Ready", "message": "the server accepts connections",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
    object
}

/// A context like the cluster's, on `client`.
fn context_on(client: Client) -> Context {
    Context::new(
        client,
        OperatorConfig::default(),
        Arc::new(Metrics::default()),
        None,
    )
    .with_accounts(Arc::new(NoAccounts))
}

async fn reconcile_backup_with(
    cluster: &Cluster,
    ctx: Context,
    name: &str,
) -> Result<(), keeper_operator::Error> {
    let backup = cluster.api::<MySQLBackup>().get(name).await.unwrap();
    keeper_operator::backup_controller::reconcile(Arc::new(backup), Arc::new(ctx))
        .await
        .map(|_| ())
}

async fn reconcile_with(cluster: &Cluster, ctx: Context) {
    keeper_operator::reconcile(Arc::new(cluster.instance().await), Arc::new(ctx))
        .await
        .expect("reconciles");
}

/// The pod of Job `job`, waiting with `reason` (what the kubelet says).
async fn stuck_pod(cluster: &Cluster, job: &str, reason: &str, message: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{job}-x1"), "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": job}},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "agent", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}]}
    }))
    .unwrap();
    cluster
        .api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// Job `job` failed, and its pod's agent ended with `line` as its
/// termination message.
async fn job_failed_with(cluster: &Cluster, job: &str, line: &str) {
    cluster
        .api::<Job>()
        .patch_status(
            job,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]}})),
        )
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{job}-x1"), "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": job}},
        "status": {"containerStatuses": [{"name": "agent", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": line}}}]}
    }))
    .unwrap();
    cluster
        .api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

async fn backup_status(cluster: &Cluster, name: &str) -> keeper_crds::MySQLBackupStatus {
    cluster
        .api::<MySQLBackup>()
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap()
}

#[tokio::test]
async fn an_on_demand_backup_gets_one_job_and_a_failed_job_fails_it() {
    let cluster = cluster(
        vec![
            ready(instance(
                json!({"backup": {"destination": s3(), "retention": {"maxAge": "30d"}}}),
            )),
            backup("orders-manual"),
        ],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile_backup("orders-manual").await.unwrap();
    cluster.reconcile_backup("orders-manual").await.unwrap();
    let jobs = cluster.jobs().await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some("orders-manual-backup"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("MySQLBackup", "orders-manual")
    );
    let container = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let args = container.args.clone().unwrap();
    assert!(args.windows(2).any(|w| w == ["--name", "orders-manual"]));
    assert!(
        args.windows(2).any(|w| w == ["--max-age", "30d"]),
        "{args:?}"
    );
    let env = container.env.clone().unwrap();
    let backup_env = env.iter().find(|e| e.name == "KEEPER_BACKUP").unwrap();
    assert_eq!(backup_env.value.as_deref(), Some("orders-manual"));
    let status = cluster
        .api::<MySQLBackup>()
        .get("orders-manual")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.job_name.as_deref(), Some("orders-manual-backup"));
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Pending"));

    // The agent was OOM-killed after it reported Running: the Job failed.
    cluster
        .api::<MySQLBackup>()
        .patch_status(
            "orders-manual",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    job_failed_with(
        &cluster,
        "orders-manual-backup",
        "backup of orders.shop.svc failed: table `shop`.`t` vanished",
    )
    .await;
    cluster.reconcile_backup("orders-manual").await.unwrap();
    let status = cluster
        .api::<MySQLBackup>()
        .get("orders-manual")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    assert_eq!(
        status.message.as_deref(),
        Some("backup of orders.shop.svc failed: table `shop`.`t` vanished")
    );
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"BackupFailed".to_owned())
    );
    assert!(
        cluster
            .instance()
            .await
            .status
            .is_none_or(|s| s.last_backup.is_none())
    );
    // Final: nothing more happens.
    cluster.take_writes();
    cluster.reconcile_backup("orders-manual").await.unwrap();
    assert_eq!(cluster.take_writes(), Vec::<String>::new());
    assert_eq!(cluster.jobs().await.len(), 1);
}

#[tokio::test]
async fn a_backup_without_destination_or_instance_fails_clearly() {
    let mut orphan = backup("ghost-manual");
    orphan["spec"]["instanceRef"]["name"] = json!("ghost");
    let cluster = cluster(
        vec![instance(json!({})), backup("orders-manual"), orphan],
        Duration::from_secs(3600),
    )
    .await;
    let error = cluster.reconcile_backup("orders-manual").await.unwrap_err();
    assert_eq!(error.reason(), "NoDestination");
    // Past the wait for the instance (see a_backup_waits_for_its_instance).
    let impatient = context_on(cluster.fake.operator()).with_instance_wait_timeout(Duration::ZERO);
    let error = reconcile_backup_with(&cluster, impatient, "ghost-manual")
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "InstanceNotFound");
    for name in ["orders-manual", "ghost-manual"] {
        let status = cluster
            .api::<MySQLBackup>()
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"), "{name}");
        assert!(status.message.is_some());
    }
    assert!(cluster.jobs().await.is_empty());
}

fn deleting_instance() -> serde_json::Value {
    let mut object = instance(json!({"backupOnDelete": true, "backup": {"destination": s3()}}));
    object["metadata"]["finalizers"] = json!(["mysql.keeper.dev/final-backup"]);
    object["metadata"]["deletionTimestamp"] = json!(Utc::now().to_rfc3339());
    object
}

async fn finalizers(cluster: &Cluster) -> Vec<String> {
    match cluster
        .api::<MySQLInstance>()
        .get_opt("orders")
        .await
        .unwrap()
    {
        Some(instance) => instance.metadata.finalizers.unwrap_or_default(),
        None => Vec::new(),
    }
}

#[tokio::test]
async fn backup_on_delete_waits_for_the_final_backup() {
    let cluster = cluster(vec![deleting_instance()], Duration::from_secs(3600)).await;
    cluster.reconcile().await;
    let status = cluster.instance().await.status.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Deleting"));
    let record = status.final_backup.unwrap();
    assert!(record.name.starts_with("orders-final-"), "{}", record.name);
    let backup = cluster
        .api::<MySQLBackup>()
        .get(&record.name)
        .await
        .unwrap();
    assert!(
        backup.metadata.owner_references.is_none(),
        "outlives the instance"
    );
    assert_eq!(
        finalizers(&cluster).await,
        ["mysql.keeper.dev/final-backup"]
    );

    // Still running: held, and no second final backup.
    cluster.reconcile().await;
    assert_eq!(finalizers(&cluster).await.len(), 1);
    let all = cluster
        .api::<MySQLBackup>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);

    cluster
        .api::<MySQLBackup>()
        .patch_status(
            &record.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .unwrap();
    cluster.reconcile().await;
    assert!(finalizers(&cluster).await.is_empty());
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"FinalBackupSucceeded".to_owned())
    );
}

#[tokio::test]
async fn backup_on_delete_lets_go_after_the_timeout() {
    let cluster = cluster(vec![deleting_instance()], Duration::ZERO).await;
    cluster.reconcile().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster.reconcile().await;
    assert!(finalizers(&cluster).await.is_empty());
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"FinalBackupTimedOut".to_owned())
    );
    if let Some(instance) = cluster
        .api::<MySQLInstance>()
        .get_opt("orders")
        .await
        .unwrap()
    {
        let record = instance.status.unwrap().final_backup.unwrap();
        assert_eq!(record.phase.map(|p| p.as_str()), Some("Failed"));
        assert!(record.message.unwrap().contains("did not finish"));
    }
}

#[tokio::test]
async fn the_finalizer_follows_backup_on_delete() {
    let cluster = cluster(
        vec![instance(
            json!({"backupOnDelete": true, "backup": {"destination": s3()}}),
        )],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile().await;
    assert_eq!(
        finalizers(&cluster).await,
        ["mysql.keeper.dev/final-backup"]
    );
    cluster.set_spec(json!({"backupOnDelete": false})).await;
    cluster.reconcile().await;
    assert!(finalizers(&cluster).await.is_empty());
}

#[tokio::test]
async fn scheduled_backups_wait_while_a_restore_runs() {
    let mut object = instance(json!({"backup": {"schedule": "@hourly", "destination": s3()}}));
    object["status"] = json!({"phase": "Restoring",
        "restore": {"phase": "Running", "source": "orders-1", "jobName": "orders-restore-1"}});
    let cluster = cluster(vec![object], Duration::from_secs(3600)).await;
    let suspended = || async {
        cluster
            .api::<CronJob>()
            .get("orders-backup")
            .await
            .unwrap()
            .spec
            .unwrap()
            .suspend
    };

    cluster.reconcile().await;
    assert_eq!(suspended().await, Some(true), "suspended while restoring");
    let status = cluster.instance().await.status.unwrap();
    let scheduled = find_condition(&status.conditions, "BackupScheduled").unwrap();
    assert_eq!(
        (scheduled.status.as_str(), scheduled.reason.as_str()),
        ("False", "RestoreInProgress")
    );
    assert_eq!(status.next_backup_time, None);

    // The agent reports the restore finished: the spec's value is back.
    cluster
        .api::<MySQLInstance>()
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Ready",
                "restore": {"phase": "Succeeded"}}})),
        )
        .await
        .unwrap();
    cluster.reconcile().await;
    assert_eq!(suspended().await, Some(false), "the spec's suspend again");
    let status = cluster.instance().await.status.unwrap();
    let scheduled = find_condition(&status.conditions, "BackupScheduled").unwrap();
    assert_eq!(scheduled.reason, "Scheduled");
    assert!(status.next_backup_time.is_some());
}

#[tokio::test]
async fn a_backup_waits_for_its_instance_then_runs() {
    // `kubectl apply -k deploy/samples` creates the backup first.
    let cluster = cluster(vec![backup("orders-manual")], Duration::from_secs(3600)).await;
    cluster.reconcile_backup("orders-manual").await.unwrap();
    let status = backup_status(&cluster, "orders-manual").await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Pending"));
    let message = status.message.unwrap();
    assert!(
        message.contains("MySQLInstance orders does not exist"),
        "{message}"
    );
    assert!(cluster.jobs().await.is_empty());
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"InstanceNotFound".to_owned())
    );
    // Looking again changes nothing while the reason stays the same.
    cluster.take_writes();
    cluster.reconcile_backup("orders-manual").await.unwrap();
    assert_eq!(cluster.take_writes(), Vec::<String>::new());

    // The instance exists but its server is not ready yet.
    cluster
        .api::<MySQLInstance>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(instance(json!({"backup": {"destination": s3()}}))).unwrap(),
        )
        .await
        .unwrap();
    cluster.reconcile_backup("orders-manual").await.unwrap();
    let status = backup_status(&cluster, "orders-manual").await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Pending"));
    assert!(
        status.message.unwrap().contains("is not ready"),
        "waiting for readiness"
    );
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"InstanceNotReady".to_owned())
    );
    assert!(cluster.jobs().await.is_empty());

    // Ready: the Job runs.
    let ready_status = ready(json!({}))["status"].clone();
    cluster
        .api::<MySQLInstance>()
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": ready_status })),
        )
        .await
        .unwrap();
    cluster.reconcile_backup("orders-manual").await.unwrap();
    assert_eq!(cluster.jobs().await.len(), 1);
    let status = backup_status(&cluster, "orders-manual").await;
    assert_eq!(status.job_name.as_deref(), Some("orders-manual-backup"));
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Pending"));
}

#[tokio::test]
async fn a_backup_whose_instance_is_never_ready_fails_after_the_wait() {
    let cluster = cluster(
        vec![
            instance(json!({"backup": {"destination": s3()}})),
            backup("orders-manual"),
        ],
        Duration::from_secs(3600),
    )
    .await;
    let impatient = context_on(cluster.fake.operator()).with_instance_wait_timeout(Duration::ZERO);
    let error = reconcile_backup_with(&cluster, impatient, "orders-manual")
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "InstanceNotReady");
    let status = backup_status(&cluster, "orders-manual").await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    assert!(status.message.unwrap().contains("still 0s after"));
    assert!(cluster.jobs().await.is_empty());
}

#[tokio::test]
async fn an_on_demand_backup_whose_pod_cannot_start_fails_after_the_start_deadline() {
    let cluster = cluster(
        vec![
            ready(instance(json!({"backup": {"destination": s3()}}))),
            backup("orders-manual"),
        ],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile_backup("orders-manual").await.unwrap();
    let job = "orders-manual-backup";
    stuck_pod(
        &cluster,
        job,
        "ImagePullBackOff",
        "Back-off pulling image \"ghcr.io/mysql-keeper/keeper-agent:nope\"",
    )
    .await;

    // Within the deadline: still Pending, the reason is a Warning Event, once.
    cluster.reconcile_backup("orders-manual").await.unwrap();
    cluster.reconcile_backup("orders-manual").await.unwrap();
    let status = backup_status(&cluster, "orders-manual").await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Pending"));
    let pulls = cluster
        .event_reasons()
        .await
        .into_iter()
        .filter(|r| r == "ImagePullBackOff")
        .count();
    assert_eq!(pulls, 1);

    // Past it: Failed with the pod's reason, and the Job deleted.
    let impatient = context_on(cluster.fake.operator()).with_agent_start_timeout(Duration::ZERO);
    reconcile_backup_with(&cluster, impatient, "orders-manual")
        .await
        .unwrap();
    let status = backup_status(&cluster, "orders-manual").await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    let message = status.message.unwrap();
    assert!(message.contains("ImagePullBackOff"), "{message}");
    assert!(message.contains("did not start within 0s"), "{message}");
    assert!(cluster.jobs().await.is_empty(), "the stuck Job is deleted");
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"BackupCannotStart".to_owned())
    );
}

#[tokio::test]
async fn a_scheduled_run_that_cannot_start_is_deleted_and_backups_turn_unhealthy() {
    let cluster = cluster(
        vec![ready(instance(
            json!({"backup": {"schedule": "@hourly", "destination": s3()}}),
        ))],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile().await;
    // What the CronJob controller makes: a Job owned by the CronJob, with
    // the template's labels, whose pod cannot get its Secret.
    let template = cluster
        .api::<CronJob>()
        .get("orders-backup")
        .await
        .unwrap()
        .spec
        .unwrap()
        .job_template;
    let mut job = Job {
        spec: template.spec,
        ..Job::default()
    };
    job.metadata.name = Some("orders-backup-29000000".into());
    job.metadata.namespace = Some(NS.into());
    job.metadata.labels = template.metadata.and_then(|m| m.labels);
    job.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "name": "orders-backup", "uid": "cron-uid", "controller": true}))
        .unwrap(),
    ]);
    cluster
        .api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    stuck_pod(
        &cluster,
        "orders-backup-29000000",
        "CreateContainerConfigError",
        "secret \"s3-creds\" not found",
    )
    .await;

    let healthy = || async {
        let status = cluster.instance().await.status.unwrap();
        let c = find_condition(&status.conditions, "BackupsHealthy")
            .unwrap()
            .clone();
        (c.status, c.reason, c.message)
    };
    // Within the deadline: a Warning Event, backups still healthy.
    cluster.reconcile().await;
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"CreateContainerConfigError".to_owned())
    );
    assert_eq!(healthy().await.0, "True");

    // Past it: the Job goes (the CronJob's Forbid policy no longer blocks
    // the next run) and BackupsHealthy says why.
    reconcile_with(
        &cluster,
        context_on(cluster.fake.operator()).with_agent_start_timeout(Duration::ZERO),
    )
    .await;
    assert!(cluster.jobs().await.is_empty(), "the stuck Job is deleted");
    let (status, reason, message) = healthy().await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BackupCannotStart")
    );
    assert!(message.contains("CreateContainerConfigError"), "{message}");
    assert!(message.contains("orders-backup-29000000"), "{message}");
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"BackupCannotStart".to_owned())
    );

    // It stays so until a backup succeeds.
    cluster.reconcile().await;
    assert_eq!(healthy().await.1, "BackupCannotStart");
    let later = (Utc::now() + chrono::Duration::seconds(5)).to_rfc3339();
    cluster
        .api::<MySQLInstance>()
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastBackup": {"name": "orders-new", "time": later,
                "location": "s3://backups/orders-new", "compressedBytes": 1, "durationSeconds": 1}}})),
        )
        .await
        .unwrap();
    cluster.reconcile().await;
    assert_eq!(
        (healthy().await.0.as_str(), healthy().await.1.as_str()),
        ("True", "BackupsRecent")
    );
}

#[tokio::test]
async fn backup_on_delete_lets_go_when_the_namespace_is_being_deleted() {
    let cluster = cluster(vec![deleting_instance()], Duration::from_secs(3600)).await;
    // What `kubectl delete namespace shop` leaves while it empties it (the
    // in-memory API serves no cluster-scoped paths: answered in front of it).
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "deletionTimestamp": Utc::now().to_rfc3339()},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Terminating"},
    });
    let client = refusals::answering(cluster.fake.operator(), move |method, path| {
        (*method == Method::GET && path == format!("/api/v1/namespaces/{NS}"))
            .then(|| (200, namespace.clone()))
    });
    reconcile_with(&cluster, context_on(client)).await;
    assert!(finalizers(&cluster).await.is_empty());
    let all = cluster
        .api::<MySQLBackup>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(all.items.is_empty(), "no final backup is started");
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"FinalBackupSkipped".to_owned())
    );
}

/// Looking for scheduled runs that cannot start is not essential: when the
/// Jobs cannot be listed, the schedule and the status are still written.
#[tokio::test]
async fn a_failed_look_at_the_runs_does_not_stop_the_reconcile() {
    let cluster = cluster(
        vec![instance(
            json!({"backup": {"destination": s3(), "schedule": "0 3 * * *"}}),
        )],
        Duration::from_secs(3600),
    )
    .await;
    let failing = refusals::answering(cluster.fake.operator(), |method, path| {
        (*method == Method::GET && path == format!("/apis/batch/v1/namespaces/{NS}/jobs")).then(
            || {
                (
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "etcdserver: request timed out",
                        "reason": "InternalError", "code": 500}),
                )
            },
        )
    });
    reconcile_with(&cluster, context_on(failing)).await;
    assert!(cluster.api::<CronJob>().get("orders-backup").await.is_ok());
    let status = cluster.instance().await.status.expect("a status");
    let scheduled = find_condition(&status.conditions, "BackupScheduled").expect("scheduled");
    assert_eq!(scheduled.status, "True", "{}", scheduled.message);
    assert!(status.next_backup_time.is_some());
}

/// The final backup finished, then the namespace started going before the
/// operator let go (its finalizer update failed, say): the backup is
/// recorded as the success it was, not as a backup the namespace stopped.
#[tokio::test]
async fn a_final_backup_that_succeeded_stays_a_success_when_the_namespace_goes() {
    let cluster = cluster(vec![deleting_instance()], Duration::from_secs(3600)).await;
    cluster.reconcile().await;
    let record = cluster
        .instance()
        .await
        .status
        .unwrap()
        .final_backup
        .unwrap();
    cluster
        .api::<MySQLBackup>()
        .patch_status(
            &record.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Succeeded"}})),
        )
        .await
        .unwrap();
    let namespace = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "deletionTimestamp": Utc::now().to_rfc3339()},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Terminating"},
    });
    let client = refusals::answering(cluster.fake.operator(), move |method, path| {
        (*method == Method::GET && path == format!("/api/v1/namespaces/{NS}"))
            .then(|| (200, namespace.clone()))
    });
    reconcile_with(&cluster, context_on(client)).await;
    assert!(finalizers(&cluster).await.is_empty());
    let reasons = cluster.event_reasons().await;
    assert!(
        reasons.contains(&"FinalBackupSucceeded".to_owned()),
        "{reasons:?}"
    );
    assert!(
        !reasons.contains(&"FinalBackupFailed".to_owned()),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn backup_on_delete_lets_go_when_creating_the_backup_is_forbidden() {
    let cluster = cluster(vec![deleting_instance()], Duration::from_secs(3600)).await;
    let forbidden = refusals::forbidding(cluster.fake.operator(), Method::POST, "/mysqlbackups");
    reconcile_with(&cluster, context_on(forbidden)).await;
    assert!(finalizers(&cluster).await.is_empty());
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"FinalBackupSkipped".to_owned())
    );
}

#[tokio::test]
async fn backup_on_delete_lets_go_when_its_job_is_forbidden() {
    let cluster = cluster(vec![ready(deleting_instance())], Duration::from_secs(3600)).await;
    cluster.reconcile().await;
    let record = cluster
        .instance()
        .await
        .status
        .unwrap()
        .final_backup
        .unwrap();
    // The MySQLBackup controller may not create Jobs (an uninstall under way).
    let forbidden = refusals::forbidding(cluster.fake.operator(), Method::POST, "/jobs");
    let error = reconcile_backup_with(&cluster, context_on(forbidden), &record.name)
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "CreateFailed");
    let status = backup_status(&cluster, &record.name).await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    assert!(status.message.unwrap().contains("forbidden"));

    cluster.reconcile().await;
    assert!(finalizers(&cluster).await.is_empty());
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"FinalBackupFailed".to_owned())
    );
}

/// A backup as the agent reports it once it succeeded (completed on `day`
/// of January 2026), with `verification` when one is given.
fn succeeded(name: &str, day: u32, verification: Option<serde_json::Value>) -> serde_json::Value {
    let mut object = backup(name);
    object["status"] = json!({
        "phase": "Succeeded",
        "startTime": format!("2026-01-{day:02}T03:00:00Z"),
        "completionTime": format!("2026-01-{day:02}T03:05:00Z"),
        "destination": {"s3": {"bucket": "backups", "prefix": "shop/orders",
            "credentialsSecretRef": {"name": "s3-creds"}}},
        "location": format!("s3://backups/shop/orders/{name}"),
    });
    if let Some(v) = verification {
        object["status"]["verification"] = v;
    }
    object
}

fn verified_condition(instance: &MySQLInstance) -> (String, String, String) {
    let status = instance.status.clone().unwrap_or_default();
    let c = find_condition(&status.conditions, "BackupsVerified").expect("BackupsVerified");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn the_newest_backup_is_proven_once_and_the_instance_reports_the_proof() {
    let cluster = cluster(
        vec![
            ready(instance(
                json!({"backup": {"destination": s3(), "verification": {"sizeLimit": "5Gi"}}}),
            )),
            succeeded("orders-1", 1, None),
            succeeded("orders-2", 2, None),
        ],
        Duration::from_secs(3600),
    )
    .await;
    // Only the newest success is proven: turning verification on starts no
    // storm of proofs of old backups.
    cluster.reconcile_backup("orders-1").await.unwrap();
    assert!(cluster.jobs().await.is_empty());
    cluster.reconcile_backup("orders-2").await.unwrap();
    cluster.reconcile_backup("orders-2").await.unwrap();
    let jobs = cluster.jobs().await;
    assert_eq!(jobs.len(), 1, "one Job per backup");
    let job = &jobs[0];
    assert_eq!(job.metadata.name.as_deref(), Some("orders-2-verify"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("MySQLBackup", "orders-2")
    );
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert!(
        args.windows(2)
            .any(|w| w == ["--from", "s3://backups/shop/orders/orders-2"]),
        "{args:?}"
    );
    let server = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        server.image.as_deref(),
        Some("mysql:8.4"),
        "the instance's own"
    );
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"VerificationStarted".to_owned())
    );
    // Before any proof the instance says so, without alarm.
    cluster.reconcile().await;
    let (state, reason, _) = verified_condition(&cluster.instance().await);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("Unknown", "NotVerifiedYet")
    );

    // The agent reports a difference: the newest backup is not proven.
    cluster
        .api::<MySQLBackup>()
        .patch_status(
            "orders-2",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"verification": {"phase": "Failed",
                "time": "2026-01-02T03:20:00Z", "tables": 3, "rows": 10,
                "durationSeconds": 60,
                "message": "table `shop`.`orders`: rows differ (digest)"}}})),
        )
        .await
        .unwrap();
    cluster.reconcile().await;
    let instance = cluster.instance().await;
    let (state, reason, message) = verified_condition(&instance);
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "VerificationFailed")
    );
    assert!(
        message.contains("orders-2") && message.contains("rows differ"),
        "{message}"
    );
    assert!(instance.status.unwrap().last_verified_backup.is_none());
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"VerificationFailed".to_owned()),
        "a Warning Event when it turns False"
    );
    // Proven once: nothing more for that backup.
    cluster.take_writes();
    cluster.reconcile_backup("orders-2").await.unwrap();
    assert_eq!(cluster.take_writes(), Vec::<String>::new());

    // A newer backup proven: True, and it is the last verified one.
    cluster
        .api::<MySQLBackup>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(succeeded(
                "orders-3",
                3,
                Some(json!({"phase": "Verified", "time": "2026-01-03T03:20:00Z",
                    "tables": 3, "rows": 11, "durationSeconds": 61})),
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    cluster.reconcile().await;
    let instance = cluster.instance().await;
    let (state, reason, _) = verified_condition(&instance);
    assert_eq!((state.as_str(), reason.as_str()), ("True", "Verified"));
    let last = instance.status.unwrap().last_verified_backup.unwrap();
    assert_eq!((last.name.as_str(), last.rows), ("orders-3", 11));
}

#[tokio::test]
async fn a_verification_job_that_died_is_recorded_and_nothing_runs_without_the_setting() {
    let cluster = cluster(
        vec![
            ready(instance(json!({"backup": {"destination": s3()}}))),
            succeeded("orders-1", 1, None),
        ],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile_backup("orders-1").await.unwrap();
    assert!(cluster.jobs().await.is_empty(), "verification is opt-in");
    cluster.reconcile().await;
    let status = cluster.instance().await.status.unwrap();
    assert!(find_condition(&status.conditions, "BackupsVerified").is_none());

    cluster
        .set_spec(json!({"backup": {"destination": s3(), "verification": {}}}))
        .await;
    cluster.reconcile_backup("orders-1").await.unwrap();
    assert_eq!(cluster.jobs().await.len(), 1);
    // The throwaway server was killed for its memory: the agent could not
    // report, the Job failed.
    job_failed_with(
        &cluster,
        "orders-1-verify",
        "[RunFailed] verify --restore of orders-1 failed: the server closed the connection",
    )
    .await;
    cluster.reconcile_backup("orders-1").await.unwrap();
    let proof = backup_status(&cluster, "orders-1")
        .await
        .verification
        .unwrap();
    assert_eq!(proof.phase, keeper_crds::VerificationPhase::Failed);
    assert_eq!(
        proof.message.as_deref(),
        Some(
            "the proof could not be made: verify --restore of orders-1 failed: the server closed the connection"
        )
    );
    assert_eq!(
        backup_status(&cluster, "orders-1")
            .await
            .phase
            .map(|p| p.as_str()),
        Some("Succeeded"),
        "a failed proof never touches the backup itself"
    );
    assert!(
        cluster
            .event_reasons()
            .await
            .contains(&"VerificationFailed".to_owned())
    );
}

#[tokio::test]
async fn a_verification_schedule_proves_the_newest_backup_at_its_time() {
    // Sundays 05:00; the backup completed 2026-01-01 (a Thursday), long ago.
    let cluster = cluster(
        vec![
            ready(instance(json!({"backup": {"destination": s3(),
                "verification": {"schedule": "0 5 * * 0"}}}))),
            succeeded("orders-1", 1, None),
        ],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile_backup("orders-1").await.unwrap();
    assert_eq!(
        cluster.jobs().await.len(),
        1,
        "its time came after it completed"
    );
    // An invalid schedule is the instance's problem and starts nothing.
    let cluster = cluster_with_invalid_schedule().await;
    cluster.reconcile_backup("orders-1").await.unwrap();
    assert!(cluster.jobs().await.is_empty());
}

async fn cluster_with_invalid_schedule() -> Cluster {
    cluster(
        vec![
            ready(instance(json!({"backup": {"destination": s3(),
                "verification": {"schedule": "61 * * * *"}}}))),
            succeeded("orders-1", 1, None),
        ],
        Duration::from_secs(3600),
    )
    .await
}

#[tokio::test]
async fn the_agents_report_is_never_overwritten_from_a_stale_look() {
    let cluster = cluster(
        vec![
            ready(instance(
                json!({"backup": {"destination": s3(), "verification": {}}}),
            )),
            succeeded("orders-1", 1, None),
        ],
        Duration::from_secs(3600),
    )
    .await;
    cluster.reconcile_backup("orders-1").await.unwrap();
    // The controller's cached object, from before the agent reported.
    let stale = cluster.api::<MySQLBackup>().get("orders-1").await.unwrap();
    cluster
        .api::<MySQLBackup>()
        .patch_status(
            "orders-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"verification": {"phase": "Verified",
                "time": "2026-01-01T03:20:00Z", "tables": 3, "rows": 10,
                "durationSeconds": 60}}})),
        )
        .await
        .unwrap();
    cluster
        .api::<Job>()
        .patch_status(
            "orders-1-verify",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": [
                {"type": "Complete", "status": "True"}]}})),
        )
        .await
        .unwrap();
    // The Job's end arrives with the stale object.
    keeper_operator::backup_controller::reconcile(Arc::new(stale), cluster.ctx.clone())
        .await
        .unwrap();
    let proof = backup_status(&cluster, "orders-1")
        .await
        .verification
        .unwrap();
    assert_eq!((proof.tables, proof.rows), (3, 10));
    assert_eq!(proof.message, None, "the agent's report stands");
}
