//! `spec.restoreFrom` through `reconcile()` against the in-memory API: the
//! Job waits for the server, is created once per attempt, its end decides
//! `Ready`/`Restored`/`restoredFrom`, failures are reported and never
//! retried on their own, and source problems run nothing.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use keeper_crds::{MySQLBackup, MySQLInstance, MySQLInstanceSpec, MySQLInstanceStatus};
use keeper_operator::context::{Context, OperatorConfig};
use keeper_operator::instance_controller::instance_for_owned;
use keeper_operator::metrics::Metrics;
use keeper_operator::reconcile;
use keeper_tests::kube::FakeCluster;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::{Value, json};

mod common;

use common::NoAccounts;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use keeper_operator::accounts::{
    AccountManager, AccountTarget, AccountsError, AppAccess, AppAccountTarget,
};
use keeper_operator::instance::restore::hold::HOLD_LABEL;

const NS: &str = "shop";
const NAME: &str = "fresh";

struct Cluster {
    fake: FakeCluster,
    /// The test's own client (the scene, the kubelet, a user's edits).
    client: Client,
    ctx: Arc<Context>,
}

async fn cluster(
    instance: MySQLInstance,
    backups: Vec<MySQLBackup>,
    secrets: Vec<Secret>,
) -> Cluster {
    let mut builder = FakeCluster::builder().with_object(instance);
    for backup in backups {
        builder = builder.with_object(backup);
    }
    for secret in secrets {
        builder = builder.with_object(secret);
    }
    let fake = builder.build().await;
    let ctx = Arc::new(
        Context::new(
            fake.operator(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(Arc::new(NoAccounts)),
    );
    Cluster {
        client: fake.admin(),
        fake,
        ctx,
    }
}

impl Cluster {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn instance(&self) -> MySQLInstance {
        self.api::<MySQLInstance>().get(NAME).await.unwrap()
    }

    async fn status(&self) -> MySQLInstanceStatus {
        self.instance().await.status.unwrap()
    }

    async fn reconcile(&self) {
        let instance = self.instance().await;
        reconcile(Arc::new(instance), self.ctx.clone())
            .await
            .expect("reconciles");
    }

    fn take_writes(&self) -> Vec<String> {
        self.fake.take_writes()
    }

    /// Writes other than Events.
    fn take_object_writes(&self) -> Vec<String> {
        self.take_writes()
            .into_iter()
            .filter(|w| !w.contains("Event"))
            .collect()
    }

    async fn jobs(&self) -> Vec<Job> {
        self.api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }

    async fn only_job(&self) -> Job {
        let jobs = self.jobs().await;
        assert_eq!(jobs.len(), 1, "{:?}", names(&jobs));
        jobs.into_iter().next().unwrap()
    }

    /// (type, reason, note) of every Event.
    async fn events(&self) -> Vec<(String, String, String)> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn has_event(&self, type_: &str, reason: &str) -> bool {
        self.events()
            .await
            .iter()
            .any(|(t, r, _)| t == type_ && r == reason)
    }

    /// What the StatefulSet controller does once the pod is ready.
    async fn server_ready(&self) {
        if self
            .api::<StatefulSet>()
            .get_opt(NAME)
            .await
            .unwrap()
            .is_none()
        {
            // The first reconcile creates it.
            self.reconcile().await;
        }
        let ready = json!({"status": {"replicas": 1, "readyReplicas": 1}});
        self.api::<StatefulSet>()
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&ready))
            .await
            .unwrap();
    }

    /// What the Job controller does when the pod ends.
    async fn job_ends(&self, job: &str, succeeded: bool) {
        let status = if succeeded {
            json!({"status": {"succeeded": 1, "completionTime": "2025-01-02T03:04:05Z",
                "conditions": [{"type": "Complete", "status": "True"}]}})
        } else {
            json!({"status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}})
        };
        self.api::<Job>()
            .patch(job, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    /// The pod of `job`, terminated with `exit_code` and `message`.
    async fn job_pod(&self, job: &str, exit_code: i32, message: Option<&str>, reason: &str) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("{job}-abcde"), "namespace": NS,
                "labels": {"batch.kubernetes.io/job-name": job, "job-name": job}},
            "spec": {"containers": [{"name": "agent", "image": "agent"}]},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "agent", "image": "agent", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message}}}]}
        }))
        .unwrap();
        self.api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }

    /// What the agent reports into `status.restore` (field manager keeper-agent).
    async fn agent_reports(&self, restore: Value) {
        let body = json!({
            "apiVersion": keeper_crds::API_GROUP_VERSION, "kind": "MySQLInstance",
            "metadata": {"name": NAME}, "status": {"restore": restore}
        });
        Api::<MySQLInstance>::namespaced(self.fake.agent(NS, NAME), NS)
            .patch_status(
                NAME,
                &PatchParams::apply("keeper-agent").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap();
    }

    async fn set_spec(&self, spec: Value) {
        let patch = json!({"metadata": {"generation": 2}, "spec": spec});
        self.api::<MySQLInstance>()
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

fn names(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

fn instance(spec: Value) -> MySQLInstance {
    let spec: MySQLInstanceSpec = serde_json::from_value(spec).unwrap();
    let mut instance = MySQLInstance::new(NAME, spec);
    instance.metadata.namespace = Some(NS.to_owned());
    instance.metadata.generation = Some(1);
    instance.metadata.uid = Some("uid-fresh".to_owned());
    instance
}

fn secret(name: &str, keys: &[&str]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = Some(NS.to_owned());
    secret.data = Some(
        keys.iter()
            .map(|k| ((*k).to_owned(), ByteString(b"value".to_vec())))
            .collect(),
    );
    secret
}

fn s3_creds(name: &str) -> Secret {
    secret(name, &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
}

/// The Secret the operator keeps for the backup user (issue 8).
fn backup_user_secret() -> Secret {
    secret(&format!("{NAME}-backup"), &["username", "password"])
}

fn backup(name: &str, phase: &str) -> MySQLBackup {
    let mut backup = MySQLBackup::for_instance(name, NS, "orders", None);
    backup.status = Some(
        serde_json::from_value(json!({
            "phase": phase,
            "destination": {"s3": {"bucket": "keeper", "prefix": "prod/orders",
                "endpoint": "https://s3.example.net", "forcePathStyle": true,
                "credentialsSecretRef": {"name": "orders-s3"}}},
            "location": format!("s3://keeper/prod/orders/{name}"),
        }))
        .unwrap(),
    );
    backup
}

fn by_name(backup: &str) -> Value {
    json!({"restoreFrom": {"backupName": backup}})
}

fn condition(status: &MySQLInstanceStatus, type_: &str) -> (String, String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {:?}", status.conditions));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn env<'a>(job: &'a Job, name: &str) -> Option<&'a EnvVar> {
    job.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
}

fn secret_ref(job: &Job, name: &str) -> (String, String) {
    let selector = env(job, name)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap_or_else(|| panic!("{name} is not a secretKeyRef"));
    (selector.name.clone(), selector.key.clone())
}

fn args(job: &Job) -> Vec<String> {
    job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap()
}

fn arg_after(job: &Job, flag: &str) -> Option<String> {
    let args = args(job);
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).cloned()
}

async fn restoring_cluster() -> Cluster {
    cluster(
        instance(by_name("orders-b1")),
        vec![
            backup("orders-b1", "Succeeded"),
            backup("orders-b2", "Succeeded"),
        ],
        vec![s3_creds("orders-s3"), backup_user_secret()],
    )
    .await
}

#[tokio::test]
async fn a_new_instance_restores_once_ready_then_becomes_ready() {
    let cluster = restoring_cluster().await;

    // The server is not ready: nothing runs yet.
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty());
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Provisioning"));
    let (restored, reason, _) = condition(&status, "Restored");
    assert_eq!(
        (restored.as_str(), reason.as_str()),
        ("False", "RestorePending")
    );

    // Ready: exactly one Job, owned by the instance, phase Restoring.
    cluster.server_ready().await;
    cluster.take_writes();
    cluster.reconcile().await;
    let job = cluster.only_job().await;
    let job_name = job.metadata.name.clone().unwrap();
    assert!(job_name.starts_with("fresh-restore-"), "{job_name}");
    assert_eq!(
        instance_for_owned(&job.metadata),
        Some(ObjectRef::new(NAME).within(NS)),
        "owned by the instance (and mapped back by the controller's .owns())"
    );
    assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(0));
    assert_eq!(args(&job)[0], "restore");
    assert_eq!(
        arg_after(&job, "--from").as_deref(),
        Some("s3://keeper/prod/orders/orders-b1")
    );
    assert!(!args(&job).contains(&"--overwrite".to_owned()));
    assert!(args(&job).contains(&"--s3-force-path-style".to_owned()));
    assert_eq!(
        secret_ref(&job, "AWS_ACCESS_KEY_ID"),
        ("orders-s3".into(), "AWS_ACCESS_KEY_ID".into()),
        "the credentials recorded in the MySQLBackup"
    );
    assert_eq!(
        secret_ref(&job, "MYSQL_PWD"),
        ("fresh-credentials".into(), "root-password".into()),
        "a restore logs in as root with the instance's root Secret"
    );
    assert_eq!(arg_after(&job, "--user").as_deref(), Some("root"));
    assert_eq!(
        env(&job, "KEEPER_RESTORE_SOURCE").and_then(|e| e.value.as_deref()),
        Some("orders-b1")
    );
    assert_eq!(
        env(&job, "KEEPER_INSTANCE").and_then(|e| e.value.as_deref()),
        Some(NAME)
    );
    let writes = cluster.take_object_writes();
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.starts_with("create Job"))
            .count(),
        1,
        "{writes:?}"
    );

    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Restoring"));
    let (ready, reason, _) = condition(&status, "Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Restoring"));
    let (restored, reason, _) = condition(&status, "Restored");
    assert_eq!((restored.as_str(), reason.as_str()), ("False", "Restoring"));
    let restore = status
        .restore
        .clone()
        .expect("operator wrote status.restore");
    assert_eq!(restore.phase.as_str(), "Pending");
    assert_eq!(restore.job_name.as_deref(), Some(job_name.as_str()));
    assert_eq!(restore.source, "orders-b1");
    assert!(
        restore.members_done.is_none(),
        "no progress from the operator"
    );
    assert!(cluster.has_event("Normal", "RestoreStarted").await);

    // A repeated reconcile creates nothing and writes nothing.
    cluster.reconcile().await;
    assert_eq!(cluster.jobs().await.len(), 1);
    assert_eq!(cluster.take_writes(), Vec::<String>::new());

    // The agent reports progress; the operator leaves it alone.
    cluster
        .agent_reports(json!({"phase": "Running", "source": "orders-b1", "jobName": job_name,
            "startTime": "2025-01-02T03:00:00Z", "membersDone": 3, "membersTotal": 10, "bytesDone": 4096}))
        .await;
    cluster.take_writes();
    cluster.reconcile().await;
    assert_eq!(cluster.take_writes(), Vec::<String>::new());
    assert!(cluster.status().await.restore.unwrap().members_done == Some(3));

    // The agent finishes and the Job completes: Ready, Restored, restoredFrom.
    cluster
        .agent_reports(
            json!({"phase": "Succeeded", "source": "orders-b1", "jobName": job_name,
            "startTime": "2025-01-02T03:00:00Z", "completionTime": "2025-01-02T03:04:05Z",
            "membersDone": 10, "membersTotal": 10, "bytesDone": 8192}),
        )
        .await;
    cluster.job_ends(&job_name, true).await;
    cluster.take_writes();
    cluster.reconcile().await;
    let writes = cluster.take_object_writes();
    assert_eq!(
        writes,
        ["patch fresh", "patch status fresh"],
        "the client Service opens, and the operator's status"
    );
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    assert_eq!(condition(&status, "Ready").0, "True");
    let (restored, reason, message) = condition(&status, "Restored");
    assert_eq!(
        (restored.as_str(), reason.as_str()),
        ("True", "RestoreSucceeded")
    );
    assert!(message.contains("orders-b1"), "{message}");
    let restored_from = status.restored_from.clone().expect("restoredFrom");
    assert!(
        restored_from.starts_with("orders-b1 [")
            && restored_from.ends_with("at 2025-01-02T03:04:05Z"),
        "{restored_from}"
    );
    let restore = status.restore.clone().unwrap();
    assert_eq!(
        (
            restore.phase.as_str(),
            restore.members_done,
            restore.bytes_done
        ),
        ("Succeeded", Some(10), Some(8192)),
        "the agent's report is kept"
    );
    assert!(cluster.has_event("Normal", "RestoreSucceeded").await);

    // Never again: no writes, and no new Job even once the old one is gone.
    cluster.reconcile().await;
    assert_eq!(cluster.take_writes(), Vec::<String>::new());
    cluster
        .api::<Job>()
        .delete(&job_name, &DeleteParams::default())
        .await
        .unwrap();
    cluster.take_writes();
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty());
    assert_eq!(cluster.take_writes(), Vec::<String>::new());

    // Turning overwrite on afterwards is not a new source: nothing runs.
    cluster
        .set_spec(json!({"restoreFrom": {"backupName": "orders-b1", "overwrite": true}}))
        .await;
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty());
    assert_eq!(cluster.status().await.restored_from, Some(restored_from));
}

