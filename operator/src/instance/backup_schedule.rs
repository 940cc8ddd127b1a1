//! The instance's side of backups (the backup schedule; `MySQLBackup`
//! objects are [`crate::backup_controller`]'s): the agent's identity, the
//! backup user, the CronJob of `spec.backup.schedule`, and the status that tells whether
//! backups are happening (`nextBackupTime`, `BackupScheduled`,
//! `BackupsHealthy`).
//!
//! The schedule runs as observe ([`ScheduleObserved`]: the runs that cannot
//! start, the newest success) → decide ([`decide_schedule`], pure, returning
//! a [`SchedulePlan`]) → act (the CronJob, the Event, the status fields). The
//! agent's identity and the backup user are not in that shape yet.
//!
//! * The agent's ServiceAccount, Role and RoleBinding (`<name>-backup-agent`,
//!   owned by the instance) are applied for every instance: on-demand backups
//!   and restores need them even without a schedule.
//! * `<name>-backup` (keys `username`, `password`) is created once from a
//!   CSPRNG and never owned or changed, like the credentials Secret; once the
//!   server is ready the MySQL account is ensured over SQL with the root
//!   password ([`crate::accounts`]). A failure there is a Warning Event
//!   `BackupUserFailed` and a quick retry, not a failed reconcile: the server
//!   itself is fine.
//! * A valid schedule is applied as the CronJob `<name>-backup`; removing
//!   `spec.backup` or its schedule deletes it. While a restore is in progress
//!   ([`restore_in_progress`]) the CronJob is applied suspended (a backup of
//!   a half-restored server could become the newest and prune good ones),
//!   and with `spec.backup.suspend` again once it ended.
//! * `BackupsHealthy` is False (with a Warning Event `BackupsOverdue` when it
//!   turns so) when the last success — `status.lastBackup.time`, else the
//!   newest Succeeded `MySQLBackup` of the instance — is older than twice the
//!   schedule's interval ([`keeper_crds::Schedule::is_overdue`]). Without any
//!   success yet, the clock starts when the schedule was set up
//!   (`BackupScheduled`'s transition time). The instance is requeued for the
//!   next run (plus a grace period) and for the moment it would become
//!   overdue, so the check runs without any watch event.
//! * A scheduled run whose pod cannot start (no node fits, the image cannot
//!   be pulled, a Secret is missing) has no `MySQLBackup` yet (the agent
//!   creates it once it runs), and with the CronJob's `Forbid` policy it
//!   would block every later run. So the CronJob's Jobs are looked at here
//!   ([`crate::agent_job::start`]): a problem is a Warning Event as soon as it
//!   shows, and past the start deadline the Job is deleted (its pod goes
//!   with it, the CronJob runs again on time), a Warning Event
//!   `BackupCannotStart` is published, and `BackupsHealthy` turns False with
//!   that reason until a backup succeeds again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Secret;
use keeper_crds::agent::{BACKUP_PASSWORD_KEY, BACKUP_USER, BACKUP_USERNAME_KEY};
use keeper_crds::condition::{
    self, BACKUP_SCHEDULED, BACKUPS_HEALTHY, ConditionStatus, find_condition, from_k8s_time,
    remove_condition,
};
use keeper_crds::instance::MYSQL_PORT;
use keeper_crds::{
    BackupPhase, BackupSpec, INSTANCE_LABEL, InstancePhase, MySQLInstance, MySQLInstanceStatus,
    Schedule,
};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::apply;
use super::build::{COMPONENT_LABEL, InstanceMeta, agent_rbac, cronjob, secret};
use super::fetch::{Observed, get, job_pods, read, secret_value};
use super::status::Readiness;
use super::validate::Valid;
use crate::accounts::AccountTarget;
use crate::agent_job::COMPONENT_BACKUP;
use crate::agent_job::start::{self, StartVerdict};
use crate::context::{Context, OperatorConfig};
use crate::error::{Error, Result};

