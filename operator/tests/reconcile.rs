//! `reconcile()` against the in-memory API of kube-fake-client: what gets
//! created, what the status says, that an idle reconcile writes nothing, and
//! how invalid specs and credentials are handled.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use keeper_crds::{MySQLInstance, MySQLInstanceSpec};
use keeper_operator::context::{Context, OperatorConfig};
use keeper_operator::metrics::Metrics;
use keeper_operator::reconcile;
use keeper_tests::kube::FakeCluster;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

mod common;

const NS: &str = "shop";

struct Cluster {
    fake: FakeCluster,
    /// The test's own client (the scene, a user's edits).
    client: Client,
    ctx: Arc<Context>,
}

async fn cluster(instance: MySQLInstance, secrets: Vec<Secret>) -> Cluster {
    let mut builder = FakeCluster::builder().with_object(instance);
    for secret in secrets {
        builder = builder.with_object(secret);
    }
    let fake = builder.build().await;
    let ctx = Arc::new(Context::new(
        fake.operator(),
        OperatorConfig::default(),
        Arc::new(Metrics::default()),
        None,
    ));
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

    async fn instance(&self, name: &str) -> MySQLInstance {
        self.api::<MySQLInstance>()
            .get(name)
            .await
            .expect("instance exists")
    }

    async fn reconcile(
        &self,
        name: &str,
    ) -> Result<kube::runtime::controller::Action, keeper_operator::Error> {
        let instance = self.instance(name).await;
        reconcile(Arc::new(instance), self.ctx.clone()).await
    }

    fn take_writes(&self) -> Vec<String> {
        self.fake.take_writes()
    }

    async fn exists<K>(&self, name: &str) -> bool
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .expect("readable")
            .is_some()
    }

    /// (type, reason) of every Event, oldest first.
    async fn events(&self) -> Vec<(String, String)> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
            .collect()
    }
}

fn instance(name: &str, spec: serde_json::Value) -> MySQLInstance {
    let spec: MySQLInstanceSpec = serde_json::from_value(spec).expect("valid spec");
    let mut instance = MySQLInstance::new(name, spec);
    instance.metadata.namespace = Some(NS.to_owned());
    instance.metadata.generation = Some(1);
    instance
}

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = Some(NS.to_owned());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    secret
}

fn key(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn creates_objects_and_status_then_an_idle_reconcile_writes_nothing() {
    let cluster = cluster(
        instance(
            "orders",
            json!({"database": "orders", "user": "app", "config": {"max_connections": "300"}}),
        ),
        vec![],
    )
    .await;
    cluster.reconcile("orders").await.expect("reconciles");

    let credentials: Secret = cluster
        .api()
        .get("orders-credentials")
        .await
        .expect("credentials");
    assert_eq!(key(&credentials, "root-password").len(), 32);
    assert_eq!(key(&credentials, "username"), "app");
    assert_eq!(key(&credentials, "password").len(), 32);
    assert_ne!(
        key(&credentials, "root-password"),
        key(&credentials, "password")
    );
    assert!(
        credentials
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "the credentials Secret outlives the instance"
    );

    let owner = cluster.instance("orders").await.metadata.uid.expect("uid");
    let sts: StatefulSet = cluster.api().get("orders").await.expect("statefulset");
    let owned =
        |refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            let refs = refs.unwrap_or_default();
            refs.len() == 1 && refs[0].uid == owner && refs[0].controller == Some(true)
        };
    assert!(owned(sts.metadata.owner_references.clone()));
    for name in ["orders", "orders-headless"] {
        let svc: Service = cluster.api().get(name).await.expect("service");
        assert!(owned(svc.metadata.owner_references), "{name}");
    }
    let cm: ConfigMap = cluster.api().get("orders-config").await.expect("configmap");
    assert!(owned(cm.metadata.owner_references));
    assert!(cm.data.unwrap()["zz-keeper.cnf"].contains("max_connections = 300"));
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    assert!(
        env.iter()
            .all(|e| e.name == "MYSQL_DATABASE" || e.value.is_none()),
        "no literal secrets: {env:?}"
    );

    let status = cluster.instance("orders").await.status.expect("status");
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Provisioning"));
    assert_eq!(status.endpoint.as_deref(), Some("orders.shop.svc:3306"));
    assert_eq!(
        status.credentials_secret.as_deref(),
        Some("orders-credentials")
    );
    assert_eq!(status.observed_generation, Some(1));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotReady")
    );
    assert!(status.conditions.iter().any(|c| c.type_ == "StorageReady"));

    let reasons: Vec<String> = cluster.events().await.into_iter().map(|e| e.1).collect();
    assert_eq!(
        reasons.iter().filter(|r| *r == "Created").count(),
        // ConfigMap, 2 Services, StatefulSet; the agent's ServiceAccount, Role, RoleBinding.
        7,
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"CredentialsCreated".to_owned()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"Provisioning".to_owned()), "{reasons:?}");

    cluster.take_writes();
    cluster.reconcile("orders").await.expect("reconciles again");
    assert_eq!(
        cluster.take_writes(),
        Vec::<String>::new(),
        "an idle reconcile writes nothing"
    );
}

