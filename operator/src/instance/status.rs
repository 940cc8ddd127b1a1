//! Status: phase, observedGeneration, the `Ready` and `StorageReady`
//! conditions, endpoint and credentialsSecret — computed purely from what was
//! observed, written only when something changed.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use keeper_crds::condition::{
    self, BACKUP_SCHEDULED, BACKUPS_VERIFIED, ConditionStatus, READY, STORAGE_READY, find_condition,
};
use keeper_crds::{API_GROUP_VERSION, InstancePhase, MySQLInstance, MySQLInstanceStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::build::InstanceMeta;
use crate::context::Context;
use crate::error::{Error, Result};

/// Reason of `Ready=True`.
pub const REASON_READY: &str = "Ready";
/// Reason of `Ready=False` while the server is not (yet) ready.
pub const REASON_NOT_READY: &str = "NotReady";
/// Reason of `StorageReady=True`.
pub const REASON_BOUND: &str = "StorageBound";

/// What the status is computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Ready pods of the StatefulSet.
    pub ready_replicas: i32,
    /// Phase of the data claim (`Bound`, `Pending`, `Lost`), `None` when absent.
    pub claim_phase: Option<String>,
}

impl Readiness {
    /// Reads readiness from the StatefulSet and the data claim.
    pub fn observe(
        stateful_set: Option<&StatefulSet>,
        claim: Option<&PersistentVolumeClaim>,
    ) -> Self {
        Self {
            ready_replicas: stateful_set
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            claim_phase: claim.map(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "Pending".to_owned())
            }),
        }
    }
}

fn base(instance: &MySQLInstance) -> MySQLInstanceStatus {
    instance.status.clone().unwrap_or_default()
}

/// The status of a valid instance whose objects were applied.
pub fn healthy(
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    readiness: &Readiness,
    now: DateTime<Utc>,
) -> MySQLInstanceStatus {
    let generation = instance.metadata.generation;
    let mut status = base(instance);
    status.version = Some(instance.spec.version().to_owned());
    let ready = readiness.ready_replicas >= 1;
    let ready_condition = if ready {
        condition::new_condition(
            READY,
            true,
            REASON_READY,
            "the server accepts connections",
            generation,
            now,
        )
    } else {
        condition::new_condition(
            READY,
            false,
            REASON_NOT_READY,
            "waiting for the server pod to become ready",
            generation,
            now,
        )
    };
    let claim = meta.data_claim_name();
    let storage_condition = match readiness.claim_phase.as_deref() {
        Some("Bound") => condition::new_condition(
            STORAGE_READY,
            true,
            REASON_BOUND,
            format!("PersistentVolumeClaim {claim} is bound"),
            generation,
            now,
        ),
        Some("Lost") => condition::new_condition(
            STORAGE_READY,
            false,
            "StorageLost",
            format!("PersistentVolumeClaim {claim} lost its volume"),
            generation,
            now,
        ),
        Some(_) => condition::new_condition(
            STORAGE_READY,
            false,
            "StoragePending",
            format!("PersistentVolumeClaim {claim} is not bound yet"),
            generation,
            now,
        ),
        None => condition::new_condition(
            STORAGE_READY,
            ConditionStatus::Unknown,
            "StoragePending",
            format!("PersistentVolumeClaim {claim} is not created yet"),
            generation,
            now,
        ),
    };
    condition::set_condition(&mut status.conditions, ready_condition);
    condition::set_condition(&mut status.conditions, storage_condition);
    status.phase = Some(if ready {
        InstancePhase::Ready
    } else {
        InstancePhase::Provisioning
    });
    status.observed_generation = generation;
    status.endpoint = meta.endpoint();
    status.credentials_secret = Some(instance.root_password_secret().0);
    status
}

/// Gives every condition of `new` whose status is the one `old` recorded
/// the time `old` recorded: a condition transitions against the observed
/// status, not against the steps of one reconcile (the server step may set
/// `Ready=True` and the restore step turn it back to False; that is no
/// transition, and a repeated reconcile must write nothing).
pub fn keep_transition_times(old: Option<&MySQLInstanceStatus>, new: &mut MySQLInstanceStatus) {
    let Some(old) = old else {
        return;
    };
    for condition in &mut new.conditions {
        if let Some(before) = find_condition(&old.conditions, &condition.type_)
            && before.status == condition.status
        {
            condition.last_transition_time = before.last_transition_time.clone();
        }
    }
}