/// Reason of `BackupScheduled=True`.
pub const REASON_SCHEDULED: &str = "Scheduled";
/// `BackupScheduled=False`: `spec.backup` has no schedule.
pub const REASON_NO_SCHEDULE: &str = "NoSchedule";
/// `BackupScheduled=False`: `spec.backup.suspend` is true.
pub const REASON_SUSPENDED: &str = "Suspended";
/// `BackupScheduled=False`: a restore is running, scheduled runs wait.
pub const REASON_RESTORE_IN_PROGRESS: &str = "RestoreInProgress";
/// `BackupsHealthy=True`.
pub const REASON_RECENT: &str = "BackupsRecent";
/// `BackupsHealthy=False`, and the Warning Event when it turns so.
pub const REASON_OVERDUE: &str = "BackupsOverdue";
/// `BackupsHealthy=True` while no backup is due yet.
pub const REASON_NONE_DUE: &str = "NoBackupDueYet";
/// Warning Event when the backup user cannot be ensured.
pub const REASON_BACKUP_USER_FAILED: &str = "BackupUserFailed";
/// `BackupsHealthy=False`, and the Warning Event, when a scheduled run's pod
/// did not start within the start deadline (its Job was deleted).
pub const REASON_CANNOT_START: &str = crate::backup_controller::REASON_CANNOT_START;

/// How long after a scheduled run the instance is looked at again (the run
/// should have reported by then, or started at least).
const AFTER_RUN_GRACE: Duration = Duration::from_secs(600);
/// Retry delay when the backup user could not be ensured.
const ACCOUNT_RETRY: Duration = Duration::from_secs(30);

async fn apply_child<K>(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    desired: &K,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let existing: Option<K> = get(&ctx.client, namespace, &name).await?;
    apply::Applier::new(ctx, instance, namespace)
        .apply(desired, existing.as_ref())
        .await?;
    Ok(())
}

/// Runs the backup step of the instance reconcile (see the module docs) and
/// fills the backup fields of `status`. Returns when to look again.
///
/// # Errors
/// API failures; a failed SQL connection is not an error (see module docs).
pub async fn reconcile(
    ctx: &Context,
    instance: &MySQLInstance,
    valid: &Valid,
    observed: &Observed,
    readiness: &Readiness,
    status: &mut MySQLInstanceStatus,
    now: DateTime<Utc>,
) -> Result<Option<Duration>> {
    let (meta, namespace) = (&valid.meta, valid.namespace.as_str());
    apply_child(ctx, instance, namespace, &agent_rbac::service_account(meta)).await?;
    apply_child(ctx, instance, namespace, &agent_rbac::role(meta)).await?;
    apply_child(ctx, instance, namespace, &agent_rbac::role_binding(meta)).await?;

    let mut requeue = None;
    if readiness.ready_replicas >= 1
        && !ensure_backup_user(ctx, instance, meta, namespace, observed).await?
    {
        requeue = Some(ACCOUNT_RETRY);
    }

    let parsed = valid.schedule.as_ref();
    let schedule_requeue = schedule(ctx, instance, meta, namespace, parsed, status, now).await?;
    Ok(min_duration(requeue, schedule_requeue))
}

/// Whether a restore into `instance` is under way, as last observed: the
/// phase is `Restoring`, or `status.restore` is not final (its Job runs).
pub fn restore_in_progress(instance: &MySQLInstance) -> bool {
    instance.status.as_ref().is_some_and(|status| {
        status.phase == Some(InstancePhase::Restoring)
            || status.restore.as_ref().is_some_and(|r| !r.phase.is_final())
    })
}

/// The backup CronJob of `instance` for `backup` on `schedule`, suspended
/// while a restore is under way (a backup of a half-restored server is no
/// backup).
///
/// # Errors
/// As [`cronjob::build`].
pub fn scheduled_cronjob(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    backup: &BackupSpec,
    schedule: &Schedule,
) -> Result<CronJob> {
    let mut desired = cronjob::build(config, instance, meta, backup, schedule)?;
    if restore_in_progress(instance)
        && let Some(spec) = desired.spec.as_mut()
    {
        spec.suspend = Some(true);
    }
    Ok(desired)
}

fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Ensures the backup user's Secret and MySQL account; returns whether both
/// are in place.
///
/// The Secret is created only after the account was created with its
/// password, so "`<name>-backup` exists" means "the backup user can log in".
/// (Restores log in as root and do not need it; see `crate::accounts`.) A Secret that exists is never changed; the
/// account is brought in line with it (`ALTER USER`).
async fn ensure_backup_user(
    ctx: &Context,
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    namespace: &str,
    observed: &Observed,
) -> Result<bool> {
    let name = instance.backup_secret_name();
    let existing = read::<Secret>(ctx, namespace, &name).await?;
    let (backup_password, new_secret) = match secret_value(existing.as_ref(), BACKUP_PASSWORD_KEY) {
        Some(password) => (password, false),
        None if existing.is_some() => {
            ctx.publish(
                    instance,
                    EventType::Warning,
                    REASON_BACKUP_USER_FAILED,
                    "Accounts",
                    format!("Secret {name} has no key {BACKUP_PASSWORD_KEY}; add it or delete the Secret so the operator generates one"),
                )
                .await;
            return Ok(false);
        }
        None => (secret::generate_password(), true),
    };
    if !ensure_account(ctx, instance, namespace, observed, backup_password.clone()).await {
        return Ok(false);
    }
    if !new_secret {
        return Ok(true);
    }
    let data = BTreeMap::from([
        (
            BACKUP_USERNAME_KEY.to_owned(),
            ByteString(BACKUP_USER.as_bytes().to_vec()),
        ),
        (
            BACKUP_PASSWORD_KEY.to_owned(),
            ByteString(backup_password.into_bytes()),
        ),
    ]);
    let desired = Secret {
        metadata: meta.unowned_metadata(name.clone()),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    };
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    match secrets.create(&PostParams::default(), &desired).await {
        Ok(_) => {
            ctx.publish(
                instance,
                EventType::Normal,
                "BackupUserCreated",
                "Accounts",
                format!("MySQL account {BACKUP_USER} ensured; its password is in Secret {name}"),
            )
            .await;
            Ok(true)
        }
        // Created meanwhile: the next reconcile aligns the account with it.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(source) => Err(Error::CredentialsFailed {
            name,
            source: Box::new(source),
        }),
    }
}

/// Ensures the backup account with `backup_password`; returns whether it is
/// in place. A failure is a Warning Event (once per distinct error).
async fn ensure_account(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    observed: &Observed,
    backup_password: String,
) -> bool {
    let Some(root_password) = observed.root_password(instance) else {
        return false;
    };
    // The pod's own address: the client Service does not route while a
    // restore holds the server.
    let Ok(host) = InstanceMeta::of(instance).map(|meta| meta.server_pod_host()) else {
        return false;
    };
    // Anything that could make the account differ: the server's data (its
    // claim), the instance, either password.
    let mut hasher = Sha256::new();
    for part in [
        instance.metadata.uid.as_deref().unwrap_or_default(),
        observed
            .data_claim
            .as_ref()
            .and_then(|c| c.metadata.uid.as_deref())
            .unwrap_or_default(),
        &root_password,
        &backup_password,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let target = AccountTarget {
        host,
        port: MYSQL_PORT,
        root_user: crate::accounts::ROOT_USER.to_owned(),
        root_password,
        backup_password,
        cache_key: format!(
            "{namespace}/{}/{}",
            instance.metadata.name.as_deref().unwrap_or_default(),
            hex::encode(hasher.finalize())
        ),
    };
    let key = format!(
        "{namespace}/{}",
        instance.metadata.name.as_deref().unwrap_or_default()
    );
    match ctx.accounts.ensure_backup_user(&target).await {
        Ok(()) => {
            ctx.note_account_failure(&key, None);
            true
        }
        Err(error) => {
            tracing::warn!(instance = %key, %error, "cannot ensure the backup user");
            if ctx.note_account_failure(&key, Some(&error.to_string())) {
                ctx.publish(
                    instance,
                    EventType::Warning,
                    REASON_BACKUP_USER_FAILED,
                    "Accounts",
                    format!("cannot ensure the MySQL account {BACKUP_USER}: {error}"),
                )
                .await;
            }
            false
        }
    }
}

/// Applies or deletes the CronJob and sets the schedule's status fields.
async fn schedule(
    ctx: &Context,
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    namespace: &str,
    parsed: Option<&Schedule>,
    status: &mut MySQLInstanceStatus,
    now: DateTime<Utc>,
) -> Result<Option<Duration>> {
    let cron_name = cronjob::name(meta);
    let observed = observe_schedule(ctx, instance, namespace, &cron_name, status, now).await?;
    let plan = decide_schedule(&ctx.config, instance, meta, parsed, status, &observed, now)?;
    act_schedule(ctx, instance, namespace, &cron_name, status, plan).await
}

/// What the schedule's decision reads from the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleObserved {
    /// Why a scheduled run could not start, when one just failed to.
    pub start_failure: Option<String>,
    /// When to look at the runs again (a run still starting, or a failed look).
    pub stuck_requeue: Option<Duration>,
    /// The newest successful backup's time, read only when the status has no
    /// `lastBackup` and the schedule is active.
    pub newest_success: Option<DateTime<Utc>>,
}

