//! The generated CRDs: names, columns, subresources, structure, the committed
//! YAML, and where the CEL rules sit.

use std::collections::BTreeMap;

use keeper_crds::{MySQLBackup, MySQLInstance};
use kube::CustomResourceExt;
use serde_json::Value;

use crate::common::{backup_schema, instance_schema, repo_root};

const CRD_FILE: &str = "deploy/crds/mysql.keeper.dev_crds.yaml";

#[test]
fn committed_yaml_is_up_to_date() {
    let path = repo_root().join(CRD_FILE);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = keeper_crds::crds_yaml().unwrap();
    assert!(
        committed == generated,
        "{CRD_FILE} is out of date with the Rust types; regenerate it with\n\n    \
         cargo run -p keeper-crds --bin crdgen > {CRD_FILE}\n"
    );
}

#[test]
fn crd_kustomization_lists_the_yaml() {
    let text = std::fs::read_to_string(repo_root().join("deploy/crds/kustomization.yaml")).unwrap();
    let kustomization: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(
        kustomization["resources"],
        serde_json::json!(["mysql.keeper.dev_crds.yaml"])
    );
}

#[test]
fn instance_crd_names_and_columns() {
    let crd = serde_json::to_value(MySQLInstance::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "mysqlinstances.mysql.keeper.dev");
    let spec = &crd["spec"];
    assert_eq!(spec["group"], keeper_crds::API_GROUP);
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "MySQLInstance");
    assert_eq!(spec["names"]["plural"], "mysqlinstances");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["myi"]));
    assert_eq!(
        spec["names"]["categories"],
        serde_json::json!([keeper_crds::CATEGORY])
    );
    let version = &spec["versions"][0];
    assert_eq!(version["name"], keeper_crds::API_VERSION);
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<(String, String, String)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("Phase", "string", ".status.phase"),
        (
            "Ready",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].status",
        ),
        ("Flavor", "string", ".spec.flavor"),
        ("Version", "string", ".status.version"),
        ("Last Backup", "date", ".status.lastBackup.time"),
        ("Next Backup", "date", ".status.nextBackupTime"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ];
    assert_eq!(
        columns,
        expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
}

