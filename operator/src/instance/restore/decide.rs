//! The restore's decision, without any API: from what [`super::observe`]
//! read ([`RestoreView`]), the [`Step`] the conditions show and what
//! [`super::act`] does about it ([`RestorePlan`]). Unit-tested below; the
//! conditions a step sets are [`super::apply_step`]'s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use keeper_crds::agent::FailureCode;
use keeper_crds::{MySQLInstance, RestorePhase, RestoreStatus};
use serde::Serialize;

use super::run::{self, RunState};
use super::source::{self, ResolvedSource, SourceProblem};
use super::{REASON_FAILED, REASON_PREFLIGHT_FAILED, RETRY_ANNOTATION, Step, restore_job};
use crate::accounts::AppAccess;
use crate::agent_job::start::{self, StartVerdict};
use crate::context::OperatorConfig;
use crate::error::Result;

/// Everything the restore decides on, read once by [`super::observe`].
#[derive(Clone, Debug)]
pub struct RestoreView {
    /// `spec.restoreFrom` resolved, or why it cannot be used.
    pub source: std::result::Result<ResolvedSource, SourceProblem>,
    /// This attempt's Job name (empty when the source is not resolved).
    pub job_name: String,
    /// This attempt's Job, when it exists.
    pub job: Option<Job>,
    /// The pods of that Job (for the start deadline and the termination
    /// message).
    pub pods: Vec<Pod>,
    /// `status.restore`: the agent's report.
    pub reported: Option<RestoreStatus>,
    /// Another restore Job of the instance that has not ended.
    pub other_running: Option<String>,
    /// The root password Secret the restore logs in with, when it does not
    /// exist (`None` when it does).
    pub missing_root_secret: Option<String>,
    /// At least one server replica is ready.
    pub server_ready: bool,
    /// `--agent-start-timeout`.
    pub start_timeout: Duration,
    /// The instance's namespace (the key of start problems).
    pub namespace: String,
    pub now: DateTime<Utc>,
}

/// What [`super::act`] does, in this order: `access`, `delete_job`,
/// `create`, `report`, `start_note`. Destructured without `..` there, so a
/// new field cannot be forgotten.
#[derive(Clone, Debug)]
pub struct RestorePlan {
    /// What the conditions show when every action below succeeds.
    pub step: Step,
    /// The application account's state to ensure first; when it cannot be
    /// ensured the step becomes [`Step::Waiting`] and nothing else is done.
    pub access: Option<Access>,
    /// A Job to delete (a run that never started).
    pub delete_job: Option<String>,
    /// A Job to create, with what is reported once it is created.
    pub create: Option<Creation>,
    /// The operator's `status.restore` fields to apply.
    pub report: Option<Report>,
    /// A start problem to remember (and publish once).
    pub start_note: Option<StartNote>,
}

impl RestorePlan {
    /// Only `step`: nothing to do.
    fn shows(step: Step) -> Self {
        Self {
            step,
            access: None,
            delete_job: None,
            create: None,
            report: None,
            start_note: None,
        }
    }
}

/// The application account's state a step needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Locked before the restore Job can start: nothing but the restore
    /// reaches the server.
    HoldBeforeStart { description: String },
    /// Open again once the restore is in.
    OpenAfterSuccess { description: String, job: String },
}

impl Access {
    /// The state to ensure.
    pub fn state(&self) -> AppAccess {
        match self {
            Self::HoldBeforeStart { .. } => AppAccess::Held,
            Self::OpenAfterSuccess { .. } => AppAccess::Open,
        }
    }

    /// The waiting step's message when the account could not be set.
    pub fn waiting(&self, error: &str) -> String {
        match self {
            Self::HoldBeforeStart { description } => {
                format!("{error}; restoring {description} waits until it is locked")
            }
            Self::OpenAfterSuccess { description, job } => {
                format!("restored {description} with Job {job}, but {error}; retrying")
            }
        }
    }
}

/// A restore Job to create.
#[derive(Clone, Debug)]
pub struct Creation {
    /// The Job (boxed: a whole object beside small fields).
    pub job: Box<Job>,
    /// `status.restore` once created (not when it existed already).
    pub started: RestoreFields,
    /// The source, for the `RestoreStarted` Event.
    pub description: String,
}

/// The operator's `status.restore` fields and whether they are forced
/// (only for the end of a run the agent could not report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub fields: RestoreFields,
    pub force: bool,
}

