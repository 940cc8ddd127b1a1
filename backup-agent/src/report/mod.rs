//! Status reporting into Kubernetes: what a backup or restore run tells the API.
//!
//! Inside Kubernetes (a `kube::Client` in [`AgentContext::kube`] and
//! [`ENV_NAMESPACE`] set) the agent writes, with field manager
//! [`FIELD_MANAGER`] and server-side apply on the status subresource, exactly
//! the fields DESIGN gives it: `MySQLBackup.status`,
//! `MySQLInstance.status.lastBackup` and `MySQLInstance.status.restore`. It
//! creates the `MySQLBackup` of a scheduled run and deletes the objects of
//! backups that retention removed. Outside Kubernetes every reporter is a no-op,
//! so the commands call it unconditionally.
//!
//! # Environment the operator's Job sets
//!
//! | variable | value |
//! |---|---|
//! | [`ENV_NAMESPACE`] | the instance's namespace (turns reporting on) |
//! | [`ENV_INSTANCE`] | the `MySQLInstance` name |
//! | [`ENV_BACKUP`] | the `MySQLBackup` name of an on-demand run; absent for a scheduled run (the agent then creates the object) |
//! | [`ENV_JOB_NAME`] | the Job's name, from the downward API: `fieldRef.fieldPath` = [`JOB_NAME_FIELD_PATH`] (a CronJob's template cannot know the name) |
//! | [`ENV_DESTINATION`] | the destination used, as JSON of [`BackupDestination`] (secret *references* only, no secret values) |
//! | [`ENV_RESTORE_SOURCE`] | restores: what `status.restore.source` shows (a `MySQLBackup` name or a location URL); default the `--from` URL |
//!
//! # Server-side apply and the full set of owned fields
//!
//! With server-side apply a manager that leaves out a field it owned before
//! *removes* it. So every apply carries the whole set of fields the agent
//! owns on that object: the backup reporter keeps the status it reported and
//! re-sends all of it, and an instance apply carries both `lastBackup` and
//! `restore` (the one not being changed is copied from a fresh GET, because a
//! backup run and a restore run are different processes under the same
//! manager name).
//!
//! # Failures
//!
//! Each API call is retried with exponential backoff on transient errors
//! (5xx, 429, connection errors); the error that remains is a [`ReportError`]
//! (one line, naming the object, no secrets). A failure to *start* reporting
//! fails the run before anything is dumped ([`BackupReporter::started`]
//! returns `Err`). Afterwards reporting never turns the run's result around:
//! the calls at the end return a [`ReportOutcome`], not a `Result`, so a good
//! backup stays a good backup (exit 0) even when the API is unreachable — the
//! artifact and its manifest are the truth, and the operator still sees the
//! Job succeed.

mod backup;
pub mod rbac;
mod restore;
mod retry;
mod verification;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use keeper_crds::{
    BackupDestination, LastBackup, MySQLBackup, MySQLBackupStatus, MySQLInstance,
    MySQLInstanceStatus, RestoreStatus,
};

use crate::context::AgentContext;

pub use backup::{BackupProgressTask, BackupReporter, CREATED_BY_JOB_ANNOTATION};
pub use restore::{DEFAULT_PROGRESS_INTERVAL, RestoreProgressTask, RestoreReporter};
pub use retry::RetryPolicy;
pub use verification::VerificationReporter;

// The names the operator's Job sets and the agent reads live in keeper-crds,
// so the operator shares them without depending on the agent.
pub use keeper_crds::agent::{
    ENV_BACKUP, ENV_DESTINATION, ENV_INSTANCE, ENV_JOB_NAME, ENV_NAMESPACE, ENV_RESTORE_SOURCE,
    FIELD_MANAGER, JOB_NAME_FIELD_PATH, VERIFY_FIELD_MANAGER,
};

/// Longest message written into a status. Agent errors are one line already;
/// this only keeps a pathological one from bloating the object.
const MAX_MESSAGE_LEN: usize = 1024;

