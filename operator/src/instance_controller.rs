//! The `MySQLInstance` controller: watches, the reconcile entry point with
//! metrics and error Events, and the retry policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keeper_crds::{INSTANCE_LABEL, MySQLBackup, MySQLInstance};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::caches::Caches;
use crate::context::Context;
use crate::error::Error;
use crate::instance;
use crate::instance::build::{MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL};

/// Reconciles one instance: the entry point the controller calls (and tests
/// call directly). Records metrics; a failure becomes a Warning Event with
/// the error's reason.
///
/// # Errors
/// The reconcile's [`Error`]; the controller retries with [`error_policy`].
pub async fn reconcile(instance: Arc<MySQLInstance>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = ObjectRef::from_obj(instance.as_ref());
    let result = instance::reconcile(&instance, &ctx).await;
    match &result {
        Ok(_) => ctx.reset_backoff(&key),
        Err(error) => {
            if error.is_user_error() {
                tracing::warn!(instance = %key, reason = error.reason(), %error, "cannot reconcile");
            } else {
                tracing::error!(instance = %key, reason = error.reason(), %error, "reconcile failed");
            }
            ctx.publish(
                &instance,
                EventType::Warning,
                error.reason(),
                "Reconcile",
                error.to_string(),
            )
            .await;
        }
    }
    ctx.metrics
        .instances
        .record(started.elapsed(), result.as_ref().err().map(Error::reason));
    result
}

/// Retries a failed reconcile after an exponential backoff per instance.
pub fn error_policy(instance: Arc<MySQLInstance>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.backoff_after_failure(&ObjectRef::from_obj(instance.as_ref())))
}

/// The instance an object belongs to, by its `mysql.keeper.dev/instance`
/// label: how a credentials Secret or a data claim (neither is owned) leads
/// back to its instance.
pub fn instance_for_labeled(meta: &ObjectMeta) -> Option<ObjectRef<MySQLInstance>> {
    let name = meta.labels.as_ref()?.get(INSTANCE_LABEL)?;
    let namespace = meta.namespace.as_ref()?;
    Some(ObjectRef::new(name).within(namespace))
}

/// The instance that owns an object as its controller: what `.owns()` maps a
/// StatefulSet, Service or ConfigMap to.
pub fn instance_for_owned(meta: &ObjectMeta) -> Option<ObjectRef<MySQLInstance>> {
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind != "MySQLInstance" || owner.api_version != keeper_crds::API_GROUP_VERSION {
        return None;
    }
    Some(ObjectRef::new(&owner.name).within(meta.namespace.as_deref()?))
}

/// The instance a `MySQLBackup` is of.
pub fn instance_of_backup(backup: &MySQLBackup) -> Option<ObjectRef<MySQLInstance>> {
    let namespace = backup.metadata.namespace.as_ref()?;
    Some(ObjectRef::new(&backup.spec.instance_ref.name).within(namespace))
}

/// What of a `MySQLBackup` the instance's status is derived from: its
/// phase and its proof (`lastVerifiedBackup`, `BackupsVerified`). The
/// agent's progress reports every few seconds change neither, so they do
/// not wake the instance.
pub fn backup_facts(backup: &MySQLBackup) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let status = backup.status.as_ref();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status.and_then(|s| s.phase).hash(&mut hasher);
    status
        .and_then(|s| s.verification.as_ref())
        .map(|v| (v.phase, v.time))
        .hash(&mut hasher);
    Some(hasher.finish())
}

fn managed_by_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// The operator's agent pods (backup and restore Jobs'), not the servers'.
fn agent_pod_selector() -> String {
    format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{NAME_LABEL}={}",
        crate::agent_job::AGENT_NAME
    )
}

/// A watch of `api` that fills a cache ([`crate::caches`]) and yields
/// the changed objects as a controller trigger: one watch for both.
fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (cache, writer) = reflector::store();
    let changes = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (cache, changes)
}