/// The status of an instance whose spec cannot be acted on: `Ready=False`
/// with the error's reason, phase `Failed`. The other fields keep their
/// values: nothing was changed, so what they describe still holds.
///
/// `Failed` rather than `Pending`: the user must act, and `Failed` is what
/// dashboards and `kubectl get myi` make visible.
pub fn invalid(instance: &MySQLInstance, error: &Error, now: DateTime<Utc>) -> MySQLInstanceStatus {
    let generation = instance.metadata.generation;
    let mut status = base(instance);
    condition::set_condition(
        &mut status.conditions,
        condition::new_condition(
            READY,
            false,
            error.reason(),
            error.to_string(),
            generation,
            now,
        ),
    );
    // A schedule or time zone that does not parse is also the schedule's
    // condition (the CronJob, if any, is left as it was).
    if let Err(error) = instance.spec.schedule() {
        condition::set_condition(
            &mut status.conditions,
            condition::new_condition(
                BACKUP_SCHEDULED,
                false,
                error.reason(),
                error.to_string(),
                generation,
                now,
            ),
        );
    }
    status.phase = Some(InstancePhase::Failed);
    status.observed_generation = generation;
    status
}

/// Refuses an instance whose spec cannot be acted on: writes the
/// [`invalid`] status and returns `error` for the caller to publish as an
/// Event and retry with backoff (or the error of the status write).
pub async fn refuse(
    ctx: &Context,
    instance: &MySQLInstance,
    error: Error,
    now: DateTime<Utc>,
) -> Error {
    let Some(namespace) = instance.metadata.namespace.as_deref() else {
        return error;
    };
    let instances = Api::<MySQLInstance>::namespaced(ctx.client.clone(), namespace);
    let new = invalid(instance, &error, now);
    match write(&instances, instance, &new, &ctx.config.field_manager).await {
        Ok(_) => error,
        Err(write_error) => write_error,
    }
}

/// An Event to publish for a change of status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Normal or Warning.
    pub type_: EventType,
    /// Searchable reason.
    pub reason: String,
    /// Human-readable note.
    pub note: String,
}

/// The Events for going from `old` to `new`: `Ready`/`NotReady` when the
/// server's readiness flips, the storage condition's reason when the volume's
/// state flips, `Provisioning` when the server is first being set up.
/// Failures are reported by the error's own Event, not here.
pub fn transitions(
    old: Option<&MySQLInstanceStatus>,
    new: &MySQLInstanceStatus,
) -> Vec<Transition> {
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let mut events = Vec::new();
    if old.and_then(|s| s.phase).is_none() && new.phase == Some(InstancePhase::Provisioning) {
        events.push(Transition {
            type_: EventType::Normal,
            reason: "Provisioning".to_owned(),
            note: "creating the server and its volume".to_owned(),
        });
    }
    for type_ in [READY, STORAGE_READY] {
        let Some(current) = find_condition(&new.conditions, type_) else {
            continue;
        };
        let previous = find_condition(old_conditions, type_);
        if previous.map(|p| &p.status) == Some(&current.status) {
            continue;
        }
        let was_true = previous.is_some_and(|p| p.status == "True");
        let type_ = match current.status.as_str() {
            "True" => EventType::Normal,
            "False" if was_true => EventType::Warning,
            // Unknown, or False from the start: nothing happened yet.
            _ => continue,
        };
        // Ready=False for a validation reason already has the error's Event.
        let validation_failure = current.type_ == READY && current.reason != REASON_NOT_READY;
        if type_ == EventType::Warning && validation_failure {
            continue;
        }
        events.push(Transition {
            type_,
            reason: current.reason.clone(),
            note: current.message.clone(),
        });
    }
    // A backup that failed its proof, or proofs that stopped: a Warning
    // even the first time (there is no True before a first proof).
    if let Some(current) = find_condition(&new.conditions, BACKUPS_VERIFIED) {
        let previous = find_condition(old_conditions, BACKUPS_VERIFIED);
        let changed =
            previous.is_none_or(|p| p.status != current.status || p.reason != current.reason);
        let type_ = match current.status.as_str() {
            "False" => Some(EventType::Warning),
            "True" if previous.is_some_and(|p| p.status == "False") => Some(EventType::Normal),
            _ => None,
        };
        if let Some(type_) = type_.filter(|_| changed) {
            events.push(Transition {
                type_,
                reason: current.reason.clone(),
                note: current.message.clone(),
            });
        }
    }
    events
}

