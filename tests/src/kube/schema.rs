//! Checks a request body against a Kubernetes structural schema the way the
//! API server's OpenAPI validation does, with the server's treatment of
//! `null` for each kind of write.
//!
//! Written by hand rather than with the `jsonschema` crate (already in the
//! lock file through kube-fake-client): the schemas here are Kubernetes
//! structural schemas (OpenAPI v3.0 dialect), whose `nullable`,
//! `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`,
//! `x-kubernetes-embedded-resource` and field pruning JSON Schema does not
//! know, and whose `null` handling depends on the verb (pruned on create and
//! update, deleting in a merge patch, refused in an apply). A translation to
//! JSON Schema would lose those distinctions and the server's field paths,
//! which are what a failing test must name.

use std::collections::BTreeSet;

use serde_json::Value;

/// How the server treats the body of a write before it validates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create or update (POST, PUT): the whole object. `null` in a field that
    /// is not nullable is pruned first (apiextensions-apiserver drops it
    /// before defaulting; built-in kinds decode it as the zero value).
    Replace,
    /// Server-side apply: the body as sent. For a custom resource a `null`
    /// in a field that is not nullable is refused ("must be of type string:
    /// \"null\"", as a v1.36 server answered). Required fields are checked on
    /// the merged object, not here: an apply names only the fields its
    /// manager owns.
    Apply,
    /// JSON merge patch (and the strategic merge kube's event recorder
    /// sends): `null` deletes a field, everything else is validated.
    Merge,
}

/// Whether `null` is refused in fields that are not nullable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A CustomResourceDefinition's schema (from keeper-crds).
    Crd,
    /// A built-in kind (schemas from k8s-openapi): the Go decoder reads
    /// `null` as the zero value, so it is never refused.
    BuiltIn,
}

/// One field the server would refuse, in the server's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted field path (`status.nextBackupTime`, `spec.template.spec.containers[0].env[1]`).
    pub path: String,
    /// Why, as the server phrases it.
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Validates `value` against `schema` (whose `$ref`s point into `root`'s
/// `$defs`, as schemars writes them). `check_required` is false for
/// patches, whose bodies are partial.
pub fn validate(
    root: &Value,
    value: &Value,
    mode: Mode,
    origin: Origin,
    check_required: bool,
) -> Vec<FieldError> {
    let mut walker = Walker {
        root,
        mode,
        origin,
        check_required,
        errors: Vec::new(),
    };
    walker.walk(root, value, "");
    walker.errors
}

struct Walker<'a> {
    root: &'a Value,
    mode: Mode,
    origin: Origin,
    check_required: bool,
    errors: Vec<FieldError>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value as the server quotes it in an error.
fn quoted(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".to_owned(),
        other => {
            let text = other.to_string();
            if text.len() > 60 {
                format!("\"{}…\"", &text[..60])
            } else {
                format!("{text:?}")
            }
        }
    }
}

impl<'a> Walker<'a> {
    fn error(&mut self, path: &str, reason: String) {
        self.errors.push(FieldError {
            path: if path.is_empty() {
                "<root>".to_owned()
            } else {
                path.to_owned()
            },
            reason,
        });
    }

