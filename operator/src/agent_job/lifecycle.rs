//! An agent Job's life, read the same way by every feature that runs the
//! agent (on-demand and scheduled backups, restores): the Job's name, whether
//! it is still running, succeeded or failed, the agent's termination message,
//! and the kind of a failure.
//!
//! The kind is the agent's [`FailureCode`] (from its report or the start of
//! its termination message), never the message's words. Only for an agent
//! from before the codes, whose message carries none, [`failure_code`] falls
//! back to the words that agent's preflight errors always ended with.

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use keeper_crds::agent::{FailureCode, split_termination_line};
use keeper_crds::condition::from_k8s_time;
use sha2::{Digest, Sha256};

/// Longest Job name: a Job's name is copied into its pods' `job-name`
/// label, and label values are at most 63 characters.
pub const MAX_NAME: usize = 63;

/// `<base>-<suffix>`, or, when that is longer than [`MAX_NAME`],
/// `<base shortened>-<hash>-<suffix>` with 8 hex digits of the sha256 of
/// `base`: deterministic (a repeated reconcile finds the same Job), a valid
/// label value, never ending the prefix in `-` or `.`, and two long bases
/// that share their start still get different names.
pub fn name(base: &str, suffix: &str) -> String {
    let plain = format!("{base}-{suffix}");
    if plain.len() <= MAX_NAME {
        return plain;
    }
    let hash = hex::encode(Sha256::digest(base.as_bytes()));
    let hash = hash.get(..8).unwrap_or_default();
    let tail = format!("-{hash}-{suffix}");
    let budget = MAX_NAME.saturating_sub(tail.len());
    let prefix: String = base.chars().take(budget).collect();
    format!("{}{tail}", prefix.trim_end_matches(['-', '.']))
}

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not ended yet (or not started).
    Running,
    /// `Complete`, or a pod succeeded.
    Succeeded {
        /// `status.completionTime`, when set.
        at: Option<DateTime<Utc>>,
    },
    /// `Failed`, or a pod failed (Jobs run one attempt: `backoffLimit: 0`).
    Failed {
        /// The `Failed` condition's reason (`BackoffLimitExceeded`,
        /// `DeadlineExceeded`), `Failed` when there is no condition yet.
        reason: String,
        /// The condition's message; empty when there is none.
        message: String,
    },
}

/// How `job` stands, from its conditions and its pod counts.
pub fn outcome(job: &Job) -> Outcome {
    let Some(status) = job.status.as_ref() else {
        return Outcome::Running;
    };
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return Outcome::Succeeded {
            at: status.completion_time.as_ref().map(from_k8s_time),
        };
    }
    let failed = condition("Failed");
    if failed.is_some() || status.failed.unwrap_or(0) > 0 {
        return Outcome::Failed {
            reason: failed
                .and_then(|c| c.reason.clone())
                .unwrap_or_else(|| "Failed".to_owned()),
            message: failed.and_then(|c| c.message.clone()).unwrap_or_default(),
        };
    }
    Outcome::Running
}

/// Whether `job` completed or failed.
pub fn ended(job: &Job) -> bool {
    !matches!(outcome(job), Outcome::Running)
}

/// What a failed agent said about its failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFailure {
    /// The agent's code; `None` from an agent before the codes, or when the
    /// agent wrote nothing (killed, out of memory).
    pub code: Option<FailureCode>,
    /// The agent's one line, or what the container's end says.
    pub message: String,
}

impl AgentFailure {
    /// The failure's kind (see [`failure_code`]).
    pub fn kind(&self) -> FailureCode {
        failure_code(self.code, &self.message)
    }
}

/// The agent's failure from its Job's pods: the newest pod whose container
/// ended with a non-zero exit code. Its message is the last non-empty line
/// of the termination message (the agent writes one line;
/// `FallbackToLogsOnError` puts the log's last lines there when it could
/// not), split from its code; a container that wrote nothing (killed, out of
/// memory) gives its exit code and reason.
pub fn termination_message(pods: &[Pod]) -> Option<AgentFailure> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .find(|t| t.exit_code != 0)
        .map(|t| {
            let line = t
                .message
                .as_deref()
                .and_then(|m| m.lines().rev().map(str::trim).find(|l| !l.is_empty()));
            match line {
                Some(line) => {
                    let (code, message) = split_termination_line(line);
                    AgentFailure {
                        code,
                        message: message.to_owned(),
                    }
                }
                None => AgentFailure {
                    code: None,
                    message: format!(
                        "the agent exited with code {} ({})",
                        t.exit_code,
                        t.reason.as_deref().unwrap_or("no reason given")
                    ),
                },
            }
        })
}