/// `fields` without its `null` members. An apply that omits a field its
/// manager set before removes it, which is how a value goes away; a `null`
/// is refused by the API server for every field the CRD does not declare
/// nullable (`status.nextBackupTime in body must be of type string: "null"`).
pub(crate) fn without_nulls(fields: serde_json::Value) -> serde_json::Value {
    match fields {
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

/// The reconcile's one status write: the transition times of conditions
/// that did not change are kept, an Event is published per condition that
/// did, then the status is written ([`write`]).
///
/// # Errors
/// [`Error::StatusFailed`].
pub async fn publish_and_write(
    ctx: &Context,
    instance: &MySQLInstance,
    mut new: MySQLInstanceStatus,
) -> Result<()> {
    keep_transition_times(instance.status.as_ref(), &mut new);
    for transition in transitions(instance.status.as_ref(), &new) {
        ctx.publish(
            instance,
            transition.type_,
            &transition.reason,
            "Reconcile",
            transition.note,
        )
        .await;
    }
    let namespace = instance.metadata.namespace.clone().unwrap_or_default();
    let api = Api::<MySQLInstance>::namespaced(ctx.client.clone(), &namespace);
    write(&api, instance, &new, &ctx.config.field_manager).await?;
    Ok(())
}

/// Writes the operator's status fields with server-side apply, unless `new`
/// equals the current status. Returns whether a write was made.
///
/// # Errors
/// [`Error::StatusFailed`] when the API refuses the patch.
pub async fn write(
    api: &Api<MySQLInstance>,
    instance: &MySQLInstance,
    new: &MySQLInstanceStatus,
    field_manager: &str,
) -> Result<bool> {
    if instance.status.as_ref() == Some(new) {
        return Ok(false);
    }
    let name = instance.metadata.name.clone().unwrap_or_default();
    // Only the fields this operator owns: the agent owns lastBackup and restore
    // under its own field manager (the operator's few restore fields go
    // through `restore::restore_field_manager`).
    let patch = json!({
        "apiVersion": API_GROUP_VERSION,
        "kind": "MySQLInstance",
        "status": without_nulls(json!({
            "phase": new.phase,
            "observedGeneration": new.observed_generation,
            "conditions": new.conditions,
            "endpoint": new.endpoint,
            "version": new.version,
            "credentialsSecret": new.credentials_secret,
            "restoredFrom": new.restored_from,
            "nextBackupTime": new.next_backup_time,
            "finalBackup": new.final_backup,
            "lastVerifiedBackup": new.last_verified_backup,
        })),
    });
    api.patch_status(
        &name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::StatusFailed {
        name,
        source: Box::new(source),
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keeper_crds::condition::set_condition;

    fn at(second: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-01-01T00:00:{second:02}Z"))
            .expect("time")
            .to_utc()
    }

    #[test]
    fn a_condition_set_back_within_one_reconcile_keeps_its_time() {
        let mut old = MySQLInstanceStatus::default();
        set_condition(
            &mut old.conditions,
            condition::new_condition(READY, false, "SecretKeyNotFound", "m", Some(1), at(0)),
        );
        set_condition(
            &mut old.conditions,
            condition::new_condition(STORAGE_READY, false, "StoragePending", "m", Some(1), at(0)),
        );
        // One second later the server step says Ready, the restore step
        // takes it back; the volume really changed.
        let mut new = old.clone();
        set_condition(
            &mut new.conditions,
            condition::new_condition(READY, true, REASON_READY, "ok", Some(1), at(1)),
        );
        set_condition(
            &mut new.conditions,
            condition::new_condition(READY, false, "SecretKeyNotFound", "m", Some(1), at(1)),
        );
        set_condition(
            &mut new.conditions,
            condition::new_condition(STORAGE_READY, true, "Bound", "m", Some(1), at(1)),
        );
        keep_transition_times(Some(&old), &mut new);
        let time = |status: &MySQLInstanceStatus, type_: &str| {
            find_condition(&status.conditions, type_).map(|c| c.last_transition_time.clone())
        };
        assert_eq!(time(&new, READY), time(&old, READY));
        assert_eq!(
            find_condition(&new.conditions, READY),
            find_condition(&old.conditions, READY)
        );
        assert_ne!(time(&new, STORAGE_READY), time(&old, STORAGE_READY));
    }
}
