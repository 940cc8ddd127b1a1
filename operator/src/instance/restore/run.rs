//! One restore run: its Job's name, and what the Job, its pod and the
//! agent's `status.restore` say about how it went. Pure functions over
//! fetched objects.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use keeper_crds::agent::FailureCode;
use keeper_crds::{RestorePhase, RestoreStatus};

use crate::agent_job::lifecycle::{self, Outcome};

/// `<instance>-restore-<attempt>`, shortened by [`lifecycle::name`]'s rule.
pub fn job_name(instance: &str, attempt: &str) -> String {
    lifecycle::name(instance, &format!("restore-{attempt}"))
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No Job and no report of one: the run has not started.
    NotStarted,
    /// The Job exists and has not ended.
    Running,
    /// The Job completed (or, its Job gone, the agent reported success).
    Succeeded {
        /// When it ended, when known.
        at: Option<DateTime<Utc>>,
    },
    /// The run failed; nothing retries it.
    Failed {
        /// The agent's one-line error, or what is known about the failure.
        message: String,
        /// What kind of failure: whether the agent stopped before touching
        /// the target, and why.
        code: FailureCode,
    },
}

/// The attempt key at the end of a restore Job's name (`…-restore-<key>`).
fn attempt_of(job_name: &str) -> Option<&str> {
    job_name
        .rsplit_once("-restore-")
        .map(|(_, key)| key)
        .filter(|key| !key.is_empty())
}

/// Whether the agent's report is about the run of Job `name`. Also an ended
/// report of the same attempt under another Job name: operators before the
/// one naming rule of `lifecycle` cut long instance names without a hash,
/// and a restore that failed under such a name must not run again after an
/// upgrade (with `overwrite` it would drop the databases once more). A
/// report still running under an old name is not taken: its Job is not
/// this one, and a new Job waits for every other restore Job to end.
fn is_about(report: &RestoreStatus, name: &str) -> bool {
    let Some(reported) = report.job_name.as_deref() else {
        return false;
    };
    if reported == name {
        return true;
    }
    let ended = matches!(report.phase, RestorePhase::Succeeded | RestorePhase::Failed);
    ended && matches!(attempt_of(reported), Some(key) if attempt_of(name) == Some(key))
}

/// The state of the run of Job `name`: from the Job (`None` when absent),
/// its pods (for the termination message) and `status.restore` (the agent's
/// report, used only when it is about this Job).
pub fn state(
    name: &str,
    job: Option<&Job>,
    pods: &[Pod],
    reported: Option<&RestoreStatus>,
) -> RunState {
    let reported = reported.filter(|r| is_about(r, name));
    // The agent's own report wins, then its termination message.
    let reported_failure = reported
        .filter(|r| r.phase == RestorePhase::Failed)
        .and_then(|r| {
            r.message.clone().map(|message| lifecycle::AgentFailure {
                code: r.failure_code,
                message,
            })
        });
    let Some(job) = job else {
        return match reported.map(|r| r.phase) {
            None => RunState::NotStarted,
            Some(RestorePhase::Succeeded) => RunState::Succeeded {
                at: reported.and_then(|r| r.completion_time),
            },
            Some(RestorePhase::Failed) => {
                failed(reported_failure.unwrap_or_else(|| lifecycle::AgentFailure {
                    code: reported.and_then(|r| r.failure_code),
                    message: format!("restore Job {name} failed and was removed"),
                }))
            }
            // Started, then the Job was deleted: the target may hold part of
            // the backup. Never run it again on our own.
            Some(RestorePhase::Pending | RestorePhase::Running) => RunState::Failed {
                message: format!(
                    "restore Job {name} was deleted before it finished; the server may hold a partial restore"
                ),
                code: FailureCode::RunFailed,
            },
        };
    };
    match lifecycle::outcome(job) {
        Outcome::Running => RunState::Running,
        Outcome::Succeeded { at } => RunState::Succeeded { at },
        Outcome::Failed { reason, message } => {
            let failure = reported_failure
                .or_else(|| lifecycle::termination_message(pods))
                .unwrap_or_else(|| lifecycle::AgentFailure {
                    // The Job's own words: the agent said nothing.
                    code: Some(FailureCode::RunFailed),
                    message: if message.is_empty() {
                        reason
                    } else {
                        format!("{reason}: {message}")
                    },
                });
            failed(failure)
        }
    }
}

fn failed(failure: lifecycle::AgentFailure) -> RunState {
    RunState::Failed {
        code: failure.kind(),
        message: one_line(&failure.message),
    }
}

