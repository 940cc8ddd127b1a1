//! Schema fragments that schemars cannot derive the way Kubernetes wants them.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Timestamps are `chrono::DateTime<Utc>` in Rust (what both binaries compute
/// with) and RFC 3339 strings on the wire, like `metav1.Time`. schemars only
/// knows chrono behind a feature the workspace does not enable, so the schema is
/// spelled out here.
pub(crate) fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
    })
}

/// A storage size. Always a string (never the int-or-string a bare `Quantity`
/// allows), so that CEL can compare sizes with `quantity()` and a size of
/// `10` is not silently read as ten bytes. Only binary and decimal suffixes
/// that make sense for a volume are accepted.
pub(crate) fn storage_quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "default": crate::instance::DEFAULT_STORAGE_SIZE,
        "maxLength": 32,
        "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        "x-kubernetes-validations": [
            {
                "rule": "quantity(self).isGreaterThan(quantity('0'))",
                "message": "storage size must be greater than zero",
            }
        ],
    })
}

/// Integer formats the API server knows. schemars writes `uint32`/`uint64`
/// (and `uint8`, `int16`, …) for Rust's other integer types; the API server
/// does not know them and warns `unrecognized format "uint64"` on every apply
/// of the CRDs. Unsigned fields already carry `minimum: 0`, so `int64` says
/// the rest (a `u32` does not fit an `int32`). Applied to the whole CRD by
/// [`crate::crds`].
pub(crate) fn kubernetes_formats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                let known = match format.as_str() {
                    "uint8" | "uint16" | "int8" | "int16" => Some("int32"),
                    "uint32" | "uint64" | "uint" | "int" => Some("int64"),
                    _ => None,
                };
                if let Some(known) = known {
                    *format = known.to_owned();
                }
            }
            map.values_mut().for_each(kubernetes_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(kubernetes_formats),
        _ => {}
    }
}
