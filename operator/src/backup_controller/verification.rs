//! Proving backups restorable (`spec.backup.verification`): a Succeeded
//! backup of an instance that asks for it gets one verification Job, in which
//! the agent restores the backup into a throwaway server beside it
//! ([`crate::agent_job::proof_server`]) and compares what came back with the
//! dump's digests. The agent writes the result as the backup's
//! `status.verification`; the instance's `lastVerifiedBackup` and
//! `BackupsVerified` condition are derived from the backups by the instance
//! controller ([`crate::instance::verification`]).
//!
//! Observe (the instance's policy, the Job, whether the backup is the
//! newest success) → [`decide`] (pure) → act. Rules:
//!
//! * Only the instance's newest successful backup is verified, once: after
//!   every backup it is the one that just succeeded; with a verification
//!   schedule it is verified at the first scheduled time after it completed,
//!   unless a newer backup superseded it by then. Turning verification on
//!   never starts a storm of proofs of old backups.
//! * One Job per backup, named [`job_name`] and owned by the `MySQLBackup`
//!   (deleting the backup object stops its proof); a repeated reconcile
//!   finds it. A verification never touches the instance, its data or its
//!   other backups: the pod holds no Secret of the instance.
//! * A Job whose pod cannot start is watched like a backup's
//!   ([`crate::agent_job::start`]): a Warning Event as soon as the problem
//!   shows, and past the start deadline the Job is deleted and the proof
//!   recorded as Failed with that reason.
//! * A Job that ended without the agent's report (killed, out of memory, the
//!   throwaway server never answered) is recorded by the operator: Failed
//!   with the pod's termination message, or Verified when the agent exited
//!   0 but its report did not arrive (its `verification.json` beside the
//!   artifact has the details). A failure is a Warning Event
//!   `VerificationFailed` on the backup.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use keeper_crds::{
    API_GROUP_VERSION, BackupPhase, MySQLBackup, MySQLInstance, Schedule, VerificationPhase,
};
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::{BACKUP_LABEL, apply_status, backup_ref, job_pods, until};
use crate::agent_job::lifecycle::{self, Outcome};
use crate::agent_job::start::{self, StartProblem, StartVerdict};
use crate::agent_job::{self, AgentCommand, AgentRun};
use crate::context::Context;
use crate::error::{Error, Result};
use keeper_crds::agent::FailureCode;

/// Event reason (Warning) of a proof that failed or could not be made.
pub const REASON_FAILED: &str = "VerificationFailed";
/// Event reason (Normal) of a verification Job created.
pub const REASON_STARTED: &str = "VerificationStarted";
/// How often a running proof is looked at without a Job event.
const RUNNING_REQUEUE: Duration = Duration::from_secs(300);

/// The verification Job of backup `backup`: `<backup>-verify`, shortened by
/// [`lifecycle::name`]'s rule when too long.
pub fn job_name(backup: &str) -> String {
    lifecycle::name(backup, "verify")
}

/// When the instance asks for proofs.
#[derive(Clone, Copy, Debug)]
pub enum Policy<'a> {
    /// Right after every successful backup.
    AfterEachBackup,
    /// At the times of `spec.backup.verification.schedule`.
    Scheduled(&'a Schedule),
}

/// The verification Job as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// No Job (none yet, or removed by its TTL).
    Absent,
    /// Not ended: where its start stands.
    Running(StartVerdict),
    /// The agent exited 0.
    Succeeded,
    /// The Job failed: the agent's code (`None` when it wrote none: killed,
    /// out of memory) and one-line error, else the Job's reason.
    Failed {
        /// The agent's failure code.
        code: Option<FailureCode>,
        /// Its line.
        message: String,
    },
}

/// What the decision reads.
#[derive(Clone, Debug)]
pub struct VerifyView<'a> {
    /// The backup's phase.
    pub phase: Option<BackupPhase>,
    /// When the backup completed.
    pub completed: Option<DateTime<Utc>>,
    /// Whether the backup has a `status.verification` (a proof's result).
    pub verified: bool,
    /// The instance's policy; `None` without `spec.backup.verification` (or
    /// without the instance).
    pub policy: Option<Policy<'a>>,
    /// Whether it is the instance's newest successful backup.
    pub newest: bool,
    /// Its verification Job.
    pub job: JobState,
    /// Now.
    pub now: DateTime<Utc>,
}