#[tokio::test]
async fn a_deleted_child_comes_back_and_drift_is_undone() {
    let cluster = cluster(instance("demo", json!({})), vec![]).await;
    cluster.reconcile("demo").await.expect("reconciles");
    let sts_api = cluster.api::<StatefulSet>();
    sts_api
        .delete("demo", &DeleteParams::default())
        .await
        .expect("deleted");
    cluster
        .api::<Service>()
        .delete("demo", &DeleteParams::default())
        .await
        .expect("deleted");
    cluster.take_writes();

    cluster.reconcile("demo").await.expect("reconciles");
    assert!(cluster.exists::<StatefulSet>("demo").await);
    assert!(cluster.exists::<Service>("demo").await);
    let writes: Vec<String> = cluster
        .take_writes()
        .into_iter()
        .filter(|w| !w.contains("Event"))
        .collect();
    assert_eq!(
        writes,
        ["patch demo", "patch demo"],
        "only the missing objects are written"
    );

    // Someone edits the image behind the operator's back.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "mysql", "image": "mysql:5.7"}]}}}});
    sts_api
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("edited");
    cluster.take_writes();
    cluster.reconcile("demo").await.expect("reconciles");
    let sts = sts_api.get("demo").await.expect("statefulset");
    let image = sts.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("mysql:8.4"));
    let writes: Vec<String> = cluster
        .take_writes()
        .into_iter()
        .filter(|w| !w.contains("Event"))
        .collect();
    assert_eq!(writes, ["patch demo"]);
}

#[tokio::test]
async fn a_spec_change_updates_config_and_rolls_the_pod() {
    let cluster = cluster(instance("demo", json!({})), vec![]).await;
    cluster.reconcile("demo").await.expect("reconciles");
    let hash = |sts: StatefulSet| {
        sts.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()["mysql.keeper.dev/config-hash"]
            .clone()
    };
    let before = hash(cluster.api::<StatefulSet>().get("demo").await.unwrap());
    let patch =
        json!({"metadata": {"generation": 2}, "spec": {"config": {"max_connections": "500"}}});
    cluster
        .api::<MySQLInstance>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("changed");
    cluster.take_writes();
    cluster.reconcile("demo").await.expect("reconciles");
    let after = hash(cluster.api::<StatefulSet>().get("demo").await.unwrap());
    assert_ne!(before, after);
    let writes = cluster.take_writes();
    assert!(
        writes.contains(&"patch demo-config".to_owned()),
        "{writes:?}"
    );
    assert!(writes.contains(&"patch demo".to_owned()), "{writes:?}");
    let status = cluster.instance("demo").await.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
}

