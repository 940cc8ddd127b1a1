//! The `MySQLBackup` controller: an on-demand backup becomes one Job, and a
//! Job that died without the agent reporting is written down as Failed.
//!
//! * A `MySQLBackup` without `status.jobName` and without a phase (or
//!   `Pending`) that the agent did not create for a scheduled run gets ONE Job,
//!   named deterministically ([`job_name`]) so a repeated reconcile finds it
//!   instead of creating another. The Job is owned by the `MySQLBackup` (never
//!   by the instance): deleting the backup object stops its run, deleting the
//!   instance does not delete backups. The operator then records `jobName`
//!   and phase `Pending` (its own fields, field manager `keeper-operator`).
//! * The destination is `spec.destination`, else the instance's
//!   `spec.backup.destination`. With neither, or without the instance, the
//!   backup is Failed with a message saying what to fix, and a Warning Event.
//! * A failed Job whose backup is not final (the agent was killed, ran out of
//!   memory, or could not start) makes the operator apply phase `Failed` and
//!   the message: the pod's termination message (the agent's one-line error),
//!   else the Job's condition. Warning Event `BackupFailed`.
//! * Succeeded backups need nothing: the agent reported them. Retention is the
//!   agent's too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use keeper_crds::agent::{CREATED_BY_JOB_ANNOTATION, JOB_NAME_LABEL};
use keeper_crds::{
    API_GROUP_VERSION, BackupDestination, BackupPhase, INSTANCE_LABEL, MySQLBackup, MySQLInstance,
};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentCommand, AgentRun};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::instance::build::{MANAGED_BY, MANAGED_BY_LABEL};

/// Label on an on-demand backup's Job naming its `MySQLBackup`.
pub const BACKUP_LABEL: &str = "mysql.keeper.dev/backup";
/// How often a backup that is not final is looked at without a Job event.
const RUNNING_REQUEUE: Duration = Duration::from_secs(300);
/// Retry delay after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);
/// Longest Job name (it becomes a label value on the Job's pods).
const MAX_JOB_NAME: usize = 63;

/// The Job of the on-demand backup `backup`: `<backup>-backup`, or for a name
/// too long for that, a shortened name with a hash of the full one (still
/// deterministic, still unique).
pub fn job_name(backup: &str) -> String {
    let plain = format!("{backup}-backup");
    if plain.len() <= MAX_JOB_NAME {
        return plain;
    }
    let hash = hex::encode(Sha256::digest(backup.as_bytes()));
    let hash = hash.get(..8).unwrap_or_default();
    // `<prefix>-<hash8>-backup`: 1 + 8 + 7 characters after the prefix.
    let budget = MAX_JOB_NAME - 16;
    let prefix: String = backup.chars().take(budget).collect();
    format!("{}-{hash}-backup", prefix.trim_end_matches(['-', '.']))
}

/// Whether the job failed for good (`Failed=True`), with its reason and message.
pub fn job_failure(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| "Failed".to_owned()),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// The agent's one-line error from the Job's pods: the termination message
/// of a terminated container (the newest pod first).
pub fn termination_message(pods: &[Pod]) -> Option<String> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|s| {
            let terminated = s.state.as_ref()?.terminated.as_ref()?;
            let message = terminated.message.as_deref().map(str::trim).unwrap_or("");
            if !message.is_empty() {
                // The agent's line is the last non-empty one (FallbackToLogsOnError
                // may add log lines before it).
                message
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            } else {
                terminated.reason.as_ref().map(|r| {
                    format!(
                        "the agent container ended: {r} (exit code {})",
                        terminated.exit_code
                    )
                })
            }
        })
        .next()
}

fn backup_ref(backup: &MySQLBackup) -> ObjectReference {
    backup.object_ref(&())
}

/// Reconciles one `MySQLBackup` (see the module docs).
///
/// # Errors
/// Any [`Error`]; a failure is published as a Warning Event on the backup.
pub async fn reconcile(backup: Arc<MySQLBackup>, ctx: Arc<Context>) -> Result<Action> {
    let result = reconcile_inner(&backup, &ctx).await;
    if let Err(error) = &result {
        tracing::warn!(backup = ?backup.metadata.name, reason = error.reason(), %error, "backup reconcile failed");
        ctx.publish_on(
            &backup_ref(&backup),
            EventType::Warning,
            error.reason(),
            "Reconcile",
            error.to_string(),
        )
        .await;
    }
    result
}

