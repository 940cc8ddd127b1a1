//! The backup agent's Job as the operator builds and reads it (the agent
//! itself is the `keeper-agent` crate): one pure builder shared by on-demand
//! backups (`MySQLBackup` → Job), scheduled backups (the CronJob's job
//! template) and restores.
//!
//! The pod runs the agent image as a non-root user under the restricted Pod
//! Security Standard (read-only root filesystem, no capabilities, seccomp
//! `RuntimeDefault`), with the instance's agent ServiceAccount
//! (`<name>-backup-agent`) so it can report into the API. Its arguments follow
//! DESIGN's "Agent CLI"; every secret reaches it as a `secretKeyRef` or a
//! mounted file, never as an argument:
//!
//! * `MYSQL_PWD`: a backup logs in as the read-only dump account
//!   `keeper_backup` with the `<name>-backup` Secret; a restore logs in as
//!   `root` with the instance's root password Secret (a restore is
//!   root-equivalent by nature, see [`crate::accounts`]);
//! * `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from the destination's
//!   `credentialsSecretRef` (unset: the pod gets credentials another way, e.g.
//!   IRSA); `AWS_REGION`, `AWS_ENDPOINT_URL` as plain values;
//! * a CA bundle Secret mounted read-only at [`CA_BUNDLE_DIR`];
//! * a PVC destination's claim mounted at `/backups`.
//!
//! Jobs run once (`backoffLimit: 0`: a retry is a new run with a new name) and
//! stay for [`TTL_AFTER_FINISHED_SECONDS`] after they end, so a failure's pod
//! and logs can still be inspected. The agent writes its one-line error,
//! after its failure code, to `/dev/termination-log`; `FallbackToLogsOnError`
//! also covers a crash before it could. How a Job is named and read back
//! (ended, failed, the agent's message and failure code) is [`lifecycle`]'s; whether
//! its pod could start is [`start`]'s.
//!
//! Memory is bounded by design (workers × (chunk + largest row), plus the
//! upload part buffer), so the container has a memory limit; an agent killed
//! for exceeding it is reported by the operator from the Job.

pub mod lifecycle;
pub mod proof_server;
pub mod start;

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::KeyToPath;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keeper_crds::agent::{
    BACKUP_PASSWORD_KEY, BACKUP_USER, ENV_BACKUP, ENV_DESTINATION, ENV_INSTANCE, ENV_JOB_NAME,
    ENV_MYSQL_PASSWORD, ENV_NAMESPACE, ENV_RESTORE_SOURCE, JOB_NAME_FIELD_PATH,
};
use keeper_crds::destination::{
    AWS_ACCESS_KEY_ID_KEY, AWS_SECRET_ACCESS_KEY_KEY, DEFAULT_CA_BUNDLE_KEY, PVC_MOUNT_PATH,
};
use keeper_crds::instance::{Compression, MYSQL_PORT};
use keeper_crds::{
    BackupDestination, INSTANCE_LABEL, MySQLInstance, RetentionSpec, VerificationSpec,
};

use crate::accounts::ROOT_USER;
use crate::context::OperatorConfig;
use crate::error::{Error, Result};
use crate::instance::build::{
    APP_INSTANCE_LABEL, COMPONENT_LABEL, InstanceMeta, MANAGED_BY, MANAGED_BY_LABEL, NAME_LABEL,
};

/// `app.kubernetes.io/component` of backup Jobs (on-demand and scheduled).
pub const COMPONENT_BACKUP: &str = "backup";
/// `app.kubernetes.io/component` of restore Jobs.
pub const COMPONENT_RESTORE: &str = "restore";
/// `app.kubernetes.io/component` of verification Jobs.
pub const COMPONENT_VERIFY: &str = "verify";
/// `app.kubernetes.io/name` of the agent's Jobs and pods.
pub const AGENT_NAME: &str = "keeper-agent";
/// Name of the agent container.
pub const CONTAINER_NAME: &str = "agent";
/// UID and GID the agent runs as (distroless `nonroot`).
pub const AGENT_UID: i64 = 65532;
/// A finished Job (and its pod, with logs and termination message) is kept
/// this long: 7 days, so a failed night is still inspectable after a weekend.
pub const TTL_AFTER_FINISHED_SECONDS: i32 = 7 * 24 * 3600;
/// Where the destination's CA bundle Secret is mounted.
pub const CA_BUNDLE_DIR: &str = "/etc/keeper/s3-ca";
/// The CA bundle file the agent is pointed at (`--s3-ca-bundle`).
pub const CA_BUNDLE_PATH: &str = "/etc/keeper/s3-ca/ca.crt";
/// Memory request of the agent container.
pub const MEMORY_REQUEST: &str = "128Mi";
/// Memory limit of the agent container: the dump engine's memory is bounded
/// (2 workers × (chunk + largest row)) plus one S3 part buffer.
pub const MEMORY_LIMIT: &str = "512Mi";
/// CPU request of the agent container (no CPU limit: throttling a dump only
/// makes the snapshot's transaction live longer).
pub const CPU_REQUEST: &str = "100m";