#[tokio::test]
async fn a_changed_source_runs_a_new_job_and_a_refusal_is_reported_not_retried() {
    let cluster = restoring_cluster().await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    let first = cluster.only_job().await.metadata.name.unwrap();
    cluster.job_ends(&first, true).await;
    cluster.reconcile().await;
    assert_eq!(condition(&cluster.status().await, "Restored").0, "True");

    // Another backup: a new Job, Restoring again, Ready False meanwhile.
    cluster.set_spec(by_name("orders-b2")).await;
    cluster.reconcile().await;
    let jobs = cluster.jobs().await;
    assert_eq!(jobs.len(), 2, "{:?}", names(&jobs));
    let second = names(&jobs).into_iter().find(|n| *n != first).unwrap();
    let job = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(&second))
        .unwrap();
    assert_eq!(
        arg_after(job, "--from").as_deref(),
        Some("s3://keeper/prod/orders/orders-b2")
    );
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Restoring"));
    assert_eq!(condition(&status, "Ready").0, "False");

    // The agent refuses the non-empty target before touching it.
    let refusal = "10.0.0.7:3306 already has 16 objects of the backup's databases (sakila.actor, sakila.address, ...); restore into an empty server or pass --overwrite; nothing was changed";
    cluster.job_ends(&second, false).await;
    cluster.job_pod(&second, 1, Some(refusal), "Error").await;
    cluster.reconcile().await;
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    let (restored, reason, message) = condition(&status, "Restored");
    assert_eq!(
        (restored.as_str(), reason.as_str()),
        ("False", "RestorePreflightFailed")
    );
    assert!(message.contains(refusal), "{message}");
    assert!(message.contains("overwrite: true"), "{message}");
    let (ready, reason, _) = condition(&status, "Ready");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "RestorePreflightFailed")
    );
    assert!(
        status.restored_from.unwrap().starts_with("orders-b1 ["),
        "restoredFrom still names the data the server holds"
    );
    // The agent could not report (say): the operator records the end.
    let restore = status.restore.unwrap();
    assert_eq!(restore.phase.as_str(), "Failed");
    assert_eq!(restore.message.as_deref(), Some(refusal));
    assert_eq!(restore.job_name.as_deref(), Some(second.as_str()));
    assert!(cluster.has_event("Warning", "RestorePreflightFailed").await);

    // Not retried: no Job, no writes.
    cluster.take_writes();
    cluster.reconcile().await;
    assert_eq!(cluster.jobs().await.len(), 2);
    assert_eq!(cluster.take_writes(), Vec::<String>::new());

    // The user opts in to overwrite: a new attempt, a new Job with --overwrite.
    cluster
        .set_spec(json!({"restoreFrom": {"backupName": "orders-b2", "overwrite": true}}))
        .await;
    cluster.reconcile().await;
    let jobs = cluster.jobs().await;
    assert_eq!(jobs.len(), 3, "{:?}", names(&jobs));
    let third = jobs
        .iter()
        .find(|j| {
            let n = j.metadata.name.as_deref().unwrap_or_default();
            n != first && n != second
        })
        .unwrap();
    assert!(args(third).contains(&"--overwrite".to_owned()));
    assert_eq!(
        cluster.status().await.phase.map(|p| p.as_str()),
        Some("Restoring")
    );
}