/// What to do about a backup's proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyPlan {
    /// Nothing, until the backup or its Job changes.
    Idle,
    /// Look again after this long (the scheduled time, a running proof).
    Wait(Duration),
    /// Create the verification Job.
    Start,
    /// The Job's pod cannot start yet: a Warning Event (once per problem),
    /// and a look again at the deadline.
    StartProblem {
        /// What keeps it from starting.
        problem: StartProblem,
        /// When the proof is given up on.
        deadline: DateTime<Utc>,
    },
    /// Write the result the agent could not (and delete the Job when its pod
    /// never started).
    Record {
        /// Verified or Failed.
        phase: VerificationPhase,
        /// Why.
        message: String,
        /// Delete the Job (its pod never started).
        delete_job: bool,
    },
}

/// The decision, pure (see the module docs).
pub fn decide(view: &VerifyView<'_>) -> VerifyPlan {
    let VerifyView {
        phase,
        completed,
        verified,
        policy,
        newest,
        job,
        now,
    } = view;
    if *phase != Some(BackupPhase::Succeeded) || *verified {
        return VerifyPlan::Idle;
    }
    match job {
        JobState::Running(StartVerdict::Started) => VerifyPlan::Wait(RUNNING_REQUEUE),
        JobState::Running(StartVerdict::Waiting { problem, deadline }) => match problem {
            Some(problem) => VerifyPlan::StartProblem {
                problem: problem.clone(),
                deadline: *deadline,
            },
            None => VerifyPlan::Wait(until(*deadline, *now, RUNNING_REQUEUE)),
        },
        JobState::Running(StartVerdict::TimedOut { problem }) => VerifyPlan::Record {
            phase: VerificationPhase::Failed,
            message: format!(
                "the verification pod did not start: {}; its Job was deleted",
                problem.message
            ),
            delete_job: true,
        },
        JobState::Succeeded => VerifyPlan::Record {
            phase: VerificationPhase::Verified,
            message: "the proof succeeded but the agent's report did not arrive; \
                      verification.json beside the backup has the details"
                .to_owned(),
            delete_job: false,
        },
        JobState::Failed { code, message } => VerifyPlan::Record {
            phase: VerificationPhase::Failed,
            // A difference is the proof's answer; anything else means no
            // proof could be made (the backup is not shown to be bad).
            message: match code {
                Some(FailureCode::BackupDiffers) => message.clone(),
                _ => format!("the proof could not be made: {message}"),
            },
            delete_job: false,
        },
        JobState::Absent => match (policy, newest) {
            (None, _) | (_, false) => VerifyPlan::Idle,
            (Some(Policy::AfterEachBackup), true) => VerifyPlan::Start,
            (Some(Policy::Scheduled(schedule)), true) => {
                let Some(completed) = completed else {
                    return VerifyPlan::Idle;
                };
                match schedule.next_after(*completed) {
                    Some(at) if at <= *now => VerifyPlan::Start,
                    Some(at) => VerifyPlan::Wait(until(at, *now, Duration::MAX)),
                    None => VerifyPlan::Idle,
                }
            }
        },
    }
}

/// The newest Succeeded backup among `backups` (by completion time, then
/// start time).
pub fn newest_succeeded(backups: &[MySQLBackup]) -> Option<&MySQLBackup> {
    backups
        .iter()
        .filter(|b| b.phase() == Some(BackupPhase::Succeeded))
        .max_by_key(|b| {
            let status = b.status.as_ref();
            (
                status.and_then(|s| s.completion_time.or(s.start_time)),
                b.metadata.name.clone(),
            )
        })
}

