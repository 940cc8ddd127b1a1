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
//!   `spec.backup.destination`. With neither the backup is Failed at once,
//!   with a message saying what to fix, and a Warning Event.
//! * An instance that does not exist yet (`kubectl apply -k` may create the
//!   backup first) or is not ready (`Ready` is not True) is waited for: phase
//!   `Pending`, the reason in `status.message`, a Normal Event
//!   (`InstanceNotFound`, `InstanceNotReady`), and a look every
//!   [`WAIT_REQUEUE`]; past `--instance-wait-timeout` (default 30 min after
//!   the backup's creation) the backup is Failed with that reason.
//! * A Job whose pod cannot start (no node fits, the image cannot be pulled,
//!   a Secret it needs does not exist) is watched through its pod
//!   ([`crate::agent_job::start`]): the problem is a Warning Event as soon as it
//!   shows, and past `--agent-start-timeout` (default 10 min after the Job's
//!   creation) the run is Failed with that reason (Warning Event
//!   `BackupCannotStart`) and its Job deleted, propagating to its pod.
//!   Creating the Job forbidden (403) fails the backup too.
//! * A failed Job whose backup is not final (the agent was killed, ran out of
//!   memory, or could not start) makes the operator apply phase `Failed` and
//!   the message: the pod's termination message (the agent's one-line error),
//!   else the Job's condition. Warning Event `BackupFailed`.
//! * Succeeded backups were reported by the agent (retention is the agent's
//!   too); what is left is their proof, when the instance asks for one
//!   ([`verification`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use keeper_crds::agent::{CREATED_BY_JOB_ANNOTATION, JOB_NAME_LABEL};
use keeper_crds::condition::{READY, find_condition, is_condition_true};
use keeper_crds::{
    API_GROUP_VERSION, BackupDestination, BackupPhase, INSTANCE_LABEL, MySQLBackup, MySQLInstance,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent_job::start::{self, StartVerdict};
use crate::agent_job::{self, AgentCommand, AgentRun};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::instance::build::{MANAGED_BY, MANAGED_BY_LABEL};

pub mod verification;

/// Label on an on-demand backup's Job naming its `MySQLBackup`.
pub const BACKUP_LABEL: &str = "mysql.keeper.dev/backup";
/// How often a backup that is not final is looked at without a Job event.
const RUNNING_REQUEUE: Duration = Duration::from_secs(300);
/// Retry delay after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);
/// How often a backup waiting for its instance is looked at (instances are
/// not watched by this controller).
const WAIT_REQUEUE: Duration = Duration::from_secs(30);
/// Event reason when a run is failed because its pod did not start.
pub const REASON_CANNOT_START: &str = keeper_crds::condition::REASON_BACKUP_CANNOT_START;

/// The Job of the on-demand backup `backup`: `<backup>-backup`, shortened
/// by [`agent_job::lifecycle::name`]'s rule when too long.
pub fn job_name(backup: &str) -> String {
    agent_job::lifecycle::name(backup, "backup")
}

fn backup_ref(backup: &MySQLBackup) -> ObjectReference {
    backup.object_ref(&())
}

/// Reconciles one `MySQLBackup` (see the module docs).
///
/// # Errors
/// Any [`Error`]; a failure is published as a Warning Event on the backup.
pub async fn reconcile(backup: Arc<MySQLBackup>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&backup, &ctx).await;
    ctx.metrics
        .backups
        .record(started.elapsed(), result.as_ref().err().map(Error::reason));
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
    if phase == Some(BackupPhase::Succeeded) {
        return verification::reconcile(ctx, backup, &name, &namespace).await;
    }
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
            match start(ctx, backup, &name, &namespace).await? {
                Start::Job(job) => job,
                Start::Wait(requeue) => return Ok(Action::requeue(requeue)),
            }
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
    if let agent_job::lifecycle::Outcome::Failed {
        reason,
        message: condition_message,
    } = agent_job::lifecycle::outcome(&job)
    {
        let pods = job_pods(ctx, &namespace, &job_name).await?;
        let message = agent_job::lifecycle::termination_message(&pods).map_or_else(
            || {
                if condition_message.is_empty() {
                    format!("Job {job_name} failed: {reason}")
                } else {
                    format!("Job {job_name} failed: {reason}: {condition_message}")
                }
            },
            |failure| failure.message,
        );
        mark_failed(ctx, backup, &name, &namespace, Some(&job_name), &message).await?;
        return Ok(Action::await_change());
    }
    // Once the agent reports, its pod has started.
    if phase.is_none_or(|p| p == BackupPhase::Pending) {
        return watch_start(ctx, backup, &name, &namespace, &job).await;
    }
    Ok(Action::requeue(RUNNING_REQUEUE))
}