/// Whether scheduled backups run now: a schedule, not suspended, no restore.
fn schedule_active(instance: &MySQLInstance) -> bool {
    instance
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.schedule.is_some() && !b.suspend)
        && !restore_in_progress(instance)
}

/// The schedule step's reads: the scheduled runs that cannot start (a failed
/// look is not essential to the instance: it is retried with the next
/// reconcile, the rest goes on) and, when the status does not know it, the
/// newest successful backup.
async fn observe_schedule(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    cron_name: &str,
    status: &MySQLInstanceStatus,
    now: DateTime<Utc>,
) -> Result<ScheduleObserved> {
    let scheduled = instance
        .spec
        .backup
        .as_ref()
        .is_some_and(|b| b.schedule.is_some());
    if !scheduled {
        return Ok(ScheduleObserved::default());
    }
    let (start_failure, stuck_requeue) =
        match stuck_runs(ctx, instance, namespace, cron_name, now).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "cannot look at the scheduled backup runs; retried");
                (None, Some(STUCK_RUNS_RETRY))
            }
        };
    let newest_success = if schedule_active(instance) && status.last_backup.is_none() {
        newest_success(ctx, instance, namespace).await?
    } else {
        None
    };
    Ok(ScheduleObserved {
        start_failure,
        stuck_requeue,
        newest_success,
    })
}

/// A condition the plan sets or removes.
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionChange {
    /// Set (its transition time kept when its status does not change).
    Set(keeper_crds::Condition),
    /// Removed.
    Remove,
}

/// The backup CronJob: applied as built, or deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum CronJobChange {
    /// Server-side apply this CronJob.
    Apply(Box<CronJob>),
    /// Delete `<name>-backup` if it exists.
    Delete,
}

/// What the schedule step does: everything [`act_schedule`] carries out.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulePlan {
    /// The CronJob.
    pub cronjob: CronJobChange,
    /// `BackupScheduled`.
    pub scheduled: ConditionChange,
    /// `BackupsHealthy`.
    pub healthy: ConditionChange,
    /// `status.nextBackupTime`.
    pub next_backup_time: Option<DateTime<Utc>>,
    /// The Warning Event `BackupsOverdue`, when backups just became overdue.
    pub overdue_event: Option<String>,
    /// When to look again.
    pub requeue: Option<Duration>,
}