/// Observes, decides and acts for a Succeeded backup (see the module docs).
///
/// # Errors
/// API failures.
pub async fn reconcile(
    ctx: &Context,
    backup: &MySQLBackup,
    name: &str,
    namespace: &str,
) -> Result<Action> {
    let status = backup.status.clone().unwrap_or_default();
    // A proven (or disproven) backup needs no reads at all.
    if status.verification.is_some() {
        return Ok(Action::await_change());
    }
    let instance_name = &backup.spec.instance_ref.name;
    let instance = Api::<MySQLInstance>::namespaced(ctx.client.clone(), namespace)
        .get_opt(instance_name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("MySQLInstance {namespace}/{instance_name}"),
            source: Box::new(source),
        })?;
    let spec = instance
        .as_ref()
        .and_then(|i| i.spec.backup.as_ref())
        .and_then(|b| b.verification.as_ref());
    // An invalid schedule is the instance's condition; nothing runs meanwhile.
    let schedule = instance
        .as_ref()
        .map(|i| i.spec.verification_schedule())
        .transpose()
        .ok()
        .flatten()
        .flatten();
    let policy = match (spec, &schedule) {
        (None, _) => None,
        (Some(spec), _) if spec.schedule.is_some() && schedule.is_none() => None,
        (Some(_), Some(schedule)) => Some(Policy::Scheduled(schedule)),
        (Some(_), None) => Some(Policy::AfterEachBackup),
    };

    let now = Utc::now();
    let job_name = job_name(name);
    let job = Api::<Job>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&job_name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("Job {namespace}/{job_name}"),
            source: Box::new(source),
        })?;
    let job_state = match &job {
        None => JobState::Absent,
        Some(job) => match lifecycle::outcome(job) {
            Outcome::Running => {
                let pods = job_pods(ctx, namespace, &job_name).await?;
                JobState::Running(start::verdict(job, &pods, ctx.agent_start_timeout, now))
            }
            Outcome::Succeeded { .. } => JobState::Succeeded,
            Outcome::Failed { reason, message } => {
                let pods = job_pods(ctx, namespace, &job_name).await?;
                match lifecycle::termination_message(&pods) {
                    Some(failure) => JobState::Failed {
                        code: failure.code,
                        message: failure.message,
                    },
                    None => JobState::Failed {
                        code: None,
                        message: format!("Job {job_name} failed: {reason}: {message}"),
                    },
                }
            }
        },
    };
    let newest = if job_state == JobState::Absent && policy.is_some() {
        let backups = super::of_instance(ctx, namespace, instance_name).await?;
        newest_succeeded(&backups).and_then(|b| b.metadata.name.as_deref()) == Some(name)
    } else {
        false
    };
    let plan = decide(&VerifyView {
        phase: backup.phase(),
        completed: status.completion_time,
        verified: status.verification.is_some(),
        policy,
        newest,
        job: job_state,
        now,
    });
    match (plan, instance) {
        (VerifyPlan::Idle, _) => Ok(Action::await_change()),
        (VerifyPlan::Wait(after), _) => Ok(Action::requeue(after)),
        (VerifyPlan::Start, Some(instance)) => {
            start_job(ctx, backup, &instance, name, namespace, &job_name).await?;
            Ok(Action::requeue(RUNNING_REQUEUE))
        }
        (VerifyPlan::Start, None) => Ok(Action::await_change()),
        (VerifyPlan::StartProblem { problem, deadline }, _) => {
            let key = format!("{namespace}/{job_name}");
            if ctx.note_start_problem(&key, Some(&problem.to_string())) {
                ctx.publish_on(
                    &backup_ref(backup),
                    EventType::Warning,
                    &problem.reason,
                    "Verify",
                    format!(
                        "the verification pod of Job {job_name} cannot start yet: {problem}; the proof fails at {} unless it starts",
                        deadline.to_rfc3339()
                    ),
                )
                .await;
            }
            Ok(Action::requeue(until(deadline, now, RUNNING_REQUEUE)))
        }
        (
            VerifyPlan::Record {
                phase,
                message,
                delete_job,
            },
            _,
        ) => {
            // The backup came from the controller's cache, which may not
            // hold the agent's report yet when the Job's end arrives first:
            // read it fresh, and never write over a report that exists.
            if reported(ctx, name, namespace).await? {
                return Ok(Action::await_change());
            }
            if delete_job {
                super::delete_job(ctx, namespace, &job_name).await?;
                ctx.note_start_problem(&format!("{namespace}/{job_name}"), None);
            }
            record(ctx, backup, name, namespace, phase, &message, now).await?;
            Ok(Action::await_change())
        }
    }
}

