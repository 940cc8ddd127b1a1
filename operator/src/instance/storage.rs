//! Growing the data volume to `spec.storage.size`, reported in the condition
//! `StorageResized`.
//!
//! The StatefulSet's claim template is immutable, so a larger size is asked
//! of the claim itself (`data-<name>-0`, a merge patch of
//! `spec.resources.requests.storage`). Growing is not essential to the
//! instance: whatever happens here becomes the condition and, for a failure,
//! a Warning Event, and the rest of the reconcile (status, backups, restores)
//! goes on. A shrink is never asked for (the CRD's rule refuses a smaller
//! size, and so would the API server).
//!
//! * A claim that is not `Bound` is not patched: the API server refuses to
//!   change a Pending claim's spec. `StorageResized=False`,
//!   `WaitingForBinding`; the claim's binding is watched, so it is grown as
//!   soon as it is bound.
//! * The patch was refused by the API server (`ResizeRefused`, Warning
//!   Event): its answer is the message — 403 from the operator's RBAC or from
//!   the `PersistentVolumeClaimResize` admission (a storage class without
//!   `allowVolumeExpansion`), 422 for an invalid change. Other failures to
//!   send it are `ResizeRequestFailed`. Either is tried again on the next
//!   reconcile (the storage class or the RBAC may be fixed meanwhile).
//! * Asked for and not there yet: the claim's own status says how it goes,
//!   and the operator reads nothing else (no StorageClass): the conditions
//!   `ControllerResizeError` / `NodeResizeError` or
//!   `status.allocatedResourceStatuses` `*Infeasible` are `ResizeFailed`
//!   (Warning Event); `FileSystemResizePending` (or `NodeResizePending`) is
//!   `FileSystemResizePending`; anything else is `Resizing`.
//! * The volume's capacity reached the size: `StorageResized=True`,
//!   `Resized`, with a Normal Event.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use keeper_crds::condition::{self, STORAGE_RESIZED, find_condition};
use keeper_crds::{MySQLInstance, MySQLInstanceStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::apply::quantity_greater;
use crate::context::Context;

/// `StorageResized=True`: the volume has the size asked for.
pub const REASON_RESIZED: &str = "Resized";
/// The claim is not bound yet; it grows once it is.
pub const REASON_WAITING_FOR_BINDING: &str = "WaitingForBinding";
/// The larger size was asked for; the storage system grows the volume.
pub const REASON_RESIZING: &str = "Resizing";
/// The volume grew; its file system grows next (on the node).
pub const REASON_FILE_SYSTEM_RESIZE_PENDING: &str = "FileSystemResizePending";
/// The API server refused the claim's new size.
pub const REASON_RESIZE_REFUSED: &str = "ResizeRefused";
/// The new size could not be sent (not a refusal: a transport or server error).
pub const REASON_RESIZE_REQUEST_FAILED: &str = "ResizeRequestFailed";
/// The storage system reports that it cannot grow the volume.
pub const REASON_RESIZE_FAILED: &str = "ResizeFailed";
/// Normal Event when the larger size is asked of the claim.
pub const REASON_EXPANDING: &str = "StorageExpanding";

/// What the claim needs, from the claim alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing was asked beyond what the claim has (or there is no claim).
    Nothing,
    /// The claim has the size asked for.
    Done {
        /// Its capacity.
        capacity: String,
    },
    /// A larger size is asked for, but the claim is not bound yet.
    WaitForBinding,
    /// Ask the claim for `to`.
    Grow {
        /// What the claim asks for now.
        from: String,
        /// `spec.storage.size`.
        to: String,
    },
    /// Asked for; the claim's status says how it goes.
    InProgress {
        /// [`REASON_RESIZING`], [`REASON_FILE_SYSTEM_RESIZE_PENDING`] or
        /// [`REASON_RESIZE_FAILED`].
        reason: &'static str,
        /// For the condition.
        message: String,
    },
}