#[tokio::test]
async fn a_job_killed_without_a_report_fails_with_its_reason_and_a_retry_is_explicit() {
    let cluster = restoring_cluster().await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    let job = cluster.only_job().await.metadata.name.unwrap();
    cluster
        .agent_reports(
            json!({"phase": "Running", "source": "orders-b1", "jobName": job,
            "membersDone": 5, "membersTotal": 10, "bytesDone": 1000}),
        )
        .await;
    cluster.job_ends(&job, false).await;
    cluster.job_pod(&job, 137, None, "OOMKilled").await;
    cluster.reconcile().await;
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    let (restored, reason, message) = condition(&status, "Restored");
    assert_eq!(
        (restored.as_str(), reason.as_str()),
        ("False", "RestoreFailed")
    );
    assert!(message.contains("code 137 (OOMKilled)"), "{message}");
    assert!(message.contains("part of the backup"), "{message}");
    let restore = status.restore.unwrap();
    assert_eq!(restore.phase.as_str(), "Failed");
    assert_eq!(restore.members_done, Some(5), "progress is the agent's");
    assert!(cluster.has_event("Warning", "RestoreFailed").await);

    // Even without the Job (TTL), the failed attempt is not run again.
    cluster
        .api::<Job>()
        .delete(&job, &DeleteParams::default())
        .await
        .unwrap();
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty());
    assert_eq!(
        condition(&cluster.status().await, "Restored").1,
        "RestoreFailed"
    );

    // The retry annotation starts a new attempt.
    let patch = json!({"metadata": {"annotations": {"mysql.keeper.dev/restore-retry": "1"}}});
    cluster
        .api::<MySQLInstance>()
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cluster.reconcile().await;
    let retry = cluster.only_job().await.metadata.name.unwrap();
    assert_ne!(retry, job);
    assert_eq!(
        cluster.status().await.phase.map(|p| p.as_str()),
        Some("Restoring")
    );
}