const TMP_VOLUME: &str = "tmp";
const BACKUPS_VOLUME: &str = "backups";
const CA_VOLUME: &str = "s3-ca";

/// What the agent is asked to do.
#[derive(Clone, Copy, Debug)]
pub enum AgentCommand<'a> {
    /// `keeper-agent backup`.
    Backup {
        /// Where the backup goes.
        destination: &'a BackupDestination,
        /// The `MySQLBackup` of an on-demand run (`--name` and
        /// `KEEPER_BACKUP`); `None` for a scheduled run, where the agent names
        /// the backup and creates the object.
        backup_name: Option<&'a str>,
        /// Databases to dump; empty means every user database.
        databases: &'a [String],
        /// How the dump is compressed (`--compression`); `None` or gzip
        /// leaves the agent's default, gzip, and no flag, so an agent image
        /// from before the option still runs the Job.
        compression: Option<Compression>,
        /// The codec's level; `None` leaves the agent's default.
        compression_level: Option<u32>,
        /// Retention applied after a success (`--keep-last`, `--max-age`).
        retention: Option<&'a RetentionSpec>,
    },
    /// `keeper-agent restore`.
    Restore {
        /// The destination that holds the backup.
        destination: &'a BackupDestination,
        /// The backup's folder name under the destination.
        backup: &'a str,
        /// Replace tables that exist in the target (`--overwrite`).
        overwrite: bool,
        /// What `status.restore.source` shows (a `MySQLBackup` name or a
        /// location URL); `None` shows the `--from` URL.
        source: Option<&'a str>,
        /// `--request-id`: the source's fingerprint, so the agent restores
        /// it at most once into the same data (it keeps the record in the
        /// server). `None` restores unconditionally.
        request_id: Option<&'a str>,
    },
    /// `keeper-agent verify --restore` into a throwaway server in the same
    /// pod ([`proof_server`]): proves a backup restorable without touching
    /// the instance.
    Verify {
        /// The destination that holds the backup (its recorded one).
        destination: &'a BackupDestination,
        /// The backup's folder name under the destination.
        backup: &'a str,
        /// The `MySQLBackup` whose `status.verification` the agent writes.
        backup_name: &'a str,
        /// The throwaway server's resources and data bound.
        spec: Option<&'a VerificationSpec>,
    },
}

impl AgentCommand<'_> {
    /// The destination the command was given (for a backup: the instance's
    /// or the `MySQLBackup`'s destination, before the per-instance layout).
    pub fn destination(&self) -> &BackupDestination {
        match self {
            AgentCommand::Backup { destination, .. }
            | AgentCommand::Restore { destination, .. }
            | AgentCommand::Verify { destination, .. } => destination,
        }
    }

    /// Where the agent actually writes or reads. A backup goes to the
    /// instance's own folder, `<destination>/<namespace>/<instance>/`
    /// ([`BackupDestination::for_instance`]), so instances sharing a bucket
    /// never share a location (retention and the binary log archive stay
    /// apart); this is also what the agent records as the backup's
    /// `status.destination`. A restore reads exactly the destination it is
    /// given: a `MySQLBackup`'s recorded one, or the user's location, which
    /// names the full path.
    ///
    /// # Errors
    /// [`Error::MissingObjectKey`] for an instance without name or namespace.
    pub fn agent_destination(&self, instance: &MySQLInstance) -> Result<BackupDestination> {
        match self {
            AgentCommand::Backup { destination, .. } => {
                let namespace = instance
                    .metadata
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
                Ok(destination.for_instance(namespace, instance_name(instance)?))
            }
            AgentCommand::Restore { destination, .. }
            | AgentCommand::Verify { destination, .. } => Ok((*destination).clone()),
        }
    }

    /// The MySQL account the agent logs in as: the read-only dump account
    /// for a backup, `root` for a restore (see [`crate::accounts`]), the
    /// throwaway server's root for a verification.
    pub fn mysql_user(&self) -> &'static str {
        match self {
            AgentCommand::Backup { .. } => BACKUP_USER,
            AgentCommand::Restore { .. } => ROOT_USER,
            AgentCommand::Verify { .. } => proof_server::USER,
        }
    }

    /// `app.kubernetes.io/component` of the Job: `backup` or `restore`.
    pub fn component(&self) -> &'static str {
        match self {
            AgentCommand::Backup { .. } => COMPONENT_BACKUP,
            AgentCommand::Restore { .. } => COMPONENT_RESTORE,
            AgentCommand::Verify { .. } => COMPONENT_VERIFY,
        }
    }
}