#[test]
fn backup_crd_names_and_columns() {
    let crd = serde_json::to_value(MySQLBackup::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "mysqlbackups.mysql.keeper.dev");
    let spec = &crd["spec"];
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "MySQLBackup");
    assert_eq!(spec["names"]["plural"], "mysqlbackups");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["myb"]));
    assert_eq!(spec["names"]["categories"], serde_json::json!(["keeper"]));
    let version = &spec["versions"][0];
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    assert_eq!(
        version["selectableFields"],
        serde_json::json!([{"jsonPath": ".spec.instanceRef.name"}])
    );
    let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    // The exact byte count only with `-o wide`.
    let bytes = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Bytes")
        .unwrap();
    assert_eq!(bytes["priority"], 1);
    assert_eq!(
        columns,
        [
            ("Instance", ".spec.instanceRef.name"),
            ("Phase", ".status.phase"),
            ("Progress", ".status.progress.summary"),
            ("Size", ".status.size"),
            ("Verified", ".status.verification.phase"),
            ("Bytes", ".status.compressedBytes"),
            ("Completed", ".status.completionTime"),
            ("Keep", ".spec.keep"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
}

/// Walks a schema and reports what would make the API server reject it as
/// non-structural, or what is forbidden in a CRD schema.
fn structural_problems(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    for forbidden in [
        "$ref",
        "$defs",
        "definitions",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "const",
        "$schema",
    ] {
        if object.contains_key(forbidden) {
            problems.push(format!("{path}: has {forbidden}"));
        }
    }
    let typed = object.get("type").is_some_and(Value::is_string)
        || object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed {
        problems.push(format!("{path}: no type"));
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    if object.get("type") == Some(&Value::String("array".into())) && !object.contains_key("items") {
        problems.push(format!("{path}: array without items"));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = object.get("items") {
        structural_problems(items, &format!("{path}[]"), problems);
    }
    if let Some(additional) = object.get("additionalProperties").filter(|v| v.is_object()) {
        structural_problems(additional, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn schemas_are_structural() {
    for (kind, schema) in [
        ("MySQLInstance", instance_schema()),
        ("MySQLBackup", backup_schema()),
    ] {
        let mut problems = Vec::new();
        structural_problems(&schema, kind, &mut problems);
        assert!(
            problems.is_empty(),
            "non-structural schema:\n{}",
            problems.join("\n")
        );
    }
}

/// Every `description` the user sees in `kubectl explain`: none may be missing
/// on a spec field.
#[test]
fn every_spec_field_is_documented() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, child) in properties {
                let child_path = format!("{path}.{name}");
                if child
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    missing.push(child_path.clone());
                }
                walk(child, &child_path, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    for (kind, schema) in [
        ("MySQLInstance", instance_schema()),
        ("MySQLBackup", backup_schema()),
    ] {
        let mut missing = Vec::new();
        for part in ["spec", "status"] {
            walk(
                &schema["properties"][part],
                &format!("{kind}.{part}"),
                &mut missing,
            );
        }
        assert!(
            missing.is_empty(),
            "fields without a description:\n{}",
            missing.join("\n")
        );
    }
}

/// Collects every CEL rule by the schema path it is attached to.
fn rules_by_path(schema: &Value, path: &str, out: &mut BTreeMap<String, Vec<String>>) {
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        out.entry(path.to_owned()).or_default().extend(
            rules
                .iter()
                .map(|r| r["rule"].as_str().unwrap_or_default().to_owned()),
        );
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            rules_by_path(child, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        rules_by_path(items, &format!("{path}[]"), out);
    }
}

#[test]
fn cel_rules_sit_at_the_right_paths() {
    let mut rules = BTreeMap::new();
    rules_by_path(&instance_schema(), "MySQLInstance", &mut rules);
    rules_by_path(&backup_schema(), "MySQLBackup", &mut rules);

    let at = |path: &str| rules.get(path).cloned().unwrap_or_default();
    assert!(
        at("MySQLInstance.spec.backup.destination")
            .contains(&"has(self.s3) != has(self.pvc)".to_owned())
    );
    assert!(
        at("MySQLInstance.spec.restoreFrom.location.destination")
            .contains(&"has(self.s3) != has(self.pvc)".to_owned())
    );
    assert!(
        at("MySQLBackup.spec.destination").contains(&"has(self.s3) != has(self.pvc)".to_owned())
    );
    assert!(
        at("MySQLInstance.spec.restoreFrom")
            .contains(&"has(self.backupName) != has(self.location)".to_owned())
    );
    assert!(at("MySQLInstance.spec").contains(&"self.flavor == oldSelf.flavor".to_owned()));
    assert!(
        at("MySQLInstance.spec.storage")
            .iter()
            .any(|r| r.contains("self.storageClassName == oldSelf.storageClassName"))
    );
    assert!(
        at("MySQLInstance.spec.storage")
            .iter()
            .any(|r| r.contains("quantity(oldSelf.size)"))
    );
    assert_eq!(
        at("MySQLBackup.spec"),
        [
            "self.instanceRef == oldSelf.instanceRef && has(self.destination) == has(oldSelf.destination) && (!has(self.destination) || self.destination == oldSelf.destination)"
        ]
    );

    insta::assert_yaml_snapshot!("cel_rules_by_path", rules);
}

#[test]
fn schema_validations_outside_cel() {
    let schema = instance_schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let backup = &spec["backup"]["properties"];
    assert_eq!(
        spec["flavor"]["enum"],
        serde_json::json!(["mysql", "mariadb"])
    );
    assert_eq!(spec["flavor"]["default"], "mysql");
    assert_eq!(spec["backupOnDelete"]["default"], false);
    assert_eq!(backup["compressionLevel"]["minimum"], 1.0);
    assert_eq!(backup["compressionLevel"]["maximum"], 19.0);
    assert_eq!(
        backup["compression"]["enum"],
        serde_json::json!(["gzip", "zstd", "none"])
    );
    assert_eq!(backup["compression"]["default"], "gzip");
    assert_eq!(
        backup["compressionLevel"]["default"],
        keeper_crds::instance::DEFAULT_COMPRESSION_LEVEL
    );
    assert_eq!(
        backup["retention"]["properties"]["keepLast"]["minimum"],
        1.0
    );
    assert_eq!(
        backup["retention"]["properties"]["maxAge"]["pattern"],
        "^[1-9][0-9]{0,5}[mhdw]$"
    );
    assert_eq!(
        backup["destination"]["properties"]["s3"]["properties"]["region"]["default"],
        "us-east-1"
    );
    assert_eq!(
        backup["destination"]["properties"]["s3"]["required"],
        serde_json::json!(["bucket"])
    );
    assert_eq!(
        backup["destination"]["properties"]["pvc"]["properties"]["path"]["default"],
        ""
    );
    assert_eq!(
        spec["backup"]["required"],
        serde_json::json!(["destination"])
    );
    assert_eq!(spec["storage"]["properties"]["size"]["type"], "string");
    assert!(spec["storage"]["properties"]["size"]["pattern"].is_string());
    assert_eq!(
        spec["rootPasswordSecretRef"]["properties"]["key"]["default"],
        "root-password"
    );
    assert_eq!(
        spec["restoreFrom"]["properties"]["overwrite"]["default"],
        false
    );
    assert_eq!(spec["config"]["additionalProperties"]["type"], "string");
    assert_eq!(
        spec["resources"]["properties"]["limits"]["additionalProperties"]["x-kubernetes-int-or-string"],
        true
    );
    let status = &schema["properties"]["status"]["properties"];
    assert_eq!(
        status["phase"]["enum"],
        serde_json::json!([
            "Pending",
            "Provisioning",
            "Restoring",
            "Ready",
            "Failed",
            "Deleting"
        ])
    );
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        status["conditions"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );

    let backup_schema = backup_schema();
    assert_eq!(
        backup_schema["properties"]["status"]["properties"]["phase"]["enum"],
        serde_json::json!(["Pending", "Running", "Succeeded", "Failed"])
    );
    assert_eq!(
        backup_schema["properties"]["spec"]["required"],
        serde_json::json!(["instanceRef"])
    );
}

/// Formats the API server recognises: the OpenAPI number formats and the
/// string formats of apiextensions-apiserver (`supportedFormats`). Any other
/// makes every apply of the CRDs warn `unrecognized format`.
const KUBERNETES_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "password",
    "date",
    "date-time",
    "datetime",
    "duration",
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
];

fn formats(value: &Value, path: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get("format") {
                found.push((path.to_owned(), format.clone()));
            }
            for (key, child) in map {
                formats(child, &format!("{path}.{key}"), found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                formats(child, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn schemas_use_only_formats_kubernetes_knows() {
    let committed: Vec<Value> = serde_yaml::Deserializer::from_str(
        &std::fs::read_to_string(repo_root().join(CRD_FILE)).unwrap(),
    )
    .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
    .collect();
    let generated: Vec<Value> = keeper_crds::crds()
        .iter()
        .map(|crd| serde_json::to_value(crd).unwrap())
        .collect();
    for crd in committed.iter().chain(&generated) {
        let mut found = Vec::new();
        formats(crd, "", &mut found);
        assert!(!found.is_empty(), "timestamps at least carry date-time");
        let unknown: Vec<_> = found
            .iter()
            .filter(|(_, f)| !KUBERNETES_FORMATS.contains(&f.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{}: formats the API server does not recognise: {unknown:?}",
            crd["metadata"]["name"]
        );
    }
}