#[tokio::test]
async fn ready_and_bound_make_the_instance_ready() {
    let cluster = cluster(instance("demo", json!({})), vec![]).await;
    cluster.reconcile("demo").await.expect("reconciles");
    // What the StatefulSet controller and the volume provisioner would do.
    let mut claim = PersistentVolumeClaim::default();
    claim.metadata.name = Some("data-demo-0".into());
    claim.metadata.namespace = Some(NS.into());
    claim.spec = Some(
        serde_json::from_value(json!({"resources": {"requests": {"storage": "10Gi"}}})).unwrap(),
    );
    claim.status = Some(serde_json::from_value(json!({"phase": "Bound"})).unwrap());
    cluster
        .api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    let ready = json!({"status": {"replicas": 1, "readyReplicas": 1}});
    cluster
        .api::<StatefulSet>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();

    cluster.reconcile("demo").await.expect("reconciles");
    let status = cluster.instance("demo").await.status.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    assert!(
        status.conditions.iter().all(|c| c.status == "True"),
        "{:?}",
        status.conditions
    );
    let events = cluster.events().await;
    assert!(
        events.contains(&("Normal".into(), "Ready".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("Normal".into(), "StorageBound".into())),
        "{events:?}"
    );

    // Growing the volume patches the claim (the claim template is immutable).
    let patch = json!({"spec": {"storage": {"size": "20Gi"}}});
    cluster
        .api::<MySQLInstance>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cluster.reconcile("demo").await.expect("reconciles");
    let claim = cluster
        .api::<PersistentVolumeClaim>()
        .get("data-demo-0")
        .await
        .unwrap();
    let size = claim.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
        .0
        .clone();
    assert_eq!(size, "20Gi");
    let sts = cluster.api::<StatefulSet>().get("demo").await.unwrap();
    let template = &sts.spec.unwrap().volume_claim_templates.unwrap()[0];
    let template_size = template
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"]
        .0
        .clone();
    assert_eq!(
        template_size, "10Gi",
        "the immutable claim template is kept"
    );
}

async fn assert_rejected(spec: serde_json::Value, secrets: Vec<Secret>, reason: &str) {
    let cluster = cluster(instance("bad", spec), secrets).await;
    let error = cluster.reconcile("bad").await.expect_err("invalid spec");
    assert_eq!(error.reason(), reason, "{error}");
    let status = cluster.instance("bad").await.status.expect("status");
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Failed"));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason)
    );
    assert!(
        cluster
            .events()
            .await
            .contains(&("Warning".into(), reason.into()))
    );
    assert!(!cluster.exists::<Secret>("bad-credentials").await);
    assert!(!cluster.exists::<StatefulSet>("bad").await);
    assert!(!cluster.exists::<ConfigMap>("bad-config").await);
    assert!(!cluster.exists::<Service>("bad").await);
    let writes = cluster.take_writes();
    assert!(
        writes
            .iter()
            .all(|w| w == "patch status bad" || w.starts_with("create Event")),
        "only status and Events are written: {writes:?}"
    );
    // Retrying an unchanged invalid spec does not rewrite the status.
    cluster.reconcile("bad").await.expect_err("still invalid");
    assert!(cluster.take_writes().iter().all(|w| !w.contains("status")));
}

#[tokio::test]
async fn invalid_specs_change_nothing_but_status_and_events() {
    let destination = json!({"pvc": {"claimName": "backups"}});
    assert_rejected(
        json!({"backup": {"schedule": "61 * * * *", "destination": destination}}),
        vec![],
        "InvalidSchedule",
    )
    .await;
    assert_rejected(
        json!({"backup": {"schedule": "@daily", "timeZone": "Mars/Olympus", "destination": destination}}),
        vec![],
        "InvalidTimeZone",
    )
    .await;
    assert_rejected(json!({"image": "MySQL:8 .4"}), vec![], "InvalidImage").await;
    assert_rejected(
        json!({"rootPasswordSecretRef": {"name": "missing"}}),
        vec![],
        "SecretNotFound",
    )
    .await;
    assert_rejected(
        json!({"rootPasswordSecretRef": {"name": "mine", "key": "pw"}}),
        vec![secret("mine", &[("other", "x")])],
        "SecretKeyNotFound",
    )
    .await;
}