/// Whether the backup, as the API has it now, holds a proof's result.
async fn reported(ctx: &Context, name: &str, namespace: &str) -> Result<bool> {
    let backup = Api::<MySQLBackup>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("MySQLBackup {namespace}/{name}"),
            source: Box::new(source),
        })?;
    Ok(backup
        .and_then(|b| b.status)
        .is_some_and(|s| s.verification.is_some()))
}

/// Creates the verification Job of `backup` (a 409 means an earlier
/// reconcile did).
async fn start_job(
    ctx: &Context,
    backup: &MySQLBackup,
    instance: &MySQLInstance,
    name: &str,
    namespace: &str,
    job_name: &str,
) -> Result<()> {
    let Some((destination, folder)) = backup.recorded_folder() else {
        let message = "cannot verify: the backup has no status.destination, so where it was written is unknown";
        return record(
            ctx,
            backup,
            name,
            namespace,
            VerificationPhase::Failed,
            message,
            Utc::now(),
        )
        .await;
    };
    let run = AgentRun {
        name: job_name.to_owned(),
        command: AgentCommand::Verify {
            destination: &destination,
            backup: &folder,
            backup_name: name,
            spec: instance
                .spec
                .backup
                .as_ref()
                .and_then(|b| b.verification.as_ref()),
        },
        owner: backup.controller_owner_ref(&()),
        labels: BTreeMap::from([(BACKUP_LABEL.to_owned(), name.to_owned())]),
    };
    let job = agent_job::job(&ctx.config, instance, &run)?;
    match Api::<Job>::namespaced(ctx.client.clone(), namespace)
        .create(&PostParams::default(), &job)
        .await
    {
        Ok(_) => {
            ctx.publish_on(
                &backup_ref(backup),
                EventType::Normal,
                REASON_STARTED,
                "Verify",
                format!(
                    "created Job {job_name}: restores this backup into a throwaway server and compares it with its digests"
                ),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(source) => Err(Error::CreateFailed {
            kind: "Job",
            name: job_name.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// Writes `status.verification` for a proof the agent could not report
/// (forced: the field is the agent's when it reports), and a Warning Event
/// when it failed.
async fn record(
    ctx: &Context,
    backup: &MySQLBackup,
    name: &str,
    namespace: &str,
    phase: VerificationPhase,
    message: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let patch = json!({
        "apiVersion": API_GROUP_VERSION,
        "kind": "MySQLBackup",
        "status": {"verification": {
            "phase": phase,
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "message": message,
        }},
    });
    apply_status(ctx, name, namespace, &patch).await?;
    if phase == VerificationPhase::Failed {
        ctx.publish_on(
            &backup_ref(backup),
            EventType::Warning,
            REASON_FAILED,
            "Verify",
            message.to_owned(),
        )
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn view(policy: Option<Policy<'_>>, job: JobState) -> VerifyView<'_> {
        VerifyView {
            phase: Some(BackupPhase::Succeeded),
            completed: Some(at("2025-01-01T03:05:00Z")),
            verified: false,
            policy,
            newest: true,
            job,
            now: at("2025-01-01T03:06:00Z"),
        }
    }

    #[test]
    fn the_newest_success_is_verified_right_after_it_succeeded() {
        let plan = decide(&view(Some(Policy::AfterEachBackup), JobState::Absent));
        assert_eq!(plan, VerifyPlan::Start);
    }

    #[test]
    fn nothing_runs_without_a_policy_for_old_running_failed_or_verified_backups() {
        assert_eq!(decide(&view(None, JobState::Absent)), VerifyPlan::Idle);
        let mut older = view(Some(Policy::AfterEachBackup), JobState::Absent);
        older.newest = false;
        assert_eq!(decide(&older), VerifyPlan::Idle, "superseded: skipped");
        for phase in [
            None,
            Some(BackupPhase::Pending),
            Some(BackupPhase::Running),
            Some(BackupPhase::Failed),
        ] {
            let mut v = view(Some(Policy::AfterEachBackup), JobState::Absent);
            v.phase = phase;
            assert_eq!(decide(&v), VerifyPlan::Idle, "{phase:?}");
        }
        let mut done = view(
            Some(Policy::AfterEachBackup),
            JobState::Failed {
                code: None,
                message: "x".into(),
            },
        );
        done.verified = true;
        assert_eq!(decide(&done), VerifyPlan::Idle, "once per backup");
    }

    #[test]
    fn a_schedule_waits_for_its_first_time_after_the_backup() {
        let weekly = Schedule::parse("0 5 * * 0", None).expect("schedule");
        // 2025-01-01 is a Wednesday: the next Sunday 05:00 is the 5th.
        let mut v = view(Some(Policy::Scheduled(&weekly)), JobState::Absent);
        match decide(&v) {
            VerifyPlan::Wait(after) => {
                assert_eq!(
                    after.as_secs(),
                    (at("2025-01-05T05:00:00Z") - v.now).num_seconds() as u64 + 1
                );
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        v.now = at("2025-01-05T05:00:30Z");
        assert_eq!(decide(&v), VerifyPlan::Start);
        v.newest = false;
        assert_eq!(
            decide(&v),
            VerifyPlan::Idle,
            "a newer backup is the one to prove"
        );
    }

    #[test]
    fn a_running_proof_is_looked_at_and_a_stuck_one_recorded() {
        let v = view(
            Some(Policy::AfterEachBackup),
            JobState::Running(StartVerdict::Started),
        );
        assert_eq!(decide(&v), VerifyPlan::Wait(RUNNING_REQUEUE));
        let problem = StartProblem {
            reason: "ImagePullBackOff".into(),
            message: "Back-off pulling image \"mariadb:11.4\"".into(),
        };
        let deadline = at("2025-01-01T03:16:00Z");
        let v = view(
            Some(Policy::AfterEachBackup),
            JobState::Running(StartVerdict::Waiting {
                problem: Some(problem.clone()),
                deadline,
            }),
        );
        assert_eq!(
            decide(&v),
            VerifyPlan::StartProblem {
                problem: problem.clone(),
                deadline
            }
        );
        let v = view(None, JobState::Running(StartVerdict::TimedOut { problem }));
        match decide(&v) {
            VerifyPlan::Record {
                phase: VerificationPhase::Failed,
                message,
                delete_job: true,
            } => assert!(message.contains("Back-off pulling image"), "{message}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_job_that_ended_without_a_report_is_recorded_by_the_operator() {
        let differs = view(
            Some(Policy::AfterEachBackup),
            JobState::Failed {
                code: Some(FailureCode::BackupDiffers),
                message: "orders-2 did not restore exactly: 1 difference(s)".into(),
            },
        );
        assert_eq!(
            decide(&differs),
            VerifyPlan::Record {
                phase: VerificationPhase::Failed,
                message: "orders-2 did not restore exactly: 1 difference(s)".into(),
                delete_job: false,
            }
        );
        let killed = view(
            Some(Policy::AfterEachBackup),
            JobState::Failed {
                code: None,
                message: "the agent exited with code 137 (OOMKilled)".into(),
            },
        );
        assert_eq!(
            decide(&killed),
            VerifyPlan::Record {
                phase: VerificationPhase::Failed,
                message: "the proof could not be made: the agent exited with code 137 (OOMKilled)"
                    .into(),
                delete_job: false,
            }
        );
        match decide(&view(None, JobState::Succeeded)) {
            VerifyPlan::Record {
                phase: VerificationPhase::Verified,
                delete_job: false,
                ..
            } => {}
            other => panic!("expected Verified, got {other:?}"),
        }
    }

    #[test]
    fn the_newest_success_is_found_by_completion_time() {
        let backup = |name: &str, phase: BackupPhase, done: &str| {
            let mut b = MySQLBackup::for_instance(name, "shop", "orders", None);
            b.status = Some(keeper_crds::MySQLBackupStatus {
                phase: Some(phase),
                completion_time: Some(at(done)),
                ..Default::default()
            });
            b
        };
        let backups = vec![
            backup("a", BackupPhase::Succeeded, "2025-01-01T03:00:00Z"),
            backup("b", BackupPhase::Succeeded, "2025-01-02T03:00:00Z"),
            backup("c", BackupPhase::Failed, "2025-01-03T03:00:00Z"),
        ];
        assert_eq!(
            newest_succeeded(&backups).and_then(|b| b.metadata.name.as_deref()),
            Some("b")
        );
        assert!(newest_succeeded(&[]).is_none());
    }
}