/// Runs the controller for one namespace (`None`: all namespaces) until
/// `shutdown` is cancelled; `synced` turns true once its caches are filled.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: CancellationToken,
    synced: Arc<AtomicBool>,
) {
    let client: Client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    // Children are selected by the managed-by label, so the caches hold only
    // the operator's objects, not every Secret or Service of the cluster.
    let children = watcher::Config::default().labels(&managed_by_selector());
    let (stateful_sets, stateful_set_changes) =
        cached_watch(api::<StatefulSet>(&client, ns), children.clone());
    let (services, service_changes) = cached_watch(api::<Service>(&client, ns), children.clone());
    let (config_maps, config_map_changes) =
        cached_watch(api::<ConfigMap>(&client, ns), children.clone());
    // Restore Jobs: their end moves the instance from Restoring on.
    let (jobs, job_changes) = cached_watch(api::<Job>(&client, ns), children.clone());
    // The scheduled backups' CronJob: drift or deletion is undone.
    let (cron_jobs, cron_job_changes) = cached_watch(api::<CronJob>(&client, ns), children.clone());
    let (secrets, secret_changes) = cached_watch(api::<Secret>(&client, ns), children);
    // The agent's pods (scheduled backups, restores): a pod that cannot
    // start is seen as soon as the scheduler or the kubelet says so.
    let (pods, pod_changes) = cached_watch(
        api::<Pod>(&client, ns),
        watcher::Config::default().labels(&agent_pod_selector()),
    );
    let (claims, claim_changes) = cached_watch(
        api::<PersistentVolumeClaim>(&client, ns),
        watcher::Config::default().labels(INSTANCE_LABEL),
    );
    // Backups: their proofs are the instance's BackupsVerified.
    let backup_changes = watcher(api::<MySQLBackup>(&client, ns), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(backup_facts, PredicateConfig::default());
    ctx.use_caches(Caches {
        stateful_sets,
        services,
        config_maps,
        secrets,
        claims,
        jobs,
        cron_jobs,
        pods,
    });
    let controller = Controller::new(
        api::<MySQLInstance>(&client, ns),
        watcher::Config::default(),
    )
    .owns_stream(stateful_set_changes)
    .owns_stream(service_changes)
    .owns_stream(config_map_changes)
    .owns_stream(job_changes)
    .owns_stream(cron_job_changes)
    .watches_stream(secret_changes, |secret: Secret| {
        instance_for_labeled(&secret.metadata)
    })
    .watches_stream(pod_changes, |pod: Pod| instance_for_labeled(&pod.metadata))
    .watches_stream(claim_changes, |claim: PersistentVolumeClaim| {
        instance_for_labeled(&claim.metadata)
    })
    .watches_stream(backup_changes, |backup: MySQLBackup| {
        instance_of_backup(&backup)
    });
    let store = controller.store();
    // The backup metrics read this cache while the controller runs.
    let _metrics = ctx.metrics.instance_backups.watch_instances(store.clone());
    let readiness = tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            synced.store(true, Ordering::SeqCst);
        }
    });
    tracing::info!(
        namespace = ns.unwrap_or("<all>"),
        "starting MySQLInstance controller"
    );
    controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(instance = %object, "reconciled"),
                Err(error) => tracing::debug!(%error, "controller event"),
            }
        })
        .await;
    readiness.abort();
    // The MySQLBackup controller beside it stops too.
    shutdown.cancel();
    tracing::info!(namespace = ns.unwrap_or("<all>"), "controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::build::{self, InstanceMeta, secret};

    fn instance() -> MySQLInstance {
        let spec = serde_json::from_value(serde_json::json!({"user": "app"})).expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        instance.metadata.uid = Some("0000-1111".into());
        instance
    }

    #[test]
    fn owned_children_map_to_their_instance() {
        let instance = instance();
        let objects = build::desired_objects(&instance, None).expect("builds");
        let expected = Some(ObjectRef::new("orders").within("shop"));
        assert_eq!(instance_for_owned(&objects.stateful_set.metadata), expected);
        assert_eq!(instance_for_owned(&objects.config_map.metadata), expected);
        assert_eq!(
            instance_for_owned(&objects.client_service.metadata),
            expected
        );
        assert_eq!(
            instance_for_owned(&objects.headless_service.metadata),
            expected
        );
        // Someone else's child does not map.
        let mut foreign = objects.stateful_set.metadata.clone();
        if let Some(owner) = foreign
            .owner_references
            .as_mut()
            .and_then(|o| o.first_mut())
        {
            owner.kind = "Deployment".into();
            owner.api_version = "apps/v1".into();
        }
        assert_eq!(instance_for_owned(&foreign), None);
        assert_eq!(instance_for_owned(&ObjectMeta::default()), None);
    }

    #[test]
    fn labeled_secrets_and_claims_map_to_their_instance() {
        let instance = instance();
        let meta = InstanceMeta::of(&instance).expect("meta");
        let credentials = secret::build(&meta, Default::default());
        assert!(credentials.metadata.owner_references.is_none(), "not owned");
        assert_eq!(
            instance_for_labeled(&credentials.metadata),
            Some(ObjectRef::new("orders").within("shop"))
        );
        // A claim made from the StatefulSet's template carries its labels.
        let objects = build::desired_objects(&instance, None).expect("builds");
        let template = objects
            .stateful_set
            .spec
            .and_then(|s| s.volume_claim_templates)
            .and_then(|t| t.into_iter().next())
            .expect("claim template");
        let mut claim_meta = template.metadata;
        claim_meta.name = Some(meta.data_claim_name());
        claim_meta.namespace = Some("shop".into());
        assert_eq!(
            instance_for_labeled(&claim_meta),
            Some(ObjectRef::new("orders").within("shop"))
        );
        assert_eq!(instance_for_labeled(&ObjectMeta::default()), None);
    }

    #[test]
    fn agent_pods_map_to_their_instance_and_only_they_are_watched() {
        use crate::agent_job::{self, AgentCommand, AgentRun};
        let spec = serde_json::from_value(serde_json::json!({"backup": {"destination":
            {"s3": {"bucket": "b"}}}}))
        .expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        let destination = instance.backup_destination().cloned().expect("destination");
        let run = AgentRun {
            name: String::new(),
            command: AgentCommand::Backup {
                destination: &destination,
                backup_name: None,
                databases: &[],
                compression: None,
                compression_level: None,
                retention: None,
            },
            owner: None,
            labels: Default::default(),
        };
        let labels = agent_job::job_labels(&instance, &run).expect("labels");
        for pair in agent_pod_selector().split(',') {
            let (key, value) = pair.split_once('=').expect("key=value");
            assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
        }
        let pod = ObjectMeta {
            namespace: Some("shop".into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        };
        assert_eq!(
            instance_for_labeled(&pod),
            Some(ObjectRef::new("orders").within("shop"))
        );
    }
}