/// Why reporting failed. Each displays as one line naming the object, and
/// never holds a secret (API errors are reduced to code, reason and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The Job names a namespace but no instance.
    #[error(
        "{ENV_NAMESPACE} is set but {ENV_INSTANCE} is not: the agent cannot tell which MySQLInstance to report to; set both on the Job"
    )]
    MissingInstance,
    /// The destination in the environment is not the JSON of `spec.backup.destination`.
    #[error(
        "{ENV_DESTINATION} is not a valid backup destination (JSON of spec.backup.destination): {0}"
    )]
    BadDestination(String),
    /// `--name` differs from the `MySQLBackup` the Job runs for.
    #[error(
        "--name {requested} differs from {ENV_BACKUP}={backup}: the backup folder and the MySQLBackup must have the same name; drop --name or make them equal"
    )]
    NameMismatch { requested: String, backup: String },
    /// The name cannot be a `MySQLBackup`'s.
    #[error(
        "backup name {0:?} is not a valid MySQLBackup name (lower-case letters, digits and '-', at most 63 characters)"
    )]
    InvalidName(String),
    /// Creating the run's `MySQLBackup` was refused.
    #[error(
        "could not create MySQLBackup {namespace}/{name}: {detail}; nothing was dumped (the agent's Role must allow create on mysqlbackups)"
    )]
    Create {
        namespace: String,
        name: String,
        detail: String,
    },
    /// The `MySQLBackup` exists but belongs to another run or instance.
    #[error(
        "MySQLBackup {namespace}/{name} cannot be used by this run: {reason}; nothing was dumped"
    )]
    Unusable {
        namespace: String,
        name: String,
        reason: String,
    },
    /// Reading a `MySQLBackup` failed.
    #[error("could not read MySQLBackup {namespace}/{name}: {detail}")]
    GetBackup {
        namespace: String,
        name: String,
        detail: String,
    },
    /// Writing a `MySQLBackup`'s status failed.
    #[error("could not update the status of MySQLBackup {namespace}/{name}: {detail}")]
    BackupStatus {
        namespace: String,
        name: String,
        detail: String,
    },
    /// Listing `MySQLBackup` objects failed.
    #[error("could not list the MySQLBackup objects in {namespace}: {detail}")]
    ListBackups { namespace: String, detail: String },
    /// Deleting a pruned backup's `MySQLBackup` failed.
    #[error("could not delete MySQLBackup {namespace}/{name}: {detail}")]
    Delete {
        namespace: String,
        name: String,
        detail: String,
    },
    /// Reading the own `MySQLInstance` failed.
    #[error("could not read MySQLInstance {namespace}/{name}: {detail}")]
    GetInstance {
        namespace: String,
        name: String,
        detail: String,
    },
    /// Writing the own `MySQLInstance`'s status failed.
    #[error("could not update the status of MySQLInstance {namespace}/{name}: {detail}")]
    InstanceStatus {
        namespace: String,
        name: String,
        detail: String,
    },
}

/// How a report at the end of a run went. Deliberately not a `Result`: a
/// failure here must not become the run's failure (see the module docs), so
/// callers cannot `?` it by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Not in Kubernetes: nothing to report to.
    Disabled,
    /// Everything was written (or there was nothing to write).
    Reported,
    /// Some writes failed after retries; each was logged as a warning.
    NotReported(Vec<ReportError>),
}

impl ReportOutcome {
    fn from_errors(errors: Vec<ReportError>) -> Self {
        if errors.is_empty() {
            ReportOutcome::Reported
        } else {
            ReportOutcome::NotReported(errors)
        }
    }
}

/// Where reports go: the API, the namespace and the instance of this run.
#[derive(Clone)]
struct Target {
    client: kube::Client,
    namespace: String,
    instance: String,
    job_name: Option<String>,
    retry: RetryPolicy,
}

impl Target {
    /// `None` outside Kubernetes (no client or no namespace).
    fn from_context(ctx: &AgentContext) -> Result<Option<Target>, ReportError> {
        let (Some(client), Some(namespace)) = (ctx.kube.clone(), ctx.var(ENV_NAMESPACE)) else {
            if ctx.var(ENV_NAMESPACE).is_some() {
                // main() builds the client whenever the namespace is set, so
                // this is a test or an embedding that chose not to report.
                tracing::info!("{ENV_NAMESPACE} is set but no Kubernetes client: not reporting");
            }
            return Ok(None);
        };
        let instance = ctx.var(ENV_INSTANCE).ok_or(ReportError::MissingInstance)?;
        Ok(Some(Target {
            client,
            namespace: namespace.to_owned(),
            instance: instance.to_owned(),
            job_name: ctx.var(ENV_JOB_NAME).map(str::to_owned),
            retry: RetryPolicy::default(),
        }))
    }

    fn backups(&self) -> Api<MySQLBackup> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn instances(&self) -> Api<MySQLInstance> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads the own instance (RBAC: get mysqlinstances, own name).
    async fn get_instance(&self, policy: RetryPolicy) -> Result<MySQLInstance, ReportError> {
        rbac::GET_INSTANCE.note(&self.namespace, &self.instance);
        let api = self.instances();
        let what = format!("reading MySQLInstance {}/{}", self.namespace, self.instance);
        retry::retry(policy, &what, || api.get(&self.instance))
            .await
            .map_err(|e| ReportError::GetInstance {
                namespace: self.namespace.clone(),
                name: self.instance.clone(),
                detail: describe(&e),
            })
    }