/// The schedule's decision, pure: from the instance, its schedule as
/// validation parsed it, the status built so far (its conditions and
/// `lastBackup`) and what was observed.
///
/// # Errors
/// As [`cronjob::build`].
pub fn decide_schedule(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    parsed: Option<&Schedule>,
    status: &MySQLInstanceStatus,
    observed: &ScheduleObserved,
    now: DateTime<Utc>,
) -> Result<SchedulePlan> {
    let generation = instance.metadata.generation;
    let cron_name = cronjob::name(meta);
    let Some(backup) = &instance.spec.backup else {
        return Ok(SchedulePlan {
            cronjob: CronJobChange::Delete,
            scheduled: ConditionChange::Remove,
            healthy: ConditionChange::Remove,
            next_backup_time: None,
            overdue_event: None,
            requeue: None,
        });
    };
    let Some(parsed) = parsed else {
        return Ok(SchedulePlan {
            cronjob: CronJobChange::Delete,
            scheduled: ConditionChange::Set(condition::new_condition(
                BACKUP_SCHEDULED,
                false,
                REASON_NO_SCHEDULE,
                "spec.backup has no schedule: only on-demand backups (MySQLBackup objects) run",
                generation,
                now,
            )),
            healthy: ConditionChange::Remove,
            next_backup_time: None,
            overdue_event: None,
            requeue: None,
        });
    };

    let restoring = restore_in_progress(instance);
    let cronjob = CronJobChange::Apply(Box::new(scheduled_cronjob(
        config, instance, meta, backup, parsed,
    )?));
    if backup.suspend || restoring {
        let (reason, message, healthy_message) = if backup.suspend {
            (
                REASON_SUSPENDED,
                format!("{parsed} is suspended (spec.backup.suspend)"),
                "scheduled backups are suspended",
            )
        } else {
            (
                REASON_RESTORE_IN_PROGRESS,
                format!("{parsed} is suspended while a restore is in progress"),
                "scheduled backups wait for the restore",
            )
        };
        return Ok(SchedulePlan {
            cronjob,
            scheduled: ConditionChange::Set(condition::new_condition(
                BACKUP_SCHEDULED,
                false,
                reason,
                message,
                generation,
                now,
            )),
            healthy: ConditionChange::Set(condition::new_condition(
                BACKUPS_HEALTHY,
                ConditionStatus::Unknown,
                reason,
                healthy_message,
                generation,
                now,
            )),
            next_backup_time: None,
            overdue_event: None,
            requeue: None,
        });
    }

    let next = parsed.next_after(now);
    let next_text = next.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
    let scheduled = condition::new_condition(
        BACKUP_SCHEDULED,
        true,
        REASON_SCHEDULED,
        format!("CronJob {cron_name} runs {parsed}; next run {next_text}"),
        generation,
        now,
    );
    // The conditions as they will be, for when the schedule was set up.
    let mut conditions = status.conditions.clone();
    condition::set_condition(&mut conditions, scheduled.clone());

    // The last success, or since when one has been expected.
    let last_success = status
        .last_backup
        .as_ref()
        .map(|b| b.time)
        .or(observed.newest_success);
    let since = last_success.or_else(|| {
        find_condition(&conditions, BACKUP_SCHEDULED)
            .map(|c| from_k8s_time(&c.last_transition_time))
    });
    let mut requeue = min_duration(
        next.map(|n| to_std(n - now) + AFTER_RUN_GRACE),
        observed.stuck_requeue,
    );
    let previous_condition = find_condition(&conditions, BACKUPS_HEALTHY).cloned();
    let previous = previous_condition.as_ref().map(|c| c.status.clone());
    // A run that could not start keeps the condition False until a backup
    // succeeds after it.
    let cannot_start = observed.start_failure.clone().or_else(|| {
        previous_condition
            .filter(|c| c.reason == REASON_CANNOT_START)
            .filter(|c| last_success.is_none_or(|t| t <= from_k8s_time(&c.last_transition_time)))
            .map(|c| c.message)
    });
    let healthy = match since {
        _ if cannot_start.is_some() => condition::new_condition(
            BACKUPS_HEALTHY,
            false,
            REASON_CANNOT_START,
            cannot_start.unwrap_or_default(),
            generation,
            now,
        ),
        Some(since) if parsed.is_overdue(since, now) => {
            let message = match last_success {
                Some(t) => format!(
                    "the last successful backup is from {}, more than twice the interval of {parsed} ago; check the backup Jobs and MySQLBackup objects of this instance",
                    t.to_rfc3339()
                ),
                None => format!(
                    "no successful backup since the schedule {parsed} was set up at {}; check the backup Jobs and MySQLBackup objects of this instance",
                    since.to_rfc3339()
                ),
            };
            condition::new_condition(
                BACKUPS_HEALTHY,
                false,
                REASON_OVERDUE,
                message,
                generation,
                now,
            )
        }
        since => {
            // Look again when it would become overdue.
            if let Some(since) = since
                && let Some(interval) = parsed.interval_hint(since)
            {
                let due = since + interval * 2;
                let wait = to_std(due - now) + Duration::from_secs(1);
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            }
            // Without a time since when one is expected there is no success
            // either.
            match last_success {
                Some(t) => condition::new_condition(
                    BACKUPS_HEALTHY,
                    true,
                    REASON_RECENT,
                    format!("the last successful backup is from {}", t.to_rfc3339()),
                    generation,
                    now,
                ),
                None => condition::new_condition(
                    BACKUPS_HEALTHY,
                    true,
                    REASON_NONE_DUE,
                    "no successful backup yet, none overdue",
                    generation,
                    now,
                ),
            }
        }
    };
    // A run that could not start had its own Event.
    let turned_false = healthy.status == "False"
        && previous.as_deref() != Some("False")
        && healthy.reason == REASON_OVERDUE;
    Ok(SchedulePlan {
        cronjob,
        scheduled: ConditionChange::Set(scheduled),
        overdue_event: turned_false.then(|| healthy.message.clone()),
        healthy: ConditionChange::Set(healthy),
        next_backup_time: next,
        requeue,
    })
}