/// One agent run: the Job's name, what it does, who owns it.
#[derive(Clone, Debug)]
pub struct AgentRun<'a> {
    /// Name of the Job (unused for a CronJob's template, whose Jobs the
    /// CronJob controller names).
    pub name: String,
    /// What the agent does.
    pub command: AgentCommand<'a>,
    /// Controller owner of the Job: the `MySQLBackup` of an on-demand backup,
    /// the instance of a restore. `None` leaves the Job unowned.
    pub owner: Option<OwnerReference>,
    /// Labels added to the Job and its pod, besides the standard ones.
    pub labels: BTreeMap<String, String>,
}

/// The agent Job of `run` for `instance`.
///
/// # Errors
/// [`Error::InvalidSpec`] when the destination has neither or both of `s3`
/// and `pvc` (the API server rejects those; the in-memory test API does not);
/// [`Error::MissingObjectKey`] for an instance without a name.
pub fn job(config: &OperatorConfig, instance: &MySQLInstance, run: &AgentRun<'_>) -> Result<Job> {
    let labels = job_labels(instance, run)?;
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(run.name.clone()),
            namespace: instance.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: run.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(job_spec(config, instance, run)?),
        status: None,
    })
}

/// The labels of the Job (and its pod) of `run`: the instance label, the
/// standard `app.kubernetes.io` labels with component `backup` or `restore`,
/// and `run.labels`.
///
/// # Errors
/// [`Error::MissingObjectKey`] for an instance without a name.
pub fn job_labels(
    instance: &MySQLInstance,
    run: &AgentRun<'_>,
) -> Result<BTreeMap<String, String>> {
    let name = instance_name(instance)?;
    let mut labels = BTreeMap::from([
        (INSTANCE_LABEL.to_owned(), name.to_owned()),
        (NAME_LABEL.to_owned(), AGENT_NAME.to_owned()),
        (APP_INSTANCE_LABEL.to_owned(), name.to_owned()),
        (
            COMPONENT_LABEL.to_owned(),
            run.command.component().to_owned(),
        ),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
    ]);
    labels.extend(run.labels.clone());
    Ok(labels)
}

/// The Job spec of `run`: one attempt, kept [`TTL_AFTER_FINISHED_SECONDS`]
/// after it ends.
///
/// # Errors
/// As [`job()`].
pub fn job_spec(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    run: &AgentRun<'_>,
) -> Result<JobSpec> {
    // A backup run and a proof are bounded (see
    // OperatorConfig::backup_run_timeout); a restore is not.
    let active_deadline_seconds = match run.command {
        AgentCommand::Backup { .. } | AgentCommand::Verify { .. } => config
            .backup_run_timeout
            .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX).max(1)),
        AgentCommand::Restore { .. } => None,
    };
    Ok(JobSpec {
        backoff_limit: Some(0),
        active_deadline_seconds,
        ttl_seconds_after_finished: Some(TTL_AFTER_FINISHED_SECONDS),
        template: pod_template(config, instance, run)?,
        ..JobSpec::default()
    })
}