async fn assert_blocked(
    spec: Value,
    backups: Vec<MySQLBackup>,
    secrets: Vec<Secret>,
    reason: &str,
    says: &str,
) {
    let cluster = cluster(instance(spec), backups, secrets).await;
    cluster.reconcile().await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty(), "{reason}: nothing runs");
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"), "{reason}");
    let (restored, got, message) = condition(&status, "Restored");
    assert_eq!((restored.as_str(), got.as_str()), ("False", reason));
    assert!(message.contains(says), "{message}");
    assert_eq!(condition(&status, "Ready").0, "False", "{reason}");
    let warnings: Vec<_> = cluster
        .events()
        .await
        .into_iter()
        .filter(|(t, r, _)| t == "Warning" && r == reason)
        .collect();
    assert_eq!(warnings.len(), 1, "one Warning Event: {warnings:?}");
    assert!(warnings[0].2.contains(says), "{warnings:?}");

    // Unchanged, a reconcile writes nothing (and repeats no Event).
    cluster.take_writes();
    cluster.reconcile().await;
    assert_eq!(cluster.take_writes(), Vec::<String>::new(), "{reason}");
}

#[tokio::test]
async fn source_problems_are_conditions_and_events_and_run_nothing() {
    let secrets = || vec![s3_creds("orders-s3"), backup_user_secret()];
    assert_blocked(
        by_name("nope"),
        vec![],
        secrets(),
        "BackupNotFound",
        "\"nope\" not found",
    )
    .await;
    assert_blocked(
        by_name("orders-b1"),
        vec![backup("orders-b1", "Failed")],
        secrets(),
        "BackupNotSucceeded",
        "is Failed",
    )
    .await;
    assert_blocked(
        by_name("orders-b1"),
        vec![backup("orders-b1", "Running")],
        secrets(),
        "BackupNotSucceeded",
        "once it has succeeded",
    )
    .await;
    assert_blocked(
        by_name("orders-b1"),
        vec![backup("orders-b1", "Succeeded")],
        vec![backup_user_secret()],
        "SecretNotFound",
        "\"orders-s3\"",
    )
    .await;
    assert_blocked(
        json!({"restoreFrom": {"location": {
            "destination": {"s3": {"bucket": "theirs", "credentialsSecretRef": {"name": "theirs-s3"}}},
            "backup": "b"}}}),
        vec![],
        vec![secret("theirs-s3", &["AWS_ACCESS_KEY_ID"]), backup_user_secret()],
        "SecretKeyNotFound",
        "AWS_SECRET_ACCESS_KEY",
    )
    .await;
}

