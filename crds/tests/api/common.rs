//! Helpers shared by the test modules.

use std::path::PathBuf;

use keeper_crds::{MySQLBackup, MySQLInstance};
use kube::CustomResourceExt;
use serde_json::Value;

/// The repository root (the workspace), where `deploy/` lives.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `openAPIV3Schema` of a CRD, as JSON.
fn schema_of(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let crd = serde_json::to_value(crd).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

pub fn instance_schema() -> Value {
    schema_of(MySQLInstance::crd())
}

pub fn backup_schema() -> Value {
    schema_of(MySQLBackup::crd())
}

/// The messages of the CEL rules that reject `object` (empty when it passes).
/// `old` makes it an update, so transition rules (`oldSelf`) run.
pub fn cel_failures(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    match kube_cel::Validator::new().validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}