/// Carries out `plan`: the CronJob, the Event, the status fields.
async fn act_schedule(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    cron_name: &str,
    status: &mut MySQLInstanceStatus,
    plan: SchedulePlan,
) -> Result<Option<Duration>> {
    let SchedulePlan {
        cronjob,
        scheduled,
        healthy,
        next_backup_time,
        overdue_event,
        requeue,
    } = plan;
    match cronjob {
        CronJobChange::Apply(desired) => apply_child(ctx, instance, namespace, &*desired).await?,
        CronJobChange::Delete => delete_cronjob(ctx, instance, namespace, cron_name).await?,
    }
    if let Some(message) = overdue_event {
        ctx.publish(
            instance,
            EventType::Warning,
            REASON_OVERDUE,
            "Backup",
            message,
        )
        .await;
    }
    for (type_, change) in [(BACKUP_SCHEDULED, scheduled), (BACKUPS_HEALTHY, healthy)] {
        match change {
            ConditionChange::Set(condition) => {
                condition::set_condition(&mut status.conditions, condition);
            }
            ConditionChange::Remove => {
                remove_condition(&mut status.conditions, type_);
            }
        }
    }
    status.next_backup_time = next_backup_time;
    Ok(requeue)
}

fn to_std(delta: chrono::Duration) -> Duration {
    delta.to_std().unwrap_or(Duration::ZERO)
}

/// Whether `job` was made by the instance's CronJob `cron_name`.
fn is_scheduled_run(job: &Job, cron_name: &str) -> bool {
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "CronJob" && o.name == cron_name)
}

/// Looks at the scheduled runs that have not ended (see the module docs):
/// returns why one could not start (its Job was deleted) and when to look
/// again for one that may still start.
/// How soon a failed look at the scheduled runs is retried.
const STUCK_RUNS_RETRY: Duration = Duration::from_secs(30);

