//! Reconcile of one `MySQLInstance`: fetch → validate → build (pure) → apply →
//! status. Each step is a module; this one only puts them in order.
//!
//! | module | what it is |
//! |---|---|
//! | [`fetch`] | the reads: the instance's children as they are |
//! | [`validate`] | the spec checks that need the cluster (Secrets) |
//! | [`build`] | pure builders of the server's objects, the CronJob and the agent's RBAC |
//! | [`apply`] | server-side apply with the field manager and the no-op check |
//! | [`storage`] | growing the data claim (`StorageResized`) |
//! | [`backup_schedule`] | the agent's identity, the backup user, the CronJob and the backup conditions |
//! | [`restore`] | `spec.restoreFrom`: the source, the Job, the hold on the server |
//! | [`final_backup`] | deletion with `backupOnDelete` |
//! | [`status`] | the status and its conditions, written once |

pub mod apply;
pub mod backup_schedule;
pub mod build;
pub mod fetch;
pub mod final_backup;
pub mod restore;
pub mod status;
pub mod storage;
pub mod validate;

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret, Service};
use keeper_crds::MySQLInstance;
use keeper_crds::instance::DEFAULT_ROOT_PASSWORD_KEY;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde_json::json;

use self::apply::Outcome;
use self::build::{InstanceMeta, secret, service, statefulset};
use self::fetch::Observed;
use self::status::Readiness;
use crate::accounts::AppAccess;
use crate::context::Context;
use crate::error::{Error, Result};

/// How often a ready instance is looked at without any watch event.
const READY_REQUEUE: Duration = Duration::from_secs(300);
/// How often an instance that is still coming up is looked at (the data
/// claim's binding is not an owned object's change).
const PROVISIONING_REQUEUE: Duration = Duration::from_secs(30);
/// Retry delay when the application account could not be unlocked.
const ACCOUNT_RETRY: Duration = Duration::from_secs(30);

/// Reconciles `instance`. On an invalid spec the status says why and the
/// error is returned (the caller publishes it as an Event and retries with
/// backoff); nothing else is created or changed.
///
/// # Errors
/// Any [`Error`]; its reason is the Event's.
pub async fn reconcile(instance: &MySQLInstance, ctx: &Context) -> Result<Action> {
    let meta = InstanceMeta::of(instance)?;
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    if instance.meta().deletion_timestamp.is_some() {
        // Owned children are garbage-collected; the credentials Secret and the
        // data claim stay on purpose. With backupOnDelete a final backup runs first.
        return final_backup::on_delete(ctx, instance, Utc::now()).await;
    }
    let client = &ctx.client;
    let instances = Api::<MySQLInstance>::namespaced(client.clone(), &namespace);
    let manager = ctx.config.field_manager.as_str();

    let observed = fetch::observe(client, &namespace, &meta, instance).await?;

    let problems = validate::problems(instance, &observed);
    if let Some(error) = validate::into_error(&problems) {
        let mut new = status::invalid(instance, &error, Utc::now());
        backup_schedule::mark_invalid(instance, &mut new, Utc::now());
        status::write(&instances, instance, &new, manager).await?;
        return Err(error);
    }

    final_backup::sync_finalizer(ctx, instance).await?;
    ensure_credentials(ctx, &namespace, &meta, instance, &observed).await?;

    let pinned = observed
        .stateful_set
        .as_ref()
        .and_then(statefulset::claim_template_storage);
    let desired = build::desired_objects(instance, pinned.as_ref())?;

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    let services = Api::<Service>::namespaced(client.clone(), &namespace);
    let stateful_sets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let (outcome, _) = apply::apply(
        &config_maps,
        &desired.config_map,
        observed.config_map.as_ref(),
        manager,
    )
    .await?;
    report::<ConfigMap>(ctx, instance, outcome, &meta.config_map_name()).await;
    let (outcome, _) = apply::apply(
        &services,
        &desired.headless_service,
        observed.headless_service.as_ref(),
        manager,
    )
    .await?;
    report::<Service>(ctx, instance, outcome, &meta.headless_service_name()).await;
    let (outcome, stateful_set) = apply::apply(
        &stateful_sets,
        &desired.stateful_set,
        observed.stateful_set.as_ref(),
        manager,
    )
    .await?;
    report::<StatefulSet>(ctx, instance, outcome, &meta.name).await;

    let readiness = Readiness::observe(Some(&stateful_set), observed.data_claim.as_ref());
    let mut new = status::healthy(instance, &meta, &readiness, Utc::now());
    // Not essential: a volume that cannot grow is a condition, and the rest
    // of the reconcile goes on.
    storage::reconcile(
        ctx,
        instance,
        &namespace,
        observed.data_claim.as_ref(),
        &mut new,
        Utc::now(),
    )
    .await;
    let backup_requeue = backup_schedule::reconcile(
        ctx,
        instance,
        &meta,
        &observed,
        &readiness,
        &mut new,
        Utc::now(),
    )
    .await?;
    let restoring = restore::reconcile(ctx, instance, &observed, &readiness, &mut new).await?;
    let mut account_requeue = None;
    if !restoring.holds_server
        && readiness.ready_replicas >= 1
        && restore::hold::ensure_app_access(ctx, instance, &observed, AppAccess::Open)
            .await
            .is_err()
    {
        // Published as an Event; the next attempt comes soon.
        account_requeue = Some(ACCOUNT_RETRY);
    }
    // Applied after the restore step, so the Service opens in the reconcile
    // that records the restore (and never before the account is unlocked).
    let client_service = service::client(&meta, restoring.holds_server);
    let (outcome, _) = apply::apply(
        &services,
        &client_service,
        observed.client_service.as_ref(),
        manager,
    )
    .await?;
    report::<Service>(ctx, instance, outcome, &meta.client_service_name()).await;
    status::keep_transition_times(instance.status.as_ref(), &mut new);
    for transition in status::transitions(instance.status.as_ref(), &new) {
        ctx.publish(
            instance,
            transition.type_,
            &transition.reason,
            "Reconcile",
            transition.note,
        )
        .await;
    }
    status::write(&instances, instance, &new, manager).await?;

    let requeue = if readiness.ready_replicas >= 1 {
        READY_REQUEUE
    } else {
        PROVISIONING_REQUEUE
    };
    Ok(Action::requeue(
        [restoring.requeue, backup_requeue, account_requeue]
            .into_iter()
            .flatten()
            .fold(requeue, Duration::min),
    ))
}