#[tokio::test]
async fn a_fixed_source_goes_ahead() {
    let cluster = cluster(
        instance(by_name("orders-b1")),
        vec![backup("orders-b1", "Running")],
        vec![s3_creds("orders-s3"), backup_user_secret()],
    )
    .await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty());
    let patch = json!({"status": {"phase": "Succeeded"}});
    cluster
        .api::<MySQLBackup>()
        .patch_status("orders-b1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cluster.reconcile().await;
    assert_eq!(cluster.jobs().await.len(), 1);
    assert_eq!(
        cluster.status().await.phase.map(|p| p.as_str()),
        Some("Restoring")
    );
}

#[tokio::test]
async fn a_location_restores_with_its_own_credentials() {
    let cluster = cluster(
        instance(json!({"restoreFrom": {"location": {
            "destination": {"s3": {"bucket": "other-cluster", "prefix": "nightly",
                "endpoint": "https://minio.other:9000", "forcePathStyle": true,
                "credentialsSecretRef": {"name": "other-s3"}}},
            "backup": "orders-20250101-030000"}}})),
        vec![],
        vec![s3_creds("other-s3"), backup_user_secret()],
    )
    .await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    let job = cluster.only_job().await;
    let url = "s3://other-cluster/nightly/orders-20250101-030000";
    assert_eq!(arg_after(&job, "--from").as_deref(), Some(url));
    assert_eq!(
        secret_ref(&job, "AWS_ACCESS_KEY_ID"),
        ("other-s3".into(), "AWS_ACCESS_KEY_ID".into())
    );
    assert_eq!(
        secret_ref(&job, "AWS_SECRET_ACCESS_KEY"),
        ("other-s3".into(), "AWS_SECRET_ACCESS_KEY".into())
    );
    assert_eq!(
        env(&job, "AWS_ENDPOINT_URL").and_then(|e| e.value.as_deref()),
        Some("https://minio.other:9000")
    );
    assert_eq!(
        env(&job, "KEEPER_RESTORE_SOURCE").and_then(|e| e.value.as_deref()),
        Some(url)
    );
    // Secrets only by reference.
    for name in ["MYSQL_PWD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert_eq!(
            env(&job, name).and_then(|e| e.value.as_deref()),
            None,
            "{name}"
        );
    }
    let text = serde_json::to_string(&job).unwrap();
    assert!(
        !text.contains("dmFsdWU="),
        "a secret's bytes in the Job: {text}"
    );

    cluster
        .job_ends(job.metadata.name.as_deref().unwrap(), true)
        .await;
    cluster.reconcile().await;
    let status = cluster.status().await;
    assert!(
        status
            .restored_from
            .as_deref()
            .unwrap()
            .starts_with(&format!("{url} ["))
    );
    assert_eq!(condition(&status, "Restored").0, "True");
}

