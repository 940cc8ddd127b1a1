//! Reconcile of one `MySQLInstance`: fetch → validate → build (pure) → apply →
//! status. Each step is a module; this one only puts them in order.
//!
//! | module | what it is |
//! |---|---|
//! | [`fetch`] | the reads: the instance's children as they are |
//! | [`validate`] | the spec checks that need the cluster (Secrets) |
//! | [`build`] | pure builders of the server's objects, the CronJob and the agent's RBAC |
//! | [`apply`] | the one applier: server-side apply with the field manager, the no-op check, Events naming the child |
//! | [`credentials`] | the generated passwords' Secret, created or completed, never changed |
//! | [`storage`] | growing the data claim (`StorageResized`) |
//! | [`backup_schedule`] | the agent's identity, the backup user, the CronJob and the backup conditions |
//! | [`restore`] | `spec.restoreFrom`: the source, the Job, the hold on the server |
//! | [`final_backup`] | deletion with `backupOnDelete`: observe → decide (pure) → act |
//! | [`status`] | the status and its conditions, written once |

pub mod apply;
pub mod backup_schedule;
pub mod build;
pub mod credentials;
pub mod fetch;
pub mod final_backup;
pub mod restore;
pub mod status;
pub mod storage;
pub mod validate;

use std::time::Duration;

use chrono::Utc;
use keeper_crds::MySQLInstance;
use kube::runtime::controller::Action;
use kube::{Api, Resource};

use self::build::{InstanceMeta, service, statefulset};
use self::status::Readiness;
use crate::context::Context;
use crate::error::{Error, Result};

/// How often a ready instance is looked at without any watch event.
const READY_REQUEUE: Duration = Duration::from_secs(300);
/// How often an instance that is still coming up is looked at (the data
/// claim's binding is not an owned object's change).
const PROVISIONING_REQUEUE: Duration = Duration::from_secs(30);

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
    credentials::ensure(ctx, &namespace, &meta, instance, &observed).await?;

    let pinned = observed
        .stateful_set
        .as_ref()
        .and_then(statefulset::claim_template_storage);
    let desired = build::desired_objects(instance, pinned.as_ref())?;

    let applier = apply::Applier::new(ctx, instance, &namespace);
    applier
        .apply(&desired.config_map, observed.config_map.as_ref())
        .await?;
    applier
        .apply(
            &desired.headless_service,
            observed.headless_service.as_ref(),
        )
        .await?;
    let stateful_set = applier
        .apply(&desired.stateful_set, observed.stateful_set.as_ref())
        .await?;

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
    let account_requeue = restore::hold::release(
        ctx,
        instance,
        &observed,
        readiness.ready_replicas,
        restoring.holds_server,
    )
    .await;
    // Applied after the restore step, so the Service opens in the reconcile
    // that records the restore (and never before the account is unlocked).
    let client_service = service::client(&meta, restoring.holds_server);
    applier
        .apply(&client_service, observed.client_service.as_ref())
        .await?;
    status::publish_and_write(ctx, instance, new).await?;

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
