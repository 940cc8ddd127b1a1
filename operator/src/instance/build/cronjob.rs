//! The scheduled backups' CronJob, `<name>-backup`, owned by the instance: the
//! agent Job of [`crate::agent_job`] without a backup name (the agent names each
//! run and creates its `MySQLBackup`), on the instance's schedule.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keeper_crds::{BackupSpec, MySQLInstance, Schedule};

use super::{COMPONENT_LABEL, InstanceMeta};
use crate::agent_job::{self, AgentCommand, AgentRun, COMPONENT_BACKUP};
use crate::context::OperatorConfig;
use crate::error::Result;

/// Successful Jobs the CronJob keeps (their `MySQLBackup` objects outlive them).
pub const SUCCESSFUL_JOBS_HISTORY: i32 = 3;
/// Failed Jobs the CronJob keeps, so a failure's pod and logs stay inspectable.
pub const FAILED_JOBS_HISTORY: i32 = 3;
/// A run that could not start on time (controller down, cluster busy) still
/// starts within this window: a late backup is better than none.
pub const STARTING_DEADLINE_SECONDS: i64 = 3600;

/// `<name>-backup`.
pub fn name(meta: &InstanceMeta) -> String {
    format!("{}-backup", meta.name)
}

/// The CronJob for `backup` on `schedule`.
///
/// # Errors
/// As [`agent_job::job`] (an invalid destination).
pub fn build(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    backup: &BackupSpec,
    schedule: &Schedule,
) -> Result<CronJob> {
    let run = AgentRun {
        name: String::new(),
        command: AgentCommand::Backup {
            destination: &backup.destination,
            backup_name: None,
            databases: backup.databases.as_deref().unwrap_or_default(),
            compression: Some(backup.compression),
            compression_level: Some(backup.compression_level),
            retention: backup.retention.as_ref(),
        },
        owner: None,
        labels: Default::default(),
    };
    let mut metadata = meta.owned_metadata(name(meta));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(COMPONENT_LABEL.to_owned(), COMPONENT_BACKUP.to_owned());
    }
    Ok(CronJob {
        metadata,
        spec: Some(CronJobSpec {
            schedule: schedule.cronjob_schedule().to_owned(),
            time_zone: schedule.time_zone().map(|tz| tz.name().to_owned()),
            suspend: Some(backup.suspend),
            concurrency_policy: Some("Forbid".to_owned()),
            successful_jobs_history_limit: Some(SUCCESSFUL_JOBS_HISTORY),
            failed_jobs_history_limit: Some(FAILED_JOBS_HISTORY),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(agent_job::job_labels(instance, &run)?),
                    ..ObjectMeta::default()
                }),
                spec: Some(agent_job::job_spec(config, instance, &run)?),
            },
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::build::agent_rbac;

    fn instance() -> MySQLInstance {
        let spec = serde_json::from_value(serde_json::json!({"backup": {
            "schedule": "30 2 * * 1-5",
            "timeZone": "Europe/Berlin",
            "destination": {"s3": {"bucket": "backups", "prefix": "orders",
                "credentialsSecretRef": {"name": "s3-creds"}}},
            "retention": {"keepLast": 7, "maxAge": "30d"},
            "databases": ["orders"],
        }}))
        .expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.metadata.namespace = Some("shop".into());
        instance.metadata.uid = Some("0000-1111".into());
        instance
    }

    #[test]
    fn cronjob_snapshot() {
        let instance = instance();
        let meta = InstanceMeta::of(&instance).expect("meta");
        let backup = instance.spec.backup.clone().expect("backup");
        let schedule = instance.spec.schedule().expect("valid").expect("set");
        let cron = build(
            &OperatorConfig {
                agent_image: "ghcr.io/mysql-keeper/keeper-agent:test".into(),
                ..OperatorConfig::default()
            },
            &instance,
            &meta,
            &backup,
            &schedule,
        )
        .expect("builds");
        insta::assert_yaml_snapshot!("cronjob", cron);
    }

    #[test]
    fn agent_identity_snapshots() {
        let instance = instance();
        let meta = InstanceMeta::of(&instance).expect("meta");
        insta::assert_yaml_snapshot!("service-account", agent_rbac::service_account(&meta));
        insta::assert_yaml_snapshot!("role", agent_rbac::role(&meta));
        insta::assert_yaml_snapshot!("role-binding", agent_rbac::role_binding(&meta));
    }
}