#[tokio::test]
async fn restores_never_overlap() {
    let cluster = restoring_cluster().await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    let first = cluster.only_job().await.metadata.name.unwrap();
    // Changed while the first Job still runs: wait for it.
    cluster.set_spec(by_name("orders-b2")).await;
    cluster.reconcile().await;
    assert_eq!(names(&cluster.jobs().await), vec![first.clone()]);
    let (restored, reason, message) = condition(&cluster.status().await, "Restored");
    assert_eq!(
        (restored.as_str(), reason.as_str()),
        ("False", "RestorePending")
    );
    assert!(message.contains(&first), "{message}");
    cluster.job_ends(&first, true).await;
    cluster.reconcile().await;
    assert_eq!(cluster.jobs().await.len(), 2);
}

/// Records what the reconcile asks of the application account; fails the
/// next `failures` calls as a server that cannot be reached would.
#[derive(Default)]
struct RecordingAccounts {
    app: Mutex<Vec<(AppAccess, String, String)>>,
    failures: Mutex<u32>,
}

impl AccountManager for RecordingAccounts {
    fn ensure_backup_user<'a>(
        &'a self,
        _target: &'a AccountTarget,
    ) -> BoxFuture<'a, Result<(), AccountsError>> {
        Box::pin(async { Ok(()) })
    }

    fn ensure_app_account<'a>(
        &'a self,
        target: &'a AppAccountTarget,
    ) -> BoxFuture<'a, Result<(), AccountsError>> {
        Box::pin(async move {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(AccountsError::UnknownServer {
                    host: target.host.clone(),
                    port: target.port,
                    version: "unreachable".into(),
                });
            }
            self.app.lock().unwrap().push((
                target.access,
                target.user.clone(),
                target.host.clone(),
            ));
            Ok(())
        })
    }
}

