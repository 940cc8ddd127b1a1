//! One restore run: its Job's name, and what the Job, its pod and the
//! agent's `status.restore` say about how it went. Pure functions over
//! fetched objects.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use keeper_crds::{RestorePhase, RestoreStatus};

/// Longest Job name: a Job's name is copied into its pods' `job-name`
/// label, and label values are at most 63 characters.
const MAX_JOB_NAME: usize = 63;

/// `<instance>-restore-<attempt>`, the instance part shortened so the whole
/// is a valid label value (and never ends in `-` or `.`).
pub fn job_name(instance: &str, attempt: &str) -> String {
    let suffix = format!("-restore-{attempt}");
    let budget = MAX_JOB_NAME.saturating_sub(suffix.len());
    let mut prefix: String = instance.chars().take(budget).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}{suffix}")
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
        /// Whether the agent stopped before touching the target.
        preflight: bool,
    },
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
    let reported = reported.filter(|r| r.job_name.as_deref() == Some(name));
    let reported_failure = reported
        .filter(|r| r.phase == RestorePhase::Failed)
        .and_then(|r| r.message.clone());
    let Some(job) = job else {
        return match reported.map(|r| r.phase) {
            None => RunState::NotStarted,
            Some(RestorePhase::Succeeded) => RunState::Succeeded {
                at: reported.and_then(|r| r.completion_time),
            },
            Some(RestorePhase::Failed) => failed(
                reported_failure
                    .unwrap_or_else(|| format!("restore Job {name} failed and was removed")),
            ),
            // Started, then the Job was deleted: the target may hold part of
            // the backup. Never run it again on our own.
            Some(RestorePhase::Pending | RestorePhase::Running) => RunState::Failed {
                message: format!(
                    "restore Job {name} was deleted before it finished; the server may hold a partial restore"
                ),
                preflight: false,
            },
        };
    };
    let status = job.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        let at = status
            .completion_time
            .as_ref()
            .map(keeper_crds::condition::from_k8s_time);
        return RunState::Succeeded { at };
    }
    let failed_condition = condition("Failed");
    if failed_condition.is_some() || status.failed.unwrap_or(0) > 0 {
        let message = reported_failure
            .or_else(|| termination_message(pods))
            .or_else(|| {
                failed_condition.map(|c| {
                    let reason = c.reason.clone().unwrap_or_else(|| "Failed".to_owned());
                    match c.message.as_deref() {
                        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                        _ => reason,
                    }
                })
            })
            .unwrap_or_else(|| format!("restore Job {name} failed"));
        return failed(message);
    }
    RunState::Running
}

fn failed(message: String) -> RunState {
    let message = one_line(&message);
    RunState::Failed {
        preflight: is_preflight(&message),
        message,
    }
}

/// The first terminated container's message (what the agent wrote to
/// `/dev/termination-log`), or its reason (`OOMKilled`, `Error`) with the
/// exit code when it wrote none.
pub fn termination_message(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()))
        .find(|t| t.exit_code != 0)
        .map(|t| match t.message.as_deref().map(str::trim) {
            Some(message) if !message.is_empty() => message.to_owned(),
            _ => format!(
                "the agent exited with code {} ({})",
                t.exit_code,
                t.reason.as_deref().unwrap_or("no reason given")
            ),
        })
}

/// Whether the agent's error says it stopped before changing the target.
///
/// The agent's preflight errors end with "nothing was changed" or "nothing
/// was restored" (manifest, size, `max_allowed_packet`, a non-empty target),
/// and a flavor mismatch is found before anything runs. Anything else may
/// have happened mid-replay, so it is reported as a plain failure: claiming
/// "nothing was touched" wrongly is the worse mistake.
pub fn is_preflight(message: &str) -> bool {
    const MARKERS: [&str; 3] = [
        "nothing was changed",
        "nothing was restored",
        "Keeper restores only into the same flavor",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

/// The first line, bounded: condition messages and Events stay readable.
fn one_line(message: &str) -> String {
    const MAX: usize = 900;
    let mut line = message.lines().next().unwrap_or_default().trim().to_owned();
    if line.len() > MAX {
        let mut cut = MAX;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

#[cfg(test)]
mod tests {
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

    fn reported(job: &str, phase: RestorePhase, message: Option<&str>) -> RestoreStatus {
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
        }
    }

    #[test]
    fn job_names_are_label_values() {
        assert_eq!(
            job_name("orders", "0123456789"),
            "orders-restore-0123456789"
        );
        let long = job_name(&"a".repeat(253), "0123456789");
        assert_eq!(long.len(), MAX_JOB_NAME);
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
                preflight: true
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
                preflight: true
            }
        );
        assert_eq!(
            state("j", Some(&failed_job), &[pod(137, None, "OOMKilled")], None),
            RunState::Failed {
                message: "the agent exited with code 137 (OOMKilled)".into(),
                preflight: false
            }
        );
        assert_eq!(
            state("j", Some(&failed_job), &[], None),
            RunState::Failed {
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
                preflight: false
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
                preflight: false,
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
    fn preflight_errors_are_told_from_failures_mid_restore() {
        assert!(is_preflight(
            "x has max_allowed_packet=1 but ...; nothing was restored"
        ));
        assert!(!is_preflight(
            "schema `sakila`.`actor`: `INSERT ...` failed: disk full"
        ));
        assert_eq!(one_line("a\nb"), "a");
        assert!(one_line(&"é".repeat(1000)).len() <= 903);
    }
}