async fn stuck_runs(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    cron_name: &str,
    now: DateTime<Utc>,
) -> Result<(Option<String>, Option<Duration>)> {
    let name = instance.metadata.name.clone().unwrap_or_default();
    let selector = format!("{INSTANCE_LABEL}={name},{COMPONENT_LABEL}={COMPONENT_BACKUP}");
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Kube {
            what: format!("backup Jobs of {namespace}/{name}"),
            source: Box::new(source),
        })?;
    let mut failure = None;
    let mut requeue = None;
    for job in jobs.items.iter().filter(|j| {
        is_scheduled_run(j, cron_name)
            && j.metadata.deletion_timestamp.is_none()
            && !crate::agent_job::lifecycle::ended(j)
    }) {
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let key = format!("{namespace}/{job_name}");
        let pods = job_pods(ctx, namespace, &job_name).await?;
        match start::verdict(job, &pods, ctx.agent_start_timeout, now) {
            StartVerdict::Started => {
                ctx.note_start_problem(&key, None);
            }
            StartVerdict::Waiting { problem, deadline } => {
                if let Some(problem) = problem
                    && ctx.note_start_problem(&key, Some(&problem.to_string()))
                {
                    ctx.publish(
                        instance,
                        EventType::Warning,
                        &problem.reason,
                        "Backup",
                        format!(
                            "the agent's pod of scheduled backup Job {job_name} cannot start yet: {problem}; the run fails at {} unless it starts",
                            deadline.to_rfc3339()
                        ),
                    )
                    .await;
                }
                let wait = crate::backup_controller::until(deadline, now, AFTER_RUN_GRACE);
                requeue = min_duration(requeue, Some(wait));
            }
            StartVerdict::TimedOut { problem } => {
                crate::backup_controller::delete_job(ctx, namespace, &job_name).await?;
                ctx.note_start_problem(&key, None);
                let message = format!(
                    "scheduled backup Job {job_name} could not start ({}): {}; the Job was deleted so that later runs can start",
                    problem.reason, problem.message
                );
                tracing::warn!(instance = %name, job = %job_name, reason = %problem.reason, "scheduled backup could not start");
                ctx.publish(
                    instance,
                    EventType::Warning,
                    REASON_CANNOT_START,
                    "Backup",
                    message.clone(),
                )
                .await;
                failure = Some(message);
            }
        }
    }
    Ok((failure, requeue))
}

/// The completion (or start) time of the instance's newest Succeeded backup.
async fn newest_success(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
) -> Result<Option<DateTime<Utc>>> {
    let name = instance.metadata.name.clone().unwrap_or_default();
    let backups = crate::backup_controller::of_instance(ctx, namespace, &name).await?;
    Ok(backups
        .iter()
        .filter(|b| b.phase() == Some(BackupPhase::Succeeded))
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            status.start_time.or(status.completion_time)
        })
        .max())
}