impl Cluster {
    async fn client_selector(&self) -> std::collections::BTreeMap<String, String> {
        self.api::<Service>()
            .get(NAME)
            .await
            .unwrap()
            .spec
            .unwrap()
            .selector
            .unwrap()
    }

    async fn server_env(&self) -> Vec<String> {
        self.api::<StatefulSet>()
            .get(NAME)
            .await
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
}

#[tokio::test]
async fn a_restore_holds_the_server_until_it_succeeded() {
    let mut cluster = cluster(
        instance(json!({"user": "app", "database": "shop",
            "restoreFrom": {"backupName": "orders-b1", "overwrite": true}})),
        vec![backup("orders-b1", "Succeeded")],
        vec![s3_creds("orders-s3"), backup_user_secret()],
    )
    .await;
    let accounts = Arc::new(RecordingAccounts::default());
    cluster.ctx = Arc::new(
        Context::new(
            cluster.fake.operator(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(accounts.clone()),
    );
    let pod_host = format!("{NAME}-0.{NAME}-headless.{NS}.svc");

    // The image is not asked to create the application account (it would
    // be open the moment the server listens), and the client Service
    // selects no pod.
    cluster.reconcile().await;
    let env = cluster.server_env().await;
    assert!(env.contains(&"MYSQL_ROOT_PASSWORD".to_owned()), "{env:?}");
    assert!(env.contains(&"MYSQL_DATABASE".to_owned()), "{env:?}");
    assert!(
        !env.contains(&"MYSQL_USER".to_owned()) && !env.contains(&"MYSQL_PASSWORD".to_owned()),
        "{env:?}"
    );
    assert_eq!(
        cluster
            .client_selector()
            .await
            .get(HOLD_LABEL)
            .map(String::as_str),
        Some("true")
    );

    // The server is up but the account cannot be locked: no Job.
    cluster.server_ready().await;
    *accounts.failures.lock().unwrap() = 1;
    cluster.reconcile().await;
    assert!(cluster.jobs().await.is_empty());
    let (restored, reason, message) = condition(&cluster.status().await, "Restored");
    assert_eq!(
        (restored.as_str(), reason.as_str()),
        ("False", "RestorePending")
    );
    assert!(
        message.contains("cannot lock the application account app"),
        "{message}"
    );
    assert!(cluster.has_event("Warning", "AppAccountFailed").await);

    // Locked, through the pod's own address: then the Job, which reaches
    // the server the same way and names its request.
    cluster.reconcile().await;
    assert_eq!(
        *accounts.app.lock().unwrap(),
        [(AppAccess::Held, "app".to_owned(), pod_host.clone())]
    );
    let job = cluster.only_job().await;
    let job_name = job.metadata.name.clone().unwrap();
    assert_eq!(arg_after(&job, "--host"), Some(pod_host.clone()));
    assert!(args(&job).contains(&"--overwrite".to_owned()));
    let request = arg_after(&job, "--request-id").expect("--request-id");
    assert_eq!(request.len(), 10, "{request}");
    assert_eq!(
        cluster
            .client_selector()
            .await
            .get(HOLD_LABEL)
            .map(String::as_str),
        Some("true"),
        "still held while the Job runs"
    );
    assert_eq!(condition(&cluster.status().await, "Ready").0, "False");

    // The agent found the request applied (a re-created instance): success,
    // nothing changed. The account is unlocked, then the Service opens.
    cluster
        .agent_reports(json!({"phase": "Succeeded", "source": "orders-b1", "jobName": job_name,
            "completionTime": "2025-01-02T03:04:05Z",
            "message": "already restored: request x was restored into root@h:3306 at t by keeper-agent 0.1.0; nothing was changed"}))
        .await;
    cluster.job_ends(&job_name, true).await;
    // The in-memory API merges server-side applies, so a selector key the
    // operator stops applying would linger there (the API server removes
    // it): look at the Service as the operator applies it, from scratch.
    cluster
        .api::<Service>()
        .delete(NAME, &DeleteParams::default())
        .await
        .unwrap();
    cluster.reconcile().await;
    assert_eq!(
        accounts.app.lock().unwrap().last().map(|a| a.0),
        Some(AppAccess::Open)
    );
    let status = cluster.status().await;
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    let (restored, _, message) = condition(&status, "Restored");
    assert_eq!(restored, "True");
    assert!(message.contains("already restored"), "{message}");
    assert!(!cluster.client_selector().await.contains_key(HOLD_LABEL));
    // Removing restoreFrom now changes neither the pod template nor the Service.
    cluster.set_spec(json!({"restoreFrom": null})).await;
    cluster.take_writes();
    cluster.reconcile().await;
    assert!(
        !cluster
            .server_env()
            .await
            .contains(&"MYSQL_USER".to_owned())
    );
    assert!(!cluster.client_selector().await.contains_key(HOLD_LABEL));
    assert!(
        !cluster
            .take_object_writes()
            .iter()
            .any(|w| w == "patch fresh"),
        "no restart, no Service change"
    );
}

#[tokio::test]
async fn a_failed_restore_keeps_the_hold() {
    let cluster = restoring_cluster().await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    let job_name = cluster.only_job().await.metadata.name.unwrap();
    cluster.job_ends(&job_name, false).await;
    cluster.reconcile().await;
    assert_eq!(
        cluster.status().await.phase.map(|p| p.as_str()),
        Some("Failed")
    );
    assert_eq!(
        cluster
            .client_selector()
            .await
            .get(HOLD_LABEL)
            .map(String::as_str),
        Some("true"),
        "a half-restored server stays closed"
    );
}

#[tokio::test]
async fn a_restore_whose_pod_cannot_start_fails_after_the_start_deadline() {
    let cluster = restoring_cluster().await;
    cluster.server_ready().await;
    cluster.reconcile().await;
    let job = cluster.only_job().await.metadata.name.unwrap();
    // The kubelet cannot build the container: a Secret it needs is missing.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{job}-x1"), "namespace": NS,
            "labels": {"batch.kubernetes.io/job-name": job}},
        "spec": {"containers": [{"name": "agent", "image": "agent"}]},
        "status": {"phase": "Pending", "containerStatuses": [{
            "name": "agent", "image": "agent", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError",
                "message": "secret \"orders-s3\" not found"}}}]}
    }))
    .unwrap();
    cluster
        .api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();

    // Within the start deadline: still restoring, and the reason is an Event.
    cluster.reconcile().await;
    assert_eq!(cluster.jobs().await.len(), 1);
    assert_eq!(
        condition(&cluster.status().await, "Restored").1,
        "Restoring"
    );
    assert!(
        cluster
            .has_event("Warning", "CreateContainerConfigError")
            .await
    );

    // Past it: the Job is deleted and the restore failed, changing nothing.
    let impatient = Arc::new(
        Context::new(
            cluster.fake.operator(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(Arc::new(NoAccounts))
        .with_agent_start_timeout(std::time::Duration::ZERO),
    );
    for _ in 0..2 {
        reconcile(Arc::new(cluster.instance().await), impatient.clone())
            .await
            .expect("reconciles");
        assert!(cluster.jobs().await.is_empty(), "the stuck Job is deleted");
        let status = cluster.status().await;
        let (restored, reason, message) = condition(&status, "Restored");
        assert_eq!(
            (restored.as_str(), reason.as_str()),
            ("False", "RestorePreflightFailed"),
            "{message}"
        );
        assert!(message.contains("CreateContainerConfigError"), "{message}");
        assert!(message.contains("did not start within 0s"), "{message}");
        assert_ne!(status.phase.map(|p| p.as_str()), Some("Ready"));
    }
    assert!(cluster.has_event("Warning", "RestorePreflightFailed").await);
}