/// A start problem of the Job `key` (`namespace/name`): `problem` is
/// remembered (`None` forgets it) and `warning` published when it is new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartNote {
    pub key: String,
    pub problem: Option<String>,
    /// Reason and note of the Warning Event.
    pub warning: Option<(String, String)>,
}

/// The operator's part of `status.restore`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFields {
    pub phase: RestorePhase,
    pub source: String,
    pub job_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<FailureCode>,
}

impl RestoreFields {
    fn started(resolved: &ResolvedSource, job: &str, now: DateTime<Utc>) -> Self {
        Self {
            start_time: Some(now),
            ..Self::ended(resolved, job, RestorePhase::Pending, None)
        }
    }

    fn ended(
        resolved: &ResolvedSource,
        job: &str,
        phase: RestorePhase,
        message: Option<&str>,
    ) -> Self {
        Self {
            phase,
            source: resolved.description.clone(),
            job_name: job.to_owned(),
            start_time: None,
            message: message.map(str::to_owned),
            failure_code: None,
        }
    }

    /// The end of a failed run the agent could not report, with its kind.
    fn failed(resolved: &ResolvedSource, job: &str, code: FailureCode, message: &str) -> Self {
        Self {
            failure_code: Some(code),
            ..Self::ended(resolved, job, RestorePhase::Failed, Some(message))
        }
    }
}

/// The attempt's Job name for `resolved` on `instance`.
pub fn job_name_for(instance: &MySQLInstance, resolved: &ResolvedSource) -> String {
    let retry = instance
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RETRY_ANNOTATION))
        .map(String::as_str);
    let attempt = source::attempt_key(&resolved.key, resolved.overwrite, retry);
    run::job_name(
        instance.metadata.name.as_deref().unwrap_or_default(),
        &attempt,
    )
}

