//! Validate: what must hold before anything is created or changed. The spec
//! rules come from `keeper-crds` (`MySQLInstanceSpec::validate`); the
//! referenced root Secret is checked here because only a fetch can tell.

use keeper_crds::MySQLInstance;

use super::fetch::Observed;
use crate::error::Error;

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