#[tokio::test]
async fn a_users_root_secret_is_used_as_is() {
    let cluster = cluster(
        instance(
            "own",
            json!({"flavor": "mariadb", "rootPasswordSecretRef": {"name": "mine", "key": "pw"}}),
        ),
        vec![secret("mine", &[("pw", "s3cret")])],
    )
    .await;
    cluster.reconcile("own").await.expect("reconciles");
    assert!(
        !cluster.exists::<Secret>("own-credentials").await,
        "no credentials Secret"
    );
    let mine: Secret = cluster.api().get("mine").await.unwrap();
    assert_eq!(key(&mine, "pw"), "s3cret");
    let sts: StatefulSet = cluster.api().get("own").await.unwrap();
    let env = sts.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let root = env
        .iter()
        .find(|e| e.name == "MARIADB_ROOT_PASSWORD")
        .expect("root env");
    let selector = root
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (selector.name.as_str(), selector.key.as_str()),
        ("mine", "pw")
    );
    let status = cluster.instance("own").await.status.unwrap();
    assert_eq!(status.credentials_secret.as_deref(), Some("mine"));
}

#[tokio::test]
async fn credentials_survive_deleting_and_recreating_the_instance() {
    let cluster = cluster(instance("keep", json!({})), vec![]).await;
    cluster.reconcile("keep").await.expect("reconciles");
    let before = key(
        &cluster
            .api::<Secret>()
            .get("keep-credentials")
            .await
            .unwrap(),
        "root-password",
    );
    // The StatefulSet created the data claim; then the instance is deleted
    // (the garbage collector removes the owned children, not the Secret or claim).
    let mut claim = PersistentVolumeClaim::default();
    claim.metadata.name = Some("data-keep-0".into());
    claim.metadata.namespace = Some(NS.into());
    cluster
        .api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    cluster
        .api::<MySQLInstance>()
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        !cluster.exists::<StatefulSet>("keep").await,
        "owned children are collected"
    );
    assert!(cluster.exists::<Secret>("keep-credentials").await);
    assert!(cluster.exists::<PersistentVolumeClaim>("data-keep-0").await);

    cluster
        .api::<MySQLInstance>()
        .create(&PostParams::default(), &instance("keep", json!({})))
        .await
        .unwrap();
    cluster.reconcile("keep").await.expect("reconciles");
    let after = key(
        &cluster
            .api::<Secret>()
            .get("keep-credentials")
            .await
            .unwrap(),
        "root-password",
    );
    assert_eq!(before, after, "the re-created instance finds its password");
    assert!(cluster.exists::<StatefulSet>("keep").await);
}

#[tokio::test]
async fn a_lost_credentials_secret_is_not_regenerated_over_existing_data() {
    let cluster = cluster(instance("lost", json!({})), vec![]).await;
    let mut claim = PersistentVolumeClaim::default();
    claim.metadata.name = Some("data-lost-0".into());
    claim.metadata.namespace = Some(NS.into());
    cluster
        .api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    let error = cluster.reconcile("lost").await.expect_err("refuses");
    assert_eq!(error.reason(), "CredentialsMissing");
    assert!(!cluster.exists::<Secret>("lost-credentials").await);
    assert!(!cluster.exists::<StatefulSet>("lost").await);
    assert!(
        cluster
            .events()
            .await
            .contains(&("Warning".into(), "CredentialsMissing".into()))
    );
}