/// The kind of a failure the agent reported as `code` with `message`.
///
/// Compatibility: an agent from before the codes reports none. Its preflight
/// errors always ended with "nothing was changed" or "nothing was restored"
/// (or named the flavor mismatch), and its non-empty target error told to
/// "pass --overwrite"; only then are those words read. Anything else may
/// have happened mid-replay, so it is [`FailureCode::RunFailed`]: claiming
/// "nothing was touched" wrongly is the worse mistake.
pub fn failure_code(code: Option<FailureCode>, message: &str) -> FailureCode {
    if let Some(code) = code {
        return code;
    }
    const PREFLIGHT: [&str; 3] = [
        "nothing was changed",
        "nothing was restored",
        "Keeper restores only into the same flavor",
    ];
    if !PREFLIGHT.iter().any(|m| message.contains(m)) {
        FailureCode::RunFailed
    } else if message.contains("pass --overwrite") {
        FailureCode::TargetNotEmpty
    } else {
        FailureCode::PreflightFailed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).expect("job")
    }

    fn pod(created: &str, exit_code: i32, message: Option<&str>, reason: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "creationTimestamp": created},
            "status": {"containerStatuses": [{
                "name": "agent", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "message": message, "reason": reason}}
            }]}
        }))
        .expect("pod")
    }

    #[test]
    fn names_are_deterministic_label_values() {
        assert_eq!(name("orders-manual", "backup"), "orders-manual-backup");
        assert_eq!(
            name("orders", "restore-0123456789"),
            "orders-restore-0123456789"
        );
        let long = format!("{}-20250101-030000", "a".repeat(47));
        let shortened = name(&long, "backup");
        assert!(shortened.len() <= MAX_NAME, "{shortened}");
        assert_eq!(shortened, name(&long, "backup"));
        assert!(shortened.ends_with("-backup"));
        assert_ne!(shortened, name(&format!("{long}x"), "backup"));
        let longest = name(&"a".repeat(253), "restore-0123456789");
        assert_eq!(longest.len(), MAX_NAME);
        assert!(longest.ends_with("-restore-0123456789"));
        let awkward = format!("{}-x", "b".repeat(43));
        assert!(!name(&awkward, "restore-0123456789").contains("--"));
    }

    #[test]
    fn a_jobs_outcome_comes_from_its_conditions_or_counts() {
        assert_eq!(outcome(&job(json!({"active": 1}))), Outcome::Running);
        assert_eq!(outcome(&Job::default()), Outcome::Running);
        assert!(matches!(
            outcome(&job(
                json!({"succeeded": 1, "completionTime": "2025-01-02T03:04:05Z"})
            )),
            Outcome::Succeeded { at: Some(_) }
        ));
        assert!(matches!(
            outcome(&job(
                json!({"conditions": [{"type": "Complete", "status": "True"}]})
            )),
            Outcome::Succeeded { at: None }
        ));
        assert_eq!(
            outcome(&job(
                json!({"conditions": [{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]})
            )),
            Outcome::Failed {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into()
            }
        );
        assert_eq!(
            outcome(&job(json!({"failed": 1}))),
            Outcome::Failed {
                reason: "Failed".into(),
                message: String::new()
            }
        );
        assert!(!ended(&job(
            json!({"conditions": [{"type": "Failed", "status": "False"}]})
        )));
        assert!(ended(&job(json!({"failed": 1}))));
    }

    #[test]
    fn the_termination_message_is_the_agents_last_line_and_code() {
        let logs = pod(
            "2026-01-01T00:00:00Z",
            1,
            Some("some log\n[RunFailed] backup failed: access denied for keeper_backup\n"),
            "Error",
        );
        assert_eq!(
            termination_message(std::slice::from_ref(&logs)),
            Some(AgentFailure {
                code: Some(FailureCode::RunFailed),
                message: "backup failed: access denied for keeper_backup".into()
            })
        );
        let oom = pod("2026-01-01T00:01:00Z", 137, None, "OOMKilled");
        let failure = termination_message(&[logs.clone(), oom]).expect("failure");
        // The newest pod says most about now.
        assert_eq!(
            failure.message,
            "the agent exited with code 137 (OOMKilled)"
        );
        assert_eq!(failure.kind(), FailureCode::RunFailed);
        let succeeded = pod("2026-01-01T00:02:00Z", 0, Some("done"), "Completed");
        assert_eq!(termination_message(&[succeeded]), None);
        assert_eq!(termination_message(&[]), None);
    }

    #[test]
    fn the_kind_is_the_agents_code_and_words_only_without_one() {
        let refusal = "t already has 2 objects of the backup's databases (a.b); restore into an empty server or pass --overwrite; nothing was changed";
        // A code always wins over the words.
        for code in FailureCode::ALL {
            assert_eq!(failure_code(Some(code), refusal), code);
            assert_eq!(failure_code(Some(code), "disk full"), code);
        }
        // An agent before the codes.
        assert_eq!(failure_code(None, refusal), FailureCode::TargetNotEmpty);
        assert_eq!(
            failure_code(
                None,
                "x has max_allowed_packet=1 but ...; nothing was restored"
            ),
            FailureCode::PreflightFailed
        );
        assert_eq!(
            failure_code(
                None,
                "the backup comes from MySQL but x runs MariaDB: Keeper restores only into the same flavor; restore into a MySQL server"
            ),
            FailureCode::PreflightFailed
        );
        assert_eq!(
            failure_code(
                None,
                "schema `sakila`.`actor`: `INSERT ...` failed: disk full"
            ),
            FailureCode::RunFailed
        );
    }
}
