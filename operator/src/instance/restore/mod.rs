//! Declarative restore: `spec.restoreFrom` → one agent Job per distinct
//! source, run once the server is ready; the instance is `Ready` only after
//! it succeeded.
//!
//! # How a restore goes
//!
//! 1. The source is resolved ([`source::resolve`]): the named `MySQLBackup`
//!    must exist and have succeeded (its recorded destination, secret
//!    references included, says where to read), or the `location` is used
//!    as given; the Secrets and the claim the Job needs must exist. If not,
//!    `Restored=False` with the reason (`BackupNotFound`,
//!    `BackupNotSucceeded`, `SecretNotFound`, ...) and a Warning Event;
//!    nothing runs.
//! 2. Once the server is ready (and no other restore Job of the instance is
//!    running) the application account is locked ([`hold`]), then the Job
//!    `<name>-restore-<attempt>` is created, owned by the instance, with
//!    [`crate::agent_job::job`]. Its name is a hash of the source, `overwrite`
//!    and the retry annotation, so a reconcile can never create a second Job
//!    for the same attempt. `phase: Restoring`, `Ready=False`. Until the
//!    restore succeeded the client Service routes nowhere ([`hold`]); the
//!    Job reaches the server through the headless Service.
//! 3. The agent checks everything before it touches the server (manifest,
//!    sizes, flavor, `max_allowed_packet`, a target without the backup's
//!    tables unless `overwrite`), reports progress into `status.restore`
//!    and exits non-zero with one line on failure.
//! 4. The Job succeeded: the application account is unlocked, then
//!    `status.restoredFrom` records the source's fingerprint and the time,
//!    `Restored=True`, the instance is Ready and the client Service routes.
//!    Later reconciles see the fingerprint and never restore that source
//!    again. The Job failed: `Restored=False` with `RestorePreflightFailed`
//!    (the agent says it changed nothing) or `RestoreFailed`, the agent's
//!    line as the message, `phase: Failed`. Nothing retries on its own.
//!    A Job whose pod does not start within `--agent-start-timeout` (no node
//!    fits, the image cannot be pulled, a Secret is missing) is deleted and
//!    the restore fails as `RestorePreflightFailed` with the pod's reason:
//!    nothing ran, so nothing was changed.
//!
//! # Once per data, not once per object
//!
//! `status.restoredFrom` is lost with the object: deleting and re-creating
//! the instance (its claim and Secrets survive), a GitOps re-creation or a
//! cluster restore leaves a new object with no status over the old data. The
//! operator then still creates the restore Job, and the agent decides with
//! the data: the Job passes the source's fingerprint as `--request-id`, and
//! the agent keeps a record of applied requests in the server itself
//! (`mysql_keeper.applied_restores`, see the agent's `restore::marker`). A
//! request already applied ends the Job at once with success and the line
//! "already restored …" as `status.restore.message`; nothing is read,
//! dropped (even with `overwrite: true`) or loaded. The operator records
//! `restoredFrom` from that success as from any other, and shows the line
//! in the `Restored` condition.
//!
//! # Retrying, and restoring into an instance that holds data
//!
//! A new attempt is a new Job: change `spec.restoreFrom` (another backup, or
//! `overwrite: true` after a refusal), or set the annotation
//! [`RETRY_ANNOTATION`] to a new value. A changed `restoreFrom` on an
//! instance that already has data runs a new restore, and the agent refuses
//! it while the server has any table of the backup's databases unless
//! `overwrite: true` (which drops those databases first, after verifying the
//! whole backup); the refusal is reported as `RestorePreflightFailed` with
//! what to do. Turning `overwrite` on after a restore succeeded does not run
//! it again: `overwrite` is part of an attempt, not of the source.
//!
//! # Who writes what
//!
//! The agent owns `status.restore` (phase, progress, message). The operator
//! writes, with its own field manager ([`restore_field_manager`]) so that its
//! main status apply never drops them, only: `phase: Pending`, `source`,
//! `jobName` and `startTime` when it creates the Job (progress fields are
//! never sent); and, when the Job ended while the agent's report is not
//! final (the pod was killed, or could not reach the API), a forced apply of
//! `phase` and `message`. Everything else (`phase`, the `Restored` and
//! `Ready` conditions, `restoredFrom`) goes through the main status write.
//!
//! Accounts and grants are not in a dump, so the instance's credentials
//! Secrets still log in after a restore.

