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
//!   timeout (default 1 h after `deletionTimestamp`): `status.finalBackup`
//!   says so, a Warning Event is published, and the finalizer is removed
//!   anyway — a deletion must not hang forever on a broken destination.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keeper_crds::condition::from_k8s_time;
use keeper_crds::names::backup_name;
use keeper_crds::{BackupPhase, FinalBackupStatus, InstancePhase, MySQLBackup, MySQLInstance};
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

    let Some(destination) = instance.backup_destination().cloned() else {
        // backupOnDelete without spec.backup (the API server refuses that;
        // spec.backup may have been removed after the deletion started).
        new.final_backup = Some(FinalBackupStatus {
            name: String::new(),
            phase: None,
            start_time: None,
            message: Some(
                "no final backup: spec.backup (its destination) is gone; deleted without one"
                    .to_owned(),
            ),
        });
        status::write(&instances, instance, &new, manager).await?;
        ctx.publish(
            instance,
            EventType::Warning,
            "FinalBackupSkipped",
            "Delete",
            "no destination for the final backup; deleting without one".to_owned(),
        )
        .await;
        set_finalizers(ctx, instance, false).await?;
        return Ok(Action::await_change());
    };

    let Some(record) = new.final_backup.clone().filter(|r| !r.name.is_empty()) else {
        let backup_name = backup_name(&format!("{name}-final"), now);
        let backup = MySQLBackup::for_instance(&backup_name, &namespace, &name, Some(destination));
        match backups.create(&PostParams::default(), &backup).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
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
    let deleting_since = instance
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(now, from_k8s_time);
    let timeout = chrono::Duration::from_std(ctx.final_backup_timeout)
        .unwrap_or_else(|_| chrono::Duration::hours(1));
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
        _ if now - deleting_since > timeout => Some((
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
            new.final_backup = Some(FinalBackupStatus {
                phase: Some(final_phase),
                message: Some(message.clone()),
                ..record
            });
            status::write(&instances, instance, &new, manager).await?;
            ctx.publish(instance, type_, reason, "Delete", message)
                .await;
            set_finalizers(ctx, instance, false).await?;
            Ok(Action::await_change())
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