fn storage(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Option<&str> {
    map?.get("storage").map(|q| q.0.as_str())
}

/// What `claim` needs for `wanted` (`spec.storage.size`). Pure.
pub fn plan(claim: Option<&PersistentVolumeClaim>, wanted: &str) -> Plan {
    let Some(claim) = claim else {
        return Plan::Nothing;
    };
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let requested = storage(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    );
    let Some(requested) = requested else {
        return Plan::Nothing;
    };
    let status = claim.status.clone().unwrap_or_default();
    let capacity = storage(status.capacity.as_ref()).unwrap_or(requested);
    if quantity_greater(wanted, requested) == Some(true) {
        if status.phase.as_deref() != Some("Bound") {
            return Plan::WaitForBinding;
        }
        return Plan::Grow {
            from: requested.to_owned(),
            to: wanted.to_owned(),
        };
    }
    if quantity_greater(wanted, capacity) != Some(true) {
        return Plan::Done {
            capacity: capacity.to_owned(),
        };
    }
    let true_condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    let allocation = status
        .allocated_resource_statuses
        .as_ref()
        .and_then(|s| s.get("storage"))
        .map(String::as_str);
    for type_ in ["ControllerResizeError", "NodeResizeError"] {
        if let Some(c) = true_condition(type_) {
            return Plan::InProgress {
                reason: REASON_RESIZE_FAILED,
                message: format!(
                    "PersistentVolumeClaim {name} cannot grow to {wanted}: {type_}: {}",
                    c.message.as_deref().unwrap_or("no message")
                ),
            };
        }
    }
    if let Some(state @ ("ControllerResizeInfeasible" | "NodeResizeInfeasible")) = allocation {
        return Plan::InProgress {
            reason: REASON_RESIZE_FAILED,
            message: format!(
                "PersistentVolumeClaim {name} cannot grow to {wanted}: the storage system reports {state}"
            ),
        };
    }
    if true_condition("FileSystemResizePending").is_some()
        || allocation == Some("NodeResizePending")
    {
        return Plan::InProgress {
            reason: REASON_FILE_SYSTEM_RESIZE_PENDING,
            message: format!(
                "the volume of PersistentVolumeClaim {name} grew; its file system grows to {wanted} on the node (it has {capacity})"
            ),
        };
    }
    Plan::InProgress {
        reason: REASON_RESIZING,
        message: format!(
            "PersistentVolumeClaim {name} asks for {wanted}; the storage system grows it (it has {capacity})"
        ),
    }
}

/// Grows the data claim when [`plan`] says so and sets `StorageResized` in
/// `status`; publishes the Events of its transitions. Never fails: see the
/// module docs.
pub async fn reconcile(
    ctx: &Context,
    instance: &MySQLInstance,
    namespace: &str,
    claim: Option<&PersistentVolumeClaim>,
    status: &mut MySQLInstanceStatus,
    now: DateTime<Utc>,
) {
    let wanted = instance.spec.storage.size.as_str();
    let previous = find_condition(&status.conditions, STORAGE_RESIZED).cloned();
    let name = claim
        .and_then(|c| c.metadata.name.clone())
        .unwrap_or_default();
    let (ok, reason, message) = match plan(claim, wanted) {
        Plan::Nothing => return,
        // Only worth saying once a resize was asked for.
        Plan::Done { .. } if previous.is_none() => return,
        Plan::Done { capacity } => (
            true,
            REASON_RESIZED,
            format!("PersistentVolumeClaim {name} has {capacity}, as spec.storage.size asks"),
        ),
        Plan::WaitForBinding => (
            false,
            REASON_WAITING_FOR_BINDING,
            format!(
                "PersistentVolumeClaim {name} is not bound yet; it is grown to {wanted} once it is (a Pending claim's size cannot change)"
            ),
        ),
        Plan::InProgress { reason, message } => (false, reason, message),
        Plan::Grow { from, to } => match grow(ctx, namespace, &name, &to).await {
            Ok(()) => {
                ctx.publish(
                    instance,
                    EventType::Normal,
                    REASON_EXPANDING,
                    "Resize",
                    format!("PersistentVolumeClaim {name}: {from} → {to}"),
                )
                .await;
                (
                    false,
                    REASON_RESIZING,
                    format!(
                        "PersistentVolumeClaim {name} asks for {to} (was {from}); the storage system grows it"
                    ),
                )
            }
            Err(refusal) => refusal,
        },
    };
    let new = condition::new_condition(
        STORAGE_RESIZED,
        ok,
        reason,
        message,
        instance.metadata.generation,
        now,
    );
    let changed_reason = previous.as_ref().map(|p| p.reason.as_str()) != Some(reason);
    if changed_reason {
        let type_ = match reason {
            REASON_RESIZE_REFUSED | REASON_RESIZE_REQUEST_FAILED | REASON_RESIZE_FAILED => {
                Some(EventType::Warning)
            }
            REASON_RESIZED => Some(EventType::Normal),
            _ => None,
        };
        if let Some(type_) = type_ {
            ctx.publish(instance, type_, reason, "Resize", new.message.clone())
                .await;
        }
    }
    condition::set_condition(&mut status.conditions, new);
}

/// Whether an API answer with `code` refuses the resize for good (RBAC, an
/// admission or validation rule: a storage class that cannot expand is a 403
/// or a 422) rather than failing this one request (a claim gone, a conflict,
/// throttling), which the next reconcile retries.
fn refuses(code: u16) -> bool {
    matches!(code, 400 | 403 | 422)
}

/// Asks claim `name` for `size`; a failure is the condition it becomes.
async fn grow(
    ctx: &Context,
    namespace: &str,
    name: &str,
    size: &str,
) -> Result<(), (bool, &'static str, String)> {
    let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
    let result = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if refuses(status.code) => {
            tracing::warn!(claim = name, code = status.code, message = %status.message, "resize refused");
            Err((
                false,
                REASON_RESIZE_REFUSED,
                format!(
                    "the API server refused to grow PersistentVolumeClaim {name} to {size} ({} {}): {}; the storage class must allow volume expansion and the operator needs patch on persistentvolumeclaims",
                    status.code, status.reason, status.message
                ),
            ))
        }
        Err(error) => {
            tracing::warn!(claim = name, %error, "resize request failed");
            Err((
                false,
                REASON_RESIZE_REQUEST_FAILED,
                format!(
                    "growing PersistentVolumeClaim {name} to {size} failed: {error}; retried on the next reconcile"
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec_size: &str, status: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data-orders-0"},
            "spec": {"resources": {"requests": {"storage": spec_size}}},
            "status": status,
        }))
        .expect("claim")
    }

    #[test]
    fn only_rules_refuse_a_resize_other_answers_are_retried() {
        for code in [400, 403, 422] {
            assert!(refuses(code), "{code}");
        }
        // The claim is gone, changed meanwhile, or the server is busy.
        for code in [404, 409, 429, 500, 503] {
            assert!(!refuses(code), "{code}");
        }
    }

    #[test]
    fn a_pending_claim_is_not_grown_a_bound_one_is() {
        assert_eq!(plan(None, "20Gi"), Plan::Nothing);
        assert_eq!(
            plan(Some(&claim("10Gi", json!({"phase": "Pending"}))), "20Gi"),
            Plan::WaitForBinding
        );
        assert_eq!(
            plan(
                Some(&claim(
                    "10Gi",
                    json!({"phase": "Bound", "capacity": {"storage": "10Gi"}})
                )),
                "20Gi"
            ),
            Plan::Grow {
                from: "10Gi".into(),
                to: "20Gi".into()
            }
        );
        // Never a shrink, and the same size written differently is no change.
        assert!(matches!(
            plan(
                Some(&claim(
                    "20Gi",
                    json!({"phase": "Bound", "capacity": {"storage": "20Gi"}})
                )),
                "10240Mi"
            ),
            Plan::Done { .. }
        ));
    }

    #[test]
    fn the_claims_status_says_how_a_resize_goes() {
        let asked = |status: serde_json::Value| plan(Some(&claim("20Gi", status)), "20Gi");
        let reason = |plan: Plan| match plan {
            Plan::InProgress { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        let bound = json!({"phase": "Bound", "capacity": {"storage": "10Gi"}});
        assert_eq!(reason(asked(bound.clone())), REASON_RESIZING);
        let mut pending_fs = bound.clone();
        pending_fs["conditions"] = json!([{"type": "FileSystemResizePending", "status": "True"}]);
        assert_eq!(reason(asked(pending_fs)), REASON_FILE_SYSTEM_RESIZE_PENDING);
        let mut error = bound.clone();
        error["conditions"] = json!([{"type": "ControllerResizeError", "status": "True",
            "message": "resize volume \"pvc-1\" by resizer \"ebs.csi.aws.com\" failed: limit reached"}]);
        let Plan::InProgress {
            reason: failed,
            message,
        } = asked(error)
        else {
            panic!("in progress");
        };
        assert_eq!(failed, REASON_RESIZE_FAILED);
        assert!(message.contains("limit reached"), "{message}");
        let mut infeasible = bound;
        infeasible["allocatedResourceStatuses"] = json!({"storage": "ControllerResizeInfeasible"});
        assert_eq!(reason(asked(infeasible)), REASON_RESIZE_FAILED);
        assert_eq!(
            asked(json!({"phase": "Bound", "capacity": {"storage": "20Gi"}})),
            Plan::Done {
                capacity: "20Gi".into()
            }
        );
    }
}