pub mod decide;
pub mod hold;
pub mod run;
pub mod source;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use keeper_crds::condition::{
    self, READY, RESTORED, find_condition, is_condition_true, remove_condition,
};
use keeper_crds::{
    API_GROUP_VERSION, INSTANCE_LABEL, InstancePhase, MySQLInstance, MySQLInstanceStatus,
    RestoreSource,
};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};

use self::decide::{
    Creation, Report, RestoreFields, RestorePlan, RestoreView, StartNote, decide, job_name_for,
};
use self::hold::ensure_app_access;
use self::source::{ResolvedSource, SourceProblem};
use super::build::COMPONENT_LABEL;
use super::fetch::{Observed, job_pods, read};
use super::status::Readiness;
use crate::agent_job::{self, AgentCommand, AgentRun, COMPONENT_RESTORE};
use crate::context::{Context, OperatorConfig};
use crate::error::{Error, Result};

/// Set it to a new value to run a failed restore again (a new Job).
pub const RETRY_ANNOTATION: &str = "mysql.keeper.dev/restore-retry";
/// On a restore Job: the fingerprint of its source.
pub const SOURCE_KEY_ANNOTATION: &str = "mysql.keeper.dev/restore-key";

/// `Restored=False` while waiting for the server or another restore.
pub const REASON_PENDING: &str = "RestorePending";
/// `Restored=False` and `Ready=False` while the Job runs.
pub const REASON_RESTORING: &str = "Restoring";
/// `Restored=True`.
pub const REASON_SUCCEEDED: &str = "RestoreSucceeded";
/// The agent refused before changing anything.
pub const REASON_PREFLIGHT_FAILED: &str = "RestorePreflightFailed";
/// The restore failed (possibly after changing the server).
pub const REASON_FAILED: &str = "RestoreFailed";
/// Event when the Job is created.
pub const REASON_STARTED: &str = "RestoreStarted";

/// How often a running restore is looked at (the Job's changes also
/// trigger a reconcile; this is the safety net).
const RESTORING_REQUEUE: Duration = Duration::from_secs(15);
/// How often a source problem is looked at again (a Secret created, a
/// backup that succeeded: neither is a watched object).
const BLOCKED_REQUEUE: Duration = Duration::from_secs(60);

/// Field manager of the operator's few `status.restore` fields: separate
/// from the main status apply's, which would otherwise remove them.
pub fn restore_field_manager(config: &OperatorConfig) -> String {
    format!("{}-restore", config.field_manager)
}

/// What this reconcile found about the restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The source cannot be used; the user must act.
    Blocked(SourceProblem),
    /// Waiting for the server to become ready.
    WaitingForServer(String),
    /// Waiting for something else (another restore Job, the root Secret).
    Waiting(String),
    /// The Job runs.
    Running {
        /// The Job.
        job: String,
        /// What is restored.
        source: String,
    },
    /// The restore succeeded.
    Succeeded {
        /// `status.restoredFrom`.
        restored_from: String,
        /// The condition's message.
        message: String,
    },
    /// The restore failed.
    Failed {
        /// `RestorePreflightFailed` or `RestoreFailed`.
        reason: &'static str,
        /// What happened and how to retry.
        message: String,
    },
}

/// What the restore step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How soon to look again, when sooner than usual.
    pub requeue: Option<Duration>,
    /// Whether the restore still holds the server ([`hold`]): the client
    /// Service must not route, the application account stays locked.
    pub holds_server: bool,
}