/// Publishes `Created`/`Updated` for a child object; nothing when unchanged.
async fn report<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    instance: &MySQLInstance,
    outcome: Outcome,
    name: &str,
) {
    let kind = K::kind(&());
    let kind = kind.as_ref();
    let api_version = K::api_version(&());
    let api_version = api_version.as_ref();
    let reason = match outcome {
        Outcome::Created => "Created",
        Outcome::Updated => "Updated",
        Outcome::Unchanged => return,
    };
    tracing::info!(kind, name, reason, "applied");
    // The child as the Event's related object: it is what the Event is about,
    // and it keeps the Recorder from folding different children into one series.
    let related = ObjectReference {
        api_version: Some(api_version.to_owned()),
        kind: Some(kind.to_owned()),
        name: Some(name.to_owned()),
        namespace: instance.metadata.namespace.clone(),
        ..ObjectReference::default()
    };
    ctx.publish_related(
        instance,
        EventType::Normal,
        reason,
        "Apply",
        format!("{reason} {kind} {name}"),
        Some(related),
    )
    .await;
}

/// Creates `<name>-credentials` when the operator must generate passwords and
/// it does not exist, or adds the keys it lacks (e.g. `spec.user` was set
/// later). Existing values are never changed.
async fn ensure_credentials(
    ctx: &Context,
    namespace: &str,
    meta: &InstanceMeta,
    instance: &MySQLInstance,
    observed: &Observed,
) -> Result<()> {
    let name = instance.credentials_secret_name();
    let missing = secret::missing_entries(
        instance,
        observed.credentials.as_ref(),
        &mut secret::generate_password,
    );
    if missing.is_empty() {
        return Ok(());
    }
    // The server initialised its data with the old root password: a new one
    // would lock everyone out, so refuse to guess.
    if missing.contains_key(DEFAULT_ROOT_PASSWORD_KEY)
        && let Some(claim) = &observed.data_claim
    {
        return Err(Error::CredentialsMissing {
            name,
            claim: claim.metadata.name.clone().unwrap_or_default(),
        });
    }
    let keys = missing.keys().cloned().collect::<Vec<_>>().join(", ");
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let failed = |source| Error::CredentialsFailed {
        name: name.clone(),
        source: Box::new(source),
    };
    let reason = match &observed.credentials {
        None => {
            match secrets
                .create(&PostParams::default(), &secret::build(meta, missing))
                .await
            {
                Ok(_) => {}
                // Created meanwhile by another reconcile: never overwrite it.
                Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
                Err(source) => return Err(failed(source)),
            }
            "CredentialsCreated"
        }
        Some(_) => {
            // A merge patch of the missing keys only: it cannot change a
            // value that exists.
            let patch = json!({ "data": missing });
            secrets
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(failed)?;
            "CredentialsUpdated"
        }
    };
    ctx.publish(
        instance,
        EventType::Normal,
        reason,
        "Credentials",
        format!("Secret {name}: generated {keys}"),
    )
    .await;
    Ok(())
}