async fn reconcile_inner(backup: &MySQLBackup, ctx: &Context) -> Result<Action> {
    let name = backup
        .metadata
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.name"))?;
    let namespace = backup
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    if backup.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let phase = backup.phase();
    if phase.is_some_and(BackupPhase::is_final) {
        return Ok(Action::await_change());
    }
    let status = backup.status.clone().unwrap_or_default();
    let created_by_job = backup
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CREATED_BY_JOB_ANNOTATION));
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &namespace);

    let job_name = match (&status.job_name, created_by_job) {
        (Some(job), _) => job.clone(),
        // A scheduled run's object: its Job belongs to the CronJob and
        // reports jobName itself.
        (None, true) => return Ok(Action::requeue(RUNNING_REQUEUE)),
        (None, false) => {
            if phase.is_some_and(|p| p != BackupPhase::Pending) {
                // Running without a Job name: the agent reports it; wait.
                return Ok(Action::requeue(RUNNING_REQUEUE));
            }
            start(ctx, backup, &name, &namespace).await?
        }
    };

    let job = jobs
        .get_opt(&job_name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("Job {namespace}/{job_name}"),
            source: Box::new(source),
        })?;
    let Some(job) = job else {
        // Not there (yet, or removed by its TTL after it ended): nothing to
        // conclude from an absent Job.
        return Ok(Action::requeue(RUNNING_REQUEUE));
    };
    if let Some((reason, condition_message)) = job_failure(&job) {
        let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
            .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job_name}")))
            .await
            .map_err(|source| Error::Kube {
                what: format!("Pods of Job {namespace}/{job_name}"),
                source: Box::new(source),
            })?;
        let message = termination_message(&pods.items).unwrap_or_else(|| {
            if condition_message.is_empty() {
                format!("Job {job_name} failed: {reason}")
            } else {
                format!("Job {job_name} failed: {reason}: {condition_message}")
            }
        });
        mark_failed(ctx, backup, &name, &namespace, Some(&job_name), &message).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(RUNNING_REQUEUE))
}

/// Creates the Job of an on-demand backup and records it; returns its name.
async fn start(ctx: &Context, backup: &MySQLBackup, name: &str, namespace: &str) -> Result<String> {
    let instance_name = &backup.spec.instance_ref.name;
    let instance = Api::<MySQLInstance>::namespaced(ctx.client.clone(), namespace)
        .get_opt(instance_name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("MySQLInstance {namespace}/{instance_name}"),
            source: Box::new(source),
        })?;
    let Some(instance) = instance else {
        let message = format!(
            "MySQLInstance {instance_name} not found in namespace {namespace}; create it or fix spec.instanceRef, then create a new MySQLBackup"
        );
        mark_failed(ctx, backup, name, namespace, None, &message).await?;
        return Err(Error::InvalidSpec {
            reason: "InstanceNotFound",
            message,
        });
    };
    let destination: Option<&BackupDestination> = backup
        .spec
        .destination
        .as_ref()
        .or_else(|| instance.backup_destination());
    let Some(destination) = destination else {
        let message = format!(
            "no destination: MySQLInstance {instance_name} has no spec.backup.destination and this MySQLBackup has no spec.destination; set one of them and create a new MySQLBackup"
        );
        mark_failed(ctx, backup, name, namespace, None, &message).await?;
        return Err(Error::InvalidSpec {
            reason: "NoDestination",
            message,
        });
    };
    let backup_spec = instance.spec.backup.as_ref();
    let job_name = job_name(name);
    let run = AgentRun {
        name: job_name.clone(),
        command: AgentCommand::Backup {
            destination,
            backup_name: Some(name),
            databases: backup_spec
                .and_then(|b| b.databases.as_deref())
                .unwrap_or_default(),
            compression_level: backup_spec.map(|b| b.compression_level),
            retention: backup_spec.and_then(|b| b.retention.as_ref()),
        },
        owner: backup.controller_owner_ref(&()),
        labels: BTreeMap::from([(BACKUP_LABEL.to_owned(), name.to_owned())]),
    };
    let job = match agent::job(&ctx.config, &instance, &run) {
        Ok(job) => job,
        Err(error) => {
            mark_failed(ctx, backup, name, namespace, None, &error.to_string()).await?;
            return Err(error);
        }
    };
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), namespace);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(_) => {
            ctx.publish_on(
                &backup_ref(backup),
                EventType::Normal,
                "JobCreated",
                "Backup",
                format!("created Job {job_name} for MySQLInstance {instance_name}"),
            )
            .await;
        }
        // Created by an earlier reconcile whose status write did not land.
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(source) => {
            return Err(Error::CreateFailed {
                kind: "Job",
                name: job_name,
                source: Box::new(source),
            });
        }
    }
    let patch = json!({
        "apiVersion": API_GROUP_VERSION,
        "kind": "MySQLBackup",
        "status": {"jobName": job_name, "phase": BackupPhase::Pending},
    });
    Api::<MySQLBackup>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::apply(&ctx.config.field_manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::BackupStatusFailed {
            name: name.to_owned(),
            source: Box::new(source),
        })?;
    Ok(job_name)
}

