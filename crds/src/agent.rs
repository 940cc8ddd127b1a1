//! What the operator and the backup agent must agree on about an agent run:
//! the environment the operator's Job sets, the agent's field manager, the
//! MySQL account it logs in as, and the agent's RBAC rules.
//!
//! The operator builds Jobs and Roles from these names and the agent reads
//! them; keeping them here (rather than in the agent crate) means the operator
//! does not depend on the agent's MySQL and S3 code.
//!
//! # Environment of an agent Job
//!
//! | variable | value |
//! |---|---|
//! | [`ENV_NAMESPACE`] | the instance's namespace (turns reporting on) |
//! | [`ENV_INSTANCE`] | the `MySQLInstance` name |
//! | [`ENV_BACKUP`] | the `MySQLBackup` name of an on-demand run; absent for a scheduled run (the agent then creates the object) |
//! | [`ENV_JOB_NAME`] | the Job's name, from the downward API: `fieldRef.fieldPath` = [`JOB_NAME_FIELD_PATH`] |
//! | [`ENV_DESTINATION`] | the destination used, as JSON of [`crate::BackupDestination`] (secret references only) |
//! | [`ENV_RESTORE_SOURCE`] | restores: what `status.restore.source` shows |
//! | [`ENV_MYSQL_PASSWORD`] | the MySQL password, from a `secretKeyRef`: the backup user's (`<instance>-backup`) for a backup, root's for a restore |
//!
//! # How a failed run says what kind of failure it was
//!
//! The agent's error messages are for people and may change; what the
//! operator decides on is a [`FailureCode`]. The agent writes it twice: in
//! its report (`status.restore.failureCode`) and at the start of its
//! termination message ([`termination_line`], read back with
//! [`split_termination_line`]), which is what the operator has when the agent
//! could not report.

use k8s_openapi::api::rbac::v1::PolicyRule;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::API_GROUP;

/// Field manager of every write the agent makes.
pub const FIELD_MANAGER: &str = "keeper-agent";
/// Field manager of `MySQLBackup.status.verification`, written by a
/// verifying agent: its own, so that its apply never drops the fields the
/// backup's run owns (and theirs never drop it).
pub const VERIFY_FIELD_MANAGER: &str = "keeper-agent-verify";
/// Namespace of the instance; its presence (with a Kubernetes client) turns reporting on.
pub const ENV_NAMESPACE: &str = "KEEPER_NAMESPACE";
/// Name of the `MySQLInstance`.
pub const ENV_INSTANCE: &str = "KEEPER_INSTANCE";
/// Name of the `MySQLBackup` of an on-demand run; absent for a scheduled run.
pub const ENV_BACKUP: &str = "KEEPER_BACKUP";
/// Name of the Job running the agent, recorded as `jobName`.
pub const ENV_JOB_NAME: &str = "KEEPER_JOB_NAME";
/// Downward-API field path that fills [`ENV_JOB_NAME`]: the label the Job
/// controller puts on its pods (works for CronJob-made Jobs, whose names the
/// template cannot know).
pub const JOB_NAME_FIELD_PATH: &str = "metadata.labels['batch.kubernetes.io/job-name']";
/// The label the Job controller puts on a Job's pods, naming the Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Annotation the agent puts on the `MySQLBackup` it creates for a scheduled
/// run, naming its Job: the operator never starts a Job for such an object.
pub const CREATED_BY_JOB_ANNOTATION: &str = "mysql.keeper.dev/created-by-job";
/// The destination used, as JSON of a [`crate::BackupDestination`].
pub const ENV_DESTINATION: &str = "KEEPER_DESTINATION";
/// What a restore shows as its source (a `MySQLBackup` name or a location URL).
pub const ENV_RESTORE_SOURCE: &str = "KEEPER_RESTORE_SOURCE";
/// The MySQL password variable the agent reads (as the `mysql` client does).
pub const ENV_MYSQL_PASSWORD: &str = "MYSQL_PWD";

/// The MySQL account backups and restores log in as (host `%`). Its password is
/// in the `<instance>-backup` Secret ([`crate::MySQLInstance::backup_secret_name`]).
pub const BACKUP_USER: &str = "keeper_backup";
/// Key of the backup user's name in the `<instance>-backup` Secret.
pub const BACKUP_USERNAME_KEY: &str = "username";
/// Key of the backup user's password in the `<instance>-backup` Secret.
pub const BACKUP_PASSWORD_KEY: &str = "password";

