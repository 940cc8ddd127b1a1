//! Apply: server-side apply of the desired objects, skipped when nothing changed.
//!
//! "Nothing changed" is two checks, both needed:
//! * the hash of the desired object equals the `mysql.keeper.dev/applied-hash`
//!   annotation of the existing one: catches changes of the *desired* object,
//!   including fields that were removed from it (a subset check alone would
//!   keep a dropped memory limit forever);
//! * the desired object is a subset of the existing one: catches drift made by
//!   someone else (`kubectl edit`), which the hash cannot see.
//!
//! The subset check tolerates what the API server does to an applied object:
//! it adds defaults (extra fields are fine), drops zero values (`false`, `""`,
//! `{}`, `[]` match an absent field) and canonicalises quantities (`0.5` is
//! `500m`).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use keeper_crds::MySQLInstance;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::error::{Error, Result};

/// Annotation with the SHA-256 of the object as the operator last applied it.
pub const APPLIED_HASH_ANNOTATION: &str = "mysql.keeper.dev/applied-hash";

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The object did not exist and was created.
    Created,
    /// The object existed and differed.
    Updated,
    /// The object was already as desired; no write was made.
    Unchanged,
}

/// `desired` as JSON, with the applied-hash annotation set.
///
/// # Errors
/// [`Error::Serialize`] if the object cannot be serialized.
pub fn with_hash<K: Resource<DynamicType = ()> + Serialize>(desired: &K) -> Result<Value> {
    let serialize = |source| Error::Serialize {
        kind: leak_kind::<K>(),
        source,
    };
    let mut value = serde_json::to_value(desired).map_err(serialize)?;
    // serde_json's map is ordered by key, so the bytes (and the hash) are stable.
    let bytes = serde_json::to_vec(&value).map_err(serialize)?;
    let hash = hex::encode(Sha256::digest(&bytes));
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(APPLIED_HASH_ANNOTATION.to_owned(), Value::String(hash));
        }
    }
    Ok(value)
}

fn leak_kind<K: Resource<DynamicType = ()>>() -> &'static str {
    // Kinds of k8s-openapi types are 'static strings behind a Cow.
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

/// Whether `existing` already is `desired_with_hash` (see the module docs).
pub fn is_up_to_date(desired_with_hash: &Value, existing: &Value) -> bool {
    let hash = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_HASH_ANNOTATION))
            .cloned()
    };
    hash(desired_with_hash).is_some()
        && hash(desired_with_hash) == hash(existing)
        && is_subset(desired_with_hash, existing)
}

/// Applies `desired` with server-side apply (forced: the operator owns these
/// fields), unless `existing` is already up to date.
///
/// # Errors
/// [`Error::ApplyFailed`] when the API refuses the apply.
pub async fn apply<K>(
    api: &Api<K>,
    desired: &K,
    existing: Option<&K>,
    field_manager: &str,
) -> Result<(Outcome, K)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let name = desired.meta().name.clone().unwrap_or_default();
    let value = with_hash(desired)?;
    if let Some(existing) = existing {
        let current = serde_json::to_value(existing).map_err(|source| Error::Serialize {
            kind: leak_kind::<K>(),
            source,
        })?;
        if is_up_to_date(&value, &current) {
            return Ok((Outcome::Unchanged, existing.clone()));
        }
    }
    let params = PatchParams::apply(field_manager).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(&value))
        .await
        .map_err(|source| Error::ApplyFailed {
            kind: leak_kind::<K>(),
            name: name.clone(),
            source: Box::new(source),
        })?;
    let outcome = if existing.is_some() {
        Outcome::Updated
    } else {
        Outcome::Created
    };
    Ok((outcome, applied))
}

/// The one way the instance reconcile writes its children: [`apply`] with
/// the operator's field manager, then an Event on the instance naming the
/// child when it was created or updated (nothing when unchanged).
pub struct Applier<'a> {
    ctx: &'a Context,
    instance: &'a MySQLInstance,
    namespace: &'a str,
}

impl<'a> Applier<'a> {
    pub fn new(ctx: &'a Context, instance: &'a MySQLInstance, namespace: &'a str) -> Self {
        Self {
            ctx,
            instance,
            namespace,
        }
    }

    /// Applies `desired` against `existing` as observed; returns the object
    /// as the API server holds it.
    ///
    /// # Errors
    /// [`Error::ApplyFailed`].
    pub async fn apply<K>(&self, desired: &K, existing: Option<&K>) -> Result<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
    {
        let api = Api::<K>::namespaced(self.ctx.client.clone(), self.namespace);
        let (outcome, applied) =
            apply(&api, desired, existing, &self.ctx.config.field_manager).await?;
        let name = desired.meta().name.clone().unwrap_or_default();
        self.publish::<K>(outcome, &name).await;
        Ok(applied)
    }

