//! Validate: what must hold before anything is created or changed, and the
//! spec parsed once into [`Valid`], which the later steps take instead of
//! parsing again. The spec rules come from `keeper-crds`
//! (`MySQLInstanceSpec::validate`); the referenced root Secret is checked
//! here because only a fetch can tell.

use keeper_crds::MySQLInstance;
use keeper_crds::schedule::Schedule;

use super::build::InstanceMeta;
use super::fetch::Observed;
use crate::error::Error;

/// An instance that passed validation, with what its spec says parsed.
#[derive(Clone, Debug)]
pub struct Valid {
    /// Names, labels and the owner reference of its objects.
    pub meta: InstanceMeta,
    /// Its namespace.
    pub namespace: String,
    /// `spec.backup.schedule`, parsed; `None` without backups or without a
    /// schedule.
    pub schedule: Option<Schedule>,
    /// `spec.backup.verification.schedule`, parsed; `None` without one.
    pub verification_schedule: Option<Schedule>,
}

/// Validates `instance` with what was observed: [`Valid`], or the error
/// (the first problem's reason, every problem's message) that the status and
/// an Event report.
///
/// # Errors
/// [`Error::InvalidSpec`] for every problem [`problems`] finds;
/// [`Error::MissingObjectKey`] for an object without a namespace.
pub fn validate(
    instance: &MySQLInstance,
    meta: InstanceMeta,
    observed: &Observed,
) -> Result<Valid, Error> {
    if let Some(error) = into_error(&problems(instance, observed)) {
        return Err(error);
    }
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    // Checked by `problems`; an error here still says why rather than
    // being assumed away.
    let schedule = instance
        .spec
        .schedule()
        .map_err(|error| Error::InvalidSpec {
            reason: error.reason(),
            message: error.to_string(),
        })?;
    let verification_schedule =
        instance
            .spec
            .verification_schedule()
            .map_err(|error| Error::InvalidSpec {
                reason: error.reason(),
                message: error.to_string(),
            })?;
    Ok(Valid {
        meta,
        namespace,
        schedule,
        verification_schedule,
    })
}

/// One reason the instance cannot be reconciled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason (condition and Event).
    pub reason: &'static str,
    /// What is wrong and where.
    pub message: String,
}

/// Every problem with `instance`, in field order; empty when it can go ahead.
pub fn problems(instance: &MySQLInstance, observed: &Observed) -> Vec<Problem> {
    let mut problems: Vec<Problem> = match instance.spec.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| Problem {
                reason: e.reason(),
                message: e.to_string(),
            })
            .collect(),
    };
    if let Some(reference) = &instance.spec.root_password_secret_ref {
        match &observed.root_secret {
            None => problems.push(Problem {
                reason: "SecretNotFound",
                message: format!(
                    "spec.rootPasswordSecretRef: Secret {:?} not found in namespace {:?}",
                    reference.name,
                    instance.metadata.namespace.as_deref().unwrap_or_default()
                ),
            }),
            Some(secret) => {
                let has_key = secret
                    .data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&reference.key))
                    || secret
                        .string_data
                        .as_ref()
                        .is_some_and(|d| d.contains_key(&reference.key));
                if !has_key {
                    problems.push(Problem {
                        reason: "SecretKeyNotFound",
                        message: format!(
                            "spec.rootPasswordSecretRef: Secret {:?} has no key {:?}",
                            reference.name, reference.key
                        ),
                    });
                }
            }
        }
    }
    problems
}

/// The error for a non-empty list of problems: the first problem's reason,
/// every message.
pub fn into_error(problems: &[Problem]) -> Option<Error> {
    let first = problems.first()?;
    Some(Error::InvalidSpec {
        reason: first.reason,
        message: problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    })
}