#[tokio::test]
async fn adding_a_user_later_adds_keys_without_touching_the_root_password() {
    let cluster = cluster(instance("grow", json!({})), vec![]).await;
    cluster.reconcile("grow").await.expect("reconciles");
    let before = cluster
        .api::<Secret>()
        .get("grow-credentials")
        .await
        .unwrap();
    let patch = json!({"spec": {"user": "app"}});
    cluster
        .api::<MySQLInstance>()
        .patch("grow", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    cluster.reconcile("grow").await.expect("reconciles");
    let after = cluster
        .api::<Secret>()
        .get("grow-credentials")
        .await
        .unwrap();
    assert_eq!(key(&before, "root-password"), key(&after, "root-password"));
    assert_eq!(key(&after, "username"), "app");
    assert_eq!(key(&after, "password").len(), 32);
}

/// The minimal sample has no schedule: its status has no `nextBackupTime`,
/// and the status write must not send one as `null` — a real API server
/// refuses that (`status.nextBackupTime in body must be of type string:
/// "null"`), and the instance would never get a phase.
#[tokio::test]
async fn the_minimal_sample_gets_a_status() {
    let sample = include_str!("../../deploy/samples/mysqlinstance-minimal.yaml");
    let mut instance: MySQLInstance = serde_yaml::from_str(sample).expect("the sample parses");
    instance.metadata.namespace = Some(NS.to_owned());
    instance.metadata.generation = Some(1);
    let cluster = cluster(instance, vec![]).await;
    cluster.reconcile("demo").await.expect("reconciles");
    let status = cluster.instance("demo").await.status.expect("a status");
    assert_eq!(
        status.phase.map(|p| p.as_str()),
        Some("Provisioning"),
        "{status:?}"
    );
    assert_eq!(status.next_backup_time, None);
    assert!(
        cluster
            .take_writes()
            .contains(&"patch status demo".to_owned()),
        "the status was written"
    );
    assert_eq!(cluster.fake.refusals(), Vec::<String>::new());
}

#[path = "common/refusals.rs"]
mod refusals;

/// The data claim as the StatefulSet controller makes it, `phase` as the
/// volume binder leaves it.
async fn data_claim(cluster: &Cluster, phase: &str) {
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-demo-0", "namespace": NS,
            "labels": {"mysql.keeper.dev/instance": "demo"}},
        "spec": {"resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": phase, "capacity": {"storage": "10Gi"}},
    }))
    .unwrap();
    cluster
        .api::<PersistentVolumeClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
}

fn resized(status: &keeper_crds::MySQLInstanceStatus) -> (String, String, String) {
    let c = keeper_crds::condition::find_condition(&status.conditions, "StorageResized")
        .expect("StorageResized");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn growing_the_volume_waits_for_binding_and_a_refusal_does_not_stop_the_reconcile() {
    let cluster = cluster(instance("demo", json!({})), vec![]).await;
    cluster.reconcile("demo").await.expect("reconciles");
    data_claim(&cluster, "Pending").await;
    let grow = json!({"spec": {"storage": {"size": "20Gi"}}});
    cluster
        .api::<MySQLInstance>()
        .patch("demo", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap();

    // A Pending claim's spec cannot change: nothing is sent, the condition says why.
    cluster.take_writes();
    cluster.reconcile("demo").await.expect("reconciles");
    let writes = cluster.take_writes();
    assert!(
        !writes.contains(&"patch data-demo-0".to_owned()),
        "{writes:?}"
    );
    let status = cluster.instance("demo").await.status.unwrap();
    let (ok, reason, _) = resized(&status);
    assert_eq!(
        (ok.as_str(), reason.as_str()),
        ("False", "WaitingForBinding")
    );

    // Bound, but the API server refuses (RBAC, or a storage class that
    // cannot expand): a condition and a Warning Event, and the rest of the
    // reconcile goes on (the status is written, the server becomes Ready).
    cluster
        .api::<PersistentVolumeClaim>()
        .patch_status(
            "data-demo-0",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
        )
        .await
        .unwrap();
    cluster
        .api::<StatefulSet>()
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    let refused = refusals::forbidding(
        cluster.fake.operator(),
        http::Method::PATCH,
        "/persistentvolumeclaims/data-demo-0",
    );
    let ctx = Arc::new(
        Context::new(
            refused,
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(Arc::new(common::NoAccounts)),
    );
    reconcile(Arc::new(cluster.instance("demo").await), ctx)
        .await
        .expect("a refused resize does not fail the reconcile");
    let status = cluster.instance("demo").await.status.unwrap();
    assert_eq!(status.phase.map(|p| p.as_str()), Some("Ready"));
    let (ok, reason, message) = resized(&status);
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "ResizeRefused"));
    assert!(message.contains("403"), "{message}");
    assert!(
        cluster
            .events()
            .await
            .contains(&("Warning".into(), "ResizeRefused".into()))
    );

    // Allowed: the claim asks for the new size; then the volume has it.
    cluster.reconcile("demo").await.expect("reconciles");
    let claim = cluster
        .api::<PersistentVolumeClaim>()
        .get("data-demo-0")
        .await
        .unwrap();
    let size = claim.spec.unwrap().resources.unwrap().requests.unwrap()["storage"]
        .0
        .clone();
    assert_eq!(size, "20Gi");
    let status = cluster.instance("demo").await.status.unwrap();
    assert_eq!(resized(&status).1, "Resizing");
    cluster
        .api::<PersistentVolumeClaim>()
        .patch_status(
            "data-demo-0",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"capacity": {"storage": "20Gi"}}})),
        )
        .await
        .unwrap();
    cluster.reconcile("demo").await.expect("reconciles");
    let status = cluster.instance("demo").await.status.unwrap();
    let (ok, reason, _) = resized(&status);
    assert_eq!((ok.as_str(), reason.as_str()), ("True", "Resized"));
    let events = cluster.events().await;
    assert!(
        events.contains(&("Normal".into(), "StorageExpanding".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("Normal".into(), "Resized".into())),
        "{events:?}"
    );
}