    /// Follows `$ref` (schemars: `#/$defs/Name`) to the schema it names.
    fn resolve<'s>(&self, schema: &'s Value) -> &'s Value
    where
        'a: 's,
    {
        let mut current = schema;
        // A chain of refs is short; the bound only guards against a cycle.
        for _ in 0..16 {
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
                return current;
            };
            let Some(name) = reference.strip_prefix("#/$defs/") else {
                return current;
            };
            match self.root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => current = target,
                None => return current,
            }
        }
        current
    }

    fn walk(&mut self, schema: &Value, value: &Value, path: &str) {
        let schema = self.resolve(schema);
        let flag = |key: &str| schema.get(key).and_then(Value::as_bool).unwrap_or(false);
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let nullable = flag("nullable") || types.contains(&"null");

        if value.is_null() {
            if nullable || self.origin == Origin::BuiltIn {
                return;
            }
            match self.mode {
                // Pruned (Replace) or deleting (Merge): nothing to validate.
                Mode::Replace | Mode::Merge => {}
                Mode::Apply => {
                    let expected = types.first().copied().unwrap_or("object");
                    self.error(
                        path,
                        format!(
                            "Invalid value: \"null\": {path} in body must be of type {expected}: \"null\""
                        ),
                    );
                }
            }
            return;
        }

        if flag("x-kubernetes-int-or-string") {
            if !(value.is_string() || type_name(value) == "integer") {
                self.error(
                    path,
                    format!(
                        "Invalid value: {}: {path} in body must be of type integer or string: {:?}",
                        quoted(value),
                        type_name(value)
                    ),
                );
            }
            return;
        }

        let actual = type_name(value);
        let declared: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
        if let Some(expected) = declared.first() {
            let fits = declared
                .iter()
                .any(|t| *t == actual || (*t == "number" && actual == "integer"));
            if !fits {
                self.error(
                    path,
                    format!(
                        "Invalid value: {}: {path} in body must be of type {expected}: {actual:?}",
                        quoted(value)
                    ),
                );
                return;
            }
        }

        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(quoted).collect();
            self.error(
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    quoted(value),
                    list.join(", ")
                ),
            );
        }

        match value {
            Value::String(s) => self.string(schema, s, path),
            Value::Number(n) => self.number(schema, n, path),
            Value::Array(items) => self.array(schema, items, path),
            Value::Object(map) => self.object(schema, map, path),
            Value::Bool(_) | Value::Null => {}
        }

        // Value validations of structural schemas: no types of their own.
        for (key, all) in [("allOf", true), ("anyOf", false), ("oneOf", false)] {
            let Some(branches) = schema.get(key).and_then(Value::as_array) else {
                continue;
            };
            let passing = branches
                .iter()
                .filter(|branch| {
                    let mut sub = Walker {
                        root: self.root,
                        mode: self.mode,
                        origin: self.origin,
                        check_required: self.check_required,
                        errors: Vec::new(),
                    };
                    sub.walk_value_only(branch, value, path);
                    sub.errors.is_empty()
                })
                .count();
            let ok = match (key, all) {
                (_, true) => passing == branches.len(),
                ("oneOf", _) => passing == 1,
                _ => passing >= 1,
            };
            if !ok {
                self.error(
                    path,
                    format!("Invalid value: {}: must validate {key}", quoted(value)),
                );
            }
        }
    }

    /// A branch of `allOf`/`anyOf`/`oneOf`: constraints on the same value,
    /// without declaring fields (so unknown-field checks do not apply).
    fn walk_value_only(&mut self, schema: &Value, value: &Value, path: &str) {
        let schema = self.resolve(schema);
        if let (Some(required), Some(map)) = (
            schema.get("required").and_then(Value::as_array),
            value.as_object(),
        ) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    self.error(&child(path, name), "Required value".to_owned());
                }
            }
        }
        if let (Some(props), Some(map)) = (
            schema.get("properties").and_then(Value::as_object),
            value.as_object(),
        ) {
            for (name, sub) in props {
                if let Some(v) = map.get(name) {
                    self.walk_value_only(sub, v, &child(path, name));
                }
            }
        }
        if let Some(s) = value.as_str() {
            self.string(schema, s, path);
        }
        if let Some(n) = value.as_number() {
            self.number(schema, n, path);
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            self.error(path, "Unsupported value".to_owned());
        }
    }

    fn string(&mut self, schema: &Value, s: &str, path: &str) {
        let length = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            self.error(path, format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            self.error(
                path,
                format!("Invalid value: {s:?}: {path} in body should be at least {min} chars long"),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => self.error(
                    path,
                    format!("Invalid value: {s:?}: {path} in body should match '{pattern}'"),
                ),
                Err(e) => self.error(
                    path,
                    format!("schema pattern {pattern:?} does not compile: {e}"),
                ),
            }
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date-time" | "datetime") if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                self.error(
                    path,
                    format!(
                        "Invalid value: {s:?}: {path} in body must be of type date-time: {s:?}"
                    ),
                );
            }
            Some("date") if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_err() => {
                self.error(
                    path,
                    format!("Invalid value: {s:?}: {path} in body must be of type date: {s:?}"),
                );
            }
            _ => {}
        }
    }

    fn number(&mut self, schema: &Value, n: &serde_json::Number, path: &str) {
        let Some(x) = n.as_f64() else { return };
        let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool).unwrap_or(false);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            let low = if exclusive("exclusiveMinimum") {
                x <= min
            } else {
                x < min
            };
            if low {
                self.error(
                    path,
                    format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}"),
                );
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            let high = if exclusive("exclusiveMaximum") {
                x >= max
            } else {
                x > max
            };
            if high {
                self.error(
                    path,
                    format!(
                        "Invalid value: {n}: {path} in body should be less than or equal to {max}"
                    ),
                );
            }
        }
    }

    fn array(&mut self, schema: &Value, items: &[Value], path: &str) {
        let count = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            self.error(
                path,
                format!("Too many: {count}: must have at most {max} items"),
            );
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            self.error(
                path,
                format!("Invalid value: {count}: {path} in body should have at least {min} items"),
            );
        }
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    self.error(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", quoted(item)),
                    );
                }
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.walk(item_schema, item, &format!("{path}[{i}]"));
            }
        }
    }

    fn object(&mut self, schema: &Value, map: &serde_json::Map<String, Value>, path: &str) {
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let embedded = schema
            .get("x-kubernetes-embedded-resource")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");

        if self.check_required
            && let Some(required) = schema.get("required").and_then(Value::as_array)
        {
            for name in required.iter().filter_map(Value::as_str) {
                let present = map.get(name).is_some_and(|v| !v.is_null());
                // The server fills a defaulted field before it validates.
                let defaulted = properties
                    .and_then(|p| p.get(name))
                    .map(|s| self.resolve(s))
                    .is_some_and(|s| s.get("default").is_some());
                if !present && !defaulted {
                    self.error(&child(path, name), "Required value".to_owned());
                }
            }
        }

        for (key, value) in map {
            let field_path = child(path, key);
            if let Some(sub) = properties.and_then(|p| p.get(key)) {
                self.walk(sub, value, &field_path);
                continue;
            }
            match additional {
                Some(Value::Object(_)) => {
                    if let Some(sub) = additional {
                        self.walk(sub, value, &field_path);
                    }
                    continue;
                }
                Some(Value::Bool(true)) => continue,
                _ => {}
            }
            // The root of an object, like an embedded resource, always has
            // these; the server checks them itself.
            let implicit = (embedded || path.is_empty())
                && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
            if preserve || implicit {
                continue;
            }
            // An object schema without properties and without
            // additionalProperties (e.g. a CRD's `metadata`) declares no fields
            // of its own: the server checks those elsewhere.
            if properties.is_none() && additional.is_none() {
                continue;
            }
            // Create and update prune it silently (with a warning); an apply
            // fails. Either way the field the client meant to write is lost.
            self.error(&field_path, "field not declared in schema".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "string", "default": "1Gi"},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "count": {"type": "integer", "minimum": 1.0, "format": "int32"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                }},
                "status": {"type": "object", "nullable": true, "properties": {
                    "next": {"type": "string", "format": "date-time"},
                    "maybe": {"type": "string", "nullable": true},
                }},
            }
        })
    }

    fn check(value: Value, mode: Mode) -> Vec<String> {
        let mut errors: Vec<String> =
            validate(&schema(), &value, mode, Origin::Crd, mode == Mode::Replace)
                .iter()
                .map(ToString::to_string)
                .collect();
        errors.sort();
        errors
    }

    #[test]
    fn null_in_a_non_nullable_field_depends_on_the_verb() {
        let body = json!({"spec": {}, "status": {"next": null, "maybe": null}});
        assert_eq!(
            check(body.clone(), Mode::Apply),
            [
                "status.next: Invalid value: \"null\": status.next in body must be of type string: \"null\""
            ]
        );
        assert!(check(body.clone(), Mode::Replace).is_empty());
        assert!(check(body, Mode::Merge).is_empty());
    }

    #[test]
    fn types_enums_formats_and_unknown_fields() {
        let errors = check(
            json!({"spec": {"mode": "c", "count": 0, "port": 1.5, "extra": 1,
                            "free": {"any": [1]}, "labels": {"a": 1}},
                   "status": {"next": "yesterday"}}),
            Mode::Replace,
        );
        assert_eq!(
            errors,
            [
                "spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1",
                "spec.extra: field not declared in schema",
                "spec.labels.a: Invalid value: \"1\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"",
                "spec.port: Invalid value: \"1.5\": spec.port in body must be of type integer or string: \"number\"",
                "status.next: Invalid value: \"yesterday\": status.next in body must be of type date-time: \"yesterday\"",
            ]
        );
    }

    #[test]
    fn required_fields_honour_defaults_and_partial_bodies() {
        assert_eq!(check(json!({}), Mode::Replace), ["spec: Required value"]);
        // `size` has a default.
        assert!(check(json!({"spec": {}}), Mode::Replace).is_empty());
        // Patches are partial.
        assert!(check(json!({"status": {}}), Mode::Apply).is_empty());
    }
}