    /// Read-modify-apply of the agent's instance fields: `decide` gets the
    /// current status and returns the `(lastBackup, restore)` to apply, or
    /// `None` to write nothing. Both fields are always sent (see the module
    /// docs on server-side apply), and the apply carries the resourceVersion
    /// that was read, so a concurrent writer (another run finishing) makes it
    /// a conflict and the decision is made again on fresh data — which is
    /// what keeps `lastBackup` from moving backwards. Returns whether it wrote.
    async fn update_instance_status<F>(
        &self,
        policy: RetryPolicy,
        mut decide: F,
    ) -> Result<bool, ReportError>
    where
        F: FnMut(&MySQLInstanceStatus) -> Option<(Option<LastBackup>, Option<RestoreStatus>)>,
    {
        const ATTEMPTS_ON_CONFLICT: u32 = 3;
        let mut attempt = 1;
        loop {
            let instance = self.get_instance(policy).await?;
            let current = instance.status.clone().unwrap_or_default();
            let Some((last_backup, restore)) = decide(&current) else {
                return Ok(false);
            };
            rbac::PATCH_INSTANCE_STATUS.note(&self.namespace, &self.instance);
            let body = InstanceStatusApply::new(
                &self.instance,
                instance.metadata.resource_version.as_deref(),
                last_backup.as_ref(),
                restore.as_ref(),
            );
            let api = self.instances();
            let params = apply_params();
            let patch = Patch::Apply(&body);
            let what = format!(
                "updating the status of MySQLInstance {}/{}",
                self.namespace, self.instance
            );
            let result = retry::retry(policy, &what, || {
                api.patch_status(&self.instance, &params, &patch)
            })
            .await;
            match result {
                Ok(_) => return Ok(true),
                Err(e) if is_conflict(&e) && attempt < ATTEMPTS_ON_CONFLICT => {
                    tracing::info!("{what}: changed since read, reading again");
                    attempt += 1;
                }
                Err(e) => {
                    return Err(ReportError::InstanceStatus {
                        namespace: self.namespace.clone(),
                        name: self.instance.clone(),
                        detail: describe(&e),
                    });
                }
            }
        }
    }

    /// Applies a backup's whole agent-owned status.
    async fn apply_backup_status(
        &self,
        name: &str,
        status: &MySQLBackupStatus,
        policy: RetryPolicy,
    ) -> Result<(), ReportError> {
        self.apply_backup_status_as(name, status, apply_params(), policy)
            .await
    }

    /// Applies `status` (the fields `params`' manager owns) to backup `name`.
    async fn apply_backup_status_as(
        &self,
        name: &str,
        status: &MySQLBackupStatus,
        params: PatchParams,
        policy: RetryPolicy,
    ) -> Result<(), ReportError> {
        rbac::PATCH_BACKUP_STATUS.note(&self.namespace, name);
        let body = BackupStatusApply::new(name, status);
        let api = self.backups();
        let patch = Patch::Apply(&body);
        let what = format!(
            "updating the status of MySQLBackup {}/{name}",
            self.namespace
        );
        retry::retry(policy, &what, || api.patch_status(name, &params, &patch))
            .await
            .map(drop)
            .map_err(|e| ReportError::BackupStatus {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                detail: describe(&e),
            })
    }
}

fn apply_params() -> PatchParams {
    // force: the operator may have written `phase` (Pending) first; the agent
    // is the authority on a run it is executing, so it takes the field over.
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The body of a status apply on a `MySQLBackup`: type, name and the status,
/// nothing else (an apply body states exactly the fields the manager owns).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BackupStatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ApplyMeta<'a>,
    status: &'a MySQLBackupStatus,
}

impl<'a> BackupStatusApply<'a> {
    fn new(name: &'a str, status: &'a MySQLBackupStatus) -> Self {
        Self {
            api_version: keeper_crds::API_GROUP_VERSION,
            kind: "MySQLBackup",
            metadata: ApplyMeta { name },
            status,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceStatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: InstanceApplyMeta<'a>,
    status: InstanceAgentFields<'a>,
}

/// The two instance status fields the agent owns, and only those.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceAgentFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    last_backup: Option<&'a LastBackup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restore: Option<&'a RestoreStatus>,
}

impl<'a> InstanceStatusApply<'a> {
    fn new(
        name: &'a str,
        resource_version: Option<&'a str>,
        last_backup: Option<&'a LastBackup>,
        restore: Option<&'a RestoreStatus>,
    ) -> Self {
        Self {
            api_version: keeper_crds::API_GROUP_VERSION,
            kind: "MySQLInstance",
            metadata: InstanceApplyMeta {
                name,
                resource_version,
            },
            status: InstanceAgentFields {
                last_backup,
                restore,
            },
        }
    }
}

#[derive(Debug, Serialize)]
struct ApplyMeta<'a> {
    name: &'a str,
}