/// Applies phase `Failed` and `message` (forced: the agent that owned them is
/// gone) and publishes `BackupFailed`. `jobName`, the operator's own field,
/// is re-sent unchanged so that server-side apply does not drop it.
async fn mark_failed(
    ctx: &Context,
    backup: &MySQLBackup,
    name: &str,
    namespace: &str,
    job_name: Option<&str>,
    message: &str,
) -> Result<()> {
    let mut status = json!({"phase": BackupPhase::Failed, "message": message});
    if let Some(job) = job_name {
        status["jobName"] = json!(job);
    }
    let patch = json!({
        "apiVersion": API_GROUP_VERSION,
        "kind": "MySQLBackup",
        "status": status,
    });
    Api::<MySQLBackup>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::apply(&ctx.config.field_manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::BackupStatusFailed {
            name: name.to_owned(),
            source: Box::new(source),
        })?;
    ctx.publish_on(
        &backup_ref(backup),
        EventType::Warning,
        "BackupFailed",
        "Backup",
        message.to_owned(),
    )
    .await;
    Ok(())
}

/// Retries a failed reconcile after a fixed delay.
pub fn error_policy(_backup: Arc<MySQLBackup>, _error: &Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(ERROR_REQUEUE)
}

/// The `MySQLBackup` that owns a Job as its controller.
pub fn backup_for_job(job: &Job) -> Option<ObjectRef<MySQLBackup>> {
    let owner = job
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind != "MySQLBackup" || owner.api_version != API_GROUP_VERSION {
        return None;
    }
    Some(ObjectRef::new(&owner.name).within(job.metadata.namespace.as_deref()?))
}

/// Runs the `MySQLBackup` controller for one namespace (`None`: all) until
/// `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, shutdown: CancellationToken) {
    let client: Client = ctx.client.clone();
    let (backups, jobs) = match namespace.as_deref() {
        Some(ns) => (
            Api::<MySQLBackup>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    // Only the operator's backup Jobs (component label) are cached.
    let job_selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{}={},{INSTANCE_LABEL}",
        crate::instance::build::COMPONENT_LABEL,
        agent::COMPONENT_BACKUP
    );
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "starting MySQLBackup controller"
    );
    Controller::new(backups, watcher::Config::default())
        .owns(jobs, watcher::Config::default().labels(&job_selector))
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(backup = %object, "reconciled"),
                Err(error) => tracing::debug!(%error, "backup controller event"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_deterministic_labels() {
        assert_eq!(job_name("orders-manual"), "orders-manual-backup");
        let long = format!("{}-20250101-030000", "a".repeat(47));
        let name = job_name(&long);
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, job_name(&long));
        assert!(name.ends_with("-backup"));
        assert_ne!(job_name(&long), job_name(&format!("{long}x")));
    }

    #[test]
    fn termination_message_prefers_the_agents_line() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"containerStatuses": [{
                "name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error",
                    "message": "some log\nbackup failed: access denied for keeper_backup\n"}}
            }]}
        }))
        .expect("pod");
        assert_eq!(
            termination_message(&[pod]).as_deref(),
            Some("backup failed: access denied for keeper_backup")
        );
        let oom: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"containerStatuses": [{
                "name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
            }]}
        }))
        .expect("pod");
        assert_eq!(
            termination_message(&[oom]).as_deref(),
            Some("the agent container ended: OOMKilled (exit code 137)")
        );
        assert_eq!(termination_message(&[]), None);
    }
}
