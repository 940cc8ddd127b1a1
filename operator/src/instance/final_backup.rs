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
    BackupDestination, BackupPhase, FinalBackupStatus, InstancePhase, MySQLBackup, MySQLInstance,
    MySQLInstanceStatus,
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
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// `status.finalBackup`, before `phase` and `message` are set.
    pub record: FinalBackupStatus,
    /// The backup's phase; `None` when no `MySQLBackup` ran.
    pub phase: Option<BackupPhase>,
    /// Normal for a success, Warning otherwise.
    pub type_: EventType,
    /// The Event's reason.
    pub reason: &'static str,
    /// `status.finalBackup.message` and the Event's note.
    pub message: String,
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

/// The final `MySQLBackup` recorded in `status.finalBackup`, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalBackupSeen {
    /// No final backup is recorded yet: nothing was read.
    NotRecorded,
    /// It could not be read while its namespace is going (a read failure
    /// with the namespace in place is the reconcile's error instead).
    Unreadable,
    /// It is gone.
    Gone,
    /// It is there, with its phase and message.
    Found {
        phase: Option<BackupPhase>,
        message: Option<String>,
    },
}

/// Everything the deletion path decides on, read once by [`observe`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeletionView {
    /// The instance still carries [`FINALIZER`].
    pub has_finalizer: bool,
    /// `status.finalBackup` with a name: the final backup once created.
    pub record: Option<FinalBackupStatus>,
    /// Why the namespace stops any final backup (it is being deleted).
    pub namespace_going: Option<String>,
    /// The recorded final backup.
    pub final_backup: FinalBackupSeen,
    /// `spec.backup.destination`, which a new final backup is written to.
    pub destination: Option<BackupDestination>,
    /// The instance's name and namespace.
    pub name: String,
    pub namespace: String,
    /// Whether the deletion waited longer than the timeout.
    pub timed_out: bool,
    /// The timeout, for messages.
    pub timeout: chrono::Duration,
    pub now: DateTime<Utc>,
}

/// What the deletion path does next: [`decide`]'s answer, carried out by
/// [`act`].
#[derive(Debug, Clone, PartialEq)]
pub enum DeletionPlan {
    /// No finalizer: garbage collection does the rest (owned children go;
    /// the credentials Secrets, the data claim and `MySQLBackup` objects
    /// stay on purpose).
    Nothing,
    /// Create the final `MySQLBackup`, record it, and wait for it (boxed:
    /// a whole object beside small variants).
    StartFinalBackup { backup: Box<MySQLBackup> },
    /// Keep waiting; `status.finalBackup` becomes `record`.
    Wait { record: FinalBackupStatus },
    /// Stop waiting: record the ending, publish it, remove the finalizer.
    LetGo(Ending),
}

/// Reads what the deletion path decides on: the Namespace, and the
/// recorded final `MySQLBackup` (once).
async fn observe(
    ctx: &Context,
    instance: &MySQLInstance,
    now: DateTime<Utc>,
) -> Result<DeletionView> {
    let namespace = instance
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let has_finalizer = has_finalizer(instance);
    let record = instance
        .status
        .as_ref()
        .and_then(|s| s.final_backup.clone())
        .filter(|r| !r.name.is_empty());
    let deleting_since = instance
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(now, from_k8s_time);
    let timeout = chrono::Duration::from_std(ctx.final_backup_timeout)
        .unwrap_or_else(|_| chrono::Duration::hours(1));
    let mut view = DeletionView {
        has_finalizer,
        record,
        namespace_going: None,
        final_backup: FinalBackupSeen::NotRecorded,
        destination: instance.backup_destination().cloned(),
        name: instance.metadata.name.clone().unwrap_or_default(),
        namespace,
        timed_out: now - deleting_since > timeout,
        timeout,
        now,
    };
    if !has_finalizer {
        return Ok(view);
    }
    view.namespace_going = namespace_terminating(ctx, &view.namespace).await;
    if let Some(record) = &view.record {
        let backups = Api::<MySQLBackup>::namespaced(ctx.client.clone(), &view.namespace);
        view.final_backup = match backups.get_opt(&record.name).await {
            Ok(None) => FinalBackupSeen::Gone,
            Ok(Some(backup)) => FinalBackupSeen::Found {
                phase: backup.phase(),
                message: backup.status.and_then(|s| s.message),
            },
            // Not known to have succeeded, and it cannot finish any more.
            Err(_) if view.namespace_going.is_some() => FinalBackupSeen::Unreadable,
            Err(source) => {
                return Err(Error::Kube {
                    what: format!("MySQLBackup {}/{}", view.namespace, record.name),
                    source: Box::new(source),
                });
            }
        };
    }
    Ok(view)
}