/// Runs the restore step of a reconcile: [`observe`] → [`decide`] (pure) →
/// [`act`], then the conditions for the step ([`apply_step`]) and their
/// Events. Sets phase, `Ready`, `Restored` and `restoredFrom` in `status`
/// (computed by `status::healthy`).
///
/// # Errors
/// [`Error::Kube`] when the API cannot be read; [`Error::ApplyFailed`] when
/// the Job cannot be created; builder errors.
pub async fn reconcile(
    ctx: &Context,
    instance: &MySQLInstance,
    observed: &Observed,
    readiness: &Readiness,
    status: &mut MySQLInstanceStatus,
) -> Result<Outcome> {
    let done = Outcome {
        requeue: None,
        holds_server: false,
    };
    let Some(request) = &instance.spec.restore_from else {
        // A Restored condition that is not True described a request that
        // is gone; a True one (with restoredFrom) stays as history.
        if !is_condition_true(&status.conditions, RESTORED) {
            remove_condition(&mut status.conditions, RESTORED);
        }
        return Ok(done);
    };
    if already_restored(status, request) {
        return Ok(done);
    }
    let now = Utc::now();
    let view = observe(ctx, instance, observed, readiness, request, now).await?;
    let plan = decide(&ctx.config, instance, &view)?;
    let step = act(ctx, instance, observed, plan).await?;
    let old = instance.status.as_ref().map(|s| s.conditions.as_slice());
    let requeue = apply_step(status, &step, instance.metadata.generation, now);
    publish(ctx, instance, old.unwrap_or_default(), status, &step).await;
    Ok(Outcome {
        requeue,
        holds_server: !matches!(step, Step::Succeeded { .. }),
    })
}

/// Whether `status.restoredFrom` records this source.
pub fn already_restored(status: &MySQLInstanceStatus, request: &RestoreSource) -> bool {
    status
        .restored_from
        .as_deref()
        .and_then(source::restored_key)
        .is_some_and(|key| key == source::fingerprint(request))
}

/// The restore Job of `resolved` for `instance`, named `name`: the agent
/// Job ([`crate::agent_job::job`]) owned by the instance, annotated with the
/// source's fingerprint.
///
/// # Errors
/// As [`crate::agent_job::job`].
pub fn restore_job(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    resolved: &ResolvedSource,
    name: &str,
) -> Result<Job> {
    let run = AgentRun {
        name: name.to_owned(),
        command: AgentCommand::Restore {
            destination: &resolved.destination,
            backup: &resolved.backup,
            overwrite: resolved.overwrite,
            source: Some(&resolved.description),
            request_id: Some(&resolved.key),
        },
        owner: instance.controller_owner_ref(&()),
        labels: BTreeMap::new(),
    };
    let mut job = agent_job::job(config, instance, &run)?;
    job.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SOURCE_KEY_ANNOTATION.to_owned(), resolved.key.clone());
    Ok(job)
}

/// Reads what the restore decides on, once: the source and what it names
/// (the `MySQLBackup`, Secrets, claim), this attempt's Job and its pods,
/// and, before a Job exists, the instance's other restore Jobs. The root
/// Secret comes from the reconcile's own reads.
async fn observe(
    ctx: &Context,
    instance: &MySQLInstance,
    observed: &Observed,
    readiness: &Readiness,
    request: &RestoreSource,
    now: DateTime<Utc>,
) -> Result<RestoreView> {
    let namespace = instance
        .metadata
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let source = source::resolve(&ctx.client, &namespace, request).await?;
    let job_name = source
        .as_ref()
        .map(|resolved| job_name_for(instance, resolved))
        .unwrap_or_default();
    let mut view = RestoreView {
        source,
        job_name,
        job: None,
        pods: Vec::new(),
        reported: instance.status.as_ref().and_then(|s| s.restore.clone()),
        other_running: None,
        missing_root_secret: None,
        server_ready: readiness.ready_replicas >= 1,
        start_timeout: ctx.agent_start_timeout,
        namespace,
        now,
    };
    if view.source.is_err() {
        return Ok(view);
    }
    let (root_secret, _) = instance.root_password_secret();
    let root = if instance.spec.root_password_secret_ref.is_some() {
        observed.root_secret.as_ref()
    } else {
        observed.credentials.as_ref()
    };
    view.missing_root_secret = root.is_none().then_some(root_secret);
    view.job = read::<Job>(ctx, &view.namespace, &view.job_name).await?;
    match &view.job {
        Some(_) => {
            view.pods = job_pods(ctx, &view.namespace, &view.job_name).await?;
        }
        // Only a Job about to be created waits for the others.
        None if view.server_ready => {
            view.other_running =
                other_running_restore(ctx, &view.namespace, instance.name(), &view.job_name)
                    .await?;
        }
        None => {}
    }
    Ok(view)
}