/// What kind of failure ended an agent run: a stable code the agent reports
/// and the operator decides on (never on the message's words).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailureCode {
    /// The run stopped in its checks, before it changed anything: the backup
    /// is incomplete, damaged or of another flavor, or the target cannot take
    /// it (`max_allowed_packet`).
    PreflightFailed,
    /// A restore found objects of the backup's databases in the target and
    /// changed nothing; `overwrite` replaces them.
    TargetNotEmpty,
    /// Any other failure. A restore may have changed the target (part of the
    /// backup may be in it).
    RunFailed,
    /// `verify --restore` restored the backup, and what came back differs
    /// from what was dumped (a table's rows, a definition): the backup is
    /// not to be relied on. The proof could be made; its answer is no.
    BackupDiffers,
}

impl FailureCode {
    /// Every code, for tables and tests.
    pub const ALL: [FailureCode; 4] = [
        FailureCode::PreflightFailed,
        FailureCode::TargetNotEmpty,
        FailureCode::RunFailed,
        FailureCode::BackupDiffers,
    ];

    /// The name used in the API and in the termination message.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::PreflightFailed => "PreflightFailed",
            FailureCode::TargetNotEmpty => "TargetNotEmpty",
            FailureCode::RunFailed => "RunFailed",
            FailureCode::BackupDiffers => "BackupDiffers",
        }
    }

    /// The code named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether the run stopped before it changed anything.
    pub fn changed_nothing(self) -> bool {
        match self {
            FailureCode::PreflightFailed | FailureCode::TargetNotEmpty => true,
            FailureCode::RunFailed | FailureCode::BackupDiffers => false,
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The agent's termination message: `[<code>] <message>`, one line.
pub fn termination_line(code: FailureCode, message: &str) -> String {
    format!("[{code}] {message}")
}

/// A termination message split into its code and its message; an agent
/// from before the codes wrote the message alone (`None`).
pub fn split_termination_line(line: &str) -> (Option<FailureCode>, &str) {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
        .and_then(|(code, message)| Some((FailureCode::parse(code)?, message)))
        .map_or((None, line), |(code, message)| (Some(code), message))
}

/// `mysqlbackups`.
pub const BACKUPS: &str = "mysqlbackups";
/// `mysqlbackups/status`.
pub const BACKUPS_STATUS: &str = "mysqlbackups/status";
/// `mysqlinstances`.
pub const INSTANCES: &str = "mysqlinstances";
/// `mysqlinstances/status`.
pub const INSTANCES_STATUS: &str = "mysqlinstances/status";

/// The Role rules of the agent of `instance` (DESIGN, "Who does what"): get,
/// list, create, delete `mysqlbackups`; patch `mysqlbackups/status`; get
/// `mysqlinstances` and patch `mysqlinstances/status` for its own instance
/// only (`resourceNames: [instance]`). Nothing else.
pub fn agent_policy_rules(instance: &str) -> Vec<PolicyRule> {
    let rule = |resource: &str, verbs: &[&str], names: Option<&str>| PolicyRule {
        api_groups: Some(vec![API_GROUP.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: names.map(|n| vec![n.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        non_resource_urls: None,
    };
    vec![
        rule(BACKUPS, &["get", "list", "create", "delete"], None),
        rule(BACKUPS_STATUS, &["patch"], None),
        rule(INSTANCES, &["get"], Some(instance)),
        rule(INSTANCES_STATUS, &["patch"], Some(instance)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_exactly_the_designed_ones() {
        let json = serde_json::to_value(agent_policy_rules("orders")).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!([
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlbackups"],
                 "verbs": ["get", "list", "create", "delete"]},
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlbackups/status"],
                 "verbs": ["patch"]},
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlinstances"],
                 "resourceNames": ["orders"], "verbs": ["get"]},
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlinstances/status"],
                 "resourceNames": ["orders"], "verbs": ["patch"]},
            ])
        );
    }

    #[test]
    fn failure_codes_round_trip_through_the_termination_line() {
        for code in FailureCode::ALL {
            assert_eq!(FailureCode::parse(code.as_str()), Some(code));
            assert_eq!(
                serde_json::to_value(code).expect("serializable"),
                serde_json::json!(code.as_str())
            );
            let line = termination_line(code, "restore failed: [x] y");
            assert_eq!(
                split_termination_line(&line),
                (Some(code), "restore failed: [x] y")
            );
        }
        assert!(FailureCode::PreflightFailed.changed_nothing());
        assert!(FailureCode::TargetNotEmpty.changed_nothing());
        assert!(!FailureCode::RunFailed.changed_nothing());
    }

    #[test]
    fn a_line_without_a_known_code_is_all_message() {
        for line in [
            "127.0.0.1:3306 already has 3 objects; nothing was changed",
            "[NoSuchCode] message",
            "[RunFailed]no space",
            "",
        ] {
            assert_eq!(split_termination_line(line), (None, line));
        }
    }

    #[test]
    fn job_name_field_path_reads_the_job_name_label() {
        assert_eq!(
            JOB_NAME_FIELD_PATH,
            format!("metadata.labels['{JOB_NAME_LABEL}']")
        );
    }
}