/// The deletion path's decision, without any API (unit-tested below).
pub fn decide(view: &DeletionView) -> DeletionPlan {
    let DeletionView {
        has_finalizer,
        record,
        namespace_going,
        final_backup,
        destination,
        name,
        namespace,
        timed_out,
        timeout,
        now,
    } = view;
    if !has_finalizer {
        return DeletionPlan::Nothing;
    }
    let succeeded = matches!(
        final_backup,
        FinalBackupSeen::Found {
            phase: Some(BackupPhase::Succeeded),
            ..
        }
    );
    // A final backup that already succeeded is a success whatever happens
    // to the namespace now (the finalizer update after it may have failed).
    if let Some(why) = namespace_going.as_ref().filter(|_| !succeeded) {
        return DeletionPlan::LetGo(match record {
            Some(record) => Ending::failed(
                record.clone(),
                "FinalBackupFailed",
                format!(
                    "final backup {} cannot finish: {why} (its Job and MySQLBackup go with it); deleted without it",
                    record.name
                ),
            ),
            None => Ending::skipped(format!(
                "no final backup: {why}, so its Job cannot run; deleted without one"
            )),
        });
    }
    let Some(record) = record else {
        let Some(destination) = destination else {
            // backupOnDelete without spec.backup (the API server refuses
            // that; spec.backup may have been removed after the deletion
            // started).
            return DeletionPlan::LetGo(Ending::skipped(
                "no final backup: spec.backup (its destination) is gone; deleted without one"
                    .to_owned(),
            ));
        };
        let backup_name = backup_name(&format!("{name}-final"), *now);
        return DeletionPlan::StartFinalBackup {
            backup: Box::new(MySQLBackup::for_instance(
                &backup_name,
                namespace,
                name,
                Some(destination.clone()),
            )),
        };
    };
    let (phase, backup_message) = match final_backup {
        FinalBackupSeen::Found { phase, message } => (*phase, message.as_deref()),
        FinalBackupSeen::Gone => {
            return DeletionPlan::LetGo(Ending::failed(
                record.clone(),
                "FinalBackupFailed",
                format!(
                    "final backup {} was deleted before it finished; deleted without it",
                    record.name
                ),
            ));
        }
        // Only seen with the namespace going, handled above.
        FinalBackupSeen::NotRecorded | FinalBackupSeen::Unreadable => (None, None),
    };
    match phase {
        Some(BackupPhase::Succeeded) => DeletionPlan::LetGo(Ending {
            record: record.clone(),
            phase: Some(BackupPhase::Succeeded),
            type_: EventType::Normal,
            reason: "FinalBackupSucceeded",
            message: format!(
                "final backup {} succeeded; deletion goes ahead",
                record.name
            ),
        }),
        Some(BackupPhase::Failed) => DeletionPlan::LetGo(Ending::failed(
            record.clone(),
            "FinalBackupFailed",
            format!(
                "final backup {} failed ({}); deleted without it",
                record.name,
                backup_message.unwrap_or("no message")
            ),
        )),
        _ if *timed_out => DeletionPlan::LetGo(Ending::failed(
            record.clone(),
            "FinalBackupTimedOut",
            format!(
                "final backup {} did not finish within {} min of the deletion; deleted without it",
                record.name,
                timeout.num_minutes()
            ),
        )),
        _ => DeletionPlan::Wait {
            record: FinalBackupStatus {
                phase: phase.or(record.phase),
                ..record.clone()
            },
        },
    }
}