/// The agent's pod template for `run`.
///
/// # Errors
/// As [`job()`].
pub fn pod_template(
    config: &OperatorConfig,
    instance: &MySQLInstance,
    run: &AgentRun<'_>,
) -> Result<PodTemplateSpec> {
    let destination = run.command.destination();
    let mut volumes = vec![Volume {
        name: TMP_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: TMP_VOLUME.to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    if let Some(pvc) = &destination.pvc {
        volumes.push(Volume {
            name: BACKUPS_VOLUME.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: BACKUPS_VOLUME.to_owned(),
            mount_path: PVC_MOUNT_PATH.to_owned(),
            // A restore or a proof only reads the backup.
            read_only: matches!(
                run.command,
                AgentCommand::Restore { .. } | AgentCommand::Verify { .. }
            )
            .then_some(true),
            ..VolumeMount::default()
        });
    }
    if let Some(ca) = destination
        .s3
        .as_ref()
        .and_then(|s3| s3.ca_bundle_secret_ref.as_ref())
    {
        volumes.push(Volume {
            name: CA_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(ca.name.clone()),
                items: Some(vec![KeyToPath {
                    key: ca.key.clone(),
                    path: DEFAULT_CA_BUNDLE_KEY.to_owned(),
                    mode: None,
                }]),
                default_mode: Some(0o444),
                optional: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: CA_VOLUME.to_owned(),
            mount_path: CA_BUNDLE_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let init_containers = match run.command {
        AgentCommand::Verify { spec, .. } => {
            let meta = InstanceMeta::of(instance)?;
            let (server, server_volumes) = proof_server::sidecar(instance, &meta, spec);
            volumes.extend(server_volumes);
            Some(vec![server])
        }
        AgentCommand::Backup { .. } | AgentCommand::Restore { .. } => None,
    };
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(config.agent_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args(instance, &run.command)?),
        env: Some(env(instance, &run.command)?),
        volume_mounts: Some(mounts),
        resources: Some(resources()),
        security_context: Some(container_security_context()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(job_labels(instance, run)?),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(instance.agent_service_account_name()),
            // The agent reports into the API with this ServiceAccount's token.
            automount_service_account_token: Some(true),
            restart_policy: Some("Never".to_owned()),
            security_context: Some(pod_security_context()),
            init_containers,
            containers: vec![container],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    })
}

fn instance_name(instance: &MySQLInstance) -> Result<&str> {
    instance
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or(Error::MissingObjectKey("metadata.name"))
}

/// `<name>.<namespace>.svc`: the instance's client Service (`<name>` when
/// rendering without a namespace).
pub fn server_host(instance: &MySQLInstance) -> Result<String> {
    let name = instance_name(instance)?;
    Ok(match &instance.metadata.namespace {
        Some(ns) => format!("{name}.{ns}.svc"),
        None => name.to_owned(),
    })
}

/// The server address of `command`: a backup uses the client Service; a
/// restore the server pod's own name through the headless Service
/// ([`InstanceMeta::server_pod_host`]), because the client Service routes
/// nowhere until the restore has succeeded (`instance::restore::hold`).
///
/// # Errors
/// As [`job()`].
pub fn command_host(instance: &MySQLInstance, command: &AgentCommand<'_>) -> Result<String> {
    match command {
        AgentCommand::Backup { .. } => server_host(instance),
        AgentCommand::Restore { .. } => Ok(InstanceMeta::of(instance)?.server_pod_host()),
        AgentCommand::Verify { .. } => Ok(proof_server::HOST.to_owned()),
    }
}

fn invalid_destination() -> Error {
    Error::InvalidSpec {
        reason: "InvalidDestination",
        message: "the backup destination must set exactly one of s3 or pvc".to_owned(),
    }
}

/// The agent's command line (DESIGN, "Agent CLI"), without the program name.
/// Never holds a secret.
///
/// # Errors
/// As [`job()`].
pub fn args(instance: &MySQLInstance, command: &AgentCommand<'_>) -> Result<Vec<String>> {
    fn flag(args: &mut Vec<String>, name: &str, value: impl Into<String>) {
        args.push(name.to_owned());
        args.push(value.into());
    }
    let destination = &command.agent_destination(instance)?;
    let mut args: Vec<String> = Vec::new();
    let connect = |args: &mut Vec<String>| -> Result<()> {
        flag(args, "--host", command_host(instance, command)?);
        flag(args, "--port", MYSQL_PORT.to_string());
        flag(args, "--user", command.mysql_user());
        Ok(())
    };
    match command {
        AgentCommand::Backup {
            backup_name,
            databases,
            compression,
            compression_level,
            retention,
            ..
        } => {
            let to = destination.base_url().ok_or_else(invalid_destination)?;
            args.push("backup".to_owned());
            connect(&mut args)?;
            flag(&mut args, "--to", to);
            if let Some(name) = backup_name {
                flag(&mut args, "--name", *name);
            }
            if !databases.is_empty() {
                flag(&mut args, "--databases", databases.join(","));
            }
            if let Some(c) = compression.filter(|c| *c != Compression::Gzip) {
                flag(&mut args, "--compression", c.as_str());
            }
            if let Some(level) = compression_level {
                flag(&mut args, "--compression-level", level.to_string());
            }
            if let Some(retention) = retention {
                if let Some(keep_last) = retention.keep_last {
                    flag(&mut args, "--keep-last", keep_last.to_string());
                }
                if let Some(max_age) = &retention.max_age {
                    flag(&mut args, "--max-age", max_age.clone());
                }
            }
        }
        AgentCommand::Restore {
            backup,
            overwrite,
            request_id,
            ..
        } => {
            let from = destination
                .backup_url(backup)
                .ok_or_else(invalid_destination)?;
            args.push("restore".to_owned());
            connect(&mut args)?;
            flag(&mut args, "--from", from);
            if *overwrite {
                args.push("--overwrite".to_owned());
            }
            if let Some(request_id) = request_id {
                flag(&mut args, "--request-id", *request_id);
            }
        }
        AgentCommand::Verify { backup, .. } => {
            let from = destination
                .backup_url(backup)
                .ok_or_else(invalid_destination)?;
            args.push("verify".to_owned());
            flag(&mut args, "--from", from);
            args.push("--restore".to_owned());
            connect(&mut args)?;
            // The throwaway server's root has no password (see
            // proof_server): an empty file says so, where an empty
            // MYSQL_PWD would read as "no password given".
            flag(&mut args, "--password-file", "/dev/null");
        }
    }
    if let Some(s3) = &destination.s3 {
        if s3.force_path_style {
            args.push("--s3-force-path-style".to_owned());
        }
        if s3.ca_bundle_secret_ref.is_some() {
            flag(&mut args, "--s3-ca-bundle", CA_BUNDLE_PATH);
        }
    }
    Ok(args)
}

fn plain_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The agent's environment: the MySQL password of [`AgentCommand::mysql_user`]
/// and S3 credentials by `secretKeyRef`, S3 region and endpoint, and the `KEEPER_*` variables
/// that turn on status reporting.
///
/// # Errors
/// As [`job()`].
pub fn env(instance: &MySQLInstance, command: &AgentCommand<'_>) -> Result<Vec<EnvVar>> {
    let destination = &command.agent_destination(instance)?;
    let password = match command {
        AgentCommand::Backup { .. } => Some((
            instance.backup_secret_name(),
            BACKUP_PASSWORD_KEY.to_owned(),
        )),
        AgentCommand::Restore { .. } => Some(instance.root_password_secret()),
        // Never an instance Secret: it logs into its own throwaway server.
        AgentCommand::Verify { .. } => None,
    };
    let mut env: Vec<EnvVar> = password
        .map(|(secret, key)| secret_env(ENV_MYSQL_PASSWORD, &secret, &key))
        .into_iter()
        .collect();
    if let Some(s3) = &destination.s3 {
        if let Some(credentials) = &s3.credentials_secret_ref {
            env.push(secret_env(
                AWS_ACCESS_KEY_ID_KEY,
                &credentials.name,
                AWS_ACCESS_KEY_ID_KEY,
            ));
            env.push(secret_env(
                AWS_SECRET_ACCESS_KEY_KEY,
                &credentials.name,
                AWS_SECRET_ACCESS_KEY_KEY,
            ));
        }
        env.push(plain_env("AWS_REGION", s3.region.clone()));
        if let Some(endpoint) = &s3.endpoint {
            env.push(plain_env("AWS_ENDPOINT_URL", endpoint.clone()));
        }
    }
    if let Some(namespace) = &instance.metadata.namespace {
        env.push(plain_env(ENV_NAMESPACE, namespace.clone()));
    }
    env.push(plain_env(ENV_INSTANCE, instance_name(instance)?));
    env.push(EnvVar {
        name: ENV_JOB_NAME.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: JOB_NAME_FIELD_PATH.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    });
    // Secret references only: the JSON names Secrets, it holds no values.
    // The agent records it as the backup's status.destination, which a
    // restore by name resolves the backup's folder against.
    let destination_json =
        serde_json::to_string(destination).map_err(|source| Error::Serialize {
            kind: "BackupDestination",
            source,
        })?;
    env.push(plain_env(ENV_DESTINATION, destination_json));
    match command {
        AgentCommand::Backup {
            backup_name: Some(name),
            ..
        } => env.push(plain_env(ENV_BACKUP, *name)),
        AgentCommand::Backup { .. } => {}
        AgentCommand::Restore { source, .. } => {
            if let Some(source) = source {
                env.push(plain_env(ENV_RESTORE_SOURCE, *source));
            }
        }
        AgentCommand::Verify { backup_name, .. } => env.push(plain_env(ENV_BACKUP, *backup_name)),
    }
    Ok(env)
}

fn resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(CPU_REQUEST.to_owned())),
            ("memory".to_owned(), Quantity(MEMORY_REQUEST.to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(MEMORY_LIMIT.to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(AGENT_UID),
        run_as_group: Some(AGENT_UID),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(AGENT_UID),
        run_as_group: Some(AGENT_UID),
        run_as_non_root: Some(true),
        // A PVC destination must be writable by the agent's group.
        fs_group: Some(AGENT_UID),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

#[cfg(test)]
mod tests;
