//! The API server's rules that live in Go code rather than in an OpenAPI
//! schema: a short, hand-kept list of the ones Keeper has met.
//!
//! - A `fieldRef` without `apiVersion`: the server defaults it to `v1`, so a
//!   later server-side apply of the same object without it conflicts (seen
//!   with `kubectl apply --server-side` after a client-side apply).
//! - StatefulSet: only `replicas`, `ordinals`, `template`, `updateStrategy`,
//!   `persistentVolumeClaimRetentionPolicy` and `minReadySeconds` may change.
//! - Job: `selector`, `template` and `completions` are immutable.
//! - PersistentVolumeClaim: the spec is immutable except
//!   `resources.requests` (and `volumeAttributesClassName`), and only for a
//!   bound claim; a claim never shrinks.
//! - Object names: DNS-1123 subdomains; Services DNS-1035 labels; a Job's
//!   name becomes a pod label value (63 characters at most), a CronJob's is
//!   at most 52 (the controller appends the schedule time).

use serde_json::Value;

use super::schema::FieldError;

fn error(path: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Rules on the object being written, whatever was there before.
pub fn check_object(kind: &str, object: &Value, creating: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    field_refs(object, "", &mut errors);
    if creating && let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
        names(kind, name, &mut errors);
    }
    errors
}

fn field_refs(value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if key == "fieldRef"
                    && child.is_object()
                    && child.get("apiVersion").and_then(Value::as_str).is_none()
                {
                    errors.push(error(
                        &format!("{child_path}.apiVersion"),
                        "Required value: the server defaults it to \"v1\", and a later \
                         server-side apply without it conflicts with that default",
                    ));
                }
                field_refs(child, &child_path, errors);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                field_refs(item, &format!("{path}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn is_dns_label(s: &str, first_alpha: bool) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || (!first_alpha && b.is_ascii_digit()))
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn names(kind: &str, name: &str, errors: &mut Vec<FieldError>) {
    let subdomain = name.len() <= 253 && name.split('.').all(|part| is_dns_label(part, false));
    if !subdomain {
        errors.push(error(
            "metadata.name",
            format!(
                "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower \
                 case alphanumeric characters, '-' or '.'"
            ),
        ));
    }
    let limit = match kind {
        "Service" if !is_dns_label(name, true) => {
            Some("a DNS-1035 label (63 characters, starting with a letter)")
        }
        "Job" if name.len() > 63 => {
            Some("must be no more than 63 characters (it becomes a pod label value)")
        }
        "CronJob" if name.len() > 52 => Some("must be no more than 52 characters"),
        _ => None,
    };
    if let Some(why) = limit {
        errors.push(error(
            "metadata.name",
            format!("Invalid value: {name:?}: {why}"),
        ));
    }
}

/// Rules on a change from `old` (stored) to `new` (after the write).
pub fn check_change(kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = |v: &Value| v.get("spec").cloned().unwrap_or(Value::Null);
    match kind {
        "StatefulSet" => {
            const MUTABLE: &[&str] = &[
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let strip = |mut s: Value| {
                if let Some(map) = s.as_object_mut() {
                    map.retain(|k, _| !MUTABLE.contains(&k.as_str()));
                }
                s
            };
            if strip(spec(old)) != strip(spec(new)) {
                errors.push(error(
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', \
                     'ordinals', 'template', 'updateStrategy', \
                     'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        "Job" => {
            for field in ["selector", "template", "completions"] {
                if old.pointer(&format!("/spec/{field}")) != new.pointer(&format!("/spec/{field}"))
                {
                    errors.push(error(
                        &format!("spec.{field}"),
                        "Invalid value: field is immutable",
                    ));
                }
            }
        }
        "PersistentVolumeClaim" => claim_change(old, new, &mut errors),
        _ => {}
    }
    errors
}

fn claim_change(old: &Value, new: &Value, errors: &mut Vec<FieldError>) {
    let without_resizable = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(map) = spec.as_object_mut() {
            map.remove("volumeAttributesClassName");
            if let Some(resources) = map.get_mut("resources").and_then(Value::as_object_mut) {
                resources.remove("requests");
            }
        }
        spec
    };
    let requests = |v: &Value| v.pointer("/spec/resources/requests").cloned();
    let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    let resized = requests(old) != requests(new);
    if without_resizable(old) != without_resizable(new) || (resized && !bound) {
        errors.push(error(
            "spec",
            "Forbidden: spec is immutable after creation except resources.requests and \
             volumeAttributesClassName for bound claims",
        ));
        return;
    }
    let storage = |v: &Value| {
        v.pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(quantity_bytes)
    };
    if let (Some(before), Some(after)) = (storage(old), storage(new))
        && after < before
    {
        errors.push(error(
            "spec.resources.requests.storage",
            "Forbidden: field can not be less than status.capacity",
        ));
    }
}

/// The bytes of a storage quantity (`10Gi`, `500M`, `1073741824`), enough to
/// compare two sizes; `None` for a form a claim would not use.
fn quantity_bytes(q: &str) -> Option<f64> {
    let digits = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits);
    let factor = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_refs_need_their_api_version() {
        let env = json!({"spec": {"containers": [{"env": [
            {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "B", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        ]}]}});
        let errors = check_object("Pod", &env, false);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].path,
            "spec.containers[0].env[0].valueFrom.fieldRef.apiVersion"
        );
    }

    #[test]
    fn claims_grow_only_when_bound_and_never_shrink() {
        let claim = |size: &str, phase: &str| {
            json!({"spec": {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}}},
                   "status": {"phase": phase}})
        };
        assert!(
            check_change(
                "PersistentVolumeClaim",
                &claim("1Gi", "Bound"),
                &claim("2Gi", "Bound")
            )
            .is_empty()
        );
        assert_eq!(
            check_change(
                "PersistentVolumeClaim",
                &claim("1Gi", "Pending"),
                &claim("2Gi", "Pending")
            )[0]
            .path,
            "spec"
        );
        assert_eq!(
            check_change(
                "PersistentVolumeClaim",
                &claim("2Gi", "Bound"),
                &claim("1500Mi", "Bound")
            )[0]
            .path,
            "spec.resources.requests.storage"
        );
    }

    #[test]
    fn stateful_set_selector_and_claims_are_immutable() {
        let sts = |size: &str, replicas: i32| {
            json!({"spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                            "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": size}}}}]}})
        };
        assert!(check_change("StatefulSet", &sts("1Gi", 1), &sts("1Gi", 0)).is_empty());
        assert_eq!(
            check_change("StatefulSet", &sts("1Gi", 1), &sts("2Gi", 1)).len(),
            1
        );
    }

    #[test]
    fn job_names_fit_a_label_value() {
        // A valid object name (labels of at most 63), too long for a label value.
        let long = format!("{}.{}", "a".repeat(40), "b".repeat(30));
        let errors = check_object("Job", &json!({"metadata": {"name": long}}), true);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            check_object(
                "Job",
                &json!({"metadata": {"name": "orders-backup-1"}}),
                true
            )
            .is_empty()
        );
    }
}
