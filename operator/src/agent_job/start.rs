//! Whether an agent Job's pod has started, and if not, why not.
//!
//! Kubernetes has no start deadline for a Job: a pod that cannot be scheduled,
//! whose image cannot be pulled, or whose container cannot be created (a
//! `secretKeyRef` to a Secret that does not exist) stays Pending for ever, and
//! `activeDeadlineSeconds` would also end long healthy runs. So the operator
//! looks at the Job's pod: [`diagnose`] turns one Pod into "why it cannot
//! start", and [`verdict`] decides, against a start deadline counted from
//! the Job's creation, whether the run still waits or has failed to start.
//! Backups (on-demand and scheduled) and restores share both.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use keeper_crds::condition::from_k8s_time;

/// A container waiting for one of these reasons will not start by itself
/// soon: the image cannot be had, or the container cannot be built from its
/// spec (a missing Secret or key, a bad mount). `ContainerCreating` and
/// `PodInitializing` are normal steps and are not here.
const STUCK_WAITING_REASONS: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Reason of a start failure without a diagnosis (the pod just never started).
pub const REASON_START_DEADLINE: &str = "StartDeadlineExceeded";
/// Reason of a start failure when the Job never got a pod (quota, Pod
/// Security admission, a deleted ServiceAccount: the Job's Events say which).
pub const REASON_NO_POD: &str = "NoPodCreated";

/// Why a pod cannot start: a CamelCase reason (the kubelet's or the
/// scheduler's own) and the message that came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartProblem {
    /// `Unschedulable`, `ImagePullBackOff`, `CreateContainerConfigError`, ...
    pub reason: String,
    /// What the scheduler or the kubelet said.
    pub message: String,
}

impl std::fmt::Display for StartProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.reason, self.message)
        }
    }
}

/// Whether `pod` has started: it runs or ran (phase past Pending, or a
/// container that runs or ended).
pub fn has_started(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if matches!(
        status.phase.as_deref(),
        Some("Running" | "Succeeded" | "Failed")
    ) {
        return true;
    }
    all_containers(pod).any(|c| {
        c.state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    })
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status.iter().flat_map(|s| {
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
    })
}

/// Why `pod` cannot start, or `None` when it started or is still starting
/// normally (being scheduled, pulling its image, creating its container).
///
/// Looks at the scheduler's `PodScheduled=False` (`Unschedulable`: no node
/// fits) and at containers waiting for a reason that does not clear by
/// itself ([`STUCK_WAITING_REASONS`]).
pub fn diagnose(pod: &Pod) -> Option<StartProblem> {
    if has_started(pod) {
        return None;
    }
    let status = pod.status.as_ref()?;
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(condition) = unschedulable {
        return Some(StartProblem {
            reason: condition
                .reason
                .clone()
                .unwrap_or_else(|| "Unschedulable".to_owned()),
            message: condition.message.clone().unwrap_or_default(),
        });
    }
    all_containers(pod).find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        STUCK_WAITING_REASONS
            .contains(&reason)
            .then(|| StartProblem {
                reason: reason.to_owned(),
                message: format!(
                    "container {}: {}",
                    c.name,
                    waiting.message.as_deref().unwrap_or("no message")
                ),
            })
    })
}

/// Where a run's start stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartVerdict {
    /// A pod started, or the Job already ended: nothing to wait for here.
    Started,
    /// Not started yet, still within the deadline.
    Waiting {
        /// What keeps the pod from starting, when something does.
        problem: Option<StartProblem>,
        /// When the run is given up on.
        deadline: DateTime<Utc>,
    },
    /// Not started within the deadline: the run has failed.
    TimedOut {
        /// Why (a diagnosis, or [`REASON_START_DEADLINE`] / [`REASON_NO_POD`]).
        problem: StartProblem,
    },
}

/// Whether the run of `job`, whose pods are `pods`, has started, may still
/// start before `created + timeout`, or failed to start.
pub fn verdict(job: &Job, pods: &[Pod], timeout: Duration, now: DateTime<Utc>) -> StartVerdict {
    if super::lifecycle::ended(job) || pods.iter().any(has_started) {
        return StartVerdict::Started;
    }
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, from_k8s_time);
    let deadline = deadline_after(created, timeout);
    // The newest pod says most about now.
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
    let problem = pods.iter().find_map(|p| diagnose(p));
    if now < deadline {
        return StartVerdict::Waiting { problem, deadline };
    }
    let within = describe_duration(timeout);
    let problem = match problem {
        Some(problem) => StartProblem {
            message: format!("the agent's pod did not start within {within}: {problem}"),
            reason: problem.reason,
        },
        None if pods.is_empty() => StartProblem {
            reason: REASON_NO_POD.to_owned(),
            message: format!(
                "no pod was created for the Job within {within}; its Events say why (quota, Pod Security admission, ServiceAccount)"
            ),
        },
        None => StartProblem {
            reason: REASON_START_DEADLINE.to_owned(),
            message: format!("the agent's pod did not start within {within}"),
        },
    };
    StartVerdict::TimedOut { problem }
}