/// With a resourceVersion an apply becomes conditional: it fails with a
/// conflict when the object changed since it was read.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceApplyMeta<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
}

/// Inside Kubernetes: `spec.keep` of every `MySQLBackup` of this run's
/// instance, by name (the backup's folder name), so retention pins what the
/// objects pin. `Ok(None)` outside Kubernetes.
///
/// # Errors
/// The objects cannot be listed: retention must then not run, since it
/// cannot know which backups are pinned.
pub async fn object_pins(
    ctx: &AgentContext,
) -> Result<Option<std::collections::BTreeMap<String, bool>>, ReportError> {
    let Some(target) = Target::from_context(ctx)? else {
        return Ok(None);
    };
    rbac::LIST_BACKUPS.note(&target.namespace, "");
    let api = target.backups();
    let params = kube::api::ListParams::default();
    let what = format!("listing MySQLBackups in {}", target.namespace);
    let list = retry::retry(target.retry, &what, || api.list(&params))
        .await
        .map_err(|e| ReportError::ListBackups {
            namespace: target.namespace.clone(),
            detail: describe(&e),
        })?;
    Ok(Some(
        list.items
            .into_iter()
            .filter(|b| b.spec.instance_ref.name == target.instance)
            .filter_map(|b| Some((b.metadata.name?, b.spec.keep)))
            .collect(),
    ))
}

/// Parses [`ENV_DESTINATION`]; `Ok(None)` when it is not set.
pub fn destination_from_env(ctx: &AgentContext) -> Result<Option<BackupDestination>, ReportError> {
    let Some(json) = ctx.var(ENV_DESTINATION) else {
        return Ok(None);
    };
    // serde_json's error names a line and column, never the input: the
    // destination holds only secret references, but stay safe regardless.
    let destination: BackupDestination = serde_json::from_str(json)
        .map_err(|e| ReportError::BadDestination(one_line(&e.to_string())))?;
    if destination.base_url().is_none() {
        return Err(ReportError::BadDestination(
            "exactly one of s3 or pvc must be set".to_owned(),
        ));
    }
    Ok(Some(destination))
}

/// An API error as one short line: code, reason and the server's message
/// (which names the object, never a request body).
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                "Error"
            } else {
                status.reason.as_str()
            };
            one_line(&format!("{} {}: {}", status.code, reason, status.message))
        }
        other => one_line(&other.to_string()),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict")
}

fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// First line only (errors are one line by contract; a status message must
/// be too), whitespace-trimmed and bounded: the rule the operator applies too.
fn one_line(message: &str) -> String {
    keeper_crds::message::status_line(message, MAX_MESSAGE_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_keeps_the_first_line_and_bounds_it() {
        assert_eq!(one_line("boom\nstack trace"), "boom");
        assert_eq!(one_line("\n  \n  second  \n"), "second");
        assert_eq!(one_line(""), "failed");
        let long = "é".repeat(MAX_MESSAGE_LEN);
        let cut = one_line(&long);
        assert!(cut.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn describe_api_errors_in_one_line() {
        let status =
            kube::core::Status::failure("mysqlbackups \"x\" not found", "NotFound").with_code(404);
        let e = kube::Error::Api(Box::new(status));
        assert_eq!(describe(&e), "404 NotFound: mysqlbackups \"x\" not found");
        assert!(is_not_found(&e));
        assert!(!is_already_exists(&e));
    }

    #[test]
    fn destination_env_is_parsed_and_checked() {
        let mut ctx = AgentContext::default();
        assert_eq!(destination_from_env(&ctx), Ok(None));
        ctx.env.insert(
            ENV_DESTINATION.into(),
            r#"{"s3":{"bucket":"backups","credentialsSecretRef":{"name":"s3-creds"}}}"#.into(),
        );
        let d = destination_from_env(&ctx).expect("valid").expect("set");
        assert_eq!(d.base_url().as_deref(), Some("s3://backups"));

        ctx.env.insert(ENV_DESTINATION.into(), "{not json".into());
        assert!(matches!(
            destination_from_env(&ctx),
            Err(ReportError::BadDestination(_))
        ));
        ctx.env.insert(ENV_DESTINATION.into(), "{}".into());
        assert!(matches!(
            destination_from_env(&ctx),
            Err(ReportError::BadDestination(_))
        ));
    }

    #[test]
    fn outside_kubernetes_there_is_no_target() {
        let mut ctx = AgentContext::default();
        ctx.env.insert(ENV_NAMESPACE.into(), "shop".into());
        // No client: not reporting, and not an error.
        assert!(matches!(Target::from_context(&ctx), Ok(None)));
    }
}
