//! `spec.backupOnDelete`: a finalizer holds the instance's deletion until a
//! final backup has run.
//!
//! * While `backupOnDelete` is true the instance carries the finalizer
//!   [`FINALIZER`]; turning it off removes the finalizer.
//! * On deletion, with the finalizer present: the operator creates the
//!   `MySQLBackup` `<name>-final-<UTC stamp>` once (recorded in
//!   `status.finalBackup`, phase `Deleting`), and the `MySQLBackup`
//!   controller runs it like any on-demand backup. The server keeps running
//!   meanwhile (owned objects are only collected once the finalizer is gone).
//! * Succeeded: the finalizer is removed. Failed, gone, or not done within the
//!   timeout (default 1 h after `deletionTimestamp`, `--final-backup-timeout`):
//!   `status.finalBackup` says so, a Warning Event is published, and the
//!   finalizer is removed anyway — a deletion must not hang forever on a
//!   broken destination.
//! * When the final backup can no longer run, the finalizer is removed at
//!   once, with a Warning Event, rather than after the timeout: the
//!   instance's namespace is being deleted (it takes the Job and the
//!   `MySQLBackup` with it; the operator reads the Namespace, and needs no
//!   watch on it — see [`namespace_terminating`]), or creating the
//!   `MySQLBackup` is forbidden (403). A forbidden Job is reported by the
//!   `MySQLBackup` controller as a Failed backup ([`crate::backup_controller`]), which
//!   ends the wait the same way.
//! * Uninstalling: delete the instances first and wait for them, then the
//!   operator (README). An operator removed first leaves the finalizer for
//!   a person to remove.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use keeper_crds::condition::from_k8s_time;
use keeper_crds::names::backup_name;
use keeper_crds::{
    BackupPhase, FinalBackupStatus, InstancePhase, MySQLBackup, MySQLInstance, MySQLInstanceStatus,
};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::status;
use crate::context::Context;
use crate::error::{Error, Result};

/// The finalizer that holds a deletion for the final backup.
pub const FINALIZER: &str = "mysql.keeper.dev/final-backup";
/// How often a deletion waiting for its final backup is looked at.
const WAIT_REQUEUE: Duration = Duration::from_secs(30);