async fn delete_cronjob(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    name: &str,
) -> Result<()> {
    if read::<CronJob>(ctx, namespace, name).await?.is_none() {
        return Ok(());
    }
    let api = Api::<CronJob>::namespaced(ctx.client.clone(), namespace);
    // Background: the CronJob's finished Jobs go with it; MySQLBackup objects stay.
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(source) => {
            return Err(Error::DeleteFailed {
                kind: "CronJob",
                name: name.to_owned(),
                source: Box::new(source),
            });
        }
    }
    ctx.publish(
        instance,
        EventType::Normal,
        "Deleted",
        "Apply",
        format!("Deleted CronJob {name}: no backup schedule"),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(backup: serde_json::Value) -> MySQLInstance {
        let spec = serde_json::from_value(serde_json::json!({ "backup": backup })).expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        instance.metadata.uid = Some("0000-1111".into());
        instance.metadata.generation = Some(2);
        instance
    }

    fn daily() -> serde_json::Value {
        serde_json::json!({"schedule": "0 3 * * *",
            "destination": {"s3": {"bucket": "backups"}}})
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    fn decide(
        instance: &MySQLInstance,
        status: &MySQLInstanceStatus,
        observed: &ScheduleObserved,
        now: DateTime<Utc>,
    ) -> SchedulePlan {
        let meta = InstanceMeta::of(instance).expect("meta");
        let parsed = instance.spec.schedule().expect("a valid schedule");
        decide_schedule(
            &OperatorConfig::default(),
            instance,
            &meta,
            parsed.as_ref(),
            status,
            observed,
            now,
        )
        .expect("decides")
    }

    fn set(change: &ConditionChange) -> &keeper_crds::Condition {
        match change {
            ConditionChange::Set(condition) => condition,
            ConditionChange::Remove => panic!("removed"),
        }
    }

    #[test]
    fn without_backups_the_cronjob_and_conditions_go() {
        let mut instance = instance(daily());
        instance.spec.backup = None;
        let plan = decide(
            &instance,
            &MySQLInstanceStatus::default(),
            &ScheduleObserved::default(),
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(
            plan,
            SchedulePlan {
                cronjob: CronJobChange::Delete,
                scheduled: ConditionChange::Remove,
                healthy: ConditionChange::Remove,
                next_backup_time: None,
                overdue_event: None,
                requeue: None,
            }
        );
        let unscheduled = self::instance(serde_json::json!({
            "destination": {"s3": {"bucket": "backups"}}}));
        let plan = decide(
            &unscheduled,
            &MySQLInstanceStatus::default(),
            &ScheduleObserved::default(),
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(plan.cronjob, CronJobChange::Delete);
        assert_eq!(set(&plan.scheduled).reason, REASON_NO_SCHEDULE);
        assert_eq!(plan.healthy, ConditionChange::Remove);
    }

    #[test]
    fn a_suspended_schedule_keeps_a_suspended_cronjob() {
        let mut backup = daily();
        backup["suspend"] = true.into();
        let plan = decide(
            &instance(backup),
            &MySQLInstanceStatus::default(),
            &ScheduleObserved::default(),
            at("2026-01-01T00:00:00Z"),
        );
        let CronJobChange::Apply(cronjob) = &plan.cronjob else {
            panic!("applied");
        };
        assert_eq!(cronjob.spec.as_ref().and_then(|s| s.suspend), Some(true));
        assert_eq!(set(&plan.scheduled).status, "False");
        assert_eq!(set(&plan.scheduled).reason, REASON_SUSPENDED);
        assert_eq!(set(&plan.healthy).status, "Unknown");
        assert_eq!(plan.next_backup_time, None);
    }

    #[test]
    fn an_active_schedule_says_when_next_and_whether_backups_are_recent() {
        let now = at("2026-01-01T12:00:00Z");
        let observed = ScheduleObserved {
            newest_success: Some(at("2026-01-01T03:00:10Z")),
            ..ScheduleObserved::default()
        };
        let plan = decide(
            &instance(daily()),
            &MySQLInstanceStatus::default(),
            &observed,
            now,
        );
        assert_eq!(plan.next_backup_time, Some(at("2026-01-02T03:00:00Z")));
        assert_eq!(set(&plan.scheduled).reason, REASON_SCHEDULED);
        assert_eq!(set(&plan.healthy).reason, REASON_RECENT);
        assert_eq!(plan.overdue_event, None);
        // Next run (15 h) plus the grace, or earlier when it would turn
        // overdue (2 × 24 h after the last success): the run comes first.
        assert_eq!(
            plan.requeue,
            Some(Duration::from_secs(15 * 3600) + AFTER_RUN_GRACE)
        );
    }

    #[test]
    fn overdue_backups_warn_once_and_a_run_that_cannot_start_says_so() {
        let now = at("2026-01-05T12:00:00Z");
        let observed = ScheduleObserved {
            newest_success: Some(at("2026-01-01T03:00:00Z")),
            ..ScheduleObserved::default()
        };
        let instance = instance(daily());
        let plan = decide(&instance, &MySQLInstanceStatus::default(), &observed, now);
        assert_eq!(set(&plan.healthy).reason, REASON_OVERDUE);
        assert_eq!(
            plan.overdue_event.as_deref(),
            Some(set(&plan.healthy).message.as_str())
        );
        // Already False: no second Event.
        let mut status = MySQLInstanceStatus::default();
        condition::set_condition(&mut status.conditions, set(&plan.healthy).clone());
        let again = decide(&instance, &status, &observed, now);
        assert_eq!(set(&again.healthy).reason, REASON_OVERDUE);
        assert_eq!(again.overdue_event, None);

        let stuck = ScheduleObserved {
            start_failure: Some("ImagePullBackOff: no such image".into()),
            stuck_requeue: Some(Duration::from_secs(30)),
            newest_success: Some(at("2026-01-05T03:00:00Z")),
        };
        let plan = decide(&instance, &MySQLInstanceStatus::default(), &stuck, now);
        assert_eq!(set(&plan.healthy).reason, REASON_CANNOT_START);
        assert_eq!(
            set(&plan.healthy).message,
            "ImagePullBackOff: no such image"
        );
        assert_eq!(plan.overdue_event, None);
        assert_eq!(plan.requeue, Some(Duration::from_secs(30)));
    }
}