/// Carries out `plan` and returns the step it ends on: `plan.step`, or
/// [`Step::Waiting`] when the application account could not be set.
async fn act(
    ctx: &Context,
    instance: &MySQLInstance,
    observed: &Observed,
    plan: RestorePlan,
) -> Result<Step> {
    let RestorePlan {
        step,
        access,
        delete_job,
        create,
        report: fields,
        start_note,
    } = plan;
    if let Some(access) = access
        && let Err(error) = ensure_app_access(ctx, instance, observed, access.state()).await
    {
        return Ok(Step::Waiting(access.waiting(&error)));
    }
    let namespace = instance.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(name) = delete_job {
        crate::backup_controller::delete_job(ctx, namespace, &name).await?;
        tracing::warn!(job = %name, "restore could not start; its Job was deleted");
    }
    if let Some(Creation {
        job,
        started,
        description,
    }) = create
    {
        let name = job.metadata.name.clone().unwrap_or_default();
        let jobs = Api::<Job>::namespaced(ctx.client.clone(), namespace);
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                tracing::info!(job = %name, source = %started.source, "restore started");
                report(ctx, instance, &started, false).await;
                publish_started(ctx, instance, &name, &description).await;
            }
            // Created meanwhile (an older cache): it is this attempt's Job.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(source) => {
                return Err(Error::ApplyFailed {
                    kind: "Job",
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    if let Some(Report { fields, force }) = fields {
        report(ctx, instance, &fields, force).await;
    }
    if let Some(StartNote {
        key,
        problem,
        warning,
    }) = start_note
        && ctx.note_start_problem(&key, problem.as_deref())
        && let Some((reason, note)) = warning
    {
        ctx.publish(instance, EventType::Warning, &reason, "Restore", note)
            .await;
    }
    Ok(step)
}

/// Another restore Job of the instance that has not ended: restores into
/// one server never overlap.
async fn other_running_restore(
    ctx: &Context,
    namespace: &str,
    instance: &str,
    ours: &str,
) -> Result<Option<String>> {
    let selector = format!("{INSTANCE_LABEL}={instance},{COMPONENT_LABEL}={COMPONENT_RESTORE}");
    let list = Api::<Job>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Kube {
            what: format!("restore Jobs of {instance}"),
            source: Box::new(source),
        })?;
    Ok(list
        .items
        .iter()
        .filter(|j| j.metadata.name.as_deref() != Some(ours))
        .filter(|j| j.metadata.deletion_timestamp.is_none() && !agent_job::lifecycle::ended(j))
        .find_map(|j| j.metadata.name.clone()))
}

/// Applies the operator's `status.restore` fields under
/// [`restore_field_manager`]. `force` only for the end of a run the agent
/// could not report. A failure is logged: the conditions say the same.
async fn report(ctx: &Context, instance: &MySQLInstance, fields: &RestoreFields, force: bool) {
    let Some(namespace) = instance.metadata.namespace.as_deref() else {
        return;
    };
    let name = instance.name();
    let body = serde_json::json!({
        "apiVersion": API_GROUP_VERSION,
        "kind": "MySQLInstance",
        "metadata": {"name": name},
        "status": {"restore": fields},
    });
    let manager = restore_field_manager(&ctx.config);
    let mut params = PatchParams::apply(&manager);
    if force {
        params = params.force();
    }
    let api = Api::<MySQLInstance>::namespaced(ctx.client.clone(), namespace);
    if let Err(error) = api.patch_status(name, &params, &Patch::Apply(&body)).await {
        // A conflict means the agent owns the field already: it reports.
        tracing::warn!(%error, instance = name, "could not write status.restore");
    }
}

/// Sets phase, `Ready`, `Restored` and `restoredFrom` for `step`; returns
/// the requeue it needs.
pub fn apply_step(
    status: &mut MySQLInstanceStatus,
    step: &Step,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let mut set = |type_: &str, ok: bool, reason: &str, message: &str| {
        condition::set_condition(
            &mut status.conditions,
            condition::new_condition(type_, ok, reason, message, generation, now),
        );
    };
    let (phase, requeue) = match step {
        Step::Blocked(problem) => {
            set(RESTORED, false, problem.reason, &problem.message);
            set(READY, false, problem.reason, &problem.message);
            (Some(InstancePhase::Failed), Some(BLOCKED_REQUEUE))
        }
        Step::WaitingForServer(message) => {
            // Ready is already False (NotReady); the phase stays Provisioning.
            set(RESTORED, false, REASON_PENDING, message);
            (None, None)
        }
        Step::Waiting(message) => {
            set(RESTORED, false, REASON_PENDING, message);
            set(READY, false, REASON_PENDING, message);
            (Some(InstancePhase::Restoring), Some(RESTORING_REQUEUE))
        }
        Step::Running { job, source } => {
            let message = format!("restoring {source} with Job {job}");
            set(RESTORED, false, REASON_RESTORING, &message);
            set(
                READY,
                false,
                REASON_RESTORING,
                &format!("{message}; Ready once it has succeeded"),
            );
            (Some(InstancePhase::Restoring), Some(RESTORING_REQUEUE))
        }
        Step::Succeeded {
            restored_from,
            message,
        } => {
            set(RESTORED, true, REASON_SUCCEEDED, message);
            status.restored_from = Some(restored_from.clone());
            // Phase and Ready are the server's, as computed.
            (None, None)
        }
        Step::Failed { reason, message } => {
            set(RESTORED, false, reason, message);
            set(READY, false, reason, message);
            (Some(InstancePhase::Failed), None)
        }
    };
    if let Some(phase) = phase {
        status.phase = Some(phase);
    }
    requeue
}

/// Events for a change of the `Restored` condition (not for a repeat, so an
/// idle reconcile writes nothing).
async fn publish(
    ctx: &Context,
    instance: &MySQLInstance,
    old: &[keeper_crds::Condition],
    new: &MySQLInstanceStatus,
    step: &Step,
) {
    let Some(current) = find_condition(&new.conditions, RESTORED) else {
        return;
    };
    let previous = find_condition(old, RESTORED);
    if previous.is_some_and(|p| p.status == current.status && p.reason == current.reason) {
        return;
    }
    let type_ = match step {
        Step::Blocked(_) | Step::Failed { .. } => EventType::Warning,
        Step::Succeeded { .. } => EventType::Normal,
        // RestoreStarted is published when the Job is created; waiting is
        // no news.
        Step::WaitingForServer(_) | Step::Waiting(_) | Step::Running { .. } => return,
    };
    ctx.publish(
        instance,
        type_,
        &current.reason,
        "Restore",
        current.message.clone(),
    )
    .await;
}

async fn publish_started(ctx: &Context, instance: &MySQLInstance, job: &str, description: &str) {
    let related = ObjectReference {
        api_version: Some("batch/v1".to_owned()),
        kind: Some("Job".to_owned()),
        name: Some(job.to_owned()),
        namespace: instance.metadata.namespace.clone(),
        ..ObjectReference::default()
    };
    ctx.publish_related(
        instance,
        EventType::Normal,
        REASON_STARTED,
        "Restore",
        format!("restoring {description} with Job {job}"),
        Some(related),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }

    fn ready_status() -> MySQLInstanceStatus {
        let mut status = MySQLInstanceStatus {
            phase: Some(InstancePhase::Ready),
            ..MySQLInstanceStatus::default()
        };
        condition::set_condition(
            &mut status.conditions,
            condition::new_condition(READY, true, "Ready", "ok", Some(1), now()),
        );
        status
    }

    #[test]
    fn ready_is_never_true_before_the_restore_succeeded() {
        for step in [
            Step::Blocked(SourceProblem {
                reason: "BackupNotFound",
                message: "m".into(),
            }),
            Step::Waiting("w".into()),
            Step::Running {
                job: "j".into(),
                source: "s".into(),
            },
            Step::Failed {
                reason: REASON_FAILED,
                message: "f".into(),
            },
        ] {
            let mut status = ready_status();
            apply_step(&mut status, &step, Some(1), now());
            assert!(
                !is_condition_true(&status.conditions, READY),
                "{step:?}: {status:?}"
            );
            assert!(!is_condition_true(&status.conditions, RESTORED));
            assert_ne!(status.phase, Some(InstancePhase::Ready));
            assert_eq!(status.restored_from, None);
        }
        let mut status = ready_status();
        apply_step(
            &mut status,
            &Step::Succeeded {
                restored_from: "b [0123456789] at t".into(),
                message: "restored b".into(),
            },
            Some(1),
            now(),
        );
        assert!(is_condition_true(&status.conditions, READY));
        assert!(is_condition_true(&status.conditions, RESTORED));
        assert_eq!(status.phase, Some(InstancePhase::Ready));
        assert_eq!(status.restored_from.as_deref(), Some("b [0123456789] at t"));
    }
}
