//! Reconcile of one `MySQLInstance`: observe → validate → decide → act → one
//! status write. Each step is a module; this one only puts them in order.
//! Each feature (the server, backups, restore, deletion) decides with a pure,
//! unit-tested function over what was observed (`build`, `decide_schedule`,
//! `restore::decide::decide`, `final_backup::decide`), and its act step
//! carries the answer out through the one applier and the Events.
//!
//! | module | what it is |
//! |---|---|
//! | [`fetch`] | the reads, once each: the instance's children as they are, from the watch caches where there is one |
//! | [`validate`] | the spec checked (with the Secrets it names) and parsed once into `Valid` |
//! | [`build`] | pure builders of the server's objects, the CronJob and the agent's RBAC |
//! | [`apply`] | the one applier: server-side apply with the field manager, the no-op check, Events naming the child |
//! | [`server`] | the server's objects applied, its readiness; the client Service opened after a restore |
//! | [`credentials`] | the generated passwords' Secret, created or completed, never changed |
//! | [`storage`] | growing the data claim (`StorageResized`) |
//! | [`backup_schedule`] | the agent's identity, the backup user, the CronJob and the backup conditions |
//! | [`restore`] | `spec.restoreFrom`: observe → decide (pure) → act; the Job, the hold on the server |
//! | [`final_backup`] | deletion with `backupOnDelete`: observe → decide (pure) → act |
//! | [`verification`] | `lastVerifiedBackup` and `BackupsVerified`, derived (pure) from the backups' proofs |
//! | [`status`] | the status and its conditions, written once |

pub mod apply;
pub mod backup_schedule;
pub mod build;
pub mod credentials;
pub mod fetch;
pub mod final_backup;
pub mod restore;
pub mod server;
pub mod status;
pub mod storage;
pub mod validate;
pub mod verification;

use std::time::Duration;

use chrono::Utc;
use keeper_crds::MySQLInstance;
use kube::Resource;
use kube::runtime::controller::Action;

use self::build::InstanceMeta;
use crate::context::Context;
use crate::error::Result;

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
/// Any [`crate::error::Error`]; its reason is the Event's.
pub async fn reconcile(instance: &MySQLInstance, ctx: &Context) -> Result<Action> {
    if instance.meta().deletion_timestamp.is_some() {
        // Owned children are garbage-collected; the credentials Secret and the
        // data claim stay on purpose. With backupOnDelete a final backup runs first.
        return final_backup::on_delete(ctx, instance, Utc::now()).await;
    }
    let now = Utc::now();
    let meta = InstanceMeta::of(instance)?;
    let observed = fetch::observe(ctx, &meta, instance).await?;
    let valid = match validate::validate(instance, meta, &observed) {
        Ok(valid) => valid,
        Err(error) => return Err(status::refuse(ctx, instance, error, now).await),
    };

    final_backup::sync_finalizer(ctx, instance).await?;
    credentials::ensure(ctx, &valid, instance, &observed).await?;
    let applier = apply::Applier::new(ctx, instance, &valid.namespace);
    let readiness = server::apply(&applier, instance, &observed).await?;

    let mut new = status::healthy(instance, &valid.meta, &readiness, now);
    // Not essential: a volume that cannot grow is a condition, and the rest
    // of the reconcile goes on.
    let claim = observed.data_claim.as_ref();
    storage::reconcile(ctx, instance, &valid.namespace, claim, &mut new, now).await;
    let backup_requeue =
        backup_schedule::reconcile(ctx, instance, &valid, &observed, &readiness, &mut new, now)
            .await?;
    let verification_requeue =
        verification::reconcile(ctx, instance, &valid, &mut new, now).await?;
    let restoring = restore::reconcile(ctx, instance, &observed, &readiness, &mut new).await?;
    let held = restoring.holds_server;
    let ready = readiness.ready_replicas;
    let account_requeue = restore::hold::release(ctx, instance, &observed, ready, held).await;
    server::open_to_clients(&applier, &valid.meta, &observed, held).await?;
    status::publish_and_write(ctx, instance, new).await?;

    let usual = if ready >= 1 {
        READY_REQUEUE
    } else {
        PROVISIONING_REQUEUE
    };
    Ok(Action::requeue(
        [
            restoring.requeue,
            backup_requeue,
            verification_requeue,
            account_requeue,
        ]
        .into_iter()
        .flatten()
        .fold(usual, Duration::min),
    ))
}