/// The `MySQLBackup`s of instance `instance` in `namespace` (by the
/// instance label the agent and the operator put on every backup; the
/// `spec.instanceRef` is checked too).
///
/// # Errors
/// [`Error::Kube`] when the list fails.
pub async fn of_instance(
    ctx: &Context,
    namespace: &str,
    instance: &str,
) -> Result<Vec<MySQLBackup>> {
    let backups = Api::<MySQLBackup>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}={instance}")))
        .await
        .map_err(|source| Error::Kube {
            what: format!("MySQLBackups of {namespace}/{instance}"),
            source: Box::new(source),
        })?;
    Ok(backups
        .items
        .into_iter()
        .filter(|b| b.spec.instance_ref.name == instance)
        .collect())
}

/// The pods of Job `job_name` (by the Job controller's label).
pub async fn job_pods(ctx: &Context, namespace: &str, job_name: &str) -> Result<Vec<Pod>> {
    Ok(Api::<Pod>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job_name}")))
        .await
        .map_err(|source| Error::Kube {
            what: format!("Pods of Job {namespace}/{job_name}"),
            source: Box::new(source),
        })?
        .items)
}

/// Deletes the Job `name` and, through background propagation, its pods
/// (an absent Job is fine).
pub async fn delete_job(ctx: &Context, namespace: &str, name: &str) -> Result<()> {
    match Api::<Job>::namespaced(ctx.client.clone(), namespace)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteFailed {
            kind: "Job",
            name: name.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// How long until `deadline`, at least a second (a requeue at the deadline
/// must land after it), at most `cap`.
pub fn until(deadline: DateTime<Utc>, now: DateTime<Utc>, cap: Duration) -> Duration {
    (deadline - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .saturating_add(Duration::from_secs(1))
        .min(cap)
}

/// The start deadline of a run the agent has not reported on yet (see the
/// module docs): a Warning Event when its pod cannot start, and past the
/// deadline, the Job deleted and the backup Failed.
async fn watch_start(
    ctx: &Context,
    backup: &MySQLBackup,
    name: &str,
    namespace: &str,
    job: &Job,
) -> Result<Action> {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let pods = job_pods(ctx, namespace, &job_name).await?;
    let now = Utc::now();
    let key = format!("{namespace}/{job_name}");
    match start::verdict(job, &pods, ctx.agent_start_timeout, now) {
        StartVerdict::Started => {
            ctx.note_start_problem(&key, None);
            Ok(Action::requeue(RUNNING_REQUEUE))
        }
        StartVerdict::Waiting { problem, deadline } => {
            if let Some(problem) = problem
                && ctx.note_start_problem(&key, Some(&problem.to_string()))
            {
                ctx.publish_on(
                    &backup_ref(backup),
                    EventType::Warning,
                    &problem.reason,
                    "Backup",
                    format!(
                        "the agent's pod of Job {job_name} cannot start yet: {problem}; the backup fails at {} unless it starts",
                        deadline.to_rfc3339()
                    ),
                )
                .await;
            }
            Ok(Action::requeue(until(deadline, now, RUNNING_REQUEUE)))
        }
        StartVerdict::TimedOut { problem } => {
            delete_job(ctx, namespace, &job_name).await?;
            ctx.note_start_problem(&key, None);
            let message = format!(
                "{}; Job {job_name} was deleted; fix the cause, then create a new MySQLBackup",
                problem.message
            );
            tracing::warn!(backup = name, job = %job_name, reason = %problem.reason, "backup could not start");
            mark_failed_as(
                ctx,
                backup,
                name,
                namespace,
                Some(&job_name),
                &message,
                REASON_CANNOT_START,
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

/// What [`start`] did.
enum Start {
    /// The Job exists (created now or before).
    Job(String),
    /// Waiting for the instance; look again after this long.
    Wait(Duration),
}

/// Waits for the instance (phase Pending, `why` in the message, a Normal
/// Event `reason` when the message changes) until `--instance-wait-timeout`
/// after the backup's creation, then fails the backup.
async fn wait_for_instance(
    ctx: &Context,
    backup: &MySQLBackup,
    name: &str,
    namespace: &str,
    reason: &'static str,
    why: &str,
    fix: &str,
) -> Result<Start> {
    let now = Utc::now();
    let created = backup
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, keeper_crds::condition::from_k8s_time);
    let timeout = ctx.instance_wait_timeout;
    let deadline = start::deadline_after(created, timeout);
    if now >= deadline {
        let message = format!(
            "{why}, still {} after this backup was created; {fix}, then create a new MySQLBackup",
            start::describe_duration(timeout)
        );
        mark_failed(ctx, backup, name, namespace, None, &message).await?;
        return Err(Error::InvalidSpec { reason, message });
    }
    let message = format!(
        "waiting: {why}; the backup fails if it cannot start by {}",
        deadline.to_rfc3339()
    );
    let status = backup.status.clone().unwrap_or_default();
    if status.message.as_deref() != Some(message.as_str()) || status.phase.is_none() {
        let patch = json!({
            "apiVersion": API_GROUP_VERSION,
            "kind": "MySQLBackup",
            "status": {"phase": BackupPhase::Pending, "message": message},
        });
        apply_status(ctx, name, namespace, &patch).await?;
        ctx.publish_on(
            &backup_ref(backup),
            EventType::Normal,
            reason,
            "Backup",
            message,
        )
        .await;
    }
    Ok(Start::Wait(until(deadline, now, WAIT_REQUEUE)))
}

/// Applies the operator's fields of a backup's status (forced: the operator
/// writes them only before the agent runs, or for a run that ended without
/// the agent's report).
async fn apply_status(
    ctx: &Context,
    name: &str,
    namespace: &str,
    patch: &serde_json::Value,
) -> Result<()> {
    Api::<MySQLBackup>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            name,
            &PatchParams::apply(&ctx.config.field_manager).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(|source| Error::BackupStatusFailed {
            name: name.to_owned(),
            source: Box::new(source),
        })?;
    Ok(())
}

/// Creates the Job of an on-demand backup and records it, or waits for the
/// instance.
async fn start(ctx: &Context, backup: &MySQLBackup, name: &str, namespace: &str) -> Result<Start> {
    let instance_name = &backup.spec.instance_ref.name;
    let instance = Api::<MySQLInstance>::namespaced(ctx.client.clone(), namespace)
        .get_opt(instance_name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("MySQLInstance {namespace}/{instance_name}"),
            source: Box::new(source),
        })?;
    let Some(instance) = instance else {
        return wait_for_instance(
            ctx,
            backup,
            name,
            namespace,
            "InstanceNotFound",
            &format!("MySQLInstance {instance_name} does not exist in namespace {namespace}"),
            "create it or fix spec.instanceRef",
        )
        .await;
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
    let conditions = instance
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if !is_condition_true(conditions, READY) {
        let state = find_condition(conditions, READY).map_or_else(
            || "it has no status yet".to_owned(),
            |c| format!("{}: {}", c.reason, c.message),
        );
        return wait_for_instance(
            ctx,
            backup,
            name,
            namespace,
            "InstanceNotReady",
            &format!("MySQLInstance {instance_name} is not ready ({state})"),
            "see the instance's conditions and Events",
        )
        .await;
    }
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
            compression: backup_spec.map(|b| b.compression),
            compression_level: backup_spec.map(|b| b.compression_level),
            retention: backup_spec.and_then(|b| b.retention.as_ref()),
        },
        owner: backup.controller_owner_ref(&()),
        labels: BTreeMap::from([(BACKUP_LABEL.to_owned(), name.to_owned())]),
    };
    let job = match agent_job::job(&ctx.config, &instance, &run) {
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
        // Forbidden (the operator's RBAC, a namespace being deleted): this
        // run cannot happen; say so rather than retry for ever.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let message = format!(
                "creating Job {job_name} is forbidden: {}; create a new MySQLBackup once the operator may create Jobs here",
                status.message
            );
            mark_failed(ctx, backup, name, namespace, None, &message).await?;
            return Err(Error::CreateFailed {
                kind: "Job",
                name: job_name,
                source: Box::new(kube::Error::Api(status)),
            });
        }
        Err(source) => {
            return Err(Error::CreateFailed {
                kind: "Job",
                name: job_name,
                source: Box::new(source),
            });
        }
    }
    // Without the waiting message: server-side apply drops what this
    // manager no longer sends.
    let patch = json!({
        "apiVersion": API_GROUP_VERSION,
        "kind": "MySQLBackup",
        "status": {"jobName": job_name, "phase": BackupPhase::Pending},
    });
    apply_status(ctx, name, namespace, &patch).await?;
    Ok(Start::Job(job_name))
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
    mark_failed_as(
        ctx,
        backup,
        name,
        namespace,
        job_name,
        message,
        "BackupFailed",
    )
    .await
}

/// [`mark_failed`] with the Warning Event's `reason`.
async fn mark_failed_as(
    ctx: &Context,
    backup: &MySQLBackup,
    name: &str,
    namespace: &str,
    job_name: Option<&str>,
    message: &str,
    reason: &str,
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
    apply_status(ctx, name, namespace, &patch).await?;
    ctx.publish_on(
        &backup_ref(backup),
        EventType::Warning,
        reason,
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

/// The `MySQLBackup` whose on-demand Job made `pod` (its [`BACKUP_LABEL`]):
/// how a pod that cannot start leads back to its backup.
pub fn backup_for_pod(pod: &Pod) -> Option<ObjectRef<MySQLBackup>> {
    let name = pod.metadata.labels.as_ref()?.get(BACKUP_LABEL)?;
    Some(ObjectRef::new(name).within(pod.metadata.namespace.as_deref()?))
}

/// Runs the `MySQLBackup` controller for one namespace (`None`: all) until
/// `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, shutdown: CancellationToken) {
    let client: Client = ctx.client.clone();
    let (backups, jobs, pods) = match namespace.as_deref() {
        Some(ns) => (
            Api::<MySQLBackup>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    // The pods of on-demand backup Jobs: a pod that cannot start is seen
    // as soon as the kubelet or the scheduler says so.
    let pod_selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{BACKUP_LABEL}");
    // Only the operator's backup and verification Jobs (component label)
    // are cached.
    let job_selector = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{} in ({},{}),{INSTANCE_LABEL}",
        crate::instance::build::COMPONENT_LABEL,
        agent_job::COMPONENT_BACKUP,
        agent_job::COMPONENT_VERIFY
    );
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "starting MySQLBackup controller"
    );
    let controller = Controller::new(backups, watcher::Config::default());
    // The backup metrics read this cache while the controller runs.
    let _metrics = ctx
        .metrics
        .instance_backups
        .watch_backups(controller.store());
    controller
        .owns(jobs, watcher::Config::default().labels(&job_selector))
        .watches(
            pods,
            watcher::Config::default().labels(&pod_selector),
            |pod: Pod| backup_for_pod(&pod),
        )
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
    fn an_on_demand_backups_pod_maps_to_its_backup() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {
            "name": "orders-manual-backup-x1", "namespace": "shop",
            "labels": {BACKUP_LABEL: "orders-manual"}}}))
        .expect("pod");
        assert_eq!(
            backup_for_pod(&pod),
            Some(ObjectRef::new("orders-manual").within("shop"))
        );
        assert_eq!(backup_for_pod(&Pod::default()), None);
    }

    #[test]
    fn requeues_land_just_after_the_deadline_within_a_cap() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let cap = Duration::from_secs(300);
        assert_eq!(
            until(now + chrono::Duration::seconds(10), now, cap),
            Duration::from_secs(11)
        );
        assert_eq!(
            until(now - chrono::Duration::seconds(10), now, cap),
            Duration::from_secs(1)
        );
        assert_eq!(until(now + chrono::Duration::hours(1), now, cap), cap);
    }
}