/// What a refused create of the final `MySQLBackup` means: forbidden (by
/// RBAC while the operator is uninstalled, or by a namespace that is going)
/// or failing past the timeout ends the wait without it; anything else is
/// retried (`None`).
pub fn create_refused(
    view: &DeletionView,
    backup_name: &str,
    error: &kube::Error,
) -> Option<Ending> {
    match error {
        kube::Error::Api(status) if status.code == 403 => Some(Ending::skipped(format!(
            "no final backup: creating MySQLBackup {backup_name} is forbidden ({}); deleted without one",
            status.message
        ))),
        _ if view.timed_out => {
            let mut ending = Ending::skipped(format!(
                "no final backup: creating MySQLBackup {backup_name} kept failing for {} min ({error}); deleted without one",
                view.timeout.num_minutes()
            ));
            ending.reason = "FinalBackupTimedOut";
            Some(ending)
        }
        _ => None,
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

/// Carries out `plan`: the create, the status write, the Event and the
/// finalizer.
async fn act(
    ctx: &Context,
    instance: &MySQLInstance,
    view: &DeletionView,
    plan: DeletionPlan,
) -> Result<Action> {
    let instances = Api::<MySQLInstance>::namespaced(ctx.client.clone(), &view.namespace);
    let manager = ctx.config.field_manager.as_str();
    let mut new = instance.status.clone().unwrap_or_default();
    new.phase = Some(InstancePhase::Deleting);
    match plan {
        DeletionPlan::Nothing => Ok(Action::await_change()),
        DeletionPlan::LetGo(ending) => let_go(ctx, instance, new, ending).await,
        DeletionPlan::Wait { record } => {
            new.final_backup = Some(record);
            status::write(&instances, instance, &new, manager).await?;
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        DeletionPlan::StartFinalBackup { backup } => {
            let backup_name = backup.metadata.name.clone().unwrap_or_default();
            let backups = Api::<MySQLBackup>::namespaced(ctx.client.clone(), &view.namespace);
            match backups.create(&PostParams::default(), &backup).await {
                Ok(_) => {}
                // Created by an earlier reconcile whose status write failed.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => {
                    return match create_refused(view, &backup_name, &error) {
                        Some(ending) => let_go(ctx, instance, new, ending).await,
                        None => Err(Error::CreateFailed {
                            kind: "MySQLBackup",
                            name: backup_name,
                            source: Box::new(error),
                        }),
                    };
                }
            }
            new.final_backup = Some(FinalBackupStatus {
                name: backup_name.clone(),
                phase: Some(BackupPhase::Pending),
                start_time: Some(view.now),
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
            Ok(Action::requeue(WAIT_REQUEUE))
        }
    }
}

/// The deletion path (the instance has a `deletionTimestamp`): observe →
/// [`decide`] → act.
///
/// # Errors
/// API failures (retried by the controller).
pub async fn on_delete(
    ctx: &Context,
    instance: &MySQLInstance,
    now: DateTime<Utc>,
) -> Result<Action> {
    let view = observe(ctx, instance, now).await?;
    let plan = decide(&view);
    act(ctx, instance, &view, plan).await
}

#[cfg(test)]
mod tests {
    use keeper_crds::PvcDestination;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    /// A deletion with the finalizer, no final backup yet, a destination,
    /// the namespace in place, within the timeout.
    fn view() -> DeletionView {
        DeletionView {
            has_finalizer: true,
            record: None,
            namespace_going: None,
            final_backup: FinalBackupSeen::NotRecorded,
            destination: Some(BackupDestination::pvc(PvcDestination {
                claim_name: "backups".into(),
                path: String::new(),
            })),
            name: "orders".into(),
            namespace: "shop".into(),
            timed_out: false,
            timeout: chrono::Duration::hours(1),
            now: at("2026-12-07T10:00:00Z"),
        }
    }

    /// `view()` with the final backup recorded, as read.
    fn recorded(seen: FinalBackupSeen) -> DeletionView {
        DeletionView {
            record: Some(FinalBackupStatus {
                name: "orders-final-20261207-095500".into(),
                phase: Some(BackupPhase::Pending),
                start_time: Some(at("2026-12-07T09:55:00Z")),
                message: Some("final backup before deletion".into()),
            }),
            final_backup: seen,
            ..view()
        }
    }

    fn found(phase: BackupPhase, message: Option<&str>) -> FinalBackupSeen {
        FinalBackupSeen::Found {
            phase: Some(phase),
            message: message.map(str::to_owned),
        }
    }

    fn let_go(plan: DeletionPlan) -> Ending {
        match plan {
            DeletionPlan::LetGo(ending) => ending,
            other => panic!("expected LetGo, got {other:?}"),
        }
    }

    #[test]
    fn without_the_finalizer_nothing_is_done() {
        let view = DeletionView {
            has_finalizer: false,
            ..recorded(FinalBackupSeen::Gone)
        };
        assert_eq!(decide(&view), DeletionPlan::Nothing);
    }

    #[test]
    fn the_first_look_creates_the_final_backup_for_the_destination() {
        let DeletionPlan::StartFinalBackup { backup } = decide(&view()) else {
            panic!("expected StartFinalBackup");
        };
        assert_eq!(
            backup.metadata.name.as_deref(),
            Some("orders-final-20261207-100000")
        );
        assert_eq!(backup.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(backup.spec.instance_ref.name, "orders");
        assert_eq!(backup.spec.destination, view().destination);
    }

    #[test]
    fn without_a_destination_the_deletion_goes_ahead_without_a_backup() {
        let ending = let_go(decide(&DeletionView {
            destination: None,
            ..view()
        }));
        assert_eq!(ending.reason, "FinalBackupSkipped");
        assert_eq!(ending.phase, None);
        assert!(ending.message.contains("spec.backup"), "{}", ending.message);
    }

    #[test]
    fn a_going_namespace_ends_the_wait_unless_the_backup_succeeded() {
        let going = |view: DeletionView| DeletionView {
            namespace_going: Some("namespace shop is being deleted".into()),
            ..view
        };
        let ending = let_go(decide(&going(view())));
        assert_eq!(ending.reason, "FinalBackupSkipped");
        assert!(ending.message.contains("namespace shop is being deleted"));

        for seen in [
            FinalBackupSeen::Unreadable,
            FinalBackupSeen::Gone,
            found(BackupPhase::Running, None),
        ] {
            let ending = let_go(decide(&going(recorded(seen))));
            assert_eq!(ending.reason, "FinalBackupFailed");
            assert_eq!(ending.phase, Some(BackupPhase::Failed));
            assert!(
                ending.message.contains("cannot finish"),
                "{}",
                ending.message
            );
        }

        let ending = let_go(decide(&going(recorded(found(
            BackupPhase::Succeeded,
            None,
        )))));
        assert_eq!(ending.reason, "FinalBackupSucceeded");
        assert_eq!(ending.type_, EventType::Normal);
        assert_eq!(ending.phase, Some(BackupPhase::Succeeded));
    }

    #[test]
    fn the_wait_ends_with_the_backup_or_the_timeout() {
        let ending = let_go(decide(&recorded(found(BackupPhase::Succeeded, None))));
        assert_eq!(ending.reason, "FinalBackupSucceeded");
        assert_eq!(ending.record.name, "orders-final-20261207-095500");

        let ending = let_go(decide(&recorded(found(
            BackupPhase::Failed,
            Some("bucket is full"),
        ))));
        assert_eq!(ending.reason, "FinalBackupFailed");
        assert!(
            ending.message.contains("(bucket is full)"),
            "{}",
            ending.message
        );

        let ending = let_go(decide(&recorded(FinalBackupSeen::Gone)));
        assert_eq!(ending.reason, "FinalBackupFailed");
        assert!(ending.message.contains("was deleted before it finished"));

        let running = recorded(found(BackupPhase::Running, None));
        assert_eq!(
            decide(&running),
            DeletionPlan::Wait {
                record: FinalBackupStatus {
                    phase: Some(BackupPhase::Running),
                    ..running.record.clone().expect("record")
                }
            }
        );
        let ending = let_go(decide(&DeletionView {
            timed_out: true,
            ..running
        }));
        assert_eq!(ending.reason, "FinalBackupTimedOut");
        assert!(
            ending.message.contains("within 60 min"),
            "{}",
            ending.message
        );
    }

    #[test]
    fn a_refused_create_ends_the_wait_only_when_it_cannot_succeed() {
        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure(&format!("answer {code}"), "")
                    .with_code(code)
                    .boxed(),
            )
        };
        let ending = create_refused(&view(), "orders-final-x", &api(403)).expect("ends");
        assert_eq!(ending.reason, "FinalBackupSkipped");
        assert!(ending.message.contains("forbidden (answer 403)"));

        assert_eq!(create_refused(&view(), "orders-final-x", &api(500)), None);
        let late = DeletionView {
            timed_out: true,
            ..view()
        };
        let ending = create_refused(&late, "orders-final-x", &api(500)).expect("ends");
        assert_eq!(ending.reason, "FinalBackupTimedOut");
    }
}