/// The first line, bounded: condition messages and Events stay readable
/// (the agent bounds what it reports by the same rule).
fn one_line(message: &str) -> String {
    keeper_crds::message::status_line(message, 900)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).expect("job")
    }

    fn pod(exit_code: i32, message: Option<&str>, reason: &str) -> Pod {
        serde_json::from_value(json!({"status": {"containerStatuses": [{
            "name": "agent", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "message": message, "reason": reason}}
        }]}}))
        .expect("pod")
    }

    /// The agent's report on the run of Job `job` (the decide tests' too).
    pub(crate) fn reported(job: &str, phase: RestorePhase, message: Option<&str>) -> RestoreStatus {
        RestoreStatus {
            phase,
            source: "b".into(),
            job_name: Some(job.into()),
            start_time: None,
            completion_time: None,
            members_done: None,
            members_total: None,
            bytes_done: None,
            message: message.map(str::to_owned),
            failure_code: None,
        }
    }

    /// A restore of a long-named instance failed under the Job name of an
    /// operator before the one naming rule; after the upgrade the Job has a
    /// new name and the old Job is gone: it stays failed, never runs again.
    #[test]
    fn a_failed_restore_under_a_previous_job_name_stays_failed() {
        let instance = "a".repeat(50);
        let name = job_name(&instance, "0123456789");
        let previous = format!("{}-restore-0123456789", "a".repeat(44));
        assert_ne!(name, previous);
        let failed = reported(&previous, RestorePhase::Failed, Some("target not empty"));
        assert!(matches!(
            state(&name, None, &[], Some(&failed)),
            RunState::Failed { .. }
        ));
        let succeeded = reported(&previous, RestorePhase::Succeeded, None);
        assert!(matches!(
            state(&name, None, &[], Some(&succeeded)),
            RunState::Succeeded { .. }
        ));
        // Another attempt's report is not about this run.
        let other = reported(
            &format!("{}-restore-9999999999", "a".repeat(44)),
            RestorePhase::Failed,
            Some("x"),
        );
        assert_eq!(state(&name, None, &[], Some(&other)), RunState::NotStarted);
        // Still running under the old name: not this Job.
        let running = reported(&previous, RestorePhase::Running, None);
        assert_eq!(
            state(&name, None, &[], Some(&running)),
            RunState::NotStarted
        );
    }

    #[test]
    fn job_names_are_label_values() {
        assert_eq!(
            job_name("orders", "0123456789"),
            "orders-restore-0123456789"
        );
        let long = job_name(&"a".repeat(253), "0123456789");
        assert_eq!(long.len(), lifecycle::MAX_NAME);
        assert!(long.ends_with("-restore-0123456789"));
        let awkward = format!("{}-x", "b".repeat(43));
        assert!(!job_name(&awkward, "0123456789").contains("--"));
    }

    #[test]
    fn a_job_that_ran_tells_how_it_went() {
        let running = job(json!({"active": 1}));
        assert_eq!(state("j", Some(&running), &[], None), RunState::Running);
        let done = job(
            json!({"succeeded": 1, "completionTime": "2025-01-02T03:04:05Z",
            "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert!(matches!(
            state("j", Some(&done), &[], None),
            RunState::Succeeded { at: Some(_) }
        ));

        let failed_job = job(
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        let refusal = "127.0.0.1:3306 already has 3 objects of the backup's databases (sakila.actor); restore into an empty server or pass --overwrite; nothing was changed";
        // The agent's own report wins, then the pod's termination message,
        // then the Job's condition.
        assert_eq!(
            state(
                "j",
                Some(&failed_job),
                &[pod(1, Some("other"), "Error")],
                Some(&reported("j", RestorePhase::Failed, Some(refusal)))
            ),
            RunState::Failed {
                message: refusal.into(),
                code: FailureCode::TargetNotEmpty
            }
        );
        assert_eq!(
            state(
                "j",
                Some(&failed_job),
                &[pod(1, Some(refusal), "Error")],
                Some(&reported("old-job", RestorePhase::Failed, Some("old")))
            ),
            RunState::Failed {
                message: refusal.into(),
                code: FailureCode::TargetNotEmpty
            }
        );
        assert_eq!(
            state("j", Some(&failed_job), &[pod(137, None, "OOMKilled")], None),
            RunState::Failed {
                message: "the agent exited with code 137 (OOMKilled)".into(),
                code: FailureCode::RunFailed
            }
        );
        assert_eq!(
            state("j", Some(&failed_job), &[], None),
            RunState::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
                code: FailureCode::RunFailed
            }
        );
    }

    #[test]
    fn a_job_that_is_gone_is_never_run_again() {
        assert_eq!(state("j", None, &[], None), RunState::NotStarted);
        assert_eq!(
            state(
                "j",
                None,
                &[],
                Some(&reported("other", RestorePhase::Failed, None))
            ),
            RunState::NotStarted
        );
        assert!(matches!(
            state(
                "j",
                None,
                &[],
                Some(&reported("j", RestorePhase::Running, None))
            ),
            RunState::Failed {
                code: FailureCode::RunFailed,
                ..
            }
        ));
        assert!(matches!(
            state(
                "j",
                None,
                &[],
                Some(&reported("j", RestorePhase::Succeeded, None))
            ),
            RunState::Succeeded { .. }
        ));
    }

    #[test]
    fn the_agents_code_decides_never_its_words() {
        let failed_job = job(json!({"failed": 1}));
        let mut report = reported(
            "j",
            RestorePhase::Failed,
            Some("replay stopped; nothing was changed, it said"),
        );
        report.failure_code = Some(FailureCode::RunFailed);
        assert_eq!(
            state("j", Some(&failed_job), &[], Some(&report)),
            RunState::Failed {
                message: "replay stopped; nothing was changed, it said".into(),
                code: FailureCode::RunFailed
            }
        );
        // Without a report, the termination message's code; its message
        // shows without the code.
        assert_eq!(
            state(
                "j",
                Some(&failed_job),
                &[pod(
                    1,
                    Some("[PreflightFailed] b/manifest.json is missing"),
                    "Error"
                )],
                None
            ),
            RunState::Failed {
                message: "b/manifest.json is missing".into(),
                code: FailureCode::PreflightFailed
            }
        );
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(one_line("a\nb"), "a");
        assert!(one_line(&"é".repeat(1000)).len() <= 903);
    }
}