/// A store filled with every `K` of the namespace, as a synced watch would.
async fn cache_of<K>(client: &Client) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    use kube::runtime::watcher::Event as WatchEvent;
    let (reader, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&WatchEvent::Init);
    let objects = Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list");
    for object in objects.items {
        writer.apply_watcher_event(&WatchEvent::InitApply(object));
    }
    writer.apply_watcher_event(&WatchEvent::InitDone);
    reader
}

/// What the controller watches of instance `orders`, as `resource/name`.
const WATCHED_CHILDREN: [&str; 5] = [
    "statefulsets/orders",
    "services/orders",
    "services/orders-headless",
    "configmaps/orders-config",
    "secrets/orders-credentials",
];

/// The operator's GETs since `from`, as `resource/name`.
fn operator_gets(fake: &FakeCluster, from: usize) -> Vec<String> {
    fake.calls_of(&keeper_tests::kube::Identity::Operator)
        .into_iter()
        .skip(from)
        .filter(|c| c.request.verb == "get")
        .map(|c| {
            format!(
                "{}/{}",
                c.request.resource,
                c.request.name.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_reconcile_reads_what_the_controller_watches_from_its_caches() {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    use k8s_openapi::api::core::v1::Pod;
    let cluster = cluster(instance("orders", json!({"user": "app"})), vec![]).await;
    cluster.reconcile("orders").await.expect("reconciles");

    // Without caches every child is read from the API.
    let before = cluster
        .fake
        .calls_of(&keeper_tests::kube::Identity::Operator)
        .len();
    cluster.reconcile("orders").await.expect("reconciles again");
    let uncached = operator_gets(&cluster.fake, before);
    for child in WATCHED_CHILDREN {
        assert!(
            uncached.contains(&child.to_owned()),
            "{child}: {uncached:?}"
        );
    }

    // With the controller's caches, what exists is read from memory; what
    // they do not hold (the data claim, which no StatefulSet controller
    // made here) is still asked for, so an absent object is never assumed.
    let admin = &cluster.client;
    cluster.ctx.use_caches(keeper_operator::caches::Caches {
        stateful_sets: cache_of::<StatefulSet>(admin).await,
        services: cache_of::<Service>(admin).await,
        config_maps: cache_of::<ConfigMap>(admin).await,
        secrets: cache_of::<Secret>(admin).await,
        claims: cache_of::<PersistentVolumeClaim>(admin).await,
        jobs: cache_of::<Job>(admin).await,
        cron_jobs: cache_of::<CronJob>(admin).await,
        pods: cache_of::<Pod>(admin).await,
    });
    cluster.take_writes();
    let before = cluster
        .fake
        .calls_of(&keeper_tests::kube::Identity::Operator)
        .len();
    cluster
        .reconcile("orders")
        .await
        .expect("reconciles from the caches");
    let cached = operator_gets(&cluster.fake, before);
    for child in WATCHED_CHILDREN {
        assert!(!cached.contains(&child.to_owned()), "{child}: {cached:?}");
    }
    assert!(
        cached.contains(&"persistentvolumeclaims/data-orders-0".to_owned()),
        "{cached:?}"
    );
    assert_eq!(
        cluster.take_writes(),
        Vec::<String>::new(),
        "the same decisions: an idle reconcile still writes nothing"
    );
}