    /// Publishes `Created`/`Updated` for a child object; nothing when unchanged.
    async fn publish<K: Resource<DynamicType = ()>>(&self, outcome: Outcome, name: &str) {
        let kind = K::kind(&());
        let kind = kind.as_ref();
        let api_version = K::api_version(&());
        let reason = match outcome {
            Outcome::Created => "Created",
            Outcome::Updated => "Updated",
            Outcome::Unchanged => return,
        };
        tracing::info!(kind, name, reason, "applied");
        // The child as the Event's related object: it is what the Event is
        // about, and it keeps the Recorder from folding different children
        // into one series.
        let related = ObjectReference {
            api_version: Some(api_version.into_owned()),
            kind: Some(kind.to_owned()),
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.to_owned()),
            ..ObjectReference::default()
        };
        self.ctx
            .publish_related(
                self.instance,
                EventType::Normal,
                reason,
                "Apply",
                format!("{reason} {kind} {name}"),
                Some(related),
            )
            .await;
    }
}

/// Whether every field of `desired` is in `existing` with the same value.
pub fn is_subset(desired: &Value, existing: &Value) -> bool {
    match (desired, existing) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().all(|(key, value)| match have.get(key) {
                Some(current) => is_subset(value, current),
                None => is_zero(value),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            want.len() == have.len() && want.iter().zip(have).all(|(w, h)| is_subset(w, h))
        }
        (Value::String(want), Value::String(have)) => want == have || same_quantity(want, have),
        (want, Value::Null) => is_zero(want),
        (want, have) => want == have,
    }
}

/// Values the API server omits when serializing (Go's `omitempty`).
fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// Whether two strings are the same Kubernetes quantity (`1Gi` and
/// `1073741824`, `0.5` and `500m`). Both must parse as quantities.
fn same_quantity(a: &str, b: &str) -> bool {
    match (parse_quantity(a), parse_quantity(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// A Kubernetes quantity as a number: digits with an optional decimal part,
/// then a binary (`Ki`..`Ei`), decimal (`n`, `u`, `m`, `k`, `M`..`E`) or
/// exponent (`e3`) suffix.
fn parse_quantity(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(number * factor)
}

/// Whether quantity `a` is larger than `b`; `None` when either does not parse.
pub fn quantity_greater(a: &str, b: &str) -> Option<bool> {
    Some(parse_quantity(a)? > parse_quantity(b)? && !same_quantity(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_tolerates_server_defaults_and_zero_values() {
        let desired = json!({
            "metadata": {"name": "a", "annotations": {}},
            "spec": {"ports": [{"port": 3306}], "flag": false, "list": []}
        });
        let existing = json!({
            "metadata": {"name": "a", "uid": "1", "resourceVersion": "7"},
            "spec": {"ports": [{"port": 3306, "protocol": "TCP"}], "sessionAffinity": "None"}
        });
        assert!(is_subset(&desired, &existing));
    }

    #[test]
    fn subset_sees_drift() {
        let desired = json!({"spec": {"image": "mysql:8.4", "ports": [{"port": 3306}]}});
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"image": "mysql:8.0", "ports": [{"port": 3306}]}})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"spec": {"image": "mysql:8.4", "ports": []}})
        ));
        assert!(!is_subset(&desired, &json!({"spec": {}})));
        assert!(!is_subset(&json!({"a": true}), &json!({})));
    }

    #[test]
    fn quantities_compare_by_value() {
        assert!(is_subset(&json!({"cpu": "0.5"}), &json!({"cpu": "500m"})));
        assert!(is_subset(&json!({"m": "1Gi"}), &json!({"m": "1073741824"})));
        assert!(is_subset(&json!({"m": "1e3"}), &json!({"m": "1k"})));
        assert!(!is_subset(&json!({"m": "1G"}), &json!({"m": "1Gi"})));
        assert!(!is_subset(&json!({"name": "abc"}), &json!({"name": "abd"})));
        assert_eq!(quantity_greater("20Gi", "10Gi"), Some(true));
        assert_eq!(quantity_greater("10Gi", "10240Mi"), Some(false));
        assert_eq!(quantity_greater("x", "10Gi"), None);
    }

    #[test]
    fn hash_changes_with_the_object_and_gates_the_skip() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("a".into());
        let first = with_hash(&cm).expect("serializable");
        assert!(is_up_to_date(&first, &first));
        cm.data = Some([("k".to_owned(), "v".to_owned())].into());
        let second = with_hash(&cm).expect("serializable");
        assert_ne!(
            first.pointer("/metadata/annotations"),
            second.pointer("/metadata/annotations")
        );
        // Removing a field from the desired object is a change, although the
        // smaller object is a subset of the bigger one.
        assert!(!is_up_to_date(&first, &second));
    }
}