fn has_finalizer(instance: &MySQLInstance) -> bool {
    instance
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Adds or removes [`FINALIZER`] on the stored instance: read fresh (a status
/// write of this reconcile changed its resourceVersion), written with that
/// resourceVersion so a concurrent change of the list is a conflict (retried),
/// never lost.
async fn set_finalizers(ctx: &Context, instance: &MySQLInstance, add: bool) -> Result<()> {
    let name = instance.metadata.name.clone().unwrap_or_default();
    let namespace = instance.metadata.namespace.clone().unwrap_or_default();
    let api = Api::<MySQLInstance>::namespaced(ctx.client.clone(), &namespace);
    let Some(current) = api.get_opt(&name).await.map_err(|source| Error::Kube {
        what: format!("MySQLInstance {namespace}/{name}"),
        source: Box::new(source),
    })?
    else {
        return Ok(());
    };
    let mut finalizers: Vec<String> = current.metadata.finalizers.clone().unwrap_or_default();
    finalizers.retain(|f| f != FINALIZER);
    if add {
        finalizers.push(FINALIZER.to_owned());
    }
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": current.metadata.resource_version,
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::FinalizerFailed {
            name,
            source: Box::new(source),
        })?;
    Ok(())
}

/// Adds or removes the finalizer to match `spec.backupOnDelete`.
///
/// # Errors
/// [`Error::FinalizerFailed`].
pub async fn sync_finalizer(ctx: &Context, instance: &MySQLInstance) -> Result<()> {
    let wanted = instance.spec.backup_on_delete && instance.spec.backup.is_some();
    if wanted != has_finalizer(instance) {
        set_finalizers(ctx, instance, wanted).await?;
    }
    Ok(())
}

/// Why the final backup can no longer run because of its namespace: the
/// namespace is being deleted (its Jobs and MySQLBackups go with it, and the
/// API server refuses new objects in it). An unreadable Namespace (e.g. an
/// older ClusterRole without `get namespaces`) is not a reason: logged, and
/// the other rules decide.
///
/// No watch on Namespaces is needed: deleting a namespace deletes the
/// instance, whose own deletion starts this path, and a waiting deletion is
/// looked at again every [`WAIT_REQUEUE`].
async fn namespace_terminating(ctx: &Context, namespace: &str) -> Option<String> {
    match Api::<Namespace>::all(ctx.client.clone())
        .get_opt(namespace)
        .await
    {
        Ok(Some(ns)) => {
            let terminating = ns.metadata.deletion_timestamp.is_some()
                || ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
            terminating.then(|| format!("namespace {namespace} is being deleted"))
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(namespace, %error, "cannot read the namespace; assuming it is not being deleted");
            None
        }
    }
}

/// How a deletion stops waiting for its final backup.
struct Ending {
    /// `status.finalBackup`, before `phase` and `message` are set.
    record: FinalBackupStatus,
    /// The backup's phase; `None` when no `MySQLBackup` ran.
    phase: Option<BackupPhase>,
    /// Normal for a success, Warning otherwise.
    type_: EventType,
    /// The Event's reason.
    reason: &'static str,
    /// `status.finalBackup.message` and the Event's note.
    message: String,
}

impl Ending {
    /// No final backup ran, because `message`.
    fn skipped(message: String) -> Self {
        Self {
            record: FinalBackupStatus {
                name: String::new(),
                phase: None,
                start_time: None,
                message: None,
            },
            phase: None,
            type_: EventType::Warning,
            reason: "FinalBackupSkipped",
            message,
        }
    }

    /// The final backup `record` failed or was given up on.
    fn failed(record: FinalBackupStatus, reason: &'static str, message: String) -> Self {
        Self {
            record,
            phase: Some(BackupPhase::Failed),
            type_: EventType::Warning,
            reason,
            message,
        }
    }
}

/// Records how the final backup ended, publishes the Event and removes the
/// finalizer: the deletion goes ahead.
async fn let_go(
    ctx: &Context,
    instance: &MySQLInstance,
    mut new: MySQLInstanceStatus,
    ending: Ending,
) -> Result<Action> {
    let namespace = instance.metadata.namespace.clone().unwrap_or_default();
    let instances = Api::<MySQLInstance>::namespaced(ctx.client.clone(), &namespace);
    new.final_backup = Some(FinalBackupStatus {
        phase: ending.phase,
        message: Some(ending.message.clone()),
        ..ending.record
    });
    status::write(&instances, instance, &new, &ctx.config.field_manager).await?;
    ctx.publish(
        instance,
        ending.type_,
        ending.reason,
        "Delete",
        ending.message,
    )
    .await;
    set_finalizers(ctx, instance, false).await?;
    Ok(Action::await_change())
}

/// Whether MySQLBackup `name` reports `Succeeded` (a failed read: not known
/// to, so no).
async fn succeeded(backups: &Api<MySQLBackup>, name: &str) -> bool {
    matches!(
        backups.get_opt(name).await,
        Ok(Some(backup)) if backup.phase() == Some(BackupPhase::Succeeded)
    )
}

/// The deletion path (the instance has a `deletionTimestamp`).
///
/// # Errors
/// API failures (retried by the controller).
pub async fn on_delete(
    ctx: &Context,
    instance: &MySQLInstance,
    now: DateTime<Utc>,
) -> Result<Action> {
    if !has_finalizer(instance) {
        // Owned children are garbage-collected; the credentials Secrets and
        // the data claim stay on purpose, and so do MySQLBackup objects.
        return Ok(Action::await_change());
    }
    let name = instance.metadata.name.clone().unwrap_or_default();
    let namespace = instance
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let instances = Api::<MySQLInstance>::namespaced(ctx.client.clone(), &namespace);
    let backups = Api::<MySQLBackup>::namespaced(ctx.client.clone(), &namespace);
    let mut new = instance.status.clone().unwrap_or_default();
    new.phase = Some(InstancePhase::Deleting);
    let manager = ctx.config.field_manager.as_str();
    let record = new.final_backup.clone().filter(|r| !r.name.is_empty());
    let deleting_since = instance
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(now, from_k8s_time);
    let timeout = chrono::Duration::from_std(ctx.final_backup_timeout)
        .unwrap_or_else(|_| chrono::Duration::hours(1));
    let timed_out = now - deleting_since > timeout;

    // A final backup that already succeeded is a success whatever happens
    // to the namespace now (the finalizer update after it may have failed).
    let namespace_going = match namespace_terminating(ctx, &namespace).await {
        Some(why) => match &record {
            Some(record) if succeeded(&backups, &record.name).await => None,
            _ => Some(why),
        },
        None => None,
    };
    if let Some(why) = namespace_going {
        let ending = match record {
            Some(record) => {
                let message = format!(
                    "final backup {} cannot finish: {why} (its Job and MySQLBackup go with it); deleted without it",
                    record.name
                );
                Ending::failed(record, "FinalBackupFailed", message)
            }
            None => Ending::skipped(format!(
                "no final backup: {why}, so its Job cannot run; deleted without one"
            )),
        };
        return let_go(ctx, instance, new, ending).await;
    }

    let Some(destination) = instance.backup_destination().cloned() else {
        // backupOnDelete without spec.backup (the API server refuses that;
        // spec.backup may have been removed after the deletion started).
        let ending = Ending::skipped(
            "no final backup: spec.backup (its destination) is gone; deleted without one"
                .to_owned(),
        );
        return let_go(ctx, instance, new, ending).await;
    };

    let Some(record) = record else {
        let backup_name = backup_name(&format!("{name}-final"), now);
        let backup = MySQLBackup::for_instance(&backup_name, &namespace, &name, Some(destination));
        match backups.create(&PostParams::default(), &backup).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            // Forbidden: by RBAC (the operator is being uninstalled) or by a
            // namespace that is going. It will not run; do not hold the deletion.
            Err(kube::Error::Api(status)) if status.code == 403 => {
                let ending = Ending::skipped(format!(
                    "no final backup: creating MySQLBackup {backup_name} is forbidden ({}); deleted without one",
                    status.message
                ));
                return let_go(ctx, instance, new, ending).await;
            }
            Err(source) if timed_out => {
                let mut ending = Ending::skipped(format!(
                    "no final backup: creating MySQLBackup {backup_name} kept failing for {} min ({source}); deleted without one",
                    timeout.num_minutes()
                ));
                ending.reason = "FinalBackupTimedOut";
                return let_go(ctx, instance, new, ending).await;
            }
            Err(source) => {
                return Err(Error::CreateFailed {
                    kind: "MySQLBackup",
                    name: backup_name,
                    source: Box::new(source),
                });
            }
        }
        new.final_backup = Some(FinalBackupStatus {
            name: backup_name.clone(),
            phase: Some(BackupPhase::Pending),
            start_time: Some(now),
            message: Some("final backup before deletion; the deletion waits for it".to_owned()),
        });
        status::write(&instances, instance, &new, manager).await?;
        ctx.publish(
            instance,
            EventType::Normal,
            "FinalBackupStarted",
            "Delete",
            format!("MySQLBackup {backup_name}: final backup before the deletion"),
        )
        .await;
        return Ok(Action::requeue(WAIT_REQUEUE));
    };

    let backup = backups
        .get_opt(&record.name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("MySQLBackup {namespace}/{}", record.name),
            source: Box::new(source),
        })?;
    let phase = backup.as_ref().and_then(MySQLBackup::phase);
    let backup_message = backup
        .as_ref()
        .and_then(|b| b.status.as_ref())
        .and_then(|s| s.message.clone());

    let outcome = match (phase, backup.is_some()) {
        (Some(BackupPhase::Succeeded), _) => Some((
            BackupPhase::Succeeded,
            EventType::Normal,
            "FinalBackupSucceeded",
            format!(
                "final backup {} succeeded; deletion goes ahead",
                record.name
            ),
        )),
        (Some(BackupPhase::Failed), _) => Some((
            BackupPhase::Failed,
            EventType::Warning,
            "FinalBackupFailed",
            format!(
                "final backup {} failed ({}); deleted without it",
                record.name,
                backup_message.as_deref().unwrap_or("no message")
            ),
        )),
        (_, false) => Some((
            BackupPhase::Failed,
            EventType::Warning,
            "FinalBackupFailed",
            format!(
                "final backup {} was deleted before it finished; deleted without it",
                record.name
            ),
        )),
        _ if timed_out => Some((
            BackupPhase::Failed,
            EventType::Warning,
            "FinalBackupTimedOut",
            format!(
                "final backup {} did not finish within {} min of the deletion; deleted without it",
                record.name,
                timeout.num_minutes()
            ),
        )),
        _ => None,
    };
    match outcome {
        Some((final_phase, type_, reason, message)) => {
            let ending = Ending {
                record,
                phase: Some(final_phase),
                type_,
                reason,
                message,
            };
            let_go(ctx, instance, new, ending).await
        }
        None => {
            new.final_backup = Some(FinalBackupStatus {
                phase: phase.or(record.phase),
                ..record
            });
            status::write(&instances, instance, &new, manager).await?;
            Ok(Action::requeue(WAIT_REQUEUE))
        }
    }
}