/// `since + timeout`, saturating (a timeout too large to add never ends).
pub fn deadline_after(since: DateTime<Utc>, timeout: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(timeout)
        .ok()
        .and_then(|t| since.checked_add_signed(t))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `90s`, `10m`, `2h`, `1h30m`: a duration as people write it.
pub fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).expect("pod")
    }

    fn waiting(reason: &str, message: &str) -> Pod {
        pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}]}))
    }

    fn job(created: &str, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j", "creationTimestamp": created},
            "status": status,
        }))
        .expect("job")
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").to_utc()
    }

    #[test]
    fn a_pod_that_cannot_start_says_why() {
        let unschedulable = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."}]}));
        assert_eq!(
            diagnose(&unschedulable),
            Some(StartProblem {
                reason: "Unschedulable".into(),
                message: "0/3 nodes are available: 3 Insufficient memory.".into()
            })
        );
        for reason in [
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerConfigError",
        ] {
            let problem = diagnose(&waiting(reason, "secret \"s3-creds\" not found"))
                .unwrap_or_else(|| panic!("{reason} is a problem"));
            assert_eq!(problem.reason, reason);
            assert_eq!(
                problem.to_string(),
                format!("{reason}: container agent: secret \"s3-creds\" not found")
            );
        }
    }

    #[test]
    fn a_pod_on_its_way_or_running_has_no_problem() {
        assert_eq!(diagnose(&pod(json!({"phase": "Pending"}))), None);
        assert_eq!(diagnose(&waiting("ContainerCreating", "")), None);
        assert_eq!(diagnose(&pod(json!({}))), None);
        let running = pod(json!({"phase": "Running"}));
        assert!(has_started(&running));
        assert_eq!(diagnose(&running), None);
        let terminated = pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1}}}]}));
        assert!(has_started(&terminated));
        assert!(!has_started(&waiting("ImagePullBackOff", "")));
    }

    #[test]
    fn the_start_deadline_counts_from_the_jobs_creation() {
        let created = "2026-01-01T00:00:00Z";
        let stuck = waiting("ImagePullBackOff", "Back-off pulling image \"agent:x\"");
        let timeout = Duration::from_secs(600);
        let early = at("2026-01-01T00:05:00Z");
        assert_eq!(
            verdict(
                &job(created, json!({})),
                std::slice::from_ref(&stuck),
                timeout,
                early
            ),
            StartVerdict::Waiting {
                problem: diagnose(&stuck),
                deadline: at("2026-01-01T00:10:00Z"),
            }
        );
        let late = at("2026-01-01T00:10:00Z");
        let StartVerdict::TimedOut { problem } = verdict(
            &job(created, json!({})),
            std::slice::from_ref(&stuck),
            timeout,
            late,
        ) else {
            panic!("timed out");
        };
        assert_eq!(problem.reason, "ImagePullBackOff");
        assert_eq!(
            problem.message,
            "the agent's pod did not start within 10m: ImagePullBackOff: container agent: Back-off pulling image \"agent:x\""
        );
        let StartVerdict::TimedOut { problem } =
            verdict(&job(created, json!({})), &[], timeout, late)
        else {
            panic!("timed out");
        };
        assert_eq!(problem.reason, REASON_NO_POD);
        let StartVerdict::TimedOut { problem } = verdict(
            &job(created, json!({})),
            &[pod(json!({"phase": "Pending"}))],
            timeout,
            late,
        ) else {
            panic!("timed out");
        };
        assert_eq!(problem.reason, REASON_START_DEADLINE);
        // Started or ended runs are never failed by the start deadline.
        let running = pod(json!({"phase": "Running"}));
        assert_eq!(
            verdict(&job(created, json!({})), &[running], timeout, late),
            StartVerdict::Started
        );
        let ended = job(
            created,
            json!({"conditions": [{"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(verdict(&ended, &[], timeout, late), StartVerdict::Started);
    }

    #[test]
    fn a_huge_timeout_never_ends() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(
            deadline_after(now, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            deadline_after(now, Duration::from_secs(60)),
            at("2026-01-01T00:01:00Z")
        );
    }

    #[test]
    fn durations_read_like_flags() {
        assert_eq!(describe_duration(Duration::from_secs(600)), "10m");
        assert_eq!(describe_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(describe_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(describe_duration(Duration::ZERO), "0s");
    }
}