/// The restore's decision for `view` (see the module docs of
/// [`super`] for how a restore goes).
///
/// # Errors
/// Builder errors of the restore Job.
pub fn decide(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    view: &RestoreView,
) -> Result<RestorePlan> {
    let RestoreView {
        source,
        job_name: name,
        job,
        pods,
        reported,
        other_running,
        missing_root_secret,
        server_ready,
        // The start deadline's, read there with the view.
        start_timeout: _,
        namespace: _,
        now,
    } = view;
    let resolved = match source {
        Err(problem) => return Ok(RestorePlan::shows(Step::Blocked(problem.clone()))),
        Ok(resolved) => resolved,
    };
    let description = describe(resolved);
    let state = run::state(name, job.as_ref(), pods, reported.as_ref());
    let reported = reported
        .as_ref()
        .filter(|r| r.job_name.as_deref() == Some(name.as_str()));
    let running = Step::Running {
        job: name.clone(),
        source: description.clone(),
    };
    Ok(match state {
        RunState::NotStarted if !server_ready => RestorePlan::shows(Step::WaitingForServer(
            format!("waiting for the server to become ready before restoring {description}"),
        )),
        RunState::NotStarted if other_running.is_some() => {
            let other = other_running.as_deref().unwrap_or_default();
            RestorePlan::shows(Step::Waiting(format!(
                "waiting for restore Job {other} to finish before restoring {description}"
            )))
        }
        // The restore logs in as root (crate::accounts): its Secret, not the
        // backup user's, must exist for the Job's secretKeyRef.
        RunState::NotStarted if missing_root_secret.is_some() => {
            let secret = missing_root_secret.as_deref().unwrap_or_default();
            RestorePlan::shows(Step::Waiting(format!(
                "waiting for Secret {secret} (the root password the restore logs in with) before restoring {description}"
            )))
        }
        RunState::NotStarted => RestorePlan {
            access: Some(Access::HoldBeforeStart {
                description: description.clone(),
            }),
            create: Some(Creation {
                job: Box::new(restore_job(config, instance, resolved, name)?),
                started: RestoreFields::started(resolved, name, *now),
                description,
            }),
            ..RestorePlan::shows(running)
        },
        RunState::Running => {
            // Until the agent reports, its pod may never start.
            let agent_reported = reported.is_some_and(|r| r.phase != RestorePhase::Pending);
            match job.as_ref().filter(|_| !agent_reported) {
                Some(job) => start_deadline(view, resolved, job, &description, running),
                None => RestorePlan::shows(running),
            }
        }
        RunState::Succeeded { at } => RestorePlan {
            // Applications get the server back only once the restore is in.
            access: Some(Access::OpenAfterSuccess {
                description: description.clone(),
                job: name.clone(),
            }),
            report: reported
                .is_none_or(|r| r.phase != RestorePhase::Succeeded)
                .then(|| Report {
                    fields: RestoreFields::ended(resolved, name, RestorePhase::Succeeded, None),
                    force: true,
                }),
            ..RestorePlan::shows(Step::Succeeded {
                restored_from: source::restored_from(resolved, at.unwrap_or(*now)),
                // The agent says why when it changed nothing (already restored).
                message: format!(
                    "restored {description} with Job {name}{}",
                    reported
                        .filter(|r| r.phase == RestorePhase::Succeeded)
                        .and_then(|r| r.message.as_deref())
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            })
        },
        RunState::Failed { message, code } => RestorePlan {
            report: reported
                .is_none_or(|r| !r.phase.is_final())
                .then(|| Report {
                    fields: RestoreFields::failed(resolved, name, code, &message),
                    force: true,
                }),
            ..RestorePlan::shows(failed_step(&description, name, &message, code))
        },
    })
}

/// The start deadline of a restore Job the agent has not reported on yet
/// ([`crate::agent_job::start`]): a Warning Event when its pod cannot start,
/// and past the deadline the Job deleted and the restore failed. A pod that
/// never started changed nothing, so it is a preflight failure
/// (`RestorePreflightFailed`), and like every failure it is not retried on
/// its own.
fn start_deadline(
    view: &RestoreView,
    resolved: &ResolvedSource,
    job: &Job,
    description: &str,
    running: Step,
) -> RestorePlan {
    let name = &view.job_name;
    let key = format!("{}/{name}", view.namespace);
    match start::verdict(job, &view.pods, view.start_timeout, view.now) {
        StartVerdict::Started => RestorePlan {
            start_note: Some(StartNote {
                key,
                problem: None,
                warning: None,
            }),
            ..RestorePlan::shows(running)
        },
        StartVerdict::Waiting {
            problem: Some(problem),
            deadline,
        } => RestorePlan {
            start_note: Some(StartNote {
                key,
                problem: Some(problem.to_string()),
                warning: Some((
                    problem.reason.clone(),
                    format!(
                        "the agent's pod of restore Job {name} cannot start yet: {problem}; the restore fails at {} unless it starts",
                        deadline.to_rfc3339()
                    ),
                )),
            }),
            ..RestorePlan::shows(running)
        },
        StartVerdict::Waiting { problem: None, .. } => RestorePlan::shows(running),
        StartVerdict::TimedOut { problem } => {
            // The agent's preflight wording: the pod never ran.
            let agent = format!(
                "{}; Job {name} was deleted; nothing was changed",
                problem.message
            );
            let code = FailureCode::PreflightFailed;
            RestorePlan {
                delete_job: Some(name.clone()),
                report: Some(Report {
                    fields: RestoreFields::failed(resolved, name, code, &agent),
                    force: true,
                }),
                start_note: Some(StartNote {
                    key,
                    problem: None,
                    warning: None,
                }),
                ..RestorePlan::shows(failed_step(description, name, &agent, code))
            }
        }
    }
}

fn failed_step(description: &str, job: &str, agent: &str, code: FailureCode) -> Step {
    Step::Failed {
        reason: if code.changed_nothing() {
            REASON_PREFLIGHT_FAILED
        } else {
            REASON_FAILED
        },
        message: failure_message(description, job, agent, code),
    }
}

/// `MySQLBackup <name>` or the location's URL, for messages.
pub fn describe(resolved: &ResolvedSource) -> String {
    if resolved.url == resolved.description {
        resolved.url.clone()
    } else {
        format!("MySQLBackup {} ({})", resolved.description, resolved.url)
    }
}

fn failure_message(description: &str, job: &str, agent: &str, code: FailureCode) -> String {
    let mut message = format!("restoring {description} failed (Job {job}): {agent}");
    if code == FailureCode::TargetNotEmpty {
        message.push_str(
            "; to replace those databases set spec.restoreFrom.overwrite: true (they are dropped first)",
        );
    }
    if !code.changed_nothing() {
        message.push_str("; the server may hold part of the backup");
    }
    message.push_str(&format!(
        "; to retry, fix the cause and change spec.restoreFrom or set the annotation {RETRY_ANNOTATION} to a new value"
    ));
    message
}

#[cfg(test)]
mod tests {
    use keeper_crds::{BackupDestination, MySQLInstanceSpec, PvcDestination};
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().expect("time")
    }

    fn instance() -> MySQLInstance {
        let spec: MySQLInstanceSpec = serde_json::from_value(json!({
            "user": "app", "restoreFrom": {"backupName": "b1"}
        }))
        .expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        instance
    }

    fn resolved() -> ResolvedSource {
        ResolvedSource {
            key: "0123456789".into(),
            description: "b1".into(),
            destination: BackupDestination::pvc(PvcDestination {
                claim_name: "backups".into(),
                path: String::new(),
            }),
            backup: "orders/20261207T000000Z".into(),
            url: "file:///backups/orders/20261207T000000Z".into(),
            overwrite: false,
        }
    }

    /// A restore whose source resolved, with the server ready, the root
    /// Secret there, no Job yet and nothing else running.
    fn view() -> RestoreView {
        let resolved = resolved();
        RestoreView {
            job_name: job_name_for(&instance(), &resolved),
            source: Ok(resolved),
            job: None,
            pods: Vec::new(),
            reported: None,
            other_running: None,
            missing_root_secret: None,
            server_ready: true,
            start_timeout: Duration::from_secs(600),
            namespace: "shop".into(),
            now: now(),
        }
    }

    fn job(created: &str, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": view().job_name, "creationTimestamp": created},
            "status": status,
        }))
        .expect("job")
    }

    fn unschedulable_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-12-07T11:58:00Z"},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory."
            }]}
        }))
        .expect("pod")
    }

    fn reported(phase: RestorePhase, message: Option<&str>) -> RestoreStatus {
        super::super::run::tests::reported(&view().job_name, phase, message)
    }

    fn plan(view: &RestoreView) -> RestorePlan {
        decide(&OperatorConfig::default(), &instance(), view).expect("plan")
    }

    /// Nothing but the step: no access change, Job, report or note.
    fn only_shows(plan: &RestorePlan) -> bool {
        let RestorePlan {
            step: _,
            access,
            delete_job,
            create,
            report,
            start_note,
        } = plan;
        access.is_none()
            && delete_job.is_none()
            && create.is_none()
            && report.is_none()
            && start_note.is_none()
    }

    #[test]
    fn a_source_that_cannot_be_used_blocks_and_does_nothing() {
        let problem = SourceProblem {
            reason: "BackupNotFound",
            message: "m".into(),
        };
        let plan = plan(&RestoreView {
            source: Err(problem.clone()),
            job_name: String::new(),
            ..view()
        });
        assert_eq!(plan.step, Step::Blocked(problem));
        assert!(only_shows(&plan));
    }

    #[test]
    fn nothing_starts_before_the_server_the_other_restore_and_the_root_secret() {
        let waiting = plan(&RestoreView {
            server_ready: false,
            ..view()
        });
        assert!(
            matches!(waiting.step, Step::WaitingForServer(_)),
            "{waiting:?}"
        );
        assert!(only_shows(&waiting));
        let other = plan(&RestoreView {
            other_running: Some("orders-restore-aaaaaaaaaa".into()),
            ..view()
        });
        assert!(
            matches!(&other.step, Step::Waiting(m) if m.contains("orders-restore-aaaaaaaaaa")),
            "{other:?}"
        );
        assert!(only_shows(&other));
        let secret = plan(&RestoreView {
            missing_root_secret: Some("orders-credentials".into()),
            ..view()
        });
        assert!(
            matches!(&secret.step, Step::Waiting(m) if m.contains("orders-credentials")),
            "{secret:?}"
        );
        assert!(only_shows(&secret));
    }

    #[test]
    fn a_new_attempt_locks_the_account_then_creates_its_job() {
        let view = view();
        let plan = plan(&view);
        assert!(matches!(&plan.step, Step::Running { job, .. } if *job == view.job_name));
        assert_eq!(
            plan.access.as_ref().map(Access::state),
            Some(AppAccess::Held)
        );
        let creation = plan.create.expect("a Job");
        assert_eq!(
            creation.job.metadata.name.as_deref(),
            Some(view.job_name.as_str())
        );
        assert_eq!(creation.started.phase, RestorePhase::Pending);
        assert_eq!(creation.started.start_time, Some(now()));
        assert!(plan.report.is_none() && plan.delete_job.is_none());
    }

    #[test]
    fn a_pod_that_cannot_start_is_a_warning_then_a_preflight_failure() {
        // Two minutes in: a warning, the run goes on.
        let young = RestoreView {
            job: Some(job("2026-12-07T11:58:00Z", json!({"active": 1}))),
            pods: vec![unschedulable_pod()],
            ..view()
        };
        let plan = plan(&young);
        assert!(matches!(plan.step, Step::Running { .. }), "{plan:?}");
        let note = plan.start_note.expect("a note");
        assert_eq!(note.key, format!("shop/{}", young.job_name));
        let (reason, message) = note.warning.expect("a warning");
        assert_eq!(reason, "Unschedulable");
        assert!(message.contains("Insufficient memory"), "{message}");
        assert!(plan.delete_job.is_none() && plan.report.is_none());

        // Past the deadline: the Job goes, nothing was changed.
        let old = RestoreView {
            job: Some(job("2026-12-07T11:40:00Z", json!({"active": 1}))),
            ..young.clone()
        };
        let plan = super::tests::plan(&old);
        assert!(
            matches!(&plan.step, Step::Failed { reason, message }
                if *reason == REASON_PREFLIGHT_FAILED && message.contains("nothing was changed")),
            "{plan:?}"
        );
        assert_eq!(plan.delete_job.as_deref(), Some(old.job_name.as_str()));
        let report = plan.report.expect("a report");
        assert!(report.force);
        assert_eq!(
            report.fields.failure_code,
            Some(FailureCode::PreflightFailed)
        );

        // Once the agent reports, its pod started: no deadline any more.
        let reporting = RestoreView {
            reported: Some(reported(RestorePhase::Running, None)),
            ..old
        };
        let plan = super::tests::plan(&reporting);
        assert!(matches!(plan.step, Step::Running { .. }));
        assert!(only_shows(&plan), "{plan:?}");
    }

    #[test]
    fn a_success_opens_the_account_and_is_recorded() {
        let done = RestoreView {
            job: Some(job(
                "2026-12-07T11:40:00Z",
                json!({"succeeded": 1, "completionTime": "2026-12-07T11:50:00Z"}),
            )),
            reported: Some(reported(
                RestorePhase::Succeeded,
                Some("already restored b1"),
            )),
            ..view()
        };
        let plan = plan(&done);
        let Step::Succeeded {
            restored_from,
            message,
        } = &plan.step
        else {
            panic!("{plan:?}");
        };
        assert!(
            restored_from.contains("[0123456789] at 2026-12-07T11:50:00"),
            "{restored_from}"
        );
        assert!(message.ends_with(": already restored b1"), "{message}");
        assert_eq!(
            plan.access.as_ref().map(Access::state),
            Some(AppAccess::Open)
        );
        // The agent reported the success itself: nothing to force.
        assert!(plan.report.is_none());
        assert!(
            plan.access
                .expect("access")
                .waiting("cannot unlock")
                .contains("retrying")
        );

        // The agent could not report: the operator records the end.
        let unreported = RestoreView {
            reported: None,
            ..done
        };
        let report = super::tests::plan(&unreported).report.expect("a report");
        assert_eq!(report.fields.phase, RestorePhase::Succeeded);
        assert!(report.force);
    }

    #[test]
    fn a_failure_is_reported_once_with_its_kind() {
        let failed_job = job(
            "2026-12-07T11:40:00Z",
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        let unreported = RestoreView {
            job: Some(failed_job),
            ..view()
        };
        let plan = plan(&unreported);
        assert!(
            matches!(&plan.step, Step::Failed { reason, .. } if *reason == REASON_FAILED),
            "{plan:?}"
        );
        let report = plan.report.expect("a report");
        assert_eq!(report.fields.phase, RestorePhase::Failed);
        assert!(report.force);
        assert!(plan.access.is_none() && plan.create.is_none());

        // The agent said it changed nothing: a preflight failure, and its
        // own report stays.
        let mut agent = reported(RestorePhase::Failed, Some("the target is not empty"));
        agent.failure_code = Some(FailureCode::TargetNotEmpty);
        let refused = RestoreView {
            reported: Some(agent),
            ..unreported
        };
        let plan = super::tests::plan(&refused);
        assert!(
            matches!(&plan.step, Step::Failed { reason, message }
                if *reason == REASON_PREFLIGHT_FAILED && message.contains("overwrite: true")),
            "{plan:?}"
        );
        assert!(plan.report.is_none());
    }

    #[test]
    fn failure_messages_say_how_to_retry() {
        let message = failure_message(
            "MySQLBackup b (s3://x/b)",
            "j",
            "t already has 2 objects of the backup's databases (a.b); restore into an empty server or pass --overwrite; nothing was changed",
            FailureCode::TargetNotEmpty,
        );
        assert!(message.contains("overwrite: true"), "{message}");
        assert!(message.contains(RETRY_ANNOTATION), "{message}");
        assert!(!message.contains("part of the backup"), "{message}");
        let message = failure_message("u", "j", "disk full", FailureCode::RunFailed);
        assert!(message.contains("part of the backup"), "{message}");
    }
}
